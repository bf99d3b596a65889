//! The system-wide guard and a kill at a memory cgroup's own limit: `/proc/vmstat oom_kill`
//! counts it, but it frees nothing the machine is short of, so the guard records it
//! (`kernel_kill`, `constraint: memcg`, the group, `held: false`) and goes on choosing. Before,
//! every such kill held choices back for at least 2 s: on a container host a container killed
//! at its limit every second or two kept the guard from ever choosing (`sense::kmsg`).
//!
//! A real `--dry-run` daemon of the whole machine (it kills nothing) at its kill level all the
//! time (`--mem-min 100,100`: every byte of RAM is the level), so it makes a choice at least
//! every 100 ms (`--verbose` logs each one); the kernel kills a hog at the limit of a 32 MiB
//! test group.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::util::{TestCgroup, event_log_json, require, start_daemon, tempdir, wait_line};

/// The kernel log's records from now on, read without blocking (the test's own look, to say
/// what the kernel printed when the daemon did not see what it expected).
struct Kmsg(std::fs::File);

impl Kmsg {
    fn open() -> Option<Kmsg> {
        use std::io::Seek;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()?;
        f.seek(std::io::SeekFrom::End(0)).ok()?;
        Some(Kmsg(f))
    }

    /// The messages logged since the last call.
    fn messages(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let first = rec.lines().next().unwrap_or("");
                    out.push(first.split_once(';').map_or(first, |x| x.1).to_string());
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

#[test]
fn a_kill_at_a_cgroups_own_limit_is_recorded_and_holds_no_choice_back() {
    let kmsg = Kmsg::open();
    require(
        kmsg.is_some(),
        "a readable /dev/kmsg (root, or kernel.dmesg_restrict=0)",
    );
    let mut kmsg = kmsg.unwrap();
    let Some(cg) = TestCgroup::new("memcghold", 32 << 20) else {
        return;
    };
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let (log_s, lock_s) = (log.to_str().unwrap(), dir.path().to_str().unwrap());
    let (daemon, rx) = start_daemon(&[
        "--dry-run",
        "--verbose",
        "--mem-min",
        "100,100",
        "--event-log",
        log_s,
        "--lock-dir",
        lock_s,
    ]);
    wait_line(&rx, "guarding system", Duration::from_secs(10));
    // Choices are being made (each one logs a decision line).
    wait_line(&rx, "decision in", Duration::from_secs(10));
    let _ = kmsg.messages();

    let hog_pid = cg.hog_to_the_limit("memcghog", Duration::from_secs(20));
    assert!(
        cg.kernel_oom_kills() >= 1,
        "the kernel did not kill the hog at its 32 MiB group's limit"
    );
    let printed = kmsg.messages();
    let summary = format!("pid={hog_pid},");
    require(
        printed
            .iter()
            .any(|m| m.starts_with("oom-kill:constraint=CONSTRAINT_MEMCG") && m.contains(&summary)),
        &format!(
            "a kernel that logs the `oom-kill:constraint=` line of each OOM kill (4.19+, not \
             rate-limited away); the kernel logged: {printed:?}"
        ),
    );

    // The daemon sees the counter rise (within 50 ms at its level) and logs it; from then on it
    // must go on choosing: before, it held every choice back for at least 2 s.
    let seen = wait_line(
        &rx,
        "the kernel's OOM killer killed",
        Duration::from_secs(5),
    );
    let after = Instant::now();
    let mut choices = 0;
    while let Some(left) = Duration::from_secs(1).checked_sub(after.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("decision in") => choices += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        choices >= 1,
        "no choice within 1 s after the kernel killed a process at its group's own limit \
         (held back?): {seen}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let kk = loop {
        let recs = event_log_json(&log);
        // Another test's group may have had a kill meanwhile: this group's record.
        if let Some(k) = recs
            .iter()
            .find(|r| r["action"] == "kernel_kill" && r["oom_memcg"] == cg.rel().as_str())
        {
            break k.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no kernel_kill record naming {}: {recs:?}",
            cg.rel()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(kk["oom_kills"].as_u64().unwrap() >= 1, "{kk}");
    assert_eq!(kk["constraint"], "memcg", "{kk}");
    assert_eq!(kk["held"], false, "{kk}");
    assert_eq!(kk["oom_memcg"], cg.rel().as_str(), "{kk}");
    drop(daemon);
}
