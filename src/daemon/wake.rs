//! Waking up in time. Sleeping polls alone lose the race against a fast hog, so the daemon
//! asks the kernel to wake it: cgroup v1 usage thresholds (`cgroup.event_control` + eventfd on
//! `memory.usage_in_bytes`, one just above each level) and `memory.pressure_level`; PSI
//! triggers on the system or a v2 group. Whatever fires, the daemon re-reads the scope.
//!
//! The whole machine gets usage thresholds too where the memory controller is on cgroup v1:
//! the hierarchy's root group counts the machine's page cache and mapped anonymous memory
//! (`NR_FILE_PAGES + NR_ANON_MAPPED`), and the kernel checks its thresholds on every charge in
//! any group below it (every 128 pages per CPU). A level of available memory becomes a usage
//! mark: usage now + (available now − level). Memory the root group does not count (kernel
//! slabs, page tables, huge pages reserved by hand) moves available without moving usage, so
//! the marks are re-armed when available has drifted ([`Waker::rearm_if_changed`]), and the
//! daemon's sleep stays bounded by the fill-rate model as well.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFlags};

use crate::decide::trigger::Levels;
use crate::record::Wake;
use crate::sense::mem::MemState;
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

/// Where the v1 usage thresholds go.
enum Domain {
    /// A cgroup (or its nearest limited ancestor): a level is the usage limit − level.
    Cgroup(PathBuf),
    /// The whole machine, through the v1 hierarchy's root group: a level is usage now +
    /// (available now − level).
    Machine(PathBuf),
}

/// The usage marks (bytes) for the machine's root group: one per level (twice TERM, TERM,
/// KILL) that lies below `available_kb`, at `usage` plus the headroom to that level.
pub fn machine_marks(usage: u64, available_kb: u64, levels: &Levels) -> Vec<u64> {
    [
        levels.mem_term_kb.saturating_mul(2),
        levels.mem_term_kb,
        levels.mem_kill_kb,
    ]
    .into_iter()
    .filter(|&l| l > 0 && l < available_kb)
    .map(|l| usage.saturating_add((available_kb - l) * 1024))
    .collect()
}

/// Whether the machine's marks, armed at `armed_kb` available, must be armed again now at
/// `available_kb`: when a mark fired, or when available fell by an eighth of the headroom to
/// the TERM level (at least 64 MiB) without usage rising as much (memory the root group does
/// not count), or rose by a quarter (the marks would wake the daemon for nothing). Only far
/// from the levels: near them the daemon polls often anyway, and re-arming is not for then.
pub fn machine_rearm_due(armed_kb: u64, available_kb: u64, term_kb: u64, fired: bool) -> bool {
    if fired {
        return true;
    }
    let head = armed_kb.saturating_sub(term_kb);
    let fell = armed_kb.saturating_sub(available_kb);
    let rose = available_kb.saturating_sub(armed_kb);
    fell >= (head / 8).max(64 << 10) || rose >= (head / 4).max(64 << 10)
}

