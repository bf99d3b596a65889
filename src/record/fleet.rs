//! Builds the fleet observers the daemon feeds: metrics, warning level, notifications, hooks,
//! after-kill watch list, sd_notify and journald entries, from the config's fleet sections.
//! They run as one composite [`FleetObserver`]; a SIGHUP reload hands it new sections through
//! a [`Reloader`], and it rebuilds the warning level, notifications, hooks and watch list at
//! its next wake-up (the metrics listener and sd_notify stay as started).

use crate::sense::mem::MemState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::event::Record;
use anyhow::Context;

use super::emit::{Emitter, SharedSinks};
use super::eventlog::EventLog;
use super::hooks::Hooks;
use super::journald::{Journal, under_journal};
use super::metrics::Metrics;
use super::notify::Notify;
use super::systemd::Systemd;
use super::warn::Warn;
use super::watch::{Restarts, Watch, WatchTiming};
use super::{Observer, Sample};
use crate::config::fleet::FleetSettings;
use crate::sense::Root;

/// Hands new fleet sections to the running [`FleetObserver`] (from the SIGHUP reload).
#[derive(Debug, Clone, Default)]
pub struct Reloader(Arc<Mutex<Option<FleetSettings>>>);

impl Reloader {
    pub fn push(&self, f: FleetSettings) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }
    fn take(&self) -> Option<FleetSettings> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The fleet features as one observer.
pub struct FleetObserver {
    settings: FleetSettings,
    log: EventLog,
    root: Root,
    metrics: Option<Metrics>,
    systemd: Option<Systemd>,
    journal: bool,
    /// Rebuilt on reload: the warning level, and notifications, hooks, watch list.
    warn: Option<Warn>,
    members: Vec<Box<dyn Observer>>,
    reloader: Reloader,
    /// Kept across reloads: the watch list's restarts so far, and the hooks still running.
    restarts: Restarts,
    hooks_running: Arc<std::sync::atomic::AtomicUsize>,
    /// The sinks of the moment, for the protection thread's records.
    shared: SharedSinks,
}

/// What [`build`] made.
pub struct Fleet {
    pub observer: FleetObserver,
    /// Where metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
}

/// Starts the fleet features. `metrics` (from `--metrics`) overrides `[metrics] listen`.
/// `log` is the daemon's event log (records the features write go there too); `reloader`
/// brings new sections after a SIGHUP; `shared` is given the sinks (metrics, notifications,
/// the journal) at the start and at each reload, for records written on other threads.
pub fn build(
    f: &FleetSettings,
    metrics: Option<SocketAddr>,
    log: EventLog,
    root: Root,
    reloader: Reloader,
    shared: SharedSinks,
) -> anyhow::Result<Fleet> {
    let mut metrics_addr = None;
    let mut registry = None;
    if let Some(addr) = metrics.or(f.metrics_listen) {
        let m = Metrics::new();
        let bound = m.serve(&addr.to_string()).with_context(|| {
            format!("cannot serve metrics on {addr} (choose another address with --metrics)")
        })?;
        log::info!("metrics on http://{bound}/metrics");
        metrics_addr = Some(bound);
        registry = Some(m);
    }
    let systemd = Systemd::from_env();
    if let Some(wd) = systemd.as_ref().and_then(Systemd::watchdog) {
        log::info!("systemd watchdog every {}ms", wd.as_millis());
    }
    let mut observer = FleetObserver {
        settings: f.clone(),
        log,
        root,
        metrics: registry,
        systemd,
        journal: under_journal(),
        warn: None,
        members: Vec::new(),
        reloader,
        restarts: Restarts::default(),
        hooks_running: Arc::default(),
        shared,
    };
    (observer.warn, observer.members) = observer.start_members(false);
    Ok(Fleet {
        observer,
        metrics_addr,
    })
}

impl FleetObserver {
    /// Starts the reloadable features from the current settings.
    fn start_members(&self, warn_high: bool) -> (Option<Warn>, Vec<Box<dyn Observer>>) {
        let f = &self.settings;
        let mut members: Vec<Box<dyn Observer>> = Vec::new();
        let mut emit = Emitter::new(self.log.clone());
        if let Some(m) = &self.metrics {
            emit.add_sink(Arc::new(m.clone()));
        }
        if let Some(n) = Notify::start(&f.notify) {
            emit.add_sink(Arc::new(n.clone()));
            members.push(Box::new(n));
        }
        if self.journal {
            emit.add_sink(Arc::new(Journal));
        }
        self.shared.set(emit.sinks().to_vec());
        let warn = Warn::new(&f.warn, emit.clone()).map(|w| w.with_high(warn_high));
        // The hooks still running and the restarts made count across reloads: the limits are
        // the daemon's, not one config's.
        if !f.hooks.pre_kill.is_empty() || !f.hooks.post_kill.is_empty() {
            members.push(Box::new(Hooks::with_running(
                f.hooks.clone(),
                self.hooks_running.clone(),
            )));
        }
        if let Some(w) = Watch::start_with(
            f.watch.clone(),
            self.root.clone(),
            emit,
            WatchTiming::default(),
            self.restarts.clone(),
        ) {
            members.push(Box::new(w));
        }
        (warn, members)
    }

    fn apply_reload(&mut self, new: FleetSettings) {
        if new.metrics_listen != self.settings.metrics_listen {
            log::warn!("config reload: a new [metrics] listen address needs a restart");
        }
        let high = self.warn.as_ref().is_some_and(Warn::is_high);
        self.settings = new;
        (self.warn, self.members) = self.start_members(high);
        log::info!(
            "config reload: fleet features restarted ({} watched, hooks {})",
            self.settings.watch.len(),
            if self.settings.hooks.pre_kill.is_empty() && self.settings.hooks.post_kill.is_empty() {
                "off"
            } else {
                "on"
            }
        );
    }
}

impl Observer for FleetObserver {
    fn sample(&mut self, s: &Sample) {
        if let Some(new) = self.reloader.take() {
            self.apply_reload(new);
        }
        if let Some(m) = &mut self.metrics {
            m.sample(s);
        }
        if let Some(w) = &mut self.warn {
            w.sample(s);
        }
        for m in &mut self.members {
            m.sample(s);
        }
        if let Some(sd) = &mut self.systemd {
            sd.sample(s);
        }
    }

    fn wants_pressure(&self) -> bool {
        self.metrics.is_some() || self.members.iter().any(|m| m.wants_pressure())
    }

    fn accepts_floor(&self, floor: &MemState) -> bool {
        self.metrics.is_none()
            && self.warn.as_ref().is_none_or(|w| w.accepts_floor(floor))
            && self.systemd.as_ref().is_none_or(|s| s.accepts_floor(floor))
            && self.members.iter().all(|m| m.accepts_floor(floor))
    }

    fn record(&mut self, rec: &Record) {
        if let Some(m) = &mut self.metrics {
            m.record(rec);
        }
        if self.journal {
            Journal.record_entry(rec);
        }
        for m in &mut self.members {
            m.record(rec);
        }
    }

    fn warm_up(&mut self, mem: &MemState) {
        if let Some(w) = &mut self.warn {
            w.warm_up(mem);
        }
    }

    fn alive(&mut self) {
        if let Some(sd) = &mut self.systemd {
            sd.alive();
        }
    }

    fn kill_signalled(&mut self, rec: &Record, warm_up: bool) {
        for m in &mut self.members {
            m.kill_signalled(rec, warm_up);
        }
    }
}
