//! `oomguard top`: who the kernel (and oomguard) would kill next — a live view, a plain table
//! (`--once`) or a JSON document (`--json`).

mod live;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::UsageError;
use crate::config::{Config, passwd_lookup};
use crate::decide::policy::{Policy, Rule};
use crate::decide::rank::{self, GroupBy, Proc, Ranker, Snapshot, UserNames};
use crate::decide::trigger::{LevelSpec, Levels};
use crate::sense::Root;
use crate::sense::psi::Pressure;
use crate::sense::scope::Scope;
use crate::values::human_kb;
use crate::values::{Dur, ScopeSpec};

/// Scope and rules, as `run` takes them: shared by `top` and `why`.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// `system` or `cgroup:PATH` (default: the config's run.scope, else system).
    #[arg(long, value_parser = super::ScopeParser)]
    pub scope: Option<ScopeSpec>,
    /// Config file whose rules decide the verdicts (default: /etc/oomguard/oomguard.toml if it
    /// exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub rules: super::RuleFlags,
}

/// What `top` and `why` start from: the ranker for the scope, the config, user names.
pub struct Predict {
    pub ranker: Ranker,
    pub config: Config,
    pub users: UserNames,
}

impl PredictArgs {
    /// Loads the config, builds the policy (command-line rules first) and resolves the scope.
    pub fn open(&self) -> anyhow::Result<Predict> {
        let root = Root::default();
        let users = passwd_lookup(root.as_path());
        let config = Config::load(self.config.as_deref(), &users)?;
        let rules = self.rules.rules(&config)?;
        let spec = self
            .scope
            .clone()
            .or_else(|| config.run.scope.clone())
            .unwrap_or(ScopeSpec::System);
        let scope =
            Scope::resolve(&root, &spec).map_err(|e| UsageError(format!("--scope {spec}: {e}")))?;
        let ranker = Ranker::new(&root, scope, Policy { rules })
            .with_context(|| format!("cannot read {}", root.path("proc").display()))?;
        Ok(Predict {
            ranker,
            config,
            users: UserNames::load(&root),
        })
    }
}

