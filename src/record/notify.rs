//! `[notify]`: tells people and programs what happened, over D-Bus, from a thread of its own
//! (a bus call may block; the daemon must not).
//!
//! - System-bus signal, for every event record: path `/org/oomguard/Events`, interface
//!   `org.oomguard.Events1`, member `Event`, arguments `(s action, s record_json)`. Subscribe
//!   with `dbus-monitor --system "interface='org.oomguard.Events1'"`. The bus address comes
//!   from `DBUS_SYSTEM_BUS_ADDRESS` when set.
//! - Desktop notifications (`org.freedesktop.Notifications.Notify`) for kills, kernel kills,
//!   warnings and missing watched programs, sent to every logged-in user's session bus
//!   (`USER_RUNTIME_DIR/UID/bus`, as systemd-logind lays them out). D-Bus is the same under
//!   Wayland and X11, so this reaches either desktop.
//!
//! No async runtime: zbus's blocking API (its internal executor thread, no tokio).

use crate::sense::mem::MemState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::event::{Event, Record};
use zbus::blocking::Connection;
use zbus::zvariant;

use super::Observer;
use crate::config::fleet::NotifySettings;

pub const SIGNAL_PATH: &str = "/org/oomguard/Events";
pub const SIGNAL_INTERFACE: &str = "org.oomguard.Events1";
pub const SIGNAL_MEMBER: &str = "Event";

/// What a desktop notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct Desktop {
    pub summary: String,
    pub body: String,
    /// 0 low, 1 normal, 2 critical.
    pub urgency: u8,
}

/// The desktop notification for a record, if it deserves one.
pub fn desktop_for(rec: &Record) -> Option<Desktop> {
    let esc = |t: &str| crate::values::escape_text(t).into_owned();
    let detail = rec.event.summary();
    let host = esc(&rec.host);
    match &rec.event {
        Event::Kill(d) => Some(Desktop {
            summary: format!("Out of memory: {} was stopped", esc(&d.victim.comm)),
            body: format!(
                "oomguard stopped {} (pid {}) on {host} to keep the system responsive: {detail}.",
                esc(&d.victim.comm),
                d.victim.pid
            ),
            urgency: 2,
        }),
        Event::KernelKill(_) => Some(Desktop {
            summary: "Out of memory: the kernel killed a process".into(),
            body: format!("On {host}: {detail}. See `oomguard explain` for who and why."),
            urgency: 2,
        }),
        Event::Warn(w) if w.state == "high" => Some(Desktop {
            summary: "Memory is running low".into(),
            body: format!("On {host}: {detail}. Close what you do not need."),
            urgency: 1,
        }),
        Event::Missing(m) => Some(Desktop {
            summary: format!("{} stopped after an out-of-memory event", esc(&m.watch)),
            body: format!("On {host}: {detail}."),
            urgency: 2,
        }),
        _ => None,
    }
}

