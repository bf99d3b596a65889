//! The fleet features through `oomguard run --scope cgroup:<test group>`: real kills happen only
//! inside the test's own memory cgroup. A real Prometheus scrapes the daemon; systemd's notify
//! protocol is checked on a socket the test binds; a real kill runs a slow pre_kill hook and a
//! failing post_kill hook without delay, triggers the warning, the watch list's follow-ups, the
//! system-bus signal and a desktop notification.
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::fleet_metrics::{prom_query, start_prometheus};
use crate::fleet_notify::{buses, monitor_signals, notification_server};
use crate::fleet_util::{free_port, have, wait_for};
use crate::run_cgroup::hog;
use crate::util::{TestCgroup, bin, oomguard, require, tempdir};

const MIB: u64 = 1 << 20;

/// `oomguard run` on a test cgroup; its stderr lines arrive on `lines`. SIGINT + reap on drop.
struct Run {
    child: Child,
    log: PathBuf,
    lines: Receiver<String>,
}

impl Run {
    fn start(cg: &TestCgroup, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut child = Command::new(bin())
            .args(["run", "--scope", &format!("cgroup:{}", cg.rel())])
            .args(["--event-log", log.to_str().unwrap()])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oomguard run");
        let lines = crate::util::daemon_lines(&mut child);
        let r = Run {
            child,
            log: log.to_path_buf(),
            lines,
        };
        r.expect_line("guarding", Duration::from_secs(20));
        r
    }

    fn expect_line(&self, what: &str, timeout: Duration) -> String {
        crate::util::wait_line(&self.lines, what, timeout)
    }

    fn records(&self) -> Vec<Value> {
        crate::util::event_log_json(&self.log)
    }

    fn wait_record(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(Duration::from_secs(30), || {
            self.records().into_iter().find(&pred)
        })
        .unwrap_or_else(|| panic!("no {what} record: {:?}", self.records()))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        crate::util::interrupt_and_reap(&mut self.child);
    }
}

