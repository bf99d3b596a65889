//! The guard loop: sense the scope's memory on every wake-up, decide with the levels, choose
//! and signal a victim, record what happened. One thread, poll(2), no async runtime.
//!
//! Invariants:
//! - never a second victim while the first one's memory is being freed: after a kill the loop
//!   waits for the victim's exit and for memory to recover; a large process that is exiting or
//!   has SIGKILL pending (the kernel's victim, or anyone's) blocks new choices; a rise of the
//!   kernel's OOM kill counter is recorded and holds kills back until memory recovers;
//! - every signal goes through a pidfd verified against the scored start time;
//! - every kill or would-be kill is one fsynced event-log record and one log line.

pub mod wake;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::Signal;
use serde::Serialize;

use crate::act::kill::{Kill, SignalSent};
use crate::decide::policy::Policy;
use crate::decide::trigger::{LevelSpec, Levels, MemState, Reason, Severity};
use crate::decide::victim::{Candidate, Ranker, Selection};
use crate::record::eventlog::EventLog;
use crate::record::{Observer, Sample, Wake};
use crate::sense::procs::ProcReader;
use crate::sense::psi::{Pressure, PsiWindow};
use crate::sense::scope::Scope;
use crate::sense::{KeptFile, Root};
use crate::values::{KillUnit, PsiKind, ScopeSpec};

/// Everything the loop needs to know, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: Root,
    pub scope: ScopeSpec,
    pub levels: LevelSpec,
    pub kill_unit: KillUnit,
    pub term_grace: Duration,
    pub dry_run: bool,
    pub event_log: PathBuf,
    pub policy: Policy,
}

/// What a SIGHUP reload produces: new settings, or the reason they were refused.
pub type Reload = Box<dyn FnMut() -> anyhow::Result<Settings> + Send>;

/// Flags set by signal handlers.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

#[derive(Debug, Serialize)]
struct TriggerRec {
    reason: &'static str,
    severity: Severity,
    available_kb: u64,
    total_kb: u64,
    swap_free_kb: u64,
    swap_total_kb: u64,
    mem_term_kb: u64,
    mem_kill_kb: u64,
    swap_term_kb: u64,
    swap_kill_kb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    psi: Option<PsiRec>,
}

#[derive(Debug, Serialize)]
struct PsiRec {
    kind: PsiKind,
    share_pct: f64,
    level_pct: f64,
    window_ms: u64,
}

#[derive(Debug, Serialize)]
struct VictimRec<'a> {
    pid: i32,
    comm: &'a str,
    cmdline: String,
    uid: Option<u32>,
    rss_kb: u64,
    swap_kb: u64,
    pgtables_kb: u64,
    oom_score_adj: i16,
    score: i64,
    badness: i64,
    cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    exited: bool,
    exit_ms: Option<u64>,
    freed_kb: u64,
    released: bool,
    available_after_kb: u64,
}

#[derive(Debug, Serialize)]
struct DecisionRec<'a> {
    trigger: TriggerRec,
    victim: VictimRec<'a>,
    candidates: &'a [Candidate],
    kill_unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    signals: Option<&'a [SignalSent]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    decision_us: u64,
}

#[derive(Debug, Serialize)]
struct KernelKillRec {
    oom_kills: u64,
    counter: String,
    available_kb: u64,
    total_kb: u64,
}

/// The running daemon.
pub struct Daemon {
    s: Settings,
    scope: Scope,
    reader: ProcReader,
    ranker: Ranker,
    waker: wake::Waker,
    log: EventLog,
    observers: Vec<Box<dyn Observer>>,
    flags: Flags,
    reload: Option<Reload>,
    pressure: Option<KeptFile>,
    psi_window: Option<PsiWindow>,
    psi_some: PsiWindow,
    psi_full: PsiWindow,
    buf: Vec<u8>,
    last_oom_kills: Option<u64>,
    last_oom_check: Instant,
    /// Kills are held back until memory recovers or this instant passes.
    hold_until: Option<Instant>,
    dry_last: Option<(i32, u64, Instant)>,
    warned_nothing: Option<Instant>,
    warned_progress: Option<Instant>,
}

