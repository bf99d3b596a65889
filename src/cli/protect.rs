//! `oomguard protect`: apply the rules' `oom_score_adj` values once, or list which process
//! matches which rule.
//!
//! `--list --json` prints `{"matches": [{"pid", "comm", "cmdline", "rule", "rule_kind",
//! "current", "target"}]}`; `--once --json` prints `{"results": [...]}` with one entry per
//! matching process that has a target: the fields of a `protect` event-log record, `outcome`
//! being `written`, `refused`, `gone`, `failed` or `unchanged` (already at its target).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::act::protect::{Match, Outcome, Protector, ScopeFilter};
use crate::config::{Config, passwd_lookup};
use crate::daemon::guardian::{Guardian, GuardianOptions};
use crate::decide::policy::Policy;
use crate::record::eventlog::EventLog;
use crate::sense::Root;
use crate::sense::scope::Scope;
use crate::values::{Dur, ScopeSpec};

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("mode").required(true).args(["once", "list", "watch"])),
    after_help = "Examples:
  oomguard protect --list
      which process matches which rule, its current and target oom_score_adj
  oomguard protect --once --config /etc/oomguard/oomguard.toml
      write every rule's oom_score_adj to its processes, then exit
  oomguard protect --watch --event-log /var/log/oomguard-protect.jsonl
      keep applying them to every new process until Ctrl-C (the daemon does this too)
  oomguard protect --list --json | jq '.matches[] | select(.current != .target)'

Rules come from --protect/--prefer/--avoid (name only, listed first) and the config file
([[protect]], [[prefer]], [[avoid]], with oom_score_adj to write).
Lowering a value below 0 needs CAP_SYS_RESOURCE: each refused process is reported (EACCES)
and the others are still written; the exit code is then 1."
)]
pub struct ProtectArgs {
    /// Write each matching process's rule value once and exit.
    #[arg(long)]
    pub once: bool,
    /// List the processes that rules match, with current and target oom_score_adj.
    #[arg(long)]
    pub list: bool,
    /// Keep applying the rules in the foreground: on every new process, exec and name change
    /// (netlink proc connector), plus a periodic scan; until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: the safety-net scan interval (at least 100ms).
    #[arg(long, default_value = "60s", value_parser = Dur::parse_interval)]
    pub scan_interval: Dur,
    /// With --watch: no periodic scan at all, process events only (tests).
    #[arg(long, hide = true)]
    pub no_scan: bool,
    /// The config file with the rules (default: /etc/oomguard/oomguard.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub rules: super::RuleFlags,
    /// Only processes of this scope: `system` or `cgroup:PATH` (default: the config's
    /// run.scope, the daemon's, else system).
    #[arg(long, value_parser = super::ScopeParser)]
    pub scope: Option<ScopeSpec>,
    /// Also append a `protect` record per write or refusal to this event log.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Read the system under this directory instead of / (tests).
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
}

