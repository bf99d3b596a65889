//! `[hooks]`: `pre_kill` and `post_kill` programs, run without a shell, with the event's JSON
//! on stdin and its key facts in `OOMGUARD_*` environment variables. Each run has its own
//! thread and a timeout (the program's whole process group is killed when it runs out), so a
//! slow or failing hook never delays a kill; that thread feeds the JSON to the program's stdin
//! as the pipe takes it, and closes the pipe when the program ends. The program runs at
//! `oom_score_adj` 0, not at the daemon's -1000.

use crate::sense::mem::MemState;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::event::{Event, Record};

use super::Observer;
use crate::config::fleet::HookSettings;

/// How many hook programs may run at once; more are skipped with a warning.
const MAX_RUNNING: usize = 16;

/// The outcome of running a program with a timeout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunOutcome {
    /// Exited with status 0.
    pub ok: bool,
    pub exit_code: Option<i32>,
    /// Killed by this signal (the timeout sends SIGKILL).
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Could not be started, or failed to wait.
    pub error: Option<String>,
    pub ms: u64,
}

/// Runs `argv` (no shell) with extra environment and `stdin`, in its own process group; kills
/// the group after `timeout`. Blocks the calling thread: call it from a thread of its own.
pub fn run_program(
    argv: &[String],
    env: &[(String, String)],
    stdin: &[u8],
    timeout: Duration,
) -> RunOutcome {
    let start = Instant::now();
    let mut out = RunOutcome {
        ok: false,
        exit_code: None,
        signal: None,
        timed_out: false,
        error: None,
        ms: 0,
    };
    let Some((prog, args)) = argv.split_first() else {
        out.error = Some("empty command".into());
        return out;
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0);
    // The daemon runs at oom_score_adj -1000 (its unit's OOMScoreAdjust, or protect_self) and a
    // child inherits that: a hook (or a watch-list restart) would be unkillable, and in a
    // memory cgroup holding only such processes the kernel finds nothing to kill. The child
    // goes back to 0 before exec; raising the value needs no privilege.
    // SAFETY: the closure runs in the forked child before exec and only calls open(2),
    // write(2) and close(2) on a static path (async-signal-safe, no allocation); a failure
    // (no /proc) is ignored and leaves the inherited value.
    unsafe {
        cmd.pre_exec(|| {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("cannot start {prog}: {e}"));
            return out;
        }
    };
    // The record is fed to the program's stdin from this loop, as the pipe takes it: a program
    // that does not read it (or a child it leaves behind holding the pipe, after it exits) holds
    // nobody up, and the pipe is closed when the program ends or runs out of time. (A writer
    // thread of its own would block in `write` for as long as such a child lives.)
    let mut feed = child
        .stdin
        .take()
        .filter(|_| !stdin.is_empty())
        .and_then(|pipe| {
            rustix::io::ioctl_fionbio(&pipe, true).ok()?;
            Some(pipe)
        });
    let mut fed = 0;
    let pgid = child.id() as i32;
    let deadline = start + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(e) => {
                out.error = Some(format!("waiting for {prog}: {e}"));
                break None;
            }
        }
        if Instant::now() >= deadline {
            out.timed_out = true;
            // The process group this function created for the program (its leader's pid).
            if let Some(pg) = rustix::process::Pid::from_raw(pgid) {
                let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            }
            break child.wait().ok();
        }
        feed = feed.and_then(|mut pipe| match pipe.write(&stdin[fed..]) {
            Ok(n) if fed + n < stdin.len() => {
                fed += n;
                Some(pipe)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(pipe),
            // All written (end of file for the program), or the program closed its end.
            _ => None,
        });
        match &feed {
            // Until the pipe takes more or 10 ms have passed.
            Some(pipe) => {
                let mut fds = [rustix::event::PollFd::new(
                    pipe,
                    rustix::event::PollFlags::OUT,
                )];
                let ten_ms = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                let _ = rustix::event::poll(&mut fds, Some(&ten_ms));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    drop(feed);
    if let Some(s) = status {
        use std::os::unix::process::ExitStatusExt;
        out.exit_code = s.code();
        out.signal = s.signal();
        out.ok = s.success() && !out.timed_out;
    }
    out.ms = start.elapsed().as_millis() as u64;
    out
}

/// A record's key facts as `OOMGUARD_*` name/value pairs: `ACTION`, `TIME`, `SCOPE`, `HOST`,
/// `OOM_KILLS`, `WATCH`, `STATE`, `OK`; the victim's `PID`, `COMM`, `CMDLINE`, `UID`, `RSS_KB`,
/// `OOM_SCORE_ADJ`, `SCORE`, `CGROUP`, `RULE` (each after `victim_prefix`); the trigger's
/// `REASON`, `SEVERITY`, `AVAILABLE_KB`, `TOTAL_KB`; the outcome's `EXITED`, `FREED_KB`,
/// `EXIT_MS`. Absent and null fields are left out.
pub fn event_fields(rec: &Record, victim_prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut put = |prefix: &str, k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push((format!("OOMGUARD_{prefix}{}", k.to_ascii_uppercase()), v));
        }
    };
    let text = |s: &str| (!s.is_empty()).then(|| bounded_env_value(s));
    let e = &rec.event;
    put("", "action", Some(e.action().to_string()));
    put("", "time", text(&rec.time));
    put("", "scope", text(&rec.scope));
    put("", "host", text(&rec.host));
    let (oom_kills, watch, state, ok) = match e {
        Event::KernelKill(k) => (Some(k.oom_kills.to_string()), None, None, None),
        Event::Missing(m) => (None, text(&m.watch), None, None),
        Event::Restart(r) => (None, text(&r.watch), None, Some(r.ok.to_string())),
        Event::Warn(w) => (None, None, text(&w.state), None),
        Event::Kill(d) | Event::DryRun(d) | Event::KillFailed(d) => {
            (None, None, None, d.ok.map(|o| o.to_string()))
        }
        _ => (None, None, None, None),
    };
    put("", "oom_kills", oom_kills);
    put("", "watch", watch);
    put("", "state", state);
    put("", "ok", ok);
    let victim = match e {
        Event::KernelKill(k) => k.victim.as_ref().map(|v| (v.pid, v.comm.as_str(), None)),
        _ => e
            .decision()
            .map(|d| (d.victim.pid, d.victim.comm.as_str(), Some(&d.victim))),
    };
    if let Some((pid, comm, full)) = victim {
        let p = victim_prefix;
        put(p, "pid", Some(pid.to_string()));
        put(p, "comm", Some(bounded_env_value(comm)));
        if let Some(v) = full {
            put(p, "cmdline", Some(bounded_env_value(&v.cmdline)));
            put(p, "uid", v.uid.map(|u| u.to_string()));
            put(p, "rss_kb", Some(v.rss_kb.to_string()));
            put(p, "oom_score_adj", Some(v.oom_score_adj.to_string()));
            put(p, "score", Some(v.score.to_string()));
            put(p, "cgroup", v.cgroup.as_deref().map(bounded_env_value));
            put(p, "rule", v.rule.as_deref().map(bounded_env_value));
        }
    }
    if let Some(d) = e.decision() {
        let t = &d.trigger;
        put("", "reason", text(&t.reason));
        put("", "severity", text(&t.severity));
        put("", "available_kb", Some(t.available_kb.to_string()));
        put("", "total_kb", Some(t.total_kb.to_string()));
        if let Some(o) = &d.outcome {
            put("", "exited", Some(o.exited.to_string()));
            put("", "freed_kb", Some(o.freed_kb.to_string()));
            put("", "exit_ms", o.exit_ms.map(|m| m.to_string()));
        }
    }
    out
}

