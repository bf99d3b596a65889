//! The rescan near the levels is bounded between full ones (`decide::victim::Ranker::
//! refresh_near`), seen from outside: a real `--dry-run` daemon of a test memory cgroup held
//! near its levels (not below them: it chooses nothing) counts its scans by kind in
//! `oomguard_scans_total`. Between full scans, every 5 s, the rescans every half second are
//! bounded; a burst of allocation larger than 1/40 of the scope's pages makes the next one full
//! at once.
//!
//! Run alone by `scripts/test.sh`: the bound is the machine's page allocation counter, which
//! the other tests' hogs move by GiBs (every rescan would be full beside them).

use std::time::{Duration, Instant};

use crate::fleet_util::{free_port, http_get};
use crate::run_cgroup::{hog, wait_rss};
use crate::util::{TestCgroup, require, start_daemon, tempdir, wait_line};

const MIB: u64 = 1 << 20;

/// `(bounded, full)` from the daemon's `oomguard_scans_total`.
fn scans(addr: std::net::SocketAddr) -> (u64, u64) {
    let r = http_get(addr, "/metrics").expect("scrape the daemon's metrics");
    let of = |kind: &str| -> u64 {
        let key = format!("oomguard_scans_total{{kind=\"{kind}\"}} ");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {key:?} in the exposition:\n{}", r.body)) as u64
    };
    (of("bounded"), of("full"))
}

/// The machine's page allocation counter (`/proc/vmstat` `pgalloc_*`), the bound's basis.
fn pgalloc() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .expect("/proc/vmstat")
        .lines()
        .filter(|l| l.starts_with("pgalloc_"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The last PID handed out (`/proc/loadavg`).
fn last_pid() -> i64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .expect("/proc/loadavg")
}

#[test]
#[ignore = "run alone by scripts/test.sh: other tests' hogs move the machine's page allocation counter, the bound's basis"]
fn near_the_levels_the_rescans_between_full_ones_are_bounded() {
    require(
        rustix::process::geteuid().is_root(),
        "root (a test memory cgroup)",
    );
    let Some(cg) = TestCgroup::new("near-rescans", 512 * MIB) else {
        return;
    };
    // No swap in the scope (a machine's swap would count in its pages, and make the burst
    // below less than 1/40 of them): on v1, a group whose limit binds at swappiness 0.
    std::fs::write(cg.dir.join("memory.swappiness"), "0").expect("memory.swappiness");
    // 300 MiB held by one process: about 210 MiB of the 512 stay available, below the near
    // mark (twice TERM: 300 MiB) and above TERM (150 MiB).
    let holder = hog(&cg, &["--name", "holder", "--max", "300M"]);
    wait_rss(&holder, 300 * MIB);
    // Scanned in /proc, not with the kernel's task iterator (whose every rescan is full): the
    // group's processes are fewer than 1 in ITERATOR_SHARE of the machine's threads.
    let threads: usize = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok())
        .expect("/proc/loadavg");
    let procs = cg.procs().len() + 1;
    assert!(
        procs * oomguard::decide::victim::ITERATOR_SHARE < threads,
        "the group's {procs} processes (with the burst's) are 1 in {} of the machine's {threads} threads or more: the daemon would scan them with the task iterator",
        oomguard::decide::victim::ITERATOR_SHARE
    );
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let scope = format!("cgroup:{}", cg.rel());
    let (_d, rx) = start_daemon(&[
        "--scope",
        &scope,
        "--dry-run",
        "--mem-min-size",
        "150M,60M",
        "--metrics",
        &listen,
        "--event-log",
        log.to_str().unwrap(),
    ]);
    wait_line(&rx, "guarding", Duration::from_secs(20));
    let addr: std::net::SocketAddr = listen.parse().unwrap();

    // Held still near the levels for 8 s: about 16 rescans, a full one every 5 s.
    let (pgalloc0, pid0) = (pgalloc(), last_pid());
    std::thread::sleep(Duration::from_secs(8));
    let (bounded, full) = scans(addr);
    let moved = format!(
        "meanwhile the machine allocated {} MiB and handed out {} PIDs",
        (pgalloc() - pgalloc0) * 4096 / MIB,
        last_pid() - pid0
    );
    eprintln!("in 8 s near the levels: {bounded} bounded and {full} full rescans; {moved}");
    assert!(
        bounded >= 8 && full >= 1 && bounded >= 3 * full,
        "in 8 s near the levels: {bounded} bounded and {full} full rescans (a full one every 5 s, bounded ones every half second between them; full ones also after 12.8 MiB allocated or 128 PIDs handed out on the machine: {moved})"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .all(|l| !l.contains("\"dry_run\"")),
        "the daemon chose a victim: the scope was below its levels, not near them"
    );

    // Right after a full rescan, 40 MiB allocated (more than 1/40 of the scope's 512 MiB):
    // the next rescan is full, long before the 5 s are up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let full_before = loop {
        let (_, f) = scans(addr);
        if f > full {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no full rescan within 10 s of the last one"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let since_full = Instant::now();
    let burst = hog(&cg, &["--name", "burst", "--max", "40M"]);
    wait_rss(&burst, 40 * MIB);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, f) = scans(addr);
        if f > full_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no full rescan within 3 s of 40 MiB allocated (the last full one {:?} before)",
            since_full.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = since_full.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "the full rescan after the burst came {took:?} after the last one: the periodic one, not the growth's"
    );
    drop(burst);
    drop(holder);
}
