//! Race-free signalling: open a pidfd, check that it is still the process that was scored (same
//! start time), signal through the pidfd. A reused PID is never signalled: if the PID was
//! recycled before `pidfd_open`, the start time differs and we refuse; if the process dies
//! after it, the pidfd keeps pointing at the dead process and the signal fails with ESRCH.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::sense::procs::{ProcError, ProcReader, Stat};

/// Why a process could not be targeted.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("process {0} is gone")]
    Gone(i32),
    #[error(
        "PID {pid} now belongs to another process (start time {now}, scored {scored}); not signalled"
    )]
    Reused { pid: i32, scored: u64, now: u64 },
    /// Its `/proc` entry could not be read (denied, or an I/O error): not signalled.
    #[error(transparent)]
    Read(ProcError),
    #[error("process {pid} is no longer a child of {parent}")]
    NotChild { pid: i32, parent: i32 },
    #[error("pidfd_open({pid}): {source}")]
    Open {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
}

/// A process pinned by a pidfd, verified to be the one that was scored.
#[derive(Debug)]
pub struct Target {
    pub pid: i32,
    pub starttime: u64,
    /// It was stopped (state `T`: by its shell's job control, or by another's SIGSTOP) when
    /// it was pinned, from the same read of its stat: a kill dropped unsent leaves it stopped,
    /// where a SIGCONT would resume a job its user had stopped.
    pub was_stopped: bool,
    fd: OwnedFd,
}

/// Opens a pidfd for `pid`, then reads its stat: the stat is of the pinned process (or of one
/// that reused the PID before the pidfd was taken, which the caller's check refuses).
fn pin(reader: &mut ProcReader, pid: i32) -> Result<(OwnedFd, Stat), TargetError> {
    let p = Pid::from_raw(pid).ok_or(TargetError::Gone(pid))?;
    let fd = match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Err(TargetError::Gone(pid)),
        Err(e) => {
            return Err(TargetError::Open {
                pid,
                source: e.into(),
            });
        }
    };
    let st = reader.stat(pid).map_err(|e| match e {
        ProcError::Gone { .. } => TargetError::Gone(pid),
        e => TargetError::Read(e),
    })?;
    Ok((fd, st))
}

impl Target {
    /// Opens a pidfd for `pid` and checks its start time against `starttime`.
    pub fn open(reader: &mut ProcReader, pid: i32, starttime: u64) -> Result<Target, TargetError> {
        // The pidfd pins whatever process has this PID; make sure it is ours.
        let (fd, st) = pin(reader, pid)?;
        if st.starttime != starttime {
            return Err(TargetError::Reused {
                pid,
                scored: starttime,
                now: st.starttime,
            });
        }
        Ok(Target {
            pid,
            starttime,
            was_stopped: st.state == b'T',
            fd,
        })
    }

    /// Opens a pidfd for `pid` and checks that it is a child of `parent` (taking its start time
    /// from the same read): a PID listed as `parent`'s child and reused since is refused.
    pub fn open_child(
        reader: &mut ProcReader,
        pid: i32,
        parent: i32,
    ) -> Result<Target, TargetError> {
        let (fd, st) = pin(reader, pid)?;
        if st.ppid != parent {
            return Err(TargetError::NotChild { pid, parent });
        }
        Ok(Target {
            pid,
            starttime: st.starttime,
            was_stopped: st.state == b'T',
            fd,
        })
    }

    /// Sends a signal through the pidfd.
    pub fn signal(&self, sig: Signal) -> std::io::Result<()> {
        rustix::process::pidfd_send_signal(&self.fd, sig).map_err(Into::into)
    }

    /// `pidfd_send_signal` with signal 0: the kernel checks that the process exists and that we
    /// may signal it, and sends nothing. The daemon's start-up warm-up runs it on itself so the
    /// signalling path is resident before the first real kill.
    pub fn probe(&self) -> std::io::Result<()> {
        // SAFETY: a plain syscall on a pidfd we own; a null siginfo is allowed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// True once the process has exited (the pidfd becomes readable).
    pub fn exited(&self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
    }

    /// A duplicate of the pidfd (close-on-exec), for the reaper thread ([`super::reaper`]),
    /// which may hold it after this target is dropped.
    pub fn dup_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `process_mrelease(2)` (5.15+) on a pidfd: reap the killed process's memory now instead of
/// waiting for its exit path. Only valid after SIGKILL. It waits for the process's mmap lock,
/// which a process stuck at the bottom of memory may hold for seconds: never called on the
/// guard's loop, only by the reaper thread ([`super::reaper`]).
pub fn mrelease(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: a plain syscall on a pidfd the caller holds open; no pointers.
    let r = unsafe { libc::syscall(libc::SYS_process_mrelease, fd.as_raw_fd(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::Root;
    use std::process::Command;

    #[test]
    fn refuses_a_wrong_start_time_and_signals_the_right_process() {
        let mut r = ProcReader::open(&Root::default()).unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let st = r.stat(pid).unwrap();
        let e = Target::open(&mut r, pid, st.starttime + 1).unwrap_err();
        assert!(matches!(e, TargetError::Reused { .. }), "{e}");
        let t = Target::open(&mut r, pid, st.starttime).unwrap();
        assert!(!t.exited());
        // Signal 0 checks and sends nothing: the child lives on.
        t.probe().unwrap();
        assert!(!t.wait(Duration::from_millis(50)));
        t.signal(Signal::KILL).unwrap();
        let _ = child.wait();
        assert!(t.wait(Duration::from_secs(5)));
        // Reaped: a signal through the stale pidfd fails instead of hitting a new process.
        assert!(t.signal(Signal::TERM).is_err());
        assert_eq!(t.probe().unwrap_err().raw_os_error(), Some(libc::ESRCH));
        assert!(matches!(
            Target::open(&mut r, pid, st.starttime),
            Err(TargetError::Gone(_)) | Err(TargetError::Reused { .. })
        ));
    }
}
