//! The act side's kill units against real process trees, through the library's `Kill` (no
//! daemon): what a tree kill pins is the whole tree, whatever shape its victim is in.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::act::kill::Kill;
use oomguard::decide::victim::Candidate;
use oomguard::sense::Root;
use oomguard::sense::procs::ProcReader;
use oomguard::sense::scope::Scope;
use oomguard::values::{KillUnit, ScopeSpec};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::util::hog_bin;

/// Processes of the test's own, pinned by pidfds: SIGKILLed on drop (an assertion failing
/// included), never another process that got one of their PIDs.
struct Pinned(Vec<(i32, OwnedFd)>);

impl Pinned {
    fn new(pids: &[i32]) -> Pinned {
        Pinned(
            pids.iter()
                .filter_map(|&p| {
                    let fd = rustix::process::pidfd_open(Pid::from_raw(p)?, PidfdFlags::empty());
                    Some((p, fd.ok()?))
                })
                .collect(),
        )
    }

    /// The PIDs of those still alive after waiting up to `timeout` for each.
    fn alive_after(&self, timeout: Duration) -> Vec<i32> {
        let end = Instant::now() + timeout;
        self.0
            .iter()
            .filter(|(_, fd)| {
                let left = end.saturating_duration_since(Instant::now());
                let ts = rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                };
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                !matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
            })
            .map(|(p, _)| *p)
            .collect()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for (_, fd) in &self.0 {
            let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
        }
    }
}

/// The children of every thread of `pid`.
fn children_of_all_threads(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out.sort_unstable();
    out
}

/// A victim whose main thread has exited (`pthread_exit` from `main`) lives on in its other
/// threads, and its children, forked by the main thread, now belong to one of them (the kernel
/// hands an exiting thread's children to a live thread of its process): its main thread is a
/// zombie, but the process runs on and can fork. A tree kill must read the children of every
/// thread: taken as settled (a zombie), the walk read only the main thread's, found none, and
/// the children outlived the kill, reparented to init.
#[test]
fn a_tree_whose_main_thread_has_exited_is_killed_whole() {
    let mut hog = Command::new(hog_bin())
        .args(["--max", "1M", "--leader-exits", "--children", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = hog.id() as i32;
    let mut lines = BufReader::new(hog.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("main thread exiting")),
        "the hog never said its main thread exits"
    );
    let mut reader = ProcReader::open(&Root::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut kids = children_of_all_threads(pid);
    while !(kids.len() == 3 && reader.stat(pid).is_ok_and(|s| s.is_zombie()))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
        kids = children_of_all_threads(pid);
    }
    let cleanup = Pinned::new(&kids);
    assert_eq!(kids.len(), 3, "the hog's children: {kids:?}");
    let st = reader.stat(pid).unwrap();
    assert!(
        st.is_zombie() && st.num_threads > 1,
        "main thread gone, process alive"
    );
    let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
    let cand = Candidate::unscored(pid, st.starttime, "oomguard-hog");
    let mut kill = Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
    let mut pinned: Vec<i32> = kill.others.iter().map(|t| t.pid).collect();
    pinned.sort_unstable();
    kill.signal_all(Signal::KILL);
    let until = Instant::now() + Duration::from_secs(10);
    while !kill.all_exited() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = hog.wait();
    assert_eq!(pinned, kids, "{}", kill.unit_note);
    assert!(kill.all_exited(), "a pinned member outlived SIGKILL");
    let escaped = cleanup.alive_after(Duration::from_secs(5));
    assert!(
        escaped.is_empty(),
        "children escaped the tree kill: {escaped:?}"
    );
}
