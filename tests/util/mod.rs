//! Shared test helpers: prerequisites (a missing one fails the test, it never skips and passes),
//! test memory cgroups that clean up after themselves, children that are ended on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// True when running in CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks a precondition of a test. A test that could not check anything must never pass:
/// when the precondition is missing this panics (in CI and outside it) naming what is missing,
/// so the run fails loudly instead of printing `ok`. `./scripts/test.sh` installs every tool the
/// tests need; cgroups, /dev/kmsg and the proc connector need root. Always returns true (the
/// `if !require(..) { return }` call sites stay valid; that branch is never taken).
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        panic!(
            "cannot run this test: the environment lacks {what}{}. A test that checks nothing \
             must not pass; run ./scripts/test.sh as root (it installs what the tests need)",
            if in_ci() { " (CI=true)" } else { "" }
        );
    }
    ok
}

/// The oomguard binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oomguard"))
}

/// The tests' memory hog (tests/hog/main.rs, built by `cargo test` only).
pub fn hog_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oomguard-hog"))
}

/// `../shared/corpus/oom-reports` beside the project root, if present.
pub fn corpus_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/oom-reports");
    p.is_dir().then_some(p)
}

/// The v1 memory cgroup directory of this process (`/sys/fs/cgroup/memory` + own path).
pub fn own_v1_memory_cgroup() -> Option<PathBuf> {
    oomguard::act::scratch::own_v1_group("memory")
        .filter(|dir| dir.join("memory.limit_in_bytes").exists())
}

/// A memory cgroup (v1) made for one test under this process's own group, removed on drop:
/// processes still in it are SIGKILLed (they are the test's own), then the directory is removed.
pub struct TestCgroup {
    pub dir: PathBuf,
}

impl TestCgroup {
    /// Makes `<own group>/oomguard-test-<name>-<pid>` with the given limit. Panics (through
    /// `require`) when the machine has no usable v1 memory controller; never returns `None`.
    pub fn new(name: &str, limit_bytes: u64) -> Option<TestCgroup> {
        let base = own_v1_memory_cgroup();
        if !require(
            base.is_some(),
            "a writable cgroup v1 memory controller (run as root)",
        ) {
            return None;
        }
        let dir = base?.join(format!("oomguard-test-{name}-{}", std::process::id()));
        if dir.exists() {
            let _ = TestCgroup { dir: dir.clone() };
        }
        let made = std::fs::create_dir(&dir).is_ok()
            && std::fs::write(dir.join("memory.limit_in_bytes"), limit_bytes.to_string()).is_ok();
        if !made {
            let _ = std::fs::remove_dir(&dir);
        }
        if !require(made, &format!("creating memory cgroup {}", dir.display())) {
            return None;
        }
        Some(TestCgroup { dir })
    }

    /// The path as printed in /proc/PID/cgroup.
    pub fn rel(&self) -> String {
        let s = self.dir.to_string_lossy();
        s.strip_prefix("/sys/fs/cgroup/memory")
            .unwrap_or(&s)
            .to_string()
    }

