//! The typed event-log record: what the daemon and the fleet features write, and what every
//! reader (`oomguard events`, metrics, journald, notifications, hooks, the watch list) reads.
//!
//! # Wire format
//!
//! The event log is JSON lines: one object per line, appended, never rewritten
//! (`docs/cli-contract.md`). Sizes are in kB (KiB) and their fields end in `_kb`; durations end
//! in `_ms` (milliseconds) or `_us` (microseconds); shares end in `_pct` (percent, 0 to 100).
//! Field order within a line is not significant.
//!
//! Every record has:
//! - `time`: RFC 3339 with milliseconds and the local offset (`2026-11-30T17:45:19.123+00:00`);
//! - `action`: the record kind (below);
//! - `scope`: what the writer guards (`system` or a cgroup path);
//! - `host`: the machine's host name.
//!
//! Record kinds (`action`) and their fields:
//! - `kill`, `dry_run`, `kill_failed` ([`Decision`]): `trigger` ([`Trigger`]: `reason`,
//!   `severity`, `available_kb`, `total_kb`, `swap_free_kb`, `swap_total_kb`, `mem_term_kb`,
//!   `mem_kill_kb`, `swap_term_kb`, `swap_kill_kb`, `psi`? {`kind`, `share_pct`, `level_pct`,
//!   `window_ms`}), `victim` ([`Victim`]: `pid`, `comm`, `cmdline`, `uid`, `rss_kb`,
//!   `swap_kb`, `pgtables_kb`, `oom_score_adj`, `score`, `badness`, `cgroup`, `rule`?),
//!   `candidates` (the top five, [`Candidate`]: `pid`, `comm`, `uid`, `rss_kb`, `swap_kb`,
//!   `pgtables_kb`, `oom_score_adj`, `badness`, `score`, `rule`?), `kill_unit` (`process`,
//!   `tree` or `cgroup`: what the decision signals; a `dry_run`'s is the configured one),
//!   `kill_unit_note`? (what it resolved to: `tree (4 processes)`, `cgroup /job (2
//!   processes)`, or why the victim went alone), `decision_us`; `kill` and `kill_failed` add `ok` (true for `kill`, false for
//!   `kill_failed`) and `signals` ([`Signal`]: `signal`, `ms`, `us`, `pid`, `ok`, `error`?,
//!   `errno`?); `kill` adds `outcome` ([`Outcome`]: `exited`, `exit_ms`, `freed_kb`,
//!   `released`, `release_pending`?, `available_after_kb`) and `faults` {`to_signal`,
//!   `to_outcome`: {`minflt`, `majflt`, `inblock`}}; `kill_failed` adds `then` (`next_candidate` or
//!   `wait`).
//! - `kill_backoff` ([`Backoff`]): a kill freed almost nothing while memory stayed low: `pid`,
//!   `comm`, `rss_kb`, `freed_kb`, `tiny_kb`, `available_kb`, `total_kb`, `mem_term_kb`,
//!   `shmem_kb`?, `shmem_source`, `reason`.
//! - `kernel_kill` ([`KernelKill`]): the kernel's OOM killer acted: `oom_kills` (the counter's
//!   increase), `counter` (its source), `available_kb`, `total_kb`; the system scope's daemon
//!   adds `constraint`? (what ran out, from the kernel log: `memcg` when every kill was at a
//!   memory cgroup's own limit, else `global`, `cpuset`, `mempolicy` or `unknown`),
//!   `oom_memcg`? (the group whose limit was hit, for `memcg`) and `held`? (whether choices
//!   were held back: false only for `memcg`); `oomguard drill` adds `drill`, `victim` {`pid`,
//!   `comm`}, `peak_kb`, `kernel_log`.
//! - `warn` ([`Warn`]): memory use crossed the warning level: `state` (`high` or `cleared`),
//!   `used_pct`, `level_pct`, `clear_pct`, `available_kb`, `total_kb`.
//! - `protect` ([`Protect`]): an `oom_score_adj` write: `pid`, `comm`, `cmdline`, `rule`,
//!   `rule_kind`, `old_oom_score_adj`, `oom_score_adj`, `outcome` (`written`, `refused`,
//!   `gone`, `failed`), `error`?, `via`, `latency_ms`?.
//! - `missing` ([`Missing`]): after an OOM event a watched program is not running: `watch`,
//!   `restart` (its restart command), `restarts_left`, `after` ([`After`]).
//! - `restart` ([`Restart`]): a restart of a missing program: `watch`, `argv`, `attempt`,
//!   `max_restarts`, `ok`, `exit_code`, `timed_out`, `error`, `ms`, `running_after`, `after`.
//!
//! `?` marks a field that is left out when it has no value; other optional values are `null`.
//!
//! # Compatibility
//!
//! New fields may be added to any kind; readers ignore what they do not know, and a record
//! read and written back keeps them (every kind holds them in `extra`). Fields missing from an
//! old record read as their default (0, empty, `null`). A kind this version does not know (a
//! newer writer's) reads as [`Event::Other`] with its fields as written, prints with an empty
//! description and is written back unchanged; it is never an error.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields a reader does not know, kept as written.
pub type Extra = Map<String, Value>;

