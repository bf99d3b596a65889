//! Attacker-controlled names (issue 17 item 4): a process any user starts can carry escape
//! sequences and newlines in its name; text output shows them escaped, never raw.

use std::process::{Command, Stdio};

use crate::util::{Reaped, oomguard, tempdir};

/// The name the kernel keeps (comm): ESC, a colour sequence, a newline, a tab.
const NAME: &str = "ev\x1b[31mil\nx\ty";
const SHOWN: &str = "ev\\x1b[31mil\\nx\\ty";

fn assert_escaped(what: &str, out: &std::process::Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: {out:?}");
    assert!(
        text.contains(SHOWN),
        "{what} does not show the escaped name:\n{text}"
    );
    assert!(!text.contains('\x1b'), "{what} printed a raw ESC:\n{text}");
    assert!(
        !text.contains("il\nx"),
        "{what} printed a raw newline in a name:\n{text}"
    );
}

#[test]
fn a_process_named_with_control_characters_is_shown_escaped_by_top_and_why() {
    let dir = tempdir();
    let exe = dir.path().join(NAME);
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let child = Command::new(&exe)
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Reaped(child);
    let pid = _guard.0.id().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim_end_matches('\n'),
        NAME,
        "the kernel kept another name"
    );
    assert_escaped(
        "top --once",
        &oomguard(&["top", "--once", "--filter", "ev\x1b[31mil"]),
    );
    assert_escaped("why", &oomguard(&["why", &pid]));
    // JSON stays exact JSON: the name round-trips.
    let out = oomguard(&["why", &pid, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["target"]["comm"].as_str().or(doc["comm"].as_str()),
        Some(NAME),
        "{doc}"
    );
}

/// `top --group`: a group's key is a tree root's name (the process names itself) or a cgroup
/// path (a delegated group's name is its owner's choice); the table shows both escaped, the
/// JSON exact. Before, the key went to the terminal raw: a process named with an OSC sequence
/// set the terminal's title, as the first tree root of `top --once --group tree`.
#[test]
fn top_group_keys_are_shown_escaped() {
    let Some(cg) = crate::util::TestCgroup::new("hostile-groups", 256 << 20) else {
        return;
    };
    let group = "gr\x1b[31mp";
    let sub = cg.dir.join(group);
    std::fs::create_dir(&sub).unwrap();
    let dir = tempdir();
    let exe = dir.path().join(NAME);
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("60").stdin(Stdio::null());
    // Its parent (this test) is outside the scope: it is the root of its tree there.
    let child = Reaped(oomguard::act::scratch::spawn_in(&sub, &mut cmd).unwrap());
    let pid = child.pid();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
        != format!("{NAME}\n")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the name was not taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let scope = format!("cgroup:{}", cg.rel());
    let tree = oomguard(&["top", "--once", "--group", "tree", "--scope", &scope]);
    assert_escaped("top --group tree", &tree);
    let cgroups = oomguard(&["top", "--once", "--group", "cgroup", "--scope", &scope]);
    let text = String::from_utf8_lossy(&cgroups.stdout);
    assert!(cgroups.status.success(), "{cgroups:?}");
    assert!(
        text.contains("gr\\x1b[31mp"),
        "top --group cgroup does not show the escaped group:\n{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "top --group cgroup printed a raw ESC:\n{text}"
    );
    // JSON stays exact.
    let out = oomguard(&["top", "--json", "--group", "tree", "--scope", &scope]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = format!("{pid} {NAME}");
    assert!(
        doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"].as_str() == Some(want.as_str())),
        "{doc}"
    );
    drop(child);
}

#[test]
fn events_text_output_escapes_names_from_the_log() {
    let dir = tempdir();
    let log = dir.path().join("events.jsonl");
    let rec = serde_json::json!({"time": "2026-11-30T18:00:00.000+00:00", "action": "kill",
        "victim": {"pid": 7, "comm": NAME, "rss_kb": 1024}, "trigger": {"reason": "low_memory_kill"}});
    std::fs::write(&log, format!("{rec}\n")).unwrap();
    assert_escaped(
        "events",
        &oomguard(&["events", "--event-log", log.to_str().unwrap()]),
    );
}

/// A log file names processes as the kernel got them: `explain`'s text and summary show an
/// escape sequence in a name escaped (a line holds no newline, so the name here has none).
#[test]
fn explain_text_output_escapes_names_from_the_log() {
    let dir = tempdir();
    let log = dir.path().join("kern.log");
    let name = "ev\x1b[31mil\ty";
    std::fs::write(
        &log,
        format!(
            "[  100.000000] {name} invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0\n\
             [  100.100000] Out of memory: Killed process 4242 ({name}) total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:0\n"
        ),
    )
    .unwrap();
    for args in [vec!["explain"], vec!["explain", "--summary"]] {
        let mut args = args.clone();
        args.push(log.to_str().unwrap());
        let out = oomguard(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(text.contains("ev\\x1b[31mil\\ty"), "{args:?}:\n{text}");
        assert!(
            !text.contains('\x1b'),
            "{args:?} printed a raw ESC:\n{text}"
        );
    }
}

/// The daemon's own log lines name the victim it kills: a hog named with control characters, in
/// a memory cgroup the daemon guards, shows up escaped on its stderr (a terminal or journald
/// reader never gets a raw escape sequence or a forged line).
#[test]
fn the_daemons_kill_line_shows_a_hostile_name_escaped() {
    use std::time::{Duration, Instant};
    let Some(cg) = crate::util::TestCgroup::new("hostile-kill", 300 << 20) else {
        return;
    };
    let dir = tempdir();
    let stderr_path = dir.path().join("daemon.err");
    let log = dir.path().join("events.jsonl");
    let scope = format!("cgroup:{}", cg.rel());
    let child = Command::new(crate::util::bin())
        .args(["run", "--scope", &scope, "--event-log"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Reaped(child);
    let text = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text().contains("guarding") {
        assert!(
            Instant::now() < deadline,
            "daemon did not start:\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = Command::new(crate::util::hog_bin());
    cmd.args(["--name", NAME, "--max", "1G"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut hog = Reaped(cg.spawn(&mut cmd));
    hog.wait_timeout(Duration::from_secs(60))
        .expect("the hog was not killed within 60 s");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text().contains("sent SIG") {
        assert!(Instant::now() < deadline, "no kill line:\n{}", text());
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::util::interrupt_and_reap(&mut daemon.0);
    let out = text();
    assert_eq!(cg.kernel_oom_kills(), 0, "the kernel killed first:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains("sent SIG"))
        .expect("kill line");
    assert!(
        line.contains(SHOWN),
        "the kill line does not show the escaped name: {line}"
    );
    assert!(
        !out.contains('\x1b'),
        "the daemon printed a raw ESC:\n{out}"
    );
    assert!(
        !out.contains("il\nx"),
        "the daemon printed a raw newline in a name:\n{out}"
    );
}
