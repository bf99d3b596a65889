//! The Prometheus text exposition format 0.0.4: `# HELP`/`# TYPE` heads, escaped label values,
//! `+Inf`/`NaN` spelled as the format wants. Renders a [`State`] into one string; nothing here
//! touches a socket.

use std::fmt::Write as _;

use super::http::Stats;
use super::state::{SCAN_BUCKETS, State};

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

/// The whole exposition text of `s`, the listener's `http` counters and the process-wide
/// health counters.
pub(super) fn render(s: &State, http: &Stats) -> String {
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
        let h = &crate::record::side::HEALTH;
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
        o.one(
            "sd_notify_dropped_total",
            "counter",
            "Messages to systemd (watchdog pings, status) dropped because its notify socket was full.",
            crate::record::systemd::dropped() as f64,
        );
        o.head(
            "metrics_connections_closed_total",
            "counter",
            "Metrics connections closed before a whole request came: deadline (too slow), evicted (the connection table was full), busy (every worker was busy).",
        );
        for (reason, n) in [
            ("deadline", &http.deadline),
            ("evicted", &http.evicted),
            ("busy", &http.busy),
        ] {
            o.line(
                "metrics_connections_closed_total",
                &[("reason", reason)],
                n.load(Relaxed) as f64,
            );
        }
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
        "scans_total",
        "counter",
        "Process rescans near the levels (every half second there), by kind: bounded (between full ones: the processes listed again, only the rows that could overtake the best one re-read) or full (an interrupted full rescan counts once per part; scans at a decision are not counted).",
    );
    o.line(
        "scans_total",
        &[("kind", "bounded")],
        s.bounded_scans as f64,
    );
    o.line(
        "scans_total",
        &[("kind", "full")],
        s.scan_count.saturating_sub(s.bounded_scans) as f64,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_special_numbers_are_spelled_as_the_format_wants() {
        assert_eq!(esc("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(f64::NEG_INFINITY), "-Inf");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(0.25), "0.25");
    }

    #[test]
    fn connection_counters_are_rendered() {
        let st = Stats::default();
        st.evicted
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        let t = render(&State::new(), &st);
        assert!(
            t.contains("oomguard_metrics_connections_closed_total{reason=\"evicted\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("oomguard_metrics_connections_closed_total{reason=\"deadline\"} 0\n"));
        assert!(t.contains("oomguard_sd_notify_dropped_total "));
    }
}
