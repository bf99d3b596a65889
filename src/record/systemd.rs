//! systemd service integration through `sd_notify`: `READY=1` once the daemon has taken its
//! first sample (the guard loop runs), `WATCHDOG=1` every quarter of the `WatchdogSec` interval
//! while the loop keeps waking, and a `STATUS=` line with the memory left. A quarter, not the
//! half systemd suggests: a kill blocks the loop until its victim is gone (`act::escalate`:
//! the SIGTERM grace, 2 s by default, then up to 10 s for SIGKILL and 1 s to settle), and a
//! ping due just before such a kill must not arrive after `WatchdogSec` (30 s in the shipped
//! unit: 7.5 s + 13 s leave room; at half, a grace above 4 s would not). Inert when not started
//! by systemd with `Type=notify` (no `NOTIFY_SOCKET`).
//!
//! The messages go out on the daemon's loop thread, so sending must never block: they leave
//! through a non-blocking datagram socket this module owns. When systemd does not read its
//! socket (its queue is full) a message is dropped, counted ([`dropped`],
//! `oomguard_sd_notify_dropped_total`) and reported once; `READY=1` is sent again at the next
//! wake-up until it gets through. (The `sd-notify` crate's `notify` sends on a blocking
//! socket; it is used here only to spell the messages.)

use crate::sense::mem::MemState;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::{Observer, Sample};

/// Messages to systemd dropped since start (socket full or gone).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Messages to systemd dropped since start because its notify socket was full or gone.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A non-blocking way to systemd's notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// As given, for messages.
    name: String,
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Yes,
    /// Dropped: the socket's queue was full (systemd is not reading).
    Full,
    /// Dropped: another error (the socket is gone, ...).
    Failed(ErrorKind),
}

impl NotifySocket {
    /// A socket for `NOTIFY_SOCKET`'s value: a path, or `@name` for an abstract socket.
    pub fn new(target: &OsStr) -> std::io::Result<NotifySocket> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = target.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(target)?,
            Some(b'@') => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(&bytes[1..])?
            }
            _ => {
                return Err(std::io::Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "NOTIFY_SOCKET={} is neither a path nor @abstract",
                        target.to_string_lossy()
                    ),
                ));
            }
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(NotifySocket {
            sock,
            addr,
            name: target.to_string_lossy().into_owned(),
        })
    }

    /// Sends one message made of `states` without blocking; a dropped one is counted.
    pub fn send(&self, states: &[NotifyState]) -> Sent {
        let mut msg = String::new();
        for s in states {
            let _ = writeln!(msg, "{s}");
        }
        let r = match self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            Ok(n) if n == msg.len() => Sent::Yes,
            Ok(_) => Sent::Failed(ErrorKind::WriteZero),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Sent::Full,
            Err(e) => Sent::Failed(e.kind()),
        };
        if r != Sent::Yes {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

/// The process's socket to systemd, from `NOTIFY_SOCKET` (made at first use).
fn shared() -> Option<&'static NotifySocket> {
    static SOCKET: OnceLock<Option<NotifySocket>> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let target = std::env::var_os("NOTIFY_SOCKET")?;
            NotifySocket::new(&target)
                .map_err(|e| log::warn!("cannot talk to systemd: {e}"))
                .ok()
        })
        .as_ref()
}

/// The sd_notify observer.
#[derive(Debug)]
pub struct Systemd {
    sock: &'static NotifySocket,
    ready: bool,
    watchdog: Option<Duration>,
    last_ping: Instant,
    last_status: Option<Instant>,
    /// Messages are being dropped (reported once per run of drops).
    dropping: bool,
}

/// How often the `STATUS=` line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

impl Systemd {
    /// `None` unless started by systemd with a notify socket.
    pub fn from_env() -> Option<Systemd> {
        Some(Systemd::with(shared()?, sd_notify::watchdog_enabled()))
    }

    /// The observer sending on `sock`, pinging every half `watchdog`.
    pub fn with(sock: &'static NotifySocket, watchdog: Option<Duration>) -> Systemd {
        Systemd {
            sock,
            ready: false,
            watchdog,
            last_ping: Instant::now(),
            last_status: None,
            dropping: false,
        }
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Whether `READY=1` got through.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Sends one message of `states` (without blocking); says once when messages start being
    /// dropped and when they get through again.
    fn send(&mut self, states: &[NotifyState]) {
        match self.sock.send(states) {
            Sent::Yes => {
                if !self.ready {
                    log::info!("told systemd we are ready");
                }
                if self.dropping {
                    log::info!("systemd takes notify messages again");
                }
                self.ready = true;
                self.dropping = false;
            }
            r => {
                if !self.dropping {
                    let why = match r {
                        Sent::Full => "its queue is full: systemd is not reading it".to_string(),
                        Sent::Failed(k) => k.to_string(),
                        Sent::Yes => unreachable!(),
                    };
                    log::warn!(
                        "systemd notify socket {}: message dropped ({why}); the guard goes on \
                         and keeps trying (drops are counted in oomguard_sd_notify_dropped_total)",
                        self.sock.name
                    );
                }
                self.dropping = true;
            }
        }
    }
}

/// Tells systemd a config reload starts (`RELOADING=1` with the monotonic time) or ended.
pub fn reloading(done: bool) {
    let Some(sock) = shared() else { return };
    let r = if done {
        sock.send(&[NotifyState::Ready])
    } else {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => sock.send(&[NotifyState::Reloading, now]),
            Err(e) => Sent::Failed(e.kind()),
        }
    };
    if r != Sent::Yes {
        log::debug!("sd_notify to {}: {r:?}", sock.name);
    }
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    if let Some(sock) = shared() {
        sock.send(&[NotifyState::Stopping]);
    }
}

