//! Pressure stall information: `/proc/pressure/memory` or a cgroup's `memory.pressure`.
//! The guard uses the cumulative `total` counters (µs), not `avg10`, which lags by seconds;
//! [`PsiWindow`] turns samples of them into a stall share over a window. Triggers
//! ([`register_trigger`]) make the kernel wake the daemon through poll(2).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::parse_u64;
use crate::values::PsiKind;

/// One reading of a pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some_avg10: f64,
    pub full_avg10: f64,
    /// Cumulative stall time in µs.
    pub some_total_us: u64,
    pub full_total_us: Option<u64>,
}

/// An `avgN=` value: the kernel prints `%lu.%02lu`; parsed without the float parser (this
/// runs on every wake-up). Anything else goes through `str::parse`.
fn parse_avg(v: &[u8]) -> f64 {
    if let Some((int, frac)) = v.split_at_checked(v.len().saturating_sub(3))
        && frac.len() == 3
        && frac[0] == b'.'
        && frac[1..].iter().all(u8::is_ascii_digit)
        && !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && let Some(i) = parse_u64(int)
    {
        return i as f64 + f64::from((frac[1] - b'0') * 10 + (frac[2] - b'0')) / 100.0;
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

impl Pressure {
    pub fn parse(text: &[u8]) -> Option<Pressure> {
        let mut p = Pressure::default();
        let mut seen = false;
        for line in text.split(|&b| b == b'\n') {
            let (is_full, rest) = if let Some(r) = line.strip_prefix(b"some ") {
                (false, r)
            } else if let Some(r) = line.strip_prefix(b"full ") {
                (true, r)
            } else {
                continue;
            };
            let mut avg10 = 0.0;
            let mut total = None;
            for field in rest.split(|&b| b == b' ') {
                if let Some(v) = field.strip_prefix(b"avg10=") {
                    avg10 = parse_avg(v);
                } else if let Some(v) = field.strip_prefix(b"total=") {
                    total = parse_u64(v);
                }
            }
            let total = total?;
            if is_full {
                p.full_avg10 = avg10;
                p.full_total_us = Some(total);
            } else {
                p.some_avg10 = avg10;
                p.some_total_us = total;
                seen = true;
            }
        }
        seen.then_some(p)
    }

    pub fn total_us(&self, kind: PsiKind) -> u64 {
        match kind {
            PsiKind::Some => self.some_total_us,
            PsiKind::Full => self.full_total_us.unwrap_or(0),
        }
    }
}

/// The fewest samples a [`PsiWindow`] keeps per window (a sample closer than a window's
/// `SPACING`th to the one before replaces the newest); its ring holds twice as many.
const SPACING: u32 = 128;

/// A ring of `(time, total_us)` samples covering a window; the share is Δstall / Δtime.
#[derive(Debug)]
pub struct PsiWindow {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl PsiWindow {
    pub fn new(window: Duration) -> PsiWindow {
        PsiWindow {
            window,
            samples: VecDeque::with_capacity(2 * SPACING as usize),
        }
    }

    /// Adds a sample and returns the stall share in percent over the covered span, once the
    /// samples span at least the whole window (before that: `None`).
    ///
    /// A newest sample less than a window's [`SPACING`]th (2 s / 128 = 15.6 ms) after the one
    /// before it is replaced by the next: the ring keeps about `SPACING` samples per window
    /// however often the daemon wakes (near the levels, every 5 ms at the shortest, and at
    /// once after a rescan that stopped for a look). Before, every sample was kept, and a full ring dropped its
    /// oldest: with more than 256 samples in a window (a 2 s window sampled more often than
    /// every 7.8 ms), the oldest kept sample was younger than the window, and the share stayed
    /// `None`, the `--psi` level blind, for as long as the wake-ups came that fast.
    pub fn push(&mut self, now: Instant, total_us: u64) -> Option<f64> {
        // Keep one sample at or before the window start, drop older ones.
        while self.samples.len() >= 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        // The newest sample stays only if it lies a spacing past the one before it; else the
        // new one takes its place. Every other gap is then at least a spacing wide: at most
        // `SPACING` + 3 samples reach back a window (the one at or before its start, the
        // spaced ones, the newest), well inside the ring. Should it ever fill, the newest is
        // replaced: the front, a window back, is what the share needs.
        let n = self.samples.len();
        let crowded = n >= 2
            && self.samples[n - 1].0.duration_since(self.samples[n - 2].0) < self.window / SPACING;
        if crowded || n >= 2 * SPACING as usize {
            self.samples[n - 1] = (now, total_us);
        } else {
            self.samples.push_back((now, total_us));
        }
        self.peek(now, total_us)
    }

    /// The share [`PsiWindow::push`] would return for this sample, without keeping it: from
    /// the oldest sample kept, once that lies a whole window back. For a look between samples
    /// (the daemon's rescan near the levels) that must not crowd the window's ring.
    pub fn peek(&self, now: Instant, total_us: u64) -> Option<f64> {
        let (t0, v0) = *self.samples.front()?;
        let span = now.checked_duration_since(t0)?;
        if span < self.window || span.is_zero() {
            return None;
        }
        let stalled = total_us.saturating_sub(v0) as f64;
        // In seconds, not `as_micros() as f64`: that converts a u128 in a compiler-rt routine
        // (`__floattidf`) that link/hot-symbols.txt cannot place, 64 KiB more resident code.
        Some((stalled / (span.as_secs_f64() * 1e6) * 100.0).min(100.0))
    }
}

/// How a trigger registration ended.
#[derive(Debug)]
pub enum Trigger {
    /// Registered: poll the fd for POLLPRI.
    Armed { fd: OwnedFd, window: Duration },
    /// The kernel refused; the message says why and what was tried.
    Refused(String),
}

/// Registers a PSI trigger `"<kind> <stall_us> <window_us>"` on `path`. Tries the wanted window
/// first; if the kernel refuses it (unprivileged writers need multiples of 2 s), retries with the
/// next multiple of 2 s and says so in `note`.
pub fn register_trigger(
    path: &Path,
    kind: PsiKind,
    share_pct: f64,
    window: Duration,
) -> (Trigger, Option<String>) {
    let try_one = |w: Duration| -> std::io::Result<OwnedFd> {
        let mut f = File::options().read(true).write(true).open(path)?;
        let w_us = w.as_micros() as u64;
        let stall = ((w_us as f64 * share_pct / 100.0) as u64).clamp(1, w_us);
        // The kernel overwrites the last byte written with NUL: end with one ourselves.
        let s = format!("{} {} {}\0", kind.as_str(), stall, w_us);
        f.write_all(s.as_bytes())?;
        Ok(OwnedFd::from(f))
    };
    match try_one(window) {
        Ok(fd) => (Trigger::Armed { fd, window }, None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let secs = window.as_secs_f64();
            let w2 = Duration::from_secs((((secs / 2.0).ceil() as u64).max(1) * 2).min(10));
            match try_one(w2) {
                Ok(fd) => (
                    Trigger::Armed { fd, window: w2 },
                    Some(format!(
                        "PSI trigger on {}: the kernel refused a {} ms window (without CAP_SYS_RESOURCE windows must be multiples of 2 s); using {} s",
                        path.display(),
                        window.as_millis(),
                        w2.as_secs()
                    )),
                ),
                Err(e2) => (
                    Trigger::Refused(format!(
                        "{}: {e2} (also refused {} ms: {e})",
                        path.display(),
                        window.as_millis()
                    )),
                    None,
                ),
            }
        }
        Err(e) => (Trigger::Refused(format!("{}: {e}", path.display())), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_parse_without_the_float_parser_and_odd_ones_still_parse() {
        for (text, want) in [
            ("0.00", 0.0),
            ("1.05", 1.05),
            ("100.00", 100.0),
            ("12.5", 12.5),
            ("7", 7.0),
            ("x", 0.0),
        ] {
            let got = parse_avg(text.as_bytes());
            assert!((got - want).abs() < 1e-9, "{text}: {got}");
        }
    }

    #[test]
    fn parses_some_and_full() {
        let p = Pressure::parse(b"some avg10=1.50 avg60=0.00 avg300=0.00 total=12345\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=678\n").unwrap();
        assert_eq!(p.some_total_us, 12345);
        assert_eq!(p.full_total_us, Some(678));
        assert!((p.some_avg10 - 1.5).abs() < 1e-9);
        assert!(Pressure::parse(b"nonsense").is_none());
    }

    #[test]
    fn window_share_from_total_deltas() {
        let t0 = Instant::now();
        let mut w = PsiWindow::new(Duration::from_secs(1));
        assert_eq!(w.push(t0, 0), None);
        assert_eq!(w.push(t0 + Duration::from_millis(500), 100_000), None);
        // 1 s later, 300 ms stalled: 30 %.
        let s = w.push(t0 + Duration::from_secs(1), 300_000).unwrap();
        assert!((s - 30.0).abs() < 1e-6, "{s}");
        // The oldest sample slides out: from 0.5 s to 1.6 s, 500 ms stalled of 1.1 s.
        let s = w.push(t0 + Duration::from_millis(1600), 600_000).unwrap();
        assert!((s - 500.0 / 1100.0 * 100.0).abs() < 1e-6, "{s}");
    }

    /// Sampled far more often than the ring holds per window (every 5 ms for a 2 s window,
    /// every 1 ms for a 10 s one), or just too often for it, the window still reaches back a
    /// whole window: the share is known from one window on, and right.
    #[test]
    fn a_window_sampled_fast_still_spans_the_whole_window() {
        for (window, every) in [
            (Duration::from_secs(2), Duration::from_millis(5)),
            (Duration::from_secs(10), Duration::from_millis(1)),
            // Just over a 256th of the window apart: a rule that kept every other sample
            // spaced let 257 of them into a window, one more than the ring.
            (Duration::from_secs(2), Duration::from_micros(7_820)),
            (Duration::from_secs(10), Duration::from_micros(39_100)),
        ] {
            let t0 = Instant::now();
            let mut w = PsiWindow::new(window);
            let steps = (3 * window.as_micros() / every.as_micros()) as u32;
            let mut last = None;
            for i in 0..=steps {
                let at = every * i;
                // Stalled a quarter of the time, all along.
                let share = w.push(t0 + at, at.as_micros() as u64 / 4);
                if at >= window + window / 64 {
                    assert!(
                        share.is_some(),
                        "no share at {at:?} for a {window:?} window"
                    );
                }
                last = share;
                assert!(w.samples.len() <= 2 * SPACING as usize);
            }
            let s = last.unwrap();
            assert!((s - 25.0).abs() < 1e-6, "{s} % for {window:?}");
            let (t_front, _) = w.samples[0];
            let span = (t0 + every * steps).duration_since(t_front);
            assert!(
                span >= window && span <= window + window / 64,
                "{span:?} spanned for a {window:?} window"
            );
        }
    }

    /// A peek gives the share a push would, and keeps nothing: the ring is as it was.
    #[test]
    fn a_peek_is_a_push_that_keeps_nothing() {
        let t0 = Instant::now();
        let mut w = PsiWindow::new(Duration::from_secs(1));
        assert_eq!(w.peek(t0, 0), None, "no sample yet");
        w.push(t0, 0);
        assert_eq!(w.peek(t0 + Duration::from_millis(500), 100_000), None);
        let at = t0 + Duration::from_millis(1200);
        let s = w.peek(at, 600_000).unwrap();
        assert!((s - 50.0).abs() < 1e-6, "{s}");
        // Many peeks, then a push: the ring still starts at the first sample.
        for i in 0..1000 {
            w.peek(t0 + Duration::from_millis(1200 + i), 600_000);
        }
        let pushed = w.push(at, 600_000).unwrap();
        assert!(
            (pushed - s).abs() < 1e-9,
            "{pushed} after peeks, {s} peeked"
        );
        assert_eq!(w.samples.len(), 2);
    }
}
