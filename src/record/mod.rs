//! Record: the event log (JSON lines, fsynced), log lines, and the [`Observer`] hook through
//! which metrics, notifications, hooks and the after-kill watch list learn what the daemon saw
//! and did.
pub mod emit;
pub mod event;
pub mod eventlog;
pub mod fleet;
pub mod follow;
pub mod hooks;
pub mod journald;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod side;
pub mod systemd;
pub mod warn;
pub mod watch;

use std::time::Duration;

use crate::decide::trigger::Levels;
use crate::sense::mem::MemState;

/// Why the daemon woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    /// The poll timeout ran out.
    Timer,
    /// A cgroup v1 usage threshold (eventfd) fired.
    Threshold,
    /// A cgroup v1 `memory.pressure_level` event fired.
    PressureLevel,
    /// A PSI trigger fired.
    Psi,
    /// Process events (fork/exec/comm) arrived.
    ProcEvent,
}

/// One wake-up of the daemon, as observers see it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    pub mem: MemState,
    pub levels: Levels,
    /// Stall shares over the configured window (percent), when known.
    pub psi_some: Option<f64>,
    pub psi_full: Option<f64>,
    /// avg10 from the pressure file, when readable.
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
    pub wake: Wake,
    /// How long the process scan of this wake-up took, if one ran.
    pub scan: Option<Duration>,
    /// Processes the scan looked at.
    pub scanned: usize,
    /// `mem.available_kb` is a floor, not the kernel's figure: far from the levels the daemon
    /// read only `sysinfo(2)` (see `sense::floor`). Such samples are taken only while every
    /// observer [`Observer::accepts_floor`] it.
    #[serde(skip)]
    pub floor: bool,
}

/// Something that wants to know what the daemon saw and did. Called on the daemon's thread:
/// implementations must return quickly (hand slow work to a thread of their own).
pub trait Observer: Send {
    /// Every wake-up.
    fn sample(&mut self, _s: &Sample) {}
    /// Whether its samples need the pressure fields (the daemon reads the pressure file on
    /// every wake-up only while some observer, a `--psi` trigger or the status report does).
    fn wants_pressure(&self) -> bool {
        false
    }
    /// Whether a sample whose `mem` is `floor` (a floor under the available figure, see
    /// [`Sample::floor`]) tells it the same as the kernel's figure would. While every observer
    /// accepts it, a wake-up far from the levels reads no meminfo. The default says no.
    fn accepts_floor(&self, _floor: &MemState) -> bool {
        false
    }
    /// Every record appended to the event log, as written.
    fn record(&mut self, _rec: &event::Record) {}
    /// A kill is about to be signalled (`rec` is the `kill` record without signals/outcome).
    /// Must not delay the kill.
    fn before_kill(&mut self, _rec: &event::Record) {}
}
