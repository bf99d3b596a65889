//! The daemon assembles itself: the scope lock, the signal pipe and handlers, self-protection,
//! the protection thread, the fleet observers and the SIGHUP reload. The config file is read
//! once per start and once per reload, so one version of it is in force at a time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, passwd_lookup};
use crate::daemon::guardian::{Guardian, GuardianOptions};
use crate::daemon::{Daemon, Flags, Reload, Settings};
use crate::record::emit::SharedSinks;
use crate::sense::Root;

/// What the daemon needs besides its settings.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The config file (`None`: the default path when it exists).
    pub config: Option<PathBuf>,
    /// Where /proc, /sys and /etc are read from.
    pub root: Root,
    /// `--metrics`: overrides `[metrics] listen`.
    pub metrics: Option<SocketAddr>,
    /// Directory of the per-scope lock files (`None`: the state directory).
    pub lock_dir: Option<PathBuf>,
    pub protect: GuardianOptions,
}

/// Turns one reading of the config file into settings (flags override the file).
pub type BuildSettings = Box<dyn Fn(&Config) -> anyhow::Result<Settings> + Send>;

/// Reads and validates the config file once (user names resolved against `ROOT/etc/passwd`).
pub fn load_config(path: Option<&Path>, root: &Root) -> anyhow::Result<Config> {
    let users = passwd_lookup(root.as_path());
    Ok(Config::load(path, &users)?)
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn start(opts: StartOptions, build: BuildSettings) -> anyhow::Result<()> {
    let cfg = load_config(opts.config.as_deref(), &opts.root)?;
    let s = build(&cfg)?;
    // Held until the process exits: a second guard on this scope refuses to start.
    let _lock = super::lock::ScopeLock::acquire(
        &opts
            .lock_dir
            .clone()
            .unwrap_or_else(super::lock::default_dir),
        &s.root,
        &s.scope,
    )?;
    let flags = Flags::default();
    let pipe_r = signals(&flags)?;
    for n in crate::act::harden::protect_self() {
        log::warn!("{n}");
    }
    let root = s.root.clone();
    let reloader = crate::record::fleet::Reloader::default();
    let fleet_reload = reloader.clone();
    let protect_opts = opts.protect;
    // The fleet's sinks (metrics, notifications, the journal), for the protection thread's
    // records: the fleet starts before the protection thread, so that the first scan's records
    // are counted too.
    let sinks = SharedSinks::default();
    // The protection thread, held by the reload closure (which starts it when a reload brings
    // the first `oom_score_adj` rule) and by this function: it lives as long as the daemon.
    let guardian: Arc<Mutex<Option<Guardian>>> = Arc::default();
    let config_path = opts.config.clone();
    let reload_root = opts.root.clone();
    // A reload keeps the scope and the event log (their changes need a restart): protection
    // started by a reload works in these.
    let (kept_root, kept_scope, kept_log) = (s.root.clone(), s.scope.clone(), s.event_log.clone());
    let start_policy = s.policy.clone();
    let (reload_guardian, reload_sinks) = (guardian.clone(), sinks.clone());
    let reload: Reload = Box::new(move || {
        crate::record::systemd::reloading(false);
        // Every step that can fail comes before anything of the new config is applied: a
        // refused reload changes nothing.
        let apply = || -> anyhow::Result<Settings> {
            let cfg = load_config(config_path.as_deref(), &reload_root)?;
            let new = build(&cfg)?;
            let mut guardian = reload_guardian.lock().unwrap_or_else(|p| p.into_inner());
            match &*guardian {
                Some(g) => g.set_policy(new.policy.clone()),
                None => {
                    *guardian = Guardian::for_daemon(
                        &kept_root,
                        &kept_scope,
                        &new.policy,
                        &kept_log,
                        &reload_sinks,
                        protect_opts,
                    )?
                }
            }
            fleet_reload.push(cfg.fleet);
            Ok(new)
        };
        let r = apply();
        crate::record::systemd::reloading(true);
        r
    });
    let (guard_root, guard_scope, guard_log) =
        (s.root.clone(), s.scope.clone(), s.event_log.clone());
    let mut d = Daemon::new(s, Vec::new(), flags, Some(pipe_r), Some(reload))?;
    let built = crate::record::fleet::build(
        &cfg.fleet,
        opts.metrics,
        d.event_log().clone(),
        root,
        reloader,
        sinks.clone(),
    )?;
    let started = Guardian::for_daemon(
        &guard_root,
        &guard_scope,
        &start_policy,
        &guard_log,
        &sinks,
        protect_opts,
    )?;
    if let Some(g) = &started
        && !g.wait_first_scan(super::guardian::FIRST_SCAN_WAIT)
    {
        log::warn!(
            "protection: the first scan is still running after {} s (a command line that cannot be read yet: its process's memory map is locked); the guard starts, and the scan goes on beside it",
            super::guardian::FIRST_SCAN_WAIT.as_secs()
        );
    }
    *guardian.lock().unwrap_or_else(|p| p.into_inner()) = started;
    d.add_observer(Box::new(built.observer));
    let r = d.run();
    // Records and log lines still queued get a moment to reach their files.
    crate::record::eventlog::flush_all(Duration::from_secs(2));
    log::logger().flush();
    r?;
    crate::record::systemd::stopping();
    Ok(())
}

/// SIGTERM/SIGINT set `flags.stop`, SIGHUP `flags.reload`; all three also write to the
/// returned pipe, which wakes the loop's poll(2). SIGUSR1 (and SIGHUP) reopen the event log
/// after logrotate moved it.
fn signals(flags: &Flags) -> anyhow::Result<std::os::fd::OwnedFd> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (pipe_r, pipe_w) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .context("cannot create the signal pipe")?;
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register(sig, flags.stop.clone())
            .context("cannot install signal handlers")?;
    }
    signal_hook::flag::register(SIGHUP, flags.reload.clone())
        .context("cannot install signal handlers")?;
    crate::record::eventlog::reopen_on_signals().context("cannot install signal handlers")?;
    let pipe_w = Arc::new(pipe_w);
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        signal_hook::low_level::pipe::register(sig, pipe_w.try_clone().context("signal pipe")?)
            .context("cannot install signal handlers")?;
    }
    Ok(pipe_r)
}
