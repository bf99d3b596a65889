//! The protection loop: the daemon's thread that applies the rules' `oom_score_adj` (through
//! [`crate::act::protect::Protector`]) the moment a process forks, execs or changes its name
//! (netlink proc connector), with an optional slow periodic scan as a safety net and a full
//! rescan whenever the connector reports lost events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::act::protect::{Protector, ScopeFilter, Stats};
use crate::decide::policy::Policy;
use crate::record::eventlog::EventLog;
use crate::sense::Root;
use crate::sense::procevents::ProcEvents;
use crate::sense::scope::Scope;

/// How the [`Guardian`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardianOptions {
    /// The safety-net scan; `None` turns it off (process events only). Without a working proc
    /// connector a 1 s scan runs regardless.
    pub scan_interval: Option<Duration>,
    /// The connector socket's receive buffer (bytes); `None`: 4 MiB.
    pub rcvbuf: Option<usize>,
}

/// The protection thread: started by the daemon when rules carry `oom_score_adj`.
pub struct Guardian {
    stop: Arc<AtomicBool>,
    pending: Arc<Mutex<Option<Policy>>>,
    stats: Arc<Stats>,
    /// True when the proc connector is in use (else only scans run).
    pub event_driven: bool,
    handle: Option<JoinHandle<()>>,
}

/// Hands a new policy to a running [`Guardian`] (cloneable, for reload closures).
#[derive(Clone)]
pub struct PolicyUpdater(Arc<Mutex<Option<Policy>>>);

impl PolicyUpdater {
    pub fn set(&self, policy: Policy) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(policy);
    }
}

/// Without the connector, scans run at least this often.
const FALLBACK_SCAN: Duration = Duration::from_secs(1);
/// How often the thread looks at its stop flag and a new policy.
const TICK: Duration = Duration::from_millis(200);

impl Guardian {
    /// Subscribes to process events (before returning, so no process started afterwards is
    /// missed), applies the rules to all processes of the scope, then keeps applying them.
    pub fn spawn(
        root: &Root,
        filter: ScopeFilter,
        policy: Policy,
        log: Option<EventLog>,
        opts: GuardianOptions,
    ) -> std::io::Result<Guardian> {
        let mut protector = Protector::new(root, filter, policy, log)?;
        let events = if root.is_real() {
            match ProcEvents::open(opts.rcvbuf) {
                Ok(e) => Some(e),
                Err(e) => {
                    log::warn!(
                        "protect: {e}; falling back to a scan every {} s",
                        FALLBACK_SCAN.as_secs()
                    );
                    None
                }
            }
        } else {
            None
        };
        let event_driven = events.is_some();
        let interval = match (&events, opts.scan_interval) {
            (None, i) => Some(i.map_or(FALLBACK_SCAN, |i| i.min(FALLBACK_SCAN))),
            (Some(_), i) => i,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let pending: Arc<Mutex<Option<Policy>>> = Arc::default();
        let stats = protector.stats.clone();
        protector.scan("start");
        let (stop2, pending2) = (stop.clone(), pending.clone());
        let handle = crate::record::side::spawn("oomguard-protect", move || {
            run_loop(protector, events, interval, &stop2, &pending2)
        })?;
        Ok(Guardian {
            stop,
            pending,
            stats,
            event_driven,
            handle: Some(handle),
        })
    }

    /// Replaces the rules (SIGHUP reload); every process is checked again.
    pub fn set_policy(&self, policy: Policy) {
        self.updater().set(policy);
    }

    pub fn updater(&self) -> PolicyUpdater {
        PolicyUpdater(self.pending.clone())
    }

    /// The daemon's protection thread: started only when some rule carries `oom_score_adj`
    /// (`None` otherwise). Writes happen in `--dry-run` too: protection is not a kill, and the
    /// rule asks for it explicitly.
    pub fn for_daemon(
        root: &Root,
        scope: &crate::values::ScopeSpec,
        policy: &Policy,
        event_log: &std::path::Path,
        opts: GuardianOptions,
    ) -> anyhow::Result<Option<Guardian>> {
        use anyhow::Context;
        if !policy.has_adj_rules() {
            return Ok(None);
        }
        let scope = Scope::resolve(root, scope).context("protection: cannot resolve the scope")?;
        let log = EventLog::open(event_log, &scope.label())?;
        let n = policy
            .rules
            .iter()
            .filter(|r| r.oom_score_adj.is_some())
            .count();
        let g = Guardian::spawn(
            root,
            ScopeFilter::of(&scope),
            policy.clone(),
            Some(log),
            opts,
        )
        .context("cannot start the protection thread")?;
        log::info!(
            "protection: {n} rule(s) with oom_score_adj applied to {} on {}{} (also in --dry-run: protection is not a kill)",
            scope.label(),
            if g.event_driven {
                "every fork, exec and name change"
            } else {
                "a scan every second (no proc connector)"
            },
            opts_desc(&opts, g.event_driven),
        );
        Ok(Some(g))
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn opts_desc(opts: &GuardianOptions, event_driven: bool) -> String {
    match (event_driven, opts.scan_interval) {
        (true, Some(i)) => format!(", and a safety-net scan every {i:?}"),
        (true, None) => ", no periodic scan".into(),
        (false, _) => String::new(),
    }
}

fn run_loop(
    mut p: Protector,
    mut events: Option<ProcEvents>,
    interval: Option<Duration>,
    stop: &AtomicBool,
    pending: &Mutex<Option<Policy>>,
) {
    let mut next_scan = interval.map(|i| Instant::now() + i);
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(policy) = pending.lock().unwrap_or_else(|p| p.into_inner()).take() {
            p.set_policy(policy);
            p.scan("reload");
        }
        let now = Instant::now();
        let wait = next_scan.map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
        batch.clear();
        match &mut events {
            Some(ev) => {
                if let Err(e) = ev.wait(wait, &mut batch) {
                    log::error!(
                        "protect: reading process events failed ({e}); falling back to scans"
                    );
                    events = None;
                    next_scan = Some(Instant::now());
                }
            }
            None => std::thread::sleep(wait),
        }
        if !batch.is_empty() {
            p.handle(&batch);
        }
        p.poke_log();
        if let Some(t) = next_scan
            && Instant::now() >= t
        {
            p.scan("scan");
            next_scan = Some(Instant::now() + interval.unwrap_or(FALLBACK_SCAN));
        }
    }
}
