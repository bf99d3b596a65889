//! Prometheus metrics in the text exposition format 0.0.4 (`run --metrics ADDR`, documented
//! address `127.0.0.1:9577`). No async runtime. Three parts:
//!
//! - [`state`]: what is counted, fed by the daemon's samples and every event-log record;
//! - [`exposition`]: the text format, rendered under a short lock;
//! - [`http`]: the listener, one poll(2) thread and a few workers, so that a slow or idle
//!   client cannot block a scrape (whole-request deadline, a cap on open connections).
//!
//! Series (all prefixed `oomguard_`): memory and swap available/total, PSI, levels, wake-ups by
//! cause, the scan duration histogram, kills by reason and action, dry-run decisions, kernel
//! OOM kills seen, warnings, after-kill watch records, the last victim, build info, and what
//! the record path dropped (log lines, event records, systemd messages, metrics connections).

mod exposition;
mod http;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::event::Record;

pub use http::{MAX_CONNECTIONS, REQUEST_DEADLINE, Stats, WORKERS};

use super::{Observer, Sample};
use state::State;

/// The documented listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9577";

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics registry: an [`Observer`] the daemon feeds and the listener renders. Cheap to
/// clone (shared state).
#[derive(Debug, Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    http: Arc<Stats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            state: Arc::new(Mutex::new(State::new())),
            http: Arc::new(Stats::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole exposition text. Rendered from a copy: the lock is held only to copy the
    /// state, never while a scrape formats it (the guard's loop takes the same lock at every
    /// wake-up, at nice −20, and a scrape's worker at the base nice may be starved mid-way).
    pub fn render(&self) -> String {
        let state = self.lock().clone();
        exposition::render(&state, &self.http)
    }

    /// Starts the listener on `addr` (see [`http`]); returns the bound address (useful with
    /// port 0).
    pub fn serve(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let me = self.clone();
        http::serve(addr, Arc::new(move || me.render()), Arc::clone(&self.http))
    }

    /// Counts one event-log record (also for records written outside the daemon's loop).
    pub fn observe(&self, rec: &Record) {
        self.lock().observe(rec);
    }
}

impl super::emit::Sink for Metrics {
    fn take(&self, rec: &Record) {
        self.observe(rec);
    }

    /// Counts the record in a copy of the state, under the lock as [`Metrics::observe`] takes it.
    fn warm(&self, rec: &Record) {
        let mut scratch = self.lock().clone();
        scratch.observe(rec);
        std::hint::black_box(&scratch);
    }
}

impl Observer for Metrics {
    fn wants_pressure(&self) -> bool {
        true
    }

    fn sample(&mut self, smp: &Sample) {
        self.lock().sample(smp);
    }

    fn record(&mut self, rec: &Record) {
        self.observe(rec);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decide::trigger::Levels;
    use crate::record::Wake;
    use crate::sense::mem::MemState;

    fn sample(scan_ms: u64) -> Sample {
        Sample {
            mem: MemState {
                total_kb: 1000,
                available_kb: 400,
                swap_total_kb: 0,
                swap_free_kb: 0,
            },
            levels: Levels {
                mem_term_kb: 100,
                mem_kill_kb: 50,
                swap_term_kb: 0,
                swap_kill_kb: 0,
            },
            psi_some: None,
            psi_full: Some(12.5),
            psi_some_avg10: Some(1.0),
            psi_full_avg10: None,
            wake: Wake::Timer,
            scan: Some(Duration::from_millis(scan_ms)),
            scanned: 10,
            bounded: false,
            floor: false,
        }
    }

    #[test]
    fn renders_samples_records_and_a_histogram() {
        let mut m = Metrics::new();
        m.sample(&sample(3));
        m.sample(&sample(300));
        m.sample(&Sample {
            bounded: true,
            ..sample(2)
        });
        let rec = |v| crate::record::event::Record::from_value(v).unwrap();
        m.record(&rec(serde_json::json!({
            "time": "2026-11-30T18:00:00.000+00:00", "action": "kill",
            "trigger": {"reason": "low_memory_term"},
            "victim": {"pid": 42, "comm": "a \"q\"", "rss_kb": 10},
            "signals": [{"signal": "SIGTERM"}, {"signal": "SIGKILL"}],
            "outcome": {"freed_kb": 8}
        })));
        m.record(&rec(
            serde_json::json!({"action": "kernel_kill", "oom_kills": 2}),
        ));
        m.record(&rec(serde_json::json!({"action": "restart", "ok": false})));
        let t = m.render();
        assert!(
            t.contains("oomguard_memory_available_bytes 409600\n"),
            "{t}"
        );
        assert!(t.contains("oomguard_level_bytes{resource=\"memory\",level=\"kill\"} 51200\n"));
        assert!(t.contains("oomguard_psi_stall_ratio{kind=\"full\",window=\"window\"} 0.125\n"));
        assert!(t.contains("oomguard_scan_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(t.contains("oomguard_scan_duration_seconds_bucket{le=\"0.5\"} 3\n"));
        assert!(t.contains("oomguard_scan_duration_seconds_count 3\n"));
        assert!(
            t.contains("oomguard_scans_total{kind=\"bounded\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("oomguard_scans_total{kind=\"full\"} 2\n"), "{t}");
        assert!(t.contains("oomguard_wakeups_total{cause=\"timer\"} 3\n"));
        assert!(
            t.contains("oomguard_kills_total{reason=\"low_memory_term\",action=\"sigkill\"} 1\n")
        );
        assert!(t.contains("comm=\"a \\\"q\\\"\""), "{t}");
        assert!(t.contains("oomguard_last_kill_timestamp_seconds 1796061600\n"));
        assert!(t.contains("oomguard_kernel_oom_kills_total 2\n"));
        assert!(t.contains("oomguard_watch_restarts_total{result=\"failed\"} 1\n"));
    }

    /// The warm-up runs the count without counting.
    #[test]
    fn a_warm_up_counts_nothing() {
        use crate::record::emit::Sink;
        let m = Metrics::new();
        let rec = crate::record::event::Record::from_value(serde_json::json!({
            "action": "warn", "state": "high", "used_pct": 85.0, "level_pct": 85.0,
            "clear_pct": 80.0, "available_kb": 150, "total_kb": 1000
        }))
        .unwrap();
        let before = m.render();
        m.warm(&rec);
        assert_eq!(m.render(), before);
        m.take(&rec);
        let after = m.render();
        assert!(after.contains("oomguard_warnings_total 1\n"), "{after}");
        assert_ne!(after, before);
    }
}
