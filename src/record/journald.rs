//! Logging under systemd: when stderr is connected to the journal (`JOURNAL_STREAM`), log
//! lines go to journald natively (priority, `SYSLOG_IDENTIFIER=oomguard`, code location, and
//! every key-value of a record as a field); otherwise the plain stderr lines of
//! [`super::log`]. The [`Journal`] observer adds one structured entry per event record, with
//! `OOMGUARD_ACTION`, `OOMGUARD_VICTIM_PID`, `OOMGUARD_VICTIM_COMM`, `OOMGUARD_REASON`, … so
//! `journalctl OOMGUARD_ACTION=kill` finds every kill.

use super::event::Record;
use crate::sense::mem::MemState;

use super::Observer;

/// `MESSAGE_ID` of oomguard's event entries (`journalctl MESSAGE_ID=...`).
pub const EVENT_MESSAGE_ID: &str = "5b1e0a9ad3bb4b3e8c0c7f2d4e6a9f11";

/// Whether stderr is the journal (running as a systemd service).
pub fn under_journal() -> bool {
    systemd_journal_logger::connected_to_journal()
}

/// Installs the journald logger under systemd, else the stderr logger. Returns whether the
/// journal is used.
pub fn init(verbose: bool) -> bool {
    if under_journal()
        && let Ok(j) = systemd_journal_logger::JournalLog::new()
    {
        // Behind the log queue (`super::log`): a journald that stalls costs log lines, never
        // the guard loop's time.
        super::log::install(
            Box::new(j.with_syslog_identifier("oomguard".into())),
            verbose,
        );
        return true;
    }
    super::log::init(verbose);
    false
}

/// The journal fields of an event record: `MESSAGE_ID` and the record's facts
/// (`OOMGUARD_ACTION`, `OOMGUARD_VICTIM_PID`, `OOMGUARD_VICTIM_COMM`, `OOMGUARD_REASON`, ...).
pub fn fields(rec: &Record) -> Vec<(String, String)> {
    let mut out = vec![("MESSAGE_ID".to_string(), EVENT_MESSAGE_ID.to_string())];
    out.extend(super::hooks::event_fields(rec, "VICTIM_"));
    out
}

/// The message of an event entry: the action, the process it is about, and what happened.
pub fn message(rec: &Record) -> String {
    let action = rec.event.action();
    let detail = rec.event.summary();
    match rec.event.who() {
        Some((pid, comm)) => format!("{action}: pid {pid} ({comm}) {detail}"),
        None => format!("{action}: {detail}"),
    }
}

/// Writes one structured journal entry per event record (only under journald, where the
/// plain log lines already go elsewhere otherwise).
#[derive(Debug, Default)]
pub struct Journal;

impl Observer for Journal {
    /// Reads records only, never a sample's memory.
    fn accepts_floor(&self, _floor: &MemState) -> bool {
        true
    }

    fn record(&mut self, rec: &Record) {
        self.record_entry(rec);
    }
}

impl Journal {
    /// Logs the structured entry of one record.
    pub fn record_entry(&self, rec: &Record) {
        entry(rec, |r| log::logger().log(r));
    }
}

/// Builds the log call of `rec`'s entry and hands it to `f`.
fn entry(rec: &Record, f: impl FnOnce(&log::Record)) {
    let fs = fields(rec);
    let kv: Vec<(&str, &str)> = fs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let level = match rec.event.action() {
        "kill" | "kernel_kill" | "missing" | "warn" => log::Level::Warn,
        _ => log::Level::Info,
    };
    f(&log::Record::builder()
        .level(level)
        .target("oomguard::event")
        .key_values(&kv)
        .args(format_args!("{}", message(rec)))
        .build());
}

impl super::emit::Sink for Journal {
    fn take(&self, rec: &Record) {
        self.record_entry(rec);
    }

    /// The entry built and made into a log line, not queued ([`super::log::warm`]).
    fn warm(&self, rec: &Record) {
        entry(rec, super::log::warm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_records_become_victim_fields() {
        let rec = serde_json::json!({"action": "kill", "scope": "system",
            "victim": {"pid": 42, "comm": "hog", "rss_kb": 9, "rule": null},
            "trigger": {"reason": "low_memory_kill"}});
        let rec = crate::record::event::Record::from_value(rec).unwrap();
        let f = fields(&rec);
        let get = |k: &str| f.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("OOMGUARD_ACTION"), Some("kill"));
        assert_eq!(get("OOMGUARD_VICTIM_PID"), Some("42"));
        assert_eq!(get("OOMGUARD_VICTIM_COMM"), Some("hog"));
        assert_eq!(get("OOMGUARD_REASON"), Some("low_memory_kill"));
        assert_eq!(get("OOMGUARD_VICTIM_RULE"), None);
        assert!(message(&rec).starts_with("kill: pid 42 (hog) reason low_memory_kill"));
    }
}
