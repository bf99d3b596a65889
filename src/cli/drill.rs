//! `oomguard drill`: a safe OOM fire drill. Makes a scratch memory cgroup with a small limit
//! under the caller's own group (v2 where the memory controller is on cgroup2, else v1),
//! starts `oomguard hog` inside it, shows who kills the hog (the kernel's memcg OOM killer, or
//! oomguard's daemon with `--with-daemon`), records the kill in the event log, and removes the
//! group again, also on Ctrl-C and on errors. It only ever signals processes of its own
//! scratch group.
//!
//! `--json` prints one document: `{"cgroup", "version", "limit_kb", "hog_pid", "killed_by"
//! ("kernel" | "oomguard" | null), "seconds", "oom_kills", "peak_kb", "kernel_log" [str],
//! "event_log", "cleaned_up", "interrupted"}`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::doctor::facts::summarise_kill_line;
use crate::record::eventlog::{self, EventLog};
use crate::sense::cgroup::{CgVersion, Mounts, memory_path_of};
use crate::sense::{Root, parse_u64};
use crate::values::{Dur, Size};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard drill                       64 MiB scratch group, the kernel's OOM killer ends the hog\n  oomguard drill --limit 256M --timeout 1m\n  oomguard drill --with-daemon         oomguard run on the scratch group kills it first
  oomguard drill --json | jq .killed_by\n\nThe scratch group is made under this shell's own memory cgroup and removed afterwards, also on\nCtrl-C. Only processes inside it are ever signalled. The kill is appended to the event log as a\n'kernel_kill' record (scope cgroup:<scratch group>)."
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

/// The scratch memory cgroup; removed on drop after every process in it is killed.
struct Scratch {
    dir: PathBuf,
    /// As in /proc/PID/cgroup.
    rel: String,
    version: CgVersion,
}

