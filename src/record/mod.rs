//! Record: the event log (JSON lines, fsynced) and log lines on stderr.
pub mod eventlog;
pub mod log;
