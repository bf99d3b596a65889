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
use crate::record::emit::SharedSinks;
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
/// How long a start waits for the first scan ([`Guardian::wait_first_scan`]).
pub const FIRST_SCAN_WAIT: Duration = Duration::from_secs(1);
/// How long a stop waits for the thread (a tick, and a scan of some thousand processes).
const STOP_WAIT: Duration = Duration::from_secs(2);

impl Guardian {
    /// Subscribes to process events (before returning, so no process started afterwards is
    /// missed) and starts the thread, which applies the rules to all processes of the scope,
    /// then keeps applying them. The first scan runs on that thread, not the caller's: it reads
    /// command lines, and a read of `/proc/PID/cmdline` waits for the process's memory-map
    /// lock, which a process faulting at the bottom of memory can hold for seconds. Called by
    /// a reload that adds the first `oom_score_adj` rule, it would hold up the guard's loop.
    pub fn spawn(
        root: &Root,
        filter: ScopeFilter,
        policy: Policy,
        log: Option<EventLog>,
        opts: GuardianOptions,
    ) -> std::io::Result<Guardian> {
        Guardian::spawn_with(
            Protector::new(root, filter, policy, log)?,
            root.is_real(),
            opts,
        )
    }

    /// [`Guardian::spawn`] for a protector made by the caller; `connector`: whether to
    /// subscribe to process events (only for the real /proc).
    fn spawn_with(
        protector: Protector,
        connector: bool,
        opts: GuardianOptions,
    ) -> std::io::Result<Guardian> {
        let events = if connector {
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
        Guardian::spawn_on(protector, events, opts)
    }

    /// [`Guardian::spawn_with`] on the process events given (`None`: scans only).
    fn spawn_on(
        protector: Protector,
        events: Option<ProcEvents>,
        opts: GuardianOptions,
    ) -> std::io::Result<Guardian> {
        let protector = protector.read_on_side()?;
        let event_driven = events.is_some();
        let interval = match (&events, opts.scan_interval) {
            (None, i) => Some(fallback_every(i)),
            (Some(_), i) => i,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let pending: Arc<Mutex<Option<Policy>>> = Arc::default();
        let stats = protector.stats.clone();
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

    /// Waits at most `limit` for the scan at start to finish; whether it did. The daemon waits
    /// [`FIRST_SCAN_WAIT`] at its start (not at a reload), so that processes already running
    /// have their values before it says it is guarding, but a stuck read does not stop it.
    pub fn wait_first_scan(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            if self.stats.rescans.load(Ordering::Relaxed) > 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn updater(&self) -> PolicyUpdater {
        PolicyUpdater(self.pending.clone())
    }

    /// The daemon's protection thread: started only when some rule carries `oom_score_adj`
    /// (`None` otherwise). Writes happen in `--dry-run` too: protection is not a kill, and the
    /// rule asks for it explicitly. Its records go to the event log and to `sinks`, the
    /// daemon's metrics, notifications and journal.
    pub fn for_daemon(
        root: &Root,
        scope: &crate::values::ScopeSpec,
        policy: &Policy,
        event_log: &std::path::Path,
        sinks: &SharedSinks,
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
        let protector = Protector::new(root, ScopeFilter::of(&scope), policy.clone(), Some(log))
            .context("cannot start the protection thread")?
            .with_sinks(sinks.clone());
        let g = Guardian::spawn_with(protector, root.is_real(), opts)
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

    /// Waits at most [`STOP_WAIT`]: a thread stuck in a read of `/proc` (see [`Guardian::spawn`])
    /// is left to the process's exit, so that it cannot hold up the daemon's.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(h) = self.handle.take() else {
            return;
        };
        let until = Instant::now() + STOP_WAIT;
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if h.is_finished() {
            let _ = h.join();
        } else {
            log::warn!(
                "protect: the protection thread did not stop within {} s (still reading /proc: a process's memory map may be locked); not waiting for it",
                STOP_WAIT.as_secs()
            );
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often scans run without process events: the safety net's interval, at most
/// [`FALLBACK_SCAN`].
fn fallback_every(interval: Option<Duration>) -> Duration {
    interval.map_or(FALLBACK_SCAN, |i| i.min(FALLBACK_SCAN))
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
    p.scan("start");
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
                        "protect: reading process events failed ({e}); falling back to a scan every {} s",
                        fallback_every(interval).as_secs()
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
        // Processes whose command line the side thread had not read in time: at most a tick
        // later (and at no cost while it is still stuck).
        if p.has_undecided() {
            p.retry();
        }
        p.poke_log();
        if let Some(t) = next_scan
            && Instant::now() >= t
        {
            p.scan("scan");
            // Without events (the connector failed, here or at start) at least every second, as
            // at a start without them: the safety net's interval (60 s by default) left a
            // process started after the failure without its value for up to a minute.
            let every = match events {
                Some(_) => interval.unwrap_or(FALLBACK_SCAN),
                None => fallback_every(interval),
            };
            next_scan = Some(Instant::now() + every);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::policy::{Rule, RuleKind};
    use crate::decide::victim::tests::{Fixture, proc};
    use rustix::fs::{Mode, OFlags};
    use std::sync::mpsc;

    /// A read of a process's command line that does not come back (its memory map locked; here
    /// a FIFO nobody writes) holds up neither the caller that starts the thread (the guard's
    /// loop, at a reload that adds the first `oom_score_adj` rule) nor the protection of the
    /// other processes, whether their rule needs a command line (read by the side reader
    /// still free) or not; the stuck one is decided once its read returns; and a stop is prompt.
    #[test]
    fn a_stuck_command_line_read_holds_up_neither_the_start_nor_other_processes() {
        let fx = Fixture::new();
        let r = fx.dir.path().to_path_buf();
        proc(&r, 100, "web", 'S', 0, 500, 30_000, 0, 0);
        std::fs::write(r.join("proc/100/cmdline"), b"web\0--serve\0").unwrap();
        proc(&r, 103, "web", 'S', 0, 550, 1_000, 0, 0);
        let fifo = r.join("proc/103/cmdline");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        proc(&r, 105, "web", 'S', 0, 700, 1_000, 0, 0);
        std::fs::write(r.join("proc/105/cmdline"), b"web\0--serve\0").unwrap();
        // 104 is "small": a rule by name alone.
        std::fs::write(r.join("proc/104/cmdline"), b"small\0").unwrap();
        let mut web = Rule::name_only(RuleKind::Avoid, "^web$").unwrap();
        web.cmdline = Some(regex::Regex::new("--serve").unwrap());
        web.oom_score_adj = Some(300);
        let mut small = Rule::name_only(RuleKind::Avoid, "^small$").unwrap();
        small.oom_score_adj = Some(200);
        let adj = |pid: i32| {
            std::fs::read_to_string(r.join(format!("proc/{pid}/oom_score_adj")))
                .unwrap()
                .trim()
                .to_string()
        };
        // Lets the stuck read return, with a command line the rule matches (one read).
        let unblock = || {
            let w =
                rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
            rustix::io::write(&w, b"web\0--serve\0").unwrap();
        };
        let wait = |what: &str, ok: &dyn Fn() -> bool| {
            let until = Instant::now() + Duration::from_secs(5);
            while !ok() {
                if Instant::now() > until {
                    unblock();
                    panic!(
                        "{what}: 100 {}, 103 {}, 104 {}, 105 {}",
                        adj(100),
                        adj(103),
                        adj(104),
                        adj(105)
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };

        let (tx, rx) = mpsc::channel();
        let root = fx.root();
        std::thread::spawn(move || {
            let g = Guardian::spawn(
                &root,
                ScopeFilter::system(),
                Policy {
                    rules: vec![web, small],
                },
                None,
                GuardianOptions::default(),
            );
            let _ = tx.send(g);
        });
        let g = match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(g) => g.unwrap(),
            Err(_) => {
                unblock();
                panic!("Guardian::spawn waited on a stuck command-line read");
            }
        };
        // While 103's read is stuck: read before it, 100; by name alone, 104; read after it
        // by the other side reader, 105.
        wait("while a read is stuck", &|| {
            adj(100) == "300" && adj(104) == "200" && adj(105) == "300"
        });
        assert!(
            g.wait_first_scan(Duration::from_secs(5)),
            "the first scan stalled"
        );
        assert_eq!(adj(103), "0", "undecided");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(adj(103), "0", "undecided");
        // The read returns: 103 is decided at the next retry.
        unblock();
        wait("after the read returned", &|| adj(103) == "300");
        let t = Instant::now();
        g.stop();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t.elapsed()
        );
    }

    /// A connector whose reads fail while the daemon runs: the thread falls back to scans at
    /// least every second, as a start without the connector does, not at the safety net's
    /// interval (60 s by default, here 1 h): a process started after the failure gets its
    /// value from the next scan. (A "connector" that polls readable and whose read fails.)
    #[test]
    fn a_connector_that_fails_is_replaced_by_scans_every_second() {
        let fx = Fixture::new();
        let r = fx.dir.path().to_path_buf();
        let mut rule = Rule::name_only(RuleKind::Avoid, "^late$").unwrap();
        rule.oom_score_adj = Some(250);
        let protector = Protector::new(
            &fx.root(),
            ScopeFilter::system(),
            Policy { rules: vec![rule] },
            None,
        )
        .unwrap();
        let g = Guardian::spawn_on(
            protector,
            Some(ProcEvents::failing()),
            GuardianOptions {
                scan_interval: Some(Duration::from_secs(3600)),
                rcvbuf: None,
            },
        )
        .unwrap();
        // The start's scan, then the one at the failure.
        let until = Instant::now() + Duration::from_secs(10);
        while g.stats().rescans.load(Ordering::Relaxed) < 2 {
            assert!(Instant::now() < until, "no scan at the connector's failure");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A process started after the failure: no event will tell of it.
        proc(&r, 321, "late", 'S', 0, 900, 1_000, 0, 0);
        let adj = || std::fs::read_to_string(r.join("proc/321/oom_score_adj")).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while adj().trim() != "250" {
            assert!(
                Instant::now() < until,
                "the process started after the connector failed was not protected by a scan ({} scans)",
                g.stats().rescans.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        g.stop();
    }

    /// Without a stuck read the thread's first scan does all of them, and a stop is prompt.
    #[test]
    fn the_first_scan_runs_on_the_thread_and_a_stop_is_prompt() {
        let fx = Fixture::new();
        let r = fx.dir.path().to_path_buf();
        std::fs::write(r.join("proc/100/cmdline"), b"web\0").unwrap();
        let mut rule = Rule::name_only(RuleKind::Avoid, "^web").unwrap();
        rule.oom_score_adj = Some(200);
        let g = Guardian::spawn(
            &fx.root(),
            ScopeFilter::system(),
            Policy { rules: vec![rule] },
            None,
            GuardianOptions::default(),
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while g.stats().rescans.load(Ordering::Relaxed) == 0
            || std::fs::read_to_string(r.join("proc/100/oom_score_adj")).unwrap() != "200\n"
        {
            assert!(
                Instant::now() < until,
                "the first scan never wrote 100's value"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        g.stop();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
