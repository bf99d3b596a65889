//! Why one process ranks where it does (`oomguard why`): which process a PID or a name means,
//! its badness term by term, who is chosen before it and by how many pages, the rank it would
//! have with `oom_score_adj` 0, the rules that match it, and advice. Pure functions over a
//! ranked [`Snapshot`]; the command line only parses and prints.

use super::policy::{Policy, RuleKind, effective_adj, protect_fields};
use super::rank::{Immune, LazyFacts, Proc, Snapshot, UserNames, Verdict};
use super::score::{adj_pages, badness};
use super::trigger::Levels;
use crate::sense::procs::ProcReader;
use crate::values::human_kb;

/// The processes a snapshot counts: kernel threads are never counted (they hold no memory and
/// are never chosen), whether or not the snapshot lists them. `top` and `why` both say this
/// number.
pub fn process_count(snap: &Snapshot) -> usize {
    snap.procs
        .iter()
        .filter(|p| p.immune != Some(Immune::KernelThread))
        .count()
}

/// A PID or a name that names no process of the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(
        "cannot read process {pid} (/proc/{pid}/stat or status unreadable: hidepid or permissions; try as root)"
    )]
    Unreadable { pid: i32 },
    #[error("PID {pid} is not in scope {scope} (use --scope system, or the scope it runs in)")]
    OutOfScope { pid: i32, scope: String },
    #[error("no process with PID {pid}")]
    NoPid { pid: i32 },
    #[error(
        "no process named '{name}' in scope {scope} (names are the kernel's 15-byte comm; try a PID)"
    )]
    NoName { name: String, scope: String },
}

/// The process `target` (a PID, or a name: exact, else the names containing it) means, and with
/// a name the PIDs of the other matches (lower ranked). `pid_exists` tells a PID that exists
/// but is not in the snapshot from one that does not exist.
pub fn find<'a>(
    snap: &'a Snapshot,
    target: &str,
    pid_exists: impl Fn(i32) -> bool,
) -> Result<(&'a Proc, Vec<i32>), FindError> {
    if let Ok(pid) = target.parse::<i32>() {
        return match snap.find(pid) {
            Some(p) => Ok((p, Vec::new())),
            None if pid_exists(pid) && snap.scope == "system" => Err(FindError::Unreadable { pid }),
            None if pid_exists(pid) => Err(FindError::OutOfScope {
                pid,
                scope: snap.scope.clone(),
            }),
            None => Err(FindError::NoPid { pid }),
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
        None => Err(FindError::NoName {
            name: target.to_string(),
            scope: snap.scope.clone(),
        }),
    }
}

/// The processes chosen before `t`: oomguard's order if it can be chosen, else the kernel's.
pub fn killed_before<'a>(snap: &'a Snapshot, t: &Proc) -> Vec<&'a Proc> {
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
pub fn margin(q: &Proc, t: &Proc) -> Option<i64> {
    match (q.effective, t.effective) {
        (Some(a), Some(b)) => Some(a - b),
        _ => Some(q.badness? - t.badness?),
    }
}

/// oomguard's rank of `t` if its own oom_score_adj were `adj` (others unchanged).
pub fn rank_with_adj(snap: &Snapshot, t: &Proc, adj: i16) -> Option<usize> {
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

/// One rule that matches the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchingRule {
    /// Its index in the policy.
    pub index: usize,
    pub description: String,
    /// The first match: the one that decides.
    pub decides: bool,
}

/// The rules of `policy` that match `t`, in order (reads its cmdline, exe, cgroup as needed).
pub fn matching_rules(reader: &mut ProcReader, policy: &Policy, t: &Proc) -> Vec<MatchingRule> {
    let name = t.comm.to_string_lossy().into_owned();
    let mut facts = LazyFacts::new(reader, t.pid, &name, t.uid, t.cgroup.as_deref());
    policy
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches(&mut facts))
        .map(|(index, r)| MatchingRule {
            index,
            description: r.describe(),
            decides: Some(index) == t.rule,
        })
        .collect()
}

/// Everything `why` says about one process.
#[derive(Debug)]
pub struct Explanation<'a> {
    pub target: &'a Proc,
    /// With a name: the other matching PIDs.
    pub others: Vec<i32>,
    /// The oom_score_adj term in pages: adj × totalpages / 1000.
    pub adj_pages: i64,
    /// totalpages / 1000: the pages one point of oom_score_adj is worth.
    pub unit_pages: u64,
    pub rules: Vec<MatchingRule>,
    /// Chosen before it, in the order that applies ([`killed_before`]).
    pub before: Vec<&'a Proc>,
    /// rss + swap pages of those chosen before it.
    pub freed_pages: u64,
    pub rank_with_adj_0: Option<usize>,
    /// [`process_count`].
    pub processes: usize,
    pub advice: Vec<String>,
}

