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
