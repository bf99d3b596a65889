//! `oomguard doctor`: audits a machine's OOM configuration. [`facts`] reads everything through
//! the root; [`checks`] turns the facts into a checklist, each item with a stable id, a
//! severity, what was found, why it matters and the exact fix.
//!
//! Wire format (`doctor --json`): `{"checks": [{"id": str, "severity": "ok|warn|critical",
//! "found": str, "why": str, "fix": str|null}]}`. Ids: `swap`, `swappiness`, `overcommit`,
//! `commit_limit`, `panic_on_oom`, `oom_kill_allocating_task`, `oom_dump_tasks`,
//! `min_free_kbytes`, `watermark_scale_factor`, `psi`, `cgroup_version`, `cgroup_limits`,
//! `immune_processes`, `sshd`, `headroom`, `oom_kills`, `other_oom_daemons`, `config`,
//! `oomguard_service`, `process_listing`.
pub mod checks;
pub mod facts;

use serde::Serialize;

/// How bad a finding is (Nagios: 0 OK, 1 WARNING, 2 CRITICAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warn,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Critical => "critical",
        }
    }
}

/// One item of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub severity: Severity,
    pub found: String,
    pub why: String,
    pub fix: Option<String>,
    /// False when the check could not read what it needs (then it is a warning).
    #[serde(skip)]
    pub readable: bool,
}

impl Check {
    pub fn new(id: &'static str, severity: Severity, found: impl Into<String>) -> Check {
        Check {
            id,
            severity,
            found: found.into(),
            why: String::new(),
            fix: None,
            readable: true,
        }
    }
    pub fn why(mut self, why: impl Into<String>) -> Check {
        self.why = why.into();
        self
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
    /// A check whose input could not be read.
    pub fn unreadable(id: &'static str, what: &str) -> Check {
        Check {
            id,
            severity: Severity::Warn,
            found: format!("cannot read {what}"),
            why: "doctor could not check this; the file is missing or not readable".into(),
            fix: None,
            readable: false,
        }
    }
}

/// Runs every check against the machine under `root`.
pub fn run(root: &crate::sense::Root) -> Vec<Check> {
    let me = root.is_real().then(|| std::process::id() as i32);
    let facts = facts::Facts::gather(root, me);
    let mut checks = checks::all(&facts);
    if facts.meminfo.is_none() {
        // Not a Linux /proc at all: nothing found can be trusted (UNKNOWN).
        for c in &mut checks {
            c.readable = false;
        }
    }
    checks
}

/// The Nagios exit code: 3 when no check could read its input, else the worst severity.
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().all(|c| !c.readable) {
        return 3;
    }
    match checks.iter().map(|c| c.severity).max() {
        Some(Severity::Critical) => 2,
        Some(Severity::Warn) => 1,
        _ => 0,
    }
}
