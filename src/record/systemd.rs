//! systemd service integration through `sd_notify`: `READY=1` once the daemon has taken its
//! first sample (the guard loop runs), `WATCHDOG=1` at half the `WatchdogSec` interval while
//! the loop keeps waking, and a `STATUS=` line with the memory left. Inert when not started
//! by systemd with `Type=notify` (no `NOTIFY_SOCKET`).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::{Observer, Sample};

/// The sd_notify observer.
#[derive(Debug)]
pub struct Systemd {
    ready: bool,
    watchdog: Option<Duration>,
    last_ping: Instant,
    last_status: Option<Instant>,
}

/// How often the `STATUS=` line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

impl Systemd {
    /// `None` unless started by systemd with a notify socket.
    pub fn from_env() -> Option<Systemd> {
        std::env::var_os("NOTIFY_SOCKET")?;
        Some(Systemd {
            ready: false,
            watchdog: sd_notify::watchdog_enabled(),
            last_ping: Instant::now(),
            last_status: None,
        })
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// Tells systemd a config reload starts (`RELOADING=1` with the monotonic time) or ended.
pub fn reloading(done: bool) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let r = if done {
        sd_notify::notify(&[NotifyState::Ready])
    } else {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = r {
        log::debug!("sd_notify: {e}");
    }
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
}

impl Observer for Systemd {
    fn sample(&mut self, s: &Sample) {
        let now = Instant::now();
        let status_due = self
            .last_status
            .is_none_or(|t| now.duration_since(t) >= STATUS_EVERY);
        let status = status_due.then(|| {
            format!(
                "guarding: {} MiB of {} MiB available",
                s.mem.available_kb / 1024,
                s.mem.total_kb / 1024
            )
        });
        let mut states: Vec<NotifyState> = Vec::new();
        if !self.ready {
            states.push(NotifyState::Ready);
        }
        if let Some(wd) = self.watchdog
            && (!self.ready || now.duration_since(self.last_ping) >= wd / 2)
        {
            states.push(NotifyState::Watchdog);
            self.last_ping = now;
        }
        if let Some(st) = &status {
            states.push(NotifyState::Status(st));
            self.last_status = Some(now);
        }
        if states.is_empty() {
            return;
        }
        match sd_notify::notify(&states) {
            Ok(()) => {
                if !self.ready {
                    log::info!("told systemd we are ready");
                }
                self.ready = true;
            }
            Err(e) => log::debug!("sd_notify: {e}"),
        }
    }
}
