//! `oomguard why PID|NAME`: one process's badness term by term, its kernel score and rank,
//! who would be killed before it and by how much, the rules that match it, and advice.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;

use super::top::{PredictArgs, human_kb, level_spec};
use crate::decide::policy::{RuleKind, effective_adj};
use crate::decide::rank::{Immune, Proc, Snapshot, Verdict};
use crate::decide::score::{adj_pages, badness};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  oomguard why 1234                 why PID 1234 ranks where it does
  oomguard why postgres             the highest-ranked process named postgres
  oomguard why --json 1234 | jq .rank
  oomguard why --config /etc/oomguard/oomguard.toml --scope cgroup:/app worker

Exit codes: 0 explained, 1 no such process (or /proc unreadable), 2 bad usage or config.")]
pub struct WhyArgs {
    /// A PID, or a process name (exact; else the names containing it).
    pub target: String,
    #[command(flatten)]
    pub predict: PredictArgs,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// How many processes ranked before the target are listed one by one.
const LIST_BEFORE: usize = 10;

pub fn run(args: WhyArgs) -> anyhow::Result<ExitCode> {
    let mut p = args.predict.open()?;
    p.ranker.kernel_threads = true;
    let snap = p
        .ranker
        .snapshot()
        .with_context(|| format!("reading scope {}", p.ranker.scope.label()))?;
    let (target, others) = find(&snap, &args.target)?;
    let kernel_score = p.ranker.reader.oom_score(target.pid);
    let policy = &p.ranker.policy;
    let pk = snap.ctx.page_kb;
    let tp = snap.ctx.totalpages;
    let unit_pages = tp / 1000;
    let adj_part = adj_pages(target.adj as i64, tp);
    let matching: Vec<(usize, String, bool)> = {
        let name = target.comm.to_string_lossy().into_owned();
        let mut facts = crate::decide::rank::LazyFacts::new(
            &mut p.ranker.reader,
            target.pid,
            &name,
            target.uid,
            target.cgroup.as_deref(),
        );
        policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(&mut facts))
            .map(|(i, r)| (i, r.describe(), Some(i) == target.rule))
            .collect()
    };
    let before = killed_before(&snap, target);
    let freed_pages: u64 = before
        .iter()
        .map(|q| q.terms.rss_pages + q.terms.swap_pages)
        .sum();
    let rank_adj0 = rank_with_adj(&snap, target, 0);
    let advice = advice(&snap, target, &p, rank_adj0);
    if args.json {
        let terms = json!({
            "rss_pages": target.terms.rss_pages,
            "rss_kb": target.terms.rss_pages * pk,
            "rss_anon_kb": target.rss_anon_kb,
            "rss_file_kb": target.rss_file_kb,
            "rss_shmem_kb": target.rss_shmem_kb,
            "swap_pages": target.terms.swap_pages,
            "swap_kb": target.terms.swap_pages * pk,
            "pgtables_pages": target.terms.pgtables_pages,
            "pgtables_kb": target.terms.pgtables_pages * pk,
            "points": target.terms.points(),
            "adj_pages": adj_part,
        });
        let doc = json!({
            "pid": target.pid,
            "comm": target.comm.to_string_lossy(),
            "uid": target.uid,
            "user": p.users.name(target.uid),
            "scope": snap.scope,
            "totalpages": tp,
            "global_totalpages": snap.ctx.global_totalpages,
            "page_kb": pk,
            "oom_score_adj": target.adj,
            "badness": target.badness,
            "effective_adj": target.rule_kind.map(|k| effective_adj(target.adj, Some(k))),
            "effective_badness": target.effective,
            "oom_score": target.oom_score,
            "kernel_oom_score": kernel_score,
            "rank": target.rank,
            "kernel_rank": target.kernel_rank,
            "rank_with_adj_0": rank_adj0,
            "verdict": target.verdict.as_str(),
            "immune_reason": target.immune,
            "terms": terms,
            "cgroup": target.cgroup,
            "unit": target.unit,
            "rules": matching.iter().map(|(i, d, decides)| json!({
                "index": i, "rule": d, "kind": policy.rules[*i].kind, "decides": decides,
            })).collect::<Vec<_>>(),
            "killed_before": before.iter().map(|q| json!({
                "pid": q.pid,
                "comm": q.comm.to_string_lossy(),
                "rank": q.rank,
                "badness": q.badness,
                "effective_badness": q.effective,
                "margin_pages": margin(q, target),
                "margin_kb": margin(q, target).map(|m| m * pk as i64),
            })).collect::<Vec<_>>(),
            "freed_before_kb": freed_pages * pk,
            "advice": advice,
            "other_matches": others,
            "notes": snap.unreadable.notes(),
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut s = String::new();
    let name = crate::values::escape_text(&target.comm.to_string_lossy()).into_owned();
    let _ = writeln!(
        s,
        "PID {} ({name}), user {}, state {}, {}",
        target.pid,
        p.users.name(target.uid),
        target.state as char,
        match (&target.unit, &target.cgroup) {
            (Some(u), _) => format!("unit {u}"),
            (None, Some(c)) => format!("cgroup {c}"),
            _ => "no cgroup".into(),
        }
    );
    if !others.is_empty() {
        let _ = writeln!(
            s,
            "  ({} more processes match '{}': PIDs {}; showing the highest ranked)",
            others.len(),
            args.target,
            others
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let m = &snap.memory;
    let _ = writeln!(
        s,
        "Scope {}: totalpages {tp} = ({} kB memory + {} kB swap) / {pk} kB pages",
        snap.scope, m.total_kb, m.swap_total_kb
    );
    let row = |s: &mut String, what: &str, pages: i64, extra: &str| {
        let _ = writeln!(
            s,
            "  {what:<16} {pages:>12} pages {:>14} kB{extra}",
            pages * pk as i64
        );
    };
    s.push_str("Badness terms:\n");
    row(
        &mut s,
        "rss",
        target.terms.rss_pages as i64,
        &format!(
            "   (anon {} kB, file {} kB, shmem {} kB)",
            target.rss_anon_kb, target.rss_file_kb, target.rss_shmem_kb
        ),
    );
    row(&mut s, "swap", target.terms.swap_pages as i64, "");
    row(
        &mut s,
        "page tables",
        target.terms.pgtables_pages as i64,
        "",
    );
    row(
        &mut s,
        "points",
        target.terms.points(),
        "   (rss + swap + page tables)",
    );
    row(
        &mut s,
        "oom_score_adj",
        adj_part,
        &format!("   ({} x (totalpages / 1000 = {unit_pages}))", target.adj),
    );
    match target.badness {
        Some(b) => row(&mut s, "badness", b, ""),
        None => {
            let _ = writeln!(s, "  badness          none: the kernel never picks it");
        }
    }
    if let (Some(k), Some(e)) = (target.rule_kind, target.effective)
        && target.badness != Some(e)
    {
        row(
            &mut s,
            "oomguard's score",
            e,
            &format!(
                "   (ranked as if oom_score_adj were {})",
                effective_adj(target.adj, Some(k))
            ),
        );
    }
    let _ = writeln!(
        s,
        "Kernel score: oom_score {} ({}){}",
        target.oom_score,
        match target.badness {
            Some(_) => format!(
                "= (1000 + badness x 1000 / {}) x 2 / 3 against the machine's totalpages",
                snap.ctx.global_totalpages
            ),
            None => "never eligible".into(),
        },
        match kernel_score {
            Some(k) if k as i64 == target.oom_score =>
                format!("; /proc/{}/oom_score agrees", target.pid),
            Some(k) => format!(
                "; /proc/{}/oom_score says {k} (it changed between the two reads, or the kernel's approximate counters differ)",
                target.pid
            ),
            None => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "Rank: {} of {} in oomguard's order (verdict {}); {} in the kernel's order",
        target.rank,
        snap.procs.len(),
        target.verdict.as_str(),
        target
            .kernel_rank
            .map_or("never chosen".to_string(), |r| format!("#{r}"))
    );
    if target.adj != 0 {
        let _ = writeln!(
            s,
            "  with oom_score_adj 0 it would rank {}",
            rank_adj0.map_or("-".into(), |r| format!("#{r}"))
        );
    }
    if before.is_empty() {
        s.push_str("Killed before it: nobody\n");
    } else {
        let _ = writeln!(
            s,
            "Killed before it ({}{}, freeing about {} of rss + swap):",
            before.len(),
            if target.effective.is_some() {
                " in oomguard's order"
            } else {
                " in the kernel's order: oomguard never picks it"
            },
            human_kb(freed_pages * pk)
        );
        for q in before.iter().take(LIST_BEFORE) {
            let mg = margin(q, target).unwrap_or(0);
            let _ = writeln!(
                s,
                "  #{:<4} {:>7} {:<16} {:>12} pages  ({:+} pages = {} more)",
                q.rank,
                q.pid,
                crate::values::escape_text(&q.comm.to_string_lossy()),
                q.effective.or(q.badness).unwrap_or(0),
                mg,
                human_kb(mg.unsigned_abs() * pk)
            );
        }
        if before.len() > LIST_BEFORE {
            let _ = writeln!(s, "  … and {} more", before.len() - LIST_BEFORE);
        }
    }
    if matching.is_empty() {
        s.push_str("Rules: none match\n");
    } else {
        s.push_str("Rules that match (the first decides):\n");
        for (_, d, decides) in &matching {
            let _ = writeln!(s, "  {}{d}", if *decides { "* " } else { "  " });
        }
    }
    s.push_str("Advice:\n");
    for a in &advice {
        let _ = writeln!(s, "  - {a}");
    }
    for n in snap.unreadable.notes() {
        let _ = writeln!(s, "Note: {n}");
    }
    std::io::stdout().lock().write_all(s.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The process a PID or a name names; with a name, the other matching PIDs too.
fn find<'a>(snap: &'a Snapshot, target: &str) -> anyhow::Result<(&'a Proc, Vec<i32>)> {
    if let Ok(pid) = target.parse::<i32>() {
        return match snap.find(pid) {
            Some(p) => Ok((p, Vec::new())),
            None if std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                if snap.scope == "system" {
                    anyhow::bail!(
                        "cannot read process {pid} (/proc/{pid}/stat or status unreadable: hidepid or permissions; try as root)"
                    )
                }
                anyhow::bail!(
                    "PID {pid} is not in scope {} (use --scope system, or the scope it runs in)",
                    snap.scope
                )
            }
            None => anyhow::bail!("no process with PID {pid}"),
        };
    }
    let exact: Vec<&Proc> = snap
        .procs
        .iter()
        .filter(|p| p.comm.to_string_lossy() == target)
        .collect();
    let found = if exact.is_empty() {
        snap.procs
            .iter()
            .filter(|p| p.comm.to_string_lossy().contains(target))
            .collect()
    } else {
        exact
    };
    // procs are in rank order, so the first is the highest ranked.
    match found.split_first() {
        Some((first, rest)) => Ok((first, rest.iter().map(|p| p.pid).collect())),
        None => anyhow::bail!(
            "no process named '{target}' in scope {} (names are the kernel's 15-byte comm; try a PID)",
            snap.scope
        ),
    }
}

/// The processes chosen before `t`: oomguard's order if it can be chosen, else the kernel's.
fn killed_before<'a>(snap: &'a Snapshot, t: &Proc) -> Vec<&'a Proc> {
    if t.effective.is_some() {
        snap.procs
            .iter()
            .filter(|q| q.effective.is_some() && q.rank < t.rank)
            .collect()
    } else if let Some(kr) = t.kernel_rank {
        let mut v: Vec<&Proc> = snap
            .procs
            .iter()
            .filter(|q| q.kernel_rank.is_some_and(|r| r < kr))
            .collect();
        v.sort_by_key(|q| q.kernel_rank);
        v
    } else {
        Vec::new()
    }
}

/// By how many pages `q` outscores `t` (in the order that applies).
fn margin(q: &Proc, t: &Proc) -> Option<i64> {
    match (q.effective, t.effective) {
        (Some(a), Some(b)) => Some(a - b),
        _ => Some(q.badness? - t.badness?),
    }
}

/// oomguard's rank of `t` if its own oom_score_adj were `adj` (others unchanged).
fn rank_with_adj(snap: &Snapshot, t: &Proc, adj: i16) -> Option<usize> {
    t.effective?;
    let e = badness(
        &t.terms,
        effective_adj(adj, t.rule_kind),
        snap.ctx.totalpages,
    );
    Some(
        1 + snap
            .procs
            .iter()
            .filter(|q| {
                q.pid != t.pid
                    && q.effective
                        .is_some_and(|qe| qe > e || (qe == e && q.starttime > t.starttime))
            })
            .count(),
    )
}

fn advice(
    snap: &Snapshot,
    t: &Proc,
    p: &super::top::Predict,
    rank_adj0: Option<usize>,
) -> Vec<String> {
    let name = t.comm.to_string_lossy();
    // A TOML string as JSON writes it: control characters in the name become \uXXXX escapes
    // (valid TOML), never raw bytes on the terminal.
    let quoted = serde_json::to_string(&format!("^{}$", regex::escape(&name)))
        .unwrap_or_else(|_| "\"?\"".into());
    let rule_hint = format!("a rule `[[protect]] name = {quoted}` in the config");
    let unit_hint = t.unit.as_ref().map_or_else(
        || {
            format!(
                "`echo -900 > /proc/{}/oom_score_adj` (needs CAP_SYS_RESOURCE)",
                t.pid
            )
        },
        |u| format!("`OOMScoreAdjust=-900` in its unit {u}"),
    );
    let mut v = Vec::new();
    if let Some(i) = t.immune {
        v.push(format!("never chosen: {}", i.describe()));
        if i == Immune::Oomguard {
            v.push(
                "the kernel may still pick it; oomguard's daemon sets its own oom_score_adj".into(),
            );
        }
        return v;
    }
    let levels = level_spec(&p.config).resolve(&snap.memory);
    match t.verdict {
        Verdict::Protected => {
            let rule = t.rule.and_then(|i| p.ranker.policy.rules.get(i));
            v.push(format!(
                "oomguard never chooses it: rule {}",
                rule.map_or("?".into(), |r| r.describe())
            ));
            if t.adj > -900 && rule.is_some_and(|r| r.oom_score_adj.is_none()) {
                v.push(format!(
                    "the kernel's own OOM killer still can (#{} in its order): add `oom_score_adj = -900` to that rule so the kernel agrees, or {unit_hint}",
                    t.kernel_rank.unwrap_or(0)
                ));
            }
        }
        Verdict::NextVictim => {
            v.push(format!(
                "it is the next victim: when available memory in scope {} falls to {} (now {}), the daemon sends it SIGTERM first",
                snap.scope,
                human_kb(levels.mem_term_kb),
                human_kb(snap.memory.available_kb),
            ));
            v.push(format!(
                "to keep it alive, protect it with {unit_hint}, or with {rule_hint}"
            ));
        }
        _ => {
            let before = killed_before(snap, t).len();
            v.push(format!(
                "{before} processes would be chosen before it; it is below the top by {} pages",
                snap.procs.first().and_then(|f| margin(f, t)).unwrap_or(0)
            ));
            match t.rule_kind {
                Some(RuleKind::Prefer) => v.push(format!(
                    "a prefer rule ranks it as if oom_score_adj were {} (+300)",
                    effective_adj(t.adj, Some(RuleKind::Prefer))
                )),
                Some(RuleKind::Avoid) => v.push(format!(
                    "an avoid rule ranks it as if oom_score_adj were {} (-300); protect it with {rule_hint} to exclude it",
                    effective_adj(t.adj, Some(RuleKind::Avoid))
                )),
                _ => v.push(format!("to make sure it is never chosen, protect it with {unit_hint}, or with {rule_hint}")),
            }
        }
    }
    if t.adj > 0 {
        v.push(format!(
            "its oom_score_adj {} adds {} pages ({}) to its badness{}",
            t.adj,
            adj_pages(t.adj as i64, snap.ctx.totalpages),
            human_kb(adj_pages(t.adj as i64, snap.ctx.totalpages) as u64 * snap.ctx.page_kb),
            rank_adj0.map_or(String::new(), |r| format!("; with 0 it would rank #{r}"))
        ));
    }
    v
}