/// The daemon's levels as `run` would use them: the config's, else `--mem-min 10,5 --swap-min 10,5`.
pub fn level_spec(config: &Config) -> LevelSpec {
    let r = &config.run;
    LevelSpec::with_defaults(
        r.mem_min,
        r.mem_min_size,
        r.swap_min,
        r.swap_min_size,
        r.psi,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// oomguard's order (rank 1 first).
    Badness,
    Rss,
    Swap,
    Pid,
    Name,
    Adj,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Badness => SortKey::Rss,
            SortKey::Rss => SortKey::Swap,
            SortKey::Swap => SortKey::Adj,
            SortKey::Adj => SortKey::Pid,
            SortKey::Pid => SortKey::Name,
            SortKey::Name => SortKey::Badness,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Badness => "badness",
            SortKey::Rss => "rss",
            SortKey::Swap => "swap",
            SortKey::Pid => "pid",
            SortKey::Name => "name",
            SortKey::Adj => "adj",
        }
    }
    /// Sorts (stable: ties keep oomguard's order).
    pub fn apply(self, v: &mut [&Proc]) {
        match self {
            SortKey::Badness => v.sort_by_key(|p| p.rank),
            SortKey::Rss => v.sort_by_key(|p| std::cmp::Reverse(p.terms.rss_pages)),
            SortKey::Swap => v.sort_by_key(|p| std::cmp::Reverse(p.terms.swap_pages)),
            SortKey::Pid => v.sort_by_key(|p| p.pid),
            SortKey::Name => v.sort_by(|a, b| a.comm.as_bytes().cmp(b.comm.as_bytes())),
            SortKey::Adj => v.sort_by_key(|p| std::cmp::Reverse(p.adj)),
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  oomguard top                              live view, refreshed every second (q quits)
  oomguard top --once -n 20                 the 20 most likely victims as a plain table
  oomguard top --json | jq '.processes[0]'  the next victim as JSON
  oomguard top --once --group tree          sum worker processes under their parent
  oomguard top --once --scope cgroup:/app --config /etc/oomguard/oomguard.toml

Keys in the live view: s sort column, / filter by name, c switch scope (system or
cgroup:PATH), g group mode, up/down select, q or Esc quit.
Verdicts: next_victim, candidate, protected, preferred, avoided, immune (PID 1, kernel
threads, zombies, oom_score_adj -1000, oomguard itself).
Columns: SCORE is /proc/PID/oom_score as the kernel computes it; SHARE is (rss + swap + page
tables) / the scope's totalpages (RAM + swap, or the cgroup's limit + swap). Rows are in
oomguard's order: the kernel's badness with prefer/avoid shifting adj by +/-300, protected and
immune processes last.")]
pub struct TopArgs {
    #[command(flatten)]
    pub predict: PredictArgs,
    /// Print the table once as plain text and exit (also when stdout is not a terminal).
    #[arg(long)]
    pub once: bool,
    /// Print one JSON document and exit (also with --once).
    #[arg(long)]
    pub json: bool,
    /// Show at most N rows (default: all with --once/--json, the screen in the live view).
    #[arg(short = 'n', long = "rows", value_name = "N")]
    pub rows: Option<usize>,
    /// Sum processes by process tree, cgroup or systemd unit.
    #[arg(long, value_name = "tree|cgroup|unit", value_parser = super::group_parser())]
    pub group: Option<GroupBy>,
    /// Sort column of the table.
    #[arg(long, value_enum, default_value_t = SortKey::Badness)]
    pub sort: SortKey,
    /// Only processes whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Include kernel threads (immune, no memory).
    #[arg(long)]
    pub kernel_threads: bool,
    /// Refresh interval of the live view.
    #[arg(long, default_value = "1s", value_parser = |s: &str| s.parse::<Dur>())]
    pub interval: Dur,
}

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let mut p = args.predict.open()?;
    p.ranker.kernel_threads = args.kernel_threads;
    if !args.json && !args.once && std::io::stdout().is_terminal() {
        let interval = args.interval.0.max(Duration::from_millis(100));
        return live::run(p, &args, interval);
    }
    let snap = p
        .ranker
        .snapshot()
        .with_context(|| format!("reading scope {}", p.ranker.scope.label()))?;
    let levels = level_spec(&p.config).resolve(&snap.memory);
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        let mut doc = match args.group {
            None => json_doc(&snap, &p.users, &rows(&snap, &args), &p.ranker.policy),
            Some(by) => json_groups(&snap, by, args.rows),
        };
        doc["levels"] = serde_json::to_value(levels)?;
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        let psi = read_psi(&p.ranker.scope);
        let mut s = summary(&snap, &levels, psi.as_ref()) + "\n";
        match args.group {
            None => s += &table(&snap, &p.users, &rows(&snap, &args), &p.ranker.policy),
            Some(by) => s += &group_table(&snap, by, args.rows),
        }
        s
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    for n in snap.unreadable.notes() {
        eprintln!("oomguard top: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The rows to show: filtered, sorted, cut to `-n`.
fn rows<'a>(snap: &'a Snapshot, args: &TopArgs) -> Vec<&'a Proc> {
    let mut v = filtered(snap, args.filter.as_deref());
    args.sort.apply(&mut v);
    if let Some(n) = args.rows {
        v.truncate(n);
    }
    v
}

/// Processes whose name contains `filter` (case-insensitive).
pub fn filtered<'a>(snap: &'a Snapshot, filter: Option<&str>) -> Vec<&'a Proc> {
    let f = filter.map(str::to_lowercase).filter(|f| !f.is_empty());
    snap.procs
        .iter()
        .filter(|p| {
            f.as_ref()
                .is_none_or(|f| p.comm.to_string_lossy().to_lowercase().contains(f.as_str()))
        })
        .collect()
}

/// The scope's pressure, if it has a pressure file.
pub fn read_psi(scope: &Scope) -> Option<Pressure> {
    let path = scope.pressure_path()?;
    std::fs::read(scope.root.path(path))
        .ok()
        .and_then(|b| Pressure::parse(&b))
}