/// The session bus sockets of logged-in users: `DIR/UID/bus`, a socket (not a symbolic link
/// to one) owned by that UID: a user cannot point the guard at another socket (systemd's
/// journal, a listener of their own) under their own runtime directory.
pub fn session_buses(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let uid: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bus = e.path().join("bus");
                    let m = std::fs::symlink_metadata(&bus).ok()?;
                    (m.file_type().is_socket() && m.uid() == uid).then_some(bus)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// How long a connection may take to be made, its authentication included. zbus has no limit
/// for that: a socket that accepts and never answers (a stopped bus daemon) would hold the
/// notification thread, and every notification after it, for good.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

/// Runs `connect(address)` on a thread of its own and waits up to [`CONNECT_WITHIN`]. An
/// attempt that does not end in time is left to end (or hang) on its thread, and `busy` keeps
/// its address until it ends: no second attempt piles up behind it.
fn connect_within(
    address: &str,
    busy: &mut HashMap<String, Arc<AtomicBool>>,
    connect: fn(&str) -> Result<Connection, String>,
) -> Result<Connection, String> {
    busy.retain(|_, running| running.load(Ordering::Relaxed));
    if busy.contains_key(address) {
        return Err("an earlier attempt to connect has not ended".into());
    }
    let running = Arc::new(AtomicBool::new(true));
    let (tx, rx) = sync_channel(1);
    let (a, r) = (address.to_string(), running.clone());
    std::thread::Builder::new()
        .name("oomguard-dbus".into())
        .spawn(move || {
            let c = connect(&a);
            r.store(false, Ordering::Relaxed);
            let _ = tx.send(c);
        })
        .map_err(|e| format!("cannot start a thread to connect: {e}"))?;
    busy.insert(address.to_string(), running);
    match rx.recv_timeout(CONNECT_WITHIN) {
        Ok(c) => c,
        Err(_) => Err(format!(
            "no answer within {} s (the bus is stopped or is not one)",
            CONNECT_WITHIN.as_secs()
        )),
    }
}

/// Connects to the session bus at `address` (on the calling thread: the notification thread
/// goes through [`connect_within`]).
fn session_at(address: &str) -> zbus::Result<Connection> {
    zbus::blocking::connection::Builder::address(address)?
        .method_timeout(Duration::from_secs(5))
        .build()
}

/// The body as it goes to a notification server: escaped for its markup when the server reads
/// markup in bodies (capability `body-markup`). There `&` and `<` are markup, so a process
/// named `a&b` or `<u>x</u>` (any user picks names) would show as something else, or make the
/// whole body invalid markup that servers drop or show raw. The summary is plain text for
/// every server.
pub fn body_as_sent(d: &Desktop, markup: bool) -> std::borrow::Cow<'_, str> {
    if !markup || !d.body.contains(['&', '<', '>']) {
        return std::borrow::Cow::Borrowed(&d.body);
    }
    let mut out = String::with_capacity(d.body.len() + 16);
    for c in d.body.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether the notification server on `conn` reads markup in bodies (`GetCapabilities` lists
/// `body-markup`). A server that does not answer is taken to read plain text.
pub fn reads_body_markup(conn: &Connection) -> bool {
    conn.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "GetCapabilities",
        &(),
    )
    .and_then(|reply| reply.body().deserialize::<Vec<String>>())
    .is_ok_and(|caps| caps.iter().any(|c| c == "body-markup"))
}

/// Sends one desktop notification over `conn` (its body escaped for `markup`, see
/// [`body_as_sent`]); returns the notification id.
pub fn send_desktop(conn: &Connection, d: &Desktop, markup: bool) -> zbus::Result<u32> {
    let mut hints: HashMap<&str, zvariant::Value> = HashMap::new();
    hints.insert("urgency", zvariant::Value::U8(d.urgency));
    hints.insert("desktop-entry", zvariant::Value::from("oomguard"));
    let reply = conn.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "Notify",
        &(
            "oomguard",
            0u32,
            "dialog-warning",
            d.summary.as_str(),
            &*body_as_sent(d, markup),
            Vec::<&str>::new(),
            hints,
            -1i32,
        ),
    )?;
    reply.body().deserialize::<u32>()
}

/// The notification observer: queues records for its thread. Clones share the thread.
#[derive(Debug, Clone)]
pub struct Notify {
    // Boxed: the channel preallocates and touches every slot, so a slot holds a pointer.
    tx: SyncSender<Box<Record>>,
}

impl Notify {
    /// Starts the notification thread; `None` when both kinds are off.
    pub fn start(settings: &NotifySettings) -> Option<Notify> {
        if !settings.dbus_signal && !settings.desktop {
            return None;
        }
        let (tx, rx) = sync_channel(256);
        let s = settings.clone();
        super::side::spawn_background("oomguard-notify", move || worker(rx, s))
            .map_err(|e| log::error!("notifications not started: {e}"))
            .ok()?;
        Some(Notify { tx })
    }

