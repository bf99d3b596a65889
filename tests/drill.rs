//! `oomguard drill` for real (cgroup v1 here): the kernel kills the hog inside the scratch
//! group, the kill is recorded, the group is gone afterwards — also after Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin, own_v1_memory_cgroup, require, tempdir};

fn drill_dirs() -> Vec<std::path::PathBuf> {
    let Some(own) = own_v1_memory_cgroup() else {
        return Vec::new();
    };
    std::fs::read_dir(own)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("oomguard-drill-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Drill tests run one at a time: a drill removes the groups that ended drills left, and a
/// test that checks that must be the one that removes them.
static DRILLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What every drill test needs: a writable v1 memory controller (None without one, outside
/// CI; in CI `require` fails the test), and its turn (the guard, held for the test).
fn drill_turn() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !require(
        own_v1_memory_cgroup().is_some(),
        "a writable cgroup v1 memory controller (run as root)",
    ) {
        return None;
    }
    Some(DRILLS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `oomguard drill ARGS --json --event-log LOG`: exit code, the document, stderr.
fn drill_json(args: &[&str], log: &std::path::Path) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(bin())
        .arg("drill")
        .args(args)
        .args(["--json", "--event-log"])
        .arg(log)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{err}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v, err)
}

#[test]
fn the_kernel_kills_the_hog_inside_the_scratch_group_and_it_is_recorded() {
    let Some(_turn) = drill_turn() else {
        return;
    };
    let d = tempdir();
    let log = d.path().join("events.jsonl");
    let out = Command::new(bin())
        .args(["drill", "--limit", "24M", "--json", "--event-log"])
        .arg(&log)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["killed_by"], "kernel");
    assert_eq!(v["version"], "v1");
    assert_eq!(v["limit_kb"], 24 * 1024);
    assert!(v["oom_kills"].as_u64().unwrap() >= 1);
    assert!(v["cleaned_up"].as_bool().unwrap());
    let pid = v["hog_pid"].as_i64().unwrap();
    assert!(!alive(pid));
    assert!(!std::path::Path::new(v["cgroup"].as_str().unwrap()).exists());
    // The peak stayed at the limit: the memory was charged inside the scratch group.
    assert!(v["peak_kb"].as_u64().unwrap() <= 24 * 1024);
    let recs = crate::util::event_log_json(&log);
    let rec = recs.iter().find(|r| r["action"] == "kernel_kill").unwrap();
    assert_eq!(rec["victim"]["pid"], pid);
    assert!(rec["scope"].as_str().unwrap().starts_with("cgroup:/"));
    assert!(rec["scope"].as_str().unwrap().contains("oomguard-drill-"));
    // Text mode says what happened, step by step.
    let out = Command::new(bin())
        .args(["drill", "--limit", "16M", "--event-log"])
        .arg(&log)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("memcg OOM killer killed the hog") && text.contains("PASSED"),
        "{text}"
    );
}

