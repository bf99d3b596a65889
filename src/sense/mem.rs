//! The scope's memory at one instant: what the levels are compared with.

use serde::Serialize;

/// The scope's memory at one instant, in kB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemState {
    pub total_kb: u64,
    pub available_kb: u64,
    pub swap_total_kb: u64,
    pub swap_free_kb: u64,
}

impl MemState {
    /// Total pages the kernel scores against: RAM + swap (system) or limit + swap (cgroup).
    pub fn totalpages(&self, page_kb: u64) -> u64 {
        (self.total_kb + self.swap_total_kb) / page_kb.max(1)
    }
}
