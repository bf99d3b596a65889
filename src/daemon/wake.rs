//! Waking up in time. Sleeping polls alone lose the race against a fast hog, so the daemon
//! asks the kernel to wake it: cgroup v1 usage thresholds (`cgroup.event_control` + eventfd on
//! `memory.usage_in_bytes`, one just above each level) and `memory.pressure_level`; PSI
//! triggers on the system or a v2 group. Whatever fires, the daemon re-reads the scope.
//!
//! The whole machine gets usage marks too where the memory controller is on cgroup v1: the
//! hierarchy's root group counts the machine's page cache and mapped anonymous memory
//! (`NR_FILE_PAGES + NR_ANON_MAPPED`), and the kernel checks its thresholds on every charge in
//! any group below it (every 128 pages per CPU). While free memory lasts, a page taken by a
//! process or the page cache raises that usage as it lowers free memory, so a mark at usage
//! now + (free now − margin − level) is reached when free memory has fallen to the level plus
//! the margin — never later than available memory (≥ free) reaches the level. Once free memory
//! is gone (the page cache fills RAM), growth evicts cache and usage stands still: then no
//! marks are armed. Memory the root group does not count (kernel slabs, page tables, huge pages
//! reserved by hand) lowers free memory without raising usage: the marks are re-armed when free
//! memory has fallen by more than usage rose ([`machine_drift_due`]; a change of usage alone
//! leaves them right), and the daemon's sleep stays bounded by the fill-rate model as well.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFlags};

use crate::decide::trigger::Levels;
use crate::record::Wake;
use crate::sense::cgroup::CgVersion;
use crate::sense::mem::MemState;
use crate::sense::psi::{Trigger, register_trigger};
use crate::sense::scope::{Scope, ScopeKind};
use crate::values::PsiSpec;

struct Source {
    fd: OwnedFd,
    kind: Wake,
    events: PollFlags,
    /// eventfds must be drained after they fire.
    drain: bool,
    /// Files that must stay open for the registration to live.
    _keep: Vec<File>,
}

/// The least distance from free memory to the near level (twice TERM) for the machine's
/// marks: closer, they would fire on ordinary churn, and the long sleep they allow needs far
/// more headroom anyway.
const MACHINE_MIN_HEAD_KB: u64 = 512 << 10;

/// How far free memory (`free_kb` of `total_kb`) may fall before it reaches the near level
/// plus the marks' margin of 1/64 of RAM (free pages below the watermarks are not handed out
/// 1:1 any more).
fn machine_head_kb(free_kb: u64, total_kb: u64, levels: &Levels) -> u64 {
    free_kb
        .saturating_sub(total_kb / 64)
        .saturating_sub(levels.near_kb())
}

/// The usage marks (bytes) for the machine's root group at `usage` bytes now, with `free_kb`
/// free of `total_kb`: one for each level (twice TERM, TERM, KILL), at usage plus the fall of
/// free memory to that level plus the margin ([`machine_head_kb`]). `None` when TERM is 0 or
/// the fall to the near level is under [`MACHINE_MIN_HEAD_KB`].
pub fn machine_marks(usage: u64, free_kb: u64, total_kb: u64, levels: &Levels) -> Option<[u64; 3]> {
    let head = machine_head_kb(free_kb, total_kb, levels);
    if levels.mem_term_kb == 0 || head < MACHINE_MIN_HEAD_KB {
        return None;
    }
    let at = |l: u64| usage.saturating_add((head + levels.near_kb() - l) * 1024);
    Some([
        at(levels.near_kb()),
        at(levels.mem_term_kb),
        at(levels.mem_kill_kb),
    ])
}

/// What the machine's marks were armed with: free RAM (kB) and the root group's usage (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    pub free_kb: u64,
    pub usage: u64,
}

