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
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(6);
        let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let patch: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if (major, minor) >= (5, 9) || ((major, minor) == (5, 4) && patch >= 214) {
            ScoreEra::Signed
        } else {
            ScoreEra::Clamped
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

    #[test]
    fn era_from_release() {
        assert_eq!(ScoreEra::from_release("6.18.44-fc-v657"), ScoreEra::Signed);
        assert_eq!(ScoreEra::from_release("5.9.1"), ScoreEra::Signed);
        assert_eq!(ScoreEra::from_release("5.4.214-x"), ScoreEra::Signed);
        assert_eq!(ScoreEra::from_release("5.4.100"), ScoreEra::Clamped);
        assert_eq!(ScoreEra::from_release("4.19.0"), ScoreEra::Clamped);
    }
}
