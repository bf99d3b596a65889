//! Levels and the trigger: when memory (and swap, when there is any) is low enough to act,
//! and how soon to look again.

use std::time::Duration;

use serde::Serialize;

use crate::values::{LevelPair, PsiSpec, human_kb};

/// The scope's memory is a sensed fact; re-exported here for the modules that still name it
/// through `decide::trigger`.
use crate::sense::mem::MemState;

/// The levels as given (percentages and/or sizes), before a scope's totals are known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelSpec {
    pub mem_pct: Option<LevelPair>,
    pub mem_size: Option<LevelPair>,
    pub swap_pct: Option<LevelPair>,
    pub swap_size: Option<LevelPair>,
    pub psi: Option<PsiSpec>,
}

/// Resolved levels in kB for one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Levels {
    pub mem_term_kb: u64,
    pub mem_kill_kb: u64,
    pub swap_term_kb: u64,
    pub swap_kill_kb: u64,
}

fn lower(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> (u64, u64) {
    match (a, b) {
        (Some(x), Some(y)) => (x.0.min(y.0), x.1.min(y.1)),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => (0, 0),
    }
}

impl LevelSpec {
    /// The levels as given, with the defaults for what is not: memory at 10 % / 5 % unless a
    /// memory size is given, swap the same unless a swap size is (`run`'s levels, and the
    /// ones `top` and `why` show).
    pub fn with_defaults(
        mem_pct: Option<LevelPair>,
        mem_size: Option<LevelPair>,
        swap_pct: Option<LevelPair>,
        swap_size: Option<LevelPair>,
        psi: Option<PsiSpec>,
    ) -> LevelSpec {
        let default = |size: Option<LevelPair>| {
            size.is_none()
                .then(|| LevelPair::parse_pct("10,5").expect("the default levels parse"))
        };
        LevelSpec {
            mem_pct: mem_pct.or_else(|| default(mem_size)),
            mem_size,
            swap_pct: swap_pct.or_else(|| default(swap_size)),
            swap_size,
            psi,
        }
    }

    /// Levels for a scope: a percentage and a size given together → the lower one counts.
    pub fn resolve(&self, mem: &MemState) -> Levels {
        let pair =
            |p: &Option<LevelPair>, total: u64| p.map(|p| (p.term.kb(total), p.kill.kb(total)));
        let (mem_term_kb, mem_kill_kb) = lower(
            pair(&self.mem_pct, mem.total_kb),
            pair(&self.mem_size, mem.total_kb),
        );
        let (swap_term_kb, swap_kill_kb) = lower(
            pair(&self.swap_pct, mem.swap_total_kb),
            pair(&self.swap_size, mem.swap_total_kb),
        );
        Levels {
            mem_term_kb,
            mem_kill_kb,
            swap_term_kb,
            swap_kill_kb,
        }
    }
}

/// What the levels say now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    None,
    Term,
    Kill,
}

impl Severity {
    /// As written in records (`none`, `term`, `kill`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Term => "term",
            Severity::Kill => "kill",
        }
    }
}

/// Why the trigger fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Available memory (and swap, if any) below the SIGKILL level.
    LowMemoryKill,
    /// Available memory (and swap, if any) below the SIGTERM level.
    LowMemoryTerm,
    /// The stall share stayed above the PSI level while memory was below twice the term level.
    Pressure,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LowMemoryKill => "low_memory_kill",
            Reason::LowMemoryTerm => "low_memory_term",
            Reason::Pressure => "pressure",
        }
    }
}

/// The longest sleep between two looks at memory, however far the levels are.
pub const MAX_POLL: Duration = Duration::from_secs(1);

/// The longest wait between looks at memory while a victim exits ([`Levels::next_kill_poll`]).
pub const MAX_KILL_POLL: Duration = Duration::from_millis(100);

/// The time the headroom above `mem_kb` available and `swap_kb` free swap lasts at 6 GiB/s
/// (RAM) and 800 MiB/s (swap), between 5 ms and `max`.
fn headroom_time(mem: &MemState, mem_kb: u64, swap_kb: u64, max: Duration) -> Duration {
    let mem_head_mib = mem.available_kb.saturating_sub(mem_kb) as f64 / 1024.0;
    let swap_head_mib = if mem.swap_total_kb == 0 {
        0.0
    } else {
        mem.swap_free_kb.saturating_sub(swap_kb) as f64 / 1024.0
    };
    let ms = mem_head_mib / 6.0 + swap_head_mib / 0.8;
    Duration::from_micros((ms * 1000.0) as u64).clamp(Duration::from_millis(5), max)
}

impl Levels {
    fn swap_low(&self, mem: &MemState, kill: bool) -> bool {
        mem.swap_total_kb == 0
            || mem.swap_free_kb
                <= if kill {
                    self.swap_kill_kb
                } else {
                    self.swap_term_kb
                }
    }

