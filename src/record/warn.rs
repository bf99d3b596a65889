//! `[warn]`: a warning level below the kill levels (default: 85% of the scope's memory in
//! use). Crossing it logs, writes a `warn` record (`state: "high"`) and so notifies; the
//! warning clears (`state: "cleared"`) only once use falls below the clear level, so it does
//! not flap. Never kills.
//!
//! Wire format of a `warn` record: `state` (`high` or `cleared`), `used_pct` (one decimal),
//! `level_pct`, `clear_pct`, `available_kb`, `total_kb`, besides the common fields.

use super::emit::Emitter;
use super::event::{self, Event};
use super::{Observer, Sample};
use crate::config::fleet::WarnSettings;
use crate::sense::mem::MemState;
use crate::values::Tenths;

/// The hysteresis state machine, apart from I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct WarnState {
    level: f64,
    clear: f64,
    high: bool,
}

/// A change of the warning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised,
    Cleared,
}

/// Percent of the scope's memory in use.
pub fn used_pct(m: &MemState) -> Option<f64> {
    (m.total_kb > 0)
        .then(|| 100.0 * m.total_kb.saturating_sub(m.available_kb) as f64 / m.total_kb as f64)
}

impl WarnState {
    pub fn new(level: f64, clear: f64) -> WarnState {
        WarnState {
            level,
            clear: clear.min(level),
            high: false,
        }
    }

    pub fn is_high(&self) -> bool {
        self.high
    }

    /// True when `floor_used` (the use a floor under the available memory gives, at least the
    /// real use) proves [`WarnState::step`] would change nothing: the warning is not raised and
    /// even that use is below the level. A raised warning needs the real figure to clear.
    pub fn unmoved_by_floor(&self, floor_used: f64) -> bool {
        !self.high && floor_used < self.level
    }

    pub fn step(&mut self, used: f64) -> Option<Change> {
        if !self.high && used >= self.level {
            self.high = true;
            Some(Change::Raised)
        } else if self.high && used < self.clear {
            self.high = false;
            Some(Change::Cleared)
        } else {
            None
        }
    }
}

/// The warning observer.
#[derive(Debug)]
pub struct Warn {
    state: WarnState,
    emit: Emitter,
}

impl Warn {
    /// `None` when the warning is switched off.
    pub fn new(settings: &WarnSettings, emit: Emitter) -> Option<Warn> {
        let level = settings.level_pct?;
        Some(Warn {
            state: WarnState::new(level, settings.clear_pct),
            emit,
        })
    }
}

impl Warn {
    /// Starts in the raised state (a reload while memory use is high must not warn again).
    pub fn with_high(mut self, high: bool) -> Warn {
        self.state.high = high;
        self
    }

    pub fn is_high(&self) -> bool {
        self.state.is_high()
    }
}

impl Observer for Warn {
    /// While the warning is not raised and even the floor's use is below the level: the kernel's
    /// figure (at least the floor) would not raise it either.
    fn accepts_floor(&self, floor: &MemState) -> bool {
        used_pct(floor).is_some_and(|u| self.state.unmoved_by_floor(u))
    }

    fn sample(&mut self, s: &Sample) {
        let Some(used) = used_pct(&s.mem) else {
            return;
        };
        let Some(change) = self.state.step(used) else {
            return;
        };
        // Its code was run by the warm-up (`Observer::warm_up`): in the VM fork storm (one
        // emulated CPU) its first run took 3.5–4 ms of CPU in one stretch at −20, and on a host
        // it read 16 KiB of the binary from storage, as memory ran short. Queued: the loop
        // does not wait for the write (the next kill does, as for every record).
        let (level, msg, event) = self.announce(change, used, &s.mem);
        log::log!(level, "{msg}");
        self.emit.emit_queued(event);
    }

    fn warm_up(&mut self, mem: &MemState) {
        // Both changes, each with a whole figure and one with a decimal (`Tenths` writes them
        // with format strings of their own).
        for change in [Change::Raised, Change::Cleared] {
            for used in [85.0, 85.5] {
                let (level, msg, event) = self.announce(change, used, mem);
                // As `log::log!` in `sample` makes it (its target is copied).
                super::log::warm(
                    &log::Record::builder()
                        .level(level)
                        .target(module_path!())
                        .module_path_static(Some(module_path!()))
                        .file_static(Some(file!()))
                        .args(format_args!("{msg}"))
                        .build(),
                );
                self.emit.warm_up(event);
            }
        }
    }
}

impl Warn {
    /// The log line and the record of a change of the warning state.
    fn announce(&self, change: Change, used: f64, mem: &MemState) -> (log::Level, String, Event) {
        let (level, msg) = match change {
            Change::Raised => (
                log::Level::Warn,
                format!(
                    "memory use {}% reached the warning level {}% ({} kB available)",
                    Tenths(used),
                    Tenths(self.state.level),
                    mem.available_kb
                ),
            ),
            Change::Cleared => (
                log::Level::Info,
                format!(
                    "memory use {}% is below {}% again; warning cleared",
                    Tenths(used),
                    Tenths(self.state.clear)
                ),
            ),
        };
        let rec = event::Warn {
            state: match change {
                Change::Raised => "high",
                Change::Cleared => "cleared",
            }
            .to_string(),
            used_pct: crate::values::round_to(used, 10.0),
            level_pct: self.state.level,
            clear_pct: self.state.clear,
            available_kb: mem.available_kb,
            total_kb: mem.total_kb,
            extra: Default::default(),
        };
        (level, msg, Event::Warn(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_does_not_flap() {
        let mut w = WarnState::new(85.0, 80.0);
        let seq = [50.0, 85.0, 86.0, 84.0, 81.0, 86.0, 79.9, 82.0, 90.0];
        let got: Vec<_> = seq.iter().map(|u| w.step(*u)).collect();
        use Change::*;
        assert_eq!(
            got,
            [
                None,
                Some(Raised),
                None,
                None,
                None,
                None,
                Some(Cleared),
                None,
                Some(Raised)
            ]
        );
    }

    #[test]
    fn a_floor_settles_only_an_unraised_warning_below_its_level() {
        let mut w = WarnState::new(85.0, 80.0);
        assert!(w.unmoved_by_floor(84.9));
        assert!(
            !w.unmoved_by_floor(85.0),
            "the floor might be too low: read the real figure"
        );
        w.step(90.0);
        assert!(!w.unmoved_by_floor(10.0), "clearing needs the real figure");
    }

    #[test]
    fn used_share_of_the_scope() {
        let m = MemState {
            total_kb: 1000,
            available_kb: 150,
            swap_total_kb: 0,
            swap_free_kb: 0,
        };
        assert_eq!(used_pct(&m), Some(85.0));
        assert_eq!(used_pct(&MemState { total_kb: 0, ..m }), None);
    }
}