impl Observer for Systemd {
    /// Unless the status line is due within a second (a floor sample never sends one; see
    /// [`Sample::floor`]): the watchdog ping needs no memory figure.
    fn accepts_floor(&self, _floor: &MemState) -> bool {
        self.last_status
            .is_some_and(|t| t.elapsed() + Duration::from_secs(1) < STATUS_EVERY)
    }

    /// The watchdog's ping when it is due, and nothing else: during a kill the loop sits in
    /// the escalation (a grace of up to 60 s against the shipped unit's `WatchdogSec=30s`).
    fn alive(&mut self) {
        if let Some(wd) = self.watchdog
            && self.ready
            && self.last_ping.elapsed() >= wd / 4
        {
            self.last_ping = Instant::now();
            self.send(&[NotifyState::Watchdog]);
        }
    }

    fn sample(&mut self, s: &Sample) {
        let now = Instant::now();
        let status_due = !s.floor
            && self
                .last_status
                .is_none_or(|t| now.duration_since(t) >= STATUS_EVERY);
        let status = status_due.then(|| {
            format!(
                "guarding: {} of {} available",
                crate::values::human_kb(s.mem.available_kb),
                crate::values::human_kb(s.mem.total_kb)
            )
        });
        let mut states: Vec<NotifyState> = Vec::new();
        if !self.ready {
            states.push(NotifyState::Ready);
        }
        if let Some(wd) = self.watchdog
            && (!self.ready || now.duration_since(self.last_ping) >= wd / 4)
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
        self.send(&states);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::trigger::Levels;
    use crate::record::Wake;
    use crate::sense::mem::MemState;

    fn sample() -> Sample {
        Sample {
            mem: MemState {
                total_kb: 1 << 20,
                available_kb: 1 << 19,
                swap_total_kb: 0,
                swap_free_kb: 0,
            },
            levels: Levels {
                mem_term_kb: 0,
                mem_kill_kb: 0,
                swap_term_kb: 0,
                swap_kill_kb: 0,
            },
            psi_some: None,
            psi_full: None,
            psi_some_avg10: None,
            psi_full_avg10: None,
            wake: Wake::Timer,
            scan: None,
            scanned: 0,
            bounded: false,
            floor: false,
        }
    }

    /// A socket nobody reads, its queue filled: sending neither blocks nor loses `READY=1`.
    #[test]
    fn a_full_socket_drops_and_counts_and_ready_is_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let mut queued = 0;
        while filler.send_to(b"x", &path).is_ok() {
            queued += 1;
            assert!(queued < 100_000, "the socket never filled");
        }
        let sock: &'static NotifySocket =
            Box::leak(Box::new(NotifySocket::new(path.as_os_str()).unwrap()));
        let mut sd = Systemd::with(sock, Some(Duration::from_millis(1)));
        let before = dropped();
        let t = Instant::now();
        for _ in 0..5 {
            sd.sample(&sample());
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(t.elapsed() < Duration::from_secs(5), "sending blocked");
        assert!(!sd.is_ready());
        assert!(dropped() >= before + 5);
        // systemd reads again: the next wake-up gets READY=1 through.
        let mut b = [0u8; 512];
        for _ in 0..queued {
            systemd.recv(&mut b).unwrap();
        }
        sd.sample(&sample());
        assert!(sd.is_ready());
        let n = systemd.recv(&mut b).unwrap();
        let msg = std::str::from_utf8(&b[..n]).unwrap();
        assert!(msg.starts_with("READY=1\nWATCHDOG=1\n"), "{msg}");
    }

    #[test]
    fn abstract_and_path_targets_are_understood() {
        assert!(NotifySocket::new(OsStr::new("@oomguard-test")).is_ok());
        assert!(NotifySocket::new(OsStr::new("/run/systemd/notify")).is_ok());
        let e = NotifySocket::new(OsStr::new("vsock:2:1")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
