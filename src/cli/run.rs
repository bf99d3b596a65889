//! `oomguard run`: the guard daemon. Flags override the config file; the config file overrides
//! the built-in defaults (`--mem-min 10,5 --swap-min 10,5`, scope `system`, kill unit `process`,
//! term grace 2 s).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::daemon::Settings;
use crate::daemon::guardian::GuardianOptions;
use crate::daemon::start::StartOptions;
use crate::decide::policy::Policy;
use crate::decide::trigger::LevelSpec;
use crate::record::eventlog;
use crate::sense::Root;
use crate::values::{Dur, KillUnit, LevelPair, PsiSpec, ScopeSpec};

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  oomguard run --dry-run
      watch the whole machine with the defaults, log and record what would be killed
  oomguard run --scope cgroup:/system.slice/app.service --mem-min 15,8
      guard one cgroup against its own limit
  oomguard run --mem-min-size 800M,400M --protect '^sshd$' --prefer 'chrome'
  oomguard run --psi full:20:2s --kill-unit tree
  oomguard run --metrics 127.0.0.1:9577
      also serve Prometheus metrics (warnings, hooks, notifications, the after-kill watch
      list: see the [warn], [hooks], [notify] and [[watch]] sections of the config file)

Levels: below the TERM level oomguard sends SIGTERM, below the KILL level SIGKILL (KILL omitted =
half of TERM). With swap, memory AND swap must both be low; without swap, memory alone counts.
With --psi it also acts when the stall share stays above PCT over the window while available
memory is below twice the TERM level. Values: PCT `10`, `7.5%`; SIZE `512M`, `1.5GiB`;
DURATION `500ms`, `2s`.

Every kill or would-be kill is one line on stderr and one JSON record in the event log
(default /var/lib/oomguard/events.jsonl as root). SIGHUP reloads the config file.")]
pub struct RunArgs {
    /// Config file (default: /etc/oomguard/oomguard.toml if it exists; none is needed).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Decide and record, but never signal anything.
    #[arg(long)]
    pub dry_run: bool,
    /// What to guard: `system` or `cgroup:PATH` (a cgroup directory or a path as in /proc/PID/cgroup).
    #[arg(long, value_name = "SCOPE", value_parser = super::ScopeParser)]
    pub scope: Option<ScopeSpec>,
    /// Available-memory levels TERM[,KILL] in percent of the scope's total [default: 10,5].
    #[arg(long, value_name = "PCT[,PCT]", value_parser = LevelPair::parse_pct, allow_hyphen_values = true)]
    pub mem_min: Option<LevelPair>,
    /// Free-swap levels TERM[,KILL] in percent of the swap total [default: 10,5].
    #[arg(long, value_name = "PCT[,PCT]", value_parser = LevelPair::parse_pct, allow_hyphen_values = true)]
    pub swap_min: Option<LevelPair>,
    /// Available-memory levels as sizes (with --mem-min too, the lower one counts).
    #[arg(long, value_name = "SIZE[,SIZE]", value_parser = LevelPair::parse_size, allow_hyphen_values = true)]
    pub mem_min_size: Option<LevelPair>,
    /// Free-swap levels as sizes (with --swap-min too, the lower one counts).
    #[arg(long, value_name = "SIZE[,SIZE]", value_parser = LevelPair::parse_size, allow_hyphen_values = true)]
    pub swap_min_size: Option<LevelPair>,
    /// Pressure trigger some|full:PCT:DURATION, e.g. full:20:2s.
    #[arg(long, value_name = "SPEC", value_parser = |s: &str| s.parse::<PsiSpec>())]
    pub psi: Option<PsiSpec>,
    #[command(flatten)]
    pub rules: super::RuleFlags,
    /// What one decision kills: process, tree (with descendants) or cgroup (the victim's leaf group).
    #[arg(long, value_name = "UNIT", value_parser = super::kill_unit_parser())]
    pub kill_unit: Option<KillUnit>,
    /// Time between SIGTERM and SIGKILL, at most 60s [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = crate::values::parse_term_grace)]
    pub term_grace: Option<Dur>,
    /// Event log (JSON lines) [default: /var/lib/oomguard/events.jsonl as root, else
    /// oomguard/events.jsonl under $XDG_STATE_HOME, ~/.local/state or the user database's
    /// home, else /tmp/oomguard-UID]. Refused when a directory on its path is another user's.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Root of the filesystem to read /proc and /sys from (for tests on fixture trees).
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9577; overrides
    /// `[metrics] listen`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// The protection rules' safety-net scan interval (rules with oom_score_adj are applied on
    /// every process event; this scan catches what events miss).
    #[arg(long, hide = true, value_name = "DURATION", default_value = "60s", value_parser = Dur::parse_interval)]
    pub protect_scan_interval: Dur,
    /// No periodic protection scan: process events only (tests).
    #[arg(long, hide = true)]
    pub no_protect_scan: bool,
    /// Directory of the per-scope lock files that keep a second guard off a scope (default:
    /// the event log's default directory: /var/lib/oomguard as root, else oomguard under
    /// $XDG_STATE_HOME, ~/.local/state or the user database's home, else /tmp/oomguard-UID).
    /// Refused when a directory on its path is another user's.
    #[arg(long, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Print a status line this often: available memory and swap, PSI, the would-be victim
    /// (like earlyoom's -r; at least 100ms) [default: off].
    #[arg(long, value_name = "DURATION", value_parser = Dur::parse_interval)]
    pub report_interval: Option<Dur>,
    /// More log lines.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Builds the daemon's settings from the flags and one reading of the config file.
pub fn settings(args: &RunArgs, cfg: &Config) -> anyhow::Result<Settings> {
    let root = Root::new(&args.root);
    let r = &cfg.run;
    let rules = args.rules.rules(cfg)?;
    for w in rules.iter().flat_map(|r| r.warnings()) {
        log::warn!("{w}");
    }
    let levels = LevelSpec::with_defaults(
        args.mem_min.or(r.mem_min),
        args.mem_min_size.or(r.mem_min_size),
        args.swap_min.or(r.swap_min),
        args.swap_min_size.or(r.swap_min_size),
        args.psi.or(r.psi),
    );
    Ok(Settings {
        scope: args
            .scope
            .clone()
            .or_else(|| r.scope.clone())
            .unwrap_or(ScopeSpec::System),
        levels,
        kill_unit: args.kill_unit.or(r.kill_unit).unwrap_or_default(),
        term_grace: args
            .term_grace
            .map(|d| d.0)
            .or(r.term_grace)
            .unwrap_or(Duration::from_secs(2)),
        dry_run: args.dry_run || r.dry_run.unwrap_or(false),
        event_log: args
            .event_log
            .clone()
            .or_else(|| r.event_log.clone())
            .unwrap_or_else(eventlog::default_path),
        policy: Policy { rules },
        report_interval: args.report_interval.map(|d| d.0),
        root,
    })
}

/// Parses nothing more: hands the flags to the daemon, which assembles itself.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    crate::record::journald::init(args.verbose);
    let opts = StartOptions {
        config: args.config.clone(),
        root: Root::new(&args.root),
        metrics: args.metrics,
        lock_dir: args.lock_dir.clone(),
        protect: GuardianOptions {
            scan_interval: (!args.no_protect_scan).then_some(args.protect_scan_interval.0),
            rcvbuf: None,
        },
    };
    crate::daemon::start::start(opts, Box::new(move |cfg| settings(&args, cfg)))?;
    Ok(ExitCode::SUCCESS)
}