    pub fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The kernel's OOM kill count for this group.
    pub fn kernel_oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Starts a hog named `name` that would take 256 MiB in this (smaller) group and waits up
    /// to `timeout` for the kernel's OOM killer to end it at the group's limit; kills and reaps
    /// it if it still lives then. Returns its PID. (Whether the kernel did kill it: the caller
    /// checks [`TestCgroup::kernel_oom_kills`].)
    pub fn hog_to_the_limit(&self, name: &str, timeout: Duration) -> u32 {
        let mut hog = self.spawn(
            Command::new(hog_bin())
                .args(["--name", name, "--max", "256M"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !matches!(hog.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = hog.kill();
        let _ = hog.wait();
        hog.id()
    }

    /// Starts `cmd` inside the group: the child moves itself in before exec, so not one page
    /// of the program is charged elsewhere.
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        oomguard::act::scratch::spawn_in(&self.dir, cmd).expect("spawn in test cgroup")
    }
}

impl Drop for TestCgroup {
    /// Kills the test's processes (also in sub-groups it made) and removes the groups.
    fn drop(&mut self) {
        oomguard::act::scratch::remove_group(&self.dir, false);
    }
}

/// A child process that is killed and reaped when dropped.
pub struct Reaped(pub Child);

impl Reaped {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    /// Waits for the child to exit (up to `timeout`), returning its status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops a daemon this test started: SIGINT, up to 5 s to exit, then SIGKILL; always reaped.
pub fn interrupt_and_reap(child: &mut Child) {
    // SAFETY: SIGINT to a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Runs oomguard with args, capturing output.
pub fn oomguard(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run oomguard")
}

/// The records of an event log, read by the typed reader and written back as JSON (what the
/// tests assert on is the wire format).
pub fn event_log_json(path: &Path) -> Vec<serde_json::Value> {
    oomguard::record::eventlog::read_all(path)
        .map(|(recs, _)| recs.iter().map(|r| r.to_value()).collect())
        .unwrap_or_default()
}

/// Starts `oomguard run` with `args`; its stderr lines arrive on the receiver (and are echoed).
pub fn start_daemon(args: &[&str]) -> (Reaped, Receiver<String>) {
    start_daemon_of(&bin(), args)
}

/// [`start_daemon`] with another oomguard binary.
pub fn start_daemon_of(bin: &Path, args: &[&str]) -> (Reaped, Receiver<String>) {
    let mut child = Command::new(bin)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oomguard run");
    let rx = daemon_lines(&mut child);
    (Reaped(child), rx)
}

/// The daemon's stderr lines (piped), echoed to the test's stderr and sent to the receiver.
pub fn daemon_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[daemon] {l}");
            let _ = tx.send(l);
        }
    });
    rx
}

/// Waits for a stderr line containing `what`; panics after `timeout`.
pub fn wait_line(rx: &Receiver<String>, what: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line with {what:?} within {timeout:?}"),
        }
    }
}

/// Tests that move the machine's free memory by GiBs (`machine_marks`) or need it to hold
/// still far from the levels (`idle_floor`) take this, one at a time.
pub static MACHINE_MEMORY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The largest resident set (kB) a thread of `pid` shows in its `status` (0 if none).
pub fn threads_rss_kb(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .max()
        .unwrap_or(0)
}

/// Drops the clean page cache of the files under `dirs` (`POSIX_FADV_DONTNEED` per regular
/// file, after a `sync` so the dirty pages are written back first): the build's files, the
/// toolchain's, apt's. It changes no setting and frees nothing a process maps; it gives back
/// the free memory a fresh machine would have before a test that needs it (`idle_floor`).
/// Symbolic links are not followed, and only regular files are opened (non-blocking, so a
/// file swapped for a FIFO cannot hang the walk). Returns how many files were advised.
pub fn evict_page_cache(dirs: &[PathBuf]) -> usize {
    rustix::fs::sync();
    let mut advised = 0;
    let mut todo: Vec<PathBuf> = dirs.iter().filter(|d| d.is_dir()).cloned().collect();
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() && evict_file(&e.path()).is_ok() {
                advised += 1;
            }
        }
    }
    advised
}

/// Drops the clean page cache of one regular file (`POSIX_FADV_DONTNEED`; dirty pages stay
/// until written back). Opened non-blocking, without following a symbolic link.
pub fn evict_file(path: &Path) -> rustix::io::Result<()> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::NONBLOCK
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::DontNeed)
}

/// Where a CI run's page cache mostly lies: this project (its build tree included), a build
/// tree set apart by `CARGO_TARGET_DIR`, `../shared`, cargo's and rustup's homes, apt's caches
/// and lists, the installed programs under `/usr`, and `/tmp`.
pub fn build_and_tool_dirs() -> Vec<PathBuf> {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let env_or = |var: &str, sub: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(sub)))
    };
    let mut dirs = vec![project.join("../shared"), project];
    dirs.extend(std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from));
    dirs.extend(env_or("CARGO_HOME", ".cargo"));
    dirs.extend(env_or("RUSTUP_HOME", ".rustup"));
    dirs.extend(
        ["/var/cache/apt", "/var/lib/apt/lists", "/usr", "/tmp"]
            .iter()
            .map(PathBuf::from),
    );
    dirs
}
