//! Waking up in time. Sleeping polls alone lose the race against a fast hog, so the daemon
//! asks the kernel to wake it: cgroup v1 usage thresholds (`cgroup.event_control` + eventfd on
//! `memory.usage_in_bytes`, one just above each level) and `memory.pressure_level`; PSI
//! triggers on the system or a v2 group. Whatever fires, the daemon re-reads the scope.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFlags};

use crate::decide::trigger::Levels;
use crate::record::Wake;
use crate::sense::psi::{Trigger, register_trigger};
use crate::sense::scope::Scope;
use crate::values::PsiKind;

struct Source {
    fd: OwnedFd,
    kind: Wake,
    events: PollFlags,
    /// eventfds must be drained after they fire.
    drain: bool,
    /// Files that must stay open for the registration to live.
    _keep: Vec<File>,
}

/// The set of kernel notifications the daemon polls, plus its signal pipe.
pub struct Waker {
    sources: Vec<Source>,
    /// The poll set, rebuilt in place on every wait (no allocation per wake-up).
    pollfds: Vec<libc::pollfd>,
    signal_pipe: Option<OwnedFd>,
    /// The total the v1 thresholds were computed for (re-armed when the limit changes).
    armed_total_kb: u64,
    /// One-time notes on what could not be set up.
    pub notes: Vec<String>,
}

fn eventfd() -> std::io::Result<OwnedFd> {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(Into::into)
}

/// Registers `event_fd` for `target` with `args` through `dir/cgroup.event_control`.
fn v1_register(dir: &Path, event_fd: &OwnedFd, target: &File, args: &str) -> std::io::Result<()> {
    let mut ctl = File::options()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    let line = format!("{} {} {}", event_fd.as_raw_fd(), target.as_raw_fd(), args);
    ctl.write_all(line.as_bytes())
}

impl Waker {
    /// Sets up every notification the scope offers. Failures become notes, never errors.
    pub fn new(
        scope: &mut Scope,
        levels: &Levels,
        total_kb: u64,
        psi_kind: PsiKind,
        signal_pipe: Option<OwnedFd>,
    ) -> Waker {
        let mut w = Waker {
            sources: Vec::new(),
            pollfds: Vec::with_capacity(8),
            signal_pipe,
            armed_total_kb: 0,
            notes: Vec::new(),
        };
        w.arm_thresholds(scope, levels, total_kb);
        w.arm_pressure_level(scope);
        w.arm_psi(scope, psi_kind);
        w
    }

    fn v1_domain(scope: &mut Scope) -> Option<PathBuf> {
        let cg = scope.cgroup()?.clone();
        if cg.version != crate::sense::cgroup::CgVersion::V1 {
            return None;
        }
        let mut buf = Vec::new();
        let dir = cg
            .limited_domain(&scope.root, &mut buf)
            .map(|(d, _)| d)
            .unwrap_or(cg.dir);
        Some(scope.root.path(dir))
    }

    /// v1: one eventfd registered at usage thresholds just above each level (near = 2 × term,
    /// term, kill), expressed as usage = limit − level.
    fn arm_thresholds(&mut self, scope: &mut Scope, levels: &Levels, total_kb: u64) {
        self.sources.retain(|s| s.kind != Wake::Threshold);
        self.armed_total_kb = total_kb;
        let Some(dir) = Self::v1_domain(scope) else {
            return;
        };
        let res = (|| -> std::io::Result<Source> {
            let efd = eventfd()?;
            let usage = File::open(dir.join("memory.usage_in_bytes"))?;
            let limit = total_kb * 1024;
            for level_kb in [
                levels.mem_term_kb.saturating_mul(2),
                levels.mem_term_kb,
                levels.mem_kill_kb,
            ] {
                let at = limit.saturating_sub(level_kb * 1024);
                if at > 0 {
                    v1_register(&dir, &efd, &usage, &at.to_string())?;
                }
            }
            Ok(Source {
                fd: efd,
                kind: Wake::Threshold,
                events: PollFlags::IN,
                drain: true,
                _keep: vec![usage],
            })
        })();
        match res {
            Ok(s) => self.sources.push(s),
            Err(e) => self.notes.push(format!(
                "usage thresholds on {}: {e}; relying on polling",
                dir.join("cgroup.event_control").display()
            )),
        }
    }

