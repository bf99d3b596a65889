//! Far from the levels, a wake-up of the system-wide guard reads `sysinfo(2)` and no
//! `/proc/meminfo`: free RAM minus the kernel's reserve is a floor under `MemAvailable`
//! (`sense::floor`), and a floor far above the levels proves there is nothing to do. Meminfo
//! comes back with the kernel-kill check every 5 s. Checked with strace on a real `--dry-run`
//! daemon of the whole machine (it kills nothing).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::sense::Root;
use oomguard::sense::floor::Floor;

use crate::util::{Reaped, require, tempdir};

fn has(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn far_from_the_levels_a_wake_up_reads_sysinfo_not_meminfo() {
    require(has("strace"), "strace (apt-get install strace)");
    // With --mem-min 1 the TERM level is 1 % of RAM; the floor path needs the floor above
    // twice that and 6 GiB of headroom (1 s of filling at 6 GiB/s: the longest sleep).
    let floor = Floor::new(&Root::default())
        .and_then(|mut f| f.memory())
        .expect("sysinfo and /proc/zoneinfo are readable");
    let term_kb = floor.total_kb / 100;
    require(
        floor.available_kb > 2 * term_kb && floor.available_kb - term_kb >= 6000 * 1024,
        &format!(
            "6 GiB of free RAM above 2 % of RAM (free minus reserve is {} MiB of {} MiB)",
            floor.available_kb / 1024,
            floor.total_kb / 1024
        ),
    );

    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let mut child = Command::new(crate::util::bin())
        .args(["run", "--dry-run", "--mem-min", "1", "--event-log"])
        .arg(&log)
        .arg("--lock-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oomguard run");
    let stderr = child.stderr.take().unwrap();
    let daemon = Reaped(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[daemon] {l}");
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("guarding system") => break,
            Ok(_) => {}
            Err(_) => panic!("the daemon did not start within 10 s"),
        }
    }
    // Past start-up: 3 s into the loop the daemon trims and warms up again (a full read and a
    // table refresh), which is not a wake-up far from the levels.
    std::thread::sleep(Duration::from_millis(4500));

    // The main thread only (its TID is the PID): the loop that wakes up.
    let trace = dir.path().join("trace");
    let st = Command::new("timeout")
        .args([
            "-s",
            "INT",
            "6.5",
            "strace",
            "-y",
            "-e",
            "trace=sysinfo,pread64",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", &daemon.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run strace");
    assert!(
        matches!(st.code(), Some(0 | 124 | 130)) || st.code().is_none(),
        "strace failed: {st:?}"
    );
    let text = std::fs::read_to_string(&trace).expect("strace output");
    let sysinfo = text.lines().filter(|l| l.starts_with("sysinfo(")).count();
    let meminfo = text
        .lines()
        .filter(|l| l.contains("</proc/meminfo>"))
        .count();
    let vmstat = text
        .lines()
        .filter(|l| l.contains("</proc/vmstat>"))
        .count();
    eprintln!("{text}");
    // About six wake-ups at 1 s: all but the kernel-kill checks (every 5 s: one or two in
    // 6.5 s, each with meminfo and /proc/vmstat) read only sysinfo.
    assert!(sysinfo >= 4, "{sysinfo} sysinfo calls in 6.5 s:\n{text}");
    assert!(
        (1..=2).contains(&meminfo),
        "{meminfo} meminfo reads in 6.5 s (want the 5 s kernel-kill checks only):\n{text}"
    );
    assert!(
        vmstat >= meminfo,
        "each meminfo read comes with the kill counter:\n{text}"
    );
    drop(daemon);
}
