//! The system-wide guard on the kernel's task iterator (`sense::tasks`), end to end: in a PID
//! namespace of its own (so the machine's processes stay out of it, and nothing is killed: a
//! dry run), with a 64 MiB hog beside it, the guard says it lists with the iterator and its
//! decision names the hog by the PID the namespace gave it. Once started, no guard thread holds
//! the capabilities the iterator's start needed (CAP_BPF, CAP_PERFMON). A guard of one
//! cgroup lists a group that holds a good share of the machine's threads with the iterator
//! too, its program picking out the group's processes.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    Reaped, TestCgroup, bin, daemon_lines, hog_bin, start_daemon, tempdir, wait_line,
};

#[test]
fn a_system_guard_in_a_pid_namespace_chooses_by_the_task_iterator() {
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    // PID 1 of the namespace is a shell: the hog in the background; once it holds its 64 MiB
    // the guard, which triggers at once (99.9 % must stay available) and only says what it
    // would do.
    let script = format!(
        "exec 1>&2; {hog} --max 64M --name bighog > {out} & \
         while ! grep -q holding {out}; do sleep 0.05; done; cat {out}; \
         exec {og} run --dry-run --mem-min 99.9 --event-log {log} --lock-dir {locks} \
         --no-protect-scan -v",
        hog = hog_bin().display(),
        out = dir.path().join("hog.out").display(),
        og = bin().display(),
        log = log.display(),
        locks = dir.path().display(),
    );
    let (guard, rx) = in_new_pid_namespace(&["--mount-proc", "sh", "-c", &script]);
    let hog_line = wait_line(&rx, "holding 64 MiB", Duration::from_secs(30));
    let said = wait_line(&rx, "task iterator", Duration::from_secs(30));
    assert!(
        said.contains("scanning processes with the kernel's task iterator"),
        "the guard did not list with the task iterator: {said}"
    );
    let decided = wait_line(&rx, "decision in ", Duration::from_secs(30));
    // Started, no thread of the guard holds CAP_PERFMON, nor CAP_BPF unless the kernel asks
    // for it at each pass (then the guard thread alone keeps it), and it says which; the
    // decision above came after.
    let old_kernel = said.contains("CAP_PERFMON given up after loading it, CAP_BPF kept");
    assert!(
        old_kernel || said.contains("CAP_BPF and CAP_PERFMON given up after loading it"),
        "{said}"
    );
    assert_shed(ns_init(guard.0.id()), old_kernel);
    // The record reaches the log from the writer thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"dry_run\""))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    let hog_pid: i64 = hog_line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no PID in {hog_line:?}"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let rec: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["action"] == "dry_run")
        .unwrap_or_else(|| panic!("no dry_run record after {decided:?}; event log:\n{text}"));
    assert_eq!(rec["victim"]["comm"], "bighog", "{rec}");
    assert_eq!(rec["victim"]["pid"].as_i64(), Some(hog_pid), "{rec}");
    // Its figures are the kernel's: about the 64 MiB it holds.
    let rss_kb = rec["victim"]["rss_kb"].as_u64().unwrap_or(0);
    assert!((60 << 10..80 << 10).contains(&rss_kb), "{rec}");
}

/// In a PID namespace of its own but with the host's /proc (no `--mount-proc`), the
/// iterator's PIDs would name other processes in /proc: the guard says so and reads /proc.
#[test]
fn a_guard_whose_proc_is_another_namespaces_reads_proc() {
    let dir = tempdir();
    let (log, locks) = (
        dir.path().join("events.jsonl"),
        dir.path().display().to_string(),
    );
    let (og, log) = (bin().display().to_string(), log.display().to_string());
    let (guard, rx) = in_new_pid_namespace(&[
        &og,
        "run",
        "--dry-run",
        "--no-protect-scan",
        "-v",
        "--event-log",
        &log,
        "--lock-dir",
        &locks,
    ]);
    let said = wait_line(&rx, "scanning ", Duration::from_secs(30));
    assert!(
        said.contains("scanning /proc") && said.contains("another PID namespace"),
        "{said}"
    );
    wait_line(&rx, "guarding system", Duration::from_secs(30));
    // It gave up the iterator's capabilities, which it does not use.
    assert_shed(ns_init(guard.0.id()), false);
    drop(guard);
}

