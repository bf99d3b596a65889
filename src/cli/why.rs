//! `oomguard why PID|NAME`: one process's badness term by term, its kernel score and rank,
//! who would be killed before it and by how much, the rules that match it, and advice. The
//! analysis is [`crate::decide::explain_rank`]; this file parses and prints.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;

use super::top::{PredictArgs, level_spec};
use crate::decide::explain_rank::{self, margin};
use crate::decide::policy::effective_adj;
use crate::decide::score::ScoreEra;
use crate::values::human_kb;

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
    // A thread's ID (a `/proc/TID` of its own, left out of listings) means its process.
    let mut wanted = args.target.clone();
    if let Ok(tid) = wanted.parse::<i32>()
        && let Some(tgid) = tgid_of(&p.ranker.reader, tid)
        && tgid != tid
    {
        eprintln!("oomguard: {tid} is a thread of process {tgid}: explaining the process");
        wanted = tgid.to_string();
    }
    let (target, others) = explain_rank::find(&snap, &wanted, |pid| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    })?;
    let kernel_score = p.ranker.reader.oom_score(target.pid).ok();
    let levels = level_spec(&p.config).resolve(&snap.memory);
    let x = explain_rank::explain(
        &snap,
        target,
        others,
        &mut p.ranker.reader,
        &p.ranker.policy,
        &levels,
        &p.users,
    );
    let policy = &p.ranker.policy;
    let pk = snap.ctx.page_kb;
    let tp = snap.ctx.totalpages;
    let (unit_pages, adj_part, before, freed_pages, rank_adj0) = (
        x.unit_pages,
        x.adj_pages,
        &x.before,
        x.freed_pages,
        x.rank_with_adj_0,
    );
    // What the root bonus of a kernel before 4.17 took off (0: none).
    let bonus_pages = target
        .badness
        .map_or(0, |b| target.terms.points() + adj_part - b);
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
            "root_bonus_pages": bonus_pages,
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
            "rules": x.rules.iter().map(|r| json!({
                "index": r.index, "rule": r.description, "kind": policy.rules[r.index].kind,
                "decides": r.decides,
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
            "advice": x.advice,
            "other_matches": x.others,
            "process_count": x.processes,
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
        crate::values::escape_text(&p.users.name(target.uid)),
        target.state as char,
        match (&target.unit, &target.cgroup) {
            (Some(u), _) => format!("unit {}", crate::values::escape_text(u)),
            (None, Some(c)) => format!("cgroup {}", crate::values::escape_text(c)),
            _ => "no cgroup".into(),
        }
    );
    if !x.others.is_empty() {
        let _ = writeln!(
            s,
            "  ({} more processes match '{}': PIDs {}; showing the highest ranked)",
            x.others.len(),
            args.target,
            x.others
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
    if bonus_pages != 0 {
        row(
            &mut s,
            "root bonus",
            -bonus_pages,
            &format!("   ({})", snap.ctx.bonus.describe().unwrap_or("")),
        );
    }
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
            Some(_) => match snap.ctx.era {
                ScoreEra::Signed => format!(
                    "= (1000 + badness x 1000 / {}) x 2 / 3 against the machine's totalpages",
                    snap.ctx.global_totalpages
                ),
                ScoreEra::Clamped => format!(
                    "= max(badness, 1) x 1000 / {} against the machine's totalpages (a kernel before 5.9)",
                    snap.ctx.global_totalpages
                ),
            },
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
        x.processes,
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
    if x.rules.is_empty() {
        s.push_str("Rules: none match\n");
    } else {
        s.push_str("Rules that match (the first decides):\n");
        for r in &x.rules {
            let d = &r.description;
            let _ = writeln!(s, "  {}{d}", if r.decides { "* " } else { "  " });
        }
    }
    s.push_str("Advice:\n");
    for a in &x.advice {
        let _ = writeln!(s, "  - {a}");
    }
    for n in snap.unreadable.notes() {
        let _ = writeln!(s, "Note: {n}");
    }
    std::io::stdout().lock().write_all(s.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The process (thread group) that thread `tid` belongs to, from its `status`.
fn tgid_of(reader: &crate::sense::procs::ProcReader, tid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(reader.root().path(format!("proc/{tid}/status"))).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