/// Longest value (bytes) put into a hook's environment; a longer one (a cmdline any user can
/// make huge) is cut and marked, because one string over the kernel's 128 KiB `MAX_ARG_STRLEN`
/// would make the hook fail to start (`E2BIG`).
pub const MAX_ENV_VALUE: usize = 4096;

/// `s` as an environment value: NUL bytes become spaces, and past [`MAX_ENV_VALUE`] bytes it is
/// cut at a character boundary and ends in `...[cut, N bytes in all]`.
fn bounded_env_value(s: &str) -> String {
    let mut v = if s.len() > MAX_ENV_VALUE {
        let mut end = MAX_ENV_VALUE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...[cut, {} bytes in all]", &s[..end], s.len())
    } else {
        s.to_string()
    };
    if v.contains('\0') {
        v = v.replace('\0', " ");
    }
    v
}

/// The environment a hook gets: `OOMGUARD_HOOK` (`pre_kill`/`post_kill`) and
/// [`event_fields`] with the victim's facts unprefixed (`OOMGUARD_PID`, `OOMGUARD_COMM`, ...).
pub fn hook_env(hook: &str, rec: &Record) -> Vec<(String, String)> {
    let mut env = vec![("OOMGUARD_HOOK".to_string(), hook.to_string())];
    env.extend(event_fields(rec, ""));
    env
}