/// A guard of one cgroup that holds a good share of the machine's threads lists the group
/// with the kernel's task iterator, its program picking out the group's processes (`-v` says
/// when it takes it), and its dry-run decisions name the group's hog by PID, with the
/// kernel's figures. Once started, none of its threads holds CAP_PERFMON, nor CAP_BPF unless
/// the kernel asks for it at each pass, the protection thread (a rule with an `oom_score_adj`
/// starts it) included.
#[test]
fn a_cgroup_guard_lists_a_large_group_with_the_task_iterator() {
    cgroup_guard_lists_a_large_group_with_the_task_iterator(false, false);
}

/// The same with a hog whose main thread has exited (as `pthread_exit` from `main`) while its
/// threads hold the memory: the iterator's row for the process is its main thread's, a zombie
/// without memory, and the guard finds the memory through a live thread, as the kernel's OOM
/// killer does.
#[test]
fn a_cgroup_guard_finds_a_headless_hog_with_the_task_iterator() {
    cgroup_guard_lists_a_large_group_with_the_task_iterator(false, true);
}

/// The same with the guard in a cgroup namespace of its own (a container's), rooted at this
/// process's memory cgroup, the hierarchy mounted from that root: the group's path there
/// says how deep it is below that root only, and the program takes the root's level from the
/// guard's own memory cgroup.
#[test]
fn a_cgroup_guard_in_a_cgroup_namespace_lists_its_group_with_the_task_iterator() {
    cgroup_guard_lists_a_large_group_with_the_task_iterator(true, false);
}

fn cgroup_guard_lists_a_large_group_with_the_task_iterator(
    in_cgroup_namespace: bool,
    headless: bool,
) {
    let Some(cg) = TestCgroup::new(
        match (in_cgroup_namespace, headless) {
            (true, _) => "iterns",
            (false, false) => "iter",
            (false, true) => "iterheadless",
        },
        1 << 30,
    ) else {
        return;
    };
    let dir = tempdir();
    let (log, locks) = (
        dir.path().join("events.jsonl"),
        dir.path().display().to_string(),
    );
    let config = dir.path().join("oomguard.toml");
    std::fs::write(
        &config,
        "[[prefer]]\nname = \"^no-such-process$\"\noom_score_adj = 500\n",
    )
    .unwrap();
    let sleepers = sleepers_for_the_iterator(40);
    let out = dir.path().join("hog.out");
    let mut sh = Reaped(cg.spawn(Command::new("sh").args([
        "-c",
        &format!(
            "i=0; while [ $i -lt {sleepers} ]; do sleep 600 & i=$((i+1)); done; \
             exec {hog} --max 64M --name bighog {how} > {out}",
            hog = hog_bin().display(),
            how = if headless {
                "--threads 2 --leader-exits"
            } else {
                ""
            },
            out = out.display(),
        ),
    ])));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(if headless {
        // Its main thread is gone: the memory shows in a live thread's status only.
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("main thread exiting"))
            && crate::util::threads_rss_kb(sh.pid()) >= 60 << 10
    } else {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("holding 64 MiB"))
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "the hog did not start"
        );
        assert!(sh.0.try_wait().unwrap().is_none(), "the hog exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    if headless {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", sh.pid())).unwrap();
        let state = stat.rsplit_once(") ").map(|(_, r)| &r[..1]);
        assert_eq!(state, Some("Z"), "the hog's main thread: {stat}");
    }
    let scope = if in_cgroup_namespace {
        // Below the namespace's root (this process's group), as the guard sees it there.
        format!("cgroup:/{}", cg.dir.file_name().unwrap().to_string_lossy())
    } else {
        format!("cgroup:{}", cg.rel())
    };
    let start = if in_cgroup_namespace {
        start_in_a_cgroup_namespace
    } else {
        start_daemon
    };
    let (guard, rx) = start(&[
        "--scope",
        &scope,
        "--dry-run",
        "--mem-min",
        "99.9",
        "-v",
        "--config",
        config.to_str().unwrap(),
        "--event-log",
        log.to_str().unwrap(),
        "--lock-dir",
        &locks,
    ]);
    let said = wait_line(&rx, "task iterator (BPF)", Duration::from_secs(30));
    assert!(
        said.contains("scanning the group's processes with the kernel's task iterator"),
        "{said}"
    );
    // From the first listing on (its cgroup.procs counts the group's processes).
    let listing = wait_line(&rx, "listing cgroup:", Duration::from_secs(30));
    assert!(
        listing.contains("with the kernel's task iterator"),
        "{listing}"
    );
    // Up to the decision, the iterator found the group's processes (else it would be
    // dropped, with a warning, for /proc).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("no decision within 30 s");
        assert!(!line.contains("task iterator found none"), "{line}");
        if line.contains("decision in ") {
            break;
        }
    }
    let old_kernel = said.contains("CAP_PERFMON given up after loading it, CAP_BPF kept");
    assert!(
        old_kernel || said.contains("CAP_BPF and CAP_PERFMON given up after loading it"),
        "{said}"
    );
    let threads = thread_caps(guard.0.id());
    assert!(
        threads
            .iter()
            .any(|(name, _)| name.starts_with("oomguard-prot")),
        "no protection thread: {threads:?}"
    );
    assert_shed(guard.0.id(), old_kernel);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"dry_run\""))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let recs: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["action"] == "dry_run")
        .collect();
    assert!(!recs.is_empty(), "no dry_run record; event log:\n{text}");
    // Each decision (the first comes after the listing with the iterator).
    for rec in &recs {
        assert_eq!(rec["victim"]["comm"], "bighog", "{rec}");
        // The shell exec'd the hog: its PID is the shell's.
        assert_eq!(
            rec["victim"]["pid"].as_i64(),
            Some(i64::from(sh.pid())),
            "{rec}"
        );
        let rss_kb = rec["victim"]["rss_kb"].as_u64().unwrap_or(0);
        assert!((60 << 10..80 << 10).contains(&rss_kb), "{rec}");
    }
    drop(sh);
}

