//! Decide: the kernel's badness score, oomguard's rules, and the levels that trigger a kill.
pub mod explain_rank;
pub mod order;
pub mod policy;
pub mod rank;
pub mod score;
pub mod trigger;
pub mod victim;
