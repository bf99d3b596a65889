//! `[[watch]]`: the after-kill watch list. After every OOM event (oomguard's `kill` or a
//! `kernel_kill`) a thread of its own waits a moment for the dust to settle, checks that each
//! watched program still runs, records `missing` for what is gone and runs its restart command
//! (argv, no shell) at most `max_restarts` times over the daemon's life, recording each
//! `restart` and its result. Follow-up records carry `after`: the event they follow.
//!
//! Wire format, besides the common fields:
//! - `missing`: `watch` (the entry's first match pattern), `restart` (its argv, maybe empty),
//!   `restarts_left`, `after` {`time`, `action`, `pid`, `comm`} (the kill or kernel kill).
//! - `restart`: `watch`, `argv`, `attempt` (1-based), `max_restarts`, `ok` (exit status 0),
//!   `exit_code`, `timed_out`, `error` (could not start), `ms`, `running_after` (the program
//!   was found running after the command), `after`.

use crate::sense::mem::MemState;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Observer;
use super::emit::Emitter;
use super::event::{After, Event, Missing, Record, Restart};
use super::hooks::run_program;
use crate::config::fleet::WatchEntry;
use crate::decide::policy::ProcFacts;
use crate::sense::Root;
use crate::sense::procs::ProcReader;

/// How the watch list finds processes and waits (tests shorten the waits).
#[derive(Debug, Clone)]
pub struct WatchTiming {
    /// Wait after an OOM event before checking.
    pub settle: Duration,
    /// Wait after a restart command before checking whether it brought the program back.
    pub verify: Duration,
}

impl Default for WatchTiming {
    fn default() -> Self {
        WatchTiming {
            settle: Duration::from_secs(2),
            verify: Duration::from_secs(2),
        }
    }
}

/// A process's facts, read lazily for the watch matchers.
struct Facts<'a> {
    r: &'a mut ProcReader,
    pid: i32,
    comm: String,
    cmdline: Option<Option<String>>,
    exe: Option<Option<String>>,
    cgroup: Option<Option<String>>,
}

/// The cgroup path rules look at: the v2 path when it is not the root, else the v1 systemd
/// (`name=systemd`) path, else the v1 memory path, else the first.
pub fn cgroup_path(text: &str) -> Option<String> {
    let mut lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            Some((f.next()?, f.next()?))
        })
        .collect();
    let pick = |pred: &dyn Fn(&str, &str) -> bool| {
        lines
            .iter()
            .find(|(c, p)| pred(c, p))
            .map(|(_, p)| p.to_string())
    };
    pick(&|c, p| c.is_empty() && p != "/")
        .or_else(|| pick(&|c, _| c.split(',').any(|x| x == "name=systemd")))
        .or_else(|| pick(&|c, _| c.split(',').any(|x| x == "memory")))
        .or_else(|| {
            lines.truncate(1);
            lines.first().map(|(_, p)| p.to_string())
        })
}

impl ProcFacts for Facts<'_> {
    fn comm(&self) -> &str {
        &self.comm
    }
    fn uid(&mut self) -> Option<u32> {
        None
    }
    fn cmdline(&mut self) -> Option<&str> {
        if self.cmdline.is_none() {
            self.cmdline = Some(self.r.cmdline(self.pid).ok());
        }
        self.cmdline.as_ref()?.as_deref()
    }
    fn exe(&mut self) -> Option<&str> {
        if self.exe.is_none() {
            self.exe = Some(self.r.exe(self.pid).ok());
        }
        self.exe.as_ref()?.as_deref()
    }
    fn cgroup(&mut self) -> Option<&str> {
        if self.cgroup.is_none() {
            self.cgroup = Some(
                self.r
                    .cgroup_text(self.pid)
                    .ok()
                    .and_then(|t| cgroup_path(&t)),
            );
        }
        self.cgroup.as_ref()?.as_deref()
    }
}

/// Which entries have at least one live (not zombie, not exiting) matching process.
pub fn running(root: &Root, entries: &[WatchEntry]) -> std::io::Result<Vec<bool>> {
    let mut r = ProcReader::open(root)?;
    let mut pids = Vec::new();
    r.pids(&mut pids)?;
    let mut found = vec![false; entries.len()];
    for pid in pids {
        if found.iter().all(|f| *f) {
            break;
        }
        let Ok(stat) = r.stat(pid) else { continue };
        if stat.is_kthread() || stat.is_zombie() || stat.is_exiting() {
            continue;
        }
        let mut f = Facts {
            comm: stat.comm.to_string_lossy().into_owned(),
            r: &mut r,
            pid,
            cmdline: None,
            exe: None,
            cgroup: None,
        };
        for (i, e) in entries.iter().enumerate() {
            if !found[i] && e.matcher.matches(&mut f) {
                found[i] = true;
            }
        }
    }
    Ok(found)
}

/// The event a follow-up refers to.
/// The watch-list observer: hands OOM events to its thread.
#[derive(Debug)]
pub struct Watch {
    tx: Sender<Record>,
}