impl Daemon {
    /// Resolves the scope, opens the event log, arms the kernel notifications.
    pub fn new(
        s: Settings,
        observers: Vec<Box<dyn Observer>>,
        flags: Flags,
        signal_pipe: Option<OwnedFd>,
        reload: Option<Reload>,
    ) -> anyhow::Result<Daemon> {
        let mut scope = Scope::resolve(&s.root, &s.scope).context("cannot resolve the scope")?;
        let reader = ProcReader::open(&s.root)?;
        let mem = scope
            .memory()
            .with_context(|| format!("cannot read the memory of scope {}", scope.label()))?;
        let levels = s.levels.resolve(&mem);
        let log = EventLog::open(&s.event_log, &scope.label())
            .context("cannot open the event log (choose another path with --event-log)")?;
        let psi_kind = s.levels.psi.map_or(PsiKind::Some, |p| p.kind);
        let waker = wake::Waker::new(&mut scope, &levels, mem.total_kb, psi_kind, signal_pipe);
        let prefer_v2 = scope.mounts.v2_memory.is_some();
        let pressure = scope.pressure_path().map(|p| KeptFile::new(s.root.path(p)));
        let psi_window = s.levels.psi.map(|p| PsiWindow::new(p.window));
        let page_kb = reader.page_kb;
        Ok(Daemon {
            ranker: Ranker::new(page_kb, prefer_v2),
            scope,
            reader,
            waker,
            log,
            observers,
            flags,
            reload,
            pressure,
            psi_window,
            psi_some: PsiWindow::new(Duration::from_secs(10)),
            psi_full: PsiWindow::new(Duration::from_secs(10)),
            buf: Vec::with_capacity(8192),
            last_oom_kills: None,
            last_oom_check: Instant::now(),
            hold_until: None,
            dry_last: None,
            warned_nothing: None,
            warned_progress: None,
            s,
        })
    }

    pub fn scope_label(&self) -> String {
        self.scope.label()
    }

    /// The event log the daemon writes (fleet features append their own records to it).
    pub fn event_log(&self) -> &EventLog {
        &self.log
    }

    /// Adds an observer after start-up (the fleet features, built once the log is open).
    pub fn add_observer(&mut self, o: Box<dyn Observer>) {
        self.observers.push(o);
    }

    fn pgalloc(&mut self) -> u64 {
        self.scope.pgalloc()
    }

    fn read_pressure(&mut self) -> Option<Pressure> {
        self.pressure.as_mut()?.read_into(&mut self.buf).ok()?;
        Pressure::parse(&self.buf)
    }

    /// Runs until SIGTERM/SIGINT. Errors only when the scope can no longer be read.
    pub fn run(&mut self) -> anyhow::Result<()> {
        let mem = self.scope.memory()?;
        let levels = self.s.levels.resolve(&mem);
        log::info!(
            "guarding {} ({}): SIGTERM below {} MiB available, SIGKILL below {} MiB{}; {} processes; notifications: {}; event log {}",
            self.scope.label(),
            if self.s.dry_run {
                "dry run: nothing is killed"
            } else {
                "killing"
            },
            levels.mem_term_kb / 1024,
            levels.mem_kill_kb / 1024,
            if mem.swap_total_kb > 0 {
                format!(
                    " with swap below {}/{} MiB",
                    levels.swap_term_kb / 1024,
                    levels.swap_kill_kb / 1024
                )
            } else {
                " (no swap: memory alone counts)".into()
            },
            self.refresh(&mem),
            self.waker.describe(),
            self.log.path().display()
        );
        for n in std::mem::take(&mut self.waker.notes) {
            log::warn!("{n}");
        }
        if let Some(n) = trim_and_lock() {
            log::warn!("{n}");
        }
        self.last_oom_kills = self.scope.kernel_oom_kills();
        let mut wake = Wake::Timer;
        while !self.flags.stop.load(Ordering::Relaxed) {
            if self.flags.reload.swap(false, Ordering::Relaxed) {
                self.do_reload();
            }
            let timeout = self.tick(wake)?;
            wake = self.waker.wait(timeout);
        }
        log::info!("stopping");
        Ok(())
    }

    fn do_reload(&mut self) {
        let Some(r) = self.reload.as_mut() else {
            return;
        };
        match r() {
            Ok(new) => {
                if new.scope != self.s.scope || new.event_log != self.s.event_log {
                    log::warn!(
                        "config reload: scope and event log changes need a restart; keeping {} and {}",
                        self.s.scope,
                        self.s.event_log.display()
                    );
                }
                let keep_scope = self.s.scope.clone();
                let keep_log = self.s.event_log.clone();
                self.s = Settings {
                    scope: keep_scope,
                    event_log: keep_log,
                    ..new
                };
                self.ranker.reset_rules();
                log::info!("config reloaded: {} rules", self.s.policy.rules.len());
            }
            Err(e) => log::error!("config reload refused, the old config stays in force: {e:#}"),
        }
    }

