//! Notifications over real buses: private `dbus-daemon`s stand in for the system bus and a
//! user's session bus; `dbus-monitor` (an independent client) checks the system-bus signal, and
//! a Notifications server owning `org.freedesktop.Notifications` checks the desktop call.
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use oomguard::config::fleet::NotifySettings;
use oomguard::record::notify::Notify;
use serde_json::json;
use zbus::zvariant::OwnedValue;

use crate::fleet_util::{have, wait_for};
use crate::util::{Reaped, require, tempdir};

/// A private bus listening on `socket`.
pub fn start_bus(socket: &Path) -> Reaped {
    let dir = socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_type="signal"/>
    <allow receive_type="signal"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
            socket.display()
        ),
    )
    .unwrap();
    let child = Reaped(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start dbus-daemon"),
    );
    assert!(
        wait_for(Duration::from_secs(10), || socket.exists().then_some(())).is_some(),
        "dbus-daemon did not create {}",
        socket.display()
    );
    child
}

/// `dbus-monitor` on `socket` for oomguard's signals; each signal as (action, record JSON).
pub fn monitor_signals(socket: &Path) -> (Reaped, Receiver<(String, serde_json::Value)>) {
    let mut child = Reaped(
        Command::new("dbus-monitor")
            .arg("--address")
            .arg(format!("unix:path={}", socket.display()))
            .arg("type='signal',interface='org.oomguard.Events1'")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-monitor"),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines().map_while(Result::ok);
        while let Some(l) = lines.next() {
            if !(l.starts_with("signal ")
                && l.contains("path=/org/oomguard/Events;")
                && l.contains("member=Event"))
            {
                continue;
            }
            let arg = |l: Option<String>| {
                let l = l?;
                let s = l.trim().strip_prefix("string \"")?.strip_suffix('"')?;
                Some(s.to_string())
            };
            let (Some(action), Some(rec)) = (arg(lines.next()), arg(lines.next())) else {
                continue;
            };
            if let Ok(v) = serde_json::from_str(&rec)
                && tx.send((action, v)).is_err()
            {
                break;
            }
        }
    });
    // dbus-monitor needs a moment to register as a monitor.
    std::thread::sleep(Duration::from_millis(500));
    (child, rx)
}

/// One Notify call as the server received it.
#[derive(Debug)]
pub struct NotifyCall {
    pub app_name: String,
    pub summary: String,
    pub body: String,
    pub hints: HashMap<String, OwnedValue>,
    pub expire_timeout: i32,
}

struct Server {
    tx: Mutex<Sender<NotifyCall>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    /// As GNOME Shell, KDE Plasma, dunst and mako answer: bodies are read as markup.
    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into(), "body-markup".into()]
    }

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        expire_timeout: i32,
    ) -> u32 {
        let _ = self.tx.lock().unwrap().send(NotifyCall {
            app_name,
            summary,
            body,
            hints,
            expire_timeout,
        });
        42
    }
}

/// A desktop notification server on the bus at `socket`.
pub fn notification_server(socket: &Path) -> (zbus::blocking::Connection, Receiver<NotifyCall>) {
    let (tx, rx) = channel();
    let conn = zbus::blocking::connection::Builder::address(
        format!("unix:path={}", socket.display()).as_str(),
    )
    .unwrap()
    .name("org.freedesktop.Notifications")
    .unwrap()
    .serve_at(
        "/org/freedesktop/Notifications",
        Server { tx: Mutex::new(tx) },
    )
    .unwrap()
    .build()
    .expect("serve org.freedesktop.Notifications");
    (conn, rx)
}

pub struct Buses {
    pub _dir: tempfile::TempDir,
    pub system: PathBuf,
    pub runtime: PathBuf,
    /// `runtime/UID/bus`: the session bus of this test's user, who owns its socket (the guard
    /// takes only a socket owned by the UID its directory names).
    pub user: PathBuf,
    _daemons: Vec<Reaped>,
}

/// A system bus and this user's session bus under `DIR/run/UID/bus`.
pub fn buses() -> Option<Buses> {
    if !require(
        have("dbus-daemon") && have("dbus-monitor"),
        "dbus-daemon and dbus-monitor (Debian package dbus)",
    ) {
        return None;
    }
    let d = tempdir();
    let system = d.path().join("system/bus");
    let runtime = d.path().join("run");
    let user = runtime.join(format!("{}/bus", rustix::process::getuid().as_raw()));
    let daemons = vec![start_bus(&system), start_bus(&user)];
    Some(Buses {
        system,
        runtime,
        user,
        _dir: d,
        _daemons: daemons,
    })
}

#[test]
fn signal_on_the_system_bus_and_desktop_notification_on_the_session_bus() {
    let Some(b) = buses() else { return };
    let (_mon, signals) = monitor_signals(&b.system);
    let (_srv, calls) = notification_server(&b.user);
    let n = Notify::start(&NotifySettings {
        dbus_signal: true,
        desktop: true,
        user_runtime_dir: b.runtime.display().to_string(),
        system_bus: Some(format!("unix:path={}", b.system.display())),
    })
    .unwrap();
    // A complete kill record as the daemon writes it (the signal carries the record as written).
    let mut kill: serde_json::Value = serde_json::from_str(
        include_str!("fixtures/events/kill.jsonl")
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    kill["host"] = "box".into();
    kill["victim"]["pid"] = 4242.into();
    // A name with markup characters (any user picks names).
    kill["victim"]["comm"] = "hog<b>&co".into();
    kill["victim"]["rss_kb"] = 2097152.into();
    n.send(&oomguard::record::event::Record::from_value(kill.clone()).unwrap());
    n.send(
        &oomguard::record::event::Record::from_value(json!({"action": "dry_run", "host": "box"}))
            .unwrap(),
    );
    let (action, rec) = signals
        .recv_timeout(Duration::from_secs(10))
        .expect("the Event signal on the system bus");
    assert_eq!(action, "kill");
    assert_eq!(rec, kill);
    let (action, _) = signals.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(action, "dry_run", "every record is signalled");
    let call = calls
        .recv_timeout(Duration::from_secs(10))
        .expect("a Notify call on the session bus");
    assert_eq!(call.app_name, "oomguard");
    assert_eq!(call.summary, "Out of memory: hog<b>&co was stopped");
    assert!(
        call.body.contains("pid 4242") && call.body.contains("rss 2.0 GiB"),
        "{}",
        call.body
    );
    // The server reads markup in bodies: the name is escaped there, shown as it is.
    assert!(
        call.body
            .starts_with("oomguard stopped hog&lt;b&gt;&amp;co (pid 4242)"),
        "{}",
        call.body
    );
    assert_eq!(u8::try_from(&call.hints["urgency"]).unwrap(), 2);
    assert_eq!(call.expire_timeout, -1);
    // A dry run is not worth a desktop notification.
    assert!(calls.recv_timeout(Duration::from_millis(500)).is_err());
}
