//! systemd's notify socket cannot stall the guard (issue 17, item 2): `NOTIFY_SOCKET` points at
//! a datagram socket the test binds, fills and does not read, with the watchdog on. The daemon
//! goes on killing hogs (never the kernel), writes its records, counts the dropped messages in
//! its metrics, and gets `READY=1` through once the socket is read again.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fleet_util::{free_port, http_get, wait_for};
use crate::run_cgroup::hog;
use crate::util::{TestCgroup, bin, interrupt_and_reap, tempdir};

const MIB: u64 = 1 << 20;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        interrupt_and_reap(&mut self.0);
    }
}

fn kill_records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["action"] == "kill")
        .collect()
}

/// `oomguard run` on `cg` with the event log `log`, systemd's notify socket at `sock` and the
/// watchdog on (`WATCHDOG_USEC`), and `args`.
fn notified_daemon(
    cg: &TestCgroup,
    log: &Path,
    sock: &Path,
    watchdog_usec: &str,
    args: &[&str],
) -> Daemon {
    Daemon(
        Command::new(bin())
            .args(["run", "--scope", &format!("cgroup:{}", cg.rel())])
            .args(args)
            .arg("--event-log")
            .arg(log)
            .env("NOTIFY_SOCKET", sock)
            .env("WATCHDOG_USEC", watchdog_usec)
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start oomguard run"),
    )
}

/// Binds a datagram socket at `path` and fills its queue; returns it and how many it holds.
fn full_socket(path: &Path) -> (UnixDatagram, usize) {
    let sock = UnixDatagram::bind(path).unwrap();
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while filler.send_to(b"FILLER=1\n", path).is_ok() {
        queued += 1;
        assert!(queued < 100_000, "the socket never filled");
    }
    assert!(queued > 0);
    (sock, queued)
}

#[test]
fn a_notify_socket_nobody_reads_does_not_stall_the_guard() {
    let Some(cg) = TestCgroup::new("sdnotify-full", 400 * MIB) else {
        return;
    };
    let d = tempdir();
    let log = d.path().join("events.jsonl");
    let sock_path = d.path().join("notify.sock");
    let (systemd, queued) = full_socket(&sock_path);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon = notified_daemon(&cg, &log, &sock_path, "200000", &["--metrics", &addr]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "the daemon never opened its log");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));

    // Three hogs in a row, each killed by oomguard while its pings have nowhere to go.
    for i in 0..3 {
        let mut h = hog(&cg, &["--name", "hog", "--max", "2G"]);
        let st = h
            .wait_timeout(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("hog {i} was not killed within 60 s"));
        assert!(
            matches!(st.signal(), Some(libc::SIGTERM) | Some(libc::SIGKILL)),
            "hog {i} ended by {st:?}"
        );
        assert_eq!(
            cg.kernel_oom_kills(),
            0,
            "hog {i}: the kernel's OOM killer had to act (the guard was stalled)"
        );
        let rec = wait_for(Duration::from_secs(10), || {
            kill_records(&log)
                .into_iter()
                .find(|r| r["victim"]["pid"] == h.pid())
        });
        assert!(rec.is_some(), "no kill record for hog {i}");
    }
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon died");

    let dropped = wait_for(Duration::from_secs(10), || {
        let m = http_get(addr.parse().unwrap(), "/metrics").ok()?.body;
        m.lines().find_map(|l| {
            l.strip_prefix("oomguard_sd_notify_dropped_total ")?
                .parse::<f64>()
                .ok()
        })
    })
    .expect("oomguard_sd_notify_dropped_total is served");
    assert!(dropped >= 1.0, "{dropped}");

    // systemd reads again: the READY=1 that was dropped at start comes through.
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    for _ in 0..queued + 100 {
        let n = systemd.recv(&mut buf).expect("a notify datagram");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == "READY=1") {
            return;
        }
        seen.push_str(&msg);
    }
    panic!("READY=1 never arrived: {seen}");
}

/// systemd's watchdog is pinged while a kill is under way: a victim that ignores SIGTERM keeps
/// the loop in the escalation for the whole grace time (up to 60 s may be given; the shipped
/// unit's `WatchdogSec` is 30 s), and without pings from there systemd would abort the daemon
/// in the middle of the kill.
#[test]
fn the_watchdog_is_pinged_through_a_long_term_grace() {
    let Some(cg) = TestCgroup::new("sdnotify-grace", 400 * MIB) else {
        return;
    };
    let d = tempdir();
    let log = d.path().join("events.jsonl");
    let sock_path = d.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&sock_path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Pings every 100 ms (a quarter of 400 ms) while the daemon samples.
    let _daemon = notified_daemon(
        &cg,
        &log,
        &sock_path,
        "400000",
        &["--mem-min-size", "200M,20M", "--term-grace", "3s"],
    );
    let pings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (pings, stop) = (pings.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = systemd.recv(&mut buf)
                    && String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == "WATCHDOG=1")
                {
                    pings.lock().unwrap().push(Instant::now());
                }
            }
        })
    };
    let ready = wait_for(Duration::from_secs(20), || {
        (pings.lock().unwrap().len() >= 2).then_some(())
    });
    assert!(ready.is_some(), "no watchdog pings at start");
    // 300 MiB of 400 held: about 100 MiB available, below the SIGTERM level (200M) and far
    // above the SIGKILL level (20M), so only the grace time ends the victim.
    let mut h = hog(
        &cg,
        &["--name", "gracehog", "--max", "300M", "--ignore-term"],
    );
    let start = Instant::now();
    let st = h
        .wait_timeout(Duration::from_secs(30))
        .expect("the hog was not killed");
    let end = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
    assert!(
        end - start >= Duration::from_secs(3),
        "the hog died after {:?}, before the grace time was over",
        end - start
    );
    let rec = wait_for(Duration::from_secs(10), || {
        kill_records(&log)
            .into_iter()
            .find(|r| r["victim"]["pid"] == h.pid())
    })
    .expect("no kill record");
    assert_eq!(rec["signals"][0]["signal"], "SIGTERM", "{rec}");
    // The longest gap between two pings from the hog's start to its end.
    let pings = pings.lock().unwrap();
    let within: Vec<Instant> = pings
        .iter()
        .copied()
        .filter(|&t| t >= start && t <= end)
        .collect();
    let gap = within
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(end - start);
    assert!(
        gap < Duration::from_secs(1),
        "no watchdog ping for {gap:?} during the kill ({} pings in {:?})",
        within.len(),
        end - start
    );
}