#[test]
fn prometheus_scrapes_the_running_daemon_and_systemd_hears_ready_and_watchdog() {
    if !require(have("prometheus"), "prometheus (Debian package prometheus)") {
        return;
    }
    let Some(cg) = TestCgroup::new("fleetprom", 400 * MIB) else {
        return;
    };
    let d = tempdir();
    let sock_path = d.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let run = Run::start(
        &cg,
        &d.path().join("events.jsonl"),
        &["--dry-run", "--metrics", &addr],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    // systemd's side: READY=1 once the loop runs, then WATCHDOG=1 at least every 0.5 s.
    let mut buf = [0u8; 4096];
    let mut got = String::new();
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_secs(5) && pings < 3 {
        let n = sock.recv(&mut buf).expect("a notify datagram");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        pings += msg.lines().filter(|l| *l == "WATCHDOG=1").count();
        got.push_str(&msg);
        got.push('\n');
    }
    assert!(
        got.lines().next().unwrap().contains("READY=1") || got.starts_with("READY=1"),
        "{got}"
    );
    assert!(pings >= 3, "watchdog pings: {got}");
    assert!(got.contains("STATUS=guarding"), "{got}");
    // A reload is announced (RELOADING=1 with the monotonic time), then READY=1 again.
    // SAFETY: SIGHUP to the daemon this test started.
    // SAFETY: kill(2) takes no pointers; the daemon is a child this test started.
    unsafe { libc::kill(run.child.id() as i32, libc::SIGHUP) };
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("READY=1")) {
        let n = sock.recv(&mut buf).expect("notify datagrams after SIGHUP");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("RELOADING=1") || !seen.is_empty() {
            seen.push(msg);
        }
    }
    assert!(
        seen[0].contains("RELOADING=1") && seen[0].contains("MONOTONIC_USEC="),
        "{seen:?}"
    );

    let mut big = hog(&cg, &["--name", "bigone", "--max", "370M"]);
    run.wait_record("dry_run", |r| r["action"] == "dry_run");
    let (_prom, prom) = start_prometheus(addr.parse().unwrap(), d.path());
    let total = wait_for(Duration::from_secs(30), || {
        prom_query(prom, "oomguard_memory_total_bytes").map(|(_, v)| v)
    })
    .expect("prometheus has the daemon's series");
    assert_eq!(
        total,
        (400 * MIB) as f64,
        "the scope's total is the cgroup limit"
    );
    let (labels, n) = prom_query(prom, "oomguard_dry_run_decisions_total").unwrap();
    assert!(n >= 1.0, "{labels}");
    let (_, avail) = prom_query(prom, "oomguard_memory_available_bytes").unwrap();
    assert!(avail < (100 * MIB) as f64, "{avail}");
    let (_, wakes) = prom_query(prom, "sum(oomguard_wakeups_total)").unwrap();
    assert!(wakes > 0.0);
    assert!(
        big.0.try_wait().unwrap().is_none(),
        "dry run killed nothing"
    );
    assert_eq!(cg.kernel_oom_kills(), 0);
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn a_real_kill_runs_hooks_without_delay_then_follow_ups_signals_and_notifications() {
    let Some(cg) = TestCgroup::new("fleetkill", 400 * MIB) else {
        return;
    };
    let Some(b) = buses() else { return };
    let (_mon, signals) = monitor_signals(&b.system);
    let (_srv, calls) = notification_server(&b.user);
    let d = tempdir();
    let dir = d.path().display();
    let cfg = d.path().join("oomguard.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[warn]
level = "60%"

[hooks]
pre_kill = ["sh", "-c", "echo \"$OOMGUARD_SCOPE $OOMGUARD_HOST\" > {dir}/pre.env; date +%s%N > {dir}/pre.start; exec sleep 30"]
post_kill = ["sh", "-c", "cat > {dir}/post.json; exit 3"]
timeout = "5s"

[notify]
system_bus = "unix:path={sys}"
user_runtime_dir = "{run}"

[[watch]]
cmdline = "hog --name fleetvictim"
restart = ["sh", "-c", "echo restarted > {dir}/restarted"]
max_restarts = 1
"#,
            sys = b.system.display(),
            run = b.runtime.display()
        ),
    )
    .unwrap();
    let log = d.path().join("events.jsonl");
    let run = Run::start(&cg, &log, &["--config", cfg.to_str().unwrap()], &[]);
    let mut h = hog(
        &cg,
        &["--name", "fleetvictim", "--max", "2G", "--rate", "200M"],
    );
    let st = h
        .wait_timeout(Duration::from_secs(60))
        .expect("the hog was not killed");
    let exited_ns = wall_ns();
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&st).is_some(),
        "{st:?}"
    );
    assert_eq!(cg.kernel_oom_kills(), 0, "the kernel fired first");
    // The pre_kill hook started, sleeps 30 s and is killed after 5 s; the victim died anyway
    // well before that.
    let pre_ns: u128 = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(d.path().join("pre.start"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .expect("the pre_kill hook ran");
    let gap = Duration::from_nanos(exited_ns.saturating_sub(pre_ns) as u64);
    assert!(
        gap < Duration::from_secs(3),
        "the victim exited {gap:?} after the pre_kill hook started: the hook delayed the kill"
    );
    let warn = run.wait_record("warn", |r| r["action"] == "warn");
    assert_eq!(warn["state"], "high");
    let kill = run.wait_record("kill", |r| r["action"] == "kill");
    assert_eq!(kill["victim"]["pid"], h.pid());
    // The pre_kill hook had the scope and host that the record was then written with.
    let pre_env = std::fs::read_to_string(d.path().join("pre.env")).unwrap();
    assert_eq!(
        pre_env.trim(),
        format!(
            "{} {}",
            kill["scope"].as_str().unwrap(),
            kill["host"].as_str().unwrap()
        )
    );
    assert!(
        warn["time"].as_str().unwrap() <= kill["time"].as_str().unwrap(),
        "warned before killing"
    );
    let post: Value = serde_json::from_str(
        &wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(d.path().join("post.json"))
                .ok()
                .filter(|s| s.ends_with('}'))
        })
        .expect("the post_kill hook got the record"),
    )
    .unwrap();
    assert_eq!(post["victim"]["pid"], h.pid());
    assert_eq!(post["action"], "kill");
    // Follow-ups of the kill: the watched program is missing, restarted once.
    let missing = run.wait_record("missing", |r| r["action"] == "missing");
    assert_eq!(missing["after"]["pid"], h.pid());
    assert_eq!(missing["after"]["time"], kill["time"]);
    let restart = run.wait_record("restart", |r| r["action"] == "restart");
    assert_eq!(restart["ok"], true, "{restart}");
    assert_eq!(restart["attempt"], 1);
    assert!(d.path().join("restarted").exists());
    let out = oomguard(&["events", "--event-log", log.to_str().unwrap()]);
    let table = String::from_utf8(out.stdout).unwrap();
    let follow: Vec<&str> = table.lines().filter(|l| l.starts_with("  ↳")).collect();
    assert_eq!(follow.len(), 2, "{table}");
    assert!(
        follow
            .iter()
            .all(|l| l.contains(&format!("after kill of {} fleetvictim", h.pid()))),
        "{table}"
    );
    // The system bus heard every record; the desktop got the kill.
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now())
        && let Ok((action, rec)) = signals.recv_timeout(left)
    {
        heard.push(action.clone());
        if action == "kill" {
            assert_eq!(rec["victim"]["pid"], h.pid());
        }
        if heard.iter().any(|a| a == "restart") {
            break;
        }
    }
    for a in ["warn", "kill", "missing", "restart"] {
        assert!(heard.iter().any(|h| h == a), "no {a} signal: {heard:?}");
    }
    let mut summaries = Vec::new();
    while let Ok(c) = calls.recv_timeout(Duration::from_secs(3)) {
        summaries.push(c.summary);
    }
    assert!(
        summaries.contains(&"Out of memory: fleetvictim was stopped".to_string()),
        "{summaries:?}"
    );
    assert!(
        summaries.contains(&"Memory is running low".to_string()),
        "{summaries:?}"
    );
}