/// The set of kernel notifications the daemon polls, plus its signal pipe.
pub struct Waker {
    sources: Vec<Source>,
    /// The poll set, rebuilt in place on every wait (no allocation per wake-up).
    pollfds: Vec<libc::pollfd>,
    signal_pipe: Option<OwnedFd>,
    /// The total and levels the v1 thresholds were computed for (re-armed when the limit or,
    /// on a reload, the levels change).
    armed_total_kb: u64,
    armed_levels: Levels,
    /// The machine's thresholds: the available figure they were armed at.
    machine_armed_kb: Option<u64>,
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
        mem: &MemState,
        psi_kind: PsiKind,
        signal_pipe: Option<OwnedFd>,
    ) -> Waker {
        let mut w = Waker {
            sources: Vec::new(),
            pollfds: Vec::with_capacity(8),
            signal_pipe,
            armed_total_kb: 0,
            armed_levels: *levels,
            machine_armed_kb: None,
            notes: Vec::new(),
        };
        w.arm_thresholds(scope, levels, mem);
        w.arm_pressure_level(scope);
        w.arm_psi(scope, psi_kind);
        w
    }

    /// True when the kernel wakes the daemon as the machine's memory use rises (v1 root
    /// group thresholds armed): then a sleep far from the levels may be longer.
    pub fn watches_machine_usage(&self) -> bool {
        self.machine_armed_kb.is_some()
    }

    /// The root group of the v1 memory hierarchy, for the system scope: only the real root
    /// (it alone has `cgroup.sane_behavior`; the top of a cgroup namespace is a group whose
    /// usage is not the machine's).
    fn machine_domain(scope: &Scope) -> Option<PathBuf> {
        if scope.cgroup().is_some() {
            return None;
        }
        let top = scope.root.path(scope.mounts.v1_memory.as_ref()?);
        top.join("cgroup.sane_behavior").exists().then_some(top)
    }

    fn domain(scope: &mut Scope) -> Option<Domain> {
        match Self::v1_domain(scope) {
            Some(d) => Some(Domain::Cgroup(d)),
            None => Self::machine_domain(scope).map(Domain::Machine),
        }
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
    /// term, kill): for a group, usage = limit − level; for the machine, see
    /// [`machine_marks`].
    fn arm_thresholds(&mut self, scope: &mut Scope, levels: &Levels, mem: &MemState) {
        self.sources.retain(|s| s.kind != Wake::Threshold);
        self.armed_total_kb = mem.total_kb;
        self.armed_levels = *levels;
        self.machine_armed_kb = None;
        let Some(domain) = Self::domain(scope) else {
            return;
        };
        let dir = match &domain {
            Domain::Cgroup(d) | Domain::Machine(d) => d.clone(),
        };
        let res = (|| -> std::io::Result<Source> {
            let efd = eventfd()?;
            let usage = File::open(dir.join("memory.usage_in_bytes"))?;
            let marks = match domain {
                Domain::Cgroup(_) => {
                    let limit = mem.total_kb * 1024;
                    [
                        levels.mem_term_kb.saturating_mul(2),
                        levels.mem_term_kb,
                        levels.mem_kill_kb,
                    ]
                    .into_iter()
                    .map(|l| limit.saturating_sub(l * 1024))
                    .filter(|&at| at > 0)
                    .collect()
                }
                Domain::Machine(_) => {
                    let mut b = [0u8; 32];
                    let n = rustix::io::pread(&usage, &mut b, 0)?;
                    let now = std::str::from_utf8(&b[..n])
                        .ok()
                        .and_then(|t| t.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "memory.usage_in_bytes is not a number",
                            )
                        })?;
                    machine_marks(now, mem.available_kb, levels)
                }
            };
            for at in marks {
                v1_register(&dir, &efd, &usage, &at.to_string())?;
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
            Ok(s) => {
                if matches!(domain, Domain::Machine(_)) {
                    self.machine_armed_kb = Some(mem.available_kb);
                }
                self.sources.push(s)
            }
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

    /// Re-arms the v1 thresholds when the scope's total (its limit) or the levels (a reload)
    /// changed, and the machine's when [`machine_rearm_due`] says so (`fired`: this wake-up was a threshold's;
    /// `near`: memory is near or below a level).
    pub fn rearm_if_changed(
        &mut self,
        scope: &mut Scope,
        levels: &Levels,
        mem: &MemState,
        fired: bool,
        near: bool,
    ) {
        let machine_due = self.machine_armed_kb.is_some_and(|armed| {
            !near && machine_rearm_due(armed, mem.available_kb, levels.mem_term_kb, fired)
        });
        if mem.total_kb != self.armed_total_kb || *levels != self.armed_levels || machine_due {
            self.arm_thresholds(scope, levels, mem);
        }
    }

    /// Which kernel notifications are armed (for the start-up log line).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self
            .sources
            .iter()
            .map(|s| match s.kind {
                Wake::Threshold if self.machine_armed_kb.is_some() => {
                    "usage thresholds (v1 root group)"
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    const GIB_KB: u64 = 1 << 20;

    fn levels(term_gib: u64) -> Levels {
        Levels {
            mem_term_kb: term_gib * GIB_KB,
            mem_kill_kb: term_gib * GIB_KB / 2,
            swap_term_kb: 0,
            swap_kill_kb: 0,
        }
    }

    #[test]
    fn machine_marks_lie_the_headroom_to_each_level_above_usage() {
        // 20 GiB available, TERM 2 GiB: the near level (4 GiB) is 16 GiB of use away, TERM
        // 18 GiB, KILL (1 GiB) 19 GiB.
        let usage = 3u64 << 30;
        let m = machine_marks(usage, 20 * GIB_KB, &levels(2));
        assert_eq!(
            m,
            vec![usage + (16 << 30), usage + (18 << 30), usage + (19 << 30)]
        );
        // Already below the near level: only the levels still ahead get a mark.
        let m = machine_marks(usage, 3 * GIB_KB, &levels(2));
        assert_eq!(m, vec![usage + (1 << 30), usage + (2 << 30)]);
        // A level of 0 (guard off) gets none.
        assert!(machine_marks(usage, 3 * GIB_KB, &levels(0)).is_empty());
    }

    #[test]
    fn machine_marks_are_armed_again_when_fired_or_when_available_drifted() {
        let term = 2 * GIB_KB;
        let armed = 18 * GIB_KB; // headroom to TERM 16 GiB: an eighth is 2 GiB
        assert!(machine_rearm_due(armed, armed, term, true));
        assert!(!machine_rearm_due(armed, armed, term, false));
        assert!(!machine_rearm_due(armed, armed - GIB_KB, term, false));
        assert!(machine_rearm_due(armed, armed - 2 * GIB_KB, term, false));
        // Rising: a quarter of the headroom.
        assert!(!machine_rearm_due(armed, armed + 3 * GIB_KB, term, false));
        assert!(machine_rearm_due(armed, armed + 4 * GIB_KB, term, false));
        // Close to TERM the drift allowed is at least 64 MiB.
        let armed = term + (100 << 10);
        assert!(!machine_rearm_due(armed, armed - (63 << 10), term, false));
        assert!(machine_rearm_due(armed, armed - (64 << 10), term, false));
    }
}
