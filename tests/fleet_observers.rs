//! The fleet observers called as the daemon calls them, on a real event log: hooks that sleep
//! past their timeout or fail never delay the caller; the warning level with hysteresis; the
//! after-kill watch list finding a program gone and restarting it a bounded number of times.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oomguard::config::Config;
use oomguard::record::emit::Emitter;
use oomguard::record::eventlog::EventLog;
use oomguard::record::hooks::Hooks;
use oomguard::record::metrics::Metrics;
use oomguard::record::warn::Warn;
use oomguard::record::watch::{Restarts, Watch, WatchTiming};
use oomguard::record::{Observer, Sample, Wake};
use oomguard::sense::Root;
use serde_json::json;

use crate::fleet_util::wait_for;
use crate::util::{Reaped, tempdir};

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml"), &|_| None).expect("test config")
}

fn alive(pid: i32) -> bool {
    // A reaped process is gone; a zombie would still answer kill(0), so look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn slow_and_failing_hooks_never_delay_the_kill() {
    let d = tempdir();
    let dir = d.path().display().to_string();
    let cfg = config(&format!(
        "[hooks]\npre_kill = [\"sh\", \"-c\", \"echo $$ > {dir}/pre.pid; exec sleep 30\"]\n\
         post_kill = [\"sh\", \"-c\", \"cat > {dir}/post.json; env > {dir}/post.env; exit 7\"]\n\
         timeout = \"700ms\"\n"
    ));
    let mut hooks = Hooks::new(cfg.fleet.hooks.clone());
    let kill = json!({"time": "2026-11-30T18:00:00.000+00:00", "action": "kill", "scope": "system",
        "host": "h", "trigger": {"reason": "low_memory_kill"},
        "victim": {"pid": 4242, "comm": "hog", "rss_kb": 2048}});
    let t = Instant::now();
    hooks.kill_signalled(
        &oomguard::record::event::Record::from_value(kill.clone()).unwrap(),
        false,
    );
    let pre_call = t.elapsed();
    // The kill happens here; then the record is written and observers see it.
    let t = Instant::now();
    hooks.record(&oomguard::record::event::Record::from_value(kill.clone()).unwrap());
    let post_call = t.elapsed();
    // The hook sleeps 30 s and its timeout is 0.7 s: a call that waited for either would take
    // at least that long.
    assert!(
        pre_call < Duration::from_millis(300) && post_call < Duration::from_millis(300),
        "hook calls blocked the caller: {pre_call:?} {post_call:?}"
    );
    let pre_pid: i32 = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(d.path().join("pre.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .expect("the pre_kill hook ran");
    assert!(alive(pre_pid), "the slow hook is still sleeping now");
    let gone = wait_for(Duration::from_secs(5), || (!alive(pre_pid)).then_some(()));
    assert!(gone.is_some(), "the slow hook was killed at its timeout");
    let posted = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(d.path().join("post.env"))
            .ok()
            .filter(|s| s.contains("OOMGUARD_HOOK"))
    })
    .expect("the post_kill hook ran");
    assert!(posted.contains("OOMGUARD_PID=4242"), "{posted}");
    assert!(posted.contains("OOMGUARD_COMM=hog"));
    assert!(posted.contains("OOMGUARD_REASON=low_memory_kill"));
    assert!(posted.contains("OOMGUARD_HOOK=post_kill"));
    let stdin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("post.json")).unwrap())
            .unwrap();
    assert_eq!(stdin["victim"]["pid"], 4242);
    // The hook failed (exit 7); a second kill still runs hooks at once.
    std::fs::remove_file(d.path().join("pre.pid")).unwrap();
    let t = Instant::now();
    hooks.kill_signalled(
        &oomguard::record::event::Record::from_value(kill.clone()).unwrap(),
        false,
    );
    assert!(t.elapsed() < Duration::from_millis(300));
    let again = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(d.path().join("pre.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    });
    assert!(again.is_some(), "the pre_kill hook ran for the second kill");
    wait_for(Duration::from_secs(5), || {
        (!alive(again.unwrap())).then_some(())
    });
}

/// The daemon's warm-up calls `kill_signalled` with `warm_up` set (to fault in the kill path's
/// code): that call must run no hook. A real call after it runs the hook once.
#[test]
fn the_warm_up_runs_no_pre_kill_hook() {
    let d = tempdir();
    let dir = d.path().display().to_string();
    let cfg = config(&format!(
        "[hooks]\npre_kill = [\"sh\", \"-c\", \"echo run >> {dir}/runs\"]\n"
    ));
    let mut hooks = Hooks::new(cfg.fleet.hooks.clone());
    let kill = json!({"time": "", "action": "kill", "scope": "", "host": "",
        "trigger": {"reason": "low_memory_kill"},
        "victim": {"pid": 4242, "comm": "hog", "rss_kb": 2048}});
    let rec = oomguard::record::event::Record::from_value(kill).unwrap();
    hooks.kill_signalled(&rec, true);
    hooks.kill_signalled(&rec, false);
    let runs = d.path().join("runs");
    wait_for(Duration::from_secs(5), || runs.exists().then_some(()))
        .expect("the real call ran the hook");
    // A hook started by the warm-up call would have written its line by now too.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n");
}

fn sample(total_kb: u64, available_kb: u64) -> Sample {
    Sample {
        mem: oomguard::sense::mem::MemState {
            total_kb,
            available_kb,
            swap_total_kb: 0,
            swap_free_kb: 0,
        },
        levels: Default::default(),
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

#[test]
fn warning_level_records_once_and_clears_with_hysteresis() {
    let d = tempdir();
    let p = d.path().join("events.jsonl");
    let mut emit = Emitter::new(EventLog::open(&p, "system").unwrap());
    let metrics = Metrics::new();
    emit.add_sink(std::sync::Arc::new(metrics.clone()));
    let cfg = config("[warn]\nlevel = \"85%\"\nclear = \"80%\"\n");
    let mut w = Warn::new(&cfg.fleet.warn, emit).unwrap();
    for avail in [500, 140, 130, 160, 190, 140, 210, 120] {
        w.sample(&sample(1000, avail));
    }
    // An append does not wait for a write that must follow the writer's fsync of the record
    // before (`EventLog::append`): records appended back to back reach the file a moment later.
    assert!(
        oomguard::record::eventlog::flush_all(Duration::from_secs(10)),
        "the records were not written"
    );
    let recs = crate::util::event_log_json(&p);
    let states: Vec<&str> = recs.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["high", "cleared", "high"]);
    assert!(recs.iter().all(|r| r["action"] == "warn"));
    assert_eq!(recs[0]["used_pct"], 86.0);
    assert_eq!(recs[0]["level_pct"], 85.0);
    let text = metrics.render();
    assert!(text.contains("oomguard_warnings_total 2\n"), "{text}");
    assert!(text.contains("oomguard_warning_active 1\n"), "{text}");
    assert!(
        Warn::new(
            &config("[warn]\nenabled = false\n").fleet.warn,
            Emitter::new(EventLog::open(&p, "system").unwrap())
        )
        .is_none()
    );
}

#[test]
fn watch_list_records_missing_and_restarts_a_bounded_number_of_times() {
    let d = tempdir();
    let p = d.path().join("events.jsonl");
    let emit = Emitter::new(EventLog::open(&p, "system").unwrap());
    // A program no other test runs: `sleep` with an argument unique to this process.
    let arg = format!("1000.{}", std::process::id());
    let pidfile = d.path().join("restarted.pid");
    let cfg = config(&format!(
        "[[watch]]\ncmdline = \"^sleep {}$\"\nrestart = [\"sh\", \"-c\", \"sleep {arg} >/dev/null 2>&1 & echo $! > {}\"]\nmax_restarts = 1\n\n[[watch]]\nname = \"^no-such-prog$\"\n",
        arg.replace('.', "\\\\."),
        pidfile.display()
    ));
    let timing = WatchTiming {
        settle: Duration::from_millis(100),
        verify: Duration::from_millis(500),
    };
    let restarts = Restarts::default();
    let mut watch = Watch::start_with(
        cfg.fleet.watch.clone(),
        Root::default(),
        emit.clone(),
        timing.clone(),
        restarts.clone(),
    )
    .unwrap();
    let first = Reaped(Command::new("sleep").arg(&arg).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let kill = json!({"time": "2026-11-30T18:00:00.000+00:00", "action": "kill",
        "victim": {"pid": 4242, "comm": "hog"}});
    let recs_now = |n: usize| {
        wait_for(Duration::from_secs(10), || {
            Some(crate::util::event_log_json(&p)).filter(|r| r.len() >= n)
        })
        .unwrap_or_else(|| crate::util::event_log_json(&p))
    };
    watch.record(&oomguard::record::event::Record::from_value(kill.clone()).unwrap());
    // Only the never-running entry is missing; it has no restart command.
    let recs = recs_now(1);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "missing");
    assert_eq!(recs[0]["watch"], "^no-such-prog$");
    assert_eq!(recs[0]["after"]["pid"], 4242);
    drop(first);
    let kk =
        json!({"time": "2026-11-30T18:00:10.000+00:00", "action": "kernel_kill", "oom_kills": 1});
    watch.record(&oomguard::record::event::Record::from_value(kk.clone()).unwrap());
    let recs = recs_now(4);
    let acts: Vec<(&str, &str)> = recs[1..]
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["watch"].as_str().unwrap()))
        .collect();
    assert_eq!(acts.len(), 3, "{recs:?}");
    assert!(acts.contains(&("missing", "^no-such-prog$")));
    let restart = recs
        .iter()
        .find(|r| r["action"] == "restart")
        .expect("a restart record");
    let restarted: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _cleanup = scopeguard(restarted);
    assert_eq!(restart["ok"], true, "{restart}");
    assert_eq!(restart["running_after"], true, "{restart}");
    assert_eq!(restart["attempt"], 1);
    assert_eq!(restart["after"]["action"], "kernel_kill");
    // Gone again: missing, but the one allowed restart is used up, also for the watch list a
    // config reload starts anew (with the daemon's count of restarts).
    drop(watch);
    let mut watch = Watch::start_with(
        cfg.fleet.watch.clone(),
        Root::default(),
        emit,
        timing,
        restarts,
    )
    .unwrap();
    // SAFETY: kill(2) takes no pointers; `restarted` is a child this test started.
    unsafe { libc::kill(restarted, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    watch.record(&oomguard::record::event::Record::from_value(kill.clone()).unwrap());
    let recs = recs_now(6);
    assert_eq!(recs.len(), 6, "{recs:?}");
    assert!(recs[4..].iter().all(|r| r["action"] == "missing"));
    let m = recs[4..]
        .iter()
        .find(|r| r["watch"] != "^no-such-prog$")
        .unwrap();
    assert_eq!(m["restarts_left"], 0);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        crate::util::event_log_json(&p).len(),
        6,
        "no further restart"
    );
}

/// Kills a stray restarted process at the end of the test, whatever happens.
struct Guard(i32);
fn scopeguard(pid: i32) -> Guard {
    Guard(pid)
}
impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: the pid of a `sleep` this test's restart command started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}