    /// One wake-up. Returns how long to wait for the next.
    fn tick(&mut self, wake: Wake) -> anyhow::Result<Duration> {
        let now = Instant::now();
        let mem = self.scope.memory().with_context(|| {
            format!(
                "cannot read the memory of scope {} (was the cgroup removed?)",
                self.scope.label()
            )
        })?;
        let levels = self.s.levels.resolve(&mem);
        self.waker
            .rearm_if_changed(&mut self.scope, &levels, mem.total_kb);
        // Pressure is read only when something uses it (a --psi trigger, or observers).
        let pressure = if self.s.levels.psi.is_some() || !self.observers.is_empty() {
            self.read_pressure()
        } else {
            None
        };
        let (mut psi_some, mut psi_full, mut psi_user) = (None, None, None);
        if let Some(p) = pressure {
            psi_some = self.psi_some.push(now, p.some_total_us);
            psi_full = p.full_total_us.and_then(|t| self.psi_full.push(now, t));
            if let (Some(spec), Some(w)) = (self.s.levels.psi, self.psi_window.as_mut()) {
                psi_user = w
                    .push(now, p.total_us(spec.kind))
                    .map(|share| (spec, share));
            }
        }
        let mut scan_time = None;
        let mut scanned = 0;
        let (sev, reason) = levels.evaluate(&mem, psi_user);

        // The kernel's OOM killer acted in the scope: record it, and hold back. Checked on every
        // wake-up near the levels, every 5 s when far (idle CPU).
        let check_kernel = sev != Severity::None
            || levels.near(&mem)
            || self.last_oom_check.elapsed() >= Duration::from_secs(5);
        if check_kernel
            && let Some(k) = {
                self.last_oom_check = now;
                self.scope.kernel_oom_kills()
            }
        {
            let prev = self.last_oom_kills.replace(k);
            if let Some(prev) = prev
                && k > prev
            {
                let rec = KernelKillRec {
                    oom_kills: k - prev,
                    counter: self.scope.oom_counter_source(),
                    available_kb: mem.available_kb,
                    total_kb: mem.total_kb,
                };
                log::warn!(
                    "the kernel's OOM killer killed {} process(es) in {}; holding back until memory recovers",
                    k - prev,
                    self.scope.label()
                );
                self.append("kernel_kill", &rec);
                self.hold_until = Some(now + Duration::from_secs(2));
            }
        }

        let near = levels.near(&mem) || sev != Severity::None;
        if near
            && self
                .ranker
                .age()
                .is_none_or(|a| a > Duration::from_millis(500))
            && sev == Severity::None
        {
            let t = Instant::now();
            scanned = self.refresh(&mem);
            scan_time = Some(t.elapsed());
        }

        let sample = Sample {
            mem,
            levels,
            psi_some,
            psi_full,
            psi_some_avg10: pressure.map(|p| p.some_avg10),
            psi_full_avg10: pressure.and_then(|p| p.full_total_us.map(|_| p.full_avg10)),
            wake,
            scan: scan_time,
            scanned,
        };
        for o in &mut self.observers {
            o.sample(&sample);
        }

        if sev == Severity::None {
            self.dry_last = None;
            if levels.recovered(&mem) {
                self.hold_until = None;
            }
            return Ok(self.poll_interval(&levels, &mem));
        }
        if let Some(h) = self.hold_until {
            if now < h && !levels.recovered(&mem) {
                return Ok(Duration::from_millis(10));
            }
            self.hold_until = None;
        }
        self.decide_and_act(
            now,
            &mem,
            &levels,
            sev,
            reason.unwrap_or(Reason::LowMemoryTerm),
            psi_user,
        )
    }

    fn poll_interval(&self, levels: &Levels, mem: &MemState) -> Duration {
        let mut d = levels.next_poll(mem);
        if let Some(p) = self.s.levels.psi {
            // Sample the stall counters often enough to see the window.
            d = d.min(p.window / 10).max(Duration::from_millis(5));
        }
        d
    }

