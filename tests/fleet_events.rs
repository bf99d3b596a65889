//! `oomguard events` on a real event log written by `EventLog`: table, JSON lines, `--since`,
//! `--follow`, follow-ups under their kill.
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use oomguard::record::event::Event;
use oomguard::record::eventlog::EventLog;
use serde_json::json;

use crate::util::{Reaped, bin, oomguard, tempdir};

/// An event of kind `action` from its fields.
fn ev(action: &str, mut fields: serde_json::Value) -> Event {
    fields["action"] = action.into();
    serde_json::from_value(fields).unwrap()
}

#[test]
fn table_json_since_and_follow_ups() {
    let d = tempdir();
    let p = d.path().join("events.jsonl");
    let log = EventLog::open(&p, "system").unwrap();
    // An old record, hand-written with a time long ago.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(b"{\"time\":\"2020-01-01T00:00:00.000+00:00\",\"action\":\"warn\",\"scope\":\"system\",\"host\":\"h\",\"state\":\"high\"}\n")
        .unwrap();
    let kill = log
        .append(ev(
            "kill",
            json!({"trigger": {"reason": "low_memory_kill"},
                "victim": {"pid": 4242, "comm": "hog", "rss_kb": 2048},
                "signals": [{"signal": "SIGKILL", "ok": true}],
                "outcome": {"exited": true, "exit_ms": 12, "freed_kb": 2000}}),
        ))
        .unwrap();
    log.append(ev(
        "kernel_kill",
        json!({"oom_kills": 1, "counter": "memory.oom_control"}),
    ))
    .unwrap();
    log.append(ev("missing", json!({"watch": "nginx", "after": {"time": kill.time, "action": "kill", "pid": 4242, "comm": "hog"}})),
    )
    .unwrap();
    // `append` waits for its write only when the writer was idle (not still in the fsync of
    // the record before): all three are in the file before the reads below.
    assert!(log.sync(std::time::Duration::from_secs(10)));
    let ps = p.to_str().unwrap();

    let out = oomguard(&["events", "--event-log", ps]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{t}");
    assert_eq!(lines.len(), 5, "{t}");
    assert!(
        lines[2].contains("kill") && lines[2].contains("4242") && lines[2].contains("sent SIGKILL")
    );
    assert!(
        lines[3].starts_with("  ↳")
            && lines[3].contains("missing")
            && lines[3].contains("after kill of 4242 hog"),
        "{t}"
    );
    assert!(lines[4].contains("kernel_kill"), "{t}");

    let out = oomguard(&["events", "--event-log", ps, "--json", "--since", "1h"]);
    let recs: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3, "the 2020 record is older than an hour");
    assert_eq!(recs[0]["victim"]["pid"], 4242);

    let out = oomguard(&["events", "--event-log", ps, "--json", "--action", "warn"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);

    let out = oomguard(&["events", "--event-log", ps, "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = oomguard(&[
        "events",
        "--event-log",
        d.path().join("none").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn follow_prints_records_as_they_are_appended() {
    let d = tempdir();
    let p = d.path().join("later/events.jsonl");
    // --follow waits for a log that does not exist yet.
    let mut child = Reaped(
        Command::new(bin())
            .args([
                "events",
                "--follow",
                "--json",
                "--event-log",
                p.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = EventLog::open(&p, "system").unwrap();
    log.append(ev("warn", json!({"state": "high", "used_pct": 91.0})))
        .unwrap();
    let l = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a followed line");
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["action"], "warn");
    assert_eq!(v["used_pct"], 91.0);
    log.append(ev("kernel_kill", json!({"oom_kills": 2})))
        .unwrap();
    let l = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a second line");
    assert!(l.contains("kernel_kill"));
}

#[test]
fn a_bogus_action_is_a_usage_error_and_an_empty_log_says_so() {
    let d = tempdir();
    let p = d.path().join("events.jsonl");
    std::fs::write(&p, "").unwrap();
    let ps = p.to_str().unwrap();
    let out = oomguard(&["events", "--event-log", ps, "--action", "bogus"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--action 'bogus'") && err.contains("kill_backoff") && err.contains("restart"),
        "{err}"
    );
    let out = oomguard(&["events", "--event-log", ps]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no events recorded yet"), "{err}");
    // Records, none of them matching.
    let log = EventLog::open(&p, "system").unwrap();
    log.append(ev("kernel_kill", json!({"oom_kills": 1, "counter": "c"})))
        .unwrap();
    assert!(log.sync(std::time::Duration::from_secs(10)));
    let out = oomguard(&["events", "--event-log", ps, "--action", "warn"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none of its 1 event(s) match"), "{err}");
}