#[test]
fn sighup_refuses_a_bad_config_naming_the_line_and_keeps_running() {
    let Some(cg) = TestCgroup::new("fleethup", 200 * MIB) else {
        return;
    };
    let d = tempdir();
    let cfg = d.path().join("oomguard.toml");
    std::fs::write(&cfg, "[warn]\nlevel = \"90%\"\n").unwrap();
    let mut run = Run::start(
        &cg,
        &d.path().join("events.jsonl"),
        &["--dry-run", "--config", cfg.to_str().unwrap()],
        &[],
    );
    std::fs::write(
        &cfg,
        "[warn]\nlevel = \"90%\"\n\n[[watch]]\nrestart = [\"true\"]\n",
    )
    .unwrap();
    // SAFETY: SIGHUP to the daemon this test started.
    // SAFETY: kill(2) takes no pointers; the daemon is a child this test started.
    unsafe { libc::kill(run.child.id() as i32, libc::SIGHUP) };
    let l = run.expect_line("reload refused", Duration::from_secs(10));
    assert!(
        l.contains("oomguard.toml:4") && l.contains("no match field"),
        "{l}"
    );
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the daemon kept running"
    );
    std::fs::write(
        &cfg,
        "[warn]\nlevel = \"90%\"\n\n[[protect]]\nname = \"^sshd$\"\n",
    )
    .unwrap();
    // SAFETY: kill(2) takes no pointers; the daemon is a child this test started.
    unsafe { libc::kill(run.child.id() as i32, libc::SIGHUP) };
    let l = run.expect_line("config reloaded", Duration::from_secs(10));
    assert!(l.contains("1 rules"), "{l}");
}

#[test]
fn sighup_reload_applies_a_new_warning_level() {
    let Some(cg) = TestCgroup::new("fleetwarn", 200 * MIB) else {
        return;
    };
    let d = tempdir();
    let cfg = d.path().join("oomguard.toml");
    std::fs::write(&cfg, "[warn]\nlevel = \"95%\"\n").unwrap();
    let mut run = Run::start(
        &cg,
        &d.path().join("events.jsonl"),
        &["--dry-run", "--config", cfg.to_str().unwrap()],
        &[],
    );
    let h = hog(&cg, &["--name", "half", "--max", "110M"]);
    crate::run_cgroup::wait_rss(&h, 100 * MIB);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        run.records().iter().all(|r| r["action"] != "warn"),
        "55% used is below the 95% warning level: {:?}",
        run.records()
    );
    std::fs::write(&cfg, "[warn]\nlevel = \"40%\"\n").unwrap();
    // SAFETY: SIGHUP to the daemon this test started.
    // SAFETY: kill(2) takes no pointers; the daemon is a child this test started.
    unsafe { libc::kill(run.child.id() as i32, libc::SIGHUP) };
    run.expect_line("fleet features restarted", Duration::from_secs(10));
    let w = run.wait_record("warn", |r| r["action"] == "warn");
    assert_eq!(w["state"], "high");
    assert_eq!(w["level_pct"], 40.0);
    assert!(run.child.try_wait().unwrap().is_none());
}
