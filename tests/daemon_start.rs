//! What the daemon says and reads at start and on reload: the start-up line, warnings for
//! levels that switch the guard off or make it act at once, one config read per start and per
//! reload. Each daemon guards a scratch memory cgroup in dry-run mode.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{TestCgroup, bin, require, start_daemon, tempdir, wait_line};

const MIB: u64 = 1 << 20;

/// A dry-run daemon on a test cgroup; its stderr lines are collected. Stopped on drop.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(cg: &TestCgroup, dir: &Path, extra: &[&str]) -> Daemon {
        let scope = format!("cgroup:{}", cg.rel());
        let mut child = Command::new(bin())
            .args(["run", "--dry-run", "--scope", &scope, "--event-log"])
            .arg(dir.join("events.jsonl"))
            .arg("--lock-dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[daemon] {line}");
                l.lock().unwrap().push(line);
            }
        });
        let d = Daemon { child, lines };
        d.wait_line("the start-up line", Duration::from_secs(20), |l| {
            l.contains("guarding")
        });
        d
    }

    fn wait_line(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to the daemon this test started.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::util::interrupt_and_reap(&mut self.child);
    }
}

#[test]
fn start_line_names_wake_ups() {
    let Some(cg) = TestCgroup::new("start-line", 256 * MIB) else {
        return;
    };
    let dir = tempdir();
    let d = Daemon::start(&cg, dir.path(), &[]);
    let line = d.wait_line("the start-up line", Duration::from_secs(1), |l| {
        l.contains("guarding")
    });
    assert!(line.contains("wake-ups: "), "{line}");
    assert!(!line.contains("notifications"), "{line}");
}

/// The system guard (dry-run) registers a PSI trigger with the kernel only when `--psi` asks
/// for one: without it the start-up line names none (a registered trigger wakes the kernel's
/// poll thread on every memory stall), with it the line names it, and where the kernel refuses
/// the window (no CAP_SYS_RESOURCE: multiples of 2 s) the guard says which window it uses
/// instead. A reload adds and removes it.
#[test]
fn a_psi_trigger_is_registered_only_for_psi() {
    require(
        Path::new("/proc/pressure/memory").exists(),
        "/proc/pressure/memory (PSI)",
    );
    let dir = tempdir();
    let events = dir.path().join("events.jsonl");
    let start = |extra: &[&str]| {
        let mut args = vec![
            "--dry-run",
            "--scope",
            "system",
            "--event-log",
            events.to_str().unwrap(),
            "--lock-dir",
            dir.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (d, rx) = start_daemon(&args);
        let line = wait_line(&rx, "guarding system", Duration::from_secs(20));
        (d, rx, line)
    };
    let (d, rx, plain) = start(&[]);
    // Start-up warnings follow the start-up line at once.
    std::thread::sleep(Duration::from_secs(1));
    drop(d);
    assert!(plain.contains("wake-ups: "), "{plain}");
    assert!(!plain.contains("PSI trigger"), "{plain}");
    let said: Vec<String> = rx.try_iter().collect();
    assert!(!said.iter().any(|l| l.contains("PSI trigger")), "{said:?}");

    let (d, rx, with) = start(&["--psi", "some:10:1s"]);
    assert!(with.contains("PSI trigger"), "{with}");
    // The 1 s window is accepted with CAP_SYS_RESOURCE; without it the guard takes 2 s and
    // says so.
    if !caps_have_sys_resource() {
        let warning = wait_line(&rx, "refused a 1000 ms window", Duration::from_secs(5));
        assert!(warning.contains("using 2 s"), "{warning}");
    }
    drop(d);

    // A reload that brings --psi registers the trigger; one that drops it removes it.
    let config = dir.path().join("oomguard.toml");
    std::fs::write(&config, "[run]\n").unwrap();
    let (d, rx, _) = start(&["--config", config.to_str().unwrap()]);
    let hup = || {
        // SAFETY: a signal to the daemon this test started.
        unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    };
    std::fs::write(&config, "[run]\npsi = \"full:20:2s\"\n").unwrap();
    hup();
    let line = wait_line(&rx, "config reload: --psi", Duration::from_secs(10));
    assert!(line.contains("PSI trigger registered"), "{line}");
    std::fs::write(&config, "[run]\n").unwrap();
    hup();
    let line = wait_line(&rx, "config reload: --psi", Duration::from_secs(10));
    assert!(line.contains("removed"), "{line}");
}

/// Whether this process holds CAP_SYS_RESOURCE (bit 24 of CapEff).
fn caps_have_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

#[test]
fn zero_level_warns_the_guard_is_off() {
    let Some(cg) = TestCgroup::new("level-zero", 256 * MIB) else {
        return;
    };
    let dir = tempdir();
    let d = Daemon::start(&cg, dir.path(), &["--mem-min", "0"]);
    d.wait_line("a guard-is-off warning", Duration::from_secs(5), |l| {
        l.contains("TERM level is 0") && l.contains("guard is off")
    });
}

#[test]
fn level_above_usage_warns_it_acts_at_once() {
    // 1 GiB of headroom wanted in a 256 MiB group: below the level from the start.
    let Some(cg) = TestCgroup::new("level-high", 256 * MIB) else {
        return;
    };
    let dir = tempdir();
    let d = Daemon::start(&cg, dir.path(), &["--mem-min-size", "1G"]);
    d.wait_line("an acts-at-once warning", Duration::from_secs(5), |l| {
        l.contains("already below the TERM level") && l.contains("acts at once")
    });
    // Normal levels: no such warning.
    let cg2 = TestCgroup::new("level-normal", 256 * MIB).expect("cgroup");
    let dir2 = tempdir();
    let d2 = Daemon::start(&cg2, dir2.path(), &[]);
    std::thread::sleep(Duration::from_millis(300));
    let lines = d2.lines.lock().unwrap().clone();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("acts at once") || l.contains("guard is off")),
        "{lines:?}"
    );
}

