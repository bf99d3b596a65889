//! SIGTERM → SIGKILL: after the grace time, or at once when memory falls below the kill level;
//! then the wait for the victim's exit and for the freed memory to show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::act::kill::Kill;

/// One look at the scope's memory during an escalation.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub available_kb: u64,
    /// Below the SIGKILL level: no more grace.
    pub below_kill: bool,
    /// Back above the levels: no need to wait for more memory to show.
    pub recovered: bool,
    /// How long the wait for the exit may go on before the next look: the headroom to the
    /// SIGKILL levels at the fastest fill rate ([`crate::decide::trigger::Levels::next_kill_poll`]).
    pub next_look: Duration,
}

/// How an escalation ended.
#[derive(Debug, Clone, Copy)]
pub struct Escalated {
    /// Time from the decision to the exit of the victim (and its unit); `None`: not seen.
    pub exit_ms: Option<u64>,
    /// Available memory at the end.
    pub available_after_kb: u64,
}

/// Sends SIGKILL when `first` was SIGTERM and the victim outlives `grace` or memory falls below
/// the kill level; waits for the exit (at most 10 s after SIGKILL; a stop request before
/// SIGKILL ends the wait), then up to 1 s for the freed memory to show.
pub fn escalate(
    kill: &mut Kill,
    first: Signal,
    grace: Duration,
    stop: &AtomicBool,
    avail_before: u64,
    read: &mut dyn FnMut() -> anyhow::Result<Reading>,
) -> anyhow::Result<Escalated> {
    let start = kill.decided;
    let mut sent_kill = first == Signal::KILL;
    let mut killed_at = if sent_kill {
        Some(Instant::now())
    } else {
        None
    };
    let mut exit_ms = None;
    let mut last = avail_before;
    // The first look comes soon; later ones as the headroom to the SIGKILL levels allows. The
    // exit itself ends the wait at once (pidfds), however long it is.
    let mut next_look = Duration::from_millis(5);
    loop {
        if kill.wait(next_look) {
            exit_ms = Some(start.elapsed().as_millis() as u64);
            break;
        }
        if stop.load(Ordering::Relaxed) && !sent_kill {
            break;
        }
        let r = read()?;
        last = r.available_kb;
        next_look = r.next_look;
        if !sent_kill {
            if r.below_kill || start.elapsed() >= grace {
                kill.signal_all(Signal::KILL);
                kill.release();
                sent_kill = true;
                killed_at = Some(Instant::now());
                log::info!(
                    "{} ({}) still alive after SIGTERM; sent SIGKILL ({})",
                    kill.victim.pid,
                    kill.victim.pid,
                    if r.below_kill {
                        "memory fell below the kill level"
                    } else {
                        "grace time over"
                    }
                );
            }
        } else if killed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
            log::error!(
                "process {} has not exited 10 s after SIGKILL (stuck in the kernel?)",
                kill.victim.pid
            );
            break;
        }
    }
    // Let the freed memory show up before anyone is chosen again.
    let settle = Instant::now();
    let mut prev = last;
    while settle.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
        let r = read()?;
        last = r.available_kb;
        if r.recovered || last <= prev {
            break;
        }
        prev = last;
    }
    Ok(Escalated {
        exit_ms,
        available_after_kb: last,
    })
}