/// `oomguard run ARGS` in a cgroup namespace of its own rooted at this process's memory
/// cgroup (v1, as `TestCgroup`), in a mount namespace of its own where the hierarchy is
/// mounted from that root in place of the machine's mount: as a container sees it.
fn start_in_a_cgroup_namespace(args: &[&str]) -> (Reaped, std::sync::mpsc::Receiver<String>) {
    let m = "/sys/fs/cgroup/memory";
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--cgroup",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
    ])
    .arg(format!(
        "umount -l {m} && mount -t cgroup -o memory none {m} && exec \"$0\" run \"$@\""
    ))
    .arg(bin())
    .args(args);
    unshared(cmd)
}

/// Sleepers enough (`more` beyond the need) that a group of them keeps 1 in
/// `ITERATOR_SHARE` of the machine's threads even if the other threads double meanwhile
/// (tests run side by side): the group is listed with the task iterator.
fn sleepers_for_the_iterator(more: usize) -> usize {
    let threads: usize = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').nth(1)?.parse().ok())
        .expect("the thread count in /proc/loadavg");
    threads * 2 / oomguard::decide::victim::ITERATOR_SHARE + more
}

/// No thread of guard `pid` holds CAP_PERFMON (bit 38) or CAP_BPF (39), but for CAP_BPF in
/// the guard thread when `guard_keeps_bpf` (a kernel that asks for it at each pass).
fn assert_shed(pid: u32, guard_keeps_bpf: bool) {
    let caps = thread_caps(pid);
    assert!(caps.len() >= 3, "the guard's threads: {caps:?}");
    for (name, eff) in &caps {
        let bpf = if guard_keeps_bpf && name == "oomguard" {
            0
        } else {
            1 << 39
        };
        assert_eq!(
            eff & (1 << 38 | bpf),
            0,
            "{name} holds CAP_BPF/CAP_PERFMON: {caps:?}"
        );
    }
}

/// The process `unshare`'s child (PID 1 of its namespace) became.
fn ns_init(unshare: u32) -> u32 {
    let kids = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap_or_else(|e| panic!("children of unshare {unshare}: {e}"));
    let pid = kids.split_whitespace().next().expect("unshare has a child");
    pid.parse().unwrap()
}

/// Each thread of process `pid`: its name and effective capabilities.
fn thread_caps(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no CapEff in {}", t.display()));
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        out.push((comm.trim().to_string(), eff));
    }
    out
}

/// `unshare --pid --fork --kill-child ARGS`: its stderr lines (stdout is dropped), and the
/// child, ended with everything in the namespace when dropped.
fn in_new_pid_namespace(args: &[&str]) -> (Reaped, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"]).args(args);
    unshared(cmd)
}

