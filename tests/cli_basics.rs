//! The CLI contract's basics: usage errors exit 2 and name the problem.
use crate::util::oomguard;

#[test]
fn check_config_names_the_line_and_exits_2() {
    let d = crate::util::tempdir();
    let f = d.path().join("bad.toml");
    std::fs::write(
        &f,
        "[[protect]]\nname = \"^sshd$\"\n\n[[avoid]]\nnmae = \"x\"\n",
    )
    .unwrap();
    let out = oomguard(&["check-config", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5") && err.contains("nmae"), "{err}");
    std::fs::write(&f, "[[protect]]\nname = \"^sshd$\"\noom_score_adj = -900\n").unwrap();
    let out = oomguard(&["check-config", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = oomguard(&[
        "check-config",
        d.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// Rules that parse but can match nothing (a user unknown here, a name longer than the
/// kernel's 15-byte comm) or everything (a `protect` every field of which matches any text)
/// are warned of; the file is still valid.
#[test]
fn check_config_warns_of_rules_that_match_nothing_or_everything() {
    let d = crate::util::tempdir();
    let f = d.path().join("rules.toml");
    std::fs::write(
        &f,
        "[[protect]]\nname = \"^systemd-journald$\"\n\n[[protect]]\nname = \"\"\n\n\
         [[avoid]]\nuser = \"no-such-user-oomg\"\n\n[[protect]]\nname = \"^systemd-journal$\"\n\
         cmdline = \".*\"\nuser = \"root\"\n",
    )
    .unwrap();
    let out = oomguard(&["check-config", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("rules.toml:1") && err.contains("needs more than 15 bytes"),
        "{err}"
    );
    assert!(
        err.contains("rules.toml:4") && err.contains("matches every process"),
        "{err}"
    );
    assert!(err.contains("no-such-user-oomg"), "{err}");
    assert_eq!(
        err.matches("warning").count(),
        3,
        "the last rule is fine: {err}"
    );
}

#[test]
fn unknown_flag_exits_2() {
    let out = oomguard(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}

/// An argument that is not UTF-8 is a usage error (exit 2, 3 for doctor), not a panic.
#[test]
fn a_non_utf8_argument_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"\xff");
    for (args, code) in [
        (vec![bad], 2),
        (vec![std::ffi::OsStr::new("doctor"), bad], 3),
    ] {
        let out = std::process::Command::new(crate::util::bin())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A negative level is the level's own error (what is wrong with it), not clap's "unexpected
/// argument '-1'" (as if a flag named 1 had been given). Exit 2 either way.
#[test]
fn a_negative_level_is_named_as_a_bad_level() {
    for (flag, value) in [
        ("--mem-min", "-1"),
        ("--swap-min", "-5,2"),
        ("--mem-min-size", "-1G"),
        ("--swap-min-size", "-100M"),
    ] {
        let out = oomguard(&["run", "--dry-run", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}")),
            "{flag} {value}: {err}"
        );
        assert!(
            !err.contains("unexpected argument"),
            "{flag} {value}: {err}"
        );
    }
}
