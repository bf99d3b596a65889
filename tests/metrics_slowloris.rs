//! The metrics endpoint of a real `oomguard run` under attack (issue 17, item 5): slowloris
//! clients that trickle a request and never finish it, and a flood of idle connections. A real
//! scrape of /metrics and /healthz still answers within 1 s (the bound), the slow
//! clients are cut once their whole-request deadline has passed (not before), every idle
//! connection is closed by the server, and the connection cap was hit on the way.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::record::metrics::{MAX_CONNECTIONS, REQUEST_DEADLINE};

use crate::fleet_util::{free_port, http_get, wait_for};
use crate::util::{TestCgroup, bin, interrupt_and_reap, tempdir};

const MIB: u64 = 1 << 20;
const SLOW: usize = 5;
const IDLE: usize = 200;

/// The daemon under test; SIGINT and reaped on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        interrupt_and_reap(&mut self.0);
    }
}

/// A dry-run guard on an empty test cgroup, serving metrics on `addr`; returns once /healthz
/// answers.
fn start(cg: &TestCgroup, addr: SocketAddr, dir: &Path) -> Daemon {
    let errf = dir.join("stderr.txt");
    let d = Daemon(
        Command::new(bin())
            .args([
                "run",
                "--dry-run",
                "--scope",
                &format!("cgroup:{}", cg.rel()),
            ])
            .args(["--metrics", &addr.to_string(), "--event-log"])
            .arg(dir.join("events.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errf).unwrap())
            .spawn()
            .expect("start oomguard run"),
    );
    let up = wait_for(Duration::from_secs(20), || {
        http_get(addr, "/healthz").ok().filter(|r| r.status == 200)
    });
    assert!(
        up.is_some(),
        "the daemon never served /healthz: {}",
        std::fs::read_to_string(&errf).unwrap_or_default()
    );
    d
}

/// A slowloris client: one byte of a never-ending request head every 100 ms. Returns how long
/// after connecting the server cut it.
fn slowloris(addr: SocketAddr) -> Result<Duration, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let start = Instant::now();
    s.set_nonblocking(true).unwrap();
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut i = 0;
    while start.elapsed() < REQUEST_DEADLINE + Duration::from_secs(15) {
        let byte = head.get(i).copied().unwrap_or(b'a');
        i += 1;
        match s.write(&[byte]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return Ok(start.elapsed()),
        }
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return Ok(start.elapsed()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "never cut ({i} bytes sent over {:?})",
        start.elapsed()
    ))
}

/// The value of a series line `name` (with its labels) in an exposition text.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn a_real_scrape_answers_within_1s_through_slowloris_clients_and_200_idle_connections() {
    let Some(cg) = TestCgroup::new("metrics-slowloris", 100 * MIB) else {
        return;
    };
    let d = tempdir();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _daemon = start(&cg, addr, d.path());

    // 200 idle connections (opened from 10 threads; each connect may wait up to 5 s).
    let idle: Vec<TcpStream> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                sc.spawn(move || {
                    (0..IDLE / 10)
                        .filter_map(|_| {
                            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let slow: Vec<_> = (0..SLOW)
        .map(|_| std::thread::spawn(move || slowloris(addr)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // A real scrape, while the slow clients are still trickling.
    for (path, what) in [
        ("/metrics", "oomguard_memory_available_bytes"),
        ("/healthz", "ok"),
    ] {
        let t = Instant::now();
        let r = http_get(addr, path);
        let took = t.elapsed();
        let r = r.unwrap_or_else(|e| panic!("scraping {path} failed after {took:?}: {e}"));
        assert_eq!(r.status, 200, "{path}: {}", r.headers);
        assert!(r.body.contains(what), "{path}: {}", r.body);
        assert!(
            took < Duration::from_secs(1),
            "{path} took {took:?} with {SLOW} slow and {} idle clients connected",
            idle.len()
        );
    }
    assert_eq!(idle.len(), IDLE, "not every idle connection got in");

    // The slow clients are cut once their whole-request deadline has passed, not before.
    for h in slow {
        let cut = h.join().unwrap().expect("a slowloris client");
        assert!(
            cut + Duration::from_millis(100) >= REQUEST_DEADLINE,
            "cut before the deadline: {cut:?}"
        );
        assert!(
            cut <= REQUEST_DEADLINE + Duration::from_secs(5),
            "cut long after the deadline: {cut:?}"
        );
    }
    // Every idle connection was closed by the server (the oldest to make room, the rest at
    // their deadline, which has passed for all of them by now).
    for (i, mut s) in idle.into_iter().enumerate() {
        s.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(s.read(&mut b), Ok(0)),
            "idle connection {i} is still open"
        );
    }
    let m = http_get(addr, "/metrics").unwrap().body;
    let evicted = value(
        &m,
        "oomguard_metrics_connections_closed_total{reason=\"evicted\"}",
    );
    let late = value(
        &m,
        "oomguard_metrics_connections_closed_total{reason=\"deadline\"}",
    );
    assert!(
        evicted >= 1.0,
        "{} connections at once never hit the cap of {MAX_CONNECTIONS}",
        IDLE + SLOW
    );
    assert!(late >= SLOW as f64, "{late}");
    assert!(
        evicted + late >= (IDLE + SLOW) as f64,
        "evicted {evicted} + late {late}"
    );
}