    /// Evaluates the levels. `psi_share` is the stall share over the PSI window (percent),
    /// `None` when PSI is not configured or not yet known.
    pub fn evaluate(
        &self,
        mem: &MemState,
        psi: Option<(PsiSpec, f64)>,
    ) -> (Severity, Option<Reason>) {
        let avail = mem.available_kb;
        if avail <= self.mem_kill_kb && self.swap_low(mem, true) {
            return (Severity::Kill, Some(Reason::LowMemoryKill));
        }
        if avail <= self.mem_term_kb && self.swap_low(mem, false) {
            return (Severity::Term, Some(Reason::LowMemoryTerm));
        }
        if let Some((spec, share)) = psi
            && share >= spec.pct.0
            && avail <= self.near_kb()
        {
            return (Severity::Term, Some(Reason::Pressure));
        }
        (Severity::None, None)
    }

    /// Memory counts as recovered once available memory is back above the term level (with a
    /// little hysteresis) or swap is no longer low.
    pub fn recovered(&self, mem: &MemState) -> bool {
        mem.available_kb > self.mem_term_kb + self.mem_term_kb / 8 || !self.swap_low(mem, false)
    }

    /// How long to sleep before the next look: the time the headroom lasts at a fast fill rate
    /// (6 GiB/s for RAM, 800 MiB/s for swap, as earlyoom assumes), between 5 ms and 1 s.
    pub fn next_poll(&self, mem: &MemState) -> Duration {
        self.next_poll_upto(mem, MAX_POLL)
    }

    /// [`Levels::next_poll`] with another longest sleep (`max`).
    pub fn next_poll_upto(&self, mem: &MemState, max: Duration) -> Duration {
        headroom_time(mem, self.mem_term_kb, self.swap_term_kb, max)
    }

    /// While a victim sent SIGTERM exits: how long until memory could reach the SIGKILL levels
    /// at the fill rates [`Levels::next_poll`] assumes, from 5 ms to [`MAX_KILL_POLL`]. The
    /// escalation looks at memory that often (earlyoom every 100 ms): a large victim can take
    /// seconds to exit on a slow machine (0.6–2 s for a 720 MiB apache2 worker in the Debian
    /// VM), and a look every 5 ms meanwhile is hundreds of meminfo reads at the guard's
    /// priority.
    pub fn next_kill_poll(&self, mem: &MemState) -> Duration {
        headroom_time(mem, self.mem_kill_kb, self.swap_kill_kb, MAX_KILL_POLL)
    }

    /// Warnings for levels that make no sense for this scope right now: a TERM level of 0 turns
    /// the guard off; a level already above the current figure makes it act at once.
    pub fn start_notes(&self, mem: &MemState) -> Vec<String> {
        let mut notes = Vec::new();
        if self.mem_term_kb == 0 {
            notes.push(
                "the available-memory TERM level is 0: the memory guard is off (nothing is ever killed for low memory; raise --mem-min/--mem-min-size)".to_string(),
            );
        } else if mem.swap_total_kb > 0 && self.swap_term_kb == 0 {
            notes.push(
                "the free-swap TERM level is 0: the memory guard is off while swap is free (raise --swap-min/--swap-min-size)".to_string(),
            );
        }
        if self.mem_term_kb > 0 && self.evaluate(mem, None).0 != Severity::None {
            notes.push(format!(
                "available memory ({}) is already below the TERM level ({}){}: the guard acts at once",
                human_kb(mem.available_kb),
                human_kb(self.mem_term_kb),
                if mem.swap_total_kb > 0 {
                    format!(
                        " and free swap ({}) below its level ({})",
                        human_kb(mem.swap_free_kb),
                        human_kb(self.swap_term_kb)
                    )
                } else {
                    String::new()
                }
            ));
        }
        notes
    }

    /// "Near": within twice the term level, where the ranking is kept fresh.
    pub fn near(&self, mem: &MemState) -> bool {
        mem.available_kb <= self.near_kb()
    }