/// The restarts made so far, by entry label: kept by the daemon across reloads, so that an
/// entry's `max_restarts` holds over the daemon's life, not over one config's.
pub type Restarts = Arc<Mutex<HashMap<String, u32>>>;

impl Watch {
    /// Starts the watch thread. `None` when the list is empty.
    pub fn start(
        entries: Vec<WatchEntry>,
        root: Root,
        emit: Emitter,
        timing: WatchTiming,
    ) -> Option<Watch> {
        Watch::start_with(entries, root, emit, timing, Restarts::default())
    }

    /// [`Watch::start`], counting restarts in `restarts`.
    pub fn start_with(
        entries: Vec<WatchEntry>,
        root: Root,
        emit: Emitter,
        timing: WatchTiming,
        restarts: Restarts,
    ) -> Option<Watch> {
        if entries.is_empty() {
            return None;
        }
        let (tx, rx) = channel();
        let spawned = super::side::spawn_background("oomguard-watch", move || {
            worker(rx, entries, root, emit, timing, restarts)
        });
        match spawned {
            Ok(_) => Some(Watch { tx }),
            Err(e) => {
                log::error!("after-kill watch list not started: {e}");
                None
            }
        }
    }
}

impl Observer for Watch {
    /// Reads records only, never a sample's memory.
    fn accepts_floor(&self, _floor: &MemState) -> bool {
        true
    }

    fn record(&mut self, rec: &Record) {
        if matches!(rec.event, Event::Kill(_) | Event::KernelKill(_)) {
            let _ = self.tx.send(rec.clone());
        }
    }
}

fn worker(
    rx: Receiver<Record>,
    entries: Vec<WatchEntry>,
    root: Root,
    emit: Emitter,
    timing: WatchTiming,
    restarts: Restarts,
) {
    let used_of = |label: &str| {
        *restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(label)
            .unwrap_or(&0)
    };
    while let Ok(mut event) = rx.recv() {
        std::thread::sleep(timing.settle);
        // Events that came meanwhile are one incident: check once, after the last of them.
        while let Ok(e) = rx.try_recv() {
            event = e;
        }
        let after = After::of(&event);
        let live = match running(&root, &entries) {
            Ok(l) => l,
            Err(e) => {
                log::error!("after-kill watch list: cannot list processes: {e}");
                continue;
            }
        };
        for (i, e) in entries.iter().enumerate() {
            if live[i] {
                continue;
            }
            let label = e.label();
            let left = e.max_restarts.saturating_sub(used_of(&label));
            log::warn!(
                "after the OOM event, watched '{label}' is not running{}",
                if e.restart.is_empty() {
                    String::new()
                } else {
                    format!(" ({left} restart(s) left)")
                }
            );
            emit.emit(Event::Missing(Missing {
                watch: label.clone(),
                restart: e.restart.clone(),
                restarts_left: if e.restart.is_empty() { 0 } else { left },
                after: after.clone(),
                extra: Default::default(),
            }));
            if e.restart.is_empty() || left == 0 {
                continue;
            }
            let attempt = {
                let mut r = restarts.lock().unwrap_or_else(|p| p.into_inner());
                let n = r.entry(label.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let env = [("OOMGUARD_WATCH".to_string(), label.clone())];
            let stdin = serde_json::to_vec(&event).unwrap_or_default();
            let r = run_program(&e.restart, &env, &stdin, e.timeout);
            std::thread::sleep(timing.verify);
            let running_after = running(&root, std::slice::from_ref(e))
                .map(|v| v[0])
                .unwrap_or(false);
            if r.ok && running_after {
                log::info!("restarted '{label}' (attempt {attempt})");
            } else {
                log::warn!(
                    "restart of '{label}' (attempt {attempt}) {}; running now: {running_after}",
                    r.error.clone().unwrap_or_else(|| if r.timed_out {
                        "timed out".into()
                    } else {
                        format!("exited with {:?}", r.exit_code)
                    })
                );
            }
            emit.emit(Event::Restart(Restart {
                watch: label,
                argv: e.restart.clone(),
                attempt,
                max_restarts: e.max_restarts,
                ok: r.ok,
                exit_code: r.exit_code,
                timed_out: r.timed_out,
                error: r.error,
                ms: r.ms,
                running_after,
                after: after.clone(),
                extra: Default::default(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_cgroup_path_rules_see() {
        assert_eq!(
            cgroup_path("0::/system.slice/nginx.service\n").as_deref(),
            Some("/system.slice/nginx.service")
        );
        let v1 = "12:memory:/user.slice\n1:name=systemd:/system.slice/nginx.service\n0::/\n";
        assert_eq!(
            cgroup_path(v1).as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(cgroup_path("5:memory:/a\n0::/\n").as_deref(), Some("/a"));
        assert_eq!(cgroup_path("").as_deref(), None);
    }
}
