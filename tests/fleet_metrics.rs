//! Metrics: the exposition passes `promtool check metrics`, and a real Prometheus server on
//! loopback scrapes it and answers queries for the series.
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use oomguard::decide::trigger::Levels;
use oomguard::record::metrics::Metrics;
use oomguard::record::{Observer, Sample, Wake};
use oomguard::sense::mem::MemState;

use crate::fleet_util::{free_port, have, http_get, urlencode, wait_for};
use crate::util::{Reaped, require, tempdir};

fn sample() -> Sample {
    Sample {
        mem: MemState {
            total_kb: 8 << 20,
            available_kb: 3 << 20,
            swap_total_kb: 1 << 20,
            swap_free_kb: 512 << 10,
        },
        levels: Levels {
            mem_term_kb: 800 << 10,
            mem_kill_kb: 400 << 10,
            swap_term_kb: 100 << 10,
            swap_kill_kb: 50 << 10,
        },
        psi_some: Some(3.0),
        psi_full: Some(1.0),
        psi_some_avg10: Some(2.5),
        psi_full_avg10: Some(0.5),
        wake: Wake::Timer,
        scan: Some(Duration::from_micros(1800)),
        scanned: 120,
        bounded: false,
        floor: false,
    }
}

/// A served registry fed with a sample and a kill, as the daemon would.
fn served() -> (Metrics, SocketAddr) {
    let mut m = Metrics::new();
    m.sample(&sample());
    m.record(&oomguard::record::event::Record::from_value(serde_json::json!({
        "time": "2026-11-30T18:00:00.000+00:00", "action": "kill", "scope": "system", "host": "h",
        "trigger": {"reason": "low_memory_kill"},
        "victim": {"pid": 4242, "comm": "hog", "rss_kb": 2048},
        "signals": [{"signal": "SIGKILL", "ok": true}],
        "outcome": {"freed_kb": 2000}
    })).unwrap());
    m.record(
        &oomguard::record::event::Record::from_value(
            serde_json::json!({"action": "dry_run", "trigger": {"reason": "pressure"}}),
        )
        .unwrap(),
    );
    let addr = m.serve("127.0.0.1:0").expect("serve metrics");
    (m, addr)
}

#[test]
fn exposition_is_served_as_0_0_4_and_promtool_accepts_it() {
    let (_m, addr) = served();
    let r = http_get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    assert_eq!(http_get(addr, "/nope").unwrap().status, 404);
    if !require(have("promtool"), "promtool (Debian package prometheus)") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        r.body
    );
}

/// Runs a query against Prometheus's HTTP API; the first sample's value, if any.
pub fn prom_query(prom: SocketAddr, q: &str) -> Option<(serde_json::Value, f64)> {
    let r = http_get(prom, &format!("/api/v1/query?query={}", urlencode(q))).ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    let first = v["data"]["result"].as_array()?.first()?.clone();
    let val = first["value"][1].as_str()?.parse().ok()?;
    Some((first["metric"].clone(), val))
}

/// Starts Prometheus on loopback scraping `target` every second. Returns the child and its
/// address once it is ready.
pub fn start_prometheus(target: SocketAddr, dir: &std::path::Path) -> (Reaped, SocketAddr) {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: oomguard\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("prometheus.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("start prometheus"),
    );
    let ready = wait_for(Duration::from_secs(30), || {
        http_get(addr, "/-/ready").ok().filter(|r| r.status == 200)
    });
    assert!(
        ready.is_some(),
        "prometheus did not become ready: {}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
    (child, addr)
}

#[test]
fn a_real_prometheus_scrapes_the_series() {
    if !require(have("prometheus"), "prometheus (Debian package prometheus)") {
        return;
    }
    let (_m, addr) = served();
    let d = tempdir();
    let (_prom, prom) = start_prometheus(addr, d.path());
    let up = wait_for(Duration::from_secs(30), || {
        prom_query(prom, "up{job=\"oomguard\"}").filter(|(_, v)| *v == 1.0)
    });
    assert!(up.is_some(), "prometheus never scraped the target up");
    let (_, avail) = prom_query(prom, "oomguard_memory_available_bytes").unwrap();
    assert_eq!(avail, (3u64 << 30) as f64);
    let (labels, n) = prom_query(prom, "oomguard_kills_total{reason=\"low_memory_kill\"}").unwrap();
    assert_eq!(n, 1.0);
    assert_eq!(labels["action"], "sigkill");
    let (labels, _) = prom_query(prom, "oomguard_last_victim_info").unwrap();
    assert_eq!(labels["comm"], "hog");
    assert_eq!(labels["pid"], "4242");
    let (_, q) = prom_query(
        prom,
        "histogram_quantile(0.5, oomguard_scan_duration_seconds_bucket)",
    )
    .unwrap();
    assert!(q > 0.001 && q <= 0.0025, "{q}");
    let (_, v) = prom_query(prom, "oomguard_build_info").unwrap();
    assert_eq!(v, 1.0);
    let (_, v) = prom_query(prom, "oomguard_dry_run_decisions_total").unwrap();
    assert_eq!(v, 1.0);
}
