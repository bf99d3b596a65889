//! Builds the fleet observers the daemon feeds: metrics, warning level, notifications, hooks,
//! after-kill watch list, sd_notify and journald entries, from the config's fleet sections.

use std::net::SocketAddr;

use anyhow::Context;

use super::Observer;
use super::emit::Emitter;
use super::eventlog::EventLog;
use super::hooks::Hooks;
use super::journald::{Journal, under_journal};
use super::metrics::Metrics;
use super::notify::Notify;
use super::systemd::Systemd;
use super::warn::Warn;
use super::watch::{Watch, WatchTiming};
use crate::config::fleet::FleetSettings;
use crate::sense::Root;

/// What [`build`] made.
pub struct Fleet {
    pub observers: Vec<Box<dyn Observer>>,
    /// Where metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
}

/// Starts the fleet features. `metrics` (from `--metrics`) overrides `[metrics] listen`.
/// `log` is the daemon's event log (records the features write go there too).
pub fn build(
    f: &FleetSettings,
    metrics: Option<SocketAddr>,
    log: EventLog,
    root: Root,
) -> anyhow::Result<Fleet> {
    let mut observers: Vec<Box<dyn Observer>> = Vec::new();
    let mut emit = Emitter::new(log);
    let mut metrics_addr = None;
    if let Some(addr) = metrics.or(f.metrics_listen) {
        let m = Metrics::new();
        let bound = m.serve(&addr.to_string()).with_context(|| {
            format!("cannot serve metrics on {addr} (choose another address with --metrics)")
        })?;
        log::info!("metrics on http://{bound}/metrics");
        metrics_addr = Some(bound);
        let sink = m.clone();
        emit.add_sink(move |r| sink.observe(r));
        observers.push(Box::new(m));
    }
    if let Some(n) = Notify::start(&f.notify) {
        let sink = n.clone();
        emit.add_sink(move |r| sink.send(r));
        observers.push(Box::new(n));
    }
    if under_journal() {
        emit.add_sink(|r| Journal.record_entry(r));
        observers.push(Box::new(Journal));
    }
    if let Some(w) = Warn::new(&f.warn, emit.clone()) {
        observers.push(Box::new(w));
    }
    if !f.hooks.pre_kill.is_empty() || !f.hooks.post_kill.is_empty() {
        observers.push(Box::new(Hooks::new(f.hooks.clone())));
    }
    if let Some(w) = Watch::start(f.watch.clone(), root, emit, WatchTiming::default()) {
        observers.push(Box::new(w));
    }
    if let Some(s) = Systemd::from_env() {
        if let Some(wd) = s.watchdog() {
            log::info!("systemd watchdog every {}ms", wd.as_millis());
        }
        observers.push(Box::new(s));
    }
    Ok(Fleet {
        observers,
        metrics_addr,
    })
}
