//! The one victim order: `top`'s next victim is the daemon's choice on the same process table
//! (rules, immunity, exact ties), and a dry-run daemon among many equal processes names one
//! stable would-be victim, once per 10 s while the trigger holds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::decide::policy::{Policy, Rule, RuleKind};
use oomguard::decide::rank;
use oomguard::decide::victim;
use oomguard::sense::Root;
use oomguard::sense::procs::ProcReader;
use oomguard::sense::scope::Scope;
use oomguard::values::ScopeSpec;
use serde_json::Value;

use crate::util::{Reaped, TestCgroup, bin, interrupt_and_reap, tempdir};

/// Writes one fake process under `root/proc/PID`.
#[allow(clippy::too_many_arguments)]
fn proc(
    root: &Path,
    pid: i32,
    comm: &str,
    cmdline: &str,
    flags: u32,
    start: u64,
    rss: u64,
    adj: i16,
) {
    let d = root.join(format!("proc/{pid}"));
    std::fs::create_dir_all(&d).unwrap();
    let state = if comm == "zombie" { 'Z' } else { 'S' };
    std::fs::write(
        d.join("stat"),
        format!("{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {start} 100000 {rss} 18446744073709551615 0 0\n"),
    )
    .unwrap();
    std::fs::write(d.join("statm"), format!("1000 {rss} 10 1 0 50 0\n")).unwrap();
    let mm = if state == 'Z' || flags & 0x0020_0000 != 0 {
        ""
    } else {
        "VmSize:\t 4000 kB\n"
    };
    std::fs::write(
        d.join("status"),
        format!("Name:\t{comm}\nUid:\t1000\t1000\t1000\t1000\n{mm}VmPTE:\t 8 kB\nVmSwap:\t 0 kB\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"),
    )
    .unwrap();
    std::fs::write(d.join("oom_score_adj"), format!("{adj}\n")).unwrap();
    std::fs::write(d.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
    std::fs::write(d.join("cgroup"), "0::/\n").unwrap();
}

/// A machine with init, a kernel thread, a zombie, an adj −1000 giant, a guard daemon (the
/// daemon under test: its PID is this process's), rule targets and many exact ties.
fn machine(root: &Path) {
    std::fs::create_dir_all(root.join("proc/self")).unwrap();
    std::fs::write(
        root.join("proc/meminfo"),
        "MemTotal: 4000000 kB\nMemAvailable: 100000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    )
    .unwrap();
    std::fs::write(root.join("proc/self/mountinfo"), "").unwrap();
    let me = std::process::id() as i32;
    proc(root, 1, "init", "/sbin/init", 0, 1, 900_000, 0);
    proc(root, 2, "kthreadd", "", 0x0020_0000, 2, 0, 0);
    proc(root, 3, "zombie", "", 0, 3, 0, 0);
    proc(root, 4, "giant", "giant", 0, 4, 800_000, -1000);
    proc(
        root,
        me,
        "oomguard",
        "oomguard run --dry-run",
        0,
        5,
        700_000,
        0,
    );
    // sshd is the largest candidate but protected.
    proc(root, 10, "sshd", "sshd -D", 0, 10, 600_000, 0);
    // Avoided: large but shifted down by 300 × 1000 pages.
    proc(root, 11, "postgres", "postgres", 0, 11, 400_000, 0);
    // Preferred: small but shifted up to 300 000 + 1 002.
    proc(root, 12, "renderer", "renderer", 0, 12, 1_000, 0);
    // Twenty equal workers, the last ten started in the same tick: points 250 002 each, with
    // adj 50 → 300 002, level with nothing else; the tie-break decides among them.
    for i in 0..20 {
        let start = if i < 10 { 100 + i as u64 } else { 500 };
        proc(
            root,
            200 + i * 7 % 20,
            "worker",
            "worker",
            0,
            start,
            250_000,
            50,
        );
    }
}

fn policy() -> Policy {
    Policy {
        rules: vec![
            Rule::name_only(RuleKind::Protect, "^sshd$").unwrap(),
            Rule::name_only(RuleKind::Avoid, "^postgres$").unwrap(),
            Rule::name_only(RuleKind::Prefer, "^renderer$").unwrap(),
        ],
    }
}

/// The daemon's choice and its candidates, best first.
fn daemon_choice(root: &Root, policy: &Policy) -> Vec<i32> {
    let mut reader = ProcReader::open(root).unwrap();
    let mut scope = Scope::resolve(root, &ScopeSpec::System).unwrap();
    let page_kb = reader.page_kb;
    let mut r = victim::Ranker::new(page_kb, false);
    let totalpages = 4_000_000 / page_kb;
    r.refresh(
        &mut reader,
        &mut scope,
        policy,
        victim::ScanBasis {
            totalpages,
            ..Default::default()
        },
    );
    let sel = r.select(&mut reader, policy, 0);
    let v = sel.victim.expect("the daemon chooses someone");
    let pids: Vec<i32> = sel.candidates.iter().map(|c| c.pid).collect();
    assert_eq!(pids[0], v.pid);
    pids
}

/// `top`'s order of the processes it may choose, best first.
fn top_order(root: &Root, policy: &Policy) -> Vec<i32> {
    let scope = Scope::resolve(root, &ScopeSpec::System).unwrap();
    let mut r = rank::Ranker::new(root, scope, policy.clone()).unwrap();
    let snap = r.snapshot().unwrap();
    let next = snap.next_victim().expect("top names a next victim").pid;
    let order: Vec<i32> = snap
        .procs
        .iter()
        .filter(|p| p.effective.is_some())
        .map(|p| p.pid)
        .collect();
    assert_eq!(order[0], next);
    order
}

#[test]
fn tops_next_victim_is_the_daemons_choice_on_the_same_table() {
    let dir = tempdir();
    machine(dir.path());
    let root = Root::new(dir.path());
    let policy = policy();
    let me = std::process::id() as i32;
    // Take the winner away, one after another: each time both agree on the next one (and on
    // the daemon's whole candidate list), through the tie among the workers, the preferred
    // renderer and the avoided postgres.
    let mut taken = Vec::new();
    for _ in 0..14 {
        let daemon = daemon_choice(&root, &policy);
        let top = top_order(&root, &policy);
        assert_eq!(
            daemon[..],
            top[..daemon.len()],
            "daemon {daemon:?} vs top {top:?}"
        );
        for never in [1, 2, 3, 4, me, 10] {
            assert!(!top.contains(&never), "{never} is never chosen: {top:?}");
        }
        taken.push(daemon[0]);
        std::fs::remove_dir_all(dir.path().join(format!("proc/{}", daemon[0]))).unwrap();
    }
    // The preferred renderer (301 002) first; then the ten workers of tick 500 (300 002 each),
    // highest PID first; then the earlier workers, most recent first.
    assert_eq!(taken[0], 12, "the preferred renderer first: {taken:?}");
    let workers_500: Vec<i32> = {
        let mut v: Vec<i32> = (10..20).map(|i| 200 + i * 7 % 20).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    };
    assert_eq!(taken[1..11], workers_500[..], "{taken:?}");
    let early: Vec<i32> = (0..3).rev().map(|i| 200 + (7 + i) * 7 % 20).collect();
    assert_eq!(taken[11..14], early[..], "{taken:?}");
}

/// (score in pages, start time, PID) of a process, as oomguard's order sees it (adj 0).
fn key(pid: i32) -> Option<(i64, u64, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (start, rss): (u64, i64) = (f[19].parse().ok()?, f[21].parse().ok()?);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let page_kb = rustix::param::page_size() as i64 / 1024;
    Some((rss + (kb("VmPTE:") + kb("VmSwap:")) / page_kb, start, pid))
}

/// Dry run with the trigger held over forty equal processes: one record when it first fires,
/// the next only after 10 s, the same would-be victim in both.
#[test]
fn dry_run_among_equal_processes_writes_once_per_ten_seconds() {
    // A level above usage: the whole limit, so any usage holds the trigger.
    let Some(cg) = TestCgroup::new("order-ties", 16 << 20) else {
        return;
    };
    let dir = tempdir();
    let fifo = dir.path().join("block");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Forty subshells forked in a burst from one shell, each moving itself into the group and
    // blocking on the FIFO: the same memory, the same adj, many in the same start tick. A burst
    // whose best (score, start) is not shared is made again: the test needs a real tie.
    let procs = cg.dir.join("cgroup.procs");
    let script = format!(
        "for i in $(seq 40); do (echo 0 > '{}'; read x < '{}') & done; wait",
        procs.display(),
        fifo.display()
    );
    let mut shell = None;
    let mut keys = Vec::new();
    for _ in 0..5 {
        for p in cg.procs() {
            // SAFETY: kill(2) on a subshell this test put into its own group.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        drop(shell.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cg.procs().is_empty() {
            assert!(Instant::now() < deadline, "old burst still there");
            std::thread::sleep(Duration::from_millis(20));
        }
        shell = Some(Reaped(
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .expect("sh"),
        ));
        while cg.procs().len() < 40 {
            assert!(Instant::now() < deadline, "only {:?}", cg.procs());
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        keys = cg.procs().into_iter().filter_map(key).collect();
        keys.sort_unstable();
        let best = keys.last().copied().unwrap();
        if keys
            .iter()
            .filter(|k| (k.0, k.1) == (best.0, best.1))
            .count()
            >= 2
        {
            break;
        }
        keys.clear();
    }
    assert!(!keys.is_empty(), "five bursts without a tie");
    let best = *keys.last().unwrap();
    let tied = keys
        .iter()
        .filter(|k| (k.0, k.1) == (best.0, best.1))
        .count();

    let log = dir.path().join("events.jsonl");
    let scope = format!("cgroup:{}", cg.rel());
    let mut daemon = Command::new(bin())
        .args(["run", "--dry-run", "--scope", &scope, "--mem-min", "100"])
        .args(["--event-log", log.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let records = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &Value| r["action"] == "dry_run")
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while records().is_empty() {
        if Instant::now() > deadline {
            interrupt_and_reap(&mut daemon);
            panic!("no dry_run record within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = Instant::now();
    // Hold the trigger for 14 s after the first record: two 10 s windows begun.
    std::thread::sleep(Duration::from_secs(14).saturating_sub(first.elapsed()));
    interrupt_and_reap(&mut daemon);
    let recs = records();
    let time = |r: &Value| {
        r["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let victims: Vec<i64> = recs
        .iter()
        .map(|r| r["victim"]["pid"].as_i64().unwrap())
        .collect();
    assert!(
        victims.iter().all(|&v| v == victims[0]),
        "the would-be victim changed among {tied} tied processes: {victims:?}"
    );
    let t0 = time(&recs[0]);
    let in_14s: Vec<f64> = recs
        .iter()
        .map(|r| time(r).duration_since(t0).as_secs_f64())
        .filter(|&s| s <= 14.0)
        .collect();
    assert_eq!(
        in_14s.len(),
        2,
        "one record, then one after 10 s: {in_14s:?} ({} records)",
        recs.len()
    );
    assert!(in_14s[1] >= 10.0, "{in_14s:?}");
    // The victim is the best of the tied processes: the highest PID among them.
    assert_eq!(victims[0] as i32, best.2, "keys {keys:?}");
    assert_eq!(cg.kernel_oom_kills(), 0);
}