    /// v1: `memory.pressure_level` "critical" events.
    fn arm_pressure_level(&mut self, scope: &mut Scope) {
        let Some(dir) = Self::v1_domain(scope) else {
            return;
        };
        let res = (|| -> std::io::Result<Source> {
            let efd = eventfd()?;
            let pl = File::open(dir.join("memory.pressure_level"))?;
            v1_register(&dir, &efd, &pl, "critical")?;
            Ok(Source {
                fd: efd,
                kind: Wake::PressureLevel,
                events: PollFlags::IN,
                drain: true,
                _keep: vec![pl],
            })
        })();
        match res {
            Ok(s) => self.sources.push(s),
            Err(e) => self.notes.push(format!(
                "memory.pressure_level events on {}: {e}",
                dir.display()
            )),
        }
    }

    /// A PSI trigger (system or v2 group): 5% stall over 1 s, or the nearest window the kernel
    /// accepts without CAP_SYS_RESOURCE (2 s).
    fn arm_psi(&mut self, scope: &mut Scope, kind: PsiKind) {
        let Some(p) = scope.pressure_path() else {
            return;
        };
        let real = scope.root.path(&p);
        let (trig, note) = register_trigger(&real, kind, 5.0, Duration::from_secs(1));
        if let Some(n) = note {
            self.notes.push(n);
        }
        match trig {
            Trigger::Armed { fd, .. } => self.sources.push(Source {
                fd,
                kind: Wake::Psi,
                events: PollFlags::PRI,
                drain: false,
                _keep: Vec::new(),
            }),
            Trigger::Refused(why) => self
                .notes
                .push(format!("PSI trigger refused ({why}); relying on polling")),
        }
    }

    /// Re-arms the v1 thresholds when the scope's total (its limit) changed.
    pub fn rearm_if_changed(&mut self, scope: &mut Scope, levels: &Levels, total_kb: u64) {
        if total_kb != self.armed_total_kb {
            self.arm_thresholds(scope, levels, total_kb);
        }
    }

    /// Which kernel notifications are armed (for the start-up log line).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self
            .sources
            .iter()
            .map(|s| match s.kind {
                Wake::Threshold => "usage thresholds",
                Wake::PressureLevel => "pressure_level",
                Wake::Psi => "PSI trigger",
                _ => "other",
            })
            .collect();
        if names.is_empty() {
            "none (polling only)".into()
        } else {
            names.join(", ")
        }
    }

    /// Waits up to `timeout` for a notification (or `extra`, e.g. a victim's pidfd). Returns
    /// why it woke. Signals (the signal pipe) end the wait early as `Timer`.
    pub fn wait(&mut self, timeout: Duration) -> Wake {
        self.pollfds.clear();
        for src in &self.sources {
            self.pollfds.push(libc::pollfd {
                fd: src.fd.as_raw_fd(),
                events: src.events.bits() as libc::c_short,
                revents: 0,
            });
        }
        if let Some(p) = &self.signal_pipe {
            self.pollfds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pollfds` is a valid array of its length of initialised pollfd structs whose
        // fds (ours, owned by `self`) stay open during the call; `ts` lives across it.
        let n = unsafe {
            libc::ppoll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n <= 0 {
            return Wake::Timer;
        }
        let mut why = Wake::Timer;
        for i in 0..self.pollfds.len() {
            if self.pollfds[i].revents == 0 {
                continue;
            }
            if let Some(src) = self.sources.get(i) {
                if src.drain {
                    let mut b = [0u8; 8];
                    let _ = rustix::io::read(&src.fd, &mut b);
                }
                why = src.kind;
            } else if let Some(p) = &self.signal_pipe {
                let mut b = [0u8; 64];
                let _ = rustix::io::read(p.as_fd(), &mut b);
            }
        }
        why
    }
}