    fn refresh(&mut self, mem: &MemState) -> usize {
        let pg = self.pgalloc();
        let tp = mem.totalpages(self.reader.page_kb);
        self.ranker.refresh(
            &mut self.reader,
            &mut self.scope,
            &self.s.policy,
            tp,
            mem.swap_total_kb > mem.swap_free_kb,
            pg,
        )
    }

    fn select(&mut self, mem: &MemState) -> Selection {
        let tp = mem.totalpages(self.reader.page_kb);
        let pg = self.pgalloc();
        let mut growth = pg.saturating_sub(self.ranker.pgalloc_at_scan());
        // A stale table, or so much allocated since that the bound is useless: rescan first.
        if self.ranker.age().is_none_or(|a| a > Duration::from_secs(2)) || growth > tp / 20 {
            self.refresh(mem);
            growth = 0;
        }
        self.ranker.select(&mut self.reader, &self.s.policy, growth)
    }

    fn trigger_rec(
        mem: &MemState,
        levels: &Levels,
        sev: Severity,
        reason: Reason,
        psi: Option<(crate::values::PsiSpec, f64)>,
    ) -> TriggerRec {
        TriggerRec {
            reason: reason.as_str(),
            severity: sev,
            available_kb: mem.available_kb,
            total_kb: mem.total_kb,
            swap_free_kb: mem.swap_free_kb,
            swap_total_kb: mem.swap_total_kb,
            mem_term_kb: levels.mem_term_kb,
            mem_kill_kb: levels.mem_kill_kb,
            swap_term_kb: levels.swap_term_kb,
            swap_kill_kb: levels.swap_kill_kb,
            psi: psi.map(|(spec, share)| PsiRec {
                kind: spec.kind,
                share_pct: (share * 100.0).round() / 100.0,
                level_pct: spec.pct.0,
                window_ms: spec.window.as_millis() as u64,
            }),
        }
    }

    fn append(&mut self, action: &str, body: &impl Serialize) -> Option<serde_json::Value> {
        match self.log.append(action, body) {
            Ok(rec) => {
                for o in &mut self.observers {
                    o.record(&rec);
                }
                Some(rec)
            }
            Err(e) => {
                log::error!("{e}");
                None
            }
        }
    }

    fn decide_and_act(
        &mut self,
        now: Instant,
        mem: &MemState,
        levels: &Levels,
        sev: Severity,
        reason: Reason,
        psi: Option<(crate::values::PsiSpec, f64)>,
    ) -> anyhow::Result<Duration> {
        let sel = self.select(mem);
        let decision_us = now.elapsed().as_micros() as u64;
        log::debug!(
            "decision in {decision_us} us: {} ({} precise reads, {} processes in the table)",
            sel.victim
                .as_ref()
                .map_or("no victim".to_string(), |v| format!(
                    "{} ({}) score {}",
                    v.comm, v.pid, v.score
                )),
            sel.precise_reads,
            self.ranker.len()
        );
        if let Some((pid, comm)) = &sel.in_progress {
            if self
                .warned_progress
                .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                log::info!(
                    "{comm} ({pid}) is already being killed; waiting for its memory to be freed before choosing anyone"
                );
                self.warned_progress = Some(Instant::now());
            }
            return Ok(Duration::from_millis(10));
        }
        let Some(victim) = sel.victim.clone() else {
            if self
                .warned_nothing
                .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
            {
                log::warn!(
                    "memory is low in {} ({} of {} MiB available) but no process may be killed (all protected or immune)",
                    self.scope.label(),
                    mem.available_kb / 1024,
                    mem.total_kb / 1024
                );
                self.warned_nothing = Some(Instant::now());
            }
            return Ok(Duration::from_millis(100));
        };
        let cmdline = self.reader.cmdline(victim.pid).unwrap_or_default();
        let cgroup = self.reader.cgroup_text(victim.pid).and_then(|t| {
            crate::sense::cgroup::memory_path_of(&t, self.scope.mounts.v2_memory.is_some())
                .map(str::to_string)
        });

