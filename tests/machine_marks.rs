//! The whole machine's usage marks (cgroup v1): the system-wide guard registers thresholds on
//! the v1 hierarchy's root group, and the kernel wakes it when the machine's memory use rises
//! by the headroom to a level, whatever the speed (`daemon::wake`). Checked on the real kernel:
//! a hog in a test memory cgroup raises the root group's usage past the mark. The guard of the
//! second test runs `--dry-run` (it kills nothing); the levels only place the marks.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::daemon::wake::{Waker, machine_marks};
use oomguard::decide::trigger::Levels;
use oomguard::record::Wake;
use oomguard::sense::Root;
use oomguard::sense::scope::Scope;
use oomguard::values::{PsiKind, ScopeSpec};

use crate::fleet_util::{free_port, http_get};
use crate::util::{
    TestCgroup, hog_bin, own_v1_memory_cgroup, require, start_daemon, tempdir, wait_line,
};

const ROOT_USAGE: &str = "/sys/fs/cgroup/memory/memory.usage_in_bytes";

fn root_usage() -> u64 {
    std::fs::read_to_string(ROOT_USAGE)
        .expect("the v1 root group's usage")
        .trim()
        .parse()
        .unwrap()
}

fn v1_root() -> bool {
    own_v1_memory_cgroup().is_some()
        && std::path::Path::new("/sys/fs/cgroup/memory/cgroup.sane_behavior").exists()
}

/// A hog of `size` in its own test group (limit `size` + 256 MiB), started and left holding.
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
    let mut scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
    let mem = scope.memory().unwrap();
    // The near mark (twice TERM) 512 MiB above the root group's usage now.
    let near_kb = mem
        .available_kb
        .checked_sub(512 << 10)
        .expect("512 MiB available");
    let levels = Levels {
        mem_term_kb: near_kb / 2,
        mem_kill_kb: near_kb / 4,
        swap_term_kb: 0,
        swap_kill_kb: 0,
    };
    let usage0 = root_usage();
    let mut waker = Waker::new(&mut scope, &levels, &mem, PsiKind::Some, None);
    assert!(
        waker.watches_machine_usage(),
        "no marks on the v1 root group: {:?}",
        waker.notes
    );
    assert!(
        waker
            .describe()
            .contains("usage thresholds (v1 root group)"),
        "{}",
        waker.describe()
    );
    let marks = machine_marks(usage0, mem.available_kb, &levels);
    assert_eq!(marks.len(), 3, "{marks:?}");
    assert_eq!(marks[0], usage0 + (512 << 20));
    // Nothing has risen yet: a zero wait is the timer's.
    assert_eq!(waker.wait(Duration::ZERO), Wake::Timer);

    let cg = TestCgroup::new("marks", 1280 << 20).expect("a test memory cgroup");
    let mut h = hog(&cg, "1G");
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
        "the hog's 1 GiB did not wake the waker (root usage {usage0} -> {usage1}, near mark {})",
        marks[0]
    );
    assert!(
        usage1 + (64 << 20) >= marks[0],
        "woke {} MiB below the mark",
        (marks[0] - usage1) >> 20
    );
}

#[test]
fn a_system_guard_wakes_on_a_machine_mark() {
    require(v1_root(), "the cgroup v1 memory controller's root group");
    let mem = Scope::resolve(&Root::default(), &ScopeSpec::System)
        .unwrap()
        .memory()
        .unwrap();
    // TERM so that twice TERM lies 512 MiB under available: the guard is far (its TERM level
    // half of available away) and its near mark 512 MiB above the machine's usage.
    let term_mib = (mem
        .available_kb
        .checked_sub(512 << 10)
        .expect("512 MiB available")
        / 2)
        >> 10;
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
    ]);
    let start = wait_line(&rx, "guarding system", Duration::from_secs(10));
    assert!(
        start.contains("usage thresholds (v1 root group)"),
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

    let cg = TestCgroup::new("guardmarks", 1280 << 20).expect("a test memory cgroup");
    let mut h = hog(&cg, "1G");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = before;
    while Instant::now() < deadline && after <= before {
        std::thread::sleep(Duration::from_millis(200));
        after = threshold_wakes();
    }
    let _ = h.kill();
    let _ = h.wait();
    drop(daemon);
    assert!(
        after > before,
        "no wake-up by a usage mark while the hog grew 1 GiB past the near mark (threshold wake-ups {before} -> {after})"
    );
}
