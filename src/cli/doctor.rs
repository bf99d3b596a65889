//! `oomguard doctor`: the checklist of `crate::doctor`, as text or `--json`, with Nagios exit
//! codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::doctor::{self, Severity};
use crate::sense::Root;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard doctor                 the checklist: what was found, why it matters, the fix\n  oomguard doctor --json | jq '.checks[] | select(.severity != \"ok\")'\n  oomguard doctor >/dev/null; echo $?    as a Nagios/Icinga check\n\nEach check has a stable id (swap, overcommit, panic_on_oom, sshd, ...) and a severity\n(ok, warn, critical). Exit codes (Nagios): 0 all ok, 1 a warning, 2 a critical finding,\n3 unknown (bad usage, or nothing could be read)."
)]
pub struct DoctorArgs {
    /// One JSON document: {"checks": [{"id", "severity", "found", "why", "fix"}]}.
    #[arg(long)]
    pub json: bool,
    /// Audit the system under this directory instead of / (tests, fixture trees).
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
}

pub fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let checks = doctor::run(&Root::new(&a.root));
    let code = doctor::exit_code(&checks);
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))?
        )?;
        return Ok(ExitCode::from(code));
    }
    // no-color.org: NO_COLOR set to a non-empty value turns colour off (as `top` reads it).
    let colour = out.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let paint = |s: Severity, text: &str| -> String {
        if !colour {
            return text.to_string();
        }
        let c = match s {
            Severity::Ok => "32",
            Severity::Warn => "33",
            Severity::Critical => "1;31",
        };
        format!("\x1b[{c}m{text}\x1b[0m")
    };
    for c in &checks {
        let tag = match c.severity {
            Severity::Ok => "[  OK  ]",
            Severity::Warn => "[ WARN ]",
            Severity::Critical => "[ CRIT ]",
        };
        writeln!(out, "{} {:<24} {}", paint(c.severity, tag), c.id, c.found)?;
        if c.severity != Severity::Ok {
            writeln!(out, "{:>33} {}", "why:", c.why)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "{:>33} {}", "fix:", fix)?;
            }
        }
    }
    let count = |s| checks.iter().filter(|c| c.severity == s).count();
    let status = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code as usize];
    writeln!(
        out,
        "doctor {status}: {} critical, {} warning(s), {} ok",
        count(Severity::Critical),
        count(Severity::Warn),
        count(Severity::Ok)
    )?;
    Ok(ExitCode::from(code))
}