    /// Queues a record (never blocks; a full queue drops it with a debug line).
    pub fn send(&self, rec: &Record) {
        match self.tx.try_send(Box::new(rec.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => log::debug!("notification queue full; dropped one"),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl super::emit::Sink for Notify {
    fn take(&self, rec: &Record) {
        self.send(rec);
    }

    /// The copy [`Notify::send`] queues, not queued.
    fn warm(&self, rec: &Record) {
        std::hint::black_box(Box::new(rec.clone()));
    }
}

impl Observer for Notify {
    /// Reads records only, never a sample's memory.
    fn accepts_floor(&self, _floor: &MemState) -> bool {
        true
    }

    fn record(&mut self, rec: &Record) {
        self.send(rec);
    }
}

/// The system bus's address: the configured one, else `DBUS_SYSTEM_BUS_ADDRESS`, else the
/// standard socket (as zbus and libdbus resolve it).
fn system_bus_address(configured: Option<&str>) -> String {
    configured.map(str::to_string).unwrap_or_else(|| {
        std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "unix:path=/var/run/dbus/system_bus_socket".to_string())
    })
}

/// The socket file of a `unix:path=…` address when it does not exist: no bus to connect to
/// (a server or container without D-Bus). `None` for any other address, or when it exists;
/// also for a list of addresses (`;`) and an escaped path (`%`), which zbus reads.
fn missing_socket(address: &str) -> Option<&str> {
    if address.contains([';', '%']) {
        return None;
    }
    let path = address
        .strip_prefix("unix:")?
        .split(',')
        .find_map(|kv| kv.strip_prefix("path="))?;
    (!Path::new(path).exists()).then_some(path)
}

/// Connects to the system bus. Where its socket file is missing, says so without starting a
/// connection: zbus starts its I/O thread and runs much code it never ran before even for a
/// socket that is not there (in the VM fork storm, 6–7.6 ms of CPU in one stretch at the first
/// record, a warning as memory ran short).
fn connect_system(
    address: &str,
    busy: &mut HashMap<String, Arc<AtomicBool>>,
) -> Result<Connection, String> {
    if let Some(path) = missing_socket(address) {
        return Err(format!("{path} does not exist"));
    }
    connect_within(address, busy, |a| {
        zbus::blocking::connection::Builder::address(a)
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())
    })
}

fn worker(rx: Receiver<Box<Record>>, s: NotifySettings) {
    let address = system_bus_address(s.system_bus.as_deref());
    let mut system: Option<Connection> = None;
    let mut last_fail: Option<Instant> = None;
    let mut warned = false;
    // Session bus connections by socket, kept while they work, and whether their server reads
    // markup in bodies.
    let mut sessions: HashMap<PathBuf, (Connection, bool)> = HashMap::new();
    // Connection attempts still under way on their threads, by address.
    let mut busy: HashMap<String, Arc<AtomicBool>> = HashMap::new();
    while let Ok(rec) = rx.recv() {
        if s.dbus_signal {
            // Reconnect at most every 10 s after a failure.
            if system.is_none() && last_fail.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                match connect_system(&address, &mut busy) {
                    Ok(c) => system = Some(c),
                    Err(e) => {
                        last_fail = Some(Instant::now());
                        if !warned {
                            log::warn!("no D-Bus system bus, no event signals for now: {e}");
                            warned = true;
                        }
                    }
                }
            }
            if let Some(c) = &system {
                let action = rec.event.action();
                let json = rec.to_value().to_string();
                if let Err(e) = c.emit_signal(
                    None::<&str>,
                    SIGNAL_PATH,
                    SIGNAL_INTERFACE,
                    SIGNAL_MEMBER,
                    &(action, json.as_str()),
                ) {
                    log::warn!("D-Bus event signal failed: {e}");
                    system = None;
                    last_fail = Some(Instant::now());
                }
            }
        }
        if s.desktop
            && let Some(d) = desktop_for(&rec)
        {
            let buses = session_buses(Path::new(&s.user_runtime_dir));
            sessions.retain(|k, _| buses.contains(k));
            for bus in buses {
                let (conn, markup) = match sessions.get(&bus) {
                    Some(c) => c.clone(),
                    None => {
                        let address = format!("unix:path={}", bus.display());
                        match connect_within(&address, &mut busy, |a| {
                            session_at(a).map_err(|e| e.to_string())
                        }) {
                            Ok(c) => {
                                let markup = reads_body_markup(&c);
                                sessions.insert(bus.clone(), (c.clone(), markup));
                                (c, markup)
                            }
                            Err(e) => {
                                log::debug!("cannot reach session bus {}: {e}", bus.display());
                                continue;
                            }
                        }
                    }
                };
                match send_desktop(&conn, &d, markup) {
                    Ok(id) => log::debug!("desktop notification {id} sent on {}", bus.display()),
                    Err(e) => {
                        log::debug!("desktop notification on {} failed: {e}", bus.display());
                        sessions.remove(&bus);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desktop_for(v: &serde_json::Value) -> Option<Desktop> {
        super::desktop_for(&Record::from_value(v.clone()).unwrap())
    }

    /// A session bus is `DIR/UID/bus`, a socket of that UID's own: not a symbolic link to
    /// another socket, not a socket that another user owns.
    #[test]
    fn session_buses_are_sockets_their_users_own() {
        let me = rustix::process::getuid().as_raw();
        let other = if me == 0 { 1000 } else { 0 };
        let d = tempfile::tempdir().unwrap();
        let elsewhere = d.path().join("elsewhere.sock");
        let _e = std::os::unix::net::UnixListener::bind(&elsewhere).unwrap();
        let run = d.path().join("run");
        for dir in [me.to_string(), other.to_string(), "not-a-uid".into()] {
            std::fs::create_dir_all(run.join(dir)).unwrap();
        }
        let _mine = std::os::unix::net::UnixListener::bind(run.join(format!("{me}/bus"))).unwrap();
        // The other UID's "bus" is ours (we own the socket), and a name that is no UID.
        let _theirs =
            std::os::unix::net::UnixListener::bind(run.join(format!("{other}/bus"))).unwrap();
        let _odd = std::os::unix::net::UnixListener::bind(run.join("not-a-uid/bus")).unwrap();
        assert_eq!(session_buses(&run), [run.join(format!("{me}/bus"))]);
        // Our own bus as a symbolic link to another socket: not taken.
        std::fs::remove_file(run.join(format!("{me}/bus"))).unwrap();
        std::os::unix::fs::symlink(&elsewhere, run.join(format!("{me}/bus"))).unwrap();
        assert!(session_buses(&run).is_empty());
    }

    /// A socket that accepts and never answers: the attempt ends after [`CONNECT_WITHIN`], and
    /// while it hangs on its thread no second one starts for the same address.
    #[test]
    fn a_bus_that_never_answers_does_not_hold_the_thread() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("bus");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let addr = format!("unix:path={}", path.display());
        let mut busy = HashMap::new();
        let connect = |a: &str| session_at(a).map_err(|e| e.to_string());
        let t0 = Instant::now();
        let err = connect_within(&addr, &mut busy, connect).expect_err("nobody answers");
        let took = t0.elapsed();
        assert!(err.contains("no answer within"), "{err}");
        assert!(took < CONNECT_WITHIN + Duration::from_secs(1), "{took:?}");
        let t0 = Instant::now();
        let err = connect_within(&addr, &mut busy, connect).expect_err("still hanging");
        assert!(err.contains("has not ended"), "{err}");
        assert!(t0.elapsed() < Duration::from_millis(100));
        // The listener gone, the hanging attempt fails and ends: the address is free again.
        drop(listener);
        let until = Instant::now() + Duration::from_secs(5);
        while busy.values().any(|r| r.load(Ordering::Relaxed)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = connect_within(&addr, &mut busy, connect).expect_err("no socket now");
        assert!(!err.contains("has not ended"), "{err}");
    }

    #[test]
    fn a_missing_bus_socket_is_told_without_connecting() {
        let d = tempfile::tempdir().unwrap();
        let absent = d.path().join("bus");
        let addr = format!("unix:path={}", absent.display());
        assert_eq!(missing_socket(&addr), absent.to_str());
        let with_guid = format!("unix:path={},guid=0123", absent.display());
        assert_eq!(missing_socket(&with_guid), absent.to_str());
        let err = connect_system(&addr, &mut HashMap::new()).expect_err("no bus there");
        assert!(err.contains("does not exist"), "{err}");
        // A socket that exists, and addresses that are not a path, go to zbus.
        let _l = std::os::unix::net::UnixListener::bind(&absent).unwrap();
        assert_eq!(missing_socket(&addr), None);
        assert_eq!(missing_socket("unix:abstract=/tmp/dbus-x"), None);
        assert_eq!(missing_socket("tcp:host=localhost,port=1"), None);
        // A list of addresses, or an escaped path: zbus tries them.
        let list = format!("unix:path={};unix:path=/run/other", absent.display());
        assert_eq!(missing_socket(&list), None);
        assert_eq!(missing_socket("unix:path=/nonexistent%20dir/bus"), None);
        assert_eq!(
            system_bus_address(Some("unix:path=/x")),
            "unix:path=/x",
            "the configured address comes first"
        );
    }

    /// A name with markup in it shows as written: escaped for a server that reads markup in
    /// bodies, as is for one that does not (the summary is plain text everywhere).
    #[test]
    fn names_with_markup_characters_are_escaped_for_servers_that_read_markup() {
        let kill = serde_json::json!({"action": "kill", "host": "a&b",
            "victim": {"pid": 7, "comm": "<u>x</u>&y", "rss_kb": 1}, "trigger": {"reason": "r"}});
        let d = desktop_for(&kill).unwrap();
        assert_eq!(d.summary, "Out of memory: <u>x</u>&y was stopped");
        let marked = body_as_sent(&d, true);
        assert!(
            marked.starts_with("oomguard stopped &lt;u&gt;x&lt;/u&gt;&amp;y (pid 7) on a&amp;b "),
            "{marked}"
        );
        assert!(!marked.contains(['<', '>']), "{marked}");
        assert!(
            !marked
                .replace("&amp;", "")
                .replace("&lt;", "")
                .replace("&gt;", "")
                .contains('&')
        );
        assert_eq!(body_as_sent(&d, false), d.body);
        assert!(
            d.body
                .starts_with("oomguard stopped <u>x</u>&y (pid 7) on a&b ")
        );
    }

    #[test]
    fn what_deserves_a_desktop_notification() {
        let kill = serde_json::json!({"action": "kill", "host": "box",
            "victim": {"pid": 7, "comm": "hog", "rss_kb": 1048576}, "trigger": {"reason": "low_memory_kill"}});
        let d = desktop_for(&kill).unwrap();
        assert_eq!(d.summary, "Out of memory: hog was stopped");
        assert!(
            d.body.contains("pid 7") && d.body.contains("rss 1.0 GiB"),
            "{}",
            d.body
        );
        assert_eq!(d.urgency, 2);
        let warn = serde_json::json!({"action": "warn", "state": "high", "used_pct": 90.0});
        assert_eq!(desktop_for(&warn).unwrap().urgency, 1);
        let cleared = serde_json::json!({"action": "warn", "state": "cleared"});
        assert!(desktop_for(&cleared).is_none());
        assert!(desktop_for(&serde_json::json!({"action": "dry_run"})).is_none());
    }
}
