//! The command line: one file per subcommand, each a thin layer over the library.
//! Exit codes follow `docs/cli-contract.md`: 0 success, 1 runtime failure, 2 bad usage or config.

pub mod assets;
pub mod check_config;
pub mod doctor;
pub mod drill;
pub mod events;
pub mod explain;
mod interrupt;
pub mod protect;
pub mod run;
pub mod top;
pub mod why;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};

/// An error that is the user's to fix (bad flag, bad config): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Linux out-of-memory guard: acts before the kernel's OOM killer, explains its reports,
/// predicts who dies next.
#[derive(Debug, clap::Parser)]
#[command(
    name = "oomguard",
    version,
    propagate_version = true,
    after_help = "Examples:\n  oomguard run --dry-run                 watch the whole machine, kill nothing, log decisions\n  oomguard run --scope cgroup:/app       guard one cgroup with the default levels (10%,5%)\n  oomguard explain /var/log/kern.log     explain every kernel OOM report in a log\n  oomguard top --once                    who the kernel would kill next\n\nExit codes: 0 success, 1 runtime failure, 2 bad usage or config."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Keeps the order in which `--protect`, `--prefer` and `--avoid` were typed: the first
    /// rule that matches decides (the contract), so `--prefer x --protect x` prefers.
    fn with_typed_rules(mut self, m: &clap::ArgMatches) -> Cli {
        use crate::decide::policy::RuleKind;
        let Some((_, sub)) = m.subcommand() else {
            return self;
        };
        let flags = match &mut self.command {
            Command::Run(a) => &mut a.rules,
            Command::Top(a) => &mut a.predict.rules,
            Command::Why(a) => &mut a.predict.rules,
            Command::Protect(a) => &mut a.rules,
            _ => return self,
        };
        let mut typed = Vec::new();
        for (kind, id) in [
            (RuleKind::Protect, "protect"),
            (RuleKind::Prefer, "prefer"),
            (RuleKind::Avoid, "avoid"),
        ] {
            if let (Some(at), Some(res)) = (sub.indices_of(id), sub.get_many::<String>(id)) {
                typed.extend(at.zip(res).map(|(i, re)| (i, kind, re.clone())));
            }
        }
        typed.sort_by_key(|t| t.0);
        flags.typed = Some(typed.into_iter().map(|(_, k, re)| (k, re)).collect());
        self
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The guard daemon: watch memory, swap and pressure and kill the best victim early.
    Run(Box<run::RunArgs>),
    /// Explain kernel OOM reports found in kernel logs.
    Explain(explain::ExplainArgs),
    /// Live view of who the kernel (and oomguard) would kill next.
    Top(top::TopArgs),
    /// Why one process ranks where it does: its badness term by term.
    Why(why::WhyArgs),
    /// Apply the rules' oom_score_adj values once, or list which process matches which rule.
    Protect(protect::ProtectArgs),
    /// Audit the machine's OOM configuration and say what to fix (Nagios exit codes).
    Doctor(doctor::DoctorArgs),
    /// A safe OOM fire drill in a scratch memory cgroup.
    Drill(drill::DrillArgs),
    /// Read the event log back.
    Events(events::EventsArgs),
    /// Validate a config file; names the line of an error (exit 2).
    CheckConfig(check_config::CheckConfigArgs),
}

/// Parses the arguments, runs the subcommand, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Not a subcommand: the daemon's helper that reads the kernel's type information for the
    // task iterator in a process of its own (`sense::tasks::TaskIter::load_via`).
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(crate::sense::tasks::LAYOUT_HELPER_ARG))
    {
        let btf = args.next().unwrap_or_default();
        // It reads a file and prints offsets: nothing it does needs them.
        crate::act::harden::shed_iterator_capabilities();
        return crate::sense::tasks::layout_helper_main(std::path::Path::new(&btf));
    }
    let cli = match Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| c.with_typed_rules(&m)))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // doctor is a Nagios plugin: its usage errors are UNKNOWN (3).
            // (args_os: an argument that is not UTF-8 is a usage error, not a panic here.)
            let doctor =
                std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("doctor"));
            return match e.exit_code() {
                0 => ExitCode::SUCCESS,
                _ if doctor => ExitCode::from(3),
                c => ExitCode::from(c as u8),
            };
        }
    };
    // doctor is a Nagios plugin: a failure of its own (its output cannot be written, a
    // closed pipe included) is UNKNOWN (3), never WARNING (1) or OK (0).
    let nagios = matches!(cli.command, Command::Doctor(_));
    let result = match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Explain(a) => explain::run(a),
        Command::Top(a) => top::run(a),
        Command::Why(a) => why::run(a),
        Command::Protect(a) => protect::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Drill(a) => drill::run(a),
        Command::Events(a) => events::run(a),
        Command::CheckConfig(a) => check_config::run(a),
    };
    // Log lines still queued (src/record/log.rs) reach stderr before the error or the exit.
    log::logger().flush();
    crate::record::eventlog::flush_all(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) if nagios => {
            // A broken pipe too: the checks were not all reported, so never OK.
            let _ = report_error(&e);
            ExitCode::from(3)
        }
        Err(e) => report_error(&e),
    }
}

/// Prints an error chain and picks the exit code: 0 for a broken pipe (`| head`), 2 for usage
/// and config errors, 1 otherwise.
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return ExitCode::SUCCESS;
        }
    }
    eprintln!("oomguard: {}", error_text(e));
    if e.chain().any(is_usage) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Whether an error in a chain is the user's to fix (exit 2, `docs/cli-contract.md`): a bad
