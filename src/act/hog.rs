//! The fire drill's memory hog: a forked child that joins a scratch cgroup, maps anonymous
//! memory and touches every page, up to a bound, at a rate or as fast as it can, then holds it
//! until it is killed. It is not a command of the shipped binary: the child runs only system
//! calls (open, write, prctl, getppid, mmap, clock_gettime, nanosleep, _exit) and allocates
//! nothing, so forking from a multi-threaded drill is safe. It dies with the thread that forked
//! it (`PR_SET_PDEATHSIG`): a drill killed outright leaves no hog behind.
//!
//! [`fill`] is the allocation loop on its own; the tests' `oomguard-hog` helper binary (feature
//! `test-support`) runs it in threads.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// Bytes mapped and touched per step.
const CHUNK: usize = 1 << 20;

/// Maps and touches `max` bytes of anonymous memory, `rate` bytes per second (`None`: as fast
/// as it can). The memory stays mapped (held) until the process exits. Returns the bytes held
/// (less than `max` only when mmap failed). Only system calls, no heap allocation.
pub fn fill(max: usize, rate: Option<f64>) -> usize {
    fill_mapped(max, rate, false)
}

/// [`fill`], with `shared` anonymous memory (`MAP_SHARED`: shmem pages) when asked. Those pages
/// are freed when the last process mapping them exits, but `process_mrelease` and the kernel's
/// OOM reaper leave them (they reap private memory only): a killed process that cannot exit
/// keeps them.
pub fn fill_mapped(max: usize, rate: Option<f64>, shared: bool) -> usize {
    let mut pace = rate
        .filter(|r| *r > 0.0)
        .map(|r| Pace::new(r, Instant::now()));
    let mut total = 0usize;
    while total < max {
        let n = CHUNK.min(max - total);
        use rustix::mm::{MapFlags, ProtFlags};
        let flags = if shared {
            MapFlags::SHARED
        } else {
            MapFlags::PRIVATE
        };
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; nothing else
        // refers to it (a shared one is shared only with children forked later, and this
        // process forks none after it).
        let Ok(p) = (unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                n,
                ProtFlags::READ | ProtFlags::WRITE,
                flags,
            )
        }) else {
            break;
        };
        // Write every byte so every page is really resident.
        // SAFETY: `p` is a writable mapping of `n` bytes, owned by this loop alone.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 1, n) };
        total += n;
        if let Some(p) = pace.as_mut() {
            let now = Instant::now();
            let wait = p.after(n, now);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
    total
}

/// How far behind its schedule a paced fill may fall and still catch up at full speed.
const CATCH_UP: Duration = Duration::from_millis(20);

/// The schedule of a fill at a rate. A fill held up longer than [`CATCH_UP`] (not scheduled on
/// a loaded machine) starts its schedule again from where it is, rather than writing all it
/// owes in one burst: a hog "at 200 MiB/s" held up for 150 ms would otherwise write 30 MiB at
/// full speed, several times its rate, and a test that gives a guard the time the rate allows
/// would race a faster hog than it asked for.
#[derive(Debug)]
struct Pace {
    /// When the bytes written so far are due.
    due: Instant,
    /// Bytes per second.
    rate: f64,
}

impl Pace {
    fn new(rate: f64, start: Instant) -> Pace {
        Pace { due: start, rate }
    }

    /// After `n` more bytes, written by `now`: how long to wait before the next.
    fn after(&mut self, n: usize, now: Instant) -> Duration {
        self.due += Duration::from_secs_f64(n as f64 / self.rate);
        if now > self.due + CATCH_UP {
            self.due = now;
        }
        self.due.saturating_duration_since(now)
    }
}

/// A hog forked by [`spawn_in`]: killed and reaped on drop unless already reaped.
#[derive(Debug)]
pub struct HogChild {
    pid: Pid,
    reaped: bool,
}

impl HogChild {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// Its exit status if it has ended (reaps it), else `None`.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.reaped {
            return Ok(None);
        }
        match rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG)? {
            Some((_, st)) => {
                self.reaped = true;
                Ok(Some(ExitStatus::from_raw(st.as_raw())))
            }
            None => Ok(None),
        }
    }

    /// SIGKILLs it (if not yet reaped) and reaps it.
    pub fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        let _ = rustix::process::kill_process(self.pid, Signal::KILL);
        match rustix::process::waitpid(Some(self.pid), WaitOptions::empty()) {
            Ok(Some((_, st))) => {
                self.reaped = true;
                Some(ExitStatus::from_raw(st.as_raw()))
            }
            _ => None,
        }
    }
}

