//! Records of the systemd journal exported as JSON (`journalctl -o json`, one object per line,
//! as admins attach them to tickets): the kernel's message and its stamps. A pure function
//! over bytes, like [`super::prefix`].

use std::borrow::Cow;
use std::io::Write;

/// The fields of a journal record this reader uses; the others are skipped unread.
#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(rename = "MESSAGE")]
    message: Option<Message>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime: Option<Field<'a>>,
    /// The kernel's own stamp of a kernel record (microseconds since boot).
    #[serde(rename = "_SOURCE_MONOTONIC_TIMESTAMP", borrow)]
    source_monotonic: Option<Field<'a>>,
    #[serde(rename = "_TRANSPORT", borrow)]
    transport: Option<Field<'a>>,
    #[serde(rename = "SYSLOG_IDENTIFIER", borrow)]
    identifier: Option<Field<'a>>,
    /// The machine (`journalctl -m` and systemd-journal-remote merge several).
    #[serde(rename = "_HOSTNAME", borrow)]
    hostname: Option<Field<'a>>,
}

/// A field's value: text, or (a field the record holds more than once) a list of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Field<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Field<'_> {
    fn first(&self) -> Option<&str> {
        match self {
            Field::One(s) => Some(s),
            Field::Many(v) => v.first().map(|s| &**s),
        }
    }
}

/// `MESSAGE`: text, or its bytes as a list of numbers when they are not UTF-8.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Message {
    Text(String),
    Bytes(Vec<u8>),
}

/// What one journal line gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Journal {
    /// The record is the kernel's (`_TRANSPORT=kernel`, else `SYSLOG_IDENTIFIER=kernel`; a
    /// record naming neither is taken as the kernel's).
    pub kernel: bool,
    /// Seconds since boot from `_SOURCE_MONOTONIC_TIMESTAMP`.
    pub monotonic_s: Option<f64>,
    /// The message holds newlines.
    pub lines: bool,
}

/// The texts of one record, each refilled by [`record`] (empty when the record has none).
#[derive(Debug, Default)]
pub struct Texts {
    pub msg: Vec<u8>,
    /// The wall-clock time, RFC 3339 in UTC, from `__REALTIME_TIMESTAMP`.
    pub wall: Vec<u8>,
    /// `_HOSTNAME`.
    pub host: Vec<u8>,
}

/// Reads a line that is a journal record in JSON into `out`. `None`: not a JSON object with a
/// `MESSAGE` (the line is then read as text).
pub fn record(line: &[u8], out: &mut Texts) -> Option<Journal> {
    if !line.starts_with(b"{") {
        return None;
    }
    let rec: Record = serde_json::from_slice(line).ok()?;
    let Texts { msg, wall, host } = out;
    msg.clear();
    match rec.message? {
        Message::Text(t) => msg.extend_from_slice(t.as_bytes()),
        Message::Bytes(b) => msg.extend_from_slice(&b),
    }
    while msg.last() == Some(&b'\n') {
        msg.pop();
    }
    wall.clear();
    let micros = |f: &Option<Field>| f.as_ref()?.first()?.trim().parse::<i64>().ok();
    if let Some(ts) = micros(&rec.realtime).and_then(|u| jiff::Timestamp::from_microsecond(u).ok())
    {
        let _ = write!(wall, "{ts:.6}");
    }
    host.clear();
    if let Some(h) = rec.hostname.as_ref().and_then(Field::first) {
        host.extend_from_slice(h.as_bytes());
    }
    let is = |f: &Option<Field>, v: &str| f.as_ref().and_then(|f| f.first()).map(|s| s == v);
    let kernel = is(&rec.transport, "kernel")
        .or_else(|| is(&rec.identifier, "kernel"))
        .unwrap_or(true);
    Some(Journal {
        kernel,
        monotonic_s: micros(&rec.source_monotonic).map(|u| u as f64 / 1e6),
        lines: msg.contains(&b'\n'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> Option<(Journal, String, String)> {
        read_with_host(line).map(|(j, m, w, _)| (j, m, w))
    }

    fn read_with_host(line: &str) -> Option<(Journal, String, String, String)> {
        let mut t = Texts::default();
        let j = record(line.as_bytes(), &mut t)?;
        let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
        Some((j, s(t.msg), s(t.wall), s(t.host)))
    }

    #[test]
    fn a_kernel_record_gives_its_message_and_both_clocks() {
        let (j, m, w, h) = read_with_host(
            r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1764525601123456","__MONOTONIC_TIMESTAMP":"1234600000","_BOOT_ID":"b","_TRANSPORT":"kernel","PRIORITY":"3","SYSLOG_FACILITY":"0","SYSLOG_IDENTIFIER":"kernel","_SOURCE_MONOTONIC_TIMESTAMP":"1234500000","MESSAGE":"Out of memory: Killed process 5 (a)","_HOSTNAME":"h"}"#,
        )
        .unwrap();
        assert!(j.kernel && !j.lines);
        assert_eq!(j.monotonic_s, Some(1234.5));
        assert_eq!(m, "Out of memory: Killed process 5 (a)");
        assert_eq!(w, "2025-11-30T18:00:01.123456Z");
        assert_eq!(h, "h");
    }

    #[test]
    fn other_programs_bytes_and_non_records() {
        let (j, m, _) = read(
            r#"{"_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"containerd","MESSAGE":"Killed process 1 (x)"}"#,
        )
        .unwrap();
        assert!(!j.kernel);
        assert_eq!(m, "Killed process 1 (x)");
        // Not UTF-8: journalctl prints the bytes as numbers.
        let (j, m, w, h) =
            read_with_host(r#"{"MESSAGE":[104,105,10],"SYSLOG_IDENTIFIER":["kernel","x"]}"#)
                .unwrap();
        assert!(j.kernel && !j.lines && w.is_empty() && h.is_empty());
        assert_eq!(m, "hi");
        assert!(
            read(r#"{"MESSAGE":null}"#).is_none(),
            "a blob too large to print"
        );
        assert!(read(r#"{"no":"message"}"#).is_none());
        assert!(read("{not json").is_none());
        assert!(read("[ 1.0] {\"MESSAGE\":\"x\"}").is_none());
    }
}
