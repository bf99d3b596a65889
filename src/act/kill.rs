//! One kill: the victim (and, by `--kill-unit`, its descendants or its whole leaf cgroup),
//! pinned by pidfds before any signal, signalled together, each signal recorded with the
//! milliseconds since the decision.
//!
//! A tree is stopped before it is killed, top-down: the victim gets SIGSTOP first, then each
//! child found under a stopped parent, so that no member can fork while the tree is walked. A
//! parent's children are final once it is seen stopped (a fork under way when SIGSTOP came
//! completes before it stops, so its children are read again then). The walk reads only the
//! tree (`/proc/PID/task/TID/children`), not every process, and sleeps while members are on
//! their way to the stop: the machine is not held up at the guard's priority, and no child is
//! left behind. A kernel without the children files (CONFIG_PROC_CHILDREN) is walked through
//! every process's parent link, until a pass after every member stopped finds nobody new.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::pidfd::{Target, TargetError};
use crate::decide::victim::Candidate;
use crate::sense::cgroup::{CgVersion, memory_path_of};
use crate::sense::procs::{ProcError, ProcReader};
use crate::sense::scope::Scope;
use crate::values::KillUnit;

/// How long a tree walk waits for its members to stop before it takes the tree as it is (a
/// member in uninterruptible sleep stops only when it leaves it).
pub const TREE_SETTLE: Duration = Duration::from_millis(250);

/// True if this kernel has `/proc/PID/task/TID/children` (read on our own main thread).
fn has_children_files(reader: &mut ProcReader) -> bool {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    reader.children(me, me, &mut v).is_ok()
}

/// One member of a tree being walked.
struct Member {
    pid: i32,
    /// The walk round in which it was first seen stopped (or dead).
    settled: Option<u32>,
    /// Its children were read after it stopped: nothing more can appear under it.
    done: bool,
}

