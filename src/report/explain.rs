//! Explanations of one OOM event: the victim's rank by recomputed badness, the biggest
//! consumers, human text, and advice tied to what the report shows.
//!
//! Badness (kernel-oom-spec.md §1.4): `rss + swapents + pgtables_bytes / PAGE_SIZE` pages plus
//! `oom_score_adj × totalpages / 1000`, tasks with `oom_score_adj = -1000` never chosen. Page
//! size is taken as 4 KiB (the report does not print it). `totalpages` is RAM + swap for a
//! global OOM (from `pages RAM` / `Total swap`) and the limit for a memcg OOM; when the report
//! lacks it and some task has a non-zero adj, the ranking is marked approximate.

use std::fmt::Write as _;

use serde::Serialize;

use super::event::{Kind, OomEvent, Task};

const PAGE_KB: u64 = 4;

/// One task of the dump with its recomputed badness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub pid: i64,
    pub name: compact_str::CompactString,
    /// rss + swap + page tables, in pages.
    pub usage_pages: u64,
    /// Share of the listed tasks' total usage, percent.
    pub share_pct: f64,
    pub oom_score_adj: i64,
    /// Badness as the kernel computes it (5.9+ formula), in pages.
    pub points: i64,
    /// False for `oom_score_adj = -1000` (and PID 1 in a global OOM).
    pub eligible: bool,
}

/// Why the victim was chosen, as far as the task dump shows.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Analysis {
    /// Eligible tasks ranked by recomputed badness, highest first (ineligible ones after).
    pub ranking: Vec<Ranked>,
    /// `totalpages` used for the adj term; None when unknown.
    pub total_pages: Option<u64>,
    /// True when the adj term could not be computed exactly.
    pub approximate: bool,
    /// 1-based rank of the chosen task among eligible ones.
    pub victim_rank: Option<usize>,
    /// Victim points minus the runner-up's (positive: clear winner), or minus the top's
    /// (negative: the kernel did not pick the top task), in pages.
    pub margin_pages: Option<i64>,
    /// Set when the kernel did not choose by badness (oom_kill_allocating_task, …).
    pub not_by_badness: Option<String>,
    pub advice: Vec<String>,
}

fn usage_pages(t: &Task) -> u64 {
    let pt = t.pgtables_bytes.unwrap_or(0) / (PAGE_KB * 1024);
    t.rss_pages
        .unwrap_or(0)
        .saturating_add(t.swapents.unwrap_or(0))
        .saturating_add(pt)
}

/// totalpages for the adj term, when the report tells.
fn total_pages(ev: &OomEvent) -> Option<u64> {
    match ev.kind {
        Some(Kind::Memcg) => {
            let lim = ev.memory.memcg_limit_kb?;
            // "max" prints as a huge number: not a real limit.
            (lim < (1 << 50)).then_some(lim / PAGE_KB)
        }
        _ => {
            let ram = ev.memory.ram_pages?;
            Some(ram.saturating_add(ev.memory.swap_total_kb.unwrap_or(0) / PAGE_KB))
        }
    }
}