/// A drill whose 8 MiB hog stays under its 64 MiB limit, so only a signal or its 60 s timeout
/// ends it; `extra` arguments, stdout piped (its progress lines), event log at `log`.
fn endless_drill(log: &std::path::Path, extra: &[&str], stderr: Stdio) -> std::process::Child {
    Command::new(bin())
        .arg("drill")
        .args(extra)
        .args([
            "--limit",
            "64M",
            "--hog-max",
            "8M",
            "--timeout",
            "60s",
            "--event-log",
        ])
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The PIDs a drill's progress lines name, read up to the hog's line: (its daemon's, if it
/// started one; its hog's).
fn started(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> (Option<i64>, i64) {
    let mut daemon = None;
    for l in lines {
        let l = l.unwrap();
        if let Some(rest) = l.strip_prefix("drill: started oomguard run") {
            daemon = rest
                .split("(pid ")
                .nth(1)
                .and_then(|p| p.split(')').next())
                .and_then(|p| p.parse::<i64>().ok());
        }
        if let Some(rest) = l.strip_prefix("drill: started hog ") {
            let hog = rest.split(' ').next().and_then(|p| p.parse::<i64>().ok());
            return (daemon, hog.expect("the hog's PID"));
        }
    }
    panic!("the drill named no hog")
}

#[test]
fn ctrl_c_cleans_up_the_hog_and_the_group() {
    let Some(_turn) = drill_turn() else {
        return;
    };
    let d = tempdir();
    // A hog that stays under the limit: only Ctrl-C ends this drill.
    let mut child = endless_drill(&d.path().join("events.jsonl"), &[], Stdio::inherit());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (_, hog) = started(&mut lines);
    let scratch: Vec<_> = drill_dirs()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{}", child.id())))
        .collect();
    assert_eq!(scratch.len(), 1);
    assert!(alive(hog));
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: SIGINT to the drill this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "drill did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(!alive(hog), "hog {hog} survived");
    assert!(!scratch[0].exists(), "{} left behind", scratch[0].display());
    assert!(rest.iter().any(|l| l.contains("cleaned up")), "{rest:?}");
}

#[test]
fn with_the_daemon_oomguard_kills_the_hog_before_the_kernel() {
    let Some(_turn) = drill_turn() else {
        return;
    };
    let d = tempdir();
    let log = d.path().join("events.jsonl");
    let (code, v, err) = drill_json(&["--with-daemon"], &log);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["killed_by"], "oomguard", "{v}");
    assert_eq!(v["oom_kills"], 0, "the kernel had to act: {v}");
    assert!(v["cleaned_up"].as_bool().unwrap());
    let pid = v["hog_pid"].as_i64().unwrap();
    let recs = crate::util::event_log_json(&log);
    let kill = recs.iter().find(|r| r["action"] == "kill").unwrap();
    assert_eq!(kill["victim"]["pid"], pid);
    assert!(kill["scope"].as_str().unwrap().contains("oomguard-drill-"));
    // The daemon is gone too.
    assert!(
        err.contains("[daemon]") && err.contains("stopping"),
        "{err}"
    );
}

/// A drill that ends without its cleanup (SIGKILL) takes the daemon it started with it: the
/// daemon has the drill's death signal (SIGTERM) and stops. Before, it went on guarding the
/// scratch group left behind, for ever. (What the drill left behind, the group and its hog,
/// is removed here.)
#[test]
fn a_drill_killed_outright_leaves_neither_its_daemon_nor_its_hog_running() {
    let Some(_turn) = drill_turn() else {
        return;
    };
    let d = tempdir();
    // A hog that stays under the limit: nothing ends this drill but the signal.
    let mut child = endless_drill(
        &d.path().join("events.jsonl"),
        &["--with-daemon"],
        Stdio::null(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (daemon, hog) = started(&mut lines);
    let scratch: Vec<_> = drill_dirs()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{}", child.id())))
        .collect();
    let daemon = daemon.expect("the drill named no daemon");
    assert!(alive(daemon), "the daemon {daemon} is not running");
    // The hog settled: named, in its group, holding its memory (a drill killed while its fork
    // is under way takes the child being made with it, whatever the hog does).
    let t0 = Instant::now();
    let settled = || {
        std::fs::read_to_string(format!("/proc/{hog}/comm"))
            .is_ok_and(|c| c.trim() == "oomguard-hog")
            && std::fs::read_to_string(format!("/proc/{hog}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .is_some_and(|kb| kb >= 8 * 1024)
            })
    };
    while !settled() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(hog) && settled(), "the hog {hog} is not running");
    // SIGKILL: the drill cleans nothing up.
    let _ = child.kill();
    let _ = child.wait();
    let t0 = Instant::now();
    while (alive(daemon) || alive(hog)) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = alive(daemon);
    let hog_survived = alive(hog);
    // What the drill left: its daemon (if it survived), the group and the hog in it.
    if survived {
        // SAFETY: SIGKILL to the daemon the drill this test started left running.
        unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    }
    // The next drill removes the group this one left, once nothing is in it; it leaves a group
    // whose maker runs (this test's PID in the name: a running process's).
    let running = own_v1_memory_cgroup()
        .unwrap()
        .join(format!("oomguard-drill-{}", std::process::id()));
    let _ = std::fs::create_dir(&running);
    let after = (!hog_survived).then(|| drill_json(&["--limit", "16M"], &d.path().join("2.jsonl")));
    let kept = running.exists();
    for dir in scratch.iter().chain([&running]) {
        oomguard::act::scratch::remove_group(dir, false);
    }
    assert!(
        !survived,
        "the daemon {daemon} went on running after its drill was killed"
    );
    assert!(
        !hog_survived,
        "the hog {hog} went on running after its drill was killed"
    );
    assert_eq!(scratch.len(), 1, "{scratch:?}");
    let (code, v, err) = after.unwrap();
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(
        v["removed_abandoned"],
        serde_json::json!([scratch[0]]),
        "{v} {err}"
    );
    assert!(kept, "a running drill's group was removed: {v}");
}

/// Ctrl-C from the terminal (SIGINT to the drill's process group) while the drill's daemon
/// starts: a daemon caught before it has set its handlers dies of it, and the drill ends as
/// interrupted (130, its group gone), not as failed. Before, it said "oomguard run exited
/// before it guarded the scratch group" and exited 1. (The SIGINTs repeat every 2 ms from the
/// drill's first line on, so that one lands in the daemon's first moments.)
#[test]
fn ctrl_c_while_the_daemon_starts_is_an_interruption() {
    let Some(_turn) = drill_turn() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let d = tempdir();
    let mut child = Command::new(bin())
        .args([
            "drill",
            "--with-daemon",
            "--limit",
            "64M",
            "--hog-max",
            "8M",
            "--event-log",
        ])
        .arg(d.path().join("events.jsonl"))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let err = BufReader::new(child.stderr.take().unwrap());
    let err = std::thread::spawn(move || err.lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    // Its first line: its handlers are set and its group is made.
    let first = out.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.starts_with("drill: scratch cgroup"), "{first}");
    let scratch: Vec<_> = drill_dirs()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{pgid}")))
        .collect();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the drill did not stop");
        }
        // SAFETY: SIGINT to the process group of the drill this test started (its own).
        unsafe { libc::kill(-pgid, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(2));
    };
    let rest: Vec<String> = out.map_while(Result::ok).collect();
    let err = err.join().unwrap();
    let left: Vec<_> = scratch.iter().filter(|p| p.exists()).collect();
    for dir in &left {
        oomguard::act::scratch::remove_group(dir, false);
    }
    assert_eq!(scratch.len(), 1, "{scratch:?}");
    assert_eq!(
        status.code(),
        Some(130),
        "{}\n{}",
        rest.join("\n"),
        err.join("\n")
    );
    assert!(
        err.iter().any(|l| l.contains("drill interrupted")),
        "{err:?}"
    );
    assert!(left.is_empty(), "left behind: {left:?}");
}
