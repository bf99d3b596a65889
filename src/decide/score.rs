//! The kernel's OOM badness, computed from /proc exactly as `oom_badness()` does it
//! (`docs/kernel-oom-spec.md` §1.3–1.4), and the `/proc/PID/oom_score` formula of each era.

/// The inputs of one process's badness, in pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Terms {
    /// anon + file + shmem resident pages (`get_mm_rss`).
    pub rss_pages: u64,
    /// Swap entries (`MM_SWAPENTS`).
    pub swap_pages: u64,
    /// Page-table pages (`mm_pgtables_bytes / PAGE_SIZE`).
    pub pgtables_pages: u64,
}

impl Terms {
    /// The terms from `/proc/PID/stat` (rss: the approximate `get_mm_rss` counter the OOM killer
    /// itself reads) and `/proc/PID/status` (`VmSwap`, `VmPTE` [+ `VmPMD` on 4.4–4.14]).
    pub fn from_proc(
        stat: &crate::sense::procs::Stat,
        status: &crate::sense::procs::Status,
        page_kb: u64,
    ) -> Terms {
        let page_kb = page_kb.max(1);
        Terms {
            rss_pages: stat.rss_pages,
            swap_pages: status.swap_kb / page_kb,
            pgtables_pages: (status.pte_kb + status.pmd_kb) / page_kb,
        }
    }

    pub fn points(&self) -> i64 {
        let sum = self
            .rss_pages
            .saturating_add(self.swap_pages)
            .saturating_add(self.pgtables_pages);
        i64::try_from(sum).unwrap_or(i64::MAX)
    }
}

/// `adj × (totalpages / 1000)`, integer division first, as the kernel does.
pub fn adj_pages(adj: i64, totalpages: u64) -> i64 {
    adj * (totalpages / 1000) as i64
}

/// Badness (5.9+, signed): points + adj scaled. `totalpages` is RAM + swap for the system, the
/// limit (plus allowed swap) for a memory cgroup.
pub fn badness(terms: &Terms, adj: i64, totalpages: u64) -> i64 {
    terms.points() + adj_pages(adj, totalpages)
}

/// Badness with the root bonus of kernels before 4.17 (`docs/kernel-oom-spec.md` §1.3): a
/// process with CAP_SYS_ADMIN in its effective set (`sys_admin`) was discounted 3 %.
pub fn badness_on(
    terms: &Terms,
    adj: i64,
    totalpages: u64,
    bonus: RootBonus,
    sys_admin: bool,
) -> i64 {
    match bonus {
        RootBonus::OfPoints if sys_admin => {
            let points = terms.points();
            points - points * 3 / 100 + adj_pages(adj, totalpages)
        }
        RootBonus::OfTotal if sys_admin => terms.points() + adj_pages(adj - 30, totalpages),
        _ => badness(terms, adj, totalpages),
    }
}

/// The 3 % that kernels before 4.17 took off the badness of a process with CAP_SYS_ADMIN in
/// its effective set ("Root processes get 3% bonus, just like `__vm_enough_memory()`").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootBonus {
    /// 4.17 and later: none (d46078b28889 "mm, oom: remove 3% bonus for CAP_SYS_ADMIN
    /// processes").
    None,
    /// 3.14 to 4.16, and the 3.10.99 and 3.13.10 stable releases (778c14affaf9 "mm, oom:
    /// base root bonus on current usage"): `points -= points * 3 / 100`.
    OfPoints,
    /// 3.5 to 3.13: `adj -= 30` before `adj *= totalpages / 1000`, 3 % of totalpages.
    OfTotal,
}

impl RootBonus {
    /// The bonus of a kernel release string such as `4.15.0-213-generic`.
    pub fn from_release(release: &str) -> RootBonus {
        let (major, minor, patch) = version(release);
        match (major, minor) {
            v if v >= (4, 17) => RootBonus::None,
            v if v >= (3, 14) => RootBonus::OfPoints,
            (3, 10) if patch >= 99 => RootBonus::OfPoints,
            (3, 13) if patch >= 10 => RootBonus::OfPoints,
            _ => RootBonus::OfTotal,
        }
    }