        if self.s.dry_run {
            let fresh = match self.dry_last {
                None => true,
                Some((pid, start, at)) => {
                    pid != victim.pid
                        || start != victim.starttime
                        || at.elapsed() >= Duration::from_secs(10)
                }
            };
            if fresh {
                self.dry_last = Some((victim.pid, victim.starttime, Instant::now()));
                log::info!(
                    "dry run: would send {} to {} ({}), score {}, rss {} MiB: {} ({} of {} MiB available)",
                    if sev == Severity::Kill {
                        "SIGKILL"
                    } else {
                        "SIGTERM"
                    },
                    victim.comm,
                    victim.pid,
                    victim.score,
                    victim.rss_kb / 1024,
                    reason.as_str(),
                    mem.available_kb / 1024,
                    mem.total_kb / 1024
                );
                let rec = DecisionRec {
                    trigger: Self::trigger_rec(mem, levels, sev, reason, psi),
                    victim: victim_rec(&victim, cmdline, cgroup),
                    candidates: &sel.candidates,
                    kill_unit: self.s.kill_unit.to_string(),
                    signals: None,
                    outcome: None,
                    decision_us,
                };
                self.append("dry_run", &rec);
            }
            return Ok(self
                .poll_interval(levels, mem)
                .min(Duration::from_millis(100)));
        }

        let mut kill = match Kill::plan(
            &mut self.reader,
            &self.scope,
            self.s.kill_unit,
            &victim,
            now,
        ) {
            Ok(k) => k,
            Err(e) => {
                log::info!(
                    "not signalling {} ({}): {e}; choosing again",
                    victim.comm,
                    victim.pid
                );
                self.ranker_forget();
                return Ok(Duration::ZERO);
            }
        };
        let pre = DecisionRec {
            trigger: Self::trigger_rec(mem, levels, sev, reason, psi),
            victim: victim_rec(&victim, cmdline.clone(), cgroup.clone()),
            candidates: &sel.candidates,
            kill_unit: kill.unit_note.clone(),
            signals: None,
            outcome: None,
            decision_us,
        };
        if !self.observers.is_empty()
            && let Ok(v) = serde_json::to_value(&pre)
        {
            for o in &mut self.observers {
                o.before_kill(&v);
            }
        }
        // A v2 cgroup goes at once through cgroup.kill (SIGKILL), as memory.oom.group and
        // systemd-oomd do: a service whose main process dies of SIGTERM exited cleanly for
        // systemd, and Restart=on-failure would leave it down.
        let first = if sev == Severity::Kill || kill.cgroup_kill.is_some() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        kill.signal_all(first);
        if first == Signal::KILL {
            kill.release();
        }
        log::info!(
            "sent {} to {} ({}){}, score {}, rss {} MiB, swap {} MiB: {} ({} of {} MiB available, term level {} MiB)",
            if first == Signal::KILL {
                "SIGKILL"
            } else {
                "SIGTERM"
            },
            victim.comm,
            victim.pid,
            if kill.others.is_empty() {
                String::new()
            } else {
                format!(" and {} more ({})", kill.others.len(), kill.unit_note)
            },
            victim.score,
            victim.rss_kb / 1024,
            victim.swap_kb / 1024,
            reason.as_str(),
            mem.available_kb / 1024,
            mem.total_kb / 1024,
            levels.mem_term_kb / 1024,
        );
        let outcome = self.escalate(&mut kill, first, mem.available_kb)?;
        let rec = DecisionRec {
            signals: Some(&kill.signals),
            outcome: Some(outcome),
            ..pre
        };
        if let Some(o) = &rec.outcome {
            log::info!(
                "{} ({}) {} after {} ms; {} MiB freed",
                victim.comm,
                victim.pid,
                if o.exited { "exited" } else { "did NOT exit" },
                o.exit_ms.unwrap_or(0),
                o.freed_kb / 1024
            );
        }
        self.append("kill", &rec);
        self.last_oom_kills = self.scope.kernel_oom_kills().or(self.last_oom_kills);
        self.ranker_forget();
        Ok(Duration::ZERO)
    }

    fn ranker_forget(&mut self) {
        // Force a fresh scan before the next choice.
        let mem = self.scope.memory().unwrap_or_default();
        self.refresh(&mem);
    }

    /// SIGTERM → SIGKILL after the grace time, or at once when memory falls below the kill
    /// level; then waits for the exit and for memory to recover.
    fn escalate(
        &mut self,
        kill: &mut Kill,
        first: Signal,
        avail_before: u64,
    ) -> anyhow::Result<Outcome> {
        let start = kill.decided;
        let mut sent_kill = first == Signal::KILL;
        let mut killed_at = if sent_kill {
            Some(Instant::now())
        } else {
            None
        };
        let mut exit_ms = None;
        let mut last = avail_before;
        loop {
            if kill.victim.wait(Duration::from_millis(5)) && kill.all_exited() {
                exit_ms = Some(start.elapsed().as_millis() as u64);
                break;
            }
            if self.flags.stop.load(Ordering::Relaxed) && !sent_kill {
                break;
            }
            let mem = self.scope.memory()?;
            last = mem.available_kb;
            let levels = self.s.levels.resolve(&mem);
            if !sent_kill {
                let (sev, _) = levels.evaluate(&mem, None);
                if sev == Severity::Kill || start.elapsed() >= self.s.term_grace {
                    kill.signal_all(Signal::KILL);
                    kill.release();
                    sent_kill = true;
                    killed_at = Some(Instant::now());
                    log::info!(
                        "{} ({}) still alive after SIGTERM; sent SIGKILL ({})",
                        kill.victim.pid,
                        kill.victim.pid,
                        if sev == Severity::Kill {
                            "memory fell below the kill level"
                        } else {
                            "grace time over"
                        }
                    );
                }
            } else if killed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
                log::error!(
                    "process {} has not exited 10 s after SIGKILL (stuck in the kernel?)",
                    kill.victim.pid
                );
                break;
            }
        }
        // Let the freed memory show up before anyone is chosen again.
        let settle = Instant::now();
        let mut prev = last;
        while settle.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(10));
            let mem = self.scope.memory()?;
            let levels = self.s.levels.resolve(&mem);
            last = mem.available_kb;
            if levels.recovered(&mem) || last <= prev {
                break;
            }
            prev = last;
        }
        Ok(Outcome {
            exited: exit_ms.is_some(),
            exit_ms,
            freed_kb: last.saturating_sub(avail_before),
            released: kill.released,
            available_after_kb: last,
        })
    }
}