/// Recomputes badness for every listed task and places the victim.
pub fn analyse(ev: &OomEvent) -> Analysis {
    let mut a = Analysis {
        total_pages: total_pages(ev),
        ..Default::default()
    };
    let tasks = ev.tasks.as_deref().unwrap_or(&[]);
    let sum: u64 = tasks.iter().map(usage_pages).fold(0, u64::saturating_add);
    let any_adj = tasks.iter().any(|t| t.oom_score_adj.unwrap_or(0) != 0);
    a.approximate = any_adj && a.total_pages.is_none();
    let unit = a.total_pages.map_or(0, |t| (t / 1000) as i64);
    let global = matches!(ev.kind, Some(Kind::Global) | None);
    let mut ranked: Vec<Ranked> = tasks
        .iter()
        .map(|t| {
            let usage = usage_pages(t);
            let adj = t.oom_score_adj.unwrap_or(0).clamp(-1000, 1000);
            let points =
                (usage.min(i64::MAX as u64) as i64).saturating_add(adj.saturating_mul(unit));
            Ranked {
                pid: t.pid,
                name: t.name.clone(),
                usage_pages: usage,
                share_pct: if sum > 0 {
                    usage as f64 * 100.0 / sum as f64
                } else {
                    0.0
                },
                oom_score_adj: adj,
                points,
                eligible: adj != -1000 && !(global && t.pid == 1),
            }
        })
        .collect();
    // Highest first; among equals the later row wins on 5.3+ kernels, so it ranks first.
    let order: Vec<usize> = (0..ranked.len()).collect();
    let mut keyed: Vec<(usize, Ranked)> = order.into_iter().zip(ranked.drain(..)).collect();
    keyed.sort_by(|(ia, a), (ib, b)| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.points.cmp(&a.points))
            .then(ib.cmp(ia))
    });
    a.ranking = keyed.into_iter().map(|(_, r)| r).collect();

    let chosen_pid = ev
        .chosen
        .as_ref()
        .map(|c| c.pid)
        .or(ev.victim.as_ref().map(|v| v.pid));
    let eligible: Vec<&Ranked> = a.ranking.iter().filter(|r| r.eligible).collect();
    if let Some(pid) = chosen_pid
        && let Some(pos) = eligible.iter().position(|r| r.pid == pid)
    {
        a.victim_rank = Some(pos + 1);
        let me = eligible[pos].points;
        a.margin_pages = if pos == 0 {
            eligible.get(1).map(|r| me.saturating_sub(r.points))
        } else {
            Some(me.saturating_sub(eligible[0].points))
        };
    }
    if ev
        .kernel_notes
        .iter()
        .any(|n| n.contains("oom_kill_allocating_task"))
    {
        a.not_by_badness =
            Some("vm.oom_kill_allocating_task is set: the task that asked was killed".into());
    } else if exiting(ev) {
        a.not_by_badness =
            Some("the chosen task was already exiting; the kernel only waited for it".into());
    } else if let (Some(ch), Some(v)) = (&ev.chosen, &ev.victim)
        && ch.pid != v.pid
        && ch.score.is_some()
    {
        a.not_by_badness = Some(format!(
            "the kernel chose {} (pid {}) by badness, then killed its child {} (pid {}) instead (\"sacrifice child\", kernels before 5.1)",
            ch.comm.as_deref().unwrap_or("?"),
            ch.pid,
            v.comm.as_deref().unwrap_or("?"),
            v.pid
        ));
    }
    a.advice = advice(ev, &a);
    a
}

/// The kernel printed that its chosen task was already exiting (`Skip killing the task`).
fn exiting(ev: &OomEvent) -> bool {
    ev.kernel_notes
        .iter()
        .any(|n| n.contains("already exiting"))
}

/// kB in the one size format of text output ([`crate::values::HumanKb`]).
pub fn size_kb(kb: u64) -> String {
    crate::values::human_kb(kb)
}

fn pages(p: u64) -> String {
    size_kb(p.saturating_mul(PAGE_KB))
}

