//! The whole machine's usage marks (cgroup v1): the system-wide guard registers thresholds on
//! the v1 hierarchy's root group, and the kernel wakes it when the machine's memory use has
//! taken free memory down to a level (plus a margin), whatever the speed (`daemon::wake`).
//! Checked on the real kernel: a hog in a test memory cgroup raises the root group's usage past
//! the near mark, placed 1536 MiB above it. The guard of the second test runs `--dry-run` (it
//! kills nothing); the levels only place the marks.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::daemon::wake::Waker;
use oomguard::decide::trigger::Levels;
use oomguard::record::Wake;
use oomguard::sense::Root;
use oomguard::sense::meminfo::Meminfo;
use oomguard::sense::scope::Scope;
use oomguard::values::ScopeSpec;

use crate::fleet_util::{free_port, http_get};
// The two tests move the machine's usage by GiBs: one at a time (and not beside
// `idle_floor`), so one's hog does not arm or fire the other's marks.
use crate::util::{
    MACHINE_MEMORY, TestCgroup, hog_bin, own_v1_memory_cgroup, require, start_daemon, tempdir,
    wait_line,
};

const ROOT_USAGE: &str = "/sys/fs/cgroup/memory/memory.usage_in_bytes";

fn root_usage() -> u64 {
    std::fs::read_to_string(ROOT_USAGE)
        .expect("the v1 root group's usage")
        .trim()
        .parse()
        .unwrap()
}

/// Levels whose near mark (twice TERM) lies 1536 MiB of use away: free memory minus the margin
/// (1/64 of RAM) minus 1536 MiB is twice TERM.
fn levels_1536m_away() -> Levels {
    let mi = Meminfo::parse(&std::fs::read("/proc/meminfo").unwrap()).unwrap();
    let (free, total) = (mi.mem_free_kb, mi.mem_total_kb);
    let near = free
        .checked_sub(total / 64 + (1536 << 10))
        .filter(|&n| n >= 2 << 20)
        .expect("2 GiB of free memory above 1536 MiB and 1/64 of RAM");
    Levels {
        mem_term_kb: near / 2,
        mem_kill_kb: near / 4,
        swap_term_kb: 0,
        swap_kill_kb: 0,
    }
}

fn v1_root() -> bool {
    own_v1_memory_cgroup().is_some()
        && std::path::Path::new("/sys/fs/cgroup/memory/cgroup.sane_behavior").exists()
}

/// A hog of `size` in its own test group, started and left holding.
fn hog(cg: &TestCgroup, size: &str) -> std::process::Child {
    cg.spawn(
        Command::new(hog_bin())
            .args(["--name", "markhog", "--max", size])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

#[test]
fn a_machine_mark_wakes_the_waker_when_memory_use_rises() {
    require(v1_root(), "the cgroup v1 memory controller's root group");
    let _one = MACHINE_MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let mut scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
    let mem = scope.memory().unwrap();
    let levels = levels_1536m_away();
    let usage0 = root_usage();
    let mut waker = Waker::new(&mut scope, &levels, &mem, None, None);
    assert!(
        waker.watches_machine_usage(),
        "no marks on the v1 root group: {:?}",
        waker.notes
    );
    assert!(
        waker.describe().contains("usage marks (v1 root group)"),
        "{}",
        waker.describe()
    );
    // Nothing has risen yet: a zero wait is the timer's.
    assert_eq!(waker.wait(Duration::ZERO), Wake::Timer);

    let cg = TestCgroup::new("marks", 2304 << 20).expect("a test memory cgroup");
    let mut h = hog(&cg, "2G");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut why = Wake::Timer;
    while Instant::now() < deadline && why != Wake::Threshold {
        why = waker.wait(Duration::from_secs(1));
    }
    let usage1 = root_usage();
    let _ = h.kill();
    let _ = h.wait();
    assert_eq!(
        why,
        Wake::Threshold,
        "the hog's 2 GiB did not wake the waker (root usage {} -> {} MiB, near mark about 1536 MiB up)",
        usage0 >> 20,
        usage1 >> 20
    );
    // Woken by the rise, not before it: about 1536 MiB of use (other tests move it too).
    assert!(
        usage1 >= usage0 + (768 << 20),
        "woke after only {} MiB more use",
        usage1.saturating_sub(usage0) >> 20
    );
}

#[test]
fn a_system_guard_wakes_on_a_machine_mark() {
    require(v1_root(), "the cgroup v1 memory controller's root group");
    let _one = MACHINE_MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    // TERM so that twice TERM lies 1536 MiB of use below free memory (and the margin): the
    // guard is far, and its near mark 1536 MiB above the machine's usage.
    let term_mib = levels_1536m_away().mem_term_kb >> 10;
    let dir = tempdir();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (daemon, rx) = start_daemon(&[
        "--dry-run",
        "--mem-min-size",
        &format!("{term_mib}M"),
        "--event-log",
        dir.path().join("events.jsonl").to_str().unwrap(),
        "--lock-dir",
        dir.path().to_str().unwrap(),
        "--metrics",
        &addr.to_string(),
        "-v",
    ]);
    let start = wait_line(&rx, "guarding system", Duration::from_secs(10));
    assert!(
        start.contains("usage marks (v1 root group)"),
        "start-up line: {start}"
    );
    let threshold_wakes = || {
        let body = http_get(addr, "/metrics").expect("scrape").body;
        body.lines()
            .find(|l| l.starts_with("oomguard_wakeups_total{cause=\"threshold\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = threshold_wakes();

    let cg = TestCgroup::new("guardmarks", 2304 << 20).expect("a test memory cgroup");
    let mut h = hog(&cg, "2G");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = before;
    while Instant::now() < deadline && after <= before {
        std::thread::sleep(Duration::from_millis(200));
        after = threshold_wakes();
    }
    let _ = h.kill();
    let _ = h.wait();
    drop(daemon);
    let said: Vec<String> = rx.try_iter().collect();
    assert!(
        after > before,
        "no wake-up by a usage mark while the hog grew 2 GiB, past the near mark (threshold wake-ups {before} -> {after}); the guard said:\n{}",
        said.join("\n")
    );
}
