//! A real kernel OOM on this machine: several processes in a test memory cgroup (v1, 64 MiB),
//! one of them a multi-threaded `oomguard-hog` that outgrows the limit; the kernel's memcg OOM
//! killer fires and `oomguard explain --kmsg --json` must name that hog as the victim, with
//! its PID, its name and the cgroup path.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Reaped, TestCgroup, bin, hog_bin, require};

#[test]
fn explains_a_real_memcg_oom_read_back_from_kmsg() {
    if !require(
        std::fs::File::open("/dev/kmsg").is_ok(),
        "read access to /dev/kmsg (root)",
    ) {
        return;
    }
    let Some(cg) = TestCgroup::new("explain", 64 << 20) else {
        return;
    };
    let sleeper = Reaped(cg.spawn(Command::new("sleep").arg("300").stdout(Stdio::null())));
    let small = Reaped(
        cg.spawn(
            Command::new(hog_bin())
                .args(["--max", "8M"])
                .stdout(Stdio::null()),
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut hog = Reaped(
        cg.spawn(
            Command::new(hog_bin())
                .args(["--max", "512M", "--threads", "4"])
                .stdout(Stdio::null()),
        ),
    );
    let status = hog.wait_timeout(Duration::from_secs(60));
    assert!(status.is_some(), "the hog was not killed within 60 s");
    assert!(cg.kernel_oom_kills() >= 1, "the kernel counted no OOM kill");

    let out = Command::new(bin())
        .args(["explain", "--kmsg", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run oomguard explain");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let events = doc["events"].as_array().expect("events array");
    let ev = events
        .iter()
        .rev()
        .find(|e| e["victim"]["pid"].as_i64() == Some(hog.pid() as i64))
        .unwrap_or_else(|| {
            panic!(
                "no event with victim pid {} in {} events",
                hog.pid(),
                events.len()
            )
        });
    assert_eq!(ev["victim"]["comm"], "oomguard-hog");
    assert_eq!(ev["kind"], "memcg");
    assert_eq!(ev["constraint"], "CONSTRAINT_MEMCG");
    assert_eq!(ev["memcg"].as_str(), Some(cg.rel().as_str()));
    assert_eq!(ev["task_memcg"].as_str(), Some(cg.rel().as_str()));
    assert!(ev["victim"]["anon_rss_kb"].as_u64().unwrap_or(0) > 32 << 10);
    // The invoker is one of the hog's threads (or the hog itself).
    let inv = ev["invoker"]["pid"].as_i64().expect("invoker pid");
    let hog_threads: Vec<i64> = std::fs::read_dir(format!("/proc/{}/task", hog.pid()))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        inv == hog.pid() as i64
            || hog_threads.contains(&inv)
            || ev["invoker"]["comm"] == "oomguard-hog",
        "invoker {inv} is not the hog"
    );
    // The task dump lists every process of the group, and the victim ranks first.
    let tasks = ev["tasks"].as_array().expect("task dump");
    for pid in [sleeper.pid(), small.pid(), hog.pid()] {
        assert!(
            tasks.iter().any(|t| t["pid"].as_i64() == Some(pid as i64)),
            "pid {pid} not in the task dump"
        );
    }
    assert_eq!(ev["analysis"]["victim_rank"], 1);
    assert!(ev["time"]["monotonic_s"].as_f64().is_some());
}

/// `--follow` prints the event of an OOM that happens while it runs (JSON, one per line).
#[test]
fn follow_prints_a_new_oom_as_it_happens() {
    use std::io::{BufRead, BufReader};
    if !require(
        std::fs::File::open("/dev/kmsg").is_ok(),
        "read access to /dev/kmsg (root)",
    ) {
        return;
    }
    let Some(cg) = TestCgroup::new("explain-follow", 48 << 20) else {
        return;
    };
    let mut follower = Reaped(
        Command::new(bin())
            .args(["explain", "--follow", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start explain --follow"),
    );
    let stdout = follower.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut hog = Reaped(
        cg.spawn(
            Command::new(hog_bin())
                .args(["--max", "256M", "--threads", "2"])
                .stdout(Stdio::null()),
        ),
    );
    assert!(
        hog.wait_timeout(Duration::from_secs(60)).is_some(),
        "hog not killed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
        if v["victim"]["pid"].as_i64() == Some(hog.pid() as i64) {
            assert_eq!(v["kind"], "memcg");
            assert_eq!(v["memcg"].as_str(), Some(cg.rel().as_str()));
            return;
        }
        seen.push(line);
    }
    panic!(
        "no event for hog {} within 20 s; saw {} others",
        hog.pid(),
        seen.len()
    );
}
