//! Protection writes: a rule's `oom_score_adj` written to every matching process of the scope,
//! so the kernel's OOM killer agrees with oomguard's rules.
//!
//! [`Protector`] classifies one process and writes its target value (reporting written /
//! refused / gone per process, never failing the caller); the daemon's protection loop
//! (`crate::daemon::guardian::Guardian`) calls it on process events and scans.
//!
//! Each write or refusal is a `protect` record in the event log with these fields: `pid`,
//! `comm`, `cmdline`, `rule` (its origin, `FILE:LINE`), `rule_kind`, `old_oom_score_adj`,
//! `oom_score_adj` (the target), `outcome` (`written` | `refused` | `gone` | `failed`), `error`
//! (when not written), `via` (`start` | `fork` | `exec` | `comm` | `lost` | `scan` | `reload` |
//! `once`), `latency_ms` (event-driven writes: from the kernel's event to the completed write).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::decide::policy::{Policy, RuleKind};
use crate::decide::rank::CmdlineSide;
use crate::decide::victim::classify;
use crate::record::emit::SharedSinks;
use crate::record::event::{Event, Protect};
use crate::record::eventlog::EventLog;
use crate::sense::Root;
use crate::sense::cgroup::{CgVersion, memory_path_of};
use crate::sense::details::{Details, Lookup};
use crate::sense::procevents::{ProcEvent, monotonic_ns};
use crate::sense::procs::ProcReader;
use crate::sense::scope::{Scope, ScopeKind};

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// EACCES/EPERM: lowering below 0 needs CAP_SYS_RESOURCE.
    Refused,
    /// The process exited before the write.
    Gone,
    /// Any other error.
    Failed,
}

impl Outcome {
    /// As written in records and JSON output (`written`, `refused`, `gone`, `failed`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::Refused => "refused",
            Outcome::Gone => "gone",
            Outcome::Failed => "failed",
        }
    }
}

/// The result of writing `value` to `/proc/PID/oom_score_adj` of the process `pid` that
/// started at `starttime`, with a message for the failures. The file is opened first, and the
/// process's start time read after: an open `/proc/PID` file stays bound to the process that
/// had the PID when it was opened (a write to it after that process ended fails with ESRCH),
/// so a PID handed to another process since the rules were matched is never written (`Gone`).
pub fn write_adj(
    root: &Root,
    reader: &mut ProcReader,
    pid: i32,
    starttime: u64,
    value: i16,
) -> (Outcome, Option<String>) {
    let path = root.path(format!("proc/{pid}/oom_score_adj"));
    let res = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| {
            if !reader.stat(pid).is_ok_and(|st| st.starttime == starttime) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            f.write_all(format!("{value}\n").as_bytes())
        });
    match res {
        Ok(()) => (Outcome::Written, None),
        Err(e) => match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => (
                Outcome::Refused,
                Some(format!(
                    "EACCES: permission denied writing {}: lowering oom_score_adj below 0 needs CAP_SYS_RESOURCE",
                    path.display()
                )),
            ),
            Some(libc::ENOENT) | Some(libc::ESRCH) => {
                (Outcome::Gone, Some("the process exited".into()))
            }
            _ => (
                Outcome::Failed,
                Some(format!("cannot write {}: {e}", path.display())),
            ),
        },
    }
}

/// Which processes the rules apply to (all, or those of one memory cgroup and its
/// descendants), and which cgroup path rules' `cgroup`/`unit` fields see (as the daemon's
/// ranking does: the v2 path when the memory controller is on cgroup2, else the v1 one).
#[derive(Debug, Clone, Default)]
pub struct ScopeFilter {
    /// The scope's group as in /proc/PID/cgroup, and its hierarchy; `None`: the whole system.
    pub cgroup: Option<(String, CgVersion)>,
    pub prefer_v2: bool,
}

impl ScopeFilter {
    /// Every process.
    pub fn system() -> ScopeFilter {
        ScopeFilter::default()
    }

    pub fn of(scope: &Scope) -> ScopeFilter {
        ScopeFilter {
            cgroup: match &scope.kind {
                ScopeKind::System => None,
                ScopeKind::Cgroup(c) => Some((c.rel.clone(), c.version)),
            },
            prefer_v2: scope.mounts.v2_memory.is_some(),
        }
    }

    fn contains(&self, reader: &mut ProcReader, pid: i32) -> bool {
        let Some((rel, version)) = &self.cgroup else {
            return true;
        };
        let Ok(text) = reader.cgroup_text(pid) else {
            return false;
        };
        let Some(path) = memory_path_of(&text, *version == CgVersion::V2) else {
            return false;
        };
        path_within(path, rel)
    }
}