/// `cmd` (an unshare(1) command line) started: its stderr lines, stdout dropped.
fn unshared(mut cmd: Command) -> (Reaped, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run unshare(1) (util-linux): {e}"));
    let rx = daemon_lines(&mut child);
    (Reaped(child), rx)
}

/// The safety net of a group's iterator: a program that finds none of a group's processes
/// while `cgroup.procs` lists some (here, one built for another, empty group) is dropped at
/// that scan, which reads the group's processes in /proc instead: the guard is never left
/// blind by its filter.
#[test]
fn a_group_filter_that_finds_none_of_the_groups_processes_is_dropped_for_proc() {
    use oomguard::decide::policy::Policy;
    use oomguard::decide::victim::{Ranker, ScanBasis};
    use oomguard::sense::Root;
    use oomguard::sense::cgroup::{Cgroup, Mounts};
    use oomguard::sense::procs::ProcReader;
    use oomguard::sense::scope::Scope;
    use oomguard::sense::tasks::TaskIter;
    use oomguard::values::ScopeSpec;
    let (Some(busy), Some(empty)) = (
        TestCgroup::new("busy", 256 << 20),
        TestCgroup::new("empty", 16 << 20),
    ) else {
        return;
    };
    let n = sleepers_for_the_iterator(20);
    let _sh = Reaped(busy.spawn(Command::new("sh").args([
        "-c",
        &format!("i=0; while [ $i -lt {n} ]; do sleep 600 & i=$((i+1)); done; wait"),
    ])));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while busy.procs().len() <= n {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleepers did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let root = Root::default();
    let cg = Cgroup::resolve(&root, &Mounts::discover(&root), &empty.dir).unwrap();
    let k = cg.kernel_id(&root).unwrap();
    let it = TaskIter::load(std::path::Path::new("/sys/kernel/btf/vmlinux"), Some(k))
        .unwrap_or_else(|e| panic!("cannot load the task iterator: {e}"));
    let mut reader = ProcReader::open(&root).unwrap();
    reader.use_tasks(it);
    let mut scope = Scope::resolve(&root, &ScopeSpec::Cgroup(busy.dir.clone())).unwrap();
    let mut ranker = Ranker::new(reader.page_kb, false);
    let policy = Policy::default();
    let basis = ScanBasis {
        totalpages: 1 << 20,
        swap_in_use: false,
        pgalloc: 0,
    };
    // The first listing counts the group's processes in cgroup.procs, enough to take the
    // iterator, which lists none of them: they are read in /proc, then and from then on.
    for scan in 0..2 {
        let seen = ranker.refresh(&mut reader, &mut scope, &policy, basis);
        assert!(
            seen > n,
            "scan {scan}: {seen} of the group's {} seen",
            n + 1
        );
        assert!(ranker.len() > n, "scan {scan}: {} rows", ranker.len());
    }
    assert!(
        !reader.has_tasks(),
        "the program that finds nothing is dropped"
    );
}

/// The guard learns the kernel's layout in a helper process (its own binary). A kernel without
/// type information (built without CONFIG_DEBUG_INFO_BTF, as Ubuntu 20.04's 5.8 HWE kernel is)
/// comes back from it as a kernel without the iterator, which the guard says rather than warns
/// of; a type information file it cannot read comes back as the helper's failure.
#[test]
fn the_layout_helper_tells_a_kernel_without_the_iterator_from_a_failure() {
    use oomguard::sense::tasks::{TaskIter, TaskIterError};
    let dir = tempdir();
    let absent = TaskIter::load_via(&bin(), &dir.path().join("vmlinux"), None).unwrap_err();
    assert!(
        matches!(absent, TaskIterError::Absent(_)) && absent.is_expected(),
        "{absent}"
    );
    assert!(
        absent.to_string().contains("CONFIG_DEBUG_INFO_BTF"),
        "{absent}"
    );
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not BTF").unwrap();
    let broken = TaskIter::load_via(&bin(), &junk, None).unwrap_err();
    assert!(
        matches!(broken, TaskIterError::Helper(_)) && !broken.is_expected(),
        "{broken}"
    );
    assert!(broken.to_string().contains("malformed"), "{broken}");
}