/// The hooks observer.
#[derive(Debug)]
pub struct Hooks {
    settings: HookSettings,
    running: Arc<AtomicUsize>,
}

impl Hooks {
    pub fn new(settings: HookSettings) -> Hooks {
        Hooks::with_running(settings, Arc::new(AtomicUsize::new(0)))
    }

    /// With `running` counting the hooks still running (kept across reloads, so that the
    /// limit holds for hooks started under the config before).
    pub fn with_running(settings: HookSettings, running: Arc<AtomicUsize>) -> Hooks {
        Hooks { settings, running }
    }

    /// Starts `argv` for `rec` on a thread of its own and returns at once.
    fn launch(&self, hook: &'static str, argv: &[String], rec: &Record) {
        if argv.is_empty() {
            return;
        }
        if self.running.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
            self.running.fetch_sub(1, Ordering::SeqCst);
            log::warn!("{hook} hook skipped: {MAX_RUNNING} hooks are still running");
            return;
        }
        let argv = argv.to_vec();
        let env = hook_env(hook, rec);
        let stdin = serde_json::to_vec(rec).unwrap_or_default();
        let timeout = self.settings.timeout;
        let running = self.running.clone();
        let spawned = super::side::spawn_background(format!("oomguard-{hook}"), move || {
            // Counted down however the thread ends (a contained panic included).
            struct Done(Arc<AtomicUsize>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done(running);
            let r = run_program(&argv, &env, &stdin, timeout);
            if r.timed_out {
                log::warn!(
                    "{hook} hook {} ran longer than {}ms and was killed",
                    argv[0],
                    timeout.as_millis()
                );
            } else if let Some(e) = &r.error {
                log::warn!("{hook} hook failed: {e}");
            } else if !r.ok {
                log::warn!(
                    "{hook} hook {} failed (exit code {:?}, signal {:?})",
                    argv[0],
                    r.exit_code,
                    r.signal
                );
            } else {
                log::debug!("{hook} hook {} done in {}ms", argv[0], r.ms);
            }
        });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::SeqCst);
            log::warn!("{hook} hook not started: {e}");
        }
    }
}

impl Observer for Hooks {
    /// Reads records only, never a sample's memory.
    fn accepts_floor(&self, _floor: &MemState) -> bool {
        true
    }

    fn kill_signalled(&mut self, rec: &Record, warm_up: bool) {
        // The daemon hands over the kill record right after the signal, before the record is
        // written: give it its time.
        let mut rec = rec.clone();
        if rec.time.is_empty() {
            rec.time = super::eventlog::now_rfc3339();
        }
        let argv = self.settings.pre_kill.clone();
        if warm_up {
            // Not launched: a hook is a thread and a process of its own, faulted in at the
            // first kill whatever the warm-up does.
            std::hint::black_box((&rec, &argv));
            return;
        }
        self.launch("pre_kill", &argv, &rec);
    }