    /// The near level: twice TERM.
    pub fn near_kb(&self) -> u64 {
        self.mem_term_kb.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A size replaces the default percentage of its own kind only: a swap size leaves the
    /// memory levels at 10 % / 5 %, a memory size the swap levels.
    #[test]
    fn a_size_drops_only_its_own_kinds_default() {
        let pct = LevelPair::parse_pct("10,5").ok();
        let size = LevelPair::parse_size("1G").ok();
        let s = LevelSpec::with_defaults(None, None, None, size, None);
        assert_eq!(
            (s.mem_pct, s.mem_size, s.swap_pct, s.swap_size),
            (pct, None, None, size)
        );
        let s = LevelSpec::with_defaults(None, size, None, None, None);
        assert_eq!(
            (s.mem_pct, s.mem_size, s.swap_pct, s.swap_size),
            (None, size, pct, None)
        );
        let given = LevelPair::parse_pct("20").ok();
        let s = LevelSpec::with_defaults(given, size, None, None, None);
        assert_eq!((s.mem_pct, s.swap_pct), (given, pct));
    }

    fn spec(mem: &str, swap: &str) -> LevelSpec {
        LevelSpec {
            mem_pct: Some(LevelPair::parse_pct(mem).unwrap()),
            mem_size: None,
            swap_pct: Some(LevelPair::parse_pct(swap).unwrap()),
            swap_size: None,
            psi: None,
        }
    }

    /// While a victim exits, memory is looked at as often as the headroom to the SIGKILL level
    /// requires at 6 GiB/s: every 5 ms right above it, at most every 100 ms.
    #[test]
    fn the_escalation_looks_as_often_as_the_kill_levels_headroom_requires() {
        let total = 8 * 1024 * 1024; // 8 GiB; SIGKILL level 5 %: 409.6 MiB
        let l = spec("10,5", "10,5").resolve(&MemState {
            total_kb: total,
            available_kb: total,
            swap_total_kb: 0,
            swap_free_kb: 0,
        });
        let at = |avail_mib: u64| {
            l.next_kill_poll(&MemState {
                total_kb: total,
                available_kb: avail_mib * 1024,
                swap_total_kb: 0,
                swap_free_kb: 0,
            })
        };
        assert_eq!(at(400), Duration::from_millis(5)); // below the level
        assert_eq!(at(430), Duration::from_millis(5)); // 20 MiB over: 3.4 ms, clamped up
        let mid = at(710); // 300 MiB over: 50 ms
        assert!(
            mid > Duration::from_millis(49) && mid < Duration::from_millis(51),
            "{mid:?}"
        );
        assert_eq!(at(4096), MAX_KILL_POLL);
    }

    #[test]
    fn without_swap_memory_alone_counts() {
        let m = MemState {
            total_kb: 1000,
            available_kb: 80,
            swap_total_kb: 0,
            swap_free_kb: 0,
        };
        let l = spec("10,5", "10,5").resolve(&m);
        assert_eq!((l.mem_term_kb, l.mem_kill_kb), (100, 50));
        assert_eq!(
            l.evaluate(&m, None),
            (Severity::Term, Some(Reason::LowMemoryTerm))
        );
        let m2 = MemState {
            available_kb: 40,
            ..m
        };
        assert_eq!(l.evaluate(&m2, None).0, Severity::Kill);
        let m3 = MemState {
            available_kb: 200,
            ..m
        };
        assert_eq!(l.evaluate(&m3, None).0, Severity::None);
    }

    #[test]
    fn with_swap_both_must_be_low() {
        let m = MemState {
            total_kb: 1000,
            available_kb: 40,
            swap_total_kb: 1000,
            swap_free_kb: 500,
        };
        let l = spec("10,5", "10,5").resolve(&m);
        assert_eq!(l.evaluate(&m, None).0, Severity::None);
        let m2 = MemState {
            swap_free_kb: 90,
            ..m
        };
        assert_eq!(l.evaluate(&m2, None).0, Severity::Term);
        let m3 = MemState {
            swap_free_kb: 10,
            ..m
        };
        assert_eq!(l.evaluate(&m3, None).0, Severity::Kill);
    }

    #[test]
    fn size_and_pct_lower_wins_and_psi_needs_the_soft_floor() {
        let m = MemState {
            total_kb: 1 << 20,
            available_kb: 150 << 10,
            swap_total_kb: 0,
            swap_free_kb: 0,
        };
        let mut s = spec("10,5", "10,5");
        s.mem_size = Some(LevelPair::parse_size("64M,32M").unwrap());
        let l = s.resolve(&m);
        assert_eq!(l.mem_term_kb, 64 << 10);
        let psi: PsiSpec = "some:20:2s".parse().unwrap();
        // 150 MiB available > 2 × 64 MiB: pressure alone does not act.
        assert_eq!(l.evaluate(&m, Some((psi, 50.0))).0, Severity::None);
        let m2 = MemState {
            available_kb: 100 << 10,
            ..m
        };
        assert_eq!(
            l.evaluate(&m2, Some((psi, 50.0))),
            (Severity::Term, Some(Reason::Pressure))
        );
        assert_eq!(l.evaluate(&m2, Some((psi, 10.0))).0, Severity::None);
    }

    #[test]
    fn poll_interval_adapts() {
        let l = Levels {
            mem_term_kb: 100 << 10,
            mem_kill_kb: 50 << 10,
            swap_term_kb: 0,
            swap_kill_kb: 0,
        };
        let far = MemState {
            total_kb: 24 << 20,
            available_kb: 20 << 20,
            ..Default::default()
        };
        assert_eq!(l.next_poll(&far), Duration::from_secs(1));
        let near = MemState {
            available_kb: 110 << 10,
            ..far
        };
        assert!(l.next_poll(&near) < Duration::from_millis(5) + Duration::from_micros(1));
    }
}
