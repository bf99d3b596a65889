//! `process_mrelease` off the guard's loop: one small thread, started with the daemon (while
//! memory is plentiful), reaps the memory of killed processes that have not exited on their own
//! ([`super::kill::RELEASE_AFTER`] after their SIGKILL).
//!
//! The call waits for the victim's mmap lock (`mmap_read_lock_killable` in the kernel's
//! `process_mrelease`), and a process that has not exited 200 ms after SIGKILL is typically one
//! whose lock is held: a thread stuck in reclaim while it faults at the bottom of memory, or a
//! writer queued behind such a thread, for seconds. (The kernel's own OOM reaper only tries the
//! lock, for the same reason.) On the loop, that wait would leave the guard blind to memory,
//! signals and other victims; here only this thread waits.
//!
//! The loop hands a process over ([`Reaper::hand`]: a duplicate of its pidfd, into a queue of
//! [`QUEUE`] places allocated at start) and never waits for the answer. What became of it is
//! counted in the kill's [`Tally`], which the thread updates once the call has returned: the loop
//! says memory was released only once it is known to have been. Releases run one after the other:
//! one stuck on a lock holds up the ones queued behind it (never the loop); a full queue is
//! reported to the caller, which tries again later.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// How many processes may wait for the thread: a kill unit's members not gone 200 ms after
/// their SIGKILL fall due together (a wave at a time for a stopped tree).
pub const QUEUE: usize = 64;

/// What became of the releases of one kill, updated by the reaper thread.
#[derive(Debug, Default)]
pub struct Tally {
    /// Handed to the thread.
    handed: AtomicU32,
    /// Calls that have returned (either way).
    finished: AtomicU32,
    /// Calls that succeeded: that process's memory was reaped.
    released: AtomicU32,
}

impl Tally {
    /// At least one release is known to have succeeded.
    pub fn released(&self) -> bool {
        self.released.load(Ordering::Acquire) > 0
    }

    /// Releases handed over whose call has not returned yet.
    pub fn pending(&self) -> u32 {
        let finished = self.finished.load(Ordering::Acquire);
        self.handed.load(Ordering::Acquire).saturating_sub(finished)
    }

    /// Releases handed over.
    pub fn handed(&self) -> u32 {
        self.handed.load(Ordering::Acquire)
    }
}

/// One process to release: its pidfd (a duplicate, the thread's own), its PID for the log.
#[derive(Debug)]
struct Request {
    fd: OwnedFd,
    pid: i32,
    tally: Arc<Tally>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Request>>,
    cv: Condvar,
    /// The thread has ended (only on a bug: its panic is contained, see `record::side`).
    gone: AtomicBool,
}

/// Why a process was not handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`QUEUE`] processes are waiting already: try again later.
    Full,
    /// The thread has ended: no release will come.
    Gone,
}

/// The reaper thread's handle; clones share the thread.
#[derive(Debug, Clone)]
pub struct Reaper {
    shared: Arc<Shared>,
}

/// Marks the thread gone however it ends.
struct GoneOnDrop(Arc<Shared>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Release);
    }
}

impl Reaper {
    /// Starts the thread with the real `process_mrelease`.
    pub fn start() -> std::io::Result<Reaper> {
        Reaper::start_with(|_pid, fd| super::pidfd::mrelease(fd))
    }