/// True when cgroup `path` is `group` or below it (component-wise).
fn path_within(path: &str, group: &str) -> bool {
    let group = group.trim_end_matches('/');
    group.is_empty()
        || path == group
        || path
            .strip_prefix(group)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One process that a rule matches, with its current and target value.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
    /// Where the rule came from (`FILE:LINE` or the flag).
    pub rule: String,
    pub rule_kind: RuleKind,
    pub current: Option<i16>,
    /// The rule's `oom_score_adj`, if it has one.
    pub target: Option<i16>,
}

/// One write (or refusal), as recorded in the event log ([`crate::record::event::Protect`]).
#[derive(Debug, Clone)]
pub struct Applied {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
    pub rule: String,
    pub rule_kind: RuleKind,
    pub old_oom_score_adj: Option<i16>,
    pub oom_score_adj: i16,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub via: &'static str,
    pub latency_ms: Option<f64>,
}

impl From<&Applied> for Protect {
    fn from(a: &Applied) -> Protect {
        Protect {
            pid: a.pid,
            comm: a.comm.clone(),
            cmdline: a.cmdline.clone(),
            rule: a.rule.clone(),
            rule_kind: a.rule_kind.as_str().to_string(),
            old_oom_score_adj: a.old_oom_score_adj,
            oom_score_adj: a.oom_score_adj,
            outcome: a.outcome.as_str().to_string(),
            error: a.error.clone(),
            via: a.via.to_string(),
            latency_ms: a.latency_ms,
            extra: Default::default(),
        }
    }
}

/// Counters of what the protection did (for tests, metrics and `--verbose`).
#[derive(Debug, Default)]
pub struct Stats {
    pub events: AtomicU64,
    pub written: AtomicU64,
    pub refused: AtomicU64,
    pub gone: AtomicU64,
    /// Scans finished (the one at start included).
    pub rescans: AtomicU64,
    pub lost: AtomicU64,
}

/// How long one process's check waits for the command lines its rules need, and a record for
/// its command line (a read that waits on a locked memory map is given up after 5 ms anyway:
/// `sense::details`).
const CMDLINE_WAIT: Duration = Duration::from_millis(20);

/// A process whose rule could not be told: a rule before its match needed the command line,
/// and the side thread had not read it in time. Checked again at [`Protector::retry`] with
/// the event that first asked (its latency then includes the wait).
#[derive(Debug, Clone, Copy)]
struct Undecided {
    pid: i32,
    via: &'static str,
    event_ns: Option<u64>,
}

/// The most undecided processes kept; past that (a fork storm while a read is stuck) the next
/// retry that gets through ends with a scan of all processes instead.
const MAX_UNDECIDED: usize = 4096;

/// What the rules make of one process.
enum Verdict {
    /// No rule, or nothing to apply (a kernel thread, a zombie, outside the scope, gone).
    Nothing,
    /// The first matching rule, with the process's name and start time.
    Rule(usize, String, u64),
    /// Not known yet (see [`Undecided`]).
    Undecided,
}

/// Classifies processes and writes their rule's `oom_score_adj`.
pub struct Protector {
    root: Root,
    reader: ProcReader,
    filter: ScopeFilter,
    policy: Policy,
    log: Option<EventLog>,
    /// Where each record goes once written (the daemon's metrics, notifications, journal).
    sinks: Option<SharedSinks>,
    /// Processes whose write was refused: (starttime, target), not retried.
    refused: HashMap<i32, (u64, i16)>,
    pub stats: Arc<Stats>,
    pids: Vec<i32>,
    /// Reads command lines on its own thread ([`Protector::read_on_side`]; `None`: read here,
    /// as a one-shot command does).
    details: Option<Details>,
    undecided: Vec<Undecided>,
    /// Processes were left out of `undecided` (it was full): a scan is owed.
    undecided_overflow: bool,
}

impl Protector {
    /// Passes a reopen signal on to the event log's writer (see `EventLog::poke_reopen`).
    pub fn poke_log(&self) {
        if let Some(log) = &self.log {
            log.poke_reopen();
        }
    }

    pub fn new(
        root: &Root,
        filter: ScopeFilter,
        policy: Policy,
        log: Option<EventLog>,
    ) -> std::io::Result<Protector> {
        Ok(Protector {
            root: root.clone(),
            reader: ProcReader::open(root)?,
            filter,
            policy,
            log,
            sinks: None,
            refused: HashMap::new(),
            stats: Arc::default(),
            pids: Vec::new(),
            details: None,
            undecided: Vec::new(),
            undecided_overflow: false,
        })
    }

    /// Every record written from now on also goes to `sinks` (the daemon's: its protection
    /// thread's records are counted, signalled and journaled as its other records are).
    pub fn with_sinks(mut self, sinks: SharedSinks) -> Protector {
        self.sinks = Some(sinks);
        self
    }