/// Whether the machine's marks, armed at `armed`, must be armed again now that `free_kb` are
/// free and the root group's usage is `usage`: when free memory fell by more than usage rose
/// (memory the group does not count took it), by an eighth of the distance from the near mark
/// then (at least 64 MiB), the marks lie too high. Pages the group counts move usage and free
/// memory together and leave the marks right; memory given back early only fires them early.
pub fn machine_drift_due(
    armed: Armed,
    free_kb: u64,
    usage: u64,
    total_kb: u64,
    levels: &Levels,
) -> bool {
    let head = machine_head_kb(armed.free_kb, total_kb, levels);
    let fell = armed.free_kb.saturating_sub(free_kb);
    let rose = usage.saturating_sub(armed.usage) / 1024;
    fell.saturating_sub(rose) >= (head / 8).max(64 << 10)
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
    /// The v1 group the thresholds and the pressure-level event are registered on, and its
    /// inode: a group removed and made again under the same name (a container restarted) is
    /// a new group, on which nothing is registered (see [`Waker::rearm_if_changed`]).
    armed_group: Option<(PathBuf, u64)>,
    /// The system scope's v1 root group (`None`: no marks there, or they failed once).
    machine: Option<PathBuf>,
    /// What the machine's marks were armed with; `None`: not armed.
    machine_armed: Option<Armed>,
    /// The root group's `memory.usage_in_bytes` while the marks are armed.
    machine_usage: Option<File>,
    /// Notes on what could not be set up (the daemon logs and empties them).
    pub notes: Vec<String>,
    /// What [`Waker::pending`] found (and drained): the next [`Waker::wait`] returns it at once.
    fired: Option<Wake>,
    /// The PSI trigger reported an error and was dropped ([`Waker::take_broken_psi`]).
    psi_broken: bool,
}

fn eventfd() -> std::io::Result<OwnedFd> {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(Into::into)
}

