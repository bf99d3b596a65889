//! Scopes of any size and one guard per scope, against real memory cgroups (v1 here).
//!
//! - A scope of 10 000 idle processes and one hog: `cgroup.procs` hands out one page (~950 PIDs)
//!   per read; the daemon and `top` must still see every process, and the daemon must kill the
//!   hog, not a sleeper and not after the kernel.
//! - A second `oomguard run` on a scope that is guarded refuses to start (exit 1) naming the
//!   first one's PID; another scope starts; after the first exits, the scope is free again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Reaped, TestCgroup, bin, hog_bin, start_daemon, tempdir, wait_line};

const MIB: u64 = 1 << 20;

fn dry_run_args<'a>(scope: &'a str, log: &'a str, lock_dir: &'a str) -> Vec<&'a str> {
    vec![
        "--dry-run",
        "--scope",
        scope,
        "--event-log",
        log,
        "--lock-dir",
        lock_dir,
        "--no-protect-scan",
    ]
}

#[test]
fn a_second_guard_on_a_scope_refuses_to_start_naming_the_first() {
    let Some(a) = TestCgroup::new("lock-a", 64 * MIB) else {
        return;
    };
    let Some(b) = TestCgroup::new("lock-b", 64 * MIB) else {
        return;
    };
    let d = tempdir();
    let locks = d.path().join("locks");
    let (log_a, log_b) = (d.path().join("a.jsonl"), d.path().join("b.jsonl"));
    let (scope_a, scope_b) = (format!("cgroup:{}", a.rel()), format!("cgroup:{}", b.rel()));
    let (la, lb, ld) = (
        log_a.to_str().unwrap(),
        log_b.to_str().unwrap(),
        locks.to_str().unwrap(),
    );

    let (mut first, rx) = start_daemon(&dry_run_args(&scope_a, la, ld));
    wait_line(&rx, "guarding", Duration::from_secs(30));

    // The same group, spelled as its directory: refused, exit 1, the first one's PID named.
    let dir_form = format!("cgroup:{}", a.dir.display());
    let out = Command::new(bin())
        .arg("run")
        .args(dry_run_args(&dir_form, la, ld))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("PID {}", first.pid())) && err.contains(&a.rel()),
        "{err}"
    );
    assert!(!err.contains("guarding"), "{err}");

    // Another scope starts beside it.
    let (_second, rx_b) = start_daemon(&dry_run_args(&scope_b, lb, ld));
    wait_line(&rx_b, "guarding", Duration::from_secs(30));

    // Once the first has exited, the scope is free again.
    crate::util::interrupt_and_reap(&mut first.0);
    let (_third, rx3) = start_daemon(&dry_run_args(&scope_a, la, ld));
    wait_line(&rx3, "guarding", Duration::from_secs(30));
    assert!(first.0.try_wait().unwrap().is_some());
}

/// Starts `n` idle processes in `cg`: shells in groups of 100, each process blocked opening a
/// FIFO nobody writes (no CPU, ~150 KiB each). Returns once all are in the group.
fn sleepers(cg: &TestCgroup, fifo: &Path, n: usize) {
    let before = cg.procs().len();
    let script = format!(
        "j=0; while [ $j -lt {groups} ]; do (i=0; while [ $i -lt 99 ]; do read _ < '{f}' & i=$((i+1)); done; read _ < '{f}') & j=$((j+1)); done",
        groups = n / 100,
        f = fifo.display()
    );
    let mut sh = Reaped(cg.spawn(Command::new("sh").args(["-c", &script])));
    sh.wait_timeout(Duration::from_secs(300))
        .expect("starting the sleepers took over 5 min");
    let deadline = Instant::now() + Duration::from_secs(120);
    while cg.procs().len() < before + n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} sleepers started",
            cg.procs().len() - before
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn usage(cg: &TestCgroup) -> u64 {
    std::fs::read_to_string(cg.dir.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn ten_thousand_processes_are_all_seen_and_the_hog_among_them_is_killed() {
    // Limit raised once the sleepers are in (they take ~1.5 GiB of kernel memory).
    let Some(cg) = TestCgroup::new("scale10k", 4096 * MIB) else {
        return;
    };
    let d = tempdir();
    let fifo = d.path().join("never");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    // Half the sleepers, the hog, the other half: the hog's PID sorts far past the first page
    // of cgroup.procs.
    sleepers(&cg, &fifo, 5000);
    let hog_args = ["--name", "bighog", "--max", "150M", "--hold", "10m"];
    let mut hog = Reaped(
        cg.spawn(
            Command::new(hog_bin())
                .args(hog_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ),
    );
    crate::run_cgroup::wait_rss(&hog, 150 * MIB);
    sleepers(&cg, &fifo, 5000);
    let mut procs = cg.procs();
    procs.sort();
    let at = procs.iter().position(|&p| p == hog.pid()).unwrap();
    eprintln!(
        "{} processes; the hog is number {at} in PID order",
        procs.len()
    );
    assert!(procs.len() > 10_000);

    // `top` on the scope lists every process.
    let scope = format!("cgroup:{}", cg.rel());
    let out = crate::util::oomguard(&["top", "--scope", &scope, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = top["processes"].as_array().expect("processes array");
    assert!(rows.len() > 10_000, "top listed {} processes", rows.len());
    assert_eq!(rows[0]["pid"], hog.pid(), "top's first: {}", rows[0]);

    // The daemon: 200 MiB of room left; its kill level 100 MiB. A second hog takes it there.
    let limit = usage(&cg) + 200 * MIB;
    std::fs::write(cg.dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
    let log = d.path().join("events.jsonl");
    let locks = d.path().join("locks");
    let (_daemon, rx) = start_daemon(&[
        "--scope",
        &scope,
        "--event-log",
        log.to_str().unwrap(),
        "--lock-dir",
        locks.to_str().unwrap(),
        "--mem-min-size",
        "100M,60M",
        "--no-protect-scan",
    ]);
    wait_line(&rx, "guarding", Duration::from_secs(120));
    let mut grow = Reaped(
        cg.spawn(
            Command::new(hog_bin())
                .args(["--name", "grower", "--max", "120M", "--rate", "20M"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ),
    );
    let st = hog.wait_timeout(Duration::from_secs(120));
    // The record follows the kill's outcome.
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    assert!(st.is_some(), "the big hog was not killed: {:?}", read());
    let deadline = Instant::now() + Duration::from_secs(20);
    let kill = loop {
        if let Some(k) = read().into_iter().find(|r| r["action"] == "kill") {
            break k;
        }
        assert!(Instant::now() < deadline, "no kill record: {:?}", read());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(kill["victim"]["pid"], hog.pid(), "{kill}");
    assert_eq!(cg.kernel_oom_kills(), 0, "the kernel's OOM killer fired");
    let _ = grow.0.kill();
}
