//! Daemon benchmark against earlyoom, both measured in the same run and the same sandbox
//! (`cargo bench --bench daemon`; needs root, `unshare` from util-linux and earlyoom).
//!
//! Each measurement runs in its own PID namespace (`unshare --pid --fork --mount-proc
//! --kill-child`), so both daemons see only the benchmark's processes, and everything in it
//! dies with it. Figures:
//!
//! 1. Scan + choice, for N = 1 000, 5 000 and 10 000 idle processes: the work the daemon does
//!    near the line, through the same library calls as `Daemon::tick` and
//!    `Daemon::select` (src/daemon/mod.rs): read the scope's memory and `pgalloc`, the scan,
//!    then `Ranker::select` (the choice). CPU time of the measuring thread. Near the line the
//!    daemon rescans in one go (`Ranker::refresh_until`), looking every
//!    `daemon::NEAR_SCAN_LOOK` = 2 ms at what a wake-up would see (`daemon::NearLook`: the
//!    scope's memory, a `ppoll` of its notifications, every 50 ms the kernel's OOM kill
//!    counter), the looks counted: that is the first row. The second is the same rescan as
//!    the daemon did it before, in 2 ms slices (`Ranker::refresh_slice`), one per wake-up,
//!    with its poll's sleep between them (5 ms at the shortest; not counted), measured
//!    alternately with the first. A choice on a stale table scans in one go
//!    (`Ranker::refresh`): the third row. Both on a table whose rows are all known: a newcomer
//!    is learnt without its details (`status`), which each of the next ten rescans reads for
//!    a tenth of the newcomers; those ten rescans (in one go) are the third row. The cold
//!    first scan of a new table (plus freeing it) in one go. The thread breathes as the
//!    daemon's does (`sense::breath`: after 2 ms of reading it sleeps 1 ms, if more tasks are
//!    runnable than CPUs). Three times: listing with the kernel's task iterator
//!    (`sense::tasks`, one BPF pass for every process's figures), as the daemon does
//!    system-wide where it may load it (the shipped unit grants it `CAP_BPF` and
//!    `CAP_PERFMON`); reading every process's `statm` by path (`decide::victim`), as it does
//!    on a kernel without BTF, without those capabilities, or in a cgroup scope whose
//!    processes number under 1 in 12 of the machine's threads; and as the daemon of a cgroup
//!    scope, the same processes moved into a memory cgroup of their own, listed by the
//!    iterator's program for that group (kernel 6.0+). The load itself, once per daemon at
//!    start, on its own row. Then a pass of a program whose group is empty (it walks every
//!    thread and lists none): against the /proc rescan's cost per process, where a group's
//!    iterator starts to pay off (`decide::victim::ITERATOR_SHARE`). The floor under any scan
//!    of /proc, measured beside them: list /proc and open, read and close each process's
//!    `statm`, nothing else (`proc_floor`); the /proc rescan's ratio to it is what the table,
//!    the choice and the other reads (`oom_score_adj` every tenth scan) add. Against earlyoom's
//!    CPU per selection: `earlyoom --dryrun -m 99 -s 99 -r 0` scans everything and picks a
//!    victim every 100 ms while memory is "low"; its CPU time over the run divided by the
//!    selections it printed.
//! 2. The oomguard daemon process itself at the same trigger (`run --dry-run --mem-min 99.9`):
//!    process CPU per decision (it reuses a table younger than 2 s at the trigger, as it
//!    does in production; printed for what it is, not as the scan figure); and the same
//!    daemon without the capabilities to load the task iterator (`setpriv`), reading /proc.
//!    Then paired rounds for the /proc rescan near the line, the figure nearest the goal's
//!    line: in each round (3; 2 quick) a new table scanned eleven times, the rescan near the
//!    line four times, each 500 ms after the last (the daemon's wait between rescans near the
//!    levels), and right after it earlyoom per selection over a window of its own; the
//!    ratio of each round, their median and range.
//! 3. Idle, with 0 and 1 000 extra processes: oomguard `run --dry-run` at its default levels,
//!    the same oomguard with the cgroup v1 memory hierarchy unmounted in its own mount
//!    namespace (no usage marks on the v1 root group: what it does on a cgroup v2 host, where
//!    its far sleep stays at 1 s), earlyoom at its default (`-r 1`) and at `-r 0`, all four
//!    side by side for 60 s, 3 rounds: CPU (schedstat), wake-ups (schedstat's run count),
//!    VmRSS, Pss and RssAnon (smaps_rollup) at the end, VmHWM; medians.
//!    The 60 s start 5 s after the daemons: oomguard's start-up ends with a second trim and
//!    warm-up at 3 s (`daemon::SETTLE`); the CPU of those first 5 s is printed on its own.
//!
//! Runs and ends from a background shell: no signal is relied upon to stop anything but
//! SIGTERM then SIGKILL by PID, every wait is bounded, and the namespace takes the rest down.
//! `BENCH_QUICK=1`: N = 1 000 only, shorter runs, one 10 s idle round (for checks); the full run
//! writes docs/bench/daemon.md. `OOMGUARD_BENCH_N=1000,5000` picks the sizes.
#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failed unwrap aborts the measurement with its location"
)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oomguard::act::scratch::ScratchCgroup;
use oomguard::decide::policy::Policy;
use oomguard::decide::victim::{Ranker, ScanBasis};
use oomguard::sense::Root;
use oomguard::sense::cgroup::{Cgroup, Mounts};
use oomguard::sense::procs::ProcReader;
use oomguard::sense::scope::Scope;
use oomguard::sense::tasks::TaskIter;
use oomguard::values::ScopeSpec;

/// The daemon as it is shipped: a release build without the `test-support` feature. `cargo
/// bench` builds the package with it (the tests turn it on for the library's hooks), and the
/// hooks change how the code is inlined, so the profile-guided layout of the daemon's hot code
/// (link/hot-symbols.txt) fits that build less well: 0.2–0.4 MiB more resident code in two
/// measurements. The outer run builds the shipped binary into target/shipped and passes its
/// path to the parts it runs in namespaces in `OOMGUARD_BENCH_BIN`.
fn oomguard_bin() -> PathBuf {
    match std::env::var_os("OOMGUARD_BENCH_BIN") {
        Some(p) => p.into(),
        None => env!("CARGO_BIN_EXE_oomguard").into(),
    }
}