/// flag, a bad config file, or a scope that names no cgroup (`--scope`, or `scope` in the
/// config) — so every command that takes a scope agrees on the code.
fn is_usage(c: &(dyn std::error::Error + 'static)) -> bool {
    c.downcast_ref::<UsageError>().is_some()
        || c.downcast_ref::<crate::record::eventlog::EventLogError>()
            .is_some_and(|e| e.is_usage())
        || c.downcast_ref::<crate::sense::cgroup::CgroupNotFound>()
            .is_some()
        || c.downcast_ref::<crate::sense::scope::ScopeError>()
            .is_some_and(|se| matches!(se, crate::sense::scope::ScopeError::NotFound(_)))
        || c.downcast_ref::<crate::config::ConfigError>()
            .is_some_and(|ce| !matches!(ce, crate::config::ConfigError::Read { .. }))
}

pub use crate::record::log::error_text;

/// `--protect/--prefer/--avoid REGEX` (repeatable): rules with only `name`, shared by every
/// subcommand that applies the policy.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RuleFlags {
    /// Never choose processes whose name matches (repeatable; a `[[protect]]` rule with only `name`).
    #[arg(long, value_name = "REGEX")]
    pub protect: Vec<String>,
    /// Choose matching processes first (scored as if oom_score_adj were 300 higher).
    #[arg(long, value_name = "REGEX")]
    pub prefer: Vec<String>,
    /// Choose matching processes last (scored as if oom_score_adj were 300 lower).
    #[arg(long, value_name = "REGEX")]
    pub avoid: Vec<String>,
    /// The three lists merged in the order they were typed, when the command line was parsed
    /// ([`Cli::with_typed_rules`]); else they are taken kind by kind.
    #[arg(skip)]
    pub typed: Option<Vec<(crate::decide::policy::RuleKind, String)>>,
}

impl RuleFlags {
    /// The rules in the contract's order: these flags first, then the config file's rules in
    /// file order.
    pub fn rules(
        &self,
        config: &crate::config::Config,
    ) -> Result<Vec<crate::decide::policy::Rule>, UsageError> {
        use crate::decide::policy::{Rule, RuleKind};
        let by_kind = [
            (RuleKind::Protect, &self.protect),
            (RuleKind::Prefer, &self.prefer),
            (RuleKind::Avoid, &self.avoid),
        ]
        .into_iter()
        .flat_map(|(kind, list)| list.iter().map(move |re| (kind, re)));
        let flags: Vec<(RuleKind, &String)> = match &self.typed {
            Some(t) => t.iter().map(|(k, re)| (*k, re)).collect(),
            None => by_kind.collect(),
        };
        let mut rules = Vec::new();
        for (kind, re) in flags {
            rules.push(
                Rule::name_only(kind, re).map_err(|e| {
                    UsageError(format!("--{} '{re}': bad regex: {e}", kind.as_str()))
                })?,
            );
        }
        rules.extend(config.rules.iter().cloned());
        Ok(rules)
    }
}

/// The values of `--kill-unit`: parsed as [`KillUnit`], listed by `--help` and offered by the
/// completions.
///
/// [`KillUnit`]: crate::values::KillUnit
pub fn kill_unit_parser() -> impl clap::builder::TypedValueParser<Value = crate::values::KillUnit> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("process").help("the victim (default)"),
        PossibleValue::new("tree").help("the victim and its descendants"),
        PossibleValue::new("cgroup").help("every process of the victim's leaf cgroup"),
    ])
    .try_map(|s| s.parse::<crate::values::KillUnit>())
}

/// The values of `--group` (`top`): parsed as [`GroupBy`], listed and offered.
///
/// [`GroupBy`]: crate::decide::rank::GroupBy
pub fn group_parser() -> impl clap::builder::TypedValueParser<Value = crate::decide::rank::GroupBy>
{
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("tree").help("sum by process tree"),
        PossibleValue::new("cgroup").help("sum by cgroup"),
        PossibleValue::new("unit").help("sum by systemd unit"),
    ])
    .try_map(|s| s.parse::<crate::decide::rank::GroupBy>())
}

/// `--scope`: `system` or `cgroup:PATH`, parsed as [`ScopeSpec`]; `--help` and the completions
/// offer `system` and the `cgroup:` prefix (any `cgroup:PATH` is accepted).
///
/// [`ScopeSpec`]: crate::values::ScopeSpec
#[derive(Debug, Clone, Copy)]
pub struct ScopeParser;

impl clap::builder::TypedValueParser for ScopeParser {
    type Value = crate::values::ScopeSpec;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let parse = |s: &str| s.parse::<crate::values::ScopeSpec>();
        clap::builder::TypedValueParser::parse_ref(&parse, cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::builder::PossibleValue;
        Some(Box::new(
            [
                PossibleValue::new("system").help("the whole machine"),
                PossibleValue::new("cgroup:").help("one memory cgroup: cgroup:PATH"),
            ]
            .into_iter(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_names_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(crate::config::ConfigError::Read {
            path: "/etc/x.toml".into(),
            source: io,
        })
        .context("config check failed");
        let text = error_text(&e);
        assert_eq!(
            text.matches("not found").count() + text.matches("No such file").count(),
            1,
            "{text}"
        );
        assert!(
            text.starts_with("config check failed: cannot read config file /etc/x.toml: "),
            "{text}"
        );
        // A cause that is not repeated in its parent is kept.
        let e = anyhow::anyhow!("disk full").context("cannot write /tmp/f");
        assert_eq!(error_text(&e), "cannot write /tmp/f: disk full");
    }
}