/// Is every thread of `pid` stopped or dead? Leaves its thread ids in `tids`. `Err` if the
/// process is gone.
fn settled_now(reader: &mut ProcReader, pid: i32, tids: &mut Vec<i32>) -> Result<bool, ProcError> {
    let st = reader.stat(pid)?;
    tids.clear();
    if st.num_threads <= 1 || st.is_zombie() {
        tids.push(pid);
        return Ok(st.is_settled());
    }
    reader.tids(pid, tids)?;
    let mut all = true;
    for &tid in tids.iter() {
        match reader.task_stat(pid, tid) {
            Ok(t) if !t.is_settled() => all = false,
            Ok(_) | Err(ProcError::Gone { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// The longest stretch a stopping tree walk works before it sleeps 1 ms: at the guard's
/// priority a longer one holds up everything else on its CPU, and the stopped tree cannot
/// grow meanwhile.
const WALK_SLICE: Duration = Duration::from_millis(2);

/// One signal sent.
#[derive(Debug, Clone)]
pub struct SignalSent {
    pub signal: &'static str,
    /// Milliseconds since the wake-up that led to the decision.
    pub ms: u64,
    /// The same in microseconds (decision latency: wake-up to signal).
    pub us: u64,
    pub pid: i32,
    pub ok: bool,
    pub error: Option<String>,
    /// The errno name when the signal failed (`EPERM`: not permitted, e.g. another user's
    /// process without CAP_KILL; `ESRCH`: the process exited before the signal).
    pub errno: Option<&'static str>,
}

fn errno_name(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ESRCH) => "ESRCH",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EACCES) => "EACCES",
        _ => "other",
    }
}

/// The processes of one kill decision, pinned.
#[derive(Debug)]
pub struct Kill {
    pub victim: Target,
    pub others: Vec<Target>,
    /// v2 leaf cgroup's `cgroup.kill` (real path) for `--kill-unit cgroup`.
    pub cgroup_kill: Option<PathBuf>,
    pub signals: Vec<SignalSent>,
    pub decided: Instant,
    pub released: bool,
    /// What the unit resolved to, for the record (`process`, `tree (3 processes)`, …).
    pub unit_note: String,
    /// The pinned processes were sent SIGSTOP (a tree) and not yet killed or continued: they
    /// get SIGCONT if this kill is dropped unsent.
    stopped: bool,
}

fn name(sig: Option<Signal>) -> &'static str {
    match sig {
        Some(Signal::KILL) => "SIGKILL",
        Some(_) => "SIGTERM",
        None => "0",
    }
}

impl Kill {
    /// Pins the victim and the rest of its kill unit. Fails only if the victim itself cannot be
    /// pinned (gone or PID reused); members of the unit that vanish are skipped.
    pub fn plan(
        reader: &mut ProcReader,
        scope: &Scope,
        unit: KillUnit,
        victim: &Candidate,
        decided: Instant,
    ) -> Result<Kill, TargetError> {
        let main = Target::open(reader, victim.pid, victim.starttime)?;
        let mut kill = Kill {
            victim: main,
            others: Vec::new(),
            cgroup_kill: None,
            signals: Vec::new(),
            decided,
            released: false,
            unit_note: "process".into(),
            stopped: false,
        };
        let me = std::process::id() as i32;
        match unit {
            KillUnit::Process => {}
            KillUnit::Tree => {
                // Stopped and walked now, not taken from the ranker's table: a storm forks
                // faster than scans. Never stop ourselves (the start-up warm-up plans a kill of
                // the daemon itself: it walks with signal 0).
                kill.walk_tree(reader, kill.victim.pid != me);
                kill.unit_note = format!("tree ({} processes)", kill.others.len() + 1);
            }
            KillUnit::Cgroup => {
                let prefer_v2 = scope.mounts.v2_memory.is_some();
                let text = reader.cgroup_text(victim.pid).unwrap_or_default();
                let leaf = memory_path_of(&text, prefer_v2).unwrap_or("/").to_string();
                let (mount, version) = match (prefer_v2, &scope.mounts) {
                    (true, m) => (m.v2_memory.clone(), CgVersion::V2),
                    (false, m) => (m.v1_memory.clone(), CgVersion::V1),
                };
                match mount {
                    Some(mount) if leaf != "/" => {
                        let dir = mount.join(leaf.trim_start_matches('/'));
                        if version == CgVersion::V2
                            && scope.root.path(dir.join("cgroup.kill")).exists()
                        {
                            kill.cgroup_kill = Some(scope.root.path(dir.join("cgroup.kill")));
                        }
                        let procs = scope.root.path(dir.join("cgroup.procs"));
                        // Without cgroup.kill (v1) the group is stopped first, as a tree is:
                        // a member forking between the listing and the signal would leave a
                        // live child in the group.
                        let stop = kill.cgroup_kill.is_none() && kill.victim.pid != me;
                        kill.walk_cgroup(reader, &procs, stop);
                        kill.unit_note =
                            format!("cgroup {leaf} ({} processes)", kill.others.len() + 1);
                    }
                    _ => {
                        kill.unit_note = "process (the victim is in the root cgroup; not killing a whole root group)".into();
                    }
                }
            }
        }
        Ok(kill)
    }

    /// Stops the victim and, top-down, every descendant (see the module docs); `stop: false`
    /// finds them with signal 0 instead. Members are pinned into `others`.
    fn walk_tree(&mut self, reader: &mut ProcReader, stop: bool) {
        let me = std::process::id() as i32;
        let files = has_children_files(reader);
        let deadline = Instant::now() + TREE_SETTLE;
        if stop && self.victim.signal(Signal::STOP).is_ok() {
            self.stopped = true;
        }
        let stop = self.stopped;
        let mut members = vec![Member {
            pid: self.victim.pid,
            settled: None,
            done: false,
        }];
        let mut seen: HashSet<i32> = HashSet::from([self.victim.pid]);
        let (mut kids, mut tids, mut all) = (Vec::new(), Vec::new(), Vec::new());
        // Parent links of every process (no children files): (pid, ppid, start time).
        let mut links: Vec<(i32, i32, u64)> = Vec::new();
        let mut late_rounds = 0;
        let mut slice = Instant::now();
        for round in 0u32.. {
            let late = Instant::now() >= deadline;
            if late {
                // Members that could not be stopped may fork on: a few more rounds, then the
                // tree as it is.
                late_rounds += 1;
                if late_rounds > 3 {
                    break;
                }
            }
            if !files {
                all.clear();
                links.clear();
                let _ = reader.pids(&mut all);
                for &p in &all {
                    if let Ok(s) = reader.stat(p) {
                        links.push((p, s.ppid, s.starttime));
                    }
                }
            }
            let mut added = false;
            let mut i = 0;
            while i < members.len() {
                if members[i].done {
                    i += 1;
                    continue;
                }
                let pid = members[i].pid;
                if stop && slice.elapsed() > WALK_SLICE {
                    std::thread::sleep(Duration::from_millis(1));
                    slice = Instant::now();
                }
                tids.clear();
                if members[i].settled.is_none() {
                    match settled_now(reader, pid, &mut tids) {
                        Ok(true) => members[i].settled = Some(round),
                        Ok(false) if !stop || late => members[i].settled = Some(round),
                        Ok(false) => {}
                        // Gone (its children, if any, went to init: no longer its tree) or
                        // unreadable: nothing more to learn under it.
                        Err(_) => {
                            members[i].settled = Some(round);
                            members[i].done = true;
                            i += 1;
                            continue;
                        }
                    }
                }
                // Children read now are final if it was settled before they were read: in
                // this round for the children files, before this round's pass over /proc
                // for parent links.
                let final_read = match members[i].settled {
                    Some(r) if files => r <= round,
                    Some(r) => r < round || !stop,
                    None => false,
                };
                kids.clear();
                if files {
                    if tids.is_empty() {
                        match reader.stat(pid) {
                            Ok(st) if st.num_threads > 1 => {
                                let _ = reader.tids(pid, &mut tids);
                            }
                            _ => {}
                        }
                    }
                    if tids.is_empty() {
                        tids.push(pid);
                    }
                    for &tid in &tids {
                        let _ = reader.children(pid, tid, &mut kids);
                    }
                } else {
                    kids.extend(links.iter().filter(|l| l.1 == pid).map(|l| l.0));
                }
                for &c in &kids {
                    if c == me || c == 1 || !seen.insert(c) {
                        continue;
                    }
                    match Target::open_child(reader, c, pid) {
                        Ok(t) => {
                            if stop {
                                let _ = t.signal(Signal::STOP);
                            }
                            self.others.push(t);
                            members.push(Member {
                                pid: c,
                                settled: None,
                                done: false,
                            });
                            added = true;
                        }
                        // Gone, or no longer this parent's: look again in the next round.
                        Err(_) => {
                            seen.remove(&c);
                        }
                    }
                }
                members[i].done = final_read;
                i += 1;
            }
            if members.iter().all(|m| m.done) && !added {
                break;
            }
            if stop && !late {
                // Let the members run to their stop; the guard does not hold the CPU meanwhile.
                std::thread::sleep(Duration::from_millis(1));
                slice = Instant::now();
            }
        }
    }

    /// Pins every process listed in `procs` (a cgroup's `cgroup.procs`). `stop`: each is sent
    /// SIGSTOP as it is found, and the list is read again until a reading made after every
    /// member stopped names nobody new (at most [`TREE_SETTLE`], then the group as it is).
    fn walk_cgroup(&mut self, reader: &mut ProcReader, procs: &std::path::Path, stop: bool) {
        let me = std::process::id() as i32;
        if stop && self.victim.signal(Signal::STOP).is_ok() {
            self.stopped = true;
        }
        let stop = self.stopped;
        let deadline = Instant::now() + TREE_SETTLE;
        let mut seen: HashSet<i32> = HashSet::from([self.victim.pid, me, 1]);
        let (mut buf, mut tids) = (Vec::new(), Vec::new());
        let mut pids: Vec<i32> = vec![self.victim.pid];
        loop {
            // Were all members stopped before this reading of the list?
            let mut all_settled = true;
            if stop && Instant::now() < deadline {
                for &p in &pids {
                    if matches!(settled_now(reader, p, &mut tids), Ok(false)) {
                        all_settled = false;
                        break;
                    }
                }
            }
            buf.clear();
            if crate::sense::read_into(procs, &mut buf).is_err() {
                break;
            }
            let mut added = false;
            for pid in buf
                .split(|&b| b == b'\n')
                .filter_map(crate::sense::parse_u64)
                .map(|p| p as i32)
            {
                if !seen.insert(pid) {
                    continue;
                }
                let Ok(st) = reader.stat(pid) else { continue };
                if let Ok(t) = Target::open(reader, pid, st.starttime) {
                    if stop {
                        let _ = t.signal(Signal::STOP);
                    }
                    self.others.push(t);
                    pids.push(pid);
                    added = true;
                }
            }
            if !stop || (all_settled && !added) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `sig` to every pinned process (SIGKILL to a v2 group goes through `cgroup.kill`).
    /// A stopped tree is continued after any signal but SIGKILL, so that it can act on it.
    pub fn signal_all(&mut self, sig: Signal) {
        self.send(Some(sig));
        if self.stopped {
            if sig != Signal::KILL {
                self.resume();
            }
            self.stopped = false;
        }
    }

    /// SIGCONT to every pinned process.
    fn resume(&self) {
        for t in std::iter::once(&self.victim).chain(&self.others) {
            let _ = t.signal(Signal::CONT);
        }
    }

    /// The same path as [`Kill::signal_all`] with signal 0 (checks, sends nothing; `cgroup.kill`
    /// is not written): the start-up warm-up, so the first real kill runs resident code.
    pub fn probe_all(&mut self) {
        self.send(None);
    }

    fn send(&mut self, sig: Option<Signal>) {
        let us = self.decided.elapsed().as_micros() as u64;
        let fire = |t: &Target| match sig {
            Some(s) => t.signal(s),
            None => t.probe(),
        };
        let mut push = |pid: i32, r: std::io::Result<()>| {
            let (error, errno) = match &r {
                Ok(()) => (None, None),
                Err(e) => (Some(e.to_string()), Some(errno_name(e))),
            };
            self.signals.push(SignalSent {
                signal: name(sig),
                ms: us / 1000,
                us,
                pid,
                ok: r.is_ok(),
                error,
                errno,
            });
        };
        push(self.victim.pid, fire(&self.victim));
        if sig == Some(Signal::KILL)
            && let Some(ck) = &self.cgroup_kill
        {
            let r = std::fs::write(ck, "1");
            if r.is_ok() {
                for t in &self.others {
                    push(t.pid, Ok(()));
                }
                return;
            }
        }
        for t in &self.others {
            push(t.pid, fire(t));
        }
    }

    /// The victim's own signal, if it failed (the last one sent to it).
    pub fn victim_failed(&self) -> Option<&SignalSent> {
        self.signals
            .iter()
            .rev()
            .find(|s| s.pid == self.victim.pid)
            .filter(|s| !s.ok)
    }

    /// `process_mrelease` on every pinned process (after SIGKILL only).
    pub fn release(&mut self) {
        let mut any = false;
        for t in std::iter::once(&self.victim).chain(&self.others) {
            any |= t.mrelease().is_ok();
        }
        self.released |= any;
    }

    /// True once the victim and every other pinned process has exited.
    pub fn all_exited(&self) -> bool {
        self.victim.exited() && self.others.iter().all(Target::exited)
    }
}

impl Drop for Kill {
    /// A tree stopped for a kill that was then not sent is let go.
    fn drop(&mut self) {
        if self.stopped {
            self.resume();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::Root;
    use crate::values::ScopeSpec;
    use std::process::Command;

    /// The processes whose command line is exactly `sleep TAG`.
    fn sleepers(reader: &mut ProcReader, tag: &str) -> Vec<i32> {
        let mut pids = Vec::new();
        reader.pids(&mut pids).unwrap();
        let want = format!("sleep {tag}");
        pids.into_iter()
            .filter(|&p| reader.cmdline(p).is_ok_and(|c| c == want))
            .collect()
    }

    /// Starts `sh -c script` (which forks `sleep TAG` children) and waits for 20 children; the
    /// shell and its candidate.
    fn forking_shell(
        reader: &mut ProcReader,
        script: &str,
        tag: &str,
    ) -> (std::process::Child, Candidate) {
        let sh = Command::new("sh").arg("-c").arg(script).spawn().unwrap();
        let pid = sh.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(20);
        while sleepers(reader, tag).len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = reader.stat(pid).unwrap();
        (sh, Candidate::unscored(pid, st.starttime, "sh"))
    }

    /// The `sleep TAG` children still alive after a kill: SIGKILLed (they are the test's own)
    /// and returned for the assertion.
    fn kill_escaped(reader: &mut ProcReader, tag: &str) -> Vec<i32> {
        let escaped = sleepers(reader, tag);
        for &p in &escaped {
            if let Some(pid) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        escaped
    }

    /// A tree that forks as fast as it can loses no child to a tree kill: with a walk that
    /// first lists the tree and then signals it, children forked in between escape to init.
    #[test]
    fn a_forking_tree_is_killed_whole() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        // A sleep length no other test uses: it names this tree's children.
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let script = format!("i=0; while [ $i -lt 300 ]; do sleep {tag} & i=$((i+1)); done; wait");
        let (mut sh, cand) = forking_shell(&mut reader, &script, &tag);
        let mut kill =
            Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        kill.signal_all(Signal::KILL);
        let _ = sh.wait();
        let until = Instant::now() + Duration::from_secs(10);
        while !kill.all_exited() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(kill.all_exited(), "a pinned member outlived SIGKILL");
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(
            escaped.is_empty(),
            "{} children escaped the tree kill of {} pinned processes",
            escaped.len(),
            kill.others.len() + 1
        );
        assert!(kill.others.len() >= 20, "{}", kill.unit_note);
        assert!(kill.unit_note.starts_with("tree ("), "{}", kill.unit_note);
    }

    /// The same for `--kill-unit cgroup` on a v1 memory cgroup (no `cgroup.kill`): a member
    /// forking as fast as it can leaves no live process in the group.
    #[test]
    fn a_forking_v1_cgroup_is_killed_whole() {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap()
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
                ctl.split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            });
        let base = own
            .map(|p| std::path::Path::new("/sys/fs/cgroup/memory").join(p.trim_start_matches('/')));
        let Some(base) = base.filter(|b| b.join("memory.limit_in_bytes").exists()) else {
            assert!(
                std::env::var("CI").is_err(),
                "a cgroup v1 memory controller is needed (CI=true)"
            );
            return;
        };
        let dir = base.join(format!("oomguard-killv1-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let script = format!(
            "echo $$ > {}/cgroup.procs && i=0 && while [ $i -lt 300 ]; do sleep {tag} & i=$((i+1)); done; wait",
            dir.display()
        );
        let (mut sh, cand) = forking_shell(&mut reader, &script, &tag);
        let mut kill =
            Kill::plan(&mut reader, &scope, KillUnit::Cgroup, &cand, Instant::now()).unwrap();
        kill.signal_all(Signal::KILL);
        let _ = sh.wait();
        let until = Instant::now() + Duration::from_secs(10);
        while !kill.all_exited() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let escaped = kill_escaped(&mut reader, &tag);
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir(&dir).is_err() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            escaped.is_empty(),
            "{} processes escaped the cgroup kill ({})",
            escaped.len(),
            kill.unit_note
        );
        assert!(kill.unit_note.starts_with("cgroup /"), "{}", kill.unit_note);
        assert!(kill.others.len() >= 20, "{}", kill.unit_note);
    }

    /// A stopped tree whose kill is dropped unsent runs on.
    #[test]
    fn a_tree_planned_but_not_signalled_is_continued() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60 & wait"])
            .spawn()
            .unwrap();
        let pid = sh.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut kids = Vec::new();
        while Instant::now() < deadline {
            let mut all = Vec::new();
            reader.pids(&mut all).unwrap();
            kids = all
                .into_iter()
                .filter(|&p| reader.stat(p).is_ok_and(|s| s.ppid == pid))
                .collect();
            if kids.len() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(kids.len(), 2);
        let st = reader.stat(pid).unwrap();
        let cand = Candidate::unscored(pid, st.starttime, "sh");
        let kill = Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        assert_eq!(kill.unit_note, "tree (3 processes)");
        for p in std::iter::once(pid).chain(kids.iter().copied()) {
            assert_eq!(reader.stat(p).unwrap().state, b'T', "{p} is not stopped");
        }
        drop(kill);
        std::thread::sleep(Duration::from_millis(100));
        for p in std::iter::once(pid).chain(kids.iter().copied()) {
            assert_ne!(reader.stat(p).unwrap().state, b'T', "{p} is still stopped");
        }
        for p in kids {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(p).unwrap(),
                Signal::KILL,
            );
        }
        let _ = sh.kill();
        let _ = sh.wait();
    }
}