    /// Command lines are read on a side thread from now on (the protection thread's way): such
    /// a read waits on the process's mmap lock (for seconds, when it faults at the bottom of
    /// memory), and one stuck read must not stop the protection of every other process. A
    /// process not read in time is undecided, and checked again at [`Protector::retry`].
    pub fn read_on_side(mut self) -> std::io::Result<Protector> {
        self.details = Some(Details::start(&self.root, self.filter.prefer_v2, None)?);
        Ok(self)
    }

    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
        self.refused.clear();
    }

    /// The first rule matching `pid` (see [`Verdict`]). `inline`: command lines are read
    /// here even with a side thread (`matches`, which waits for every answer).
    fn classify(&mut self, pid: i32, inline: bool) -> Verdict {
        let Ok(stat) = self.reader.stat(pid) else {
            return Verdict::Nothing;
        };
        if stat.is_kthread() || stat.is_zombie() {
            return Verdict::Nothing;
        }
        if !self.filter.contains(&mut self.reader, pid) {
            return Verdict::Nothing;
        }
        // The uid costs a read of `status`: only when a rule looks at it.
        let uid = if self.policy.rules.iter().any(|r| r.user.is_some()) {
            self.reader.status(pid).ok().and_then(|s| s.uid)
        } else {
            None
        };
        let mut budget = CMDLINE_WAIT;
        let class = classify(
            &mut self.reader,
            &self.policy,
            pid,
            &stat.comm,
            uid,
            self.filter.prefer_v2,
            self.details
                .as_ref()
                .filter(|_| !inline)
                .map(|details| CmdlineSide {
                    details: Some(details),
                    cgroups: None,
                    starttime: stat.starttime,
                    budget: &mut budget,
                }),
        );
        if class.unsure {
            return Verdict::Undecided;
        }
        match class.rule {
            Some(idx) => Verdict::Rule(
                idx,
                stat.comm.to_string_lossy().into_owned(),
                stat.starttime,
            ),
            None => Verdict::Nothing,
        }
    }

    /// The command line for a record: from the side thread if there is one (empty if not
    /// read in time).
    fn record_cmdline(&mut self, pid: i32, starttime: u64) -> String {
        match &self.details {
            Some(d) => match d.lookup((pid, starttime), CMDLINE_WAIT) {
                Lookup::Found((cmdline, _)) => cmdline,
                Lookup::Gone | Lookup::Late => String::new(),
            },
            None => self.reader.cmdline(pid).unwrap_or_default(),
        }
    }

    /// Checks again the processes left undecided, until every side reader is stuck (the rest
    /// wait for the next retry, at no cost); one stuck on a process's read leaves it undecided,
    /// and the others are read by the reader still free. Processes gone meanwhile drop out; a
    /// scan follows if some were not kept.
    pub fn retry(&mut self) {
        let mut list = std::mem::take(&mut self.undecided);
        list.sort_unstable_by_key(|u| u.pid);
        list.dedup_by_key(|u| u.pid);
        let mut i = 0;
        while i < list.len() {
            let u = list[i];
            i += 1;
            let before = self.undecided.len();
            self.check(u.pid, u.via, u.event_ns);
            if self.undecided.len() > before && self.details.as_ref().is_none_or(Details::stuck) {
                break;
            }
        }
        self.undecided.extend_from_slice(&list[i..]);
        if self.undecided.is_empty() && std::mem::take(&mut self.undecided_overflow) {
            self.scan("scan");
        }
    }

    /// Whether some process waits for its rule to be told ([`Protector::retry`]).
    pub fn has_undecided(&self) -> bool {
        !self.undecided.is_empty() || self.undecided_overflow
    }

    fn defer(&mut self, pid: i32, via: &'static str, event_ns: Option<u64>) {
        if self.undecided.len() >= MAX_UNDECIDED {
            self.undecided_overflow = true;
            return;
        }
        self.undecided.push(Undecided { pid, via, event_ns });
    }

    /// Applies the rules to one process. `event_ns`: the kernel's timestamp of the event that
    /// caused the check (for the latency). Returns what was written or refused, if anything.
    pub fn check(&mut self, pid: i32, via: &'static str, event_ns: Option<u64>) -> Option<Applied> {
        let (idx, comm, start) = match self.classify(pid, false) {
            Verdict::Rule(idx, comm, start) => (idx, comm, start),
            Verdict::Undecided => {
                self.defer(pid, via, event_ns);
                return None;
            }
            Verdict::Nothing => return None,
        };
        let rule = &self.policy.rules[idx];
        let target = rule.oom_score_adj?;
        let current = self.reader.oom_score_adj(pid).ok();
        if current == Some(target) {
            return None;
        }
        // Refused once, refused again (the process, its start time and the value are the
        // same): not tried again, whatever the cause of the check. A process that renames
        // itself or execs in a loop would otherwise have a refused write, a warning and a
        // record for every event.
        if self.refused.get(&pid) == Some(&(start, target)) {
            return None;
        }
        let (outcome, error) = write_adj(&self.root, &mut self.reader, pid, start, target);
        let latency_ms = event_ns.map(|ns| monotonic_ns().saturating_sub(ns) as f64 / 1_000_000.0);
        let cmdline = self.record_cmdline(pid, start);
        let rule = &self.policy.rules[idx];
        let applied = Applied {
            pid,
            comm,
            cmdline,
            rule: rule.origin.clone(),
            rule_kind: rule.kind,
            old_oom_score_adj: current,
            oom_score_adj: target,
            outcome,
            error,
            via,
            latency_ms,
        };
        match applied.outcome {
            Outcome::Written => {
                self.refused.remove(&pid);
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Refused | Outcome::Failed => {
                self.refused.insert(pid, (start, target));
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Gone => {
                self.stats.gone.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        self.report(&applied);
        Some(applied)
    }

    fn report(&self, a: &Applied) {
        let old = a.old_oom_score_adj.map_or("?".into(), |v| v.to_string());
        match a.outcome {
            Outcome::Written => log::info!(
                "protect: pid {} ({}) oom_score_adj {old} -> {} (rule {}, via {}{})",
                a.pid,
                a.comm,
                a.oom_score_adj,
                a.rule,
                a.via,
                a.latency_ms
                    .map_or(String::new(), |l| format!(", {l:.2} ms after the event"))
            ),
            _ => log::warn!(
                "protect: pid {} ({}) keeps oom_score_adj {old}, not {}: {} (rule {})",
                a.pid,
                a.comm,
                a.oom_score_adj,
                a.error.as_deref().unwrap_or("failed"),
                a.rule
            ),
        }
        if let Some(log) = &self.log {
            match log.append(Event::Protect(Protect::from(a))) {
                Ok(rec) => {
                    if let Some(s) = &self.sinks {
                        s.take(&rec);
                    }
                }
                Err(e) => log::error!("{e}"),
            }
        }
    }

    /// Applies the rules to every process of the scope.
    /// Applies the rules to every process of the scope; counted in `stats.rescans` when done.
    pub fn scan(&mut self, via: &'static str) -> Vec<Applied> {
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        if let Err(e) = self.reader.pids(&mut pids) {
            log::error!("protect: cannot list processes: {e}");
        }
        pids.sort_unstable();
        let out = pids
            .iter()
            .filter_map(|&pid| self.check(pid, via, None))
            .collect();
        self.refused.retain(|p, _| pids.binary_search(p).is_ok());
        self.pids = pids;
        self.stats.rescans.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// Every process of the scope that a rule matches, with current and target values.
    pub fn matches(&mut self) -> std::io::Result<Vec<Match>> {
        let mut pids = Vec::new();
        self.reader.pids(&mut pids)?;
        pids.sort_unstable();
        let mut out = Vec::new();
        for pid in pids {
            let Verdict::Rule(idx, comm, _) = self.classify(pid, true) else {
                continue;
            };
            let rule = &self.policy.rules[idx];
            let (origin, kind, target) = (rule.origin.clone(), rule.kind, rule.oom_score_adj);
            out.push(Match {
                pid,
                comm,
                cmdline: self.reader.cmdline(pid).unwrap_or_default(),
                rule: origin,
                rule_kind: kind,
                current: self.reader.oom_score_adj(pid).ok(),
                target,
            });
        }
        Ok(out)
    }

    /// Handles a batch of process events; a lost-events signal (any number) means one rescan.
    pub fn handle(&mut self, events: &[ProcEvent]) {
        self.stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut lost = false;
        for ev in events {
            match *ev {
                ProcEvent::Fork {
                    child_pid,
                    child_tgid,
                    ts_ns,
                    ..
                } if child_pid == child_tgid => {
                    self.check(child_tgid, "fork", Some(ts_ns));
                }
                ProcEvent::Exec { tgid, ts_ns, .. } => {
                    self.check(tgid, "exec", Some(ts_ns));
                }
                // A thread's new name is not the process's (rules see the main thread's).
                ProcEvent::Comm { pid, tgid, ts_ns } if pid == tgid => {
                    self.check(tgid, "comm", Some(ts_ns));
                }
                ProcEvent::Exit { pid, tgid } if pid == tgid => {
                    self.refused.remove(&pid);
                }
                ProcEvent::Lost => lost = true,
                _ => {}
            }
        }
        if lost {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            log::warn!("protect: the kernel dropped process events; rescanning all processes");
            self.scan("lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_nest_by_component() {
        assert!(path_within("/a/b", "/a"));
        assert!(path_within("/a", "/a"));
        assert!(!path_within("/ab", "/a"));
        assert!(path_within("/anything", "/"));
    }
}