/// One line of the event log: the common fields and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// RFC 3339 with milliseconds and the offset.
    pub time: String,
    /// `system` or the cgroup guarded.
    pub scope: String,
    /// The writer's host name.
    pub host: String,
    pub event: Event,
}

/// What happened (the `action` field and what it brings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Event {
    /// A victim was signalled.
    Kill(Decision),
    /// A victim would have been signalled (`--dry-run`).
    DryRun(Decision),
    /// The victim's signal failed (`ok: false`).
    KillFailed(Decision),
    /// A kill freed almost nothing; kills are held back.
    KillBackoff(Backoff),
    /// The kernel's OOM killer acted in the scope.
    KernelKill(KernelKill),
    /// Memory use crossed the warning level (either way).
    Warn(Warn),
    /// An `oom_score_adj` write by a protect rule.
    Protect(Protect),
    /// A watched program is not running after an OOM event.
    Missing(Missing),
    /// A restart of a missing watched program.
    Restart(Restart),
    /// A kind this version does not know: its `action` and every other field as written.
    #[serde(skip)]
    Other { action: String, fields: Extra },
}

/// The record kinds this version knows, as written in `action`.
pub const ACTIONS: &[&str] = &[
    "kill",
    "dry_run",
    "kill_failed",
    "kill_backoff",
    "kernel_kill",
    "warn",
    "protect",
    "missing",
    "restart",
];

/// Why the daemon acted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Trigger {
    pub reason: String,
    pub severity: String,
    pub available_kb: u64,
    pub total_kb: u64,
    pub swap_free_kb: u64,
    pub swap_total_kb: u64,
    pub mem_term_kb: u64,
    pub mem_kill_kb: u64,
    pub swap_term_kb: u64,
    pub swap_kill_kb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The pressure stall trigger that fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Psi {
    pub kind: String,
    pub share_pct: f64,
    pub level_pct: f64,
    pub window_ms: u64,
}

