//! The one victim order: which processes oomguard never chooses, how it scores the others and
//! how it breaks ties. The daemon's choice (`victim.rs`) and `top`/`why` (`rank.rs`) both decide
//! through these functions, so the next victim `top` shows is the process the daemon would take.
//!
//! - Immune (contract, "Rules"): PID 1, kernel threads, oomguard itself, `oom_score_adj` −1000,
//!   zombies (and processes whose memory is already gone). A `protect` rule excludes too. And,
//!   as the kernel does, a vfork child ([`Immune::Vfork`], found by the caller: it shares its
//!   parent's memory, so its kill frees nothing).
//! - Score: the kernel's badness with a prefer/avoid rule shifting `oom_score_adj` by ±300,
//!   clamped to −1000…1000 ([`score`]).
//! - Ties: the most recently started process first (as the kernel's own scan, which keeps the
//!   later of two equal tasks), then the higher PID ([`Key`]). Every key is distinct, so among
//!   many equal processes the same one is chosen on every wake-up (a stable would-be victim,
//!   hence one dry-run record per episode).
//!
//! "oomguard itself" means the guard that makes the choice: the daemon excludes its own PID and
//! no other process. Other `oomguard run` processes are ordinary candidates for it: the name and
//! the command line are chosen by whoever starts a process (any user can call a hog `oomguard`
//! and pass `run`), and even the real binary can be made to hold any amount of memory
//! (`LD_PRELOAD`), so sparing every process that looks like a guard would let a user exempt
//! their hog. A real guard holds little memory and, when it runs with CAP_SYS_RESOURCE, sets
//! its own `oom_score_adj` to −1000, which makes it immune for every guard and the kernel.
//! `top` and `why` predict a daemon from outside it: they mark the `oomguard run` processes
//! they see as [`Immune::Oomguard`], because each of those excludes itself and they cannot tell
//! which one guards the scope; they never mark their own process (the daemon may choose `top`).

use serde::Serialize;

use super::policy::{RuleKind, effective_adj};
use super::score::adj_pages;

/// Why a process can never be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Immune {
    Init,
    KernelThread,
    Zombie,
    AdjMin,
    Oomguard,
    Vfork,
    /// PID 1 of a PID namespace of its own (a container's init, seen by a `top`, `why` or
    /// daemon that runs inside the container): the kernel scores and may kill it like any other
    /// process (`is_global_init` spares only the machine's init), but a signal from inside its
    /// namespace cannot (the kernel drops SIGKILL sent to a namespace's init from within).
    NamespaceInit,
}

impl Immune {
    pub fn describe(self) -> &'static str {
        match self {
            Immune::Init => "PID 1 (init) is never killed",
            Immune::KernelThread => "a kernel thread has no user memory to free",
            Immune::Zombie => "a zombie (or exiting process) has no memory left to free",
            Immune::AdjMin => "oom_score_adj -1000 makes it unkillable for the kernel and oomguard",
            Immune::Oomguard => "an oomguard daemon never chooses itself",
            Immune::NamespaceInit => {
                "the init of this PID namespace (a container's) ignores SIGKILL sent from inside it: oomguard, running there, cannot kill it (the kernel can, and scores it)"
            }
            Immune::Vfork => {
                "a vfork child shares its parent's memory until it execs: killing it frees nothing (the kernel skips it too; its parent is the one to take)"
            }
        }
    }
    /// The kernel never picks these either (except oomguard's own processes).
    pub fn kernel_immune(self) -> bool {
        !matches!(self, Immune::Oomguard | Immune::NamespaceInit)
    }
}

/// Why `pid` can never be chosen, if it cannot. `kthread`: a kernel thread; `no_memory`: a
/// zombie or a process without an mm; `guard`: the deciding guard itself (see the module docs).
pub fn immunity(pid: i32, kthread: bool, no_memory: bool, adj: i16, guard: bool) -> Option<Immune> {
    if pid == 1 {
        Some(Immune::Init)
    } else if kthread {
        Some(Immune::KernelThread)
    } else if no_memory {
        Some(Immune::Zombie)
    } else if adj <= -1000 {
        Some(Immune::AdjMin)
    } else if guard {
        Some(Immune::Oomguard)
    } else {
        None
    }
}

/// oomguard's score of a process that is not immune: its points (rss + swap + page tables, in
/// pages) plus its adj, shifted by the rule's kind, scaled as the kernel scales it. `None`: a
/// protect rule matched, never chosen.
pub fn score(points: i64, adj: i16, rule: Option<RuleKind>, totalpages: u64) -> Option<i64> {
    if rule == Some(RuleKind::Protect) {
        return None;
    }
    Some(points + adj_pages(effective_adj(adj, rule), totalpages))
}

/// A process's place in the order: the greater key is chosen first. Score, then start time
/// (most recent first), then PID (higher first), so no two processes ever tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub score: i64,
    pub starttime: u64,
    pub pid: i32,
}

impl Key {
    pub fn new(score: i64, starttime: u64, pid: i32) -> Key {
        Key {
            score,
            starttime,
            pid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immunity_in_the_contracts_order() {
        assert_eq!(immunity(1, false, false, 0, false), Some(Immune::Init));
        assert_eq!(
            immunity(2, true, true, 0, false),
            Some(Immune::KernelThread)
        );
        assert_eq!(immunity(9, false, true, 0, false), Some(Immune::Zombie));
        assert_eq!(immunity(9, false, false, -1000, true), Some(Immune::AdjMin));
        assert_eq!(
            immunity(9, false, false, -999, true),
            Some(Immune::Oomguard)
        );
        assert_eq!(immunity(9, false, false, -999, false), None);
    }

    #[test]
    fn rules_shift_the_score_and_protect_removes_it() {
        let total = 1_000_000;
        assert_eq!(score(500, 0, None, total), Some(500));
        assert_eq!(score(500, 0, Some(RuleKind::Prefer), total), Some(300_500));
        assert_eq!(
            score(500, 900, Some(RuleKind::Prefer), total),
            Some(1_000_500)
        );
        assert_eq!(
            score(500, -800, Some(RuleKind::Avoid), total),
            Some(-999_500)
        );
        assert_eq!(score(500, 0, Some(RuleKind::Protect), total), None);
    }

    #[test]
    fn ties_go_to_the_most_recent_then_the_higher_pid() {
        let mut v = [
            Key::new(10, 5, 100),
            Key::new(10, 7, 90),
            Key::new(10, 7, 95),
            Key::new(11, 1, 1),
        ];
        v.sort_unstable_by(|a, b| b.cmp(a));
        let pids: Vec<i32> = v.iter().map(|k| k.pid).collect();
        assert_eq!(pids, [1, 95, 90, 100]);
    }
}
