//! Bounded inputs (issue 17 item 8): a config file has a size cap (an endless one such as
//! `/dev/zero` is a clear error, exit 2), regexes and rule counts are capped, a refused reload
//! does not grow the daemon, `explain` keeps memory bounded on input without newlines and on
//! huge task dumps (`--summary`), and `events` on a large log.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin, interrupt_and_reap, oomguard, tempdir};

#[test]
fn dev_zero_as_config_is_a_clear_error_with_exit_2() {
    for args in [
        &["check-config", "/dev/zero"][..],
        &["run", "--dry-run", "--config", "/dev/zero"][..],
    ] {
        let out = oomguard(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("/dev/zero") && err.contains("larger than 1024 KiB"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_config_over_one_mib_is_refused_and_one_under_is_read() {
    let dir = tempdir();
    let p = dir.path().join("big.toml");
    // Valid TOML (comments) just over the cap.
    let line = format!("# {}\n", "x".repeat(1021));
    std::fs::write(&p, line.repeat(1025)).unwrap();
    let out = oomguard(&["check-config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than 1024 KiB"));
    std::fs::write(&p, line.repeat(1000)).unwrap();
    let out = oomguard(&["check-config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_regex_that_compiles_huge_is_refused_naming_the_line() {
    let dir = tempdir();
    let p = dir.path().join("re.toml");
    std::fs::write(
        &p,
        "[[protect]]\nname = \"^sshd$\"\n\n[[avoid]]\nname = \"a{1000}{1000}\"\n",
    )
    .unwrap();
    let out = oomguard(&["check-config", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("re.toml:5:") && err.contains("size limit"),
        "{err}"
    );
}

#[test]
fn too_many_rules_are_refused() {
    let dir = tempdir();
    let p = dir.path().join("rules.toml");
    let text: String = (0..300)
        .map(|i| format!("[[prefer]]\nname = \"^p{i}$\"\n"))
        .collect();
    std::fs::write(&p, text).unwrap();
    let out = oomguard(&["check-config", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("300 rules") && err.contains("at most 256"),
        "{err}"
    );
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

#[test]
fn a_refused_reload_of_a_huge_config_leaves_rss_where_it_was() {
    let dir = tempdir();
    let cfg = dir.path().join("oomguard.toml");
    std::fs::write(&cfg, "[[protect]]\nname = \"^sshd$\"\n").unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--dry-run", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon exited early"
    );
    let before = status_kb(pid, "VmRSS:");
    // 200 MiB of valid TOML: reading it whole would pin 200 MiB (the daemon locks its memory).
    {
        let mut f = std::fs::File::create(&cfg).unwrap();
        let line = format!("# {}\n", "x".repeat(1021));
        let block = line.repeat(1024);
        for _ in 0..200 {
            f.write_all(block.as_bytes()).unwrap();
        }
    }
    // SAFETY: SIGHUP to the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon exited on a bad reload"
    );
    let after = status_kb(pid, "VmRSS:");
    interrupt_and_reap(&mut child);
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("larger than 1024 KiB"),
        "reload not refused: {err}"
    );
    assert!(
        after < before + 8 * 1024,
        "VmRSS grew from {before} kB to {after} kB on a refused reload"
    );
}

/// Peak RSS (kB) of a child reaped with wait4.
fn wait_hwm(pid: u32, limit: Duration) -> Option<(i32, u64)> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain integers; all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child writes only into `status` and `ru`, both live here.
        let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid as i32 {
            return Some((status, ru.ru_maxrss as u64));
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs oomguard with `args`, stdin fed by `feed` on a thread of its own (dropped at once
/// when `None`), stdout read to the end; returns its wait status, peak RSS (kB) and stdout.
/// Fails the test when it does not end within `limit`.
fn run_measured(
    args: &[&str],
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) + Send>>,
    limit: Duration,
) -> (i32, u64, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(feed) = feed {
            feed(stdin);
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let Some((status, hwm_kb)) = wait_hwm(pid, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{args:?} did not finish in {limit:?}");
    };
    writer.join().unwrap();
    (status, hwm_kb, reader.join().unwrap())
}

#[test]
fn explain_on_input_without_newlines_keeps_memory_bounded() {
    const SIZE: usize = 64 << 20;
    let feed = Box::new(|mut stdin: std::process::ChildStdin| {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..SIZE >> 20 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
        // A report after the endless line is still found.
        let _ = stdin.write_all(b"\n[  100.000000] Out of memory: Killed process 4242 (hog) total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0\n");
    });
    let (status, hwm_kb, out) =
        run_measured(&["explain", "-"], Some(feed), Duration::from_secs(300));
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}: {out}"
    );
    assert!(out.contains("hog (pid 4242)"), "{out}");
    assert!(
        hwm_kb < 32 * 1024,
        "explain peaked at {hwm_kb} kB on 64 MiB without a newline"
    );
}

/// `explain --summary` shows no task row and keeps none: a report listing 60 000 tasks
/// costs a few MiB (kept, its rows alone take some 14 MiB).
#[test]
fn explain_summary_keeps_no_task_row() {
    let feed = Box::new(|stdin: std::process::ChildStdin| {
        let mut w = std::io::BufWriter::new(stdin);
        let mut text = String::from(
            "[    1.000000] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
             [    1.000001] Tasks state (memory values in pages):\n\
             [    1.000002] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name\n",
        );
        for pid in 1000..61_000 {
            text += &format!(
                "[    1.000003] [{pid:>7}]  1000 {pid:>5}    15650    15230   139264        0             0 worker\n"
            );
            if text.len() > 1 << 16 {
                if w.write_all(text.as_bytes()).is_err() {
                    return;
                }
                text.clear();
            }
        }
        text += "[    1.000004] Out of memory: Killed process 60999 (worker) total-vm:62600kB, anon-rss:60920kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:136kB oom_score_adj:0\n";
        let _ = w.write_all(text.as_bytes());
    });
    let (status, hwm_kb, out) = run_measured(
        &["explain", "--summary", "-"],
        Some(feed),
        Duration::from_secs(120),
    );
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}: {out}"
    );
    assert!(out.contains("global       worker[60999]"), "{out}");
    assert!(
        hwm_kb < 10 * 1024,
        "explain --summary peaked at {hwm_kb} kB on a dump of 60 000 tasks"
    );
}

/// `events` reads a large log in parts and keeps only the records it shows: 64 MiB of old
/// records and three recent ones cost a few MiB, not the file (and its parsed records).
#[test]
fn events_on_a_large_log_keeps_memory_bounded() {
    let d = crate::util::tempdir();
    let log = d.path().join("events.jsonl");
    let old = r#"{"time":"2020-01-01T00:00:00.000+00:00","action":"warn","scope":"system","host":"h","state":"high","used_pct":91.0,"level_pct":90.0,"clear_pct":85.0,"available_kb":1,"total_kb":10}"#;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        let mut written = 0;
        while written < 64 << 20 {
            writeln!(f, "{old}").unwrap();
            written += old.len() + 1;
        }
        let now = oomguard::record::eventlog::now_rfc3339();
        for pid in [1, 2, 3] {
            writeln!(
                f,
                r#"{{"time":"{now}","action":"kill","scope":"system","host":"h","victim":{{"pid":{pid},"comm":"hog","rss_kb":1}},"trigger":{{"reason":"low_memory_kill"}}}}"#
            )
            .unwrap();
        }
    }
    for json in [true, false] {
        let mut args = vec![
            "events",
            "--event-log",
            log.to_str().unwrap(),
            "--since",
            "1h",
        ];
        if json {
            args.push("--json");
        }
        let (status, hwm_kb, out) = run_measured(&args, None, Duration::from_secs(120));
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{args:?}: status {status}: {out}"
        );
        let kills = out.lines().filter(|l| l.contains("kill")).count();
        assert_eq!(kills, 3, "{args:?}: {out}");
        assert!(
            hwm_kb < 32 * 1024,
            "events {args:?} peaked at {hwm_kb} kB on a 64 MiB log"
        );
    }
}
