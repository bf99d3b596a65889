//! One kill: the victim (and, by `--kill-unit`, its descendants or its whole leaf cgroup),
//! pinned by pidfds before any signal, signalled together, each signal recorded with the
//! milliseconds since the decision.

use std::path::PathBuf;
use std::time::Instant;

use rustix::process::Signal;
use serde::Serialize;

use super::pidfd::{Target, TargetError};
use crate::decide::victim::Candidate;
use crate::sense::cgroup::{CgVersion, memory_path_of};
use crate::sense::procs::ProcReader;
use crate::sense::scope::Scope;
use crate::values::KillUnit;

/// The live descendants of `root` from a fresh walk of /proc (parent links from `stat`), with
/// their start times; never PID 1 or oomguard itself.
pub fn descendants_now(reader: &mut ProcReader, root: i32) -> Vec<(i32, u64)> {
    let mut pids = Vec::new();
    let _ = reader.pids(&mut pids);
    let me = std::process::id() as i32;
    let links: Vec<(i32, i32, u64)> = pids
        .iter()
        .filter_map(|&p| reader.stat(p).ok().map(|s| (p, s.ppid, s.starttime)))
        .collect();
    let mut out: Vec<(i32, u64)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(p, ppid, start) in &links {
            if ppid == parent && p != me && p != 1 && !out.iter().any(|&(x, _)| x == p) {
                out.push((p, start));
                frontier.push(p);
            }
        }
    }
    out
}

/// One signal sent.
#[derive(Debug, Clone, Serialize)]
pub struct SignalSent {
    pub signal: &'static str,
    /// Milliseconds since the wake-up that led to the decision.
    pub ms: u64,
    /// The same in microseconds (decision latency: wake-up to signal).
    pub us: u64,
    pub pid: i32,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The errno name when the signal failed (`EPERM`: not permitted, e.g. another user's
    /// process without CAP_KILL; `ESRCH`: the process exited before the signal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<&'static str>,
}

fn errno_name(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ESRCH) => "ESRCH",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EACCES) => "EACCES",
        _ => "other",
    }
}

/// The processes of one kill decision, pinned.
#[derive(Debug)]
pub struct Kill {
    pub victim: Target,
    pub others: Vec<Target>,
    /// v2 leaf cgroup's `cgroup.kill` (real path) for `--kill-unit cgroup`.
    pub cgroup_kill: Option<PathBuf>,
    pub signals: Vec<SignalSent>,
    pub decided: Instant,
    pub released: bool,
    /// What the unit resolved to, for the record (`process`, `tree (3 processes)`, …).
    pub unit_note: String,
}

fn name(sig: Option<Signal>) -> &'static str {
    match sig {
        Some(Signal::KILL) => "SIGKILL",
        Some(_) => "SIGTERM",
        None => "0",
    }
}

