//! One voice to the user: every command gives a bad `--scope` the same exit code (2, usage)
//! and names the flag; an error's cause is printed once.
use crate::util::oomguard;

#[test]
fn a_scope_that_names_no_cgroup_is_a_usage_error_in_every_command() {
    let scope = format!(
        "cgroup:/oomguard-voice-no-such-group-{}",
        std::process::id()
    );
    for cmd in [
        &["run", "--dry-run", "--scope"][..],
        &["protect", "--list", "--scope"],
        &["top", "--once", "--scope"],
        &["why", "1", "--scope"],
    ] {
        let mut args = cmd.to_vec();
        args.push(&scope);
        let out = oomguard(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains(&format!("--scope {scope}")) && err.contains("was not found"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn an_error_says_its_cause_once() {
    let d = crate::util::tempdir();
    let missing = d.path().join("missing.toml");
    let out = oomguard(&["check-config", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}

/// `top --once --json` is one JSON document (it was a clap conflict, exit 2).
#[test]
fn top_once_json_prints_json() {
    let out = oomguard(&["top", "--once", "--json", "-n", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["processes"].as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(doc["scope"], "system");
}

/// A size as the old top printed it: `512K`, `12.3M`, `1.20G` (a digit right before the unit).
fn old_size(text: &str) -> Option<String> {
    regex::Regex::new(r"\b\d+(\.\d+)?[KMG]\b")
        .unwrap()
        .find(text)
        .map(|m| m.as_str().to_string())
}

/// One size format: `top` and `why` print sizes as `values::HumanKb` does (`12.3 MiB`).
#[test]
fn top_and_why_print_sizes_in_the_one_format() {
    let unit = regex::Regex::new(r"\d+(\.\d)? (KiB|MiB|GiB|TiB)").unwrap();
    let out = oomguard(&["top", "--once", "-n", "5"]);
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{top}");
    let summary = top.lines().next().unwrap_or_default();
    assert!(
        summary.contains(" available of ") && unit.is_match(summary),
        "{summary}"
    );
    assert_eq!(old_size(&top), None, "{top}");
    let out = oomguard(&["top", "--once", "--group", "cgroup", "-n", "3"]);
    let groups = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && unit.is_match(&groups), "{groups}");
    assert_eq!(old_size(&groups), None, "{groups}");
    // A sleep is far from the top: why lists who goes first and by how much.
    let sleep = crate::util::Reaped(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep"),
    );
    let out = oomguard(&["why", &sleep.pid().to_string()]);
    let why = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{why}");
    let freeing = why
        .lines()
        .find(|l| l.starts_with("Killed before it ("))
        .unwrap_or_else(|| panic!("{why}"));
    assert!(unit.is_match(freeing), "{freeing}");
    assert_eq!(old_size(&why), None, "{why}");
}

/// `why` and `top` count the same processes: kernel threads are not counted by either (why
/// reads them, to explain one when asked). Other tests start and end processes meanwhile, so
/// why's count must lie between two readings of top's, give or take their difference.
#[test]
fn why_and_top_count_processes_the_same_way() {
    let count = |args: &[&str]| -> serde_json::Value {
        let out = oomguard(args);
        assert!(out.status.success(), "{args:?}");
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let me = std::process::id().to_string();
    let t1 = count(&["top", "--json", "-n", "1"]);
    let w = count(&["why", "--json", &me]);
    let t2 = count(&["top", "--json", "-n", "1"]);
    let k = t1["kernel_threads"].as_i64().unwrap();
    assert!(crate::util::require(
        k >= 10,
        "kernel threads visible in /proc (the host's PID namespace)"
    ));
    let (a, b) = (
        t1["process_count"].as_i64().unwrap(),
        t2["process_count"].as_i64().unwrap(),
    );
    let slack = (a - b).abs() + 5;
    let wc = w["process_count"].as_i64().unwrap();
    assert!(
        wc >= a.min(b) - slack && wc <= a.max(b) + slack,
        "why counts {wc}, top {a} and {b} ({k} kernel threads)"
    );
    // The text says the same number.
    let out = oomguard(&["why", &me]);
    let text = String::from_utf8_lossy(&out.stdout);
    let of: i64 = regex::Regex::new(r"Rank: \d+ of (\d+) ")
        .unwrap()
        .captures(&text)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        of >= a.min(b) - slack && of <= a.max(b) + slack,
        "why says of {of}, top {a} and {b}"
    );
    // A kernel thread can still be explained.
    let out = oomguard(&["why", "--json", "2"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(doc["immune_reason"], "kernel_thread", "{doc}");
}

/// The tests' memory hog is not a command of the shipped binary (it is the test-only
/// `oomguard-hog`, built by `cargo test` alone).
#[test]
fn the_shipped_binary_has_no_hog_command() {
    let out = oomguard(&["hog", "--max", "1M", "--hold", "1ms"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'hog'"));
}

/// `--help` lists the values of `--kill-unit`, `--scope` and `--group` (the parser itself
/// carries them, so help, completions and validation agree).
#[test]
fn help_lists_the_values_of_closed_flags() {
    let help = |args: &[&str]| String::from_utf8_lossy(&oomguard(args).stdout).into_owned();
    let run = help(&["run", "--help"]);
    for v in [
        "- process:",
        "- tree:",
        "- cgroup:",
        "- system:",
        "- cgroup::",
    ] {
        assert!(run.contains(v), "run --help lacks '{v}':\n{run}");
    }
    let top = help(&["top", "--help"]);
    for v in ["- tree:", "- cgroup:", "- unit:", "- system:"] {
        assert!(top.contains(v), "top --help lacks '{v}':\n{top}");
    }
    // A value outside the list is refused with the list.
    let out = oomguard(&["run", "--kill-unit", "bogus", "--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("process, tree, cgroup"), "{err}");
}
