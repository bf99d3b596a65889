//! `oomguard drill`: a safe OOM fire drill. Makes a scratch memory cgroup with a small limit
//! under the caller's own group ([`crate::act::scratch`]),
//! forks a memory hog inside it ([`crate::act::hog`]), shows who kills the hog (the kernel's memcg OOM killer, or
//! oomguard's daemon with `--with-daemon`), records the kill in the event log, and removes the
//! group again, also on Ctrl-C and on errors. It only ever signals processes of its own
//! scratch group.
//!
//! `--json` prints one document: `{"cgroup", "version", "limit_kb", "hog_pid", "killed_by"
//! ("kernel" | "oomguard" | null), "seconds", "oom_kills", "peak_kb", "kernel_log" [str],
//! "event_log", "cleaned_up", "interrupted", "removed_abandoned" [path], "daemon_signals" [str]}`.
//! Before it makes its group it removes the empty groups of earlier drills that no longer run
//! (ended by SIGKILL or a power cut, without their cleanup).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::act::scratch::ScratchCgroup;
use crate::doctor::facts::summarise_kill_line;
use crate::record::event::{Decision, Event, KernelKill, Who};
use crate::record::eventlog::{self, EventLog};
use crate::sense::Root;
use crate::values::{Dur, Size, human_kb};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard drill                       64 MiB scratch group, the kernel's OOM killer ends the hog\n  oomguard drill --limit 256M --timeout 1m\n  oomguard drill --with-daemon         oomguard run on the scratch group kills it first
  oomguard drill --json | jq .killed_by\n\nThe scratch group is made under this shell's own memory cgroup and removed afterwards, also on\nCtrl-C; an empty group left by an earlier drill that was killed outright is removed first. Only\nprocesses inside it are ever signalled. The kill is appended to the event log as a\n'kernel_kill' record (scope cgroup:<scratch group>)."
)]
pub struct DrillArgs {
    /// Memory limit of the scratch group.
    #[arg(long, default_value = "64M", value_parser = |s: &str| s.parse::<Size>())]
    pub limit: Size,
    /// Give up (and clean up) if nobody killed the hog after this long.
    #[arg(long, default_value = "30s", value_parser = |s: &str| s.parse::<Dur>())]
    pub timeout: Dur,
    /// Where the kill is recorded (default: the daemon's event log).
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run oomguard's daemon on the scratch group (`oomguard run --scope cgroup:<scratch>`,
    /// real kills, confined to that group) and see it kill the hog before the kernel does. The
    /// hog then grows by the limit per second (a fast leak) instead of at memory bandwidth.
    #[arg(long)]
    pub with_daemon: bool,
    /// How much the hog tries to allocate (default: four times the limit).
    #[arg(long, hide = true, value_parser = |s: &str| s.parse::<Size>())]
    pub hog_max: Option<Size>,
    /// The hog's allocation rate per second (default: as fast as it can; with --with-daemon
    /// the limit per second).
    #[arg(long, hide = true, value_parser = |s: &str| s.parse::<Size>())]
    pub hog_rate: Option<Size>,
}

/// `oomguard run` on the scratch group, stopped (SIGINT, then SIGKILL) and reaped on drop.
struct GuardDaemon(Child, Option<std::thread::JoinHandle<()>>);