    fn record(&mut self, rec: &Record) {
        if matches!(rec.event, Event::Kill(_) | Event::KernelKill(_)) {
            let argv = self.settings.post_kill.clone();
            self.launch("post_kill", &argv, rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_carries_the_victim_and_trigger() {
        let rec = serde_json::json!({"action": "kill", "time": "t", "scope": "system",
            "victim": {"pid": 7, "comm": "hog", "rss_kb": 10, "rule": null},
            "trigger": {"reason": "low_memory_kill"}, "outcome": {"exited": true}});
        let env = hook_env(
            "post_kill",
            &crate::record::event::Record::from_value(rec).unwrap(),
        );
        let get = |k: &str| env.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("OOMGUARD_HOOK"), Some("post_kill"));
        assert_eq!(get("OOMGUARD_PID"), Some("7"));
        assert_eq!(get("OOMGUARD_COMM"), Some("hog"));
        assert_eq!(get("OOMGUARD_REASON"), Some("low_memory_kill"));
        assert_eq!(get("OOMGUARD_EXITED"), Some("true"));
        assert_eq!(get("OOMGUARD_RULE"), None);
    }

    #[test]
    fn a_hook_for_a_victim_with_a_huge_cmdline_starts_and_gets_it_cut_and_marked() {
        let huge = format!("hog {}", "A".repeat(200 * 1024));
        let rec = serde_json::json!({"action": "kill", "victim": {"pid": 7, "comm": "hog", "cmdline": huge}});
        let env = hook_env(
            "pre_kill",
            &crate::record::event::Record::from_value(rec).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cmdline");
        let script = format!("printf %s \"$OOMGUARD_CMDLINE\" > '{}'", out.display());
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), script];
        let r = run_program(&argv, &env, b"", Duration::from_secs(10));
        assert!(r.ok, "the hook did not start or failed: {r:?}");
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(got.starts_with("hog AAAA"), "{}", &got[..20]);
        let marker = format!("...[cut, {} bytes in all]", huge.len());
        assert!(got.ends_with(&marker), "{}", &got[got.len() - 60..]);
        assert_eq!(got.len(), MAX_ENV_VALUE + marker.len());
    }

    #[test]
    fn a_record_larger_than_the_pipe_reaches_the_programs_stdin_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("count");
        let data: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 251) as u8).collect();
        let script = format!("cksum > '{}'", out.display());
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), script];
        let r = run_program(&argv, &[], &data, Duration::from_secs(20));
        assert!(r.ok, "{r:?}");
        let got = std::fs::read_to_string(&out).unwrap();
        let mut want = Command::new("cksum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        want.stdin.take().unwrap().write_all(&data).unwrap();
        let want = String::from_utf8(want.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(got, want, "the program read other bytes than the record's");
    }

    /// A hook that leaves a child behind holding its stdin unread: once the hook exits, no
    /// thread or descriptor of ours is left on that pipe (a writer thread stayed blocked in
    /// `write` for as long as the child lived, holding the pipe).
    #[test]
    fn a_child_left_holding_stdin_unread_keeps_nothing_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // Its stdin named again: a shell gives a background command /dev/null otherwise.
        let script = format!(
            "exec 3<&0; sleep 30 0<&3 3<&- & echo $! > '{}'; exit 0",
            pidfile.display()
        );
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), script];
        let r = run_program(&argv, &[], &vec![b'x'; 256 << 10], Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let pipe = std::fs::read_link(format!("/proc/{pid}/fd/0"));
        let ours: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .collect();
        // The sleep is this test's own child's child: ended by its PID.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        );
        assert!(r.ok && !r.timed_out && r.ms < 5000, "{r:?}");
        let pipe = pipe.expect("the left child's stdin");
        assert!(pipe.to_string_lossy().starts_with("pipe:"), "{pipe:?}");
        assert!(
            !ours.contains(&pipe),
            "a descriptor of ours still holds the hook's stdin {pipe:?}"
        );
    }

    #[test]
    fn a_program_past_its_timeout_is_killed() {
        let argv: Vec<String> = ["sh", "-c", "sleep 30"].map(String::from).to_vec();
        let r = run_program(&argv, &[], b"", Duration::from_millis(200));
        assert!(r.timed_out && !r.ok, "{r:?}");
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(r.ms < 5000);
        let r = run_program(&["/nonexistent/x".into()], &[], b"", Duration::from_secs(1));
        assert!(r.error.is_some() && !r.ok);
        let r = run_program(
            &[
                "sh".into(),
                "-c".into(),
                "read l; [ \"$l\" = hi ] && exit 3".into(),
            ],
            &[],
            b"hi\n",
            Duration::from_secs(5),
        );
        assert_eq!(r.exit_code, Some(3));
    }
}