/// Explains `target` in `snap` under `policy` and the resolved `levels` (`users`: passwd's
/// names, for the rules the advice suggests).
pub fn explain<'a>(
    snap: &'a Snapshot,
    target: &'a Proc,
    others: Vec<i32>,
    reader: &mut ProcReader,
    policy: &Policy,
    levels: &Levels,
    users: &UserNames,
) -> Explanation<'a> {
    let tp = snap.ctx.totalpages;
    let before = killed_before(snap, target);
    let freed_pages = before
        .iter()
        .map(|q| q.terms.rss_pages + q.terms.swap_pages)
        .sum();
    let rank_with_adj_0 = rank_with_adj(snap, target, 0);
    Explanation {
        target,
        others,
        adj_pages: adj_pages(target.adj as i64, tp),
        unit_pages: tp / 1000,
        rules: matching_rules(reader, policy, target),
        advice: advice(snap, target, policy, levels, rank_with_adj_0, users),
        before,
        freed_pages,
        rank_with_adj_0,
        processes: process_count(snap),
    }
}

/// What to do about `t`: why it is (not) chosen and how to protect it.
pub fn advice(
    snap: &Snapshot,
    t: &Proc,
    policy: &Policy,
    levels: &Levels,
    rank_adj0: Option<usize>,
    users: &UserNames,
) -> Vec<String> {
    // Its name (quoted as JSON writes it: control characters become \uXXXX escapes, valid
    // TOML, never raw bytes on the terminal), and its user when that is root or a system user.
    let fields = protect_fields(
        &t.comm.to_string_lossy(),
        t.uid,
        t.uid.and_then(|u| users.get(u)),
    );
    let rule_hint = format!("a rule `[[protect]] {fields}` in the config");
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
        match i {
            Immune::Oomguard => v.push(
                "the kernel may still pick it; oomguard's daemon sets its own oom_score_adj".into(),
            ),
            Immune::NamespaceInit => v.push(format!(
                "the kernel's own OOM killer still can (#{} in its order)",
                t.kernel_rank.unwrap_or(0)
            )),
            _ => {}
        }
        return v;
    }
    match t.verdict {
        Verdict::Protected => {
            let rule = t.rule.and_then(|i| policy.rules.get(i));
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
                _ => v.push(format!(
                    "to make sure it is never chosen, protect it with {unit_hint}, or with {rule_hint}"
                )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::rank::{Context, Unreadable, rank};
    use crate::decide::score::{RootBonus, ScoreEra, Terms};
    use crate::sense::mem::MemState;
    use crate::sense::procs::Comm;

    const TOTAL: u64 = 1_000_000;

    fn p(pid: i32, name: &str, rss: u64, adj: i16, immune: Option<Immune>) -> Proc {
        let terms = Terms {
            rss_pages: rss,
            ..Default::default()
        };
        let kernel_ok = immune.is_none_or(|i| !i.kernel_immune());
        Proc {
            pid,
            ppid: 1,
            comm: Comm::new(name.as_bytes()),
            state: b'S',
            starttime: pid as u64,
            uid: Some(0),
            terms,
            rss_anon_kb: 0,
            rss_file_kb: 0,
            rss_shmem_kb: 0,
            adj,
            sys_admin: false,
            exiting: false,
            cgroup: None,
            unit: None,
            rule: None,
            rule_kind: None,
            immune,
            badness: kernel_ok.then(|| badness(&terms, adj as i64, TOTAL)),
            oom_score: 0,
            effective: immune
                .is_none()
                .then(|| super::super::order::score(terms.points(), adj, None, TOTAL))
                .flatten(),
            rank: 0,
            kernel_rank: None,
            verdict: Verdict::Candidate,
        }
    }

    /// db (big), web (small, adj 500), two kernel threads (listed, as `why` reads them).
    fn snap() -> Snapshot {
        let mut v = vec![
            p(10, "db", 300_000, 0, None),
            p(20, "web", 50_000, 500, None),
            p(30, "webworker", 1_000, 0, None),
            p(2, "kthreadd", 0, 0, Some(Immune::KernelThread)),
            p(3, "kworker/0:1", 0, 0, Some(Immune::KernelThread)),
        ];
        rank(&mut v);
        Snapshot {
            scope: "system".into(),
            memory: MemState::default(),
            ctx: Context {
                page_kb: 4,
                global_totalpages: TOTAL,
                totalpages: TOTAL,
                era: ScoreEra::Signed,
                bonus: RootBonus::None,
            },
            procs: v,
            kernel_threads: 2,
            unreadable: Unreadable::default(),
        }
    }

    #[test]
    fn kernel_threads_are_not_counted_whether_listed_or_not() {
        let mut s = snap();
        assert_eq!(process_count(&s), 3);
        s.procs.retain(|p| p.immune != Some(Immune::KernelThread));
        assert_eq!(process_count(&s), 3);
    }

    #[test]
    fn order_margin_and_rank_with_adj_0() {
        let s = snap();
        // web: 50 000 + 500 × 1000 pages = 550 000 > db's 300 000.
        assert_eq!(s.procs[0].pid, 20);
        let db = s.find(10).unwrap();
        let before = killed_before(&s, db);
        assert_eq!(before.iter().map(|q| q.pid).collect::<Vec<_>>(), [20]);
        assert_eq!(margin(before[0], db), Some(250_000));
        let web = s.find(20).unwrap();
        assert!(killed_before(&s, web).is_empty());
        // With adj 0 web (50 000) falls behind db.
        assert_eq!(rank_with_adj(&s, web, 0), Some(2));
        // A kernel thread is never chosen: nobody is "before" it and it has no rank.
        let k = s.find(2).unwrap();
        assert!(killed_before(&s, k).is_empty());
        assert_eq!(rank_with_adj(&s, k, 0), None);
    }

    #[test]
    fn find_by_pid_or_name() {
        let s = snap();
        assert_eq!(find(&s, "10", |_| true).unwrap().0.pid, 10);
        // Exact name first; else every name containing it, the highest ranked first.
        let (w, others) = find(&s, "web", |_| true).unwrap();
        assert_eq!((w.pid, others), (20, vec![]));
        let (w, others) = find(&s, "we", |_| true).unwrap();
        assert_eq!((w.pid, others), (20, vec![30]));
        assert!(matches!(
            find(&s, "999", |_| false),
            Err(FindError::NoPid { pid: 999 })
        ));
        assert!(matches!(
            find(&s, "999", |_| true),
            Err(FindError::Unreadable { pid: 999 })
        ));
        assert!(matches!(
            find(&s, "nosuch", |_| true),
            Err(FindError::NoName { .. })
        ));
    }

    #[test]
    fn advice_names_the_level_for_the_next_victim_and_the_adj_for_others() {
        let s = snap();
        let levels = Levels {
            mem_term_kb: 100 << 10,
            ..Default::default()
        };
        let policy = Policy::default();
        let web = s.find(20).unwrap();
        assert_eq!(web.verdict, Verdict::NextVictim);
        let users = UserNames::parse("root:x:0:0::/root:/bin/sh\n");
        let a = advice(&s, web, &policy, &levels, Some(2), &users);
        assert!(a[0].contains("falls to 100 MiB"), "{a:?}");
        assert!(
            a.iter()
                .any(|l| l.contains("oom_score_adj 500 adds 500000 pages")
                    && l.ends_with("with 0 it would rank #2")),
            "{a:?}"
        );
        let db = s.find(10).unwrap();
        let a = advice(&s, db, &policy, &levels, Some(1), &users);
        assert!(
            a[0].starts_with("1 processes would be chosen before it"),
            "{a:?}"
        );
        // The rule it suggests names root, whose process it is: a user's process named db
        // would not be shielded by it.
        assert!(
            a[1].ends_with(
                "or with a rule `[[protect]] name = \"^db$\" user = \"root\"` in the config"
            ),
            "{a:?}"
        );
        let mut users_db = db.clone();
        users_db.uid = Some(1000);
        let a = advice(&s, &users_db, &policy, &levels, Some(1), &users);
        assert!(
            a[1].ends_with("or with a rule `[[protect]] name = \"^db$\"` in the config"),
            "{a:?}"
        );
        let k = s.find(3).unwrap();
        assert_eq!(
            advice(&s, k, &policy, &levels, None, &users)[0],
            "never chosen: a kernel thread has no user memory to free"
        );
    }
}
