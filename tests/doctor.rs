//! `oomguard doctor` on fixture trees: a healthy box passes every check; each broken tree
//! (an overlay on the healthy one, `DELETE` listing files to remove) fails exactly the checks
//! it breaks, with the right severity, fix and Nagios exit code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{oomguard, tempdir};

const IDS: [&str; 20] = [
    "swap",
    "swappiness",
    "overcommit",
    "commit_limit",
    "panic_on_oom",
    "oom_kill_allocating_task",
    "oom_dump_tasks",
    "min_free_kbytes",
    "watermark_scale_factor",
    "psi",
    "cgroup_version",
    "cgroup_limits",
    "immune_processes",
    "sshd",
    "headroom",
    "oom_kills",
    "other_oom_daemons",
    "config",
    "oomguard_service",
    "process_listing",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doctor")
}

/// Copies a fixture tree; symlinks stay links (as `/etc/sysctl.d/99-sysctl.conf` is one).
fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), dst).unwrap();
        } else if kind.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else if e.file_name() != "DELETE" {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The healthy tree with `overlay` applied, in a fresh temporary directory.
fn tree(overlay: Option<&str>) -> tempfile::TempDir {
    let d = tempdir();
    copy_tree(&fixtures().join("healthy"), d.path());
    if let Some(o) = overlay {
        let o = fixtures().join(o);
        copy_tree(&o, d.path());
        if let Ok(list) = std::fs::read_to_string(o.join("DELETE")) {
            for rel in list.lines().filter(|l| !l.is_empty()) {
                let p = d.path().join(rel);
                if p.is_dir() {
                    std::fs::remove_dir_all(p).unwrap();
                } else {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
    }
    d
}

/// Runs `doctor --json` on the tree; returns exit code and id → check.
fn doctor(root: &Path) -> (i32, BTreeMap<String, serde_json::Value>) {
    let out = oomguard(&["doctor", "--json", "--root", root.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "only 'checks' at the top: {v}");
    let mut map = BTreeMap::new();
    for c in v["checks"].as_array().unwrap() {
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["fix", "found", "id", "severity", "why"], "{c}");
        assert!(c["fix"].is_null() || c["fix"].is_string());
        assert!(["ok", "warn", "critical"].contains(&c["severity"].as_str().unwrap()));
        map.insert(c["id"].as_str().unwrap().to_string(), c.clone());
    }
    (out.status.code().unwrap(), map)
}

/// The overlay fails exactly `expect` (id → severity); every other check is ok.
fn assert_only(
    overlay: &str,
    expect: &[(&str, &str)],
    code: i32,
) -> BTreeMap<String, serde_json::Value> {
    let d = tree(Some(overlay));
    let (got, checks) = doctor(d.path());
    for id in IDS {
        let want = expect
            .iter()
            .find(|(i, _)| *i == id)
            .map_or("ok", |(_, s)| *s);
        let c = &checks[id];
        assert_eq!(c["severity"], want, "{overlay}: {id}: {c}");
        if want != "ok" {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "{overlay}: {id} has no fix: {c}"
            );
            assert!(!c["why"].as_str().unwrap().is_empty());
        }
    }
    assert_eq!(got, code, "{overlay}: exit code");
    checks
}

#[test]
fn a_healthy_box_passes_every_check_with_stable_ids() {
    let d = tree(None);
    let (code, checks) = doctor(d.path());
    let ids: Vec<&str> = checks.keys().map(String::as_str).collect();
    let mut want = IDS.to_vec();
    want.sort();
    assert_eq!(ids, want);
    for (id, c) in &checks {
        assert_eq!(c["severity"], "ok", "{id}: {c}");
    }
    assert_eq!(code, 0);
    assert!(
        checks["swap"]["found"]
            .as_str()
            .unwrap()
            .contains("/dev/zram0")
    );
    assert!(checks["sshd"]["found"].as_str().unwrap().contains("-900"));
    // The tree has no kernel type information: the daemon would read /proc, and that is no
    // fault.
    let listing = checks["process_listing"]["found"].as_str().unwrap();
    assert!(
        listing.starts_with("/proc, one read per process")
            && listing.contains("CONFIG_DEBUG_INFO_BTF"),
        "{listing}"
    );
    assert!(
        checks["oomguard_service"]["found"]
            .as_str()
            .unwrap()
            .contains("pid 600")
    );
    // Text output: a summary line and no terminal codes when piped.
    let out = oomguard(&["doctor", "--root", d.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("doctor OK: 0 critical, 0 warning(s), 20 ok"),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
}

#[test]
fn broken_boxes_fail_exactly_what_they_break() {
    let c = assert_only("no-swap", &[("swap", "warn")], 1);
    let fix = c["swap"]["fix"].as_str().unwrap();
    // zramctl takes a size, not a percentage: a quarter of the tree's 16 GiB.
    assert!(
        fix.contains("zramctl --find --size 4G --algorithm zstd |") && fix.contains("swapon"),
        "{fix}"
    );
    assert!(!fix.contains('%'), "{fix}");
    let c = assert_only("overcommit-always", &[("overcommit", "warn")], 1);
    assert!(
        c["overcommit"]["fix"]
            .as_str()
            .unwrap()
            .contains("vm.overcommit_memory=0")
    );
    let c = assert_only("panic-on-oom", &[("panic_on_oom", "critical")], 2);
    assert_eq!(
        c["panic_on_oom"]["fix"],
        "sysctl -w vm.panic_on_oom=0 && echo 'vm.panic_on_oom = 0' >> /etc/sysctl.d/99-zz-oomguard.conf"
    );
    let c = assert_only("immune-hog", &[("immune_processes", "warn")], 1);
    assert!(
        c["immune_processes"]["found"]
            .as_str()
            .unwrap()
            .contains("java (800")
    );
    // The rule for root's java names root: a user's process called java is not shielded.
    let fix = c["immune_processes"]["fix"].as_str().unwrap();
    assert!(
        fix.ends_with(r#"[[protect]] name = "^java$" user = "root" oom_score_adj = -900"#),
        "{fix}"
    );
    let c = assert_only("sshd-unprotected", &[("sshd", "warn")], 1);
    let fix = c["sshd"]["fix"].as_str().unwrap();
    assert!(
        fix.contains("OOMScoreAdjust=-900")
            && fix.contains(r#"[[protect]] name = "^sshd$" user = "root" oom_score_adj = -900"#),
        "{fix}"
    );
    let c = assert_only("earlyoom", &[("other_oom_daemons", "warn")], 1);
    assert!(
        c["other_oom_daemons"]["found"]
            .as_str()
            .unwrap()
            .contains("earlyoom (pid 900)")
    );
    let c = assert_only("oom-kills", &[("oom_kills", "warn")], 1);
    let found = c["oom_kills"]["found"].as_str().unwrap();
    assert!(
        found.starts_with("2 OOM kill(s)")
            && found.contains("memcg OOM killed 4242 (hog), anon-rss 512 MiB")
            && found.contains("OOM killed 777 (java)"),
        "{found}"
    );
    let c = assert_only(
        "cgroup-v1-no-psi",
        &[
            ("psi", "warn"),
            ("cgroup_version", "warn"),
            ("cgroup_limits", "warn"),
        ],
        1,
    );
    assert!(
        c["cgroup_limits"]["found"].as_str().unwrap().contains(
            "1 of 2 service groups have a memory limit; without: /system.slice/ssh.service"
        )
    );
    assert_only("service-down", &[("oomguard_service", "critical")], 2);
    assert_only(
        "low-headroom",
        &[("headroom", "critical"), ("swap", "warn")],
        2,
    );
    let c = assert_only("bad-config", &[("config", "critical")], 2);
    let found = c["config"]["found"].as_str().unwrap();
    assert!(found.contains("oom_score_ajd"), "{found}");
    // The file is named once, as the machine knows it (not under the test's root).
    assert!(found.starts_with("/etc/oomguard/oomguard.toml:"), "{found}");
    assert_eq!(found.matches("oomguard.toml").count(), 1, "{found}");
    assert_only(
        "sysctls",
        &[
            ("swappiness", "warn"),
            ("oom_kill_allocating_task", "warn"),
            ("oom_dump_tasks", "warn"),
            ("min_free_kbytes", "warn"),
            ("watermark_scale_factor", "warn"),
        ],
        1,
    );
    assert_only("strict-overcommit-full", &[("commit_limit", "critical")], 2);
}

#[test]
fn nothing_readable_or_bad_usage_is_unknown() {
    let d = tempdir();
    let out = oomguard(&["doctor", "--root", d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("doctor UNKNOWN"));
    assert_eq!(
        oomguard(&["doctor", "--no-such-flag"]).status.code(),
        Some(3)
    );
    // Its own failure (the report cannot be written) is UNKNOWN too, never WARNING.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    for json in [false, true] {
        let mut args = vec!["doctor"];
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(crate::util::bin())
            .args(&args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No space left"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn this_machine_gets_a_complete_checklist() {
    let (code, checks) = doctor(Path::new("/"));
    assert_eq!(checks.len(), IDS.len());
    assert!((0..=2).contains(&code));
}

/// Without systemd as PID 1 no fix says `systemctl`: sysctls go to /etc/sysctl.conf and the
/// daemon is started from the init's own scripts.
#[test]
fn advice_fits_the_init_system() {
    let c = assert_only(
        "sysvinit",
        &[("panic_on_oom", "critical"), ("oomguard_service", "warn")],
        2,
    );
    assert_eq!(
        c["panic_on_oom"]["fix"],
        "sysctl -w vm.panic_on_oom=0 && echo 'vm.panic_on_oom = 0' >> /etc/sysctl.conf"
    );
    let fix = c["oomguard_service"]["fix"].as_str().unwrap();
    assert!(fix.contains("/etc/init.d/oomguard"), "{fix}");
    // Every fix of every check, also those that pass: none names systemctl.
    let d = tree(Some("sysvinit"));
    for name in ["sshd-unprotected", "earlyoom", "cgroup-v1-no-psi"] {
        copy_tree(&fixtures().join(name), d.path());
    }
    let (_, checks) = doctor(d.path());
    for (id, c) in &checks {
        let fix = c["fix"].as_str().unwrap_or("");
        assert!(!fix.contains("systemctl"), "{id}: {fix}");
    }
    assert!(
        checks["sshd"]["fix"]
            .as_str()
            .unwrap()
            .contains("oomguard protect --once")
    );
    assert!(
        checks["other_oom_daemons"]["fix"]
            .as_str()
            .unwrap()
            .contains("/etc/init.d/earlyoom stop")
    );
    // The same breakage under systemd: systemctl advice.
    let c = assert_only("panic-on-oom", &[("panic_on_oom", "critical")], 2);
    assert!(
        c["panic_on_oom"]["fix"]
            .as_str()
            .unwrap()
            .ends_with(">> /etc/sysctl.d/99-zz-oomguard.conf")
    );
    let c = assert_only("earlyoom", &[("other_oom_daemons", "warn")], 1);
    assert!(
        c["other_oom_daemons"]["fix"]
            .as_str()
            .unwrap()
            .contains("systemctl disable --now earlyoom")
    );
}

/// doctor reads what the running daemon guards from its command line (`--scope`, else its
/// config, else the whole machine) and says when that is one group, or a group that is gone.
#[test]
fn doctor_says_what_the_running_daemon_guards() {
    let d = tree(None);
    let (_, checks) = doctor(d.path());
    let found = checks["oomguard_service"]["found"].as_str().unwrap();
    assert!(
        found.contains("pid 600 guards system (the default)"),
        "{found}"
    );
    // The daemon's config names the scope.
    std::fs::write(
        d.path().join("etc/oomguard/oomguard.toml"),
        "[run]\nscope = \"cgroup:/system.slice/ssh.service\"\n",
    )
    .unwrap();
    let (code, checks) = doctor(d.path());
    let c = &checks["oomguard_service"];
    assert_eq!(c["severity"], "warn", "{c}");
    assert!(
        c["found"].as_str().unwrap().contains(
            "guards cgroup:/system.slice/ssh.service (scope in /etc/oomguard/oomguard.toml)"
        ),
        "{c}"
    );
    assert_eq!(code, 1);
    let c = assert_only("daemon-cgroup-scope", &[("oomguard_service", "warn")], 1);
    let c = &c["oomguard_service"];
    assert!(
        c["found"]
            .as_str()
            .unwrap()
            .contains("pid 600 guards cgroup:/system.slice/postgresql.service (--scope)"),
        "{c}"
    );
    assert!(
        c["why"].as_str().unwrap().contains("one cgroup only"),
        "{c}"
    );
    let c = assert_only(
        "daemon-scope-missing",
        &[("oomguard_service", "critical")],
        2,
    );
    let why = c["oomguard_service"]["why"].as_str().unwrap();
    assert!(
        why.contains("cgroup:/system.slice/gone.service") && why.contains("nothing is guarded"),
        "{why}"
    );
}

/// How the daemon will list processes: with the kernel's task iterator where it loads (here,
/// as root), else from /proc, said as no fault (a kernel before 5.8, doctor without the
/// privileges) or warned of (type information the iterator cannot be built from).
#[test]
fn doctor_says_how_the_daemon_lists_processes() {
    let listing = |checks: &BTreeMap<String, serde_json::Value>| {
        let c = &checks["process_listing"];
        assert_eq!(c["severity"], "ok", "{c}");
        c["found"].as_str().unwrap().to_string()
    };
    // This kernel, as root: the iterator loads and one pass lists the processes, this test
    // and the doctor among them.
    let (_, checks) = doctor(Path::new("/"));
    let found = listing(&checks);
    let n: usize = found
        .strip_prefix("the kernel's task iterator (BPF): one pass listed ")
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no pass of the iterator: {found}"));
    assert!(n >= 2, "{found}");

    // `doctor --json` run by `wrapper`: its process_listing check.
    let listing_under = |wrapper: &[&str]| {
        let out = std::process::Command::new(wrapper[0])
            .args(&wrapper[1..])
            .arg(crate::util::bin())
            .args(["doctor", "--json"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} (util-linux): {e}", wrapper[0]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "process_listing")
            .cloned()
            .unwrap();
        assert_eq!(c["severity"], "ok", "{c}");
        c["found"].as_str().unwrap().to_string()
    };
    // In a PID namespace of its own under this /proc (another namespace's): no iterator, as
    // the daemon would decide there.
    let found = listing_under(&["unshare", "--pid", "--fork"]);
    assert!(
        found.contains("/proc mounted here belongs to another PID namespace"),
        "{found}"
    );
    // Not root: doctor cannot load it, and says the types are there.
    let found = listing_under(&[
        "setpriv",
        "--reuid",
        "nobody",
        "--regid",
        "nogroup",
        "--clear-groups",
    ]);
    assert!(
        found.contains("describe the task iterator (not loaded: doctor runs without CAP_BPF"),
        "{found}"
    );

    // A tree with this kernel's type information: described, not loaded.
    let btf = std::fs::read("/sys/kernel/btf/vmlinux")
        .expect("this kernel's type information, /sys/kernel/btf/vmlinux");
    let d = tree(None);
    let dir = d.path().join("sys/kernel/btf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vmlinux"), &btf).unwrap();
    let (code, checks) = doctor(d.path());
    assert_eq!(code, 0);
    let found = listing(&checks);
    assert!(
        found.contains("describe the task iterator (not loaded: this is a tree"),
        "{found}"
    );

    // The same types without the iterator's function, as before Linux 5.8: /proc, no fault.
    let mut old = btf;
    let at = memchr::memmem::find(&old, b"\0bpf_iter_task\0").expect("bpf_iter_task");
    old[at + 13] = b'X';
    std::fs::write(dir.join("vmlinux"), &old).unwrap();
    let (code, checks) = doctor(d.path());
    assert_eq!(code, 0);
    let found = listing(&checks);
    assert!(
        found.starts_with("/proc, one read per process")
            && found.contains("no bpf_iter_task")
            && found.contains("Linux 5.8"),
        "{found}"
    );

    // Type information that cannot be read: a warning with a fix.
    let c = assert_only("btf-junk", &[("process_listing", "warn")], 1);
    let found = c["process_listing"]["found"].as_str().unwrap();
    assert!(
        found.contains("the kernel's task iterator fails here"),
        "{found}"
    );
}

/// A value set for good goes to a sysctl.d file that sorts after Debian's and Fedora's
/// `99-sysctl.conf` link to /etc/sysctl.conf (the last file read wins), and the line that
/// would set it back at boot is named.
#[test]
fn a_sysctl_fix_outlasts_the_boot_files_and_names_the_line_that_sets_it_back() {
    let c = assert_only("sysctl-conf-panic", &[("panic_on_oom", "critical")], 2);
    assert_eq!(
        c["panic_on_oom"]["fix"],
        "sysctl -w vm.panic_on_oom=0 && echo 'vm.panic_on_oom = 0' >> /etc/sysctl.d/99-zz-oomguard.conf; then remove or correct what sets it back at boot: /etc/sysctl.conf line 7 ('vm.panic_on_oom = 1')"
    );
    assert!("99-zz-oomguard.conf" > "99-sysctl.conf");
    // A setting of the right value is no culprit: the healthy tree's fixes name no file.
    let d = tree(Some("sysctl-conf-panic"));
    std::fs::write(d.path().join("etc/sysctl.conf"), "vm.panic_on_oom = 0\n").unwrap();
    let (_, checks) = doctor(d.path());
    assert!(
        checks["panic_on_oom"]["fix"]
            .as_str()
            .unwrap()
            .ends_with(">> /etc/sysctl.d/99-zz-oomguard.conf")
    );
    // Without systemd the fix appends to /etc/sysctl.conf itself, and still names the line.
    let d = tree(Some("sysctl-conf-panic"));
    copy_tree(&fixtures().join("sysvinit"), d.path());
    let (_, checks) = doctor(d.path());
    assert_eq!(
        checks["panic_on_oom"]["fix"],
        "sysctl -w vm.panic_on_oom=0 && echo 'vm.panic_on_oom = 0' >> /etc/sysctl.conf; then remove or correct what sets it back at boot: /etc/sysctl.conf line 7 ('vm.panic_on_oom = 1')"
    );
}

/// The sshd drop-in goes to the unit root's sshd runs in, read from its cgroup: ssh.service
/// (Debian, Ubuntu) or sshd.service (RHEL, Fedora, SUSE, Arch); ssh.service when unknown.
#[test]
fn the_sshd_drop_in_names_the_unit_sshd_runs_in() {
    let drop_in = |overlay: Option<&str>| {
        let d = tree(Some("sshd-unprotected"));
        if let Some(o) = overlay {
            copy_tree(&fixtures().join(o), d.path());
        }
        let (_, checks) = doctor(d.path());
        let c = &checks["sshd"];
        assert_eq!(c["severity"], "warn", "{c}");
        let fix = c["fix"].as_str().unwrap();
        fix[fix.find("or a drop-in: ").expect(fix)..].to_string()
    };
    let want = |unit: &str, name: &str| {
        format!(
            "or a drop-in: mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nOOMScoreAdjust=-900\\n' > /etc/systemd/system/{unit}.d/oom.conf && systemctl daemon-reload && systemctl restart {name}"
        )
    };
    assert_eq!(drop_in(Some("sshd-unit-ssh")), want("ssh.service", "ssh"));
    // sshd.service; a user's process named sshd (pid 450, in the user's own manager) is not
    // taken for it.
    assert_eq!(
        drop_in(Some("sshd-unit-sshd")),
        want("sshd.service", "sshd")
    );
    assert_eq!(drop_in(None), want("ssh.service", "ssh"));
}

/// A daemon that runs dry (`--dry-run`, or `dry_run = true` in the config it reads) kills
/// nothing: a warning that says so and how to let it act, not "guards system".
#[test]
fn a_dry_run_daemon_is_no_guard() {
    let c = assert_only("daemon-dry-run", &[("oomguard_service", "warn")], 1);
    let c = &c["oomguard_service"];
    assert!(
        c["found"]
            .as_str()
            .unwrap()
            .contains("pid 600 guards system (the default), dry run (--dry-run)"),
        "{c}"
    );
    assert!(
        c["why"].as_str().unwrap().contains(
            "runs dry (--dry-run): it decides and records what it would kill, but never kills"
        ),
        "{c}"
    );
    assert_eq!(
        c["fix"],
        "remove --dry-run from the unit's ExecStart (systemctl edit --full oomguard) so it can act, then systemctl restart oomguard"
    );

    // No --config: the default file, and its [run] dry_run = true.
    let c = assert_only("daemon-dry-run-config", &[("oomguard_service", "warn")], 1);
    let c = &c["oomguard_service"];
    assert!(
        c["found"].as_str().unwrap().contains(
            "pid 600 guards system (the default), dry run (dry_run = true in /etc/oomguard/oomguard.toml)"
        ),
        "{c}"
    );
    assert_eq!(
        c["fix"],
        "remove dry_run = true from the [run] section of /etc/oomguard/oomguard.toml (or set dry_run = false) so it can act, then systemctl reload oomguard"
    );

    // Both, and a daemon started by hand (no unit, no systemd): each step, no systemctl.
    let d = tree(Some("daemon-dry-run-config"));
    copy_tree(&fixtures().join("daemon-dry-run"), d.path());
    copy_tree(&fixtures().join("sysvinit"), d.path());
    std::fs::remove_file(d.path().join("etc/systemd/system/oomguard.service")).unwrap();
    let (_, checks) = doctor(d.path());
    let c = &checks["oomguard_service"];
    assert_eq!(c["severity"], "warn", "{c}");
    assert_eq!(
        c["fix"],
        "remove dry_run = true from the [run] section of /etc/oomguard/oomguard.toml (or set dry_run = false) so it can act; and remove --dry-run from the command that starts the daemon (pid 600) so it can act, and restart it"
    );

    // A daemon that acts on the whole machine beside a dry-run one: guarded.
    let d = tree(Some("daemon-dry-run"));
    std::fs::create_dir(d.path().join("proc/601")).unwrap();
    copy_tree(
        &fixtures().join("healthy/proc/600"),
        &d.path().join("proc/601"),
    );
    std::fs::write(
        d.path().join("proc/601/stat"),
        "601 (oomguard) S 1 601 601 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1601 100000 1500 0\n",
    )
    .unwrap();
    let (code, checks) = doctor(d.path());
    let c = &checks["oomguard_service"];
    assert_eq!(c["severity"], "ok", "{c}");
    assert!(
        c["found"].as_str().unwrap().contains(
            "pid 600 guards system (the default), dry run (--dry-run), pid 601 guards system (the default)"
        ),
        "{c}"
    );
    assert_eq!(code, 0);
}