    /// Starts the thread with `release` in place of `process_mrelease` (tests give one that
    /// blocks).
    pub fn start_with<F>(mut release: F) -> std::io::Result<Reaper>
    where
        F: FnMut(i32, BorrowedFd<'_>) -> std::io::Result<()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(QUEUE)),
            cv: Condvar::new(),
            gone: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        // At the guard's priority, as the release was on the loop: memory given back is what
        // everyone at the bottom waits for.
        crate::record::side::spawn("oomguard-reaper", move || {
            let guard = GoneOnDrop(theirs);
            let sh = &guard.0;
            loop {
                let req = {
                    let mut q = sh.queue.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(r) = q.pop_front() {
                            break r;
                        }
                        q = sh.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                // No lock held: this is the call that may wait on the victim's mmap lock.
                let r = release(req.pid, req.fd.as_fd());
                if r.is_ok() {
                    req.tally.released.fetch_add(1, Ordering::AcqRel);
                }
                req.tally.finished.fetch_add(1, Ordering::AcqRel);
                match r {
                    Ok(()) => log::debug!("process_mrelease({}): memory reaped", req.pid),
                    // The start-up warm-up hands the daemon's own pidfd: EINVAL (not dying).
                    Err(_) if req.pid == std::process::id() as i32 => {}
                    Err(e) => log::debug!("process_mrelease({}): {e}", req.pid),
                }
            }
        })?;
        Ok(Reaper { shared })
    }

    /// Hands `fd` (a pidfd of process `pid`, sent SIGKILL) to the thread, counted in `tally`.
    /// Never waits for the release: takes the queue's lock, which the thread holds only to take
    /// a request, never during a call.
    pub fn hand(&self, fd: OwnedFd, pid: i32, tally: &Arc<Tally>) -> Result<(), Refused> {
        if self.shared.gone.load(Ordering::Acquire) {
            return Err(Refused::Gone);
        }
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= QUEUE {
            return Err(Refused::Full);
        }
        tally.handed.fetch_add(1, Ordering::AcqRel);
        q.push_back(Request {
            fd,
            pid,
            tally: Arc::clone(tally),
        });
        drop(q);
        self.shared.cv.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn some_fd() -> OwnedFd {
        rustix::pipe::pipe().unwrap().0
    }

    /// Waits up to 10 s for `f`.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        f()
    }

    /// A release that blocks (as `process_mrelease` does on a held mmap lock): handing over
    /// returns while it blocks, more can be handed over meanwhile, the tally says released only
    /// once the call has returned, and a failed call is never counted as released.
    #[test]
    fn handing_over_never_waits_for_a_blocked_release() {
        let (entered_tx, entered) = mpsc::channel::<i32>();
        let (unblock, unblock_rx) = mpsc::channel::<std::io::Result<()>>();
        let reaper = Reaper::start_with(move |pid, _fd| {
            entered_tx.send(pid).unwrap();
            unblock_rx.recv().unwrap()
        })
        .unwrap();
        let tally = Arc::new(Tally::default());
        reaper.hand(some_fd(), 101, &tally).unwrap();
        // The thread is inside the call, and the caller is not.
        assert_eq!(entered.recv_timeout(Duration::from_secs(10)), Ok(101));
        assert_eq!((tally.handed(), tally.pending()), (1, 1));
        assert!(!tally.released(), "released before the call returned");
        // More go in while the thread is stuck.
        reaper.hand(some_fd(), 102, &tally).unwrap();
        assert_eq!(tally.pending(), 2);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!tally.released());
        unblock.send(Ok(())).unwrap();
        assert!(eventually(|| tally.released()), "the release never came");
        assert_eq!(entered.recv_timeout(Duration::from_secs(10)), Ok(102));
        // The second one fails (ENOSYS, EINVAL, ESRCH): not a release.
        let other = Arc::new(Tally::default());
        reaper.hand(some_fd(), 103, &other).unwrap();
        unblock
            .send(Err(std::io::Error::from_raw_os_error(libc::ENOSYS)))
            .unwrap();
        assert!(eventually(|| tally.pending() == 0));
        assert_eq!(entered.recv_timeout(Duration::from_secs(10)), Ok(103));
        unblock
            .send(Err(std::io::Error::from_raw_os_error(libc::EINVAL)))
            .unwrap();
        assert!(eventually(|| other.pending() == 0));
        assert!(!other.released(), "a failed call counted as a release");
    }

    /// The queue holds [`QUEUE`] processes behind a stuck release; one more is refused (the
    /// caller tries again later), and nothing waits.
    #[test]
    fn a_full_queue_refuses_instead_of_waiting() {
        let (entered_tx, entered) = mpsc::channel::<i32>();
        let (unblock, unblock_rx) = mpsc::channel::<()>();
        let reaper = Reaper::start_with(move |pid, _fd| {
            entered_tx.send(pid).unwrap();
            unblock_rx.recv().unwrap();
            Ok(())
        })
        .unwrap();
        let tally = Arc::new(Tally::default());
        reaper.hand(some_fd(), 1, &tally).unwrap();
        assert_eq!(entered.recv_timeout(Duration::from_secs(10)), Ok(1));
        for pid in 2..2 + QUEUE as i32 {
            reaper.hand(some_fd(), pid, &tally).unwrap();
        }
        assert_eq!(reaper.hand(some_fd(), 999, &tally), Err(Refused::Full));
        assert_eq!(tally.handed(), 1 + QUEUE as u32);
        for _ in 0..=QUEUE {
            unblock.send(()).unwrap();
        }
        assert!(eventually(|| tally.pending() == 0));
        assert!(reaper.hand(some_fd(), 1000, &tally).is_ok());
        unblock.send(()).unwrap();
    }
}