fn advice(ev: &OomEvent, a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    let m = &ev.memory;
    match ev.kind {
        Some(Kind::Panic) => out.push(
            "vm.panic_on_oom is set: the machine panicked instead of killing one process. Set it to 0 unless a reboot on OOM is what you want (then also set kernel.panic to reboot)."
                .into(),
        ),
        Some(Kind::NoKillable) => {
            let protected: Vec<String> = a
                .ranking
                .iter()
                .filter(|r| r.oom_score_adj == -1000)
                .take(5)
                .map(|r| format!("{} ({})", r.name, r.pid))
                .collect();
            let mut s = "No process could be killed: every candidate was a kernel thread, PID 1, already dying, or had oom_score_adj -1000.".to_string();
            if !protected.is_empty() {
                let _ = write!(s, " Protected with -1000: {}; lower fewer processes to -1000.", protected.join(", "));
            }
            out.push(s);
        }
        Some(Kind::Memcg) => {
            let path = ev.memcg.as_deref().unwrap_or("the cgroup");
            let lim = m
                .memcg_limit_kb
                .filter(|l| *l < (1 << 50))
                .map(|l| format!(" ({})", size_kb(l)));
            out.push(format!(
                "The memory cgroup {path} reached its limit{}: the machine may have had memory to spare. Raise the limit (memory.max, or memory.limit_in_bytes on cgroup v1) if the workload needs it, or find out why it grew.",
                lim.unwrap_or_default()
            ));
            if let (Some(u), Some(l)) = (m.memsw_usage_kb, m.memsw_limit_kb)
                && l < (1 << 50)
                && u >= l
                && m.memcg_failcnt == Some(0)
            {
                out.push("It was the memory+swap limit (memory.memsw.limit_in_bytes) that was hit, not the memory limit.".into());
            }
        }
        Some(Kind::Cpuset) | Some(Kind::Mempolicy) => out.push(format!(
            "The allocation was confined to some NUMA nodes by its {} (mems {}): memory on other nodes did not count. Check the cpuset's cpuset.mems or the task's numactl policy.",
            if ev.kind == Some(Kind::Cpuset) { "cpuset" } else { "memory policy" },
            ev.mems_allowed.as_deref().or(ev.nodemask.as_deref()).unwrap_or("?")
        )),
        _ => {}
    }
    if matches!(ev.kind, Some(Kind::Global) | Some(Kind::Panic)) && m.swap_total_kb == Some(0) {
        out.push("There was no swap: every anonymous page had to stay in RAM. A little swap (or zram) gives the kernel room to move cold pages out before it kills.".into());
    }
    if let Some(order) = ev.order
        && order >= 3
    {
        out.push(format!(
            "The request was for 2^{order} contiguous pages (order {order}): fragmentation, not only total memory, can trigger this; check /proc/buddyinfo."
        ));
    }
    let eligible: Vec<&Ranked> = a.ranking.iter().filter(|r| r.eligible).collect();
    if let Some(v) = ev.victim.as_ref()
        && let Some(biggest) = eligible.iter().max_by_key(|r| r.usage_pages)
        && biggest.pid != v.pid
        && let Some(vr) = eligible.iter().find(|r| r.pid == v.pid)
        && vr.oom_score_adj > biggest.oom_score_adj
    {
        out.push(format!(
            "oom_score_adj {} made {} (pid {}, {}) the victim although {} (pid {}) used more ({}, adj {}). If that is not what you want, lower the victim's adj or raise the other's.",
            vr.oom_score_adj,
            vr.name,
            vr.pid,
            pages(vr.usage_pages),
            biggest.name,
            biggest.pid,
            pages(biggest.usage_pages),
            biggest.oom_score_adj
        ));
    }
    if let Some(top) = a.ranking.iter().max_by_key(|r| r.usage_pages)
        && top.share_pct >= 70.0
        && a.ranking.len() >= 2
    {
        out.push(format!(
            "{} (pid {}) alone used {:.0}% of the memory of the listed tasks ({}): a leak or an unbounded cache in it is likely; watch its growth (oomguard top) or cap it in its own cgroup.",
            top.name, top.pid, top.share_pct, pages(top.usage_pages)
        ));
    }
    if let Some(r) = a
        .ranking
        .iter()
        .filter(|r| r.oom_score_adj < 0 && r.oom_score_adj > -1000)
        .max_by_key(|r| r.usage_pages)
        && r.share_pct >= 30.0
    {
        out.push(format!(
            "{} (pid {}) used {:.0}% but its oom_score_adj {} shielded it.",
            r.name, r.pid, r.share_pct, r.oom_score_adj
        ));
    }
    if ev.tasks.is_none() && ev.victim.is_some() && ev.has_header {
        out.push("The report has no task list (vm.oom_dump_tasks=0?): enable it to see every candidate next time.".into());
    }
    out
}

