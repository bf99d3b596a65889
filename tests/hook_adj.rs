//! Hook programs do not inherit the daemon's `oom_score_adj`: the daemon runs at -1000 (its
//! unit's `OOMScoreAdjust`), and a hook at -1000 could never be killed, not even in a memory
//! cgroup where it is the only process left. On this host the daemon cannot go below 0 (no
//! CAP_SYS_RESOURCE), so it is started at 500 instead: a hook that kept the daemon's value
//! would report 500. The Debian VM test checks the -1000 case under systemd.

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
    // The hook's own value, then its parent's (the daemon's) at the same moment.
    std::fs::write(
        &cfg,
        format!(
            "[hooks]\npost_kill = [\"sh\", \"-c\", \"echo $(cat /proc/self/oom_score_adj) $(cat /proc/$PPID/oom_score_adj) > {}.tmp && mv {0}.tmp {0}\"]\n",
            out.display()
        ),
    )
    .unwrap();
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
    // SAFETY: runs in the forked child before exec; only open(2), write(2) and close(2) on a
    // static path (async-signal-safe, no allocation). Raising oom_score_adj needs no privilege.
    unsafe {
        cmd.pre_exec(|| {
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
    let mut h = hog(&cg, &["--name", "adjhog", "--max", "2G"]);
    let killed = h.wait_timeout(Duration::from_secs(60));
    let got = crate::fleet_util::wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&out).ok()
    });
    interrupt_and_reap(&mut daemon);
    assert!(killed.is_some(), "the hog was not killed within 60 s");
    let got = got.expect("the post_kill hook ran and wrote its oom_score_adj");
    let v: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(v.len(), 2, "{got}");
    assert_eq!(v[1], "500", "the daemon ran at 500 (the hook's parent)");
    assert_eq!(
        v[0], "0",
        "the hook kept the daemon's oom_score_adj instead of 0"
    );
}