/// A `memory.usage_in_bytes` figure (bytes).
fn read_usage(f: &File) -> std::io::Result<u64> {
    let mut b = [0u8; 32];
    let n = rustix::io::pread(f, &mut b, 0)?;
    crate::sense::parse_u64(&b[..n]).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "usage is not a number")
    })
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
        psi: Option<PsiSpec>,
        signal_pipe: Option<OwnedFd>,
    ) -> Waker {
        let mut w = Waker {
            sources: Vec::new(),
            pollfds: Vec::with_capacity(8),
            signal_pipe,
            armed_total_kb: 0,
            armed_levels: *levels,
            armed_group: None,
            machine: Self::machine_domain(scope),
            machine_armed: None,
            machine_usage: None,
            notes: Vec::new(),
            fired: None,
            psi_broken: false,
        };
        w.arm_thresholds(scope, levels, mem);
        w.arm_machine(levels, scope.last_free_kb(), mem.total_kb);
        w.arm_pressure_level(scope);
        w.arm_psi(scope, psi);
        w
    }

    /// Replaces the PSI trigger (a reload changed `--psi`): the old one is dropped, a new one
    /// registered for `psi` (none for `None`). True if one is registered now.
    pub fn set_psi(&mut self, scope: &mut Scope, psi: Option<PsiSpec>) -> bool {
        self.sources.retain(|s| s.kind != Wake::Psi);
        self.arm_psi(scope, psi);
        self.sources.iter().any(|s| s.kind == Wake::Psi)
    }

    /// True when the kernel wakes the daemon as the machine's memory use rises (marks armed
    /// on the v1 root group): then a sleep far from the levels may be longer.
    pub fn watches_machine_usage(&self) -> bool {
        self.machine_armed.is_some()
    }

    /// The root group of the v1 memory hierarchy, for the system scope: only the real root
    /// (it alone has `cgroup.sane_behavior`; the top of a cgroup namespace is a group whose
    /// usage is not the machine's).
    fn machine_domain(scope: &Scope) -> Option<PathBuf> {
        // `sysinfo(2)` is the live machine's: not for a fixture root.
        if scope.cgroup().is_some() || !scope.root.is_real() {
            return None;
        }
        let top = scope.root.path(scope.mounts.v1_memory.as_ref()?);
        top.join("cgroup.sane_behavior").exists().then_some(top)
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
    fn arm_thresholds(&mut self, scope: &mut Scope, levels: &Levels, mem: &MemState) {
        self.armed_total_kb = mem.total_kb;
        self.armed_levels = *levels;
        let Some(dir) = Self::v1_domain(scope) else {
            return;
        };
        self.sources.retain(|s| s.kind != Wake::Threshold);
        self.armed_group = rustix::fs::stat(&dir)
            .ok()
            .map(|st| (dir.clone(), st.st_ino));
        let res = (|| -> std::io::Result<Source> {
            let efd = eventfd()?;
            let usage = File::open(dir.join("memory.usage_in_bytes"))?;
            let limit = mem.total_kb * 1024;
            for level_kb in [levels.near_kb(), levels.mem_term_kb, levels.mem_kill_kb] {
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

    /// The machine's marks on the v1 root group ([`machine_marks`]), armed anew (the old
    /// ones go with their eventfd), or none when free memory is too close to the levels. A
    /// failure is noted and ends the marks for this run (it would only repeat).
    fn arm_machine(&mut self, levels: &Levels, free_kb: Option<u64>, total_kb: u64) {
        let Some(dir) = self.machine.clone() else {
            return;
        };
        self.armed_levels = *levels;
        self.machine_armed = None;
        self.machine_usage = None;
        self.sources.retain(|s| s.kind != Wake::Threshold);
        let Some(free_kb) = free_kb else {
            return;
        };
        let res = (|| -> std::io::Result<Option<(Source, File, u64)>> {
            let usage = File::open(dir.join("memory.usage_in_bytes"))?;
            let now = read_usage(&usage)?;
            let Some(marks) = machine_marks(now, free_kb, total_kb, levels) else {
                log::debug!(
                    "no usage marks: {} MiB free is too close to the levels",
                    free_kb >> 10
                );
                return Ok(None);
            };
            log::debug!(
                "usage marks armed: the near level {} MiB of use away ({} MiB free)",
                (marks[0] - now) >> 20,
                free_kb >> 10
            );
            let efd = eventfd()?;
            for at in marks {
                v1_register(&dir, &efd, &usage, &at.to_string())?;
            }
            // `usage` stays open in `machine_usage` as long as this source lives.
            Ok(Some((
                Source {
                    fd: efd,
                    kind: Wake::Threshold,
                    events: PollFlags::IN,
                    drain: true,
                    _keep: Vec::new(),
                },
                usage,
                now,
            )))
        })();
        match res {
            Ok(Some((s, file, usage))) => {
                self.machine_armed = Some(Armed { free_kb, usage });
                self.machine_usage = Some(file);
                self.sources.push(s);
            }
            Ok(None) => {}
            Err(e) => {
                self.machine = None;
                self.notes.push(format!(
                    "usage marks on {}: {e}; far from the levels the guard looks every second",
                    dir.join("cgroup.event_control").display()
                ));
            }
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

    /// The `--psi` trigger, registered with the kernel (system or v2 group) so that it wakes
    /// the guard when the stall share crosses it, with the nearest window the kernel accepts
    /// without CAP_SYS_RESOURCE (a multiple of 2 s). Without `--psi` none is registered: the
    /// guard then acts on available memory alone, and a registered trigger costs the whole
    /// machine: every entry into a memory stall wakes the kernel's real-time poll thread
    /// (psimon), which polls on through the window. In the VM fork storm a 5 %/1 s trigger made
    /// the machine's worst stall longer (`docs/bench/vm-remarks.md`, session 17).
    fn arm_psi(&mut self, scope: &mut Scope, psi: Option<PsiSpec>) {
        let Some(spec) = psi else {
            return;
        };
        let Some(p) = scope.pressure_path() else {
            // Said, not silent: a `--psi` that can never act must not look armed.
            self.notes.push(no_pressure_note(scope, spec));
            return;
        };
        let real = scope.root.path(&p);
        let (trig, note) = register_trigger(&real, spec.kind, spec.pct.0, spec.window);
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
    /// changed. Far from the levels (`near` false), the machine's marks: again when the levels
    /// changed, when one fired (`fired`: this wake-up was a threshold's), or when free memory
    /// fell by 64 MiB and [`machine_drift_due`] says so (only then is the usage read); armed
    /// when they were not and free memory now allows them.
    ///
    /// A cgroup's v1 eventfds fire once more when their group is removed (the kernel's
    /// goodbye, `memcg_event_remove`) and never again: after a wake-up of theirs (`fired`), a
    /// group found made again under the same name (another inode) gets its thresholds and
    /// pressure-level event registered anew, else the guard would be left to its polling.
    pub fn rearm_if_changed(
        &mut self,
        scope: &mut Scope,
        levels: &Levels,
        mem: &MemState,
        fired: bool,
        near: bool,
    ) {
        if self.machine.is_none() {
            let replaced = fired && self.group_replaced();
            if replaced || mem.total_kb != self.armed_total_kb || *levels != self.armed_levels {
                self.arm_thresholds(scope, levels, mem);
            }
            if replaced {
                self.notes.push(format!(
                    "{} was removed and made again: its usage thresholds and pressure-level event are registered anew",
                    scope.label()
                ));
                self.sources.retain(|s| s.kind != Wake::PressureLevel);
                self.arm_pressure_level(scope);
            }
            return;
        }
        if near {
            return;
        }
        let Some(free_kb) = scope.last_free_kb() else {
            return;
        };
        let total_kb = mem.total_kb;
        let due = match self.machine_armed {
            Some(armed) => {
                *levels != self.armed_levels
                    || fired
                    || (armed.free_kb.saturating_sub(free_kb) >= 64 << 10
                        && self
                            .machine_usage
                            .as_ref()
                            .and_then(|f| read_usage(f).ok())
                            .is_none_or(|u| machine_drift_due(armed, free_kb, u, total_kb, levels)))
            }
            None => machine_marks(0, free_kb, total_kb, levels).is_some(),
        };
        if due {
            self.arm_machine(levels, Some(free_kb), total_kb);
        }
    }

    /// Whether the group the v1 events were registered on is no longer the group at its path
    /// (removed, perhaps made again: another inode). One `stat`, after an event only.
    fn group_replaced(&self) -> bool {
        self.armed_group
            .as_ref()
            .is_some_and(|(dir, ino)| !rustix::fs::stat(dir).is_ok_and(|st| st.st_ino == *ino))
    }

    /// Which kernel notifications are armed (for the start-up log line).
    pub fn describe(&self) -> String {
        let mut names: Vec<&str> = self
            .sources
            .iter()
            .filter_map(|s| match s.kind {
                // The machine's marks come and go with free memory: named below.
                Wake::Threshold if self.machine.is_some() => None,
                Wake::Threshold => Some("usage thresholds"),
                Wake::PressureLevel => Some("pressure_level"),
                Wake::Psi => Some("PSI trigger"),
                _ => Some("other"),
            })
            .collect();
        if self.machine.is_some() {
            names.insert(0, "usage marks (v1 root group)");
        }
        if names.is_empty() {
            "none (polling only)".into()
        } else {
            names.join(", ")
        }
    }

    /// Waits up to `timeout` for a notification. Returns why it woke. Signals (the signal
    /// pipe) end the wait early as `Timer`. A notification [`Waker::pending`] found ends it at
    /// once.
    pub fn wait(&mut self, timeout: Duration) -> Wake {
        if let Some(why) = self.fired.take() {
            return why;
        }
        self.poll(timeout).unwrap_or(Wake::Timer)
    }

    /// Whether a notification or a signal has come (a look, no wait): the daemon's loop has
    /// something to see to. What it found is kept for the next [`Waker::wait`], which returns
    /// it at once (a PSI trigger's event is consumed by the look that sees it).
    pub fn pending(&mut self) -> bool {
        if self.fired.is_none() {
            self.fired = self.poll(Duration::ZERO);
        }
        self.fired.is_some()
    }

    /// One `ppoll` of every source for up to `timeout`; the sources that fired drained. `None`
    /// when none did.
    fn poll(&mut self, timeout: Duration) -> Option<Wake> {
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
            return None;
        }
        let mut why = Wake::Timer;
        let mut broken = false;
        for i in 0..self.pollfds.len() {
            if self.pollfds[i].revents == 0 {
                continue;
            }
            if self.pollfds[i].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
                && i < self.sources.len()
            {
                // A source in error polls ready at once, every time: kept, it would make the
                // loop spin. A PSI trigger whose group was removed does that (the kernel's
                // file is gone, even if a group of the same name is made again).
                broken = true;
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
        if broken {
            for i in (0..self.sources.len()).rev() {
                if self.pollfds[i].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0 {
                    continue;
                }
                let src = self.sources.remove(i);
                if src.kind == Wake::Psi {
                    self.psi_broken = true;
                }
                self.notes.push(format!(
                    "the kernel's {} reported an error (revents {:#x}: its group removed?) and is dropped; polling meanwhile",
                    match src.kind {
                        Wake::Psi => "PSI trigger",
                        Wake::Threshold => "usage threshold notification",
                        Wake::PressureLevel => "memory.pressure_level notification",
                        Wake::ProcEvent => "process event socket",
                        Wake::Timer => "timer",
                    },
                    self.pollfds[i].revents
                ));
            }
        }
        Some(why)
    }

    /// True once after the PSI trigger was dropped for an error: register it again
    /// ([`Waker::set_psi`]).
    pub fn take_broken_psi(&mut self) -> bool {
        std::mem::take(&mut self.psi_broken)
    }
}

#[cfg(test)]
impl Waker {
    /// A waker with one eventfd source (a usage threshold's) and a signal pipe; with the
    /// eventfd and the pipe's write end, to fire them.
    pub(crate) fn bare() -> (Waker, OwnedFd, OwnedFd) {
        let ev = eventfd().unwrap();
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        let w = Waker {
            sources: vec![Source {
                fd: ev.try_clone().unwrap(),
                kind: Wake::Threshold,
                events: PollFlags::IN,
                drain: true,
                _keep: Vec::new(),
            }],
            pollfds: Vec::new(),
            signal_pipe: Some(pipe_r),
            armed_total_kb: 0,
            armed_levels: Levels::default(),
            armed_group: None,
            machine: None,
            machine_armed: None,
            machine_usage: None,
            notes: Vec::new(),
            fired: None,
            psi_broken: false,
        };
        (w, ev, pipe_w)
    }
}

#[cfg(test)]
impl Waker {
    /// What [`Waker::poll`] does with a PSI trigger in error (its group removed): dropped, and
    /// flagged to be registered again.
    pub(crate) fn psi_in_error(&mut self) {
        self.sources.retain(|s| s.kind != Wake::Psi);
        self.psi_broken = true;
    }

    /// Whether a PSI trigger is registered.
    pub(crate) fn psi_armed(&self) -> bool {
        self.sources.iter().any(|s| s.kind == Wake::Psi)
    }
}

/// Why `--psi` cannot act in `scope`: no pressure file to read or arm.
pub(crate) fn no_pressure_note(scope: &Scope, spec: PsiSpec) -> String {
    let why = match &scope.kind {
        ScopeKind::System => {
            "no /proc/pressure/memory: this kernel has PSI off (built without CONFIG_PSI, or \
             booted with psi=0, the default of some distributions: boot with psi=1) or is \
             older than 4.20"
        }
        ScopeKind::Cgroup(c) if c.version == CgVersion::V1 => {
            "a cgroup v1 group has no memory.pressure (PSI per group needs cgroup v2)"
        }
        ScopeKind::Cgroup(_) => {
            "the group has no memory.pressure (PSI off in this kernel: boot with psi=1)"
        }
    };
    format!(
        "--psi {spec} cannot act in {}: {why}; available memory and swap alone count",
        scope.label()
    )
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

    /// A source in error (a PSI trigger whose group was removed polls POLLERR at once, every
    /// time) is dropped with a note instead of making every wait return at once, and a PSI
    /// trigger's is flagged to be registered again.
    #[test]
    fn a_source_in_error_is_dropped_not_spun_on() {
        let (mut w, _ev, _pipe) = Waker::bare();
        let (r, wr) = rustix::pipe::pipe().unwrap();
        w.sources.push(Source {
            fd: r,
            kind: Wake::Psi,
            events: PollFlags::PRI,
            drain: false,
            _keep: Vec::new(),
        });
        drop(wr); // the read end now polls POLLHUP, at once and every time
        assert_eq!(w.poll(Duration::from_millis(200)), Some(Wake::Psi));
        assert_eq!(w.sources.len(), 1, "the broken source stayed");
        assert!(
            w.notes
                .iter()
                .any(|n| n.contains("PSI trigger reported an error")),
            "{:?}",
            w.notes
        );
        assert!(w.take_broken_psi());
        assert!(!w.take_broken_psi(), "flagged once");
        // Nothing left in error: the next wait waits.
        let t = std::time::Instant::now();
        assert_eq!(w.poll(Duration::from_millis(50)), None);
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
    }

    /// v1: a group removed and made again under the same name fires its eventfds once (the
    /// kernel's goodbye) and never again; the wake-up finds another group there and registers
    /// the thresholds and the pressure-level event on it. A wake-up of the same group
    /// registers nothing. (A fixture tree: `cgroup.event_control` is a plain file here, so
    /// what was registered is what was written to it.)
    #[test]
    fn thresholds_follow_a_group_made_again() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::write(
            r.join("proc/meminfo"),
            "MemTotal: 4000000 kB\nMemFree: 100 kB\nMemAvailable: 3000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        let mount = r.join("sys/fs/cgroup/memory");
        let app = mount.join("app");
        let make = |dir: &Path| {
            std::fs::create_dir_all(dir).unwrap();
            for (f, v) in [
                ("memory.limit_in_bytes", "1073741824\n"),
                ("memory.usage_in_bytes", "100000000\n"),
                ("memory.stat", "total_inactive_file 0\n"),
                ("memory.pressure_level", ""),
                ("cgroup.event_control", ""),
            ] {
                std::fs::write(dir.join(f), v).unwrap();
            }
        };
        make(&app);
        let root = crate::sense::Root::new(r);
        let mut scope = Scope::resolve(&root, &"cgroup:/app".parse().unwrap()).unwrap();
        let mem = scope.memory().unwrap();
        let lv = Levels {
            mem_term_kb: 100 << 10,
            mem_kill_kb: 50 << 10,
            swap_term_kb: 0,
            swap_kill_kb: 0,
        };
        let mut w = Waker::new(&mut scope, &lv, &mem, None, None);
        let control = app.join("cgroup.event_control");
        let registered = || std::fs::read_to_string(&control).unwrap();
        assert!(!registered().is_empty(), "nothing registered at start");
        let kinds = |w: &Waker, k: Wake| w.sources.iter().filter(|s| s.kind == k).count();
        assert_eq!(kinds(&w, Wake::Threshold), 1);
        assert_eq!(kinds(&w, Wake::PressureLevel), 1);

        // A threshold of the same group fired: nothing registered again.
        std::fs::write(&control, "").unwrap();
        w.rearm_if_changed(&mut scope, &lv, &mem, true, true);
        assert_eq!(registered(), "", "registered again for the same group");
        assert!(w.notes.is_empty(), "{:?}", w.notes);

        // Removed and made again (the old directory kept aside, so the new one cannot get
        // its inode back): the goodbye wake-up registers both anew, on the new group.
        std::fs::rename(&app, mount.join("old")).unwrap();
        make(&app);
        w.rearm_if_changed(&mut scope, &lv, &mem, true, true);
        let lines = registered();
        assert!(!lines.is_empty(), "nothing registered on the new group");
        assert_eq!(kinds(&w, Wake::Threshold), 1);
        assert_eq!(kinds(&w, Wake::PressureLevel), 1);
        assert!(
            w.notes.iter().any(|n| n.contains("removed and made again")),
            "{:?}",
            w.notes
        );
        // And only once: the next wake-up of the new group finds the group it registered on.
        w.notes.clear();
        std::fs::write(&control, "").unwrap();
        w.rearm_if_changed(&mut scope, &lv, &mem, true, true);
        assert_eq!(registered(), "");
        assert!(w.notes.is_empty(), "{:?}", w.notes);
    }

    /// `--psi` where there is no pressure file to read or arm (PSI off in the kernel): the
    /// guard says the level cannot act, and says nothing of the kind once the file is there.
    #[test]
    fn a_psi_level_that_cannot_act_is_said() {
        let d = tempfile::tempdir().unwrap();
        let proc = d.path().join("proc");
        std::fs::create_dir(&proc).unwrap();
        std::fs::write(
            proc.join("meminfo"),
            "MemTotal: 4000000 kB\nMemFree: 100 kB\nMemAvailable: 1000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .unwrap();
        let root = crate::sense::Root::new(d.path());
        let mut scope = Scope::resolve(&root, &crate::values::ScopeSpec::System).unwrap();
        let (mut w, _ev, _pipe) = Waker::bare();
        let spec: PsiSpec = "full:20:2s".parse().unwrap();
        w.arm_psi(&mut scope, Some(spec));
        assert_eq!(w.notes.len(), 1, "{:?}", w.notes);
        assert!(
            w.notes[0].starts_with(
                "--psi full:20:2s cannot act in system: no /proc/pressure/memory: this kernel has PSI off"
            ),
            "{}",
            w.notes[0]
        );
        let sources = w.sources.len();
        std::fs::create_dir(proc.join("pressure")).unwrap();
        std::fs::write(
            proc.join("pressure/memory"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        )
        .unwrap();
        w.notes.clear();
        w.arm_psi(&mut scope, Some(spec));
        assert!(
            !w.notes.iter().any(|n| n.contains("cannot act")),
            "{:?}",
            w.notes
        );
        assert_eq!(w.sources.len(), sources + 1, "no trigger armed on the file");
    }

    /// A look while the rescan runs (`pending`) finds a notification, drains it as a wait
    /// would, and keeps it: the next wait returns it at once, then waits as before.
    #[test]
    fn a_pending_notification_is_kept_for_the_next_wait() {
        let (mut w, ev, pipe_w) = Waker::bare();
        assert!(!w.pending(), "nothing has come");
        rustix::io::write(&ev, &1u64.to_ne_bytes()).unwrap();
        assert!(w.pending());
        assert!(w.pending(), "still pending until a wait takes it");
        let t = std::time::Instant::now();
        assert_eq!(w.wait(Duration::from_secs(5)), Wake::Threshold);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the kept wake-up waited"
        );
        // Drained by the look: the next wait is the timer's.
        assert_eq!(w.wait(Duration::from_millis(1)), Wake::Timer);
        assert!(!w.pending());

        // A signal (the pipe) is pending too, and ends the next wait as the timer.
        rustix::io::write(&pipe_w, b"x").unwrap();
        assert!(w.pending());
        assert_eq!(w.wait(Duration::from_secs(5)), Wake::Timer);
        assert!(!w.pending(), "the pipe was drained");
    }

    #[test]
    fn machine_marks_lie_the_fall_of_free_memory_to_each_level_above_usage() {
        // 64 GiB of RAM (margin 1 GiB), 21 GiB free, TERM 2 GiB: free memory reaches the near
        // level (4 GiB) plus the margin after 16 GiB more use, TERM after 18, KILL after 19.
        let usage = 3u64 << 30;
        let m = machine_marks(usage, 21 * GIB_KB, 64 * GIB_KB, &levels(2));
        assert_eq!(
            m,
            Some([usage + (16 << 30), usage + (18 << 30), usage + (19 << 30)])
        );
        // Free memory too close to the near level (under 512 MiB above it and the margin): no
        // marks; the page cache has taken it, or memory is already near.
        assert_eq!(
            machine_marks(usage, 5 * GIB_KB + (511 << 10), 64 * GIB_KB, &levels(2)),
            None
        );
        assert!(machine_marks(usage, 5 * GIB_KB + (512 << 10), 64 * GIB_KB, &levels(2)).is_some());
        // TERM 0 (the guard is off): none.
        assert_eq!(
            machine_marks(usage, 21 * GIB_KB, 64 * GIB_KB, &levels(0)),
            None
        );
    }

    #[test]
    fn machine_marks_are_armed_again_only_when_free_memory_fell_more_than_usage_rose() {
        let (total, l) = (64 * GIB_KB, levels(2));
        // 21 GiB free: 16 GiB above the near level and the margin; an eighth is 2 GiB.
        let armed = Armed {
            free_kb: 21 * GIB_KB,
            usage: 3 << 30,
        };
        let due = |free_gib_tenths: u64, usage_gib_tenths: u64| {
            machine_drift_due(
                armed,
                free_gib_tenths * GIB_KB / 10,
                usage_gib_tenths * (1 << 30) / 10,
                total,
                &l,
            )
        };
        // Nothing moved; a process took 5 GiB (usage rose as free memory fell); one gave 2 back.
        assert!(!due(210, 30));
        assert!(!due(160, 80));
        assert!(!due(230, 10));
        // The kernel took 1.5 GiB (free fell, usage did not): under an eighth; 2 GiB: re-arm.
        assert!(!due(195, 30));
        assert!(due(190, 30));
        // Both: a process took 1 GiB and the kernel 2 GiB more.
        assert!(due(180, 40));
        // Close to the near level, the drift allowed is at least 64 MiB.
        let armed = Armed {
            free_kb: 5 * GIB_KB + (512 << 10),
            usage: 0,
        };
        assert!(!machine_drift_due(
            armed,
            armed.free_kb - (63 << 10),
            0,
            total,
            &l
        ));
        assert!(machine_drift_due(
            armed,
            armed.free_kb - (64 << 10),
            0,
            total,
            &l
        ));
    }
}