fn victim_rec(v: &Candidate, cmdline: String, cgroup: Option<String>) -> VictimRec<'_> {
    VictimRec {
        pid: v.pid,
        comm: &v.comm,
        cmdline,
        uid: v.uid,
        rss_kb: v.rss_kb,
        swap_kb: v.swap_kb,
        pgtables_kb: v.pgtables_kb,
        oom_score_adj: v.oom_score_adj,
        score: v.score,
        badness: v.badness,
        cgroup,
        rule: v.rule.as_deref(),
    }
}

/// Drops the page-table entries of code and read-only file pages that only start-up used
/// (argument and config parsing), then locks memory on fault: the daemon keeps exactly the
/// pages its loop touches, and those can never be reclaimed or swapped. Only file-backed,
/// read-only, private mappings with no copied-on-write pages are dropped (they re-fault from
/// the page cache unchanged); relocated (RELRO) and writable mappings are left alone.
pub fn trim_and_lock() -> Option<String> {
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        let mut current: Option<(usize, usize, bool)> = None;
        let mut drop_ranges = Vec::new();
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            let first = f.next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = f.next().unwrap_or("");
                let path = f.nth(3).unwrap_or("");
                let eligible = perms.len() == 4
                    && &perms[1..2] == "-"
                    && &perms[3..4] == "p"
                    && path.starts_with('/');
                current = Some((start, end, eligible));
            } else if first == "Anonymous:"
                && let Some((start, end, true)) = current
                && f.next() == Some("0")
            {
                drop_ranges.push((start, end));
            }
        }
        for (start, end) in drop_ranges {
            // SAFETY: the range is a whole read-only private file mapping without anonymous
            // (copied) pages; MADV_DONTNEED only drops PTEs, which re-fault with the same
            // file contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    use rustix::mm::MlockAllFlags;
    rustix::mm::mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .err()
        .map(|e| format!("mlockall failed ({e}); the daemon's memory may be swapped or reclaimed under pressure"))
}

/// Protects the daemon itself: lowest `oom_score_adj` and highest priority where permitted
/// (memory is locked later, by [`trim_and_lock`]). Returns warnings for what was refused.
pub fn protect_self() -> Vec<String> {
    let mut notes = Vec::new();
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        notes.push(format!(
            "cannot set our own oom_score_adj to -1000 ({e}; needs CAP_SYS_RESOURCE): the kernel's OOM killer could pick oomguard"
        ));
    }
    // SAFETY: setpriority on our own process; no pointers.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) } != 0 {
        notes.push(format!(
            "cannot raise our priority (nice -20: {}); under a storm the daemon may wake late",
            std::io::Error::last_os_error()
        ));
    }
    notes
}