/// One line about the scope's memory and the distance to the daemon's levels.
pub fn summary(snap: &Snapshot, levels: &Levels, psi: Option<&Pressure>) -> String {
    let m = &snap.memory;
    let above = m.available_kb as i64 - levels.mem_term_kb as i64;
    let swap = if m.swap_total_kb == 0 {
        "no swap".to_string()
    } else {
        format!(
            "swap {} free of {}",
            human_kb(m.swap_free_kb),
            human_kb(m.swap_total_kb)
        )
    };
    let psi = psi.map_or_else(
        || "PSI n/a".to_string(),
        |p| {
            format!(
                "PSI some {:.2}% full {:.2}% (avg10)",
                p.some_avg10, p.full_avg10
            )
        },
    );
    format!(
        "scope {}: {} available of {} ({} {} the SIGTERM level {}, SIGKILL at {}); {}; {}; {} processes{}",
        snap.scope,
        human_kb(m.available_kb),
        human_kb(m.total_kb),
        human_kb(above.unsigned_abs()),
        if above >= 0 { "above" } else { "BELOW" },
        human_kb(levels.mem_term_kb),
        human_kb(levels.mem_kill_kb),
        swap,
        psi,
        crate::decide::explain_rank::process_count(snap),
        match snap.kernel_threads {
            0 => String::new(),
            k if snap
                .procs
                .iter()
                .any(|p| p.immune == Some(rank::Immune::KernelThread)) =>
            {
                format!(" (and {k} kernel threads)")
            }
            k => format!(" ({k} kernel threads not shown)"),
        }
    )
}

/// The cgroup column: the unit when there is one, else the cgroup path.
/// A user name for the table's USER column: escaped, at most 10 characters (not bytes: a
/// name may be UTF-8).
fn user_cell(name: &str) -> String {
    crate::values::escape_text(name).chars().take(10).collect()
}

/// The process's unit, else its cgroup path, escaped: a delegated group's name is anyone's.
pub fn where_of(p: &Proc) -> std::borrow::Cow<'_, str> {
    crate::values::escape_text(p.unit.as_deref().or(p.cgroup.as_deref()).unwrap_or("-"))
}

/// The rule's description, if one matched.
pub fn rule_of<'a>(p: &Proc, policy: &'a Policy) -> Option<&'a Rule> {
    p.rule.and_then(|i| policy.rules.get(i))
}

/// The columns of the process table (plain and live).
pub const COLUMNS: [&str; 11] = [
    "RANK",
    "PID",
    "USER",
    "NAME",
    "RSS",
    "SWAP",
    "ADJ",
    "SCORE",
    "SHARE",
    "VERDICT",
    "CGROUP/UNIT",
];

fn table(snap: &Snapshot, users: &UserNames, rows: &[&Proc], _policy: &Policy) -> String {
    use std::fmt::Write as _;
    let pk = snap.ctx.page_kb;
    let c = COLUMNS;
    let mut s = format!(
        "{:>5} {:>7} {:<10} {:<16} {:>9} {:>9} {:>5} {:>5} {:>6} {:<11} {}\n",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
    );
    for p in rows {
        let user = user_cell(&users.name(p.uid));
        let _ = writeln!(
            s,
            "{:>5} {:>7} {:<10} {:<16} {:>9} {:>9} {:>5} {:>5} {:>5.1}% {:<11} {}",
            p.rank,
            p.pid,
            user,
            crate::values::escape_text(&p.comm.to_string_lossy()),
            human_kb(p.rss_kb(pk)),
            human_kb(p.swap_kb(pk)),
            p.adj,
            p.oom_score,
            p.share_pct(snap.ctx.totalpages),
            p.verdict.as_str(),
            where_of(p)
        );
    }
    s
}

fn group_table(snap: &Snapshot, by: GroupBy, n: Option<usize>) -> String {
    use std::fmt::Write as _;
    let pk = snap.ctx.page_kb;
    let mut s = format!(
        "{:>5} {:>10} {:>10} {:>10} {:>6} {:>9}  {}\n",
        "PROCS",
        "RSS",
        "SWAP",
        "PGTABLES",
        "SHARE",
        "BEST-RANK",
        match by {
            GroupBy::Tree => "TREE (root PID and name)",
            GroupBy::Cgroup => "CGROUP",
            GroupBy::Unit => "UNIT",
        }
    );
    let groups = rank::group(snap, by);
    for g in groups.iter().take(n.unwrap_or(usize::MAX)) {
        let _ = writeln!(
            s,
            "{:>5} {:>10} {:>10} {:>10} {:>5.1}% {:>9}  {}{}",
            g.members.len(),
            human_kb(g.terms.rss_pages * pk),
            human_kb(g.terms.swap_pages * pk),
            human_kb(g.terms.pgtables_pages * pk),
            g.share_pct(snap.ctx.totalpages),
            g.best_rank,
            // A process name, a cgroup path or a unit: anyone's (a tree's root names itself,
            // a delegated group's name is its owner's), escaped as in the process table.
            crate::values::escape_text(&g.key),
            if g.has_next_victim {
                "  (holds the next victim)"
            } else {
                ""
            }
        );
    }
    s
}

