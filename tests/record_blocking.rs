//! What the daemon writes can neither stall nor take down the guard (issue 17, items 2, 3, 12):
//! stderr into a FIFO nobody reads, a side thread that panics, event log paths that are not
//! regular files, rotation by SIGUSR1, and `events` on lines that are not records.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run_cgroup::{hog, wait_rss};
use crate::util::{Reaped, TestCgroup, bin, interrupt_and_reap, tempdir};

const MIB: u64 = 1 << 20;

fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn kills(log: &Path) -> Vec<Value> {
    records(log)
        .into_iter()
        .filter(|r| r["action"] == "kill")
        .collect()
}

/// Waits until the daemon has opened its event log (and a moment more to arm itself).
fn wait_started(child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited at start"
        );
        assert!(Instant::now() < deadline, "the daemon never opened its log");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
}

/// One hog, which oomguard (not the kernel) must kill; returns its pid.
fn hog_killed_by_oomguard(cg: &TestCgroup, log: &Path, i: usize) -> i32 {
    let mut h = hog(cg, &["--name", "hog", "--max", "2G"]);
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
        "hog {i}: the kernel's OOM killer had to act (the guard was stalled); records: {:?}",
        kills(log)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kills(log).iter().any(|r| r["victim"]["pid"] == h.pid()) {
        assert!(
            Instant::now() < deadline,
            "no kill record for hog {i} ({}): {:?}",
            h.pid(),
            kills(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.pid()
}

/// A FIFO opened read-write by the test (so the daemon never gets EPIPE) and filled up: the
/// daemon's very first write to it would block. Returns the test's end (kept open, never
/// read) and a blocking write end for the daemon's stderr (its own open file description:
/// the test's end is non-blocking, and that flag must not reach the daemon).
fn full_fifo(dir: &Path) -> (std::fs::File, std::fs::File) {
    let p = dir.join("stderr.fifo");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path in a fresh temporary directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p)
        .unwrap();
    let chunk = [b'x'; 4096];
    let mut filled = 0;
    loop {
        match f.write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the FIFO: {e}"),
        }
    }
    assert!(filled > 0);
    let daemon_end = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    (f, daemon_end)
}

#[test]
fn stderr_that_nobody_reads_does_not_stall_the_guard() {
    let Some(cg) = TestCgroup::new("rec-fifo", 400 * MIB) else {
        return;
    };
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let (fifo, daemon_end) = full_fifo(dir.path());
    let scope = format!("cgroup:{}", cg.rel());
    let mut child = Command::new(bin())
        .args(["run", "--verbose", "--scope", &scope, "--event-log"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(daemon_end)
        .spawn()
        .expect("start the daemon");
    // Started when its log exists; a daemon stuck on its first log line never gets there, and
    // then the hogs show what that costs (the kernel's OOM killer acts instead).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut pids = Vec::new();
    for i in 0..15 {
        pids.push(hog_killed_by_oomguard(&cg, &log, i));
    }
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");
    let k = kills(&log);
    assert_eq!(k.len(), 15, "{k:?}");
    for (r, pid) in k.iter().zip(&pids) {
        assert_eq!(r["victim"]["pid"], *pid, "{r}");
    }
    assert_eq!(cg.kernel_oom_kills(), 0);
    interrupt_and_reap(&mut child);
    drop(fifo);
}

fn hooks_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("oomguard.toml");
    std::fs::write(&p, "[hooks]\npre_kill = [\"true\"]\n").unwrap();
    p
}

#[test]
fn a_panicking_side_thread_is_reported_once_and_the_guard_goes_on() {
    let Some(cg) = TestCgroup::new("rec-panic", 400 * MIB) else {
        return;
    };
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let errf = dir.path().join("stderr.txt");
    let scope = format!("cgroup:{}", cg.rel());
    let mut child = Command::new(bin())
        .args([
            "run",
            "--scope",
            &scope,
            "--metrics",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(hooks_config(dir.path()))
        .arg("--event-log")
        .arg(&log)
        .env("OOMGUARD_TEST_PANIC", "oomguard-pre_kill,oomguard-metrics")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .expect("start the daemon");
    wait_started(&mut child, &log);
    // The first kill's pre-kill hook thread panics; the kill and the next one happen anyway.
    let bystander = hog(&cg, &["--name", "bystander", "--max", "30M"]);
    wait_rss(&bystander, 30 * MIB);
    for i in 0..2 {
        hog_killed_by_oomguard(&cg, &log, i);
    }
    let mut by: Reaped = bystander;
    assert!(by.0.try_wait().unwrap().is_none(), "the bystander died");
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");
    interrupt_and_reap(&mut child);
    let err = std::fs::read_to_string(&errf).unwrap();
    let panics: Vec<&str> = err.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(panics.len(), 2, "one report per panic:\n{err}");
    for t in ["oomguard-pre_kill", "oomguard-metrics"] {
        let mine: Vec<&&str> = panics.iter().filter(|l| l.contains(t)).collect();
        assert_eq!(mine.len(), 1, "{t}:\n{err}");
        assert!(
            mine[0].contains("goes on without it") && mine[0].contains("OOMGUARD_TEST_PANIC"),
            "{}",
            mine[0]
        );
    }
    assert!(err.contains("stopping"), "{err}");
}

#[test]
fn the_release_profile_unwinds_so_side_thread_panics_can_be_contained() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap();
    let panic = t["profile"]["release"]
        .get("panic")
        .and_then(|v| v.as_str())
        .unwrap_or("unwind");
    assert_eq!(
        panic, "unwind",
        "panic = \"abort\" turns a side-thread bug into a dead guard"
    );
}

/// `oomguard run --dry-run` (system-wide dry run: allowed here) with the event log at `log`;
/// returns its exit code and stderr. Never hangs (a FIFO once did).
fn run_with_log(log: &Path) -> (Option<i32>, String) {
    run_with_log_and(log, &[])
}

/// [`run_with_log`] with more arguments. The locks go to a directory of the run's own unless
/// `extra` names one: the lock is taken before the event log is opened, and two of these runs
/// at once (tests run in parallel) would otherwise meet on the system scope's lock, the second
/// refused as "another oomguard already guards system" before it reaches its log.
fn run_with_log_and(log: &Path, extra: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let dir = tempdir();
    let errf = dir.path().join("stderr.txt");
    let own_locks = dir.path().join("locks");
    let locks: &[&std::ffi::OsStr] = if extra.iter().any(|a| *a == "--lock-dir") {
        &[]
    } else {
        &["--lock-dir".as_ref(), own_locks.as_os_str()]
    };
    let child = Command::new(bin())
        .args(["run", "--dry-run", "--event-log"])
        .arg(log)
        .args(locks)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let mut c = Reaped(child);
    let st = c.wait_timeout(Duration::from_secs(10));
    let code = st.and_then(|s| s.code());
    (code, std::fs::read_to_string(&errf).unwrap())
}

#[test]
fn an_event_log_that_is_not_a_regular_file_is_refused_at_start() {
    let d = tempdir();
    let fifo = d.path().join("fifo.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path in a fresh temporary directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let target = d.path().join("real.jsonl");
    std::fs::write(&target, "").unwrap();
    let link = d.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for (p, what) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/null"), "a character device"),
        (d.path(), "a directory"),
        (link.as_path(), "a symbolic link"),
    ] {
        let (code, err) = run_with_log(p);
        assert_eq!(code, Some(2), "{}: {err}", p.display());
        assert!(
            err.contains(what) && err.contains(&*p.to_string_lossy()),
            "{}: {err}",
            p.display()
        );
        assert_eq!(
            err.matches("--event-log").count(),
            1,
            "the hint once: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
}

/// A directory of the event log or of the locks that belongs to another user (one who made it
/// first, as anyone can under `/tmp`) is refused at start with exit 1, naming it and its owner:
/// that user could read, replace or fill the log, or hold the lock.
#[test]
fn a_log_or_lock_directory_of_another_user_is_refused_at_start() {
    let d = tempdir();
    let theirs = d.path().join("theirs");
    let mine = d.path().join("mine");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::create_dir(&mine).unwrap();
    std::os::unix::fs::chown(&theirs, Some(4321), Some(4321)).unwrap();
    // Also below it (its owner could rename what is below away), in paths not made yet.
    let their_sub = theirs.join("locks");
    for (log, locks, what) in [
        (theirs.join("events.jsonl"), &mine, "event log"),
        (mine.join("events.jsonl"), &theirs, "cannot take the lock"),
        (theirs.join("log/events.jsonl"), &mine, "event log"),
        (
            mine.join("events.jsonl"),
            &their_sub,
            "cannot take the lock",
        ),
    ] {
        let (code, err) = run_with_log_and(&log, &["--lock-dir".as_ref(), locks.as_os_str()]);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(
            err.contains(what)
                && err.contains(&format!(
                    "{}, a directory on its path, belongs to uid 4321, not to you (uid 0) or root",
                    theirs.display()
                )),
            "{what}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&theirs).unwrap().count(),
        0,
        "something was written in the other user's directory"
    );
}

#[test]
fn an_event_log_directory_that_cannot_be_written_is_a_clear_error_at_start() {
    let d = tempdir();
    std::fs::write(d.path().join("file"), "").unwrap();
    let (code, err) = run_with_log(&d.path().join("file/sub/events.jsonl"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot create its directory"), "{err}");
    assert_eq!(
        err.matches("--event-log").count(),
        1,
        "the hint once: {err}"
    );
    // A read-only file system (root ignores permission bits): a private mount namespace.
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o ro none '{}' && exec '{}' run --dry-run --event-log '{}/events.jsonl' --lock-dir '{}'",
            ro.display(),
            bin().display(),
            ro.display(),
            d.path().join("locks").display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !crate::util::require(
        !err.contains("unshare failed") && !err.contains("mount:"),
        "unshare -m and mount (root)",
    ) {
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot open it for appending") && err.contains("Read-only file system"),
        "{err}"
    );
}

#[test]
fn sigusr1_reopens_the_event_log_after_rotation() {
    let Some(cg) = TestCgroup::new("rec-rotate", 400 * MIB) else {
        return;
    };
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let rotated = dir.path().join("events.jsonl.1");
    let scope = format!("cgroup:{}", cg.rel());
    let mut child = Command::new(bin())
        .args(["run", "--scope", &scope, "--event-log"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_started(&mut child, &log);
    let first = hog_killed_by_oomguard(&cg, &log, 0);
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: SIGUSR1 to the daemon this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGUSR1 ended the daemon"
        );
        assert!(Instant::now() < deadline, "the event log was not reopened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = hog_killed_by_oomguard(&cg, &log, 1);
    let old = kills(&rotated);
    let new = kills(&log);
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0]["victim"]["pid"], first);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["victim"]["pid"], second);
    interrupt_and_reap(&mut child);
}

#[test]
fn events_reports_lines_it_cannot_parse_with_count_and_numbers() {
    let d = tempdir();
    let p = d.path().join("events.jsonl");
    let good = r#"{"time":"2026-11-30T18:00:00.000+00:00","action":"kernel_kill","scope":"system","host":"h","oom_kills":1}"#;
    std::fs::write(
        &p,
        format!("{good}\nnot json\n{good}{good}\n[1,2]\n{good}\n{{\"time\":\"2026"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["events", "--json", "--event-log"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(
        err.contains("skipped 3 line(s)") && err.contains("lines 2, 3, 4"),
        "{err}"
    );
    assert!(err.contains("torn last line"), "{err}");
}

/// The directories (`-y` paths) that the trace at `out` shows fsynced, in order.
fn fsynced_dirs(out: &Path, dirs: &[&Path]) -> Vec<String> {
    let text = std::fs::read_to_string(out).expect("strace output");
    text.lines()
        .filter(|l| l.contains("fsync("))
        .filter_map(|l| {
            dirs.iter()
                .find(|d| l.contains(&format!("<{}>)", d.display())))
                .map(|d| d.display().to_string())
        })
        .collect()
}

/// `oomguard run` (dry run on a test group) under `strace -f`, its event log at `log`; after
/// `during(daemon's pid, its stderr lines)`, stopped by SIGINT. Returns the trace's path.
fn traced_run(
    dir: &Path,
    name: &str,
    scope: &str,
    log: &Path,
    during: impl FnOnce(i32, &std::sync::mpsc::Receiver<String>),
) -> std::path::PathBuf {
    let out = dir.join(format!("{name}.strace"));
    let mut child = Command::new("strace")
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&out)
        .arg(bin())
        .args(["run", "--dry-run", "--scope", scope, "--lock-dir"])
        .arg(dir)
        .arg("--event-log")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strace (apt-get install strace)");
    let lines = crate::util::daemon_lines(&mut child);
    let mut strace = Reaped(child);
    crate::util::wait_line(&lines, "guarding", Duration::from_secs(20));
    // The traced daemon: strace's child.
    let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.pid()))
        .unwrap_or_default();
    let daemon: i32 = kids
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("strace's child");
    during(daemon, &lines);
    // SAFETY: SIGINT to the daemon this test started (under strace).
    unsafe { libc::kill(daemon, libc::SIGINT) };
    let st = strace.wait_timeout(Duration::from_secs(10));
    assert!(st.is_some(), "the traced daemon did not stop");
    out
}

/// A new event log's name is made durable: once the log and its directories are created, the
/// directory holding each new entry is fsynced (fsync(2): fsyncing a file does not make its
/// directory entry durable). Before, a new log's records were fsynced but a crash could lose
/// the file itself. Also when a rotation's reopen creates the file again; a log that exists
/// costs no directory fsync.
#[test]
fn a_new_event_logs_directories_are_fsynced_once_and_an_existing_ones_are_not() {
    let Some(cg) = TestCgroup::new("rec-dirsync", 400 * MIB) else {
        return;
    };
    let d = tempdir();
    let scope = format!("cgroup:{}", cg.rel());
    let (a, b) = (d.path().join("a"), d.path().join("a/b"));
    let log = b.join("events.jsonl");
    let dirs = [d.path(), a.as_path(), b.as_path()];
    let out = traced_run(d.path(), "new", &scope, &log, |daemon, lines| {
        std::fs::rename(&log, d.path().join("events.jsonl.1")).unwrap();
        // SAFETY: SIGUSR1 to the daemon this test started.
        unsafe { libc::kill(daemon, libc::SIGUSR1) };
        crate::util::wait_line(lines, "reopened", Duration::from_secs(10));
    });
    let synced = fsynced_dirs(&out, &dirs);
    let count = |dir: &Path| {
        synced
            .iter()
            .filter(|s| **s == dir.display().to_string())
            .count()
    };
    assert_eq!(
        (count(d.path()), count(&a), count(&b)),
        (1, 1, 2),
        "directories fsynced (the parent of a, of b, of the log at start and at the reopen): {synced:?}"
    );
    assert!(log.exists());
    let out = traced_run(d.path(), "existing", &scope, &log, |_, _| {});
    let synced = fsynced_dirs(&out, &dirs);
    assert!(synced.is_empty(), "a log that exists: {synced:?}");
}

/// Where `/proc` hides other users' processes (`hidepid`), a new event log, which names them and
/// their command lines, is made 0640, not 0644, and given to the group that may see every
/// process (`gid=`); elsewhere 0644 (any user reads it with `oomguard events`, as any user reads
/// `/proc`). The daemon starts in a private mount namespace whose `/proc` is mounted with
/// `hidepid=invisible`.
#[test]
fn a_new_event_log_is_kept_from_other_users_where_proc_hides_their_processes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(cg) = TestCgroup::new("rec-hidepid", 400 * MIB) else {
        return;
    };
    let d = tempdir();
    let scope = format!("cgroup:{}", cg.rel());
    let mode = |name: &str, hide: &str| {
        let log = d.path().join(name);
        let mount = if hide.is_empty() {
            String::new()
        } else {
            format!("mount -t proc -o {hide} proc /proc && ")
        };
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "umask 022 && {mount}exec timeout -s INT 2 '{}' run --dry-run --scope '{scope}' \
                 --lock-dir '{}' --event-log '{}'",
                bin().display(),
                d.path().display(),
                log.display()
            ))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            crate::util::require(
                !err.contains("unshare failed") && !err.contains("mount:"),
                "unshare -m and mounting proc (root)"
            ),
            "{err}"
        );
        assert!(err.contains("guarding"), "{err}");
        let meta = std::fs::metadata(&log).unwrap_or_else(|e| panic!("{e}: {err}"));
        (meta.permissions().mode() & 0o777, meta.gid())
    };
    assert_eq!(mode("hidden.jsonl", "hidepid=invisible"), (0o640, 0));
    assert_eq!(
        mode("shown.jsonl", "hidepid=invisible,gid=4321"),
        (0o640, 4321)
    );
    assert_eq!(mode("open.jsonl", ""), (0o644, 0));
}
