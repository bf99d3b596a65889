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

/// Formats numbers of every magnitude a kill's log lines and record can hold, as they are
/// formatted: sizes (`values::HumanKb`, in integers) and JSON floats (serde_json's Ryū, for the
/// pressure figures, percentages). Ryū reads tables indexed by the value's exponent, and those
/// tables span pages of `.rodata`: a warm-up that formats only zeros (the warm-up's own
/// figures) leaves out the page a real figure (`41.7`) needs. (Sizes were formatted through
/// `{:.1}` before: perf found the first real kill faulting in `float_to_decimal_common_exact`'s
/// tables.) Integers too (below). Allocates a few hundred bytes.
pub fn warm_number_formatting() {
    use std::fmt::Write;
    let mut text = String::with_capacity(64);
    let mut json: Vec<u8> = Vec::with_capacity(64);
    // 0.001 to 1e6: pressure shares and levels (percent), latencies (ms).
    let mut scale = 0.001;
    while scale < 1e7 {
        for m in [1.0, 2.5, 7.3] {
            json.clear();
            let _ = serde_json::to_writer(&mut json, &(m * scale));
            std::hint::black_box(&json);
        }
        scale *= 10.0;
    }
    let mut kb: u64 = 1000;
    while kb < u64::MAX / 1024 {
        text.clear();
        let _ = write!(text, "{}", crate::values::HumanKb(kb + 555));
        std::hint::black_box(&text);
        kb *= 1024;
    }
    // Integers, in JSON (serde_json's itoa) and in text (core::fmt): both look their digits up
    // two at a time in a 200-byte table, which can straddle two pages of `.rodata`
    // (`itoa::DECIMAL_PAIRS` does in the shipped binary); a warm-up whose figures hold only some
    // of the pairs leaves a page out. (A CI run found the first warning reading 4 KiB on the
    // guard loop: perf put the fault in serde_json's `Value::serialize`, at the pair lookup for
    // a real `available_kb`.) 10nn ends in the pair nn: the hundred numbers take every pair.
    // Written as a record's numbers are (through a `Value`) and as a log line's: the daemon
    // runs no other code for it, so a settled daemon keeps no more code resident (`link_order`).
    for n in 1000u64..1100 {
        json.clear();
        let _ = serde_json::to_writer(&mut json, &serde_json::Value::from(n));
        text.clear();
        let _ = write!(text, "{n}");
        std::hint::black_box((&json, &text));
    }
}

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
    /// The scan was a bounded rescan near the levels (the processes listed again, only the
    /// rows that could overtake the best one re-read: `decide::victim::Ranker::refresh_near`);
    /// `false` for a full one or a slice of it.
    pub bounded: bool,
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
    /// Every look at memory while a kill is under way (the SIGTERM grace, the wait for the
    /// exit: up to a minute with no wake-up): what must go on meanwhile, systemd's watchdog.
    fn alive(&mut self) {}
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
    /// A kill was just signalled (`rec` is the `kill` record without signals/outcome; the
    /// victim may still be alive, in its SIGTERM grace time). Called after the signal so that
    /// nothing an observer does (a pre-kill hook's thread and process) comes between the choice
    /// and the signal; must not delay what follows either (the escalation, the reaping). `warm_up` is true when the daemon's warm-up calls it (with a
    /// record of its own): run the code that comes before acting, so that its pages are
    /// resident and locked for the first real kill, and act on nothing.
    fn kill_signalled(&mut self, _rec: &event::Record, _warm_up: bool) {}
    /// The daemon's warm-up (at start and when start-up has settled, memory locked on fault):
    /// run the code of what the observer does on its own as memory runs short (a warning), so
    /// that its pages are resident and locked by then, and write or send nothing. `mem` is the
    /// scope's memory now.
    fn warm_up(&mut self, _mem: &MemState) {}
}
