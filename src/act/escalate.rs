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
    /// Below a level: left to itself, the guard would choose now.
    pub below_term: bool,
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
    /// The victim outlived SIGKILL by [`STUCK_AFTER_KILL`] while memory stayed below a level
    /// and did not come back: the wait for it was given up (see [`escalate`]).
    pub stuck: bool,
}

/// How long after SIGKILL a victim that has not exited, while memory stays below a level and
/// does not come back, is waited for before the guard chooses again. A dying process frees its
/// memory in milliseconds, and the reaper thread releases it 200 ms after SIGKILL
/// (`act::reaper`); one that does neither is stuck (uninterruptible sleep on storage that does
/// not answer, its memory shared or its address space locked by another). The kernel's OOM
/// reaper gives up on its victim after about 1 s (`MAX_OOM_REAP_RETRIES`) too.
pub const STUCK_AFTER_KILL: Duration = Duration::from_secs(1);

/// Sends SIGKILL when `first` was SIGTERM and the victim outlives `grace` or memory falls below
/// the kill level; waits for the exit, then up to 1 s for the freed memory to show. The wait
/// for the exit ends at 10 s after SIGKILL, at a stop request before SIGKILL, and
/// [`STUCK_AFTER_KILL`] after SIGKILL when a look finds memory below a level and not higher
/// than at the look before (`stuck`: then the guard must choose again, not wait blind). A look
/// that cannot read the scope (`None`: a cgroup removed once its last process died) is no news:
/// the waits go on by the pidfds and the clock.
pub fn escalate(
    kill: &mut Kill,
    first: Signal,
    grace: Duration,
    stop: &AtomicBool,
    avail_before: u64,
    read: &mut dyn FnMut() -> Option<Reading>,
) -> Escalated {
    let start = kill.decided;
    let mut sent_kill = first == Signal::KILL;
    let mut killed_at = if sent_kill {
        Some(Instant::now())
    } else {
        None
    };
    let mut exit_ms = None;
    let mut stuck = false;
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
        let r = read();
        let (below_kill, below_term, came_back) = match r {
            Some(r) => {
                let came_back = r.available_kb > last;
                last = r.available_kb;
                next_look = r.next_look;
                (r.below_kill, r.below_term, came_back)
            }
            None => {
                next_look = Duration::from_millis(100);
                (false, false, false)
            }
        };
        if !sent_kill {
            if below_kill || start.elapsed() >= grace {
                kill.signal_all(Signal::KILL);
                kill.release();
                sent_kill = true;
                killed_at = Some(Instant::now());
                log::info!(
                    "process {} still alive after SIGTERM; sent SIGKILL ({})",
                    kill.victim.pid,
                    if below_kill {
                        "memory fell below the kill level"
                    } else {
                        "grace time over"
                    }
                );
            }
        } else if let Some(t) = killed_at {
            let since = t.elapsed();
            if since > Duration::from_secs(10) {
                log::error!(
                    "process {} has not exited 10 s after SIGKILL (stuck in the kernel?)",
                    kill.victim.pid
                );
                break;
            }
            if since >= STUCK_AFTER_KILL && below_term && !came_back {
                log::warn!(
                    "process {} has not exited {} ms after SIGKILL and memory is not coming back \
                     (stuck in the kernel?): no longer waiting for it, choosing again",
                    kill.victim.pid,
                    since.as_millis()
                );
                stuck = true;
                break;
            }
        }
    }
    // Let the freed memory show up before anyone is chosen again.
    let settle = Instant::now();
    let mut prev = last;
    while !stuck && settle.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
        let Some(r) = read() else {
            break;
        };
        last = r.available_kb;
        if r.recovered || last <= prev {
            break;
        }
        prev = last;
    }
    Escalated {
        exit_ms,
        available_after_kb: last,
        stuck,
    }
}
