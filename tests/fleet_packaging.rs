//! Packaging: the systemd unit passes `systemd-analyze verify`; the commented default config,
//! the Kubernetes DaemonSet (and its embedded config) and the Grafana dashboard parse, and the
//! dashboard only queries series the exposition has; man pages and completions generate.
use std::path::{Path, PathBuf};
use std::process::Command;

use oomguard::config::Config;
use oomguard::record::metrics::Metrics;
use oomguard::record::{Observer, Sample, Wake};

use crate::fleet_util::have;
use crate::util::{bin, oomguard, require, tempdir};

fn pkg(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(rel)
}

fn parse(text: &str, name: &str) -> Config {
    Config::parse(text, Path::new(name), &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(pkg("oomguard.service")).unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "OOMScoreAdjust=-1000",
        "ExecReload=",
        "ReadWritePaths=/sys/fs/cgroup",
    ] {
        assert!(unit.contains(want), "unit lacks {want}");
    }
    if !require(
        have("systemd-analyze"),
        "systemd-analyze (Debian package systemd)",
    ) {
        return;
    }
    // Verified as installed, with the binary where the unit expects it.
    let d = tempdir();
    let f = d.path().join("oomguard.service");
    std::fs::write(
        &f,
        unit.replace("/usr/bin/oomguard", bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("oomguard.service"),
        "systemd-analyze verify: {err}"
    );
    // The check is real: a typo in the unit is reported.
    std::fs::write(&f, unit.replace("Type=notify", "Tpye=notify")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Tpye"));
}

/// The config with every `#key = value`, `#[section]` and `#[[table]]` line uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.starts_with(' ') && !rest.is_empty() => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn default_config_parses_as_shipped_and_with_every_example_uncommented() {
    let text = std::fs::read_to_string(pkg("oomguard.toml")).unwrap();
    let c = parse(&text, "oomguard.toml");
    assert!(c.rules.is_empty() && c.fleet.watch.is_empty());
    assert_eq!(c.fleet.warn.level_pct, Some(85.0));
    let all = uncommented(&text);
    let c = parse(&all, "uncommented.toml");
    assert_eq!(c.rules.len(), 3);
    assert_eq!(c.fleet.watch.len(), 1);
    assert_eq!(c.fleet.watch[0].restart, ["systemctl", "restart", "nginx"]);
    assert_eq!(c.fleet.metrics_listen.unwrap().port(), 9577);
    assert_eq!(c.fleet.hooks.pre_kill.len(), 2);
    assert!(c.run.psi.is_some() && c.run.dry_run == Some(false));
    let out = oomguard(&["check-config", pkg("oomguard.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn daemonset_parses_and_runs_privileged_on_the_host_pid_namespace() {
    let text = std::fs::read_to_string(pkg("kubernetes/oomguard-daemonset.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML");
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let ds = kind("DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true));
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
    assert_eq!(c["ports"][0]["containerPort"].as_i64(), Some(9577));
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    let args: Vec<&str> = c["args"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "run");
    // The config it mounts is a valid oomguard config.
    let cm = kind("ConfigMap");
    let cfg = parse(cm["data"]["oomguard.toml"].as_str().unwrap(), "configmap");
    assert_eq!(cfg.rules.len(), 1);
    // Metrics: never 0.0.0.0; the pod IP from the downward API, fenced by a NetworkPolicy.
    assert!(!text.contains("0.0.0.0"), "the manifest exposes 0.0.0.0");
    assert!(cfg.fleet.metrics_listen.is_none());
    let i = args
        .iter()
        .position(|a| *a == "--metrics")
        .expect("--metrics");
    assert_eq!(args[i + 1], "$(POD_IP):9577");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
    let np = kind("NetworkPolicy");
    assert_eq!(
        np["spec"]["ingress"][0]["ports"][0]["port"].as_i64(),
        Some(9577)
    );
    // Probes do not depend on /metrics latency.
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{probe}"
        );
    }
}

/// A registry that has seen every kind of record, so every family renders.
fn full_exposition() -> String {
    let mut m = Metrics::new();
    m.sample(&Sample {
        mem: Default::default(),
        levels: Default::default(),
        psi_some: Some(1.0),
        psi_full: Some(1.0),
        psi_some_avg10: Some(1.0),
        psi_full_avg10: Some(1.0),
        wake: Wake::Timer,
        scan: Some(std::time::Duration::from_millis(1)),
        scanned: 1,
        bounded: false,
        floor: false,
    });
    for r in [
        serde_json::json!({"action": "kill", "trigger": {"reason": "r"}, "victim": {"pid": 1, "comm": "x"}, "signals": [{"signal": "SIGTERM"}]}),
        serde_json::json!({"action": "dry_run", "trigger": {"reason": "r"}}),
        serde_json::json!({"action": "kernel_kill", "oom_kills": 1}),
        serde_json::json!({"action": "warn", "state": "high"}),
        serde_json::json!({"action": "missing"}),
        serde_json::json!({"action": "restart", "ok": true}),
    ] {
        m.record(&oomguard::record::event::Record::from_value(r).unwrap());
    }
    m.render()
}

#[test]
fn grafana_dashboard_queries_only_series_that_exist() {
    let text = std::fs::read_to_string(pkg("grafana/oomguard-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(dash["uid"], "oomguard");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let exposition = full_exposition();
    let have: std::collections::HashSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let re = regex::Regex::new(r"oomguard_[a-z0-9_]+").unwrap();
    let mut used = 0;
    for p in panels {
        assert!(p["gridPos"]["w"].as_u64().unwrap() <= 24);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for m in re.find_iter(expr) {
                assert!(
                    have.contains(m.as_str()),
                    "panel '{}' queries {} which the exposition does not have",
                    p["title"],
                    m.as_str()
                );
                used += 1;
            }
        }
    }
    assert!(used >= 15, "{used}");
}

#[test]
fn man_pages_and_completions_generate_for_every_subcommand() {
    let d = tempdir();
    oomguard::cli::assets::write_all(d.path()).unwrap();
    for sub in [
        "run",
        "explain",
        "top",
        "why",
        "protect",
        "doctor",
        "drill",
        "events",
        "check-config",
    ] {
        let page = std::fs::read_to_string(d.path().join(format!("man/oomguard-{sub}.1")))
            .unwrap_or_else(|_| panic!("no man page for {sub}"));
        assert!(
            page.contains(".TH")
                && page.contains(&format!("oomguard\\-{}", sub.replace('-', "\\-"))),
            "{sub}"
        );
    }
    assert!(
        !d.path().join("man/oomguard-hog.1").exists(),
        "hidden commands have no page"
    );
    let bash = std::fs::read_to_string(d.path().join("completions/oomguard.bash")).unwrap();
    assert!(bash.contains("events") && bash.contains("--since"));
    let zsh = std::fs::read_to_string(d.path().join("completions/_oomguard")).unwrap();
    assert!(zsh.starts_with("#compdef oomguard"));
    assert!(d.path().join("completions/oomguard.fish").exists());
    if have("bash") {
        let ok = Command::new("bash")
            .arg("-n")
            .arg(d.path().join("completions/oomguard.bash"))
            .status()
            .unwrap();
        assert!(ok.success(), "the bash completion is valid bash");
    }
}