pub fn run(a: ProtectArgs) -> anyhow::Result<ExitCode> {
    let root = Root::new(&a.root);
    let users = passwd_lookup(root.as_path());
    let config = Config::load(a.config.as_deref(), &users)?;
    let policy = Policy {
        rules: a.rules.rules(&config)?,
    };
    let spec = a
        .scope
        .clone()
        .or_else(|| config.run.scope.clone())
        .unwrap_or(ScopeSpec::System);
    let scope = Scope::resolve(&root, &spec).with_context(|| format!("--scope {spec}"))?;
    let log = match &a.event_log {
        Some(p) => Some(EventLog::open(p, &scope.label())?),
        None => None,
    };
    if policy.rules.is_empty() {
        eprintln!(
            "oomguard: no rules{}; nothing to do",
            config
                .path
                .as_ref()
                .map_or(" (no config file)".into(), |p| format!(
                    " in {}",
                    p.display()
                ))
        );
    }
    let has_adj = policy.has_adj_rules();
    if a.watch {
        return watch(&root, &scope, policy, log, &a);
    }
    let mut p = Protector::new(&root, ScopeFilter::of(&scope), policy, log)
        .context("cannot read the process table")?;
    let matches = p.matches().context("cannot list processes")?;
    if a.list {
        print_list(&matches, a.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !has_adj && !a.json {
        eprintln!("oomguard: no rule carries oom_score_adj; nothing to write");
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for m in matches.iter().filter(|m| m.target.is_some()) {
        let target = m.target.unwrap_or_default();
        let (outcome, error, old) = if m.current == Some(target) {
            ("unchanged".to_string(), None, m.current)
        } else {
            match p.check(m.pid, "once", None) {
                Some(ap) => {
                    if matches!(ap.outcome, Outcome::Refused | Outcome::Failed) {
                        failed += 1;
                    }
                    let o = ap.outcome.as_str().to_string();
                    (o, ap.error, ap.old_oom_score_adj)
                }
                // Exited, or no longer matching since the listing.
                None => ("gone".into(), Some("the process exited".into()), m.current),
            }
        };
        results.push(serde_json::json!({
            "pid": m.pid, "comm": m.comm, "cmdline": m.cmdline, "rule": m.rule,
            "rule_kind": m.rule_kind, "old_oom_score_adj": old, "oom_score_adj": target,
            "outcome": outcome, "error": error,
        }));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "results": results }))?
        );
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for r in &results {
            let what = match r["outcome"].as_str().unwrap_or_default() {
                "written" => format!("written (was {})", r["old_oom_score_adj"]),
                "unchanged" => "already set".into(),
                o => format!(
                    "{}: {}",
                    o.to_uppercase(),
                    r["error"].as_str().unwrap_or_default()
                ),
            };
            writeln!(
                out,
                "{:>7} {:<16} {:>5}  {what}  ({})",
                r["pid"].as_i64().unwrap_or_default(),
                crate::values::escape_text(r["comm"].as_str().unwrap_or_default()),
                r["oom_score_adj"].as_i64().unwrap_or_default(),
                r["rule"].as_str().unwrap_or_default()
            )?;
        }
        let written = results.iter().filter(|r| r["outcome"] == "written").count();
        let unchanged = results
            .iter()
            .filter(|r| r["outcome"] == "unchanged")
            .count();
        writeln!(
            out,
            "{written} written, {unchanged} already set, {failed} refused or failed"
        )?;
    }
    if failed > 0 {
        eprintln!(
            "oomguard: {failed} process(es) could not be protected (see above); the others were written"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(matches: &[Match], json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "matches": matches }))?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>7} {:<16} {:<8} {:>7} {:>6}  RULE",
        "PID", "COMM", "KIND", "CURRENT", "TARGET"
    )?;
    let fmt = |v: Option<i16>| v.map_or("-".to_string(), |v| v.to_string());
    for m in matches {
        let mark = match (m.current, m.target) {
            (Some(c), Some(t)) if c != t => " *",
            _ => "",
        };
        writeln!(
            out,
            "{:>7} {:<16} {:<8} {:>7} {:>6}  {}{mark}",
            m.pid,
            crate::values::escape_text(&m.comm),
            m.rule_kind.as_str(),
            fmt(m.current),
            fmt(m.target),
            m.rule
        )?;
    }
    if matches
        .iter()
        .any(|m| m.target.is_some() && m.current != m.target)
    {
        writeln!(
            out,
            "* not at its target value: run 'oomguard protect --once' (or the daemon) to write it"
        )?;
    }
    Ok(())
}

/// `--watch`: the daemon's protection thread in the foreground.
fn watch(
    root: &Root,
    scope: &Scope,
    policy: Policy,
    log: Option<EventLog>,
    a: &ProtectArgs,
) -> anyhow::Result<ExitCode> {
    crate::record::log::init(false);
    if !policy.has_adj_rules() {
        return Err(super::UsageError(
            "--watch: no rule carries oom_score_adj, so there is nothing to keep applied".into(),
        )
        .into());
    }
    super::interrupt::catch();
    let opts = GuardianOptions {
        scan_interval: (!a.no_scan).then_some(a.scan_interval.0),
        rcvbuf: None,
    };
    let g = Guardian::spawn(root, ScopeFilter::of(scope), policy, log, opts)
        .context("cannot start the protection thread")?;
    if !g.wait_first_scan(crate::daemon::guardian::FIRST_SCAN_WAIT) {
        log::warn!(
            "protect: the first scan is still running after {} s (a command line that cannot be read yet: its process's memory map is locked); it goes on beside the watch",
            crate::daemon::guardian::FIRST_SCAN_WAIT.as_secs()
        );
    }
    log::info!(
        "protect: watching {} ({}{})",
        scope.label(),
        if g.event_driven {
            "process events"
        } else {
            "no proc connector: scans only"
        },
        if a.no_scan {
            String::new()
        } else {
            format!(", a scan every {:?}", a.scan_interval.0)
        }
    );
    while !super::interrupt::interrupted() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    g.stop();
    Ok(ExitCode::SUCCESS)
}