/// The chosen process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Victim {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
    pub uid: Option<u32>,
    pub rss_kb: u64,
    pub swap_kb: u64,
    pub pgtables_kb: u64,
    pub oom_score_adj: i16,
    pub score: i64,
    pub badness: i64,
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One of the top candidates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Candidate {
    pub pid: i32,
    pub comm: String,
    pub uid: Option<u32>,
    pub rss_kb: u64,
    pub swap_kb: u64,
    pub pgtables_kb: u64,
    pub oom_score_adj: i16,
    pub badness: i64,
    pub score: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl From<&crate::decide::victim::Candidate> for Candidate {
    fn from(c: &crate::decide::victim::Candidate) -> Candidate {
        Candidate {
            pid: c.pid,
            comm: c.comm.clone(),
            uid: c.uid,
            rss_kb: c.rss_kb,
            swap_kb: c.swap_kb,
            pgtables_kb: c.pgtables_kb,
            oom_score_adj: c.oom_score_adj,
            badness: c.badness,
            score: c.score,
            rule: c.rule.clone(),
            extra: Extra::new(),
        }
    }
}

/// One signal sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Signal {
    pub signal: String,
    /// Milliseconds since the wake-up that led to the decision.
    pub ms: u64,
    /// The same in microseconds.
    pub us: u64,
    pub pid: i32,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The errno name when the signal failed (`EPERM`, `ESRCH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
}

impl From<&crate::act::kill::SignalSent> for Signal {
    fn from(s: &crate::act::kill::SignalSent) -> Signal {
        Signal {
            signal: s.signal.to_string(),
            ms: s.ms,
            us: s.us,
            pid: s.pid,
            ok: s.ok,
            error: s.error.clone(),
            errno: s.errno.map(str::to_string),
        }
    }
}

/// What became of a victim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome {
    pub exited: bool,
    pub exit_ms: Option<u64>,
    pub freed_kb: u64,
    /// A `process_mrelease` of the kill is known to have succeeded: memory was reaped before
    /// the victim's own exit freed it.
    pub released: bool,
    /// A `process_mrelease` was handed to the reaper thread and had not returned when the
    /// record was made (it waits for the victim's mmap lock): not known to have released.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub release_pending: bool,
    /// The victim outlived SIGKILL while memory stayed low and did not come back: the guard
    /// stopped waiting for it and chose again (`act::escalate::STUCK_AFTER_KILL`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stuck: bool,
    pub available_after_kb: u64,
}

/// Page faults of the daemon's loop thread, and what the daemon read from storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub minflt: u64,
    /// Faults the kernel counts major: those that read from storage, and any fault it retried
    /// (`mm_account_fault`: a folio locked by someone else, as compaction or the page cache
    /// does for a moment), which reads nothing.
    pub majflt: u64,
    /// Blocks of 512 bytes the daemon, all its threads, read from storage (`ru_inblock`): a
    /// major fault that really read shows here.
    pub inblock: u64,
}

/// Faults from the start of a decision to the first signal and to the outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KillFaults {
    pub to_signal: Faults,
    pub to_outcome: Faults,
}

/// `kill`, `dry_run` and `kill_failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decision {
    pub trigger: Trigger,
    pub victim: Victim,
    pub candidates: Vec<Candidate>,
    /// `process`, `tree` or `cgroup`.
    pub kill_unit: String,
    /// What the unit resolved to, when there is more to say than `kill_unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_unit_note: Option<String>,
    /// `kill`: true; `kill_failed`: false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<Vec<Signal>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// `kill_failed`: what the daemon does next (`next_candidate` or `wait`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<KillFaults>,
    pub decision_us: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `kill_backoff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Backoff {
    /// The victim of the kill that freed almost nothing.
    pub pid: i32,
    pub comm: String,
    pub rss_kb: u64,
    pub freed_kb: u64,
    /// Below this a kill counts as freeing nothing.
    pub tiny_kb: u64,
    pub available_kb: u64,
    pub total_kb: u64,
    pub mem_term_kb: u64,
    /// Memory held by tmpfs/shm files in the scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shmem_kb: Option<u64>,
    pub shmem_source: String,
    pub reason: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A process named by pid and comm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Who {
    pub pid: i32,
    pub comm: String,
}

/// `kernel_kill`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelKill {
    /// The OOM kill counter's increase.
    pub oom_kills: u64,
    /// Where the counter was read.
    pub counter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_kb: Option<u64>,
    /// The process killed, when known (`oomguard drill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub victim: Option<Who>,
    /// What ran out (`memcg`, `global`, `cpuset`, `mempolicy`, `unknown`), system scope only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// The group whose own limit was hit (`constraint` `memcg`), when the kernel log said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_memcg: Option<String>,
    /// Whether the daemon held its choices back for the kill (system scope only; a kill at a
    /// group's own limit frees nothing the machine is short of).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl KernelKill {
    /// The record `oomguard drill` writes when the kernel's OOM killer ended its hog: the
    /// counter's increase and source, the hog, and what only the drill knows (`drill: true`,
    /// `peak_kb`: the group's peak usage or `null`, `kernel_log`: the kernel's kill lines).
    pub fn drill(
        oom_kills: u64,
        counter: String,
        victim: Who,
        peak_kb: Option<u64>,
        kernel_log: Vec<String>,
    ) -> KernelKill {
        let mut extra = Extra::new();
        extra.insert("drill".into(), Value::Bool(true));
        extra.insert("peak_kb".into(), peak_kb.map_or(Value::Null, Value::from));
        extra.insert(
            "kernel_log".into(),
            Value::Array(kernel_log.into_iter().map(Value::String).collect()),
        );
        KernelKill {
            oom_kills,
            counter,
            available_kb: None,
            total_kb: None,
            victim: Some(victim),
            extra,
            ..KernelKill::default()
        }
    }
}

/// `warn`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Warn {
    /// `high` or `cleared`.
    pub state: String,
    pub used_pct: f64,
    pub level_pct: f64,
    pub clear_pct: f64,
    pub available_kb: u64,
    pub total_kb: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `protect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Protect {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
    pub rule: String,
    pub rule_kind: String,
    pub old_oom_score_adj: Option<i16>,
    pub oom_score_adj: i16,
    /// `written`, `refused`, `gone` or `failed`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub via: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The OOM event a follow-up follows: its time, action and victim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct After {
    pub time: String,
    pub action: String,
    pub pid: Option<i32>,
    pub comm: Option<String>,
}

impl After {
    /// The follow-up key of `rec` (a `kill` or `kernel_kill`).
    pub fn of(rec: &Record) -> After {
        let who = rec.event.who();
        After {
            time: rec.time.clone(),
            action: rec.event.action().to_string(),
            pid: who.map(|w| w.0),
            comm: who.map(|w| w.1.to_string()),
        }
    }
}

/// `missing`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Missing {
    pub watch: String,
    pub restart: Vec<String>,
    pub restarts_left: u32,
    pub after: After,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `restart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Restart {
    pub watch: String,
    pub argv: Vec<String>,
    pub attempt: u32,
    pub max_restarts: u32,
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub error: Option<String>,
    pub ms: u64,
    /// Whether the program was found running after the restart command.
    pub running_after: bool,
    pub after: After,
    #[serde(flatten)]
    pub extra: Extra,
}

fn size(kb: u64) -> String {
    crate::values::human_kb(kb)
}

impl Event {
    /// The `action` field.
    pub fn action(&self) -> &str {
        match self {
            Event::Kill(_) => "kill",
            Event::DryRun(_) => "dry_run",
            Event::KillFailed(_) => "kill_failed",
            Event::KillBackoff(_) => "kill_backoff",
            Event::KernelKill(_) => "kernel_kill",
            Event::Warn(_) => "warn",
            Event::Protect(_) => "protect",
            Event::Missing(_) => "missing",
            Event::Restart(_) => "restart",
            Event::Other { action, .. } => action,
        }
    }

    /// The kill decision of `kill`, `dry_run` and `kill_failed`.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Event::Kill(d) | Event::DryRun(d) | Event::KillFailed(d) => Some(d),
            _ => None,
        }
    }

    /// The process the event is about (pid, comm): the victim, or the record's own.
    pub fn who(&self) -> Option<(i32, &str)> {
        match self {
            Event::Kill(d) | Event::DryRun(d) | Event::KillFailed(d) => {
                Some((d.victim.pid, &d.victim.comm))
            }
            Event::KillBackoff(b) => Some((b.pid, &b.comm)),
            Event::KernelKill(k) => k.victim.as_ref().map(|v| (v.pid, v.comm.as_str())),
            Event::Protect(p) => Some((p.pid, &p.comm)),
            _ => None,
        }
    }

    /// The OOM event a follow-up (`missing`, `restart`) follows.
    pub fn after(&self) -> Option<&After> {
        match self {
            Event::Missing(m) => Some(&m.after),
            Event::Restart(r) => Some(&r.after),
            _ => None,
        }
    }

    /// What the event says, in a few words (the DETAIL column of `oomguard events`, the
    /// journal message, the notification body). Empty for [`Event::Other`].
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Kill(d) | Event::DryRun(d) | Event::KillFailed(d) => {
                write!(f, "reason {}", d.trigger.reason)?;
                if d.victim.rss_kb > 0 {
                    write!(f, ", rss {}", size(d.victim.rss_kb))?;
                }
                if let Some(rule) = &d.victim.rule {
                    write!(f, ", rule {rule}")?;
                }
                if let Some(sigs) = &d.signals
                    && !sigs.is_empty()
                {
                    let names: Vec<&str> = sigs.iter().map(|s| s.signal.as_str()).collect();
                    write!(f, ", sent {}", names.join("+"))?;
                    if let Some(e) = sigs.iter().find_map(|s| s.errno.as_deref()) {
                        write!(f, " (failed: {e})")?;
                    }
                }
                if let Some(o) = &d.outcome {
                    if o.exited {
                        write!(f, ", exited")?;
                        if let Some(ms) = o.exit_ms {
                            write!(f, " after {ms}ms")?;
                        }
                    } else {
                        write!(f, ", did not exit")?;
                    }
                    write!(f, ", freed {}", size(o.freed_kb))?;
                }
                Ok(())
            }
            Event::KillBackoff(b) => write!(
                f,
                "freed only {} of {}; holding kills back until memory recovers",
                size(b.freed_kb),
                size(b.rss_kb)
            ),
            Event::KernelKill(k) => {
                write!(
                    f,
                    "kernel OOM killer acted {} time(s) ({})",
                    k.oom_kills, k.counter
                )?;
                if k.constraint.as_deref() == Some("memcg") {
                    write!(
                        f,
                        " at the limit of cgroup {}",
                        k.oom_memcg.as_deref().unwrap_or("?")
                    )?;
                }
                if k.held == Some(false) {
                    write!(f, ", not held back")?;
                }
                Ok(())
            }
            Event::Warn(w) => {
                write!(f, "memory use {} {:.1}%", w.state, w.used_pct)?;
                write!(f, " (warning level {}%)", w.level_pct)?;
                write!(f, ", {} available", size(w.available_kb))
            }
            Event::Protect(p) => match &p.error {
                Some(e) => write!(f, "oom_score_adj {} refused: {e}", p.oom_score_adj),
                None => write!(f, "oom_score_adj {} written", p.oom_score_adj),
            },
            Event::Missing(m) => write!(f, "watched '{}' is not running", m.watch),
            Event::Restart(r) => {
                write!(
                    f,
                    "'{}' attempt {}/{}: {} → ",
                    r.watch,
                    r.attempt,
                    r.max_restarts,
                    r.argv.join(" ")
                )?;
                match (&r.ok, &r.error) {
                    (true, _) => write!(f, "ok"),
                    (false, Some(e)) => write!(f, "failed: {e}"),
                    (false, None) => write!(f, "failed"),
                }
            }
            Event::Other { .. } => Ok(()),
        }
    }
}