impl GuardDaemon {
    fn start(exe: &std::path::Path, scope: &str, log: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::BufRead;
        // The built-in defaults, not the machine's config file: its metrics port, hooks,
        // watch list or dry run are the production daemon's, not the drill's.
        let mut cmd = Command::new(exe);
        cmd.args([
            "run",
            "--config",
            "/dev/null",
            "--scope",
            scope,
            "--event-log",
        ])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        // The daemon stops (SIGTERM) when the drill ends without its cleanup (SIGKILL, the
        // OOM killer): before, it guarded the scratch group left behind for ever, holding its
        // lock. A drill that ended before the daemon asked for that: the daemon does not run.
        let drill = std::process::id() as libc::pid_t;
        // SAFETY: prctl(2) and getppid(2) between fork and exec: async-signal-safe system
        // calls, no allocation, no lock.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != drill {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("cannot start oomguard run")?;
        let stderr = child.stderr.take().context("daemon stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let forward = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("  [daemon] {line}");
                if line.contains("guarding") {
                    let _ = tx.send(true);
                }
            }
            // Its stderr closed: it exited.
            let _ = tx.send(false);
        });
        let d = GuardDaemon(child, Some(forward));
        // Ctrl-C meanwhile ends the wait (the terminal's SIGINT also reaches the daemon, which
        // then exits before it guards anything: that is the interruption, not a failure).
        let t0 = Instant::now();
        loop {
            if super::interrupt::interrupted() {
                anyhow::bail!("interrupted while oomguard run was starting");
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(true) => return Ok(d),
                Ok(false) => anyhow::bail!(
                    "oomguard run exited before it guarded the scratch group (its lines above say why)"
                ),
                Err(_) if t0.elapsed() > Duration::from_secs(20) => anyhow::bail!(
                    "oomguard run did not start guarding the scratch group within 20 s"
                ),
                Err(_) => {}
            }
        }
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for GuardDaemon {
    fn drop(&mut self) {
        // SIGINT to the daemon this drill started (not reaped yet, so the pid is still its).
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        // Its last log lines, then end of file.
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// The daemon's `kill` decision about `pid` (its record is written once the victim is gone).
fn wait_kill_record(log: &std::path::Path, pid: i32) -> Option<Decision> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if let Ok((recs, _)) = eventlog::read_all(log)
            && let Some(d) = recs.into_iter().find_map(|r| match r.event {
                Event::Kill(d) if d.victim.pid == pid => Some(d),
                _ => None,
            })
        {
            return Some(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// New kernel log lines since `open`: `/dev/kmsg` positioned at its end.
struct Kmsg(Option<std::fs::File>);

impl Kmsg {
    fn open() -> Kmsg {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Kmsg(f)
    }
    fn read_new(&mut self) -> Vec<String> {
        use std::io::Read;
        let Some(f) = &mut self.0 else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string()),
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

fn say(json: bool, msg: std::fmt::Arguments) {
    if !json {
        let _ = writeln!(std::io::stdout().lock(), "drill: {msg}");
    }
}

pub fn run(a: DrillArgs) -> anyhow::Result<ExitCode> {
    super::interrupt::catch();
    match drill(a) {
        // Ctrl-C at any step (the scratch group being made, the daemon starting) ends the
        // drill as an interruption: the group and the hog are removed on the way out (their
        // drops), and the shell sees 130, not a failure's 1.
        Err(e) if super::interrupt::interrupted() => {
            eprintln!("oomguard: drill interrupted ({e:#})");
            Ok(ExitCode::from(130))
        }
        r => r,
    }
}

/// The scratch groups of earlier drills that ended without their cleanup (SIGKILL, a power
/// cut) and hold no process: removed, and said.
fn remove_abandoned(json: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for (dir, gone) in crate::act::scratch::remove_abandoned(&Root::default(), DRILL_PREFIX) {
        if gone {
            say(
                json,
                format_args!(
                    "removed {}, left by an earlier drill that no longer runs",
                    dir.display()
                ),
            );
            removed.push(dir);
        } else {
            log::warn!(
                "{} was left by an earlier drill that no longer runs and still holds processes; \
                 look at them (cat {}/cgroup.procs), end them, then: rmdir {}",
                dir.display(),
                dir.display(),
                dir.display()
            );
        }
    }
    removed
}

/// Scratch groups are named this and the drill's PID.
const DRILL_PREFIX: &str = "oomguard-drill-";

fn drill(a: DrillArgs) -> anyhow::Result<ExitCode> {
    let limit = a.limit.0.max(8 << 20);
    let hog_max = a.hog_max.map_or(limit * 4, |s| s.0);
    let log_path = a.event_log.clone().unwrap_or_else(eventlog::default_path);
    let mut kmsg = Kmsg::open();
    let removed_abandoned = remove_abandoned(a.json);
    let name = format!("{DRILL_PREFIX}{}", std::process::id());
    let scratch = ScratchCgroup::create(&Root::default(), &name, limit)?;
    let scope = format!("cgroup:{}", scratch.rel);
    let log = EventLog::open(&log_path, &scope)?;
    say(
        a.json,
        format_args!(
            "scratch cgroup {} ({}), limit {}, no swap",
            scratch.dir.display(),
            scratch.version_str(),
            human_kb(limit >> 10)
        ),
    );
    let before = scratch.oom_kills();
    let exe = std::env::current_exe().context("cannot find the oomguard binary")?;
    let daemon = if a.with_daemon {
        let d = GuardDaemon::start(&exe, &scope, &log_path)?;
        say(
            a.json,
            format_args!(
                "started oomguard run --scope {scope} (pid {}), real kills confined to the scratch group",
                d.pid()
            ),
        );
        Some(d)
    } else {
        None
    };
    let started = Instant::now();
    let rate = a.hog_rate.map(|r| r.0).or(a.with_daemon.then_some(limit));
    let mut hog = crate::act::hog::spawn_in(&scratch.dir, hog_max, rate)
        .context("cannot start the hog in the scratch cgroup")?;
    let hog_pid = hog.pid();
    say(
        a.json,
        format_args!(
            "started hog {hog_pid} inside it, allocating up to {}{}",
            human_kb(hog_max >> 10),
            rate.map_or(" as fast as it can".into(), |r| format!(
                " at {}/s",
                human_kb(r >> 10)
            ))
        ),
    );
    let status = loop {
        if super::interrupt::interrupted() {
            break None;
        }
        if let Some(s) = hog.try_wait().context("waiting for the hog")? {
            break Some(s);
        }
        if started.elapsed() > a.timeout.0 {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let seconds = started.elapsed().as_secs_f64();
    let interrupted = super::interrupt::interrupted();
    // Let the kernel finish its report before reading it.
    std::thread::sleep(Duration::from_millis(100));
    let oom_kills = scratch.oom_kills().saturating_sub(before);
    let peak_kb = scratch.peak_bytes().map(|b| b >> 10);
    let kernel_log: Vec<String> = kmsg
        .read_new()
        .iter()
        .filter_map(|l| summarise_kill_line(l).filter(|_| l.contains(&format!(" {hog_pid} "))))
        .collect();
    use std::os::unix::process::ExitStatusExt;
    let signalled = status.is_some_and(|s| s.signal().is_some());
    let sigkilled = status.is_some_and(|s| s.signal() == Some(libc::SIGKILL));
    let daemon_rec = match &daemon {
        // After Ctrl-C the hog died of the terminal's SIGINT, not of the daemon.
        Some(_) if signalled && !interrupted => wait_kill_record(&log_path, hog_pid),
        _ => None,
    };
    let killed_by = if daemon_rec.is_some() {
        Some("oomguard")
    } else {
        (sigkilled && oom_kills > 0).then_some("kernel")
    };
    // The daemon records kernel kills in its scope itself.
    if killed_by == Some("kernel") && daemon.is_none() {
        let comm = crate::act::hog::HOG_NAME;
        log.append(Event::KernelKill(KernelKill::drill(
            oom_kills,
            format!(
                "{}/{} oom_kill",
                scratch.dir.display(),
                scratch.oom_counter_file()
            ),
            Who {
                pid: hog_pid,
                comm: comm.to_string(),
            },
            peak_kb,
            kernel_log.clone(),
        )))?;
    }
    // Interrupted or timed out: the hog is still in the group.
    hog.kill_and_reap();
    drop(daemon);
    let cleaned_up = scratch.remove();
    let r = DrillResult {
        cgroup: scratch.dir.clone(),
        version: scratch.version_str(),
        limit_kb: limit >> 10,
        hog_pid,
        killed_by,
        seconds,
        oom_kills,
        peak_kb,
        kernel_log,
        event_log: log_path,
        cleaned_up,
        interrupted,
        removed_abandoned,
        hog_status: status.map(|s| s.to_string()),
        daemon_signals: daemon_rec
            .and_then(|d| d.signals)
            .unwrap_or_default()
            .iter()
            .map(|s| format!("{} after {} ms", s.signal, s.ms))
            .collect(),
    };
    drop(scratch);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        r.print();
    }
    if interrupted {
        if cleaned_up {
            eprintln!("oomguard: drill interrupted; the scratch cgroup and the hog are gone");
        } else {
            eprintln!("oomguard: drill interrupted; the scratch cgroup could not be removed");
        }
        return Ok(ExitCode::from(130));
    }
    if killed_by.is_none() || !cleaned_up {
        if status.is_none() {
            eprintln!(
                "oomguard: nobody killed the hog within {:?}; stopped it",
                a.timeout.0
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the drill saw (the `--json` document).
#[derive(Debug, serde::Serialize)]
struct DrillResult {
    cgroup: PathBuf,
    version: &'static str,
    limit_kb: u64,
    hog_pid: i32,
    killed_by: Option<&'static str>,
    seconds: f64,
    oom_kills: u64,
    peak_kb: Option<u64>,
    kernel_log: Vec<String>,
    event_log: PathBuf,
    cleaned_up: bool,
    interrupted: bool,
    /// Scratch groups of earlier drills (that ended without their cleanup) removed first.
    removed_abandoned: Vec<PathBuf>,
    #[serde(skip)]
    hog_status: Option<String>,
    /// The daemon's signals from its `kill` record.
    daemon_signals: Vec<String>,
}

impl DrillResult {
    fn print(&self) {
        let peak = self
            .peak_kb
            .map_or(String::new(), |k| format!(", peak usage {}", human_kb(k)));
        let (pid, secs) = (self.hog_pid, self.seconds);
        match self.killed_by {
            Some(who) => {
                let killer = if who == "kernel" {
                    "the kernel's memcg OOM killer"
                } else {
                    "oomguard"
                };
                say(
                    false,
                    format_args!(
                        "{killer} killed the hog {pid} after {secs:.2} s (kernel OOM kills in the group: {}){peak}",
                        self.oom_kills
                    ),
                );
                if !self.daemon_signals.is_empty() {
                    say(
                        false,
                        format_args!("oomguard sent {}", self.daemon_signals.join(", ")),
                    );
                }
                for l in &self.kernel_log {
                    say(false, format_args!("kernel log: {l}"));
                }
                say(
                    false,
                    format_args!(
                        "recorded in {} (read it back with: oomguard events)",
                        self.event_log.display()
                    ),
                );
            }
            None => say(
                false,
                format_args!(
                    "the hog {pid} was not OOM-killed ({}) after {secs:.2} s{peak}",
                    self.hog_status.as_deref().unwrap_or("still running")
                ),
            ),
        }
        say(
            false,
            format_args!(
                "{} {}",
                if self.cleaned_up {
                    "cleaned up: removed"
                } else {
                    "could NOT remove"
                },
                self.cgroup.display()
            ),
        );
        if self.killed_by.is_some() && self.cleaned_up {
            say(
                false,
                format_args!(
                    "PASSED: the OOM stayed inside the scratch cgroup; no other process was touched"
                ),
            );
        }
    }
}
