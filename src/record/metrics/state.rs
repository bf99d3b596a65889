//! What the metrics count: the registry's state, fed by the daemon's samples and by every
//! event-log record. Only plain numbers and the last victim live here; the text format is
//! [`super::exposition`]'s business, the listener [`super::http`]'s.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::record::{Sample, Wake};

/// Upper bounds (seconds) of the scan-duration histogram.
pub(super) const SCAN_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The last process oomguard killed.
#[derive(Debug, Default)]
pub(super) struct Victim {
    pub pid: i64,
    pub comm: String,
    pub reason: String,
    pub rss_kb: u64,
    /// When it was killed, seconds since the epoch.
    pub time: f64,
}

/// Everything the exposition shows that the daemon tells the registry.
#[derive(Debug, Default)]
pub(super) struct State {
    pub sample: Option<Sample>,
    pub wakeups: BTreeMap<&'static str, u64>,
    pub scan_counts: [u64; SCAN_BUCKETS.len()],
    pub scan_count: u64,
    pub scan_sum: f64,
    /// (reason, action) → count.
    pub kills: BTreeMap<(String, String), u64>,
    pub dry_runs: BTreeMap<String, u64>,
    pub kernel_kills: u64,
    pub warnings: u64,
    pub missing: u64,
    /// result → count.
    pub restarts: BTreeMap<String, u64>,
    pub records: BTreeMap<String, u64>,
    pub freed_kb: u64,
    pub last_victim: Option<Victim>,
    pub warn_active: Option<bool>,
    pub start_time: f64,
}

fn wake_name(w: Wake) -> &'static str {
    match w {
        Wake::Timer => "timer",
        Wake::Threshold => "threshold",
        Wake::PressureLevel => "pressure_level",
        Wake::Psi => "psi",
        Wake::ProcEvent => "proc_event",
    }
}

pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch of an RFC 3339 time, if it parses.
fn record_time(rec: &Value) -> Option<f64> {
    let t: jiff::Timestamp = rec.get("time")?.as_str()?.parse().ok()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

impl State {
    /// A fresh registry that started now.
    pub fn new() -> State {
        State {
            start_time: unix_now(),
            ..State::default()
        }
    }

    /// One wake-up of the daemon.
    pub fn sample(&mut self, smp: &Sample) {
        self.sample = Some(*smp);
        *self.wakeups.entry(wake_name(smp.wake)).or_default() += 1;
        if let Some(d) = smp.scan {
            let secs = d.as_secs_f64();
            for (i, le) in SCAN_BUCKETS.iter().enumerate() {
                if secs <= *le {
                    self.scan_counts[i] += 1;
                }
            }
            self.scan_count += 1;
            self.scan_sum += secs;
        }
    }

    /// One event-log record.
    pub fn observe(&mut self, rec: &Value) {
        let action = str_at(rec, &["action"]).to_string();
        *self.records.entry(action.clone()).or_default() += 1;
        let reason = str_at(rec, &["trigger", "reason"]).to_string();
        match action.as_str() {
            "kill" => {
                let strongest = rec
                    .get("signals")
                    .and_then(Value::as_array)
                    .and_then(|a| a.last())
                    .and_then(|sig| sig.get("signal"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_ascii_lowercase();
                *self.kills.entry((reason.clone(), strongest)).or_default() += 1;
                let victim = rec.get("victim");
                let u = |k: &str| victim.and_then(|v| v.get(k)).and_then(Value::as_u64);
                self.freed_kb += rec
                    .get("outcome")
                    .and_then(|o| o.get("freed_kb"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                self.last_victim = Some(Victim {
                    pid: victim
                        .and_then(|v| v.get("pid"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                    comm: str_at(rec, &["victim", "comm"]).to_string(),
                    reason,
                    rss_kb: u("rss_kb").unwrap_or(0),
                    time: record_time(rec).unwrap_or_else(unix_now),
                });
            }
            "dry_run" => *self.dry_runs.entry(reason).or_default() += 1,
            "kernel_kill" => {
                self.kernel_kills += rec.get("oom_kills").and_then(Value::as_u64).unwrap_or(1)
            }
            "warn" => {
                let high = str_at(rec, &["state"]) != "cleared";
                if high {
                    self.warnings += 1;
                }
                self.warn_active = Some(high);
            }
            "missing" => self.missing += 1,
            "restart" => {
                let result = if rec.get("ok").and_then(Value::as_bool) == Some(true) {
                    "ok"
                } else {
                    "failed"
                };
                *self.restarts.entry(result.into()).or_default() += 1;
            }
            _ => {}
        }
    }
}
