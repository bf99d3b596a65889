//! What the metrics count: the registry's state, fed by the daemon's samples and by every
//! event-log record. Only plain numbers and the last victim live here; the text format is
//! [`super::exposition`]'s business, the listener [`super::http`]'s.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::record::event::{Event, Record};

use crate::record::{Sample, Wake};

/// Upper bounds (seconds) of the scan-duration histogram.
pub(super) const SCAN_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The last process oomguard killed.
#[derive(Debug, Default, Clone)]
pub(super) struct Victim {
    pub pid: i64,
    pub comm: String,
    pub reason: String,
    pub rss_kb: u64,
    /// When it was killed, seconds since the epoch.
    pub time: f64,
}

/// Everything the exposition shows that the daemon tells the registry.
#[derive(Debug, Default, Clone)]
pub(super) struct State {
    pub sample: Option<Sample>,
    pub wakeups: BTreeMap<&'static str, u64>,
    pub scan_counts: [u64; SCAN_BUCKETS.len()],
    pub scan_count: u64,
    pub scan_sum: f64,
    /// Of `scan_count`, the bounded rescans near the levels.
    pub bounded_scans: u64,
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

/// Seconds since the epoch of a record's time, if it parses.
fn record_time(rec: &Record) -> Option<f64> {
    let t = rec.timestamp()?;
    Some(t.as_millisecond() as f64 / 1000.0)
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
            self.bounded_scans += u64::from(smp.bounded);
        }
    }

    /// One event-log record.
    pub fn observe(&mut self, rec: &Record) {
        let action = rec.event.action().to_string();
        *self.records.entry(action).or_default() += 1;
        let reason = rec
            .event
            .decision()
            .map(|d| d.trigger.reason.clone())
            .unwrap_or_default();
        match &rec.event {
            Event::Kill(d) => {
                let strongest = d
                    .signals
                    .as_ref()
                    .and_then(|a| a.last())
                    .map_or("unknown", |sig| sig.signal.as_str())
                    .to_ascii_lowercase();
                *self.kills.entry((reason.clone(), strongest)).or_default() += 1;
                self.freed_kb += d.outcome.as_ref().map_or(0, |o| o.freed_kb);
                self.last_victim = Some(Victim {
                    pid: d.victim.pid.into(),
                    comm: d.victim.comm.clone(),
                    reason,
                    rss_kb: d.victim.rss_kb,
                    time: record_time(rec).unwrap_or_else(unix_now),
                });
            }
            Event::DryRun(_) => *self.dry_runs.entry(reason).or_default() += 1,
            Event::KernelKill(k) => self.kernel_kills += k.oom_kills,
            Event::Warn(w) => {
                let high = w.state != "cleared";
                if high {
                    self.warnings += 1;
                }
                self.warn_active = Some(high);
            }
            Event::Missing(_) => self.missing += 1,
            Event::Restart(r) => {
                let result = if r.ok { "ok" } else { "failed" };
                *self.restarts.entry(result.into()).or_default() += 1;
            }
            _ => {}
        }
    }
}