/// One process as JSON (the contract's fields first, then extras).
pub fn proc_json(
    snap: &Snapshot,
    users: &UserNames,
    p: &Proc,
    policy: &Policy,
) -> serde_json::Value {
    let pk = snap.ctx.page_kb;
    json!({
        "pid": p.pid,
        "comm": p.comm.to_string_lossy(),
        "uid": p.uid,
        "rss_kb": p.rss_kb(pk),
        "swap_kb": p.swap_kb(pk),
        "pgtables_kb": p.pgtables_kb(pk),
        "oom_score_adj": p.adj,
        "badness": p.badness,
        "oom_score": p.oom_score,
        "rank": p.rank,
        "verdict": p.verdict.as_str(),
        "user": users.name(p.uid),
        "ppid": p.ppid,
        "state": (p.state as char).to_string(),
        "effective_badness": p.effective,
        "kernel_rank": p.kernel_rank,
        "share_pct": (p.share_pct(snap.ctx.totalpages) * 100.0).round() / 100.0,
        "cgroup": p.cgroup,
        "unit": p.unit,
        "rule": rule_of(p, policy).map(Rule::describe),
        "immune_reason": p.immune,
        "exiting": p.exiting,
    })
}

fn json_head(snap: &Snapshot) -> serde_json::Value {
    json!({
        "scope": snap.scope,
        "memory": snap.memory,
        "totalpages": snap.ctx.totalpages,
        "global_totalpages": snap.ctx.global_totalpages,
        "page_kb": snap.ctx.page_kb,
        "process_count": crate::decide::explain_rank::process_count(snap),
        "kernel_threads": snap.kernel_threads,
        "notes": snap.unreadable.notes(),
    })
}

fn json_doc(
    snap: &Snapshot,
    users: &UserNames,
    rows: &[&Proc],
    policy: &Policy,
) -> serde_json::Value {
    let mut doc = json_head(snap);
    doc["processes"] = rows
        .iter()
        .map(|p| proc_json(snap, users, p, policy))
        .collect();
    doc
}

fn json_groups(snap: &Snapshot, by: GroupBy, n: Option<usize>) -> serde_json::Value {
    let pk = snap.ctx.page_kb;
    let mut doc = json_head(snap);
    doc["group_by"] = serde_json::to_value(by).unwrap_or_default();
    doc["groups"] = rank::group(snap, by)
        .iter()
        .take(n.unwrap_or(usize::MAX))
        .map(|g| {
            json!({
                "key": g.key,
                "processes": g.members.len(),
                "pids": g.members,
                "rss_kb": g.terms.rss_pages * pk,
                "swap_kb": g.terms.swap_pages * pk,
                "pgtables_kb": g.terms.pgtables_pages * pk,
                "points": g.terms.points(),
                "share_pct": (g.share_pct(snap.ctx.totalpages) * 100.0).round() / 100.0,
                "best_rank": g.best_rank,
                "has_next_victim": g.has_next_victim,
            })
        })
        .collect();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::LevelPair;

    /// A long UTF-8 name is cut at a character, not inside one; control codes are escaped.
    #[test]
    fn user_names_are_cut_at_characters_and_escaped() {
        assert_eq!(user_cell("jürgen.müller"), "jürgen.mül");
        assert_eq!(user_cell("ééééééééééé"), "éééééééééé");
        assert_eq!(user_cell("a\x1b[31m"), "a\\x1b[31m");
        assert_eq!(user_cell("root"), "root");
    }

    /// `top` and `why` show the levels `run` uses: a swap size in the config leaves the
    /// memory levels at their default.
    #[test]
    fn the_shown_levels_are_runs_with_a_swap_size_only() {
        let text = "[run]\nswap_min_size = \"1G\"\n";
        let config = Config::parse(text, std::path::Path::new("t.toml"), &|_| None).unwrap();
        let spec = level_spec(&config);
        assert_eq!(spec.mem_pct, LevelPair::parse_pct("10,5").ok());
        assert_eq!(spec.swap_pct, None);
        assert_eq!(spec.swap_size, LevelPair::parse_size("1G").ok());
    }
}
