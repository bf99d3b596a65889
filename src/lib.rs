//! oomguard: a Linux out-of-memory guard.
//!
//! The modules follow the data: [`sense`] reads the machine (processes, memory, PSI, cgroups),
//! [`decide`] scores processes and applies levels and rules, [`act`] signals through pidfds,
//! [`record`] writes what happened. [`report`] parses kernel OOM reports; [`cli`] holds one thin
//! file per subcommand; [`daemon`] is the guard loop that ties sense → decide → act → record.

pub mod act;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod doctor;
pub mod record;
pub mod report;
pub mod sense;
pub mod values;
