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
//! A pause only helps a task that is waiting for a CPU. At the end of a stretch the thread looks
//! at the machine's run queues first (`/proc/loadavg`'s count of runnable tasks, itself
//! included) and sleeps only if they hold more tasks than it may run on CPUs: on a machine with
//! a CPU to spare the sleep gave no one anything, made a scan in one go half as long again, and
//! cost it CPU on caches gone cold meanwhile (A/B, 5 000 processes: 28.5–29.1 ms of CPU with
//! the sleeps, 24.3–27.4 without; 10 000: 1–2 % less, the table's kernel objects no longer fit
//! the caches either way). When the count cannot be read, it sleeps as before.
//!
//! Per thread (a thread-local), off unless enabled: `top`, `why` and the tests read at full
//! speed.

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use super::Root;

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

/// Whether other tasks wait for a CPU: `/proc/loadavg` (kept open, read again at offset 0) and
/// the CPUs this thread may use.
struct Crowd {
    loadavg: OwnedFd,
    cpus: u64,
}

impl Crowd {
    fn open(root: &Root) -> Option<Crowd> {
        let loadavg = rustix::fs::open(
            root.path("proc/loadavg"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        Some(Crowd { loadavg, cpus })
    }

    /// More runnable tasks than CPUs (the reader among them), or the count unreadable.
    fn waiting(&self) -> bool {
        let mut buf = [0u8; 128];
        let Ok(n) = rustix::io::pread(&self.loadavg, &mut buf[..], 0) else {
            return true;
        };
        running(&buf[..n]).is_none_or(|r| r > self.cpus)
    }
}

/// The runnable tasks in `/proc/loadavg` ("0.20 0.18 0.12 1/80 11206": 1).
fn running(loadavg: &[u8]) -> Option<u64> {
    let field = loadavg
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
        .nth(3)?;
    let r = field.split(|&c| c == b'/').next()?;
    std::str::from_utf8(r).ok()?.parse().ok()
}

thread_local! {
    static STATE: Cell<Option<State>> = const { Cell::new(None) };
    static CROWD: RefCell<Option<Crowd>> = const { RefCell::new(None) };
}

/// Makes the calling thread breathe (`None`: stop); its first stretch starts now. It looks for
/// tasks waiting on CPUs in `root`'s `/proc/loadavg`; without it, it always sleeps.
pub fn enable(breath: Option<Breath>, root: &Root) {
    CROWD.with(|c| *c.borrow_mut() = breath.and_then(|_| Crowd::open(root)));
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

/// One read about to be made: at the end of a stretch, sleeps first if tasks wait for a CPU.
/// The clock is looked at on every read (an `openat`, a `read` and a `close` cost far more;
/// looked at every fourth, a stretch ran up to 1.6 ms over in the VM); the run queues once per
/// stretch.
pub(crate) fn tick() {
    STATE.with(|s| {
        let Some(mut st) = s.get() else { return };
        if st.since.elapsed() >= st.breath.every {
            if CROWD.with(|c| c.borrow().as_ref().is_none_or(Crowd::waiting)) {
                std::thread::sleep(st.breath.pause);
                st.pauses += 1;
            }
            st.since = Instant::now();
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

    /// A fixture root whose `/proc/loadavg` says `running` tasks are runnable.
    fn queues(running: u64) -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("proc")).unwrap();
        std::fs::write(
            d.path().join("proc/loadavg"),
            format!("3.00 2.00 1.00 {running}/400 4242\n"),
        )
        .unwrap();
        let root = Root::new(d.path());
        (d, root)
    }

    const SHORT: Breath = Breath {
        every: Duration::from_millis(2),
        pause: Duration::from_micros(100),
    };

    /// A thread that breathes sleeps after each stretch of reading while tasks wait for CPUs,
    /// and starts a new stretch when it says it rested; a thread that does not breathe never
    /// sleeps.
    #[test]
    fn a_breathing_reader_pauses_after_each_stretch() {
        std::thread::spawn(|| {
            let (_d, crowded) = queues(1_000_000);
            enable(Some(SHORT), &crowded);
            let t = Instant::now();
            let n = read_proc_for(Duration::from_millis(40));
            // 40 ms of reading in stretches of at least 2 ms: at most 20 pauses, and some.
            assert!((3..=20).contains(&n), "{n} pauses in {:?}", t.elapsed());

            // A long stretch: a read after a sleep the thread did not report pauses at once;
            // after one it reported, not.
            enable(
                Some(Breath {
                    every: Duration::from_millis(50),
                    pause: Duration::from_micros(100),
                }),
                &crowded,
            );
            std::thread::sleep(Duration::from_millis(60));
            read_4();
            assert_eq!(pauses(), 1, "the stretch counted from before the sleep");
            std::thread::sleep(Duration::from_millis(60));
            rested();
            read_4();
            assert_eq!(pauses(), 1, "a new stretch started at the rest");

            enable(None, &crowded);
            assert_eq!(read_proc_for(Duration::from_millis(10)), 0);
        })
        .join()
        .unwrap();
        // This thread never enabled it.
        assert_eq!(read_proc_for(Duration::from_millis(5)), 0);
    }

    /// The pause is for tasks waiting on a CPU: with the reader the only runnable task there is
    /// none; when the run queues fill (the same kept file, read again), there is; when they
    /// cannot be read, the reader sleeps as if they were full.
    #[test]
    fn a_reader_pauses_only_while_tasks_wait_for_a_cpu() {
        std::thread::spawn(|| {
            let (d, root) = queues(1);
            enable(Some(SHORT), &root);
            assert_eq!(
                read_proc_for(Duration::from_millis(20)),
                0,
                "alone on the CPUs"
            );

            std::fs::write(
                d.path().join("proc/loadavg"),
                "3.00 2.00 1.00 1000000/400 4242\n",
            )
            .unwrap();
            let n = read_proc_for(Duration::from_millis(20));
            assert!(n >= 2, "{n} pauses with a million tasks runnable");

            let (_e, bare) = queues(1);
            std::fs::remove_file(bare.path("proc/loadavg")).unwrap();
            enable(Some(SHORT), &bare);
            let n = read_proc_for(Duration::from_millis(20));
            assert!(n >= 2, "{n} pauses without /proc/loadavg");
            enable(None, &bare);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_runnable_count_is_the_fourth_field() {
        assert_eq!(running(b"0.20 0.18 0.12 1/80 11206\n"), Some(1));
        assert_eq!(running(b"27.17 25.27 3.00 130/2048 99\n"), Some(130));
        assert_eq!(running(b"0.20 0.18 0.12\n"), None);
        assert_eq!(running(b"0.20 0.18 0.12 x/80 1\n"), None);
    }
}