impl Scratch {
    /// Makes `<own memory cgroup>/oomguard-drill-<pid>` with `limit` bytes and no swap.
    /// Makes the group under `root` (`/` except in tests; `dir` is then under the root).
    fn create(root: &Root, limit: u64) -> anyhow::Result<Scratch> {
        let mounts = Mounts::discover(root);
        let (mount, version) = match (&mounts.v2_memory, &mounts.v1_memory) {
            (Some(m), _) => (m.clone(), CgVersion::V2),
            (None, Some(m)) => (m.clone(), CgVersion::V1),
            _ => bail!(
                "no memory cgroup controller is mounted (neither on cgroup2 nor v1): a drill needs one"
            ),
        };
        let text = std::fs::read_to_string(root.path("proc/self/cgroup"))
            .context("cannot read /proc/self/cgroup")?;
        let own = memory_path_of(&text, version == CgVersion::V2)
            .context("/proc/self/cgroup names no memory cgroup")?;
        let name = format!("oomguard-drill-{}", std::process::id());
        let parent = root.path(mount.join(own.trim_start_matches('/')));
        let dir = parent.join(&name);
        if version == CgVersion::V2 {
            let ctl =
                std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !ctl.split_whitespace().any(|c| c == "memory") {
                std::fs::write(parent.join("cgroup.subtree_control"), "+memory").with_context(|| {
                    format!(
                        "cannot enable the memory controller for children of {} (a cgroup2 group with processes cannot delegate it): run the drill from a delegated group, e.g. systemd-run --scope -p Delegate=yes oomguard drill",
                        parent.display()
                    )
                })?;
            }
        }
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "cannot create the scratch cgroup {} (needs root or a delegated cgroup)",
                dir.display()
            )
        })?;
        let s = Scratch {
            rel: format!("{}/{name}", own.trim_end_matches('/')),
            dir,
            version,
        };
        let write = |file: &str, v: &str| {
            std::fs::write(s.dir.join(file), v)
                .with_context(|| format!("cannot write {v} to {}", s.dir.join(file).display()))
        };
        match version {
            CgVersion::V1 => {
                write("memory.limit_in_bytes", &limit.to_string())?;
                if s.dir.join("memory.memsw.limit_in_bytes").exists() {
                    write("memory.memsw.limit_in_bytes", &limit.to_string())?;
                }
            }
            CgVersion::V2 => {
                write("memory.max", &limit.to_string())?;
                if s.dir.join("memory.swap.max").exists() {
                    write("memory.swap.max", "0")?;
                }
            }
        }
        Ok(s)
    }

    fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn read_value(&self, file: &str, key: Option<&str>) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        match key {
            None => parse_u64(text.as_bytes()),
            Some(k) => text.lines().find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            }),
        }
    }

    fn oom_kills(&self) -> u64 {
        match self.version {
            CgVersion::V1 => self.read_value("memory.oom_control", Some("oom_kill")),
            CgVersion::V2 => self.read_value("memory.events", Some("oom_kill")),
        }
        .unwrap_or(0)
    }

    fn peak_bytes(&self) -> Option<u64> {
        match self.version {
            CgVersion::V1 => self.read_value("memory.max_usage_in_bytes", None),
            CgVersion::V2 => self.read_value("memory.peak", None),
        }
    }

    /// Kills what is left inside (only this group's processes) and removes the group.
    fn remove(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.procs();
            if pids.is_empty() {
                break;
            }
            if self.version == CgVersion::V2 {
                let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
            }
            for pid in pids {
                // SAFETY: kill(2) of a process listed in our own scratch group.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // rmdir may briefly fail with EBUSY while the last task is being released.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Starts `cmd` inside the group: the child joins it before exec.
    fn spawn(&self, cmd: &mut Command) -> anyhow::Result<Child> {
        let procs = std::ffi::CString::new(
            self.dir
                .join("cgroup.procs")
                .to_string_lossy()
                .as_bytes()
                .to_vec(),
        )?;
        // SAFETY: only async-signal-safe calls (open/write/close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                libc::close(fd);
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn()
            .context("cannot start the hog in the scratch cgroup")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.dir.exists() && !self.remove() {
            eprintln!(
                "oomguard: could not remove the scratch cgroup {}; remove it with: rmdir {}",
                self.dir.display(),
                self.dir.display()
            );
        }
    }
}

/// `oomguard run` on the scratch group, stopped (SIGINT, then SIGKILL) and reaped on drop.
struct GuardDaemon(Child, Option<std::thread::JoinHandle<()>>);

impl GuardDaemon {
    fn start(exe: &std::path::Path, scope: &str, log: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut child = Command::new(exe)
            .args(["run", "--scope", scope, "--event-log"])
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start oomguard run")?;
        let stderr = child.stderr.take().context("daemon stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let forward = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("  [daemon] {line}");
                if line.contains("guarding") {
                    let _ = tx.send(());
                }
            }
        });
        let d = GuardDaemon(child, Some(forward));
        rx.recv_timeout(Duration::from_secs(20))
            .context("oomguard run did not start guarding the scratch group within 20 s")?;
        Ok(d)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for GuardDaemon {
    fn drop(&mut self) {
        // SAFETY: SIGINT to the daemon this drill started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
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

/// The daemon's `kill` record about `pid` (it is written once the victim is gone).
fn wait_kill_record(log: &std::path::Path, pid: i32) -> Option<serde_json::Value> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if let Ok((recs, _)) = eventlog::read_all(log)
            && let Some(r) = recs
                .into_iter()
                .find(|r| r["action"] == "kill" && r["victim"]["pid"] == pid)
        {
            return Some(r);
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
    let limit = a.limit.0.max(8 << 20);
    let hog_max = a.hog_max.map_or(limit * 4, |s| s.0);
    let log_path = a.event_log.clone().unwrap_or_else(eventlog::default_path);
    let mut kmsg = Kmsg::open();
    let scratch = Scratch::create(&Root::default(), limit)?;
    let scope = format!("cgroup:{}", scratch.rel);
    let log = EventLog::open(&log_path, &scope)?;
    say(
        a.json,
        format_args!(
            "scratch cgroup {} ({}), limit {} MiB, no swap",
            scratch.dir.display(),
            match scratch.version {
                CgVersion::V1 => "v1",
                CgVersion::V2 => "v2",
            },
            limit >> 20
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
    let mut hog_cmd = Command::new(&exe);
    hog_cmd.args(["hog", "--max", &format!("{}K", hog_max >> 10)]);
    if let Some(r) = rate {
        hog_cmd.args(["--rate", &format!("{}K", (r >> 10).max(1))]);
    }
    let mut hog = scratch.spawn(
        hog_cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0),
    )?;
    let hog_pid = hog.id() as i32;
    say(
        a.json,
        format_args!(
            "started hog {hog_pid} inside it, allocating up to {} MiB{}",
            hog_max >> 20,
            rate.map_or(" as fast as it can".into(), |r| format!(
                " at {} MiB/s",
                r >> 20
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
        Some(_) if signalled => wait_kill_record(&log_path, hog_pid),
        _ => None,
    };
    let killed_by = if daemon_rec.is_some() {
        Some("oomguard")
    } else {
        (sigkilled && oom_kills > 0).then_some("kernel")
    };
    // The daemon records kernel kills in its scope itself.
    if killed_by == Some("kernel") && daemon.is_none() {
        let comm = "oomguard";
        log.append(
            "kernel_kill",
            &serde_json::json!({
                "oom_kills": oom_kills,
                "counter": match scratch.version {
                    CgVersion::V1 => format!("{}/memory.oom_control oom_kill", scratch.dir.display()),
                    CgVersion::V2 => format!("{}/memory.events oom_kill", scratch.dir.display()),
                },
                "drill": true,
                "victim": {"pid": hog_pid, "comm": comm},
                "peak_kb": peak_kb,
                "kernel_log": kernel_log,
            }),
        )?;
    }
    if status.is_none() {
        // Interrupted or timed out: the hog is still in the group; remove() kills it.
        let _ = hog.kill();
    }
    let _ = hog.wait();
    drop(daemon);
    let cleaned_up = scratch.remove();
    let r = DrillResult {
        cgroup: scratch.dir.clone(),
        version: match scratch.version {
            CgVersion::V1 => "v1",
            CgVersion::V2 => "v2",
        },
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
        hog_status: status.map(|s| s.to_string()),
        daemon_signals: daemon_rec
            .as_ref()
            .and_then(|r| r["signals"].as_array())
            .map(|a| {
                a.iter()
                    .map(|s| {
                        format!(
                            "{} after {} ms",
                            s["signal"].as_str().unwrap_or("?"),
                            s["ms"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    drop(scratch);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        r.print();
    }
    if interrupted {
        eprintln!("oomguard: drill interrupted; the scratch cgroup and the hog are gone");
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
    #[serde(skip)]
    hog_status: Option<String>,
    /// The daemon's signals from its `kill` record.
    daemon_signals: Vec<String>,
}

impl DrillResult {
    fn print(&self) {
        let peak = self
            .peak_kb
            .map_or(String::new(), |k| format!(", peak usage {} MiB", k >> 10));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 layout (the build machine has the memory controller on v1 only): the memory
    /// controller is delegated to the children of the caller's group and the limit goes to
    /// the new group's memory.max.
    #[test]
    fn v2_scratch_group_is_made_under_the_callers_group_with_memory_max() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let own = r.join("sys/fs/cgroup/user.slice/drill.scope");
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        std::fs::write(
            r.join("sys/fs/cgroup/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        std::fs::write(
            r.join("proc/self/cgroup"),
            "1:name=systemd:/x\n0::/user.slice/drill.scope\n",
        )
        .unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "pids\n").unwrap();
        let s = Scratch::create(&Root::new(r), 32 << 20).unwrap();
        assert_eq!(s.version, CgVersion::V2);
        let name = format!("oomguard-drill-{}", std::process::id());
        assert_eq!(s.rel, format!("/user.slice/drill.scope/{name}"));
        assert_eq!(s.dir, own.join(&name));
        assert_eq!(
            std::fs::read_to_string(s.dir.join("memory.max")).unwrap(),
            "33554432"
        );
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        // A second drill of the same process cannot reuse the group.
        assert!(
            format!(
                "{:#}",
                Scratch::create(&Root::new(r), 1 << 20).err().unwrap()
            )
            .contains("cannot create the scratch cgroup")
        );
        std::fs::remove_file(s.dir.join("memory.max")).unwrap();
        assert!(s.remove());
        assert!(!own.join(&name).exists());
    }
}