    /// The line `why` shows for it, for a process with CAP_SYS_ADMIN.
    pub fn describe(self) -> Option<&'static str> {
        match self {
            RootBonus::None => None,
            RootBonus::OfPoints => Some("points x 3 / 100, CAP_SYS_ADMIN on a kernel before 4.17"),
            RootBonus::OfTotal => {
                Some("30 x (totalpages / 1000), CAP_SYS_ADMIN on a kernel before 3.14")
            }
        }
    }
}

/// (major, minor, patch) of a release string; a part that is missing is 0 (a major: 6).
fn version(release: &str) -> (u32, u32, u32) {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let patch: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor, patch)
}

/// Which formula `/proc/PID/oom_score` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreEra {
    /// 5.9 and later (and 5.4.y stable backports): `(1000 + badness*1000/totalpages) * 2/3`.
    Signed,
    /// 3.5 – 5.8: `max(badness, 1) * 1000 / totalpages`.
    Clamped,
}

impl ScoreEra {
    /// The era from a kernel release string such as `6.18.44-fc` or `5.4.214-1`.
    pub fn from_release(release: &str) -> ScoreEra {
        let (major, minor, patch) = version(release);
        if (major, minor) >= (5, 9) || ((major, minor) == (5, 4) && patch >= 214) {
            ScoreEra::Signed
        } else {
            ScoreEra::Clamped
        }
    }
}

impl ScoreEra {
    /// The era that one process's own `/proc/PID/oom_score` (`kernel`) shows, from its
    /// `badness` against the machine's `totalpages`: the formula whose score lies nearest,
    /// when the other lies at least 50 further off (0 against about 666 for a small process at
    /// oom_score_adj 0). None when that cannot tell (an adj near -1000 scores 0 in both). A
    /// distribution's kernel version need not say which it has (a stable release can carry
    /// the newer formula, as 5.4.214 does, under a version such as `5.4.0-N`).
    pub fn from_sample(badness: i64, totalpages: u64, kernel: i64) -> Option<ScoreEra> {
        let off = |era| (oom_score(Some(badness), totalpages, era) - kernel).abs();
        let (signed, clamped) = (off(ScoreEra::Signed), off(ScoreEra::Clamped));
        if signed + 50 <= clamped {
            Some(ScoreEra::Signed)
        } else if clamped + 50 <= signed {
            Some(ScoreEra::Clamped)
        } else {
            None
        }
    }
}

