//! Hook programs do not inherit the daemon's `oom_score_adj`: the daemon runs at -1000 (its
//! unit's `OOMScoreAdjust`), and a hook at -1000 could never be killed, not even in a memory
//! cgroup where it is the only process left. On this host the daemon cannot go below 0 (no
//! CAP_SYS_RESOURCE), so it is started at 500 instead: a hook that kept the daemon's value
//! would report 500. The Debian VM test checks the -1000 case under systemd.
//!
//! Nor do hooks and side threads take the guard loop's nice −20: only the loop and what it
//! waits for need it, and a JSON record or a hook at −20 would take the CPU from the machine's
//! tasks when memory runs out. They run at the nice value the daemon started with, but not
//! below 0: the daemon is started at nice −5 here, as the shipped unit starts it at −10 (its
//! `Nice=` is for the guard loop), and its side threads and hooks must run at 0.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run_cgroup::hog;
use crate::util::{TestCgroup, bin, interrupt_and_reap, tempdir};

const MIB: u64 = 1 << 20;

#[test]
fn hooks_run_at_oom_score_adj_zero_not_the_daemons() {
    let Some(cg) = TestCgroup::new("hookadj", 300 * MIB) else {
        return;
    };
    let d = tempdir();
    let out = d.path().join("adj");
    let cfg = d.path().join("oomguard.toml");
    // The hook's own value, then its parent's (the daemon's) at the same moment; then the
    // hook's nice value and the daemon's main thread's (field 19 of stat: the names have no
    // spaces).
    std::fs::write(
        &cfg,
        format!(
            "[hooks]\npost_kill = [\"sh\", \"-c\", \"echo $(cat /proc/self/oom_score_adj) $(cat /proc/$PPID/oom_score_adj) $(cut -d' ' -f19 /proc/self/stat) $(cut -d' ' -f19 /proc/$PPID/stat) > {}.tmp && mv {0}.tmp {0}\"]\n",
            out.display()
        ),
    )
    .unwrap();
    // Started at −5 (root may); work that can wait runs at 0.
    let base_nice = 0;
    let log = d.path().join("events.jsonl");
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--scope", &format!("cgroup:{}", cg.rel())])
        .arg("--config")
        .arg(&cfg)
        .arg("--event-log")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: runs in the forked child before exec; only open(2), write(2), close(2) on a
    // static path and setpriority(2) (async-signal-safe, no allocation). Raising
    // oom_score_adj needs no privilege; nice −5 needs root, which these tests have.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpriority(libc::PRIO_PROCESS, 0, -5) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"500".as_ptr().cast(), 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let mut daemon = cmd.spawn().expect("start oomguard run");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited at start"
        );
        assert!(Instant::now() < deadline, "the daemon never opened its log");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    // The event-log writer runs at the base nice; the guard loop (the main thread) at −20,
    // which root may set here.
    let mut side = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.id()));
    for t in tasks.into_iter().flatten().flatten() {
        let stat = t.path().join("stat");
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        let comm = text
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        side.push((comm, nice_of(&stat)));
    }
    let mut h = hog(&cg, &["--name", "adjhog", "--max", "2G"]);
    let killed = h.wait_timeout(Duration::from_secs(60));
    let got = crate::fleet_util::wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&out).ok()
    });
    interrupt_and_reap(&mut daemon);
    assert!(killed.is_some(), "the hog was not killed within 60 s");
    let got = got.expect("the post_kill hook ran and wrote its oom_score_adj");
    let v: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(v.len(), 4, "{got}");
    assert_eq!(v[1], "500", "the daemon ran at 500 (the hook's parent)");
    assert_eq!(
        v[0], "0",
        "the hook kept the daemon's oom_score_adj instead of 0"
    );
    assert_eq!(
        v[2],
        base_nice.to_string(),
        "the hook's nice value: the daemon's base, not its guard loop's"
    );
    assert_eq!(v[3], "-20", "the guard loop ran at nice -20");
    let thread = |name: &str| side.iter().find(|(c, _)| c == name).map(|t| t.1);
    assert_eq!(
        thread("oomguard"),
        Some(Some(-20)),
        "the guard loop: {side:?}"
    );
    assert_eq!(thread("oomguard-eventl"), Some(Some(base_nice)), "{side:?}");
    // The read-ahead thread is on the kill path (the loop may wait for its read of the
    // victim's command line): it keeps the loop's priority.
    assert_eq!(thread("oomguard-detail"), Some(Some(-20)), "{side:?}");
}

/// The nice value in a `stat` file (field 19; the thread's name may hold spaces).
fn nice_of(stat: &std::path::Path) -> Option<i32> {
    let text = std::fs::read_to_string(stat).ok()?;
    let (_, after) = text.rsplit_once(')')?;
    // After the name: state is field 3, so nice (19) is the 17th.
    after.split_whitespace().nth(16)?.parse().ok()
}