fn when(ev: &OomEvent) -> String {
    let t = &ev.time;
    match (&t.wallclock, t.monotonic_s) {
        (Some(w), Some(m)) => format!("{w} ({m:.3} s after boot)"),
        (Some(w), None) => w.clone(),
        (None, Some(m)) => format!("{m:.3} s after boot"),
        (None, None) => "time not in the log".into(),
    }
}

fn what_ran_out(ev: &OomEvent) -> String {
    let m = &ev.memory;
    match ev.kind {
        Some(Kind::Global) => "the whole machine (global OOM: RAM and swap exhausted)".into(),
        Some(Kind::Memcg) => {
            let mut s = format!(
                "memory cgroup {} reached its limit",
                ev.memcg.as_deref().unwrap_or("(path not in the log)")
            );
            if let Some(l) = m.memcg_limit_kb.filter(|l| *l < (1 << 50)) {
                let _ = write!(s, " of {}", size_kb(l));
            }
            if let Some(u) = m.memcg_usage_kb {
                let _ = write!(s, " (usage {}", size_kb(u));
                if let Some(f) = m.memcg_failcnt {
                    let _ = write!(s, ", failcnt {f}");
                }
                s.push(')');
            }
            s
        }
        Some(Kind::Cpuset) => format!(
            "the memory nodes of cpuset {} (mems {})",
            ev.cpuset.as_deref().unwrap_or("?"),
            ev.mems_allowed.as_deref().unwrap_or("?")
        ),
        Some(Kind::Mempolicy) => format!(
            "the NUMA nodes of the task's memory policy (nodemask {})",
            ev.nodemask.as_deref().unwrap_or("?")
        ),
        Some(Kind::Panic) => "the whole machine, and vm.panic_on_oom made the kernel panic".into(),
        Some(Kind::NoKillable) => "memory, with no process left that could be killed".into(),
        None => "not shown in this part of the log".into(),
    }
}

fn who_asked(ev: &OomEvent) -> Option<String> {
    let inv = ev.invoker.as_ref();
    if inv.is_none() && ev.gfp_mask.is_none() {
        return None;
    }
    let mut s = String::new();
    if let Some(i) = inv {
        let _ = write!(s, "{}", i.comm);
        if let Some(p) = i.pid {
            let _ = write!(s, " (pid {p})");
        }
        if let Some(a) = i.oom_score_adj {
            let _ = write!(s, ", oom_score_adj {a}");
        }
    } else {
        s.push_str("(task not named)");
    }
    if let Some(o) = ev.order {
        if o < 0 {
            s.push_str(", a manual OOM (sysrq-f)");
        } else {
            let _ = write!(s, ", asking for {} (order {o})", pages(1u64 << o.min(30)));
        }
    }
    if let Some(g) = &ev.gfp_mask {
        match ev.gfp_flags.as_deref() {
            Some(f) if !f.is_empty() => {
                let _ = write!(s, ", gfp {f} ({g})");
            }
            _ => {
                let _ = write!(s, ", gfp_mask {g}");
            }
        }
    }
    Some(s)
}