impl Record {
    /// A record of `event` now, on this host.
    pub fn new(scope: &str, host: &str, event: Event) -> Record {
        Record::at(super::eventlog::now_rfc3339(), scope, host, event)
    }

    /// A record of `event` stamped `time` (RFC 3339, as [`super::eventlog::now_rfc3339`]).
    pub fn at(time: String, scope: &str, host: &str, event: Event) -> Record {
        Record {
            time,
            scope: scope.to_string(),
            host: host.to_string(),
            event,
        }
    }

    /// The `time` field as an instant, when it parses.
    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }

    /// The record as one JSON object (the line written, without its newline).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("time".into(), Value::String(self.time.clone()));
        obj.insert("scope".into(), Value::String(self.scope.clone()));
        obj.insert("host".into(), Value::String(self.host.clone()));
        match &self.event {
            Event::Other { action, fields } => {
                for (k, v) in fields {
                    obj.insert(k.clone(), v.clone());
                }
                obj.insert("action".into(), Value::String(action.clone()));
            }
            e => {
                if let Ok(Value::Object(m)) = serde_json::to_value(e) {
                    obj.extend(m);
                }
            }
        }
        Value::Object(obj)
    }

    /// Reads one record from a JSON value. Errors: not an object, no string `action`, or a
    /// known kind whose fields have the wrong types. An unknown `action` is [`Event::Other`].
    pub fn from_value(v: Value) -> Result<Record, String> {
        let Value::Object(mut m) = v else {
            return Err("not an event record (not a JSON object)".into());
        };
        let action = match m.get("action") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err("not an event record (no \"action\")".into()),
        };
        let mut take = |k: &str| match m.remove(k) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let (time, scope, host) = (take("time"), take("scope"), take("host"));
        let event = if ACTIONS.contains(&action.as_str()) {
            serde_json::from_value::<Event>(Value::Object(m))
                .map_err(|e| format!("a '{action}' record: {e}"))?
        } else {
            m.remove("action");
            Event::Other { action, fields: m }
        };
        Ok(Record {
            time,
            scope,
            host,
            event,
        })
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        Record::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_kind_round_trips_through_its_fixture() {
        let fx = fixtures();
        let mut seen: Vec<String> = Vec::new();
        for (name, text) in &fx {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).unwrap();
                let rec = Record::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(rec.to_value(), v, "{name}: written back differently");
                let via_serde: Record = serde_json::from_str(line).unwrap();
                assert_eq!(via_serde, rec);
                assert_eq!(serde_json::to_value(&rec).unwrap(), v);
                if name != "unknown" {
                    assert!(
                        !matches!(rec.event, Event::Other { .. }),
                        "{name}: a known kind read as Other"
                    );
                    assert_eq!(rec.event.action(), name.as_str());
                }
                seen.push(rec.event.action().to_string());
            }
        }
        for a in ACTIONS {
            assert!(seen.iter().any(|s| s == a), "no fixture for '{a}'");
        }
    }

    #[test]
    fn an_unknown_kind_is_kept_as_written() {
        let line = r#"{"time":"2026-11-30T18:00:00.000+00:00","action":"future_thing","scope":"system","host":"h","n":1,"x":{"y":[1,2]}}"#;
        let v: Value = serde_json::from_str(line).unwrap();
        let rec = Record::from_value(v.clone()).unwrap();
        match &rec.event {
            Event::Other { action, fields } => {
                assert_eq!(action, "future_thing");
                assert_eq!(fields["n"], 1);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(rec.event.summary(), "");
        assert_eq!(rec.to_value(), v);
    }

    #[test]
    fn a_known_kind_with_wrong_types_is_an_error_naming_it() {
        let v = serde_json::json!({"action": "kill", "victim": {"pid": "seven"}});
        let e = Record::from_value(v).unwrap_err();
        assert!(e.starts_with("a 'kill' record:"), "{e}");
        assert!(Record::from_value(serde_json::json!({"n": 1})).is_err());
    }

    #[test]
    fn summaries_say_what_happened() {
        let get = |name: &str| {
            let (_, text) = fixtures().into_iter().find(|(n, _)| n == name).unwrap();
            Record::from_value(serde_json::from_str(text.lines().next().unwrap()).unwrap()).unwrap()
        };
        let k = get("kill").event.summary();
        assert!(
            k.starts_with("reason low_memory_kill, rss ") && k.contains("sent SIGTERM"),
            "{k}"
        );
        assert!(k.contains(", exited after"), "{k}");
        // Sizes in the one text format (values::HumanKb), never `8G` or `8180M`.
        assert!(
            k.contains(", rss 8.0 GiB") && k.contains(", freed 8.0 GiB"),
            "{k}"
        );
        assert!(get("warn").event.summary().ends_with(", 2.0 GiB available"));
        let r = get("restart").event.summary();
        assert!(r.contains("attempt 1/3") && r.ends_with("→ ok"), "{r}");
        let w = get("warn").event.summary();
        assert!(
            w.starts_with("memory use high 91.5% (warning level 90%)"),
            "{w}"
        );
    }
}
