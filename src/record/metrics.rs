//! Prometheus metrics in the text exposition format 0.0.4, served by one small std thread
//! (`run --metrics ADDR`, documented address `127.0.0.1:9577`). No async runtime: the listener
//! accepts one connection at a time, renders under a short lock and closes the connection.
//!
//! Series (all prefixed `oomguard_`): memory and swap available/total, PSI, levels, wake-ups by
//! cause, the scan duration histogram, kills by reason and action, dry-run decisions, kernel
//! OOM kills seen, warnings, after-kill watch records, the last victim, build info.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::event::{Event, Record};

use super::{Observer, Sample, Wake};

/// The documented listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9577";

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the scan-duration histogram.
const SCAN_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
struct Victim {
    pid: i64,
    comm: String,
    reason: String,
    rss_kb: u64,
    time: f64,
}

#[derive(Debug, Default)]
struct State {
    sample: Option<Sample>,
    wakeups: BTreeMap<&'static str, u64>,
    scan_counts: [u64; SCAN_BUCKETS.len()],
    scan_count: u64,
    scan_sum: f64,
    /// (reason, action) → count.
    kills: BTreeMap<(String, String), u64>,
    dry_runs: BTreeMap<String, u64>,
    kernel_kills: u64,
    warnings: u64,
    missing: u64,
    /// result → count.
    restarts: BTreeMap<String, u64>,
    records: BTreeMap<String, u64>,
    freed_kb: u64,
    last_victim: Option<Victim>,
    warn_active: Option<bool>,
    start_time: f64,
}