fn memory_state(ev: &OomEvent) -> Option<String> {
    let m = &ev.memory;
    let mut parts = Vec::new();
    if let Some(f) = m.free_pages {
        let mut s = format!("free {}", pages(f));
        if let Some(r) = m.ram_pages {
            let _ = write!(s, " of {} RAM", pages(r));
        }
        parts.push(s);
    }
    match (m.swap_total_kb, m.swap_free_kb) {
        (Some(0), _) => parts.push("no swap".into()),
        (Some(t), Some(f)) => parts.push(format!("swap free {} of {}", size_kb(f), size_kb(t))),
        _ => {}
    }
    if let Some(p) = m.pagecache_pages {
        parts.push(format!("page cache {}", pages(p)));
    }
    if let Some(a) = m.active_anon_pages {
        let anon = a.saturating_add(m.inactive_anon_pages.unwrap_or(0));
        parts.push(format!("anon {}", pages(anon)));
    }
    if let Some(s) = m.slab_unreclaimable_pages {
        parts.push(format!("unreclaimable slab {}", pages(s)));
    }
    if let (Some(u), Some(l)) = (m.memsw_usage_kb, m.memsw_limit_kb) {
        let lim = if l >= (1 << 50) {
            "no limit".into()
        } else {
            size_kb(l)
        };
        parts.push(format!("memory+swap {} (limit {lim})", size_kb(u)));
    }
    if let Some(u) = m.memcg_swap_usage_kb {
        parts.push(format!("cgroup swap {}", size_kb(u)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The full human explanation of one event (no colour; the caller adds none).
pub fn render(ev: &OomEvent) -> String {
    let a = analyse(ev);
    let mut s = String::new();
    let kind = ev.kind.map_or("OOM (kind not in the log)", |k| match k {
        Kind::Global => "global OOM",
        Kind::Memcg => "memory cgroup OOM",
        Kind::Cpuset => "cpuset OOM",
        Kind::Mempolicy => "memory-policy OOM",
        Kind::Panic => "OOM panic",
        Kind::NoKillable => "OOM with nothing killable",
    });
    match &ev.host {
        Some(h) => writeln!(s, "{kind} at {} on host {h}", when(ev)),
        None => writeln!(s, "{kind} at {}", when(ev)),
    }
    .ok();
    let _ = writeln!(s, "  What ran out:  {}", what_ran_out(ev));
    if let Some(w) = who_asked(ev) {
        let _ = writeln!(s, "  Who asked:     {w}");
    }
    if let Some(m) = memory_state(ev) {
        let _ = writeln!(s, "  Memory then:   {m}");
    }
    if let Some(tm) = &ev.task_memcg
        && ev.memcg.as_deref() != Some(tm.as_str())
    {
        let _ = writeln!(s, "  Victim cgroup: {tm}");
    }
    if !a.ranking.is_empty() {
        let _ = writeln!(
            s,
            "  Biggest consumers ({} tasks listed; rss+swap+page tables, badness in pages):",
            a.ranking.len()
        );
        let mut by_use: Vec<&Ranked> = a.ranking.iter().collect();
        by_use.sort_by_key(|y| std::cmp::Reverse(y.usage_pages));
        for r in by_use.iter().take(5) {
            let _ = writeln!(
                s,
                "    {:<16} pid {:<8} {:>10}  {:>5.1}%  adj {:>5}  badness {}{}",
                r.name,
                r.pid,
                pages(r.usage_pages),
                r.share_pct,
                r.oom_score_adj,
                r.points,
                if r.eligible { "" } else { " (never chosen)" }
            );
        }
    } else if ev.tasks.is_some() {
        let _ = writeln!(s, "  Task list:     printed empty");
    }
    match &ev.victim {
        Some(v) => {
            let mut line = format!(
                "{} (pid {})",
                v.comm.as_deref().unwrap_or("(name cut off)"),
                v.pid
            );
            let mut mem = Vec::new();
            if let Some(x) = v.anon_rss_kb {
                mem.push(format!("anon {}", size_kb(x)));
            }
            if let Some(x) = v.file_rss_kb {
                mem.push(format!("file {}", size_kb(x)));
            }
            if let Some(x) = v.shmem_rss_kb {
                mem.push(format!("shmem {}", size_kb(x)));
            }
            if let Some(x) = v.total_vm_kb {
                mem.push(format!("virtual {}", size_kb(x)));
            }
            if !mem.is_empty() {
                let _ = write!(line, ": {}", mem.join(", "));
            }
            if let Some(u) = v.uid {
                let _ = write!(line, "; uid {u}");
            }
            if let Some(adj) = v.oom_score_adj {
                let _ = write!(line, "; oom_score_adj {adj}");
            }
            let _ = writeln!(s, "  Killed:        {line}");
        }
        None => {
            if let Some(c) = &ev.chosen {
                let why = if exiting(ev) {
                    "already exiting: the kernel killed nothing"
                } else {
                    "the kill is not in the log"
                };
                let _ = writeln!(
                    s,
                    "  Chosen:        {} (pid {}), {why}",
                    c.comm.as_deref().unwrap_or("?"),
                    c.pid
                );
            } else if !matches!(ev.kind, Some(Kind::Panic | Kind::NoKillable)) {
                let _ = writeln!(s, "  Killed:        not in this part of the log");
            }
        }
    }
    let why = why_line(ev, &a);
    if let Some(w) = why {
        let _ = writeln!(s, "  Why this one:  {w}");
    }
    if !ev.also_killed.is_empty() {
        let names: Vec<String> = ev
            .also_killed
            .iter()
            .map(|k| format!("{} ({})", k.comm.as_deref().unwrap_or("?"), k.pid))
            .collect();
        let why = ev
            .oom_group
            .as_ref()
            .map(|g| format!(" (memory.oom.group of {g})"))
            .unwrap_or_default();
        let _ = writeln!(s, "  Also killed:   {}{why}", names.join(", "));
    }
    if let Some(r) = &ev.reaped {
        let _ = writeln!(
            s,
            "  Reaped:        oom_reaper freed its memory (now anon {}, file {}, shmem {})",
            size_kb(r.anon_rss_kb),
            size_kb(r.file_rss_kb),
            size_kb(r.shmem_rss_kb)
        );
    }
    if let Some(p) = &ev.panic_message {
        let _ = writeln!(s, "  Panic:         {p}");
    }
    for n in &ev.kernel_notes {
        let _ = writeln!(s, "  Kernel said:   {n}");
    }
    if !a.advice.is_empty() {
        let _ = writeln!(s, "  Advice:");
        for adv in &a.advice {
            let _ = writeln!(s, "    - {adv}");
        }
    }
    s
}

fn why_line(ev: &OomEvent, a: &Analysis) -> Option<String> {
    if let Some(n) = &a.not_by_badness {
        return Some(format!("not by badness: {n}"));
    }
    let eligible = a.ranking.iter().filter(|r| r.eligible).count();
    let rank = a.victim_rank?;
    let approx = if a.approximate {
        " (approximate: the report lacks the total the adj term needs)"
    } else {
        ""
    };
    let chosen = a.ranking.iter().find(|r| {
        Some(r.pid)
            == ev
                .chosen
                .as_ref()
                .map(|c| c.pid)
                .or(ev.victim.as_ref().map(|v| v.pid))
    })?;
    let margin = a.margin_pages.unwrap_or(0);
    if rank == 1 {
        let detail = match a.ranking.iter().filter(|r| r.eligible).nth(1) {
            Some(next) => format!(
                "ahead of {} (pid {}) by {} pages ({})",
                next.name,
                next.pid,
                margin,
                pages(margin.unsigned_abs())
            ),
            None => "the only candidate".into(),
        };
        return Some(format!(
            "highest badness: rank 1 of {eligible} eligible tasks with {} pages{approx}; {detail}",
            chosen.points
        ));
    }
    let top = a.ranking.iter().find(|r| r.eligible)?;
    Some(format!(
        "not the highest badness: rank {rank} of {eligible} eligible tasks with {} pages{approx}; {} (pid {}) scored {} pages more but was passed over. The kernel skips tasks it already killed and reaped (MMF_OOM_SKIP), tasks exiting or in vfork, and reads per-CPU counters that lag; the dump shows none of this",
        chosen.points,
        top.name,
        top.pid,
        margin.unsigned_abs()
    ))
}

/// One line for `--summary`: time, kind, victim, size, who asked, cgroup. Written into one
/// string (a log of thousands of events prints thousands of these).
pub fn summary_line(ev: &OomEvent) -> String {
    let mut s = String::with_capacity(128);
    let t = &ev.time;
    match (&t.wallclock, t.monotonic_s) {
        (Some(w), _) => s.push_str(w),
        (None, Some(m)) => {
            let _ = write!(s, "{m:.3}");
        }
        (None, None) => s.push('-'),
    }
    let kind = ev.kind.map_or("-", |k| k.as_str());
    let _ = write!(s, "  {kind:<11}  ");
    match (&ev.victim, &ev.chosen) {
        (Some(v), _) => {
            let _ = write!(s, "{}[{}]", v.comm.as_deref().unwrap_or("?"), v.pid);
        }
        (None, Some(c)) => {
            let _ = write!(s, "chosen {}[{}]", c.comm.as_deref().unwrap_or("?"), c.pid);
        }
        (None, None) => s.push('-'),
    }
    if !ev.also_killed.is_empty() {
        let _ = write!(s, " +{} killed", ev.also_killed.len());
    }
    s.push_str("  rss ");
    let rss = ev.victim.as_ref().and_then(|v| {
        let a = v.anon_rss_kb?;
        Some(
            a.saturating_add(v.file_rss_kb.unwrap_or(0))
                .saturating_add(v.shmem_rss_kb.unwrap_or(0)),
        )
    });
    match rss {
        Some(kb) => {
            let _ = write!(s, "{}", crate::values::HumanKb(kb));
        }
        None => s.push('-'),
    }
    s.push_str("  by ");
    match &ev.invoker {
        Some(i) => {
            s.push_str(&i.comm);
            if let Some(p) = i.pid {
                let _ = write!(s, "[{p}]");
            }
        }
        None => s.push('-'),
    }
    s.push_str("  cgroup ");
    s.push_str(
        ev.memcg
            .as_deref()
            .or(ev.task_memcg.as_deref())
            .unwrap_or("-"),
    );
    s.push_str("  host ");
    s.push_str(ev.host.as_deref().unwrap_or("-"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Invoker, Kill, Time};

    #[test]
    fn summary_line_fields_and_sizes_no_log_can_overflow() {
        let mut ev = OomEvent {
            kind: Some(Kind::Memcg),
            time: Time {
                monotonic_s: Some(12.3456),
                ..Default::default()
            },
            invoker: Some(Invoker {
                comm: "stress".into(),
                pid: Some(4242),
                oom_score_adj: None,
            }),
            victim: Some(Kill {
                pid: 4242,
                comm: Some("stress".into()),
                anon_rss_kb: Some(2048),
                file_rss_kb: Some(1024),
                ..Default::default()
            }),
            memcg: Some("/app.slice".into()),
            ..Default::default()
        };
        ev.also_killed.push(Kill::default());
        assert_eq!(
            summary_line(&ev),
            "12.346  memcg        stress[4242] +1 killed  rss 3.0 MiB  by stress[4242]  cgroup /app.slice  host -"
        );
        ev.host = Some("web-1".into());
        assert!(summary_line(&ev).ends_with("cgroup /app.slice  host web-1"));
        // Sizes from a damaged or hostile log add up without wrapping to a small number.
        let v = ev.victim.as_mut().unwrap();
        v.anon_rss_kb = Some(u64::MAX);
        v.shmem_rss_kb = Some(2);
        let line = summary_line(&ev);
        assert!(
            line.contains(&format!("rss {}", size_kb(u64::MAX))),
            "{line}"
        );
        let empty = summary_line(&OomEvent::default());
        assert_eq!(empty, "-  -            -  rss -  by -  cgroup -  host -");
    }
}