impl Drop for HogChild {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// The hog's process name (comm).
pub const HOG_NAME: &str = "oomguard-hog";

/// Forks a hog inside the cgroup `dir` (it writes itself to `dir/cgroup.procs` before it
/// allocates a page), in a process group of its own (Ctrl-C in the terminal does not reach it),
/// named [`HOG_NAME`]. It allocates `max` bytes at `rate` bytes per second (`None`: as fast as
/// it can) and holds them until killed. A child that cannot join the group exits with 126.
pub fn spawn_in(dir: &Path, max: u64, rate: Option<u64>) -> std::io::Result<HogChild> {
    let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let name = CString::new(HOG_NAME).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let rate = rate.map(|r| r as f64);
    let parent = rustix::process::getpid();
    // SAFETY: fork(2) has no memory-safety preconditions for the parent. The child of a possibly
    // multi-threaded parent runs only async-signal-safe system calls below (everything it needs
    // was built before the fork), never returns, and leaves through _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let joined = (|| -> rustix::io::Result<()> {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open(
                procs.as_c_str(),
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            rustix::io::write(&fd, b"0\n")?;
            Ok(())
        })();
        if joined.is_err() {
            // SAFETY: _exit ends the child at once without running the parent's atexit handlers.
            unsafe { libc::_exit(126) };
        }
        // A drill killed outright (SIGKILL, the OOM killer) takes its hog with it: the hog
        // never outlives the one that would end it. (Gone already before the call: the
        // parent is no longer the one that forked.)
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        if rustix::process::getppid() != Some(parent) {
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        let _ = rustix::process::setpgid(None, None);
        let _ = rustix::thread::set_name(&name);
        fill(max, rate);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(HogChild {
        // A positive PID from fork.
        pid: Pid::from_raw(pid).ok_or(std::io::ErrorKind::Other)?,
        reaped: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_maps_and_touches_up_to_the_bound() {
        let rss = || -> u64 {
            std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
                * rustix::param::page_size() as u64
        };
        let before = rss();
        assert_eq!(fill(8 << 20, None), 8 << 20);
        // The pages are resident, not only reserved (other test threads may move rss a little).
        assert!(rss() >= before + (7 << 20), "{} -> {}", before, rss());
        // A bound that is not a multiple of the chunk.
        assert_eq!(fill(CHUNK + 4096, None), CHUNK + 4096);
    }

    /// The times at which a fill at 200 MiB/s in 1 MiB steps (each written in no time) ends
    /// each step, when it is held up for `stall` before step `at`.
    fn paced(steps: usize, at: usize, stall: Duration) -> Vec<Instant> {
        let start = Instant::now();
        let mut pace = Pace::new(200.0 * CHUNK as f64, start);
        let mut now = start;
        let mut ends = Vec::new();
        for i in 0..steps {
            if i == at {
                now += stall;
            }
            ends.push(now);
            now += pace.after(CHUNK, now);
        }
        ends
    }

    #[test]
    fn a_paced_fill_keeps_its_rate() {
        let ends = paced(50, usize::MAX, Duration::ZERO);
        let step = ends[1] - ends[0];
        assert!(step.abs_diff(Duration::from_secs_f64(1.0 / 200.0)) < Duration::from_micros(1));
        assert!(
            ends.windows(2)
                .all(|w| (w[1] - w[0]).abs_diff(step) < Duration::from_micros(1))
        );
    }

    /// Held up for a moment, it catches up; held up for long, it goes on at its rate from
    /// there instead of writing what it owes in a burst (150 ms at 200 MiB/s: 30 steps).
    #[test]
    fn a_paced_fill_held_up_goes_on_at_its_rate_without_a_burst() {
        let short = paced(40, 10, Duration::from_millis(10));
        // 10 ms behind: the next two steps come at once, then the schedule is kept again.
        assert_eq!(short[12] - short[10], Duration::ZERO);
        let kept = (short[39] - short[0]).abs_diff(Duration::from_secs_f64(39.0 / 200.0));
        assert!(kept < Duration::from_micros(1), "{kept:?}");
        let long = paced(80, 10, Duration::from_millis(150));
        // In any 25 ms after the hold-up, at most 5 steps (the rate) and the one written as
        // it resumed: never 30 at once.
        for (i, t) in long.iter().enumerate().skip(10) {
            let within = long[i..]
                .iter()
                .take_while(|u| **u - *t < Duration::from_millis(25))
                .count();
            assert!(within <= 6, "{within} steps within 25 ms from step {i}");
        }
    }
}