/// The metrics registry: an [`Observer`] the daemon feeds and the listener renders. Cheap to
/// clone (shared state).
#[derive(Debug, Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch of an RFC 3339 time, if it parses.
fn record_time(rec: &Record) -> Option<f64> {
    let t = rec.timestamp()?;
    Some(t.as_millisecond() as f64 / 1000.0)
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Formats a float the way the exposition format wants (`+Inf`, `NaN`).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP oomguard_{name} {help}");
        let _ = writeln!(self.0, "# TYPE oomguard_{name} {kind}");
    }
    fn line(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str("oomguard_");
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", num(v));
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.head(name, kind, help);
        self.line(name, &[], v);
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            state: Arc::new(Mutex::new(State {
                start_time: unix_now(),
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole exposition text.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut o = Out(String::with_capacity(4096));
        o.head(
            "build_info",
            "gauge",
            "Always 1; the labels name the oomguard version.",
        );
        o.line("build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        o.one(
            "start_time_seconds",
            "gauge",
            "When the daemon started, seconds since the epoch.",
            s.start_time,
        );
        {
            use std::sync::atomic::Ordering::Relaxed;
            let h = &super::side::HEALTH;
            o.one(
                "log_lines_dropped_total",
                "counter",
                "Log lines dropped because stderr or the journal was not taking them.",
                h.log_lines_dropped.load(Relaxed) as f64,
            );
            o.one(
                "event_records_lost_total",
                "counter",
                "Event log records lost: the writer fell behind or the write failed.",
                h.event_records_lost.load(Relaxed) as f64,
            );
            o.one(
                "thread_panics_total",
                "counter",
                "Side threads (metrics, hooks, notifications, ...) that panicked and were stopped.",
                h.thread_panics.load(Relaxed) as f64,
            );
        }
        if let Some(smp) = &s.sample {
            let m = &smp.mem;
            let kb = |v: u64| v as f64 * 1024.0;
            o.one(
                "memory_available_bytes",
                "gauge",
                "Memory available in the scope (MemAvailable, or limit minus usage).",
                kb(m.available_kb),
            );
            o.one(
                "memory_total_bytes",
                "gauge",
                "Memory total of the scope (RAM, or the cgroup limit).",
                kb(m.total_kb),
            );
            o.one(
                "swap_free_bytes",
                "gauge",
                "Swap available to the scope.",
                kb(m.swap_free_kb),
            );
            o.one(
                "swap_total_bytes",
                "gauge",
                "Swap total of the scope.",
                kb(m.swap_total_kb),
            );
            o.head(
                "level_bytes",
                "gauge",
                "The resolved levels: below term oomguard sends SIGTERM, below kill SIGKILL.",
            );
            let l = &smp.levels;
            for (res, lvl, v) in [
                ("memory", "term", l.mem_term_kb),
                ("memory", "kill", l.mem_kill_kb),
                ("swap", "term", l.swap_term_kb),
                ("swap", "kill", l.swap_kill_kb),
            ] {
                o.line("level_bytes", &[("resource", res), ("level", lvl)], kb(v));
            }
            let psi: Vec<_> = [
                ("some", "avg10", smp.psi_some_avg10),
                ("full", "avg10", smp.psi_full_avg10),
                ("some", "window", smp.psi_some),
                ("full", "window", smp.psi_full),
            ]
            .into_iter()
            .filter_map(|(k, w, v)| v.map(|v| (k, w, v)))
            .collect();
            if !psi.is_empty() {
                o.head(
                    "psi_stall_ratio",
                    "gauge",
                    "Memory pressure stall share (0..1): avg10 from the pressure file, or over the configured PSI window.",
                );
                for (k, w, v) in psi {
                    o.line("psi_stall_ratio", &[("kind", k), ("window", w)], v / 100.0);
                }
            }
        }
        o.head("wakeups_total", "counter", "Daemon wake-ups by cause.");
        for (cause, n) in &s.wakeups {
            o.line("wakeups_total", &[("cause", cause)], *n as f64);
        }
        o.head(
            "scan_duration_seconds",
            "histogram",
            "How long one process scan took.",
        );
        for (i, le) in SCAN_BUCKETS.iter().enumerate() {
            o.line(
                "scan_duration_seconds_bucket",
                &[("le", &num(*le))],
                s.scan_counts[i] as f64,
            );
        }
        o.line(
            "scan_duration_seconds_bucket",
            &[("le", "+Inf")],
            s.scan_count as f64,
        );
        o.line("scan_duration_seconds_sum", &[], s.scan_sum);
        o.line("scan_duration_seconds_count", &[], s.scan_count as f64);
        o.head(
            "kills_total",
            "counter",
            "Victims oomguard signalled, by trigger reason and the strongest signal sent.",
        );
        for ((reason, action), n) in &s.kills {
            o.line(
                "kills_total",
                &[("reason", reason), ("action", action)],
                *n as f64,
            );
        }
        o.head(
            "dry_run_decisions_total",
            "counter",
            "Kills oomguard would have made in dry-run mode, by trigger reason.",
        );
        for (reason, n) in &s.dry_runs {
            o.line("dry_run_decisions_total", &[("reason", reason)], *n as f64);
        }
        o.one(
            "kernel_oom_kills_total",
            "counter",
            "Kills by the kernel's OOM killer seen in the scope.",
            s.kernel_kills as f64,
        );
        o.one(
            "freed_bytes_total",
            "counter",
            "Memory freed by oomguard's kills (victims' RSS released).",
            s.freed_kb as f64 * 1024.0,
        );
        o.one(
            "warnings_total",
            "counter",
            "Times the warning level was crossed.",
            s.warnings as f64,
        );
        if let Some(a) = s.warn_active {
            o.one(
                "warning_active",
                "gauge",
                "1 while memory use is above the warning level.",
                if a { 1.0 } else { 0.0 },
            );
        }
        o.one(
            "watch_missing_total",
            "counter",
            "Watched programs found missing after an OOM event.",
            s.missing as f64,
        );
        o.head(
            "watch_restarts_total",
            "counter",
            "Restart commands run by the after-kill watch list, by result.",
        );
        for (result, n) in &s.restarts {
            o.line("watch_restarts_total", &[("result", result)], *n as f64);
        }
        o.head(
            "events_total",
            "counter",
            "Records written to the event log, by action.",
        );
        for (action, n) in &s.records {
            o.line("events_total", &[("action", action)], *n as f64);
        }
        if let Some(v) = &s.last_victim {
            o.head(
                "last_victim_info",
                "gauge",
                "Always 1; the labels describe the last process oomguard killed.",
            );
            let pid = v.pid.to_string();
            o.line(
                "last_victim_info",
                &[("pid", &pid), ("comm", &v.comm), ("reason", &v.reason)],
                1.0,
            );
            o.one(
                "last_victim_rss_bytes",
                "gauge",
                "Resident memory of the last victim when it was chosen.",
                v.rss_kb as f64 * 1024.0,
            );
            o.one(
                "last_kill_timestamp_seconds",
                "gauge",
                "When oomguard last killed, seconds since the epoch.",
                v.time,
            );
        }
        o.0
    }

    /// Starts the listener thread on `addr`; returns the bound address (useful with port 0).
    pub fn serve(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let me = self.clone();
        super::side::spawn("oomguard-metrics", move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = me.answer(stream) {
                            log::debug!("metrics: a scrape failed: {e}");
                        }
                    }
                    Err(e) => {
                        log::warn!("metrics: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(local)
    }

    /// Answers one HTTP/1.x request and closes the connection.
    fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let (status, ctype, body) = route(&buf, || self.render());
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        let is_head = buf.starts_with(b"HEAD ");
        if !is_head {
            stream.write_all(body.as_bytes())?;
        }
        stream.flush()
    }
}

/// Picks the answer for a raw request: `/metrics` → the exposition, `/` → a pointer to it.
fn route(req: &[u8], render: impl FnOnce() -> String) -> (&'static str, &'static str, String) {
    let line = req
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    let target = parts.next().unwrap_or(b"");
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    if method != b"GET" && method != b"HEAD" {
        return (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
    }
    match path {
        b"/metrics" => ("200 OK", CONTENT_TYPE, render()),
        // Liveness/readiness: answered without taking the registry lock or rendering.
        b"/healthz" => ("200 OK", "text/plain; charset=utf-8", "ok\n".into()),
        b"/" => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">oomguard metrics</a></body></html>\n".into(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".into(),
        ),
    }
}

impl Observer for Metrics {
    fn sample(&mut self, smp: &Sample) {
        let mut s = self.lock();
        s.sample = Some(*smp);
        *s.wakeups.entry(wake_name(smp.wake)).or_default() += 1;
        if let Some(d) = smp.scan {
            let secs = d.as_secs_f64();
            for (i, le) in SCAN_BUCKETS.iter().enumerate() {
                if secs <= *le {
                    s.scan_counts[i] += 1;
                }
            }
            s.scan_count += 1;
            s.scan_sum += secs;
        }
    }

    fn record(&mut self, rec: &Record) {
        self.observe(rec);
    }
}

impl Metrics {
    /// Counts one event-log record (also for records written outside the daemon's loop).
    pub fn observe(&self, rec: &Record) {
        let action = rec.event.action().to_string();
        let mut s = self.lock();
        *s.records.entry(action).or_default() += 1;
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
                *s.kills.entry((reason.clone(), strongest)).or_default() += 1;
                s.freed_kb += d.outcome.as_ref().map_or(0, |o| o.freed_kb);
                s.last_victim = Some(Victim {
                    pid: d.victim.pid.into(),
                    comm: d.victim.comm.clone(),
                    reason,
                    rss_kb: d.victim.rss_kb,
                    time: record_time(rec).unwrap_or_else(unix_now),
                });
            }
            Event::DryRun(_) => *s.dry_runs.entry(reason).or_default() += 1,
            Event::KernelKill(k) => s.kernel_kills += k.oom_kills,
            Event::Warn(w) => {
                let high = w.state != "cleared";
                if high {
                    s.warnings += 1;
                }
                s.warn_active = Some(high);
            }
            Event::Missing(_) => s.missing += 1,
            Event::Restart(r) => {
                let result = if r.ok { "ok" } else { "failed" };
                *s.restarts.entry(result.into()).or_default() += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::trigger::{Levels, MemState};

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
        }
    }

    #[test]
    fn renders_samples_records_and_a_histogram() {
        let mut m = Metrics::new();
        m.sample(&sample(3));
        m.sample(&sample(300));
        m.record(
            &crate::record::event::Record::from_value(serde_json::json!({
                "time": "2026-11-30T18:00:00.000+00:00", "action": "kill",
                "trigger": {"reason": "low_memory_term"},
                "victim": {"pid": 42, "comm": "a \"q\"", "rss_kb": 10},
                "signals": [{"signal": "SIGTERM"}, {"signal": "SIGKILL"}],
                "outcome": {"freed_kb": 8}
            }))
            .unwrap(),
        );
        m.record(
            &crate::record::event::Record::from_value(
                serde_json::json!({"action": "kernel_kill", "oom_kills": 2}),
            )
            .unwrap(),
        );
        m.record(
            &crate::record::event::Record::from_value(
                serde_json::json!({"action": "restart", "ok": false}),
            )
            .unwrap(),
        );
        let t = m.render();
        assert!(
            t.contains("oomguard_memory_available_bytes 409600\n"),
            "{t}"
        );
        assert!(t.contains("oomguard_level_bytes{resource=\"memory\",level=\"kill\"} 51200\n"));
        assert!(t.contains("oomguard_psi_stall_ratio{kind=\"full\",window=\"window\"} 0.125\n"));
        assert!(t.contains("oomguard_scan_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(t.contains("oomguard_scan_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(t.contains("oomguard_scan_duration_seconds_count 2\n"));
        assert!(t.contains("oomguard_wakeups_total{cause=\"timer\"} 2\n"));
        assert!(
            t.contains("oomguard_kills_total{reason=\"low_memory_term\",action=\"sigkill\"} 1\n")
        );
        assert!(t.contains("comm=\"a \\\"q\\\"\""), "{t}");
        assert!(t.contains("oomguard_last_kill_timestamp_seconds 1796061600\n"));
        assert!(t.contains("oomguard_kernel_oom_kills_total 2\n"));
        assert!(t.contains("oomguard_watch_restarts_total{result=\"failed\"} 1\n"));
    }

    #[test]
    fn routes_requests() {
        let r = route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || "m".into());
        assert_eq!((r.0, r.1, r.2.as_str()), ("200 OK", CONTENT_TYPE, "m"));
        let h = route(b"GET /healthz HTTP/1.1\r\n\r\n", || panic!("rendered"));
        assert_eq!((h.0, h.2.as_str()), ("200 OK", "ok\n"));
        assert_eq!(
            route(b"GET /x HTTP/1.1\r\n\r\n", String::new).0,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n", String::new).0,
            "405 Method Not Allowed"
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", String::new).0,
            "200 OK"
        );
    }
}