/// What `/proc/PID/oom_score` shows for a process with this badness (never-killable: 0).
pub fn oom_score(badness: Option<i64>, totalpages: u64, era: ScoreEra) -> i64 {
    let Some(b) = badness else { return 0 };
    let total = totalpages.max(1) as i64;
    match era {
        ScoreEra::Signed => (1000 + b * 1000 / total) * 2 / 3,
        ScoreEra::Clamped => b.max(1) * 1000 / total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_division_comes_first() {
        // totalpages 6_291_455: unit 6291, not 6291.455.
        assert_eq!(adj_pages(1, 6_291_455), 6291);
        assert_eq!(adj_pages(-1000, 6_291_455), -6_291_000);
    }

    #[test]
    fn points_saturate_on_values_no_kernel_has() {
        let t = Terms {
            rss_pages: u64::MAX,
            swap_pages: 5,
            pgtables_pages: 1,
        };
        assert_eq!(t.points(), i64::MAX);
    }

    #[test]
    fn tiny_process_shows_666_on_new_kernels() {
        let t = Terms {
            rss_pages: 100,
            swap_pages: 0,
            pgtables_pages: 2,
        };
        let total = 6_000_000;
        assert_eq!(
            oom_score(Some(badness(&t, 0, total)), total, ScoreEra::Signed),
            666
        );
        assert_eq!(oom_score(None, total, ScoreEra::Signed), 0);
        // Half the machine with adj 0: (1000 + 500) * 2/3 = 1000.
        let half = Terms {
            rss_pages: 3_000_000,
            ..Default::default()
        };
        assert_eq!(
            oom_score(Some(badness(&half, 0, total)), total, ScoreEra::Signed),
            1000
        );
        // adj -1000 on a small process: (1000 - 999) * 2 / 3 = 0.
        assert_eq!(
            oom_score(Some(badness(&t, -1000, total)), total, ScoreEra::Signed),
            0
        );
        assert_eq!(oom_score(Some(-5), total, ScoreEra::Clamped), 0);
        assert_eq!(oom_score(Some(3_000_000), total, ScoreEra::Clamped), 500);
    }

    /// The kernel's own arithmetic, as 4.15's `oom_badness()` and 3.10.17's do it.
    #[test]
    fn the_root_bonus_of_kernels_before_4_17() {
        let t = Terms {
            rss_pages: 10_000,
            swap_pages: 0,
            pgtables_pages: 37,
        };
        let total = 2_000_000;
        // 10037 - 10037 * 3 / 100 (301) + 100 * 2000.
        assert_eq!(
            badness_on(&t, 100, total, RootBonus::OfPoints, true),
            10037 - 301 + 200_000
        );
        // (100 - 30) * 2000.
        assert_eq!(
            badness_on(&t, 100, total, RootBonus::OfTotal, true),
            10037 + 140_000
        );
        for bonus in [RootBonus::None, RootBonus::OfPoints, RootBonus::OfTotal] {
            assert_eq!(
                badness_on(&t, 100, total, bonus, false),
                badness(&t, 100, total)
            );
        }
        assert_eq!(
            badness_on(&t, 100, total, RootBonus::None, true),
            badness(&t, 100, total)
        );
    }

    #[test]
    fn root_bonus_from_release() {
        for (release, bonus) in [
            ("6.18.44-fc", RootBonus::None),
            ("4.17.0", RootBonus::None),
            ("4.16.18", RootBonus::OfPoints),
            ("4.15.0-213-generic", RootBonus::OfPoints),
            ("3.14.65", RootBonus::OfPoints),
            ("3.13.10", RootBonus::OfPoints),
            ("3.13.9", RootBonus::OfTotal),
            ("3.10.99", RootBonus::OfPoints),
            ("3.10.17", RootBonus::OfTotal),
            ("3.5.0", RootBonus::OfTotal),
        ] {
            assert_eq!(RootBonus::from_release(release), bonus, "{release}");
        }
    }

    #[test]
    fn era_from_a_sample() {
        let total = 6_000_000;
        // A small process at adj 0: 666 on 5.9 and later, 0 before.
        assert_eq!(
            ScoreEra::from_sample(3_000, total, 667),
            Some(ScoreEra::Signed)
        );
        assert_eq!(
            ScoreEra::from_sample(3_000, total, 0),
            Some(ScoreEra::Clamped)
        );
        // A counter that moved a little between the reads.
        assert_eq!(
            ScoreEra::from_sample(3_000, total, 668),
            Some(ScoreEra::Signed)
        );
        // adj -1000: 0 in both.
        assert_eq!(ScoreEra::from_sample(3_000 - 6_000_000, total, 0), None);
    }

    #[test]
    fn era_from_release() {
        assert_eq!(ScoreEra::from_release("6.18.44-fc-v657"), ScoreEra::Signed);
        assert_eq!(ScoreEra::from_release("5.9.1"), ScoreEra::Signed);
        assert_eq!(ScoreEra::from_release("5.4.214-x"), ScoreEra::Signed);
        assert_eq!(ScoreEra::from_release("5.4.100"), ScoreEra::Clamped);
        assert_eq!(ScoreEra::from_release("4.19.0"), ScoreEra::Clamped);
    }
}