impl Kill {
    /// Pins the victim and the rest of its kill unit. Fails only if the victim itself cannot be
    /// pinned (gone or PID reused); members of the unit that vanish are skipped.
    pub fn plan(
        reader: &mut ProcReader,
        scope: &Scope,
        unit: KillUnit,
        victim: &Candidate,
        decided: Instant,
    ) -> Result<Kill, TargetError> {
        let main = Target::open(reader, victim.pid, victim.starttime)?;
        let mut kill = Kill {
            victim: main,
            others: Vec::new(),
            cgroup_kill: None,
            signals: Vec::new(),
            decided,
            released: false,
            unit_note: "process".into(),
        };
        let me = std::process::id() as i32;
        match unit {
            KillUnit::Process => {}
            KillUnit::Tree => {
                // A fresh walk of /proc, not the ranker's table: a storm forks faster than scans.
                for (pid, start) in descendants_now(reader, victim.pid) {
                    if let Ok(t) = Target::open(reader, pid, start) {
                        kill.others.push(t);
                    }
                }
                kill.unit_note = format!("tree ({} processes)", kill.others.len() + 1);
            }
            KillUnit::Cgroup => {
                let prefer_v2 = scope.mounts.v2_memory.is_some();
                let text = reader.cgroup_text(victim.pid).unwrap_or_default();
                let leaf = memory_path_of(&text, prefer_v2).unwrap_or("/").to_string();
                let (mount, version) = match (prefer_v2, &scope.mounts) {
                    (true, m) => (m.v2_memory.clone(), CgVersion::V2),
                    (false, m) => (m.v1_memory.clone(), CgVersion::V1),
                };
                match mount {
                    Some(mount) if leaf != "/" => {
                        let dir = mount.join(leaf.trim_start_matches('/'));
                        if version == CgVersion::V2
                            && scope.root.path(dir.join("cgroup.kill")).exists()
                        {
                            kill.cgroup_kill = Some(scope.root.path(dir.join("cgroup.kill")));
                        }
                        let procs =
                            std::fs::read_to_string(scope.root.path(dir.join("cgroup.procs")))
                                .unwrap_or_default();
                        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            if pid == victim.pid || pid == me || pid == 1 {
                                continue;
                            }
                            if let Ok(st) = reader.stat(pid)
                                && let Ok(t) = Target::open(reader, pid, st.starttime)
                            {
                                kill.others.push(t);
                            }
                        }
                        kill.unit_note =
                            format!("cgroup {leaf} ({} processes)", kill.others.len() + 1);
                    }
                    _ => {
                        kill.unit_note = "process (the victim is in the root cgroup; not killing a whole root group)".into();
                    }
                }
            }
        }
        Ok(kill)
    }

    /// Sends `sig` to every pinned process (SIGKILL to a v2 group goes through `cgroup.kill`).
    pub fn signal_all(&mut self, sig: Signal) {
        self.send(Some(sig));
    }

    /// The same path as [`Kill::signal_all`] with signal 0 (checks, sends nothing; `cgroup.kill`
    /// is not written): the start-up warm-up, so the first real kill runs resident code.
    pub fn probe_all(&mut self) {
        self.send(None);
    }

    fn send(&mut self, sig: Option<Signal>) {
        let us = self.decided.elapsed().as_micros() as u64;
        let fire = |t: &Target| match sig {
            Some(s) => t.signal(s),
            None => t.probe(),
        };
        let mut push = |pid: i32, r: std::io::Result<()>| {
            let (error, errno) = match &r {
                Ok(()) => (None, None),
                Err(e) => (Some(e.to_string()), Some(errno_name(e))),
            };
            self.signals.push(SignalSent {
                signal: name(sig),
                ms: us / 1000,
                us,
                pid,
                ok: r.is_ok(),
                error,
                errno,
            });
        };
        push(self.victim.pid, fire(&self.victim));
        if sig == Some(Signal::KILL)
            && let Some(ck) = &self.cgroup_kill
        {
            let r = std::fs::write(ck, "1");
            if r.is_ok() {
                for t in &self.others {
                    push(t.pid, Ok(()));
                }
                return;
            }
        }
        for t in &self.others {
            push(t.pid, fire(t));
        }
    }

    /// The victim's own signal, if it failed (the last one sent to it).
    pub fn victim_failed(&self) -> Option<&SignalSent> {
        self.signals
            .iter()
            .rev()
            .find(|s| s.pid == self.victim.pid)
            .filter(|s| !s.ok)
    }

    /// `process_mrelease` on every pinned process (after SIGKILL only).
    pub fn release(&mut self) {
        let mut any = false;
        for t in std::iter::once(&self.victim).chain(&self.others) {
            any |= t.mrelease().is_ok();
        }
        self.released |= any;
    }

    /// True once the victim and every other pinned process has exited.
    pub fn all_exited(&self) -> bool {
        self.victim.exited() && self.others.iter().all(Target::exited)
    }
}