fn build_shipped() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = manifest.join("target/shipped");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building the shipped oomguard (cargo build --release --bin oomguard) into {}",
        target.display()
    );
    let st = Command::new(cargo)
        .current_dir(manifest)
        .args(["build", "--release", "--bin", "oomguard", "--target-dir"])
        .arg(&target)
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(st.success(), "building the shipped oomguard failed");
    target.join("release/oomguard")
}

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn thread_cpu() -> Duration {
    // The thread's CPU clock, to the nanosecond: getrusage(RUSAGE_THREAD) was used before, and
    // on some kernels it moves only at the scheduler tick for a thread that keeps running
    // (measured 2026-12-02: steps of 4 ms), which made medians of 4.00 and 24.00 ms.
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time of a process, all threads (nanosecond `schedstat`).
fn proc_cpu(pid: u32) -> Duration {
    Duration::from_nanos(schedstat_sum(pid, 0))
}

/// Times the threads of a process were put on a CPU (`schedstat`'s run count): its wake-ups.
fn proc_runs(pid: u32) -> u64 {
    schedstat_sum(pid, 2)
}

/// Field `field` of `schedstat`, summed over the threads of `pid`.
fn schedstat_sum(pid: u32, field: usize) -> u64 {
    let mut sum = 0u64;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            sum += s
                .split_whitespace()
                .nth(field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    sum
}

/// A `Key: N kB` field of a /proc file.
fn kb_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Memory of a process in kB: VmRSS, Pss, RssAnon, VmHWM.
#[derive(Clone, Copy, Default)]
struct Mem {
    rss: u64,
    pss: u64,
    anon: u64,
    hwm: u64,
}

fn proc_mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Mem {
        rss: kb_field(&status, "VmRSS:"),
        pss: kb_field(&rollup, "Pss:"),
        anon: kb_field(&status, "RssAnon:"),
        hwm: kb_field(&status, "VmHWM:"),
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

/// Ends a child we started: SIGTERM, up to 3 s, then SIGKILL; always reaped, never an
/// unbounded wait (a child that ignores SIGINT/SIGTERM cannot hang the benchmark).
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: a signal to the process we spawned and have not reaped (its PID is ours).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A daemon running with its output collected.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn spawn(cmd: &mut Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let outs: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let readers = outs
            .into_iter()
            .map(|r| {
                let l2 = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(r).lines().map_while(Result::ok) {
                        l2.lock().unwrap().push(line);
                    }
                })
            })
            .collect();
        Daemon {
            child,
            lines,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it and returns what it printed.
    fn finish(mut self) -> Vec<String> {
        stop(&mut self.child);
        for t in self.readers {
            let _ = t.join();
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// Forked children that only pause(); killed by PID and reaped by [`Sleepers::drop`].
struct Sleepers(Vec<i32>);

impl Sleepers {
    fn spawn(n: usize, big_mib: usize) -> Sleepers {
        let mut kids = Vec::with_capacity(n + 1);
        for _ in 0..n {
            // SAFETY: the child calls only async-signal-safe pause()/_exit().
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed after {} children", kids.len());
            if pid == 0 {
                // SAFETY: in the forked child, only async-signal-safe calls.
                unsafe {
                    loop {
                        libc::pause();
                    }
                }
            }
            kids.push(pid);
        }
        if big_mib > 0 {
            // One larger process, the obvious victim for both daemons.
            // SAFETY: the child touches only memory it maps itself, then pauses.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let len = big_mib << 20;
                // SAFETY: an anonymous private mapping, checked; then only pause().
                unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    if p != libc::MAP_FAILED {
                        std::ptr::write_bytes(p.cast::<u8>(), 1, len);
                    }
                    loop {
                        libc::pause();
                    }
                }
            }
            kids.push(pid);
        }
        std::thread::sleep(Duration::from_millis(300));
        Sleepers(kids)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for &k in &self.0 {
            // SAFETY: our own forked children, not yet reaped.
            unsafe { libc::kill(k, libc::SIGKILL) };
        }
        for &k in &self.0 {
            // SAFETY: reaping our own child by PID (SIGKILL cannot be ignored: bounded).
            unsafe { libc::waitpid(k, std::ptr::null_mut(), 0) };
        }
    }
}

fn oomguard_run(tmp: &Path, tag: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(oomguard_bin());
    // As a service runs it: a developer's RUST_BACKTRACE would make every error capture a
    // backtrace (CPU, and unwinder pages the daemon then keeps).
    c.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    c.args(["run", "--dry-run", "--event-log"])
        .arg(tmp.join(format!("events-{tag}.jsonl")))
        .arg("--lock-dir")
        .arg(tmp.join(format!("lock-{tag}")))
        .args(extra);
    c
}

/// `cmd` in its own mount namespace with the cgroup v1 memory hierarchy unmounted there, so
/// oomguard finds no v1 root group to arm usage marks on (as on a cgroup v2 host), run from
/// `copy` of its binary: oomguard drops its binary's pages from the page cache after start-up
/// unless another process maps them, and two instances of one file would keep each other's
/// pages cached (fault-around then maps and locks 64 KiB at a time: RSS neither has alone). The
/// process is the same one (`unshare` and `sh` exec it): its PID is oomguard's.
fn without_v1_memory(cmd: Command, copy: &Path) -> Command {
    if !copy.exists() {
        std::fs::copy(cmd.get_program(), copy).expect("copy the oomguard binary");
    }
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("umount -l /sys/fs/cgroup/memory 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(copy)
        .args(cmd.get_args());
    with_envs_of(c, &cmd)
}

/// `cmd` without the capabilities that let a process load the kernel's task iterator
/// (`CAP_BPF`, `CAP_PERFMON`, and `CAP_SYS_ADMIN`, which stands for both): the daemon then reads
/// /proc per process, as on a kernel without BTF. `setpriv` execs it: its PID is oomguard's.
fn without_bpf(cmd: Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--inh-caps=-sys_admin,-bpf,-perfmon",
        "--bounding-set=-sys_admin,-bpf,-perfmon",
        "--",
    ])
    .arg(cmd.get_program())
    .args(cmd.get_args());
    with_envs_of(c, &cmd)
}

/// `c` with the environment changes `cmd` makes (for a wrapper that execs `cmd`'s program).
fn with_envs_of(mut c: Command, cmd: &Command) -> Command {
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

fn earlyoom(args: &[&str]) -> Command {
    let mut c = Command::new("stdbuf");
    c.args(["-oL", "-eL", "earlyoom", "--dryrun"]).args(args);
    c
}

/// The sleep between two slices of a rescan near the line: the daemon's shortest poll there
/// (`decide::trigger`: the headroom at 6 GiB/s, from 5 ms). `OOMGUARD_BENCH_GAP_MS` sets another.
const SLICE_GAP_MS: u64 = 5;

/// The basis of a scan now, as the daemon takes it (`Daemon::basis`).
fn basis_now(reader: &ProcReader, scope: &mut Scope) -> ScanBasis {
    let mem = scope.memory().unwrap();
    ScanBasis {
        totalpages: mem.totalpages(reader.page_kb),
        swap_in_use: mem.swap_total_kb > mem.swap_free_kb,
        pgalloc: scope.pgalloc(),
    }
}

/// The rescans near the line measured in a row in each paired round, 500 ms apart: 5.5 s,
/// longer than `FULL_RESCAN_EVERY`.
const PAIRED_RESCANS: usize = 11;

/// Scan + choice and the daemons at the trigger, for `n` processes. Markdown on stdout.
fn inner_scan(n: usize, tmp: &Path) {
    let q = quick();
    let kids = Sleepers::spawn(n, 64);

    // 1. The daemon's path near the line, through the library (as Daemon::tick/select).
    let root = Root::default();
    let policy = Policy::default();
    let decide = |reader: &mut ProcReader, scope: &mut Scope, ranker: &mut Ranker| {
        let mem = scope.memory().unwrap();
        let tp = mem.totalpages(reader.page_kb);
        let pg = scope.pgalloc();
        let seen = ranker.refresh(
            reader,
            scope,
            &policy,
            ScanBasis {
                totalpages: tp,
                swap_in_use: mem.swap_total_kb > mem.swap_free_kb,
                pgalloc: pg,
            },
        );
        let sel = ranker.select(reader, &policy, 0);
        assert!(sel.victim.is_some(), "no victim among {seen} processes");
        seen
    };
    // Near the line the daemon rescanned in slices before (`Daemon::run`: at most 2 ms of
    // reading per wake-up, the length NEAR_SCAN_LOOK has now, then its poll's sleep): the
    // same scan and choice, with the sleeps between slices (not counted, being no CPU).
    let gap = Duration::from_millis(
        std::env::var("OOMGUARD_BENCH_GAP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(SLICE_GAP_MS),
    );
    let sliced = |reader: &mut ProcReader, scope: &mut Scope, ranker: &mut Ranker| {
        let mut t0 = thread_cpu();
        let mut cpu = Duration::ZERO;
        let mem = scope.memory().unwrap();
        let mut basis = Some(ScanBasis {
            totalpages: mem.totalpages(reader.page_kb),
            swap_in_use: mem.swap_total_kb > mem.swap_free_kb,
            pgalloc: scope.pgalloc(),
        });
        let mut slices = 0;
        loop {
            slices += 1;
            let done = ranker.refresh_slice(
                reader,
                scope,
                &policy,
                basis.take().unwrap_or_default(),
                oomguard::daemon::NEAR_SCAN_LOOK,
            );
            if done.finished {
                break;
            }
            cpu += thread_cpu() - t0;
            std::thread::sleep(gap);
            oomguard::sense::breath::rested();
            t0 = thread_cpu();
        }
        let sel = ranker.select(reader, &policy, 0);
        assert!(sel.victim.is_some(), "no victim after a scan in slices");
        (cpu + (thread_cpu() - t0), slices)
    };
    // Near the line the daemon rescans in one go (`Daemon::tick`, `NearLook`): every
    // NEAR_SCAN_LOOK it looks at what a wake-up would see, the scope's memory, its
    // notifications (a `ppoll` of none pending here: an eventfd nobody signals) and, every
    // 50 ms, the kernel's OOM kill counter. The looks are counted; here none stops the scan.
    let nothing = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let look_once = |scope: &mut Scope, kernel_looked: &mut Instant| {
        let mut fds = [rustix::event::PollFd::new(
            &nothing,
            rustix::event::PollFlags::IN,
        )];
        assert_eq!(
            rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())).unwrap(),
            0
        );
        std::hint::black_box(scope.memory().unwrap());
        if kernel_looked.elapsed() >= Duration::from_millis(50) {
            *kernel_looked = Instant::now();
            std::hint::black_box(scope.kernel_oom_kills());
        }
        false
    };
    // The rescan near the line as the daemon does it now (`Daemon::tick`:
    // `Ranker::refresh_near`): bounded while the last full scan is under FULL_RESCAN_EVERY old
    // and little was allocated since (only newcomers and the rows that could overtake the best
    // are read), else in full. Returns its CPU, its looks, whether it was bounded and how many
    // processes it read.
    let near = |reader: &mut ProcReader, scope: &mut Scope, ranker: &mut Ranker| {
        let t0 = thread_cpu();
        let basis = basis_now(reader, scope);
        let mut looks = 0;
        let mut kernel_looked = Instant::now();
        let done = ranker.refresh_near(
            reader,
            scope,
            &policy,
            basis,
            oomguard::daemon::NEAR_SCAN_LOOK,
            &mut |scope| {
                looks += 1;
                look_once(scope, &mut kernel_looked)
            },
        );
        assert!(done.finished, "a look stopped the scan");
        let sel = ranker.select(
            reader,
            &policy,
            basis.pgalloc.saturating_sub(ranker.pgalloc_at_scan()),
        );
        assert!(
            sel.victim.is_some(),
            "no victim after the rescan near the line"
        );
        (thread_cpu() - t0, looks, done.bounded, done.looked)
    };
    // The full rescan near the line (what `near` does every FULL_RESCAN_EVERY, or after much
    // allocation; what the daemon did at every rescan there before).
    let near_full = |reader: &mut ProcReader, scope: &mut Scope, ranker: &mut Ranker| {
        let t0 = thread_cpu();
        let basis = basis_now(reader, scope);
        let mut looks = 0;
        let mut kernel_looked = Instant::now();
        let done = ranker.refresh_until(
            reader,
            scope,
            &policy,
            basis,
            oomguard::daemon::NEAR_SCAN_LOOK,
            |scope| {
                looks += 1;
                look_once(scope, &mut kernel_looked)
            },
        );
        assert!(done.finished, "a look stopped the scan");
        let sel = ranker.select(reader, &policy, 0);
        assert!(
            sel.victim.is_some(),
            "no victim after the rescan near the line"
        );
        (thread_cpu() - t0, looks)
    };
    let reps = if q { 3 } else { 5 };
    // As the daemon's main thread (`Daemon::run`): every /proc read looks at the clock, and
    // sleeps after each stretch (`sense::breath`). The sleeps are not CPU; the looks are.
    oomguard::sense::breath::enable(Some(oomguard::daemon::BREATH), &root);
    // With the kernel's task iterator, as the daemon lists system-wide when it can (`tasks`),
    // or reading /proc per process, as it does without (no BTF, no CAP_BPF): `reps` new tables,
    // each scanned cold, then warm in one go and in slices.
    // The same processes, moved into a memory cgroup of their own, for a daemon with that
    // group as its scope (`--scope`): its program lists only the group's processes.
    let group = ScratchCgroup::create(&root, "bench-scope", 16 << 30)
        .unwrap_or_else(|e| panic!("cannot make the scope's cgroup: {e}"));
    for &pid in &kids.0 {
        std::fs::write(group.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
    let filter_of = |dir: &Path| {
        let cg = Cgroup::resolve(&root, &Mounts::discover(&root), dir).unwrap();
        cg.kernel_id(&root).unwrap()
    };
    let run = |mode: Mode| {
        let mut r = Runs::default();
        let tasks = mode != Mode::Proc;
        let spec = match mode {
            Mode::Group => ScopeSpec::Cgroup(group.dir.clone()),
            _ => ScopeSpec::System,
        };
        for _ in 0..reps {
            let mut reader = ProcReader::open(&root).unwrap();
            if tasks {
                // Once per daemon, at its start: not part of a scan.
                let t0 = thread_cpu();
                let filter = (mode == Mode::Group).then(|| filter_of(&group.dir));
                let it = TaskIter::load(Path::new(oomguard::sense::tasks::KERNEL_BTF), filter)
                    .unwrap_or_else(|e| panic!("the task iterator does not load here: {e}"));
                r.load.push((thread_cpu() - t0).as_secs_f64() * 1e3);
                reader.use_tasks(it);
            }
            let t0 = thread_cpu();
            let mut scope = Scope::resolve(&root, &spec).unwrap();
            let mut ranker = Ranker::new(reader.page_kb, false);
            r.seen = decide(&mut reader, &mut scope, &mut ranker);
            r.cold.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            // The ten rescans after the first: each reads the details (`status`) of the tenth
            // of the newcomers due (`decide::victim`: a newcomer is learnt without them).
            for _ in 0..10 {
                let t0 = thread_cpu();
                decide(&mut reader, &mut scope, &mut ranker);
                r.first.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            }
            // From then on, the rescan of a table whose rows are all known, as in a daemon
            // that has watched these processes for ten scans.
            for _ in 0..(if q { 5 } else { 10 }) {
                let t0 = thread_cpu();
                decide(&mut reader, &mut scope, &mut ranker);
                r.warm.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            }
            // The rescan near the line, and the same in slices (as the daemon did it before),
            // alternating.
            for _ in 0..(if q { 2 } else { 4 }) {
                // Right after a full scan (the previous measurement's), as near the line
                // between two full ones.
                let (cpu, n, bounded, looked) = near(&mut reader, &mut scope, &mut ranker);
                r.near.push(cpu.as_secs_f64() * 1e3);
                r.near_looks = n;
                r.near_bounded = bounded;
                r.near_read = looked;
                let (cpu, n) = near_full(&mut reader, &mut scope, &mut ranker);
                r.near_full.push(cpu.as_secs_f64() * 1e3);
                r.looks = n;
                let (cpu, n) = sliced(&mut reader, &mut scope, &mut ranker);
                r.in_slices.push(cpu.as_secs_f64() * 1e3);
                r.slices = n;
            }
            assert_eq!(reader.has_tasks(), tasks, "the task iterator stopped");
            // Freeing the table is part of the cold cost (the daemon pays it as processes leave).
            let t0 = thread_cpu();
            drop(ranker);
            *r.cold.last_mut().unwrap() += (thread_cpu() - t0).as_secs_f64() * 1e3;
        }
        r
    };
    let it = run(Mode::Tasks);
    let pr = run(Mode::Proc);
    let floor: Vec<f64> = (0..if q { 20 } else { 50 })
        .map(|_| proc_floor(pr.seen))
        .collect();
    let gr = run(Mode::Group);
    assert_eq!(gr.seen, kids.0.len(), "the group's processes, all of them");
    let seen = it.seen;
    // Where a group's iterator pays off (`decide::victim::ITERATOR_SHARE`): a pass of a
    // program whose group is empty (it walks every thread and lists none) against the warm
    // /proc rescan's cost per process.
    let empty = ScratchCgroup::create(&root, "bench-empty", 1 << 20).unwrap();
    let idle_pass = {
        let it = TaskIter::load(
            Path::new(oomguard::sense::tasks::KERNEL_BTF),
            Some(filter_of(&empty.dir)),
        )
        .unwrap();
        let mut buf = vec![std::mem::MaybeUninit::uninit(); 32 * 1024];
        let mut rows = Vec::new();
        let mut v = Vec::new();
        for _ in 0..20 {
            let t0 = thread_cpu();
            it.read(&mut buf, &mut rows).unwrap();
            v.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            assert!(rows.is_empty());
        }
        median(&v)
    };
    empty.remove();
    let threads = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(|p| std::fs::read_dir(format!("/proc/{p}/task")).map_or(0, |d| d.count()))
        .sum::<usize>();

    // 2. earlyoom's CPU per selection, and the oomguard process at the same trigger.
    let dur = Duration::from_secs(if q { 3 } else { 8 });
    let measure = |mut d: Daemon| {
        std::thread::sleep(Duration::from_millis(1000));
        assert!(d.alive(), "daemon exited early: {:?}", d.finish());
        let c0 = proc_cpu(d.pid());
        let n0 = d.lines.lock().unwrap().len();
        std::thread::sleep(dur);
        let cpu = proc_cpu(d.pid()) - c0;
        let lines = d.finish();
        (lines[n0.min(lines.len())..].to_vec(), cpu, lines)
    };
    let (eo_lines, eo_cpu, eo_all) = measure(Daemon::spawn(&mut earlyoom(&[
        "-m", "99", "-s", "99", "-r", "0",
    ])));
    let eo_n = eo_lines
        .iter()
        .filter(|l| l.starts_with("sending SIGTERM"))
        .count();
    assert!(
        eo_n > 0,
        "earlyoom made no selection; it printed: {:?}",
        &eo_all[..eo_all.len().min(20)]
    );
    let eo_sel = eo_cpu.as_secs_f64() * 1e3 / eo_n as f64;
    let (og_lines, og_cpu, og_all) = measure(Daemon::spawn(&mut oomguard_run(
        tmp,
        &format!("trig{n}"),
        &["--mem-min", "99.9", "-v"],
    )));
    let og_n = og_lines
        .iter()
        .filter(|l| l.contains("decision in "))
        .count();
    assert!(
        og_n > 0,
        "oomguard made no decision; it printed: {:?}",
        &og_all[..og_all.len().min(20)]
    );
    let og_dec = og_cpu.as_secs_f64() * 1e3 / og_n as f64;
    // The same daemon where it may not load the task iterator: it reads /proc per process.
    let (pl_lines, pl_cpu, pl_all) = measure(Daemon::spawn(&mut without_bpf(oomguard_run(
        tmp,
        &format!("trig-proc{n}"),
        &["--mem-min", "99.9", "-v"],
    ))));
    assert!(
        pl_all
            .iter()
            .any(|l| l.contains("scanning /proc, one read per process")),
        "the daemon without CAP_BPF did not say it reads /proc: {:?}",
        &pl_all[..pl_all.len().min(20)]
    );
    let pl_n = pl_lines
        .iter()
        .filter(|l| l.contains("decision in "))
        .count();
    assert!(pl_n > 0, "oomguard (reading /proc) made no decision");
    let pl_dec = pl_cpu.as_secs_f64() * 1e3 / pl_n as f64;
    // 3. The /proc rescan near the line and earlyoom, alternately, in rounds: each round
    // scans a new table eleven times (as `run` does before its warm rows), then measures the
    // rescan near the line PAIRED_RESCANS times, each after the half second the daemon waits
    // between rescans near the levels (`Daemon::tick`: a table older than 500 ms), over more
    // than FULL_RESCAN_EVERY, so its full rescans are in the mean with its bounded ones, and
    // right after that earlyoom's CPU per selection over a window of its own. Each round's ratio pairs
    // figures taken seconds apart, so a load on the shared machine that comes and goes moves
    // both sides of it.
    let mut paired = Vec::new();
    let mut paired_full = Vec::new();
    // The longest rescan of each round, and the full ones' CPU (a full one also reads the
    // details, `oom_score_adj`, that fell due over the bounded ones: `decide::victim`).
    let mut paired_max = Vec::new();
    let mut paired_full_ms: Vec<Vec<f64>> = Vec::new();
    for _ in 0..(if q { 2 } else { 3 }) {
        let mut reader = ProcReader::open(&root).unwrap();
        let mut scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
        let mut ranker = Ranker::new(reader.page_kb, false);
        for _ in 0..11 {
            decide(&mut reader, &mut scope, &mut ranker);
        }
        // Rescans near the line for longer than FULL_RESCAN_EVERY, half a second apart: the
        // bounded ones and the full one(s) among them, as the daemon does them there.
        let mut full = 0;
        let mut full_ms = Vec::new();
        let ours: Vec<f64> = (0..PAIRED_RESCANS)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(500));
                let (cpu, _, bounded, _) = near(&mut reader, &mut scope, &mut ranker);
                let ms = cpu.as_secs_f64() * 1e3;
                full += usize::from(!bounded);
                if !bounded {
                    full_ms.push(ms);
                }
                ms
            })
            .collect();
        paired_full.push(full);
        let (lines, cpu, all) = measure(Daemon::spawn(&mut earlyoom(&[
            "-m", "99", "-s", "99", "-r", "0",
        ])));
        let n = lines
            .iter()
            .filter(|l| l.starts_with("sending SIGTERM"))
            .count();
        assert!(
            n > 0,
            "earlyoom made no selection in a paired round; it printed: {:?}",
            &all[..all.len().min(20)]
        );
        paired.push((
            ours.iter().sum::<f64>() / ours.len() as f64,
            cpu.as_secs_f64() * 1e3 / n as f64,
        ));
        paired_max.push(ours.iter().cloned().fold(0.0, f64::max));
        paired_full_ms.push(full_ms);
    }
    drop(kids);
    group.remove();

    println!("### N = {n} idle processes ({seen} seen by the scan)\n");
    println!("| figure (CPU ms) | oomguard | earlyoom per selection | ratio oomguard/earlyoom |");
    println!("|---|---|---|---|");
    let gap_ms = gap.as_millis();
    for (r, how) in [
        (&it, "with the kernel's task iterator"),
        (&pr, "reading /proc per process (no task iterator)"),
        (
            &gr,
            "cgroup scope (the same processes in one group), the task iterator listing the group's",
        ),
    ] {
        let (c, w, sl, f, nl, nf) = (
            median(&r.cold),
            median(&r.warm),
            median(&r.in_slices),
            median(&r.first),
            median(&r.near),
            median(&r.near_full),
        );
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let how_near = if r.near_bounded {
            format!(
                "bounded: {} of {} processes read (newcomers, and the rows that could overtake the best with the pages allocated since the last full scan), {} look{}",
                r.near_read,
                r.seen,
                r.near_looks,
                plural(r.near_looks)
            )
        } else {
            format!(
                "in full (the iterator's pass gives every row), {} look{}",
                r.near_looks,
                plural(r.near_looks)
            )
        };
        println!(
            "| scan + choice, {how}, warm: the rescan near the line as the daemon does it between two full ones, {how_near} (median of {}) | {nl:.2} | {eo_sel:.2} ({eo_n} selections) | {} |",
            r.near.len(),
            ratio(nl, eo_sel)
        );
        println!(
            "| the full rescan near the line (at least every {} s there, and after 1/{} of the pages allocated since the last), in one go with {} look{} at memory, notifications and the kernel's kills (median of {}) | {nf:.2} | {eo_sel:.2} | {} |",
            oomguard::decide::victim::FULL_RESCAN_EVERY.as_secs(),
            oomguard::decide::victim::BOUNDED_GROWTH_SHARE,
            r.looks,
            plural(r.looks),
            r.near_full.len(),
            ratio(nf, eo_sel)
        );
        println!(
            "| the same full rescan in {} slice{} of 2 ms {gap_ms} ms apart, one per wake-up, as the daemon did it before (median of {}) | {sl:.2} | {eo_sel:.2} | {} |",
            r.slices,
            if r.slices == 1 { "" } else { "s" },
            r.in_slices.len(),
            ratio(sl, eo_sel)
        );
        println!(
            "| scan + choice, {how}, warm, in one go (a choice on a stale table) (median of {}) | {w:.2} | {eo_sel:.2} | {} |",
            r.warm.len(),
            ratio(w, eo_sel)
        );
        println!(
            "| scan + choice, {how}, the ten rescans after the first, in one go (newcomers' details read) (median of {}) | {f:.2} | {eo_sel:.2} | {} |",
            r.first.len(),
            ratio(f, eo_sel)
        );
        println!(
            "| scan + choice, {how}, cold first scan (median of {}) | {c:.2} | {eo_sel:.2} | {} |",
            r.cold.len(),
            ratio(c, eo_sel)
        );
    }
    let (fl, pw, pn) = (median(&floor), median(&pr.warm), median(&pr.near_full));
    println!(
        "| the floor under any scan of /proc: listing it and one open, read and close of each process's `statm`, nothing else (no parsing, no table, no choice) (median of {}) | {fl:.2} | {eo_sel:.2} | {} |",
        floor.len(),
        ratio(fl, eo_sel)
    );
    println!(
        "| hence the full /proc rescan over that floor: {} near the line, {} in one go without looks | | | |",
        ratio(pn, fl),
        ratio(pw, fl)
    );
    let ratios: Vec<f64> = paired.iter().map(|&(o, e)| o / e).collect();
    println!(
        "| paired rounds, /proc: the rescans near the line as the daemon does them, mean CPU of {PAIRED_RESCANS}, each 500 ms after the last (full ones among them: {}, taking {} ms; the longest of each round: {} ms), and earlyoom per selection right after them, in {} rounds: {} | {:.2} | {:.2} | {:.2} (median of the rounds' ratios; {:.2}–{:.2}) |",
        paired_full
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        paired_full_ms
            .iter()
            .flatten()
            .map(|m| format!("{m:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        paired_max
            .iter()
            .map(|m| format!("{m:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        paired.len(),
        paired
            .iter()
            .map(|(o, e)| format!("{o:.2} / {e:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        median(&paired.iter().map(|p| p.0).collect::<Vec<_>>()),
        median(&paired.iter().map(|p| p.1).collect::<Vec<_>>()),
        median(&ratios),
        ratios.iter().cloned().fold(f64::INFINITY, f64::min),
        ratios.iter().cloned().fold(0.0, f64::max),
    );
    println!(
        "| loading the task iterator, once at the daemon's start (median of {}) | {:.2} | | |",
        it.load.len(),
        median(&it.load)
    );
    let per_thread = idle_pass / threads.max(1) as f64;
    let per_process = median(&pr.warm) / seen.max(1) as f64;
    println!(
        "| a pass of the iterator for an empty group, walking all {threads} threads (median of 20) | {idle_pass:.2} | | |"
    );
    println!(
        "| hence for a group: the iterator costs less than a /proc rescan (warm, in one go: {:.2} µs per process) when the group holds more than 1 in {:.0} of the threads (the daemon takes it from 1 in {}) | | | |",
        per_process * 1e3,
        per_process / per_thread,
        oomguard::decide::victim::ITERATOR_SHARE
    );
    println!(
        "| daemon process at the trigger, per decision ({og_n} decisions, table reused up to 2 s) | {og_dec:.3} | {eo_sel:.2} | {} |",
        ratio(og_dec, eo_sel)
    );
    println!(
        "| daemon process at the trigger, reading /proc per process (no CAP_BPF, CAP_PERFMON or CAP_SYS_ADMIN), per decision ({pl_n} decisions, table reused up to 2 s) | {pl_dec:.3} | {eo_sel:.2} | {} |",
        ratio(pl_dec, eo_sel)
    );
    println!();
}

/// The floor under any scan that reads `/proc`, as the daemon does without the task iterator
/// (and earlyoom always): one pass that lists `/proc` (its fd kept, as `ProcReader` keeps it)
/// and opens, reads and closes each process's `statm` by path, nothing else. CPU ms; panics
/// unless it read as many processes as the scan saw (`seen`), give or take a few.
fn proc_floor(seen: usize) -> f64 {
    use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};
    use std::mem::MaybeUninit;
    thread_local! {
        static DIR: rustix::fd::OwnedFd = rustix::fs::open(
            "/proc",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
    }
    DIR.with(|dir| {
        let mut dbuf = vec![MaybeUninit::uninit(); 32 * 1024];
        let mut buf = [0u8; 512];
        let mut path = [0u8; 32];
        let t0 = thread_cpu();
        rustix::fs::seek(dir, SeekFrom::Start(0)).unwrap();
        let mut it = RawDir::new(dir, &mut dbuf);
        let mut n = 0;
        while let Some(e) = it.next() {
            let e = e.unwrap();
            let name = e.file_name().to_bytes();
            if !name.first().is_some_and(u8::is_ascii_digit) || name.len() > 20 {
                continue;
            }
            let len = name.len() + 6;
            path[..name.len()].copy_from_slice(name);
            path[name.len()..len].copy_from_slice(b"/statm");
            if let Ok(fd) = rustix::fs::openat(
                dir,
                &path[..len],
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) && rustix::io::read(&fd, &mut buf).is_ok_and(|k| k > 0)
            {
                n += 1;
            }
        }
        let cpu = (thread_cpu() - t0).as_secs_f64() * 1e3;
        assert!(
            n + 8 >= seen && n <= seen + 8,
            "the floor read {n} processes, the scan saw {seen}"
        );
        cpu
    })
}

/// How a scan lists the processes: the task iterator, /proc per process (system-wide), or
/// a cgroup scope with the iterator's program for that group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tasks,
    Proc,
    Group,
}

/// The figures of one way of scanning (CPU ms per measurement).
#[derive(Default)]
struct Runs {
    cold: Vec<f64>,
    first: Vec<f64>,
    warm: Vec<f64>,
    in_slices: Vec<f64>,
    near: Vec<f64>,
    near_full: Vec<f64>,
    near_looks: usize,
    near_bounded: bool,
    near_read: usize,
    load: Vec<f64>,
    slices: usize,
    looks: usize,
    seen: usize,
}

/// Idle figures with `n` extra processes: `rounds` rounds of `secs` seconds, the three daemons
/// side by side. Markdown on stdout.
/// Idle figures are taken from this long after the daemons start (see the module docs).
const STARTUP: Duration = Duration::from_secs(5);

fn inner_idle(n: usize, tmp: &Path) {
    let q = quick();
    let (rounds, secs) = if q { (1, 10) } else { (3, 60) };
    let kids = Sleepers::spawn(n, 0);
    let names = [
        "oomguard (defaults)",
        "oomguard, no v1 root group (as on a v2 host)",
        "earlyoom -r 1 (default)",
        "earlyoom -r 0",
    ];
    let mut cpu: [Vec<f64>; 4] = Default::default();
    let mut wakes: [Vec<f64>; 4] = Default::default();
    let mut start: [Vec<f64>; 4] = Default::default();
    let mut mem: [Vec<Mem>; 4] = Default::default();
    for r in 0..rounds {
        let mut ds = vec![
            Daemon::spawn(&mut oomguard_run(tmp, &format!("idle{n}-{r}"), &[])),
            Daemon::spawn(&mut without_v1_memory(
                oomguard_run(tmp, &format!("idle{n}-{r}-v2"), &[]),
                &tmp.join("oomguard-v2host"),
            )),
            Daemon::spawn(&mut earlyoom(&["-r", "1"])),
            Daemon::spawn(&mut earlyoom(&["-r", "0"])),
        ];
        std::thread::sleep(STARTUP);
        for d in &mut ds {
            assert!(d.alive(), "a daemon exited early");
        }
        let c0: Vec<_> = ds.iter().map(|d| proc_cpu(d.pid())).collect();
        let w0: Vec<_> = ds.iter().map(|d| proc_runs(d.pid())).collect();
        for (i, c) in c0.iter().enumerate() {
            start[i].push(c.as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_secs(secs));
        for (i, d) in ds.iter().enumerate() {
            cpu[i].push((proc_cpu(d.pid()) - c0[i]).as_secs_f64() * 1e3 * 60.0 / secs as f64);
            wakes[i].push((proc_runs(d.pid()) - w0[i]) as f64 * 60.0 / secs as f64);
            mem[i].push(proc_mem(d.pid()));
        }
        for (i, d) in ds.into_iter().enumerate() {
            let lines = d.finish();
            if i == 1 {
                // The point of that instance: it must have run without the marks.
                assert!(
                    lines.iter().any(|l| l.contains("guarding system"))
                        && !lines.iter().any(|l| l.contains("v1 root group")),
                    "the instance without the v1 hierarchy armed marks or did not start: {lines:?}"
                );
            }
        }
    }
    drop(kids);
    let med = |i: usize, f: fn(&Mem) -> u64| {
        median(
            &mem[i]
                .iter()
                .map(|m| f(m) as f64 / 1024.0)
                .collect::<Vec<_>>(),
        )
    };
    println!(
        "### Idle with {n} extra processes ({rounds} rounds of {secs} s, medians; MiB, CPU ms per minute)\n"
    );
    println!(
        "| daemon | CPU | wake-ups per minute | VmRSS | Pss | RssAnon | VmHWM | CPU oomguard/this | VmRSS oomguard/this | Pss oomguard/this | start-up CPU ms (first {} s) |",
        STARTUP.as_secs()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let og_cpu = median(&cpu[0]);
    let (og_rss, og_pss) = (med(0, |m| m.rss), med(0, |m| m.pss));
    for (i, name) in names.iter().enumerate() {
        let c = median(&cpu[i]);
        let (rss, pss) = (med(i, |m| m.rss), med(i, |m| m.pss));
        println!(
            "| {name} | {c:.2} | {:.0} | {rss:.2} | {pss:.2} | {:.2} | {:.2} | {} | {} | {} | {:.1} |",
            median(&wakes[i]),
            med(i, |m| m.anon),
            med(i, |m| m.hwm),
            ratio(og_cpu, c),
            ratio(og_rss, rss),
            ratio(og_pss, pss),
            median(&start[i])
        );
    }
    println!(
        "\noomguard without the v1 root group (far sleep 1 s) against earlyoom at its default: CPU {}, VmRSS {}.\n",
        ratio(median(&cpu[1]), median(&cpu[2])),
        ratio(med(1, |m| m.rss), med(2, |m| m.rss))
    );
    println!(
        "\nCPU per round (ms/min): {}\n",
        names
            .iter()
            .enumerate()
            .map(|(i, n)| format!(
                "{n}: {}",
                cpu[i]
                    .iter()
                    .map(|c| format!("{c:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs one part in a fresh PID namespace; returns its markdown. The part is killed when it
/// overruns `limit` (`--kill-child` takes its namespace down with it).
fn in_namespace(part: &str, n: usize, tmp: &Path, limit: Duration, bin: &Path) -> String {
    let mut child = Command::new("unshare")
        .env("OOMGUARD_BENCH_BIN", bin)
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args([part, &n.to_string()])
        .arg(tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("unshare (util-linux) is needed");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() > deadline {
            eprintln!("{part} {n}: over {limit:?}, killed");
            stop(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = reader.join().unwrap();
    print!("{text}");
    match status {
        Some(st) if st.success() => text,
        _ => format!("{text}\n**{part} with N = {n} failed ({status:?}); see stderr.**\n\n"),
    }
}

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for part in ["--scan", "--idle"] {
        if let Some(i) = args.iter().position(|a| a == part) {
            let n = args[i + 1].parse().unwrap();
            let tmp = PathBuf::from(&args[i + 2]);
            if part == "--scan" {
                inner_scan(n, &tmp);
            } else {
                inner_idle(n, &tmp);
            }
            return;
        }
    }
    if args.iter().any(|a| a == "--list") {
        return; // cargo bench -- --list
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("the daemon benchmark needs root (PID namespaces)");
        std::process::exit(1);
    }
    let bin = build_shipped();
    let eo_version = match Command::new("earlyoom").arg("-v").output() {
        // It prints its version on stderr.
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(_) => {
            eprintln!("earlyoom is not installed: apt-get install earlyoom");
            std::process::exit(1);
        }
    };
    let q = quick();
    let ns: Vec<usize> = std::env::var("OOMGUARD_BENCH_N")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| {
            if q {
                vec![1000]
            } else {
                vec![1000, 5000, 10000]
            }
        });
    let tmp =
        TmpDir(std::env::temp_dir().join(format!("oomguard-bench-daemon-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let start = jiff::Zoned::now();
    let load0 = loadavg();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# oomguard vs earlyoom: scan, choice, idle\n\nWritten by `cargo bench --bench daemon` (benches/daemon.rs, which says what each figure is). {} cores, kernel {}, {eo_version}; {}{}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rustix::system::uname().release().to_string_lossy(),
        start.strftime("%Y-%m-%d %H:%M %Z"),
        if q { ", QUICK mode" } else { "" },
    );
    println!("{md}");
    md.push_str("## Scan + choice near the line (CPU per selection)\n\n");
    for &n in &ns {
        md.push_str(&in_namespace(
            "--scan",
            n,
            &tmp.0,
            Duration::from_secs(300),
            &bin,
        ));
    }
    md.push_str("## Idle\n\n");
    for n in [0, 1000] {
        md.push_str(&in_namespace(
            "--idle",
            n,
            &tmp.0,
            Duration::from_secs(400),
            &bin,
        ));
    }
    let _ = writeln!(
        md,
        "Notes: earlyoom's CPU per selection is its whole CPU time over the run divided by the victims it printed (`sending SIGTERM`), as the issue measures it; oomguard's scan + choice is thread CPU of the library calls the daemon makes (cold = a new table, the first wake-up near the line), first with the kernel's task iterator (`sense::tasks`: one BPF pass gives every process's figures; what the daemon uses system-wide where it may load it), then reading every process's `statm` from /proc (what it does on a kernel without BTF, without CAP_BPF and CAP_PERFMON, which the shipped unit grants, or in a cgroup scope whose processes number under 1 in 12 of the machine's threads), then as the daemon of a cgroup scope whose group holds the same processes (the iterator's program for that group lists them; the first listing counts them in `cgroup.procs`); loading the iterator, once per daemon at its start, is not part of a scan and has its row; on a thread that breathes as the daemon's main thread does (`sense::breath`: a look at the clock before every `/proc` read; after each 2 ms of reading, a 1 ms sleep if more tasks are runnable than CPUs, `/proc/loadavg`; sleeps are not counted, being no CPU). The first row of each kind is the rescan the daemon does near the line, every half second there, between two full ones (`Ranker::refresh_near`): reading /proc it is bounded, the processes listed again (newcomers learnt, leavers dropped) and only the rows re-read that could overtake the best one with the pages allocated system-wide since the last full scan (the bound the choice uses, `decide::victim`), best first; with the task iterator it is a full rescan (the pass gives every row). The second is the full rescan near the line, which the daemon does there at least every 5 s and once 1/40 of the pages were allocated since the last: in one go, with a look every 2 ms at the scope's memory, a `ppoll` of its notifications and, every 50 ms, the kernel's OOM kill counter (`daemon::NearLook`; the looks are counted, and none stops the scan here). The paired rounds time the rescans near the line as they come, bounded and full, for 5.5 s (their mean is what the daemon spends per rescan there while little is allocated; a full one after nine bounded ones also reads the `oom_score_adj` of most rows, due every tenth scan with the bounded ones counted, so it costs more than the second row; with much allocated, every rescan is full, as in the second row). The third is the full rescan as the daemon did it before, in slices of at most 2 ms with its poll's sleep between them (5 ms here, its shortest; `OOMGUARD_BENCH_GAP_MS`), each slice starting on caches that other work used meanwhile, measured alternately with the first two. The fourth is a scan in one go without looks (what a choice on a stale table does). All are rescans of a table whose rows are all known, as in a daemon that has watched these processes for ten scans: a process new to the table is learnt from `statm` and `oom_score_adj`, and one of the next ten rescans reads its `status` (page tables) once; the fifth row is those ten rescans. After that a row's `status` is read again only when its resident set moved by more than an eighth (`decide::victim`). The four idle daemons run at the same time, so the two earlyoom instances share their binary's pages (Pss splits them; earlyoom's text is 26 KiB, so this moves its Pss by under 0.02 MiB). CPU is from /proc/PID/task/*/schedstat, memory from /proc/PID/status and smaps_rollup at the end of each round. Idle CPU is counted from 5 s after the daemons start: oomguard trims and locks its memory again, with a second warm-up of the kill path (a choice over the whole table), 3 s after its start; the CPU of the first 5 s, start-up included, is in the last column. Far from the levels oomguard sleeps up to 3 s where it has armed usage marks on the cgroup v1 root group (the kernel wakes it as the machine's memory use rises; README, `daemon::wake`), else up to 1 s as earlyoom: the second oomguard row runs with the v1 hierarchy unmounted in its own mount namespace, which is what a cgroup v2 host gets, from a copy of the binary (two instances of one file would keep each other's pages in the page cache, which each drops for itself after start-up). Wake-ups per minute are schedstat's run counts (all threads). The daemons run without RUST_BACKTRACE, as a service does. oomguard is the shipped build (`cargo build --release --bin oomguard`, into target/shipped), not the one `cargo bench` builds with the tests' hooks.\n\nHost load (1, 5, 15 min) at the start: {load0}; at the end: {}. The machine is shared (other builds and VM runs): figures of one run are side by side, so ratios are fairer than absolute times.",
        loadavg()
    );
    println!("{}", md.lines().last().unwrap_or_default());
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench/daemon.md");
    if q {
        println!("(quick mode: {} not written)", out.display());
    } else {
        std::fs::write(&out, md).unwrap();
        println!("written: {}", out.display());
    }
}