/// Serves `text` to every reader that opens the FIFO at `path`, one open at a time with a pause
/// between them, and counts the opens (a second read right after the first is still served, a
/// little later).
fn serve_fifo(path: &Path, text: &'static str) -> Arc<Mutex<u32>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        use std::os::unix::fs::OpenOptionsExt;
        loop {
            // Non-blocking open for writing fails (ENXIO) until a reader has it open.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(mut f) => {
                    if f.write_all(text.as_bytes()).is_ok() {
                        *c.lock().unwrap() += 1;
                    }
                    drop(f);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => return,
            }
        }
    });
    count
}

#[test]
fn config_is_read_once_per_start_and_per_reload() {
    let Some(cg) = TestCgroup::new("one-read", 256 * MIB) else {
        return;
    };
    let dir = tempdir();
    let fifo = dir.path().join("oomguard.toml");
    let opens = serve_fifo(&fifo, "[run]\nmem_min = \"10,5\"\n");
    let d = Daemon::start(&cg, dir.path(), &["--config", fifo.to_str().unwrap()]);
    // A second read would be served within 200 ms of the first; wait well past that.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(*opens.lock().unwrap(), 1, "config opens at start");
    d.signal(libc::SIGHUP);
    d.wait_line("the reload line", Duration::from_secs(10), |l| {
        l.contains("config reloaded")
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(*opens.lock().unwrap(), 2, "config opens after one reload");
}

#[test]
fn report_interval_prints_status_lines_with_the_would_be_victim() {
    let Some(cg) = TestCgroup::new("report", 256 * MIB) else {
        return;
    };
    let dir = tempdir();
    // A process in the group to be named as the would-be victim.
    let sleeper = crate::util::Reaped(
        cg.spawn(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ),
    );
    let pid = sleeper.pid();
    let d = Daemon::start(&cg, dir.path(), &["--report-interval", "500ms"]);
    let line = d.wait_line("a status line", Duration::from_secs(5), |l| {
        l.contains("status ")
    });
    assert!(
        line.contains("available") && line.contains("swap free"),
        "{line}"
    );
    assert!(line.contains("psi "), "{line}");
    assert!(
        line.contains(&format!("next victim: sleep ({pid})")),
        "{line}"
    );
    // Periodic: more lines follow.
    let deadline = Instant::now() + Duration::from_secs(5);
    while d
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("status "))
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 status lines in 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
    drop(sleeper);
}

#[test]
fn no_status_lines_by_default() {
    let Some(cg) = TestCgroup::new("no-report", 256 * MIB) else {
        return;
    };
    let dir = tempdir();
    let d = Daemon::start(&cg, dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let lines = d.lines.lock().unwrap().clone();
    assert!(!lines.iter().any(|l| l.contains("status ")), "{lines:?}");
}
