//! Breathing room for the guard's readers: a thread that opts in ([`enable`]) sleeps a moment
//! after each stretch of reading, so that at nice −20 it never holds a CPU for long.
//!
//! The guard's main thread and its read-ahead thread run at nice −20. A task that wakes up
//! (an interactive one, a 10 ms heartbeat) does not preempt them at once: its credit for having
//! slept is small next to the gap in weights, and it waits for the −20 task to sleep or use up
//! its slice. Near the levels and at a choice they read `/proc` for every process,
//! in one piece: in the VM fork storm (one emulated CPU) a rescan slice ran 5–6 ms, the choice
//! 8–9 ms, and a heartbeat woken meanwhile waited for all of it (stalls of 5–12 ms, traced with
//! `VM_TRACE=1`). Every read through [`super::read_fd`] ticks the calling thread's clock; after
//! [`Breath::every`] of reading since the thread last slept, it sleeps [`Breath::pause`], and
//! whoever woke meanwhile runs first. A thread that sleeps on its own (the main loop's poll)
//! says so with [`rested`], so that its next stretch starts then.
//!
//! Per thread (a thread-local), off unless enabled: `top`, `why` and the tests read at full
//! speed.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How a thread breathes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breath {
    /// The longest stretch of reading between sleeps.
    pub every: Duration,
    /// The sleep after a stretch.
    pub pause: Duration,
}

#[derive(Clone, Copy)]
struct State {
    breath: Breath,
    since: Instant,
    pauses: u64,
}

thread_local! {
    static STATE: Cell<Option<State>> = const { Cell::new(None) };
}

/// Makes the calling thread breathe (`None`: stop); its first stretch starts now.
pub fn enable(breath: Option<Breath>) {
    STATE.with(|s| {
        s.set(breath.map(|breath| State {
            breath,
            since: Instant::now(),
            pauses: 0,
        }))
    });
}

/// The calling thread has just slept (or waited): its next stretch starts now.
pub fn rested() {
    STATE.with(|s| {
        if let Some(mut st) = s.get() {
            st.since = Instant::now();
            s.set(Some(st));
        }
    });
}

/// How many pauses the calling thread has taken since [`enable`].
pub fn pauses() -> u64 {
    STATE.with(|s| s.get().map_or(0, |st| st.pauses))
}

/// One read about to be made: sleeps first if the stretch is over. The clock is looked at on
/// every read (an `openat`, a `read` and a `close` cost far more; looked at every fourth, a
/// stretch ran up to 1.6 ms over in the VM).
pub(crate) fn tick() {
    STATE.with(|s| {
        let Some(mut st) = s.get() else { return };
        if st.since.elapsed() >= st.breath.every {
            std::thread::sleep(st.breath.pause);
            st.since = Instant::now();
            st.pauses += 1;
            s.set(Some(st));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_proc_for(d: Duration) -> u64 {
        let t = Instant::now();
        let mut buf = Vec::new();
        while t.elapsed() < d {
            super::super::read_into(std::path::Path::new("/proc/self/stat"), &mut buf).unwrap();
        }
        pauses()
    }

    fn read_4() {
        let mut buf = Vec::new();
        for _ in 0..4 {
            super::super::read_into(std::path::Path::new("/proc/self/stat"), &mut buf).unwrap();
        }
    }

    /// A thread that breathes sleeps after each stretch of reading, and starts a new stretch
    /// when it says it rested; a thread that does not breathe never sleeps.
    #[test]
    fn a_breathing_reader_pauses_after_each_stretch() {
        std::thread::spawn(|| {
            enable(Some(Breath {
                every: Duration::from_millis(2),
                pause: Duration::from_micros(100),
            }));
            let t = Instant::now();
            let n = read_proc_for(Duration::from_millis(40));
            // 40 ms of reading in stretches of at least 2 ms: at most 20 pauses, and some.
            assert!((3..=20).contains(&n), "{n} pauses in {:?}", t.elapsed());

            // A long stretch: a read after a sleep the thread did not report pauses at once;
            // after one it reported, not.
            enable(Some(Breath {
                every: Duration::from_millis(50),
                pause: Duration::from_micros(100),
            }));
            std::thread::sleep(Duration::from_millis(60));
            read_4();
            assert_eq!(pauses(), 1, "the stretch counted from before the sleep");
            std::thread::sleep(Duration::from_millis(60));
            rested();
            read_4();
            assert_eq!(pauses(), 1, "a new stretch started at the rest");

            enable(None);
            assert_eq!(read_proc_for(Duration::from_millis(10)), 0);
        })
        .join()
        .unwrap();
        // This thread never enabled it.
        assert_eq!(read_proc_for(Duration::from_millis(5)), 0);
    }
}
