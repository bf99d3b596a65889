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
//! left behind. SIGSTOP goes out a few members at a time (`STOP_BATCH`), with a sleep
//! between: each stop wakes its member, and woken members queue ahead of other tasks. A
//! kernel without the children files (CONFIG_PROC_CHILDREN) is walked through every
//! process's parent link, until a pass after every member stopped finds nobody new.
//!
//! A stopped tree is woken a wave at a time, not all at once ([`Kill::wait`] does it while it
//! waits for the exits). SIGTERM goes to every member at once (it stays pending in a stopped
//! process); the victim is continued first and alone (SIGKILL: sent to it alone), and the first
//! wave of the others follows when it has exited: at most [`VICTIM_WAIT`] later, or, if by then
//! it is on its way out (freeing its memory), at most [`VICTIM_EXIT_WAIT`]. Each later
//! wave comes when the one before has exited and as long again has passed, so that the dying
//! members take at most half of a CPU; a wave is sized to exit in about [`WAVE_BUDGET`] (it
//! starts at [`WAVE_FIRST`], doubles or halves), and one that does not exit within
//! [`WAVE_WAIT`] (a member handling SIGTERM) is not waited for longer, and halves the next.
//! Woken together, dying members all queue ahead of every other runnable task of their
//! priority (the scheduler places a woken task at the queue's minimum, minus a sleeper's
//! credit) and each runs its whole exit before the others get the CPU again: in the VM fork
//! storm that held a 10 ms heartbeat up for the exits of 60 members (44–72 ms, against 9–11 ms
//! when the victim alone dies). The held members stay stopped: they cannot fork or allocate
//! meanwhile. One case the guard cannot pace: when the victim's exit orphans a process group
//! with stopped members (the leader of a shell's job), the kernel sends that group SIGHUP and
//! SIGCONT, and the held members die of their pending signals at once, as every member did
//! before waves.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use super::pidfd::{Target, TargetError};
use super::reaper::{Reaper, Refused, Tally};
use crate::decide::victim::Candidate;
use crate::sense::cgroup::{CgVersion, memory_path_of};
use crate::sense::procs::{ProcError, ProcReader, stat_kept};
use crate::sense::scope::Scope;
use crate::values::KillUnit;

/// How long a tree walk waits for its members to stop before it takes the tree as it is (a
/// member in uninterruptible sleep stops only when it leaves it).
pub const TREE_SETTLE: Duration = Duration::from_millis(250);

/// Reads a group's `cgroup.procs` into `buf` through `list`, and its PIDs, sorted, into
/// `listed`. False when it cannot be read.
fn read_listing(
    list: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    buf: &mut Vec<u8>,
    listed: &mut Vec<i32>,
) -> bool {
    buf.clear();
    if !list(buf) {
        return false;
    }
    listed.clear();
    listed.extend(
        buf.split(|&b| b == b'\n')
            .filter_map(crate::sense::parse_u64)
            .map(|p| p as i32),
    );
    listed.sort_unstable();
    true
}

/// The first of `pids` that the group's `cgroup.procs` lists, if any (`None` also when the
/// file cannot be read: the walk then finds no member either).
fn group_holds(procs: &std::path::Path, pids: &[i32]) -> Option<i32> {
    let mut buf = Vec::new();
    crate::sense::read_into(procs, &mut buf).ok()?;
    buf.split(|&b| b == b'\n')
        .filter_map(crate::sense::parse_u64)
        .map(|p| p as i32)
        .find(|p| pids.contains(p))
}

/// True if this kernel has `/proc/PID/task/TID/children` (read on our own main thread).
fn has_children_files(reader: &mut ProcReader) -> bool {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    reader.children(me, me, &mut v).is_ok()
}

/// Members woken in the first wave after the victim; later waves grow or shrink so that each
/// takes about [`WAVE_BUDGET`] to exit (see the module docs). One: how long a member takes to
/// exit is not known before the first has. With 4, on a slow emulated CPU (a member's exit
/// 4–20 ms in the VM fork storm), the first waves each held a 10 ms heartbeat up 7–17 ms, and
/// as none exited within [`WAVE_WAIT`], three of them were dying at once; where exits are fast,
/// doubling reaches 4 by the third wave.
pub const WAVE_FIRST: usize = 1;

/// The largest wave.
pub const WAVE_MAX: usize = 64;

/// The time a wave of dying members may hold the CPU: a wave that exits in less than half of
/// it is followed by one twice its size, one that takes more than twice it by half its size.
pub const WAVE_BUDGET: Duration = Duration::from_millis(2);

/// The longest a wave is waited for before the next one is woken: a member that handles
/// SIGTERM may take its time, or not exit at all.
pub const WAVE_WAIT: Duration = Duration::from_millis(20);

/// The longest the victim is waited for before the first wave of the others is woken: the
/// victim, usually the largest, exits first and alone. A victim still alive then and not
/// exiting (a SIGTERM handler at work, a parent waiting for its held children) does not hold
/// the others back longer.
pub const VICTIM_WAIT: Duration = Duration::from_millis(100);

/// The longest the first wave waits for a victim that was exiting (`PF_EXITING`: its memory
/// is being freed) when [`VICTIM_WAIT`] ran out. Members woken while it frees its memory
/// exit beside it: in the VM fork storm on a slow host the victim's exit (118 MiB) took
/// 0.4–0.8 s, and the waves that began 100 ms into it put two CPUs to freeing memory at once,
/// where a 10 ms heartbeat stalled 5–7 ms eight times in two traced kills (none in the waves
/// after it). On a faster host the victim was mostly gone within 100 ms.
pub const VICTIM_EXIT_WAIT: Duration = Duration::from_secs(1);

/// How long a process sent SIGKILL is left to exit on its own before it is handed to the reaper
/// thread ([`super::reaper`]), whose `process_mrelease` reaps its memory; the loop never waits
/// for that call (it waits for the process's mmap lock). At once, the reaping ran at the
/// guard's priority (nice −20) beside the victim's own exit: in the busybox VM (one CPU, a fast
/// hog killed with SIGKILL) it took 65–66 ms of the guard's CPU, held a 10 ms heartbeat up
/// 30–50 ms, made the victim's end come later (54–69 ms after the signal, against 24–26 ms
/// without it) and brought the memory back no sooner (90–94 ms against 86–91 ms). A victim
/// that has not exited by then is slow or stuck (the kernel's own OOM reaper waits 2 s for it).
pub const RELEASE_AFTER: Duration = Duration::from_millis(200);

/// How soon a release that found the reaper's queue full is handed over again.
const RELEASE_RETRY: Duration = Duration::from_millis(10);

/// At most this many pidfds are polled by one [`Kill::wait`].
const POLL_MAX: usize = 64;

/// The members of a stopped tree still held after its signal went out, woken wave by wave.
/// Members are numbered 0 (the victim) and `i + 1` (`others[i]`), and woken in that order.
#[derive(Debug)]
struct Waves {
    /// The first member still held stopped: `next..=last` are held.
    next: usize,
    last: usize,
    /// The members of the wave woken last that have not been seen exiting.
    current: Vec<usize>,
    /// When the current wave was woken, and when its last member was seen exiting.
    woken_at: Instant,
    exited_at: Option<Instant>,
    /// The next wave's size.
    size: usize,
    /// The current wave is the victim alone.
    first: bool,
    /// The victim was exiting when [`VICTIM_WAIT`] ran out: the first wave waits for its exit
    /// (at most [`VICTIM_EXIT_WAIT`]).
    victim_exiting: bool,
    /// A held member gets SIGKILL when its wave comes (else SIGCONT: its signal was sent).
    kill: bool,
}

impl Waves {
    /// When the next wave is due: after the current one has exited and as long again has
    /// passed (the CPU is shared half and half with everyone else), or after its wait.
    fn due(&self) -> Option<Instant> {
        if !self.holds() {
            return None;
        }
        let limit = self.woken_at
            + match (self.first, self.victim_exiting) {
                (true, false) => VICTIM_WAIT,
                (true, true) => VICTIM_EXIT_WAIT,
                (false, _) => WAVE_WAIT,
            };
        Some(match self.exited_at {
            Some(t) if self.first => t,
            Some(t) => limit.min(t + (t - self.woken_at).max(Duration::from_micros(500))),
            None => limit,
        })
    }

    /// The members of the next wave, taken off the held ones. A wave before it that has not
    /// exited within its wait makes it half as large (members handling SIGTERM, or exits
    /// slower than the budget allows).
    fn take_wave(&mut self) -> std::ops::RangeInclusive<usize> {
        if !self.first && !self.current.is_empty() {
            self.size = (self.size / 2).max(1);
        }
        let (first, end) = (self.next, self.last.min(self.next + self.size - 1));
        self.next = end + 1;
        first..=end
    }

    /// Some members are still held stopped.
    fn holds(&self) -> bool {
        self.next <= self.last
    }

    /// Member `m` was seen exiting.
    fn exited(&mut self, m: usize) {
        let before = self.current.len();
        self.current.retain(|&c| c != m);
        if before > 0 && self.current.is_empty() {
            let now = Instant::now();
            self.exited_at = Some(now);
            let took = now - self.woken_at;
            if !self.first {
                if took < WAVE_BUDGET / 2 {
                    self.size = (self.size * 2).min(WAVE_MAX);
                } else if took > WAVE_BUDGET * 2 {
                    self.size = (self.size / 2).max(1);
                }
            }
        }
    }
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
/// process is gone. A main thread that is a zombie while other threads run on (`pthread_exit`
/// from `main`) is not the process: those threads can fork, and the main thread's children
/// were handed to one of them when it exited, so each thread is looked at.
fn settled_now(reader: &mut ProcReader, pid: i32, tids: &mut Vec<i32>) -> Result<bool, ProcError> {
    let st = reader.stat(pid)?;
    tids.clear();
    if st.num_threads <= 1 {
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

/// The most SIGSTOPs a walk sends before it sleeps 1 ms. A stop wakes its member (a sleeping
/// one too) to run to the stop, and woken members queue ahead of every other task of their
/// priority (see the module docs on waves): in the VM fork storm the victim's 60 children
/// stopped at once held a 10 ms heartbeat up by 16–27 ms. A few at a time hold it up for the
/// stops of a few.
const STOP_BATCH: usize = 8;

/// How long a walk (of a tree or a cgroup) may take in all before it takes the unit as found
/// so far: the guard looks at nothing else meanwhile. Past [`TREE_SETTLE`] the walk no longer
/// pauses between stops, so only a unit of many thousands reaches this.
pub const WALK_CAP: Duration = Duration::from_secs(1);

/// The times a walk keeps to: [`TREE_SETTLE`] and [`WALK_CAP`] (tests shorten them).
#[derive(Debug, Clone, Copy)]
struct WalkLimits {
    settle: Duration,
    cap: Duration,
}

impl WalkLimits {
    const DEFAULT: WalkLimits = WalkLimits {
        settle: TREE_SETTLE,
        cap: WALK_CAP,
    };
}

/// What a walk did beyond pinning the members.
#[derive(Debug, Clone, Copy)]
struct Walked {
    /// Pauses taken to let members run to their stop.
    slept: u32,
    /// The walk ran out of time ([`WALK_CAP`]) before it had the whole unit.
    cut: bool,
}

impl Walked {
    /// For the kill's unit note.
    fn cut_note(&self) -> String {
        if self.cut {
            format!(
                "; the walk ended after {} ms, before it reached every member",
                WALK_CAP.as_millis()
            )
        } else {
            String::new()
        }
    }
}

/// Paces a stopping walk: after [`WALK_SLICE`] of work or [`STOP_BATCH`] stops, 1 ms of sleep,
/// until the walk's settle time is out; from then on it stops the rest at once (the deadline is
/// checked per member, not per round: a round over a large tree takes longer than the settle
/// time). A pause the thread took on its own meanwhile (the daemon's [`crate::sense::breath`], 1 ms
/// after 2 ms of reading) counts as that sleep: without it, both slept, one right after the
/// other (the kill came 10 ms later in the VM fork storm).
struct Pace {
    since: Instant,
    stops: usize,
    breaths: u64,
    /// Past this the walk no longer waits for members to stop, nor pauses.
    settle: Instant,
    /// Past this the walk ends with the unit as found so far.
    cap: Instant,
    /// Sleeps taken (tests).
    slept: u32,
}

impl Pace {
    fn new(limits: WalkLimits) -> Pace {
        let now = Instant::now();
        Pace {
            since: now,
            stops: 0,
            breaths: crate::sense::breath::pauses(),
            settle: now + limits.settle,
            cap: now + limits.cap,
            slept: 0,
        }
    }

    /// The slice and the batch start over.
    fn restart(&mut self) {
        self.since = Instant::now();
        self.stops = 0;
        self.breaths = crate::sense::breath::pauses();
    }

    /// Whether the settle time is out.
    fn late(&self) -> bool {
        Instant::now() >= self.settle
    }

    /// Whether the walk has taken all the time it may.
    fn out(&self) -> bool {
        Instant::now() >= self.cap
    }

    /// Sleeps 1 ms if the slice or the batch of stops is used up (never once late).
    fn check(&mut self) {
        if crate::sense::breath::pauses() != self.breaths {
            self.restart();
        } else if (self.stops >= STOP_BATCH || self.since.elapsed() > WALK_SLICE) && !self.late() {
            self.sleep();
        }
    }

    /// One SIGSTOP sent.
    fn stopped(&mut self) {
        self.stops += 1;
        self.check();
    }

    /// Sleeps 1 ms: the members run to their stop; the slice and the batch start over.
    fn sleep(&mut self) {
        std::thread::sleep(Duration::from_millis(1));
        crate::sense::breath::rested();
        self.slept += 1;
        self.restart();
    }
}

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

/// The victim's memory cgroup for `--kill-unit cgroup`, as the caller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VictimGroup {
    /// Not known yet: [`Kill::plan_in`] reads `/proc/PID/cgroup` itself (the start-up warm-up,
    /// `drill`, tests, and a daemon whose side readers did not start).
    ReadNow,
    /// Read ahead: the memory cgroup path, as [`crate::sense::cgroup::memory_path_of`] gives
    /// it (`None`: the process has none, as in the root).
    Known(Option<String>),
    /// Asked for and not read in time, or its cgroup file could not be read: the victim
    /// alone is killed.
    Unread,
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
    /// What the unit resolved to, for the record (`process`, `tree (3 processes)`, …).
    pub unit_note: String,
    /// The pinned processes were sent SIGSTOP (a tree) and not yet killed or continued: they
    /// get SIGCONT if this kill is dropped unsent.
    stopped: bool,
    /// After the signal: the members still held stopped (see the module docs).
    waves: Option<Waves>,
    /// Members seen exited (0: the victim, `i + 1`: `others[i]`), filled by [`Kill::wait`].
    gone: Vec<bool>,
    /// When each member was sent SIGKILL (same numbering).
    kill_sent: Vec<Option<Instant>>,
    /// [`Kill::release`] was asked for; members already handed to the reaper (or given up on).
    release_wanted: bool,
    mreleased: Vec<bool>,
    /// The thread that runs `process_mrelease` ([`Kill::reap_with`]); none: no release.
    reaper: Option<Reaper>,
    /// What became of this kill's releases (made at the first one handed over).
    tally: Option<Arc<Tally>>,
    /// The victim's `/proc/PID/stat`, kept open for a stopped unit (see [`VICTIM_EXIT_WAIT`]),
    /// and the buffer it is read into.
    victim_stat: Option<(OwnedFd, Vec<u8>)>,
    /// The walk of a tree or group, for [`Kill::log_walk`].
    walked: Option<(&'static str, Walked)>,
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
        Self::plan_in(reader, scope, unit, victim, decided, VictimGroup::ReadNow)
    }

    /// [`Kill::plan`] with the victim's memory cgroup as the caller knows it (`group`, for
    /// `--kill-unit cgroup`): read by the guard's side readers (`sense::details`), the loop
    /// reads no `/proc/PID/cgroup` at the bottom of memory (kernels before "cgroup: Make
    /// operations on the cgroup root_list RCU safe" take the global `cgroup_mutex` in that
    /// read); not read in time, the victim alone is killed.
    pub fn plan_in(
        reader: &mut ProcReader,
        scope: &Scope,
        unit: KillUnit,
        victim: &Candidate,
        decided: Instant,
        group: VictimGroup,
    ) -> Result<Kill, TargetError> {
        let main = Target::open(reader, victim.pid, victim.starttime)?;
        let mut kill = Kill {
            victim: main,
            others: Vec::new(),
            cgroup_kill: None,
            signals: Vec::new(),
            decided,
            unit_note: "process".into(),
            stopped: false,
            waves: None,
            gone: Vec::new(),
            kill_sent: Vec::new(),
            release_wanted: false,
            mreleased: Vec::new(),
            reaper: None,
            tally: None,
            victim_stat: None,
            walked: None,
        };
        let me = std::process::id() as i32;
        match unit {
            KillUnit::Process => kill.take_mm_sharers(reader),
            KillUnit::Tree => {
                // Stopped and walked now, not taken from the ranker's table: a storm forks
                // faster than scans. Never stop ourselves (the start-up warm-up plans a kill of
                // the daemon itself: it walks with signal 0).
                let walked = kill.walk_tree(reader, kill.victim.pid != me, WalkLimits::DEFAULT);
                kill.walked = Some(("tree", walked));
                kill.unit_note = format!(
                    "tree ({} processes{})",
                    kill.others.len() + 1,
                    walked.cut_note()
                );
            }
            KillUnit::Cgroup => {
                let prefer_v2 = scope.mounts.v2_memory.is_some();
                let leaf = match group {
                    VictimGroup::Known(known) => known.unwrap_or_else(|| "/".into()),
                    VictimGroup::ReadNow => {
                        let text = reader.cgroup_text(victim.pid).unwrap_or_default();
                        memory_path_of(&text, prefer_v2).unwrap_or("/").to_string()
                    }
                    VictimGroup::Unread => {
                        kill.unit_note = "process (its cgroup was not read in time, or could \
                                          not be read; not read on the guard's loop at the \
                                          bottom of memory)"
                            .into();
                        return Ok(kill);
                    }
                };
                let (mount, version) = match (prefer_v2, &scope.mounts) {
                    (true, m) => (m.v2_memory.clone(), CgVersion::V2),
                    (false, m) => (m.v1_memory.clone(), CgVersion::V1),
                };
                match mount {
                    Some(mount) if leaf != "/" => {
                        let dir = mount.join(leaf.trim_start_matches('/'));
                        let procs = scope.root.path(dir.join("cgroup.procs"));
                        // `cgroup.kill` signals every process of the group, the guard itself
                        // and PID 1 with them, which no kill unit takes: a group holding
                        // either has its other members signalled one by one, as on v1.
                        let spared = match version {
                            CgVersion::V2 => group_holds(&procs, &[me, 1]),
                            CgVersion::V1 => None,
                        };
                        if version == CgVersion::V2
                            && spared.is_none()
                            && scope.root.path(dir.join("cgroup.kill")).exists()
                        {
                            kill.cgroup_kill = Some(scope.root.path(dir.join("cgroup.kill")));
                        }
                        // Without cgroup.kill (v1) the group is stopped first, as a tree is:
                        // a member forking between the listing and the signal would leave a
                        // live child in the group.
                        let stop = kill.cgroup_kill.is_none() && kill.victim.pid != me;
                        let walked = kill.walk_cgroup(reader, &procs, stop, WalkLimits::DEFAULT);
                        kill.walked = Some(("cgroup", walked));
                        kill.unit_note = format!(
                            "cgroup {leaf} ({} processes{}{})",
                            kill.others.len() + 1,
                            walked.cut_note(),
                            match spared {
                                Some(p) if p == me && kill.victim.pid != me => {
                                    "; oomguard itself is in the group and is spared"
                                }
                                Some(1) => "; PID 1 is in the group and is spared",
                                _ => "",
                            }
                        );
                    }
                    _ => {
                        kill.unit_note = "process (the victim is in the root cgroup; not killing a whole root group)".into();
                    }
                }
            }
        }
        if kill.stopped {
            kill.victim_stat = reader
                .open_stat(kill.victim.pid)
                .ok()
                .map(|fd| (fd, Vec::with_capacity(1024)));
        }
        Ok(kill)
    }

    /// What the kill signals, for the record: `process`, `tree` or `cgroup` (the first word
    /// of [`Kill::unit_note`]: a `--kill-unit cgroup` whose group was not read is a
    /// `process`), and the note when it says more than that word.
    pub fn unit_record(&self) -> (&'static str, Option<String>) {
        let unit = match self.unit_note.split(' ').next() {
            Some("tree") => "tree",
            Some("cgroup") => "cgroup",
            _ => "process",
        };
        (
            unit,
            (self.unit_note != unit).then(|| self.unit_note.clone()),
        )
    }

    /// Says at debug how the walk of the unit went (after the signal: the line allocates).
    pub fn log_walk(&self) {
        if let Some((unit, w)) = self.walked {
            log::debug!(
                "{unit} walk: {} processes pinned, {} pauses for them to stop{}",
                self.others.len() + 1,
                w.slept,
                if w.cut {
                    ", ended by its time limit"
                } else {
                    ""
                }
            );
        }
    }

    /// Takes the victim's children that share its memory (vfork children that have not
    /// exec'd yet): the kernel kills every process that shares a victim's memory with it,
    /// since none of it is freed while one of them holds it. Read from the victim's main
    /// thread (a vfork from another thread is short: its child execs at once).
    fn take_mm_sharers(&mut self, reader: &mut ProcReader) {
        let (pid, me) = (self.victim.pid, std::process::id() as i32);
        let mut kids = Vec::new();
        if reader.children(pid, pid, &mut kids).is_err() {
            return;
        }
        for c in kids {
            if c == me || c == 1 || !reader.shares_mm(c, pid) {
                continue;
            }
            if let Ok(t) = Target::open_child(reader, c, pid) {
                self.others.push(t);
            }
        }
        if !self.others.is_empty() {
            self.unit_note = format!(
                "process (and {} vfork child{} sharing its memory)",
                self.others.len(),
                if self.others.len() == 1 { "" } else { "ren" }
            );
        }
    }

    /// Stops the victim and, top-down, every descendant (see the module docs); `stop: false`
    /// finds them with signal 0 instead. Members are pinned into `others`. Past the settle
    /// time the rest is stopped without pauses, and past the cap the walk ends: the members
    /// found by then are the tree.
    fn walk_tree(&mut self, reader: &mut ProcReader, stop: bool, limits: WalkLimits) -> Walked {
        let me = std::process::id() as i32;
        let files = has_children_files(reader);
        let mut pace = Pace::new(limits);
        let mut cut = false;
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
        'walk: for round in 0u32.. {
            let late = pace.late();
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
                if pace.out() {
                    cut = true;
                    break 'walk;
                }
                let pid = members[i].pid;
                if stop {
                    // Pauses only before the settle time, checked here, per member (a round
                    // over a large tree outlasts it). A member is taken as it is only in a
                    // round that began late: one stopped a moment ago gets its children read
                    // once more, after a fork it was in has completed.
                    pace.check();
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
                                pace.stopped();
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
            if stop && !pace.late() {
                // Let the members run to their stop; the guard does not hold the CPU meanwhile.
                pace.sleep();
            }
        }
        Walked {
            slept: pace.slept,
            cut,
        }
    }

    /// Pins every process listed in `procs` (a cgroup's `cgroup.procs`). `stop`: each is sent
    /// SIGSTOP as it is found, and the list is read again until a reading made after every
    /// member stopped names nobody new (at most the settle time, then the group as it is;
    /// past the cap, the members found so far). Every member is kept only if a reading made
    /// after it was pinned still names it: a listed PID can be handed to a process outside
    /// the group before it is pinned (its start time is read at the pin, not at the listing),
    /// and that process is let go (continued, if it was stopped) instead of killed.
    fn walk_cgroup(
        &mut self,
        reader: &mut ProcReader,
        procs: &std::path::Path,
        stop: bool,
        limits: WalkLimits,
    ) -> Walked {
        self.walk_listing(
            reader,
            &mut |buf| crate::sense::read_into(procs, buf).is_ok(),
            stop,
            limits,
        )
    }

    /// [`Kill::walk_cgroup`] over the readings `list` makes of the group's list (into the
    /// buffer it is given; false when it cannot be read).
    fn walk_listing(
        &mut self,
        reader: &mut ProcReader,
        list: &mut dyn FnMut(&mut Vec<u8>) -> bool,
        stop: bool,
        limits: WalkLimits,
    ) -> Walked {
        let me = std::process::id() as i32;
        let mut pace = Pace::new(limits);
        let mut cut = false;
        if stop && self.victim.signal(Signal::STOP).is_ok() {
            self.stopped = true;
        }
        let stop = self.stopped;
        let mut seen: HashSet<i32> = HashSet::from([self.victim.pid, me, 1]);
        let (mut buf, mut tids, mut listed) = (Vec::new(), Vec::new(), Vec::new());
        let mut pids: Vec<i32> = vec![self.victim.pid];
        // Members from this index on were pinned after the last reading of the list.
        let mut unconfirmed = self.others.len();
        let first = unconfirmed;
        'walk: loop {
            // Were all members stopped before this reading of the list?
            let mut all_settled = true;
            if stop && !pace.late() {
                for &p in &pids {
                    if matches!(settled_now(reader, p, &mut tids), Ok(false)) {
                        all_settled = false;
                        break;
                    }
                }
            }
            if !read_listing(list, &mut buf, &mut listed) {
                break;
            }
            self.keep_listed(first, unconfirmed, &listed, &mut pids, &mut seen);
            unconfirmed = self.others.len();
            let mut added = false;
            for pid in buf
                .split(|&b| b == b'\n')
                .filter_map(crate::sense::parse_u64)
                .map(|p| p as i32)
            {
                if !seen.insert(pid) {
                    continue;
                }
                if pace.out() {
                    cut = true;
                    break 'walk;
                }
                let Ok(st) = reader.stat(pid) else { continue };
                if let Ok(t) = Target::open(reader, pid, st.starttime) {
                    if stop {
                        let _ = t.signal(Signal::STOP);
                        pace.stopped();
                    }
                    self.others.push(t);
                    pids.push(pid);
                    added = true;
                }
            }
            if !stop || (all_settled && !added) || pace.late() {
                break;
            }
            pace.sleep();
        }
        if unconfirmed < self.others.len() && read_listing(list, &mut buf, &mut listed) {
            self.keep_listed(first, unconfirmed, &listed, &mut pids, &mut seen);
        }
        Walked {
            slept: pace.slept,
            cut,
        }
    }

    /// Lets go the members pinned from `from` on (of the walk's, which began at `first`) that
    /// `listed` (sorted) does not name: continued when stopped, dropped from the kill (and
    /// from `seen`, so that a process given the PID in the group later is taken).
    fn keep_listed(
        &mut self,
        first: usize,
        from: usize,
        listed: &[i32],
        pids: &mut Vec<i32>,
        seen: &mut HashSet<i32>,
    ) {
        let mut i = from;
        while i < self.others.len() {
            let pid = self.others[i].pid;
            if listed.binary_search(&pid).is_ok() {
                i += 1;
                continue;
            }
            let t = self.others.remove(i);
            if self.stopped && !t.was_stopped {
                let _ = t.signal(Signal::CONT);
            }
            // `pids` holds the victim first, then the walk's members in `others`' order.
            pids.remove(1 + i - first);
            seen.remove(&pid);
        }
    }

    /// Sends `sig` to every pinned process (SIGKILL to a v2 group goes through `cgroup.kill`).
    /// A stopped tree is woken in waves (see the module docs): SIGTERM goes to every member
    /// now and the victim is continued, the others later by [`Kill::wait`]; SIGKILL goes to the
    /// victim now and to the others as their waves come. SIGKILL while waves are under way
    /// goes at once to the members already woken; the held ones get it in their waves. When
    /// the first signal cannot reach the victim (`kill_failed`), no other member is signalled
    /// (a stopped tree is let go when the kill is dropped).
    pub fn signal_all(&mut self, sig: Signal) {
        let kill = sig == Signal::KILL;
        if self.stopped {
            let us = self.decided.elapsed().as_micros() as u64;
            let r = self.victim.signal(sig);
            let failed = r.is_err();
            self.record_member(0, Some(sig), us, self.victim.pid, r);
            if failed {
                // Not a kill (`kill_failed`): the others are let go unsignalled, still
                // stopped until the kill is dropped (or signalled again).
                return;
            }
            self.stopped = false;
            if !kill {
                for i in 0..self.others.len() {
                    let r = self.others[i].signal(sig);
                    self.record_member(i + 1, Some(sig), us, self.others[i].pid, r);
                }
                let _ = self.victim.signal(Signal::CONT);
            }
            self.waves = Some(Waves {
                next: 1,
                last: self.others.len(),
                current: vec![0],
                woken_at: Instant::now(),
                exited_at: None,
                size: WAVE_FIRST,
                first: true,
                victim_exiting: false,
                kill,
            });
            return;
        }
        if kill && let Some(w) = self.waves.as_mut().filter(|w| w.holds()) {
            w.kill = true;
            let next = w.next;
            let us = self.decided.elapsed().as_micros() as u64;
            for m in 0..next {
                let t = self.member(m);
                let (pid, r) = (t.pid, t.signal(sig));
                self.record_member(m, Some(sig), us, pid, r);
            }
            return;
        }
        self.send(Some(sig));
    }

    /// Member `m`: 0 the victim, `i + 1` `others[i]`.
    fn member(&self, m: usize) -> &Target {
        if m == 0 {
            &self.victim
        } else {
            &self.others[m - 1]
        }
    }

    /// Wakes the next wave when it is due (see [`Waves::due`]).
    fn pace(&mut self) {
        let Some(w) = self.waves.as_mut() else {
            return;
        };
        if w.due().is_none_or(|t| Instant::now() < t) {
            return;
        }
        if w.first && !w.victim_exiting && w.exited_at.is_none() {
            // VICTIM_WAIT is over and the victim has not exited: if it is exiting, wait for
            // the end of its exit (at most VICTIM_EXIT_WAIT).
            let exiting = self.victim_stat.as_mut().is_some_and(|(fd, buf)| {
                stat_kept(fd, self.victim.pid, buf)
                    .is_ok_and(|st| st.is_exiting() && !st.is_zombie())
            });
            if exiting {
                w.victim_exiting = true;
                if w.due().is_some_and(|t| Instant::now() < t) {
                    return;
                }
            }
        }
        let wave: Vec<usize> = w.take_wave().collect();
        let kill = w.kill;
        let us = self.decided.elapsed().as_micros() as u64;
        for &m in &wave {
            let t = self.member(m);
            if kill {
                let (pid, r) = (t.pid, t.signal(Signal::KILL));
                self.record_member(m, Some(Signal::KILL), us, pid, r);
            } else {
                let _ = t.signal(Signal::CONT);
            }
        }
        if let Some(w) = self.waves.as_mut() {
            w.current = wave;
            w.woken_at = Instant::now();
            w.exited_at = None;
            w.first = false;
        }
    }

    /// Waits up to `timeout` for the pinned processes to exit, waking the held members of a
    /// stopped tree wave by wave meanwhile. True once the victim and every other pinned
    /// process has exited.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let n = self.others.len() + 1;
        self.gone.resize(n, false);
        let end = Instant::now() + timeout;
        loop {
            self.pace();
            let release_next = self.release_due();
            // Held members are stopped: only the woken ones can exit.
            let woken = self.waves.as_ref().map_or(n, |w| w.next);
            let watch: Vec<usize> = (0..woken)
                .filter(|&m| !self.gone[m])
                .take(POLL_MAX)
                .collect();
            if watch.is_empty() && woken == n {
                return true;
            }
            let now = Instant::now();
            let mut until = end;
            if let Some(due) = self.waves.as_ref().and_then(Waves::due) {
                until = until.min(due);
            }
            if let Some(due) = release_next {
                until = until.min(due);
            }
            let wait = until.saturating_duration_since(now);
            if watch.is_empty() {
                if now >= end {
                    return false;
                }
                std::thread::sleep(wait);
                crate::sense::breath::rested();
                continue;
            }
            // Polled once even when the time is up (a zero timeout: [`Kill::all_exited`]).
            let mut fds: Vec<PollFd> = watch
                .iter()
                .map(|&m| PollFd::from_borrowed_fd(self.member(m).as_fd(), PollFlags::IN))
                .collect();
            let ts = rustix::event::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: wait.subsec_nanos() as i64,
            };
            if rustix::event::poll(&mut fds, Some(&ts)).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            crate::sense::breath::rested();
            let exited: Vec<usize> = watch
                .iter()
                .zip(&fds)
                .filter(|(_, f)| !f.revents().is_empty())
                .map(|(&m, _)| m)
                .collect();
            drop(fds);
            for m in exited {
                self.gone[m] = true;
                if let Some(w) = self.waves.as_mut() {
                    w.exited(m);
                }
            }
            if Instant::now() >= end {
                self.pace();
                let woken = self.waves.as_ref().map_or(n, |w| w.next);
                return woken == n && self.gone.iter().all(|&g| g);
            }
        }
    }

    /// Records a signal sent to member `m` (0: the victim, `i + 1`: `others[i]`), noting when
    /// a SIGKILL went out (for [`Kill::release`]).
    fn record_member(
        &mut self,
        m: usize,
        sig: Option<Signal>,
        us: u64,
        pid: i32,
        r: std::io::Result<()>,
    ) {
        if sig == Some(Signal::KILL) && r.is_ok() {
            if self.kill_sent.len() <= m {
                self.kill_sent.resize(m + 1, None);
            }
            self.kill_sent[m] = Some(Instant::now());
        }
        self.record(sig, us, pid, r);
    }

    /// Records one signal sent `us` microseconds after the decision.
    fn record(&mut self, sig: Option<Signal>, us: u64, pid: i32, r: std::io::Result<()>) {
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
    }

    /// SIGCONT to every pinned process but those that were stopped before the walk stopped
    /// them ([`Target::was_stopped`]).
    fn resume(&self) {
        for t in std::iter::once(&self.victim).chain(&self.others) {
            if !t.was_stopped {
                let _ = t.signal(Signal::CONT);
            }
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
        // The kill's first signal failing to reach the victim is not a kill (`kill_failed`):
        // nothing else of its unit is signalled. (A later one, SIGKILL after SIGTERM, goes to
        // the others whether or not the victim has exited.)
        let first = self.signals.is_empty();
        let r = fire(&self.victim);
        let failed = r.is_err();
        self.record_member(0, sig, us, self.victim.pid, r);
        if failed && first && sig.is_some() {
            return;
        }
        if sig == Some(Signal::KILL)
            && let Some(ck) = &self.cgroup_kill
            && std::fs::write(ck, "1").is_ok()
        {
            for i in 0..self.others.len() {
                self.record_member(i + 1, sig, us, self.others[i].pid, Ok(()));
            }
            return;
        }
        for i in 0..self.others.len() {
            let r = fire(&self.others[i]);
            self.record_member(i + 1, sig, us, self.others[i].pid, r);
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

    /// The reaper thread that [`Kill::release`] hands processes to. Without one (the thread
    /// could not be started) nothing is released: a killed process's memory comes back with
    /// its exit, as on a kernel without `process_mrelease`.
    pub fn reap_with(&mut self, reaper: Option<&Reaper>) {
        self.reaper = reaper.cloned();
    }

    /// Asks for `process_mrelease` (after SIGKILL only) of every pinned process that has not
    /// exited [`RELEASE_AFTER`] after its SIGKILL: handed to the reaper thread by
    /// [`Kill::wait`] (or now, for those already that late), never waited for. A kill before
    /// any SIGKILL (the start-up warm-up's probe) hands the victim over at once: the kernel
    /// refuses a live process, and the hand-over's and the thread's code are then resident.
    pub fn release(&mut self) {
        if self.reaper.is_none() {
            return;
        }
        self.release_wanted = true;
        if self.kill_sent.iter().all(Option::is_none) {
            let _ = self.hand_release(0);
            return;
        }
        self.release_due();
    }

    /// A `process_mrelease` of this kill is known to have succeeded (the reaper thread's call
    /// returned): memory was released.
    pub fn released(&self) -> bool {
        self.tally.as_ref().is_some_and(|t| t.released())
    }

    /// A release was handed to the reaper thread and its call has not returned yet (it waits
    /// for the process's mmap lock, or behind another release that does).
    pub fn release_pending(&self) -> bool {
        self.tally.as_ref().is_some_and(|t| t.pending() > 0)
    }

    /// Hands member `m` to the reaper thread (a duplicate of its pidfd). False: the queue is
    /// full, to be tried again; true: handed over, or given up on (no thread, the pidfd could
    /// not be duplicated).
    fn hand_release(&mut self, m: usize) -> bool {
        let Some(reaper) = &self.reaper else {
            return true;
        };
        let t = if m == 0 {
            &self.victim
        } else {
            &self.others[m - 1]
        };
        let Ok(fd) = t.dup_fd() else {
            return true;
        };
        let tally = self.tally.get_or_insert_with(Default::default);
        !matches!(reaper.hand(fd, t.pid, tally), Err(Refused::Full))
    }

    /// Hands to the reaper thread the members whose SIGKILL is [`RELEASE_AFTER`] old and who
    /// have not been seen exiting (once each). The next time one falls due, if any.
    fn release_due(&mut self) -> Option<Instant> {
        if !self.release_wanted {
            return None;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for m in 0..self.kill_sent.len() {
            let Some(at) = self.kill_sent[m] else {
                continue;
            };
            if self.gone.get(m).copied().unwrap_or(false) || self.mreleased.get(m) == Some(&true) {
                continue;
            }
            let due = at + RELEASE_AFTER;
            if due <= now {
                // Not exited yet: its memory is reaped now instead of at its exit (on the
                // reaper thread: the call waits for the process's mmap lock).
                if !self.member(m).exited() && !self.hand_release(m) {
                    let again = now + RELEASE_RETRY;
                    next = Some(next.map_or(again, |n| n.min(again)));
                    continue;
                }
                if self.mreleased.len() <= m {
                    self.mreleased.resize(m + 1, false);
                }
                self.mreleased[m] = true;
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
    }

    /// True once the victim and every other pinned process has exited. Does not block; wakes
    /// the next wave of a stopped tree when it is due (as [`Kill::wait`] does), so that a
    /// caller polling this alone also sees the whole tree end.
    pub fn all_exited(&mut self) -> bool {
        self.wait(Duration::ZERO)
    }
}

impl Drop for Kill {
    /// A tree stopped for a kill that was then not sent is let go (members stopped before the
    /// walk stay stopped); members still held after the signal are woken (their SIGTERM is
    /// pending) or sent SIGKILL, all at once.
    fn drop(&mut self) {
        if self.stopped {
            self.resume();
        }
        if let Some(w) = self.waves.take() {
            for m in w.next..=w.last {
                let _ = self
                    .member(m)
                    .signal(if w.kill { Signal::KILL } else { Signal::CONT });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::Root;
    use crate::values::ScopeSpec;
    use std::process::Command;

    fn waves(last: usize) -> Waves {
        Waves {
            next: 1,
            last,
            current: vec![0],
            woken_at: Instant::now(),
            exited_at: None,
            size: WAVE_FIRST,
            first: true,
            victim_exiting: false,
            kill: false,
        }
    }

    /// The first wave is due [`VICTIM_WAIT`] after the victim's signal, or
    /// [`VICTIM_EXIT_WAIT`] after it for a victim seen exiting, and at once when the victim
    /// has exited, either way.
    #[test]
    fn the_first_wave_waits_longer_for_a_victim_that_is_exiting() {
        let mut w = waves(5);
        let t = w.woken_at;
        assert_eq!(w.due(), Some(t + VICTIM_WAIT));
        w.victim_exiting = true;
        assert_eq!(w.due(), Some(t + VICTIM_EXIT_WAIT));
        w.exited(0);
        let at = w.exited_at.unwrap();
        assert_eq!(w.due(), Some(at));
        assert!(at < t + VICTIM_EXIT_WAIT);
    }

    /// Wakes the next wave of `w` as `Kill::pace` does, and returns its members.
    fn wake(w: &mut Waves, at: Instant) -> Vec<usize> {
        let wave: Vec<usize> = w.take_wave().collect();
        w.current = wave.clone();
        w.woken_at = at;
        w.exited_at = None;
        w.first = false;
        wave
    }

    /// The first wave after the victim is one member; a wave that exits within half the budget
    /// doubles the next, one that overruns it halves the next, and so does one that has not
    /// exited when the next is due (not only one that exited late). The last wave takes what
    /// is left.
    #[test]
    fn waves_start_at_one_and_grow_or_shrink_with_the_exits() {
        let t = Instant::now();
        let mut w = waves(20);
        w.exited(0);
        assert_eq!(wake(&mut w, t), vec![1]);
        // Exited at once: doubles.
        w.woken_at = Instant::now();
        w.exited(1);
        assert_eq!(wake(&mut w, t), vec![2, 3]);
        w.woken_at = Instant::now();
        w.exited(2);
        w.exited(3);
        assert_eq!(wake(&mut w, t), vec![4, 5, 6, 7]);
        // Overran the budget: halves.
        w.woken_at = Instant::now() - WAVE_BUDGET * 3;
        for m in 4..=7 {
            w.exited(m);
        }
        assert_eq!(wake(&mut w, t), vec![8, 9]);
        // Member 9 never exits: the next wave, woken at its due time, is half as large.
        w.exited(8);
        assert_eq!(w.current, vec![9]);
        assert_eq!(wake(&mut w, t), vec![10]);
        // Never below one.
        assert_eq!(wake(&mut w, t), vec![11]);
        w.woken_at = Instant::now();
        w.exited(11);
        w.size = WAVE_MAX;
        assert_eq!(wake(&mut w, t), (12..=20).collect::<Vec<_>>());
        assert!(!w.holds());
    }

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

    /// A parent with more children than one read of `/proc/PID/task/TID/children` returns (the
    /// file hands them out a page at a time: about 800 PIDs) loses none to a tree kill.
    #[test]
    fn a_parent_with_1200_children_is_killed_whole() {
        /// Kills the test's sleepers whatever happens (an assertion failing included).
        struct Sleepers(String);
        impl Drop for Sleepers {
            fn drop(&mut self) {
                let mut reader = ProcReader::open(&Root::default()).unwrap();
                kill_escaped(&mut reader, &self.0);
            }
        }
        const N: usize = 1200;
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let _cleanup = Sleepers(tag.clone());
        let script = format!("i=0; while [ $i -lt {N} ]; do sleep {tag} & i=$((i+1)); done; wait");
        let (mut sh, cand) = forking_shell(&mut reader, &script, &tag);
        let deadline = Instant::now() + Duration::from_secs(60);
        while sleepers(&mut reader, &tag).len() < N && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut kids = Vec::new();
        reader.children(cand.pid, cand.pid, &mut kids).unwrap();
        assert_eq!(kids.len(), N, "children listed");
        let mut kill =
            Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        kill.signal_all(Signal::KILL);
        let _ = sh.wait();
        let until = Instant::now() + Duration::from_secs(20);
        while !kill.all_exited() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(kill.others.len(), N, "{}", kill.unit_note);
        assert!(kill.all_exited(), "a member outlived SIGKILL");
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(escaped.is_empty(), "{} children escaped", escaped.len());
    }

    /// A tree of 30 `sleep TAG` children, all forked; the shell and its candidate.
    fn tree_of_30(reader: &mut ProcReader, tag: &str) -> (std::process::Child, Candidate) {
        let script = format!("i=0; while [ $i -lt 30 ]; do sleep {tag} & i=$((i+1)); done; wait");
        let (sh, cand) = forking_shell(reader, &script, tag);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sleepers(reader, tag).len() < 30 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        (sh, cand)
    }

    /// A walk is paced (1 ms pauses between batches of stops) only until its settle time is
    /// out, and that is checked per member, not per round (a round over a large tree outlasts
    /// the settle time): a walk late from the start stops the whole tree without one pause and
    /// still finds every member. A walk out of time ends with the members found so far.
    /// The record's `kill_unit` is one of the option's words, what was signalled: a cgroup kill
    /// whose group was not read goes alone, a `process`, with the reason in the note.
    #[test]
    fn the_records_kill_unit_is_what_is_signalled() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let me = std::process::id() as i32;
        let st = reader.stat(me).unwrap();
        let cand = Candidate::unscored(me, st.starttime, "me");
        let plan = |reader: &mut ProcReader, unit, group| {
            Kill::plan_in(reader, &scope, unit, &cand, Instant::now(), group).unwrap()
        };
        let k = plan(&mut reader, KillUnit::Process, VictimGroup::ReadNow);
        assert_eq!(k.unit_record(), ("process", None));
        let k = plan(&mut reader, KillUnit::Cgroup, VictimGroup::Unread);
        let (unit, note) = k.unit_record();
        assert_eq!(unit, "process");
        assert!(note.unwrap().contains("was not read in time"));
        let k = plan(&mut reader, KillUnit::Cgroup, VictimGroup::Known(None));
        let (unit, note) = k.unit_record();
        assert_eq!(unit, "process");
        assert!(note.unwrap().contains("root cgroup"));
    }

    /// `cgroup.kill` would take every process of the group: a v2 group that holds the guard
    /// itself (or PID 1) is killed member by member instead, the guard left out, and the note
    /// says so. The cgroup tree is a fixture (its `cgroup.kill` a plain file): nothing is
    /// written to it here, and the victim is a real process that is stopped, then continued.
    #[test]
    fn a_v2_group_holding_the_guard_is_not_killed_through_cgroup_kill() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        std::fs::create_dir_all(d.path().join("proc/self")).unwrap();
        std::fs::write(
            d.path().join("proc/self/mountinfo"),
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let cg = d.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(cg.join("app")).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(cg.join("app/cgroup.kill"), "").unwrap();
        let scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
        assert!(scope.mounts.v2_memory.is_some(), "{:?}", scope.mounts);
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let child = Reap(Command::new("sleep").arg("60").spawn().unwrap());
        let pid = child.0.id() as i32;
        let cand = Candidate::unscored(pid, reader.stat(pid).unwrap().starttime, "sleep");
        let me = std::process::id() as i32;
        let mut plan = |listed: &str| {
            std::fs::write(cg.join("app/cgroup.procs"), listed).unwrap();
            let group = VictimGroup::Known(Some("/app".into()));
            let k = Kill::plan_in(
                &mut reader,
                &scope,
                KillUnit::Cgroup,
                &cand,
                Instant::now(),
                group,
            )
            .unwrap();
            let r = (k.cgroup_kill.is_some(), k.others.len(), k.unit_note.clone());
            drop(k);
            r
        };
        let (through_kill, others, note) = plan(&format!("{pid}\n"));
        assert!(through_kill && others == 0, "{note}");
        assert_eq!(note, "cgroup /app (1 processes)");
        let (through_kill, others, note) = plan(&format!("{me}\n{pid}\n"));
        assert!(!through_kill && others == 0, "{note}");
        assert!(
            note.contains("oomguard itself is in the group and is spared"),
            "{note}"
        );
        let (through_kill, _, note) = plan(&format!("1\n{pid}\n"));
        assert!(!through_kill, "{note}");
        assert!(
            note.contains("PID 1 is in the group and is spared"),
            "{note}"
        );
        // Planned and dropped unsent: the victim was stopped for the walk and runs on.
        let until = Instant::now() + Duration::from_secs(2);
        let mut state = b'T';
        while state == b'T' && Instant::now() < until {
            state = reader.stat(pid).map_or(b'?', |st| st.state);
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(child);
        assert_ne!(state, b'T', "the victim was left stopped");
    }

    #[test]
    fn a_late_walk_stops_the_rest_at_once_and_one_out_of_time_ends() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let long = Duration::from_secs(60);
        let mut walk = |limits: WalkLimits, line: u32| {
            let tag = format!("{}.{line}", 3000 + std::process::id() % 1000);
            let (mut sh, cand) = tree_of_30(&mut reader, &tag);
            let mut kill = Kill::plan(
                &mut reader,
                &scope,
                KillUnit::Process,
                &cand,
                Instant::now(),
            )
            .unwrap();
            let walked = kill.walk_tree(&mut reader, true, limits);
            let found = kill.others.len();
            // A late walk does not wait for its members to reach their stop.
            let until = Instant::now() + Duration::from_secs(5);
            let mut stopped = false;
            while !stopped && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
                stopped = std::iter::once(&kill.victim)
                    .chain(&kill.others)
                    .all(|t| reader.stat(t.pid).is_ok_and(|s| s.state == b'T'));
            }
            kill.signal_all(Signal::KILL);
            let all_exited = wait_all(&mut kill);
            let _ = sh.wait();
            let escaped = kill_escaped(&mut reader, &tag).len();
            assert!(all_exited && stopped, "{walked:?}, {found} found");
            (walked, found, escaped)
        };
        // Paced while there is time.
        let (w, found, escaped) = walk(
            WalkLimits {
                settle: long,
                cap: long,
            },
            line!(),
        );
        assert_eq!((found, escaped, w.cut), (30, 0, false), "{w:?}");
        assert!(
            w.slept >= 3,
            "30 stops in batches of 8 took no pauses: {w:?}"
        );
        // Late from the start: every member, no pause.
        let late = WalkLimits {
            settle: Duration::ZERO,
            cap: long,
        };
        let (w, found, escaped) = walk(late, line!());
        assert_eq!((found, escaped, w.cut, w.slept), (30, 0, false, 0), "{w:?}");
        // Out of time at once: the victim alone; its children live on (and are killed above).
        let out = WalkLimits {
            settle: Duration::ZERO,
            cap: Duration::ZERO,
        };
        let (w, found, escaped) = walk(out, line!());
        assert_eq!((found, escaped, w.cut), (0, 30, true), "{w:?}");
    }

    /// The same for `--kill-unit cgroup` on a v1 memory cgroup (no `cgroup.kill`): a member
    /// forking as fast as it can leaves no live process in the group.
    #[test]
    fn a_forking_v1_cgroup_is_killed_whole() {
        let base = crate::act::scratch::own_v1_group("memory");
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

    /// A PID that `cgroup.procs` listed and that was handed to a process outside the group
    /// before the walk pinned it (its start time is read at the pin): the next reading of the
    /// list does not name it, and it is let go (continued, when the walk stopped it), never
    /// killed with the group. Both ways of walking: stopping the group (v1) and not.
    #[test]
    fn a_listed_pid_reused_outside_the_group_is_let_go() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        struct Reaped(std::process::Child);
        impl Drop for Reaped {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        for stop in [false, true] {
            let mut victim = Reaped(Command::new("sleep").arg("60").spawn().unwrap());
            let mut outsider = Reaped(Command::new("sleep").arg("60").spawn().unwrap());
            let (v, o) = (victim.0.id() as i32, outsider.0.id() as i32);
            let st = reader.stat(v).unwrap();
            let cand = Candidate::unscored(v, st.starttime, "sleep");
            let mut kill = Kill::plan(
                &mut reader,
                &scope,
                KillUnit::Process,
                &cand,
                Instant::now(),
            )
            .unwrap();
            // The first reading names the outsider's PID (as if a member had it then); every
            // later one names the victim alone.
            let mut readings = 0;
            let mut list = |buf: &mut Vec<u8>| {
                readings += 1;
                let text = if readings == 1 {
                    format!("{v}\n{o}\n")
                } else {
                    format!("{v}\n")
                };
                buf.extend_from_slice(text.as_bytes());
                true
            };
            kill.walk_listing(&mut reader, &mut list, stop, WalkLimits::DEFAULT);
            assert!(readings >= 2, "no reading after the pin");
            let pinned: Vec<i32> = kill.others.iter().map(|t| t.pid).collect();
            assert!(pinned.is_empty(), "stop {stop}: pinned {pinned:?}");
            let state = reader.stat(o).unwrap().state;
            kill.signal_all(Signal::KILL);
            assert!(wait_all(&mut kill), "the victim did not end");
            let alive = outsider.0.try_wait().unwrap().is_none();
            let _ = victim.0.wait();
            assert!(alive, "stop {stop}: the outsider was killed with the group");
            assert_ne!(state, b'T', "stop {stop}: the outsider was left stopped");
        }
    }

    /// A stopped tree whose kill is dropped unsent runs on, but for a member that was stopped
    /// before (a job its user stopped): it stays stopped.
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
        // The second child stopped before the walk, as by job control.
        let held = kids[1];
        rustix::process::kill_process(rustix::process::Pid::from_raw(held).unwrap(), Signal::STOP)
            .unwrap();
        while reader.stat(held).unwrap().state != b'T' {
            assert!(Instant::now() < deadline, "{held} did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
        let st = reader.stat(pid).unwrap();
        let cand = Candidate::unscored(pid, st.starttime, "sh");
        let kill = Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        assert_eq!(kill.unit_note, "tree (3 processes)");
        assert_eq!(
            kill.unit_record(),
            ("tree", Some("tree (3 processes)".to_string()))
        );
        for p in std::iter::once(pid).chain(kids.iter().copied()) {
            assert_eq!(reader.stat(p).unwrap().state, b'T', "{p} is not stopped");
        }
        drop(kill);
        std::thread::sleep(Duration::from_millis(100));
        for p in [pid, kids[0]] {
            assert_ne!(reader.stat(p).unwrap().state, b'T', "{p} is still stopped");
        }
        assert_eq!(
            reader.stat(held).unwrap().state,
            b'T',
            "a member stopped before the walk was continued"
        );
        for p in kids {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(p).unwrap(),
                Signal::KILL,
            );
        }
        let _ = sh.kill();
        let _ = sh.wait();
    }

    /// A victim whose own signal fails (ESRCH here: it ended while its tree was stopped, as
    /// when the kernel's OOM killer takes it; EPERM alike) makes a `kill_failed` record, "not
    /// a kill": the rest of its stopped tree is let go, neither signalled then nor sent SIGKILL
    /// (or woken with SIGTERM pending) unrecorded when the kill is dropped.
    #[test]
    fn a_tree_whose_victims_signal_fails_is_let_go_unsignalled() {
        struct Sleepers(String);
        impl Drop for Sleepers {
            fn drop(&mut self) {
                let mut reader = ProcReader::open(&Root::default()).unwrap();
                kill_escaped(&mut reader, &self.0);
            }
        }
        for sig in [Signal::KILL, Signal::TERM] {
            let mut reader = ProcReader::open(&Root::default()).unwrap();
            let tag = format!(
                "{}.{}{}",
                3000 + std::process::id() % 1000,
                line!(),
                sig.as_raw()
            );
            let _cleanup = Sleepers(tag.clone());
            let (mut sh, mut kill) = stopped_tree(&mut reader, &tag);
            // The victim ends (reaped) before the signal.
            let _ = sh.kill();
            let _ = sh.wait();
            kill.signal_all(sig);
            let failed = kill.victim_failed().expect("the victim's signal failed");
            assert_eq!(failed.errno, Some("ESRCH"));
            assert_eq!(kill.signals.len(), 1, "{:?}", kill.signals);
            drop(kill);
            std::thread::sleep(Duration::from_millis(100));
            let left = sleepers(&mut reader, &tag);
            assert_eq!(left.len(), 30, "{sig:?}: members killed by a failed kill");
            for p in left {
                assert_ne!(reader.stat(p).unwrap().state, b'T', "{p} is still stopped");
            }
        }
    }

    /// The signals pending for `pid` (SigPnd | ShdPnd of /proc/PID/status), as a bit mask.
    fn pending(pid: i32) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let v = l
                    .strip_prefix("SigPnd:")
                    .or_else(|| l.strip_prefix("ShdPnd:"))?;
                u64::from_str_radix(v.trim(), 16).ok()
            })
            .fold(0, |a, b| a | b)
    }

    fn bit(sig: Signal) -> u64 {
        1 << (sig.as_raw() - 1)
    }

    /// A tree of 30 `sleep TAG` children, stopped and pinned; the shell, the kill.
    fn stopped_tree(reader: &mut ProcReader, tag: &str) -> (std::process::Child, Kill) {
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let script = format!("i=0; while [ $i -lt 30 ]; do sleep {tag} & i=$((i+1)); done; wait");
        let (sh, cand) = forking_shell(reader, &script, tag);
        // All 30 forked: the walk below finds them all.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sleepers(reader, tag).len() < 30 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kill = Kill::plan(reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        assert_eq!(kill.others.len(), 30, "{}", kill.unit_note);
        (sh, kill)
    }

    /// Waits for every pinned process of `kill` to exit, through [`Kill::wait`] (which wakes
    /// the held members); false after 10 s.
    fn wait_all(kill: &mut Kill) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if kill.wait(Duration::from_millis(5)) {
                return true;
            }
        }
        false
    }

    /// A victim that handles SIGTERM and lives on is alive but not exiting when [`VICTIM_WAIT`]
    /// runs out: the first wave of the others is woken then, not held for [`VICTIM_EXIT_WAIT`].
    #[test]
    fn a_victim_that_outlives_sigterm_holds_the_others_back_only_briefly() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let script = format!(
            // A handler (an ignored signal would be inherited by the children); `wait` returns
            // when it runs, and the loop waits again.
            "trap : TERM; i=0; while [ $i -lt 20 ]; do sleep {tag} & i=$((i+1)); done; while :; do wait; done"
        );
        let (mut sh, cand) = forking_shell(&mut reader, &script, &tag);
        let mut kill =
            Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        assert!(
            kill.victim_stat.is_some(),
            "the stopped victim's stat is kept"
        );
        kill.signal_all(Signal::TERM);
        let sent = Instant::now();
        let until = sent + Duration::from_secs(5);
        while kill.gone.get(1) != Some(&true) && Instant::now() < until {
            let _ = kill.wait(Duration::from_millis(5));
        }
        let took = sent.elapsed();
        let victim_alive = !kill.victim.exited();
        kill.signal_all(Signal::KILL);
        assert!(wait_all(&mut kill), "a member outlived SIGKILL");
        let _ = sh.wait();
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(escaped.is_empty(), "{} children escaped", escaped.len());
        assert!(victim_alive, "the victim handles SIGTERM and lives on");
        assert!(
            took >= VICTIM_WAIT && took < VICTIM_EXIT_WAIT,
            "the first member died {took:?} after SIGTERM (victim alive, not exiting)"
        );
    }

    /// SIGTERM to a stopped tree: every member has it pending at once, but only the victim is
    /// continued; the others stay stopped until their waves, and all of them die.
    #[test]
    fn a_stopped_tree_gets_sigterm_at_once_and_is_woken_in_waves() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let (mut sh, mut kill) = stopped_tree(&mut reader, &tag);
        kill.signal_all(Signal::TERM);
        assert_eq!(
            kill.signals.len(),
            31,
            "one SIGTERM per member, sent at once"
        );
        assert!(kill.signals.iter().all(|s| s.ok && s.signal == "SIGTERM"));
        for t in &kill.others {
            let st = reader.stat(t.pid).unwrap();
            assert_eq!(st.state, b'T', "{} was woken with the victim", t.pid);
            assert_ne!(
                pending(t.pid) & bit(Signal::TERM),
                0,
                "{}: no SIGTERM pending",
                t.pid
            );
        }
        assert!(wait_all(&mut kill), "a member outlived its wave");
        let _ = sh.wait();
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(escaped.is_empty(), "{} children escaped", escaped.len());
    }

    /// SIGKILL to a stopped tree goes to the victim at once and to the others wave by wave
    /// (each recorded when sent); a member whose wave has not come is stopped and has no
    /// SIGKILL pending.
    #[test]
    fn sigkill_to_a_stopped_tree_goes_out_wave_by_wave() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let (mut sh, mut kill) = stopped_tree(&mut reader, &tag);
        let reaper = Reaper::start().unwrap();
        kill.reap_with(Some(&reaper));
        kill.signal_all(Signal::KILL);
        kill.release();
        assert_eq!(
            kill.signals.len(),
            1,
            "SIGKILL went beyond the victim at once"
        );
        assert_eq!(kill.signals[0].pid, kill.victim.pid);
        for t in &kill.others {
            assert_eq!(reader.stat(t.pid).unwrap().state, b'T');
            assert_eq!(pending(t.pid) & bit(Signal::KILL), 0, "{}", t.pid);
        }
        assert!(wait_all(&mut kill), "a member outlived SIGKILL");
        let _ = sh.wait();
        assert_eq!(kill.signals.len(), 31, "one SIGKILL per member");
        assert!(kill.signals.iter().all(|s| s.ok && s.signal == "SIGKILL"));
        // Sent in more than one wave: the last member's SIGKILL came after the victim's.
        assert!(kill.signals[30].us > kill.signals[0].us);
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(escaped.is_empty(), "{} children escaped", escaped.len());
    }

    /// Members that ignore SIGTERM: the escalation's SIGKILL reaches the woken ones at once and
    /// the held ones in their waves; none survives.
    #[test]
    fn sigkill_during_the_waves_reaches_woken_and_held_members() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        // SIGTERM ignored by the shell and (inherited through exec) by every sleep.
        let script = format!(
            "trap '' TERM; i=0; while [ $i -lt 30 ]; do sleep {tag} & i=$((i+1)); done; wait"
        );
        let (mut sh, cand) = forking_shell(&mut reader, &script, &tag);
        let deadline = Instant::now() + Duration::from_secs(20);
        while sleepers(&mut reader, &tag).len() < 30 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut kill =
            Kill::plan(&mut reader, &scope, KillUnit::Tree, &cand, Instant::now()).unwrap();
        kill.signal_all(Signal::TERM);
        // The victim's wait, then a few waves: nobody exits.
        assert!(!kill.wait(VICTIM_WAIT + WAVE_WAIT * 2));
        let woken = kill.waves.as_ref().unwrap().next;
        assert!(
            woken > 1 && woken <= kill.others.len(),
            "woken up to {woken}"
        );
        kill.signal_all(Signal::KILL);
        assert!(wait_all(&mut kill), "a member outlived SIGKILL");
        let _ = sh.wait();
        let kills = kill
            .signals
            .iter()
            .filter(|s| s.signal == "SIGKILL")
            .count();
        assert_eq!(kills, 31, "one SIGKILL per member");
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(escaped.is_empty(), "{} children escaped", escaped.len());
    }

    /// A kill dropped while members are still held lets them go: their pending SIGTERM ends
    /// them.
    #[test]
    fn a_kill_dropped_with_held_members_wakes_them() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let tag = format!("{}.{}", 3000 + std::process::id() % 1000, line!());
        let (mut sh, mut kill) = stopped_tree(&mut reader, &tag);
        kill.signal_all(Signal::TERM);
        let others: Vec<i32> = kill.others.iter().map(|t| t.pid).collect();
        drop(kill);
        let _ = sh.wait();
        let until = Instant::now() + Duration::from_secs(10);
        while !sleepers(&mut reader, &tag).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let escaped = kill_escaped(&mut reader, &tag);
        assert!(
            escaped.is_empty(),
            "{} of {} held members survived",
            escaped.len(),
            others.len()
        );
    }

    /// A `--kill-unit process` kill planned for `pid` (a child of the test's), nothing sent.
    fn planned_kill(pid: i32) -> Kill {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let scope = Scope::resolve(&Root::default(), &ScopeSpec::System).unwrap();
        let st = reader.stat(pid).unwrap();
        let cand = Candidate::unscored(pid, st.starttime, "sleep");
        Kill::plan(
            &mut reader,
            &scope,
            KillUnit::Process,
            &cand,
            Instant::now(),
        )
        .unwrap()
    }

    /// A process that ends at once after SIGKILL is left to its own exit: `process_mrelease`
    /// is only for one that has not exited [`RELEASE_AFTER`] after its SIGKILL.
    #[test]
    fn a_victim_that_exits_at_once_is_not_mreleased() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let mut kill = planned_kill(child.id() as i32);
        let reaper = Reaper::start().unwrap();
        kill.reap_with(Some(&reaper));
        kill.signal_all(Signal::KILL);
        kill.release();
        assert!(
            kill.tally.is_none(),
            "released at once, before the victim had its chance"
        );
        assert!(wait_all(&mut kill));
        let _ = child.wait();
        assert!(
            kill.tally.is_none() && !kill.released(),
            "a victim that exited on its own was released"
        );
    }

    /// Kills the child when dropped (a test that fails leaves no process behind).
    struct Reap(std::process::Child);

    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A release that blocks, as `process_mrelease` does while the process's mmap lock is held
    /// (here a release call that waits on a channel): the loop's [`Kill::release`] and
    /// [`Kill::wait`] return while it blocks; the kill says memory was released only once the
    /// call has returned; a member is handed over once. (The loop's calls run on a thread of
    /// their own, so that a loop stuck in the release fails the test instead of hanging it.)
    #[test]
    fn a_stuck_release_does_not_hold_the_loop() {
        use std::sync::mpsc;
        let (entered_tx, entered) = mpsc::channel::<i32>();
        let (unblock, unblock_rx) = mpsc::channel::<()>();
        let reaper = Reaper::start_with(move |pid, _fd| {
            let _ = entered_tx.send(pid);
            let _ = unblock_rx.recv();
            Ok(())
        })
        .unwrap();
        let child = Reap(Command::new("sleep").arg("60").spawn().unwrap());
        let pid = child.0.id() as i32;
        let mut kill = planned_kill(pid);
        kill.reap_with(Some(&reaper));
        // As if its SIGKILL had gone out RELEASE_AFTER ago and it had not exited (a process
        // whose mmap lock is held). No signal is sent: the release call is the test's.
        kill.kill_sent = vec![Some(Instant::now() - RELEASE_AFTER)];
        let (said, heard) = mpsc::channel::<(&str, bool, bool)>();
        let looper = std::thread::spawn(move || {
            kill.release();
            let _ = said.send(("release", kill.released(), kill.release_pending()));
            let exited = kill.wait(Duration::from_millis(30));
            let _ = said.send(("wait", exited, kill.released()));
            kill
        });
        let after_release = heard.recv_timeout(Duration::from_secs(5));
        let in_call = entered.recv_timeout(Duration::from_secs(5));
        let after_wait = heard.recv_timeout(Duration::from_secs(5));
        let _ = unblock.send(());
        let mut kill = looper.join().unwrap();
        assert_eq!(in_call, Ok(pid), "the release never reached the reaper");
        assert_eq!(
            after_release,
            Ok(("release", false, true)),
            "release() did not return while the release call blocked (or said released)"
        );
        assert_eq!(
            after_wait,
            Ok(("wait", false, false)),
            "wait() did not return while the release call blocked (or said released)"
        );
        // Unblocked: the call returned, and now (only now) the kill says so.
        let until = Instant::now() + Duration::from_secs(10);
        while !kill.released() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(kill.released(), "the release that returned is not seen");
        assert!(!kill.release_pending());
        // Once per member: later waits hand nothing more over.
        assert!(!kill.wait(Duration::from_millis(30)));
        kill.release();
        assert_eq!(
            entered.recv_timeout(Duration::from_millis(100)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        drop(child);
        assert!(wait_all(&mut kill));
    }

    /// A v1 freezer group made for one test (frozen processes keep a pending SIGKILL without
    /// exiting, as a process stuck in the kernel does); thawed, its processes killed and the
    /// group removed on drop.
    struct Frozen {
        dir: std::path::PathBuf,
        child: std::process::Child,
    }

    impl Frozen {
        /// `sleep 60` in a new frozen group; `None` without a v1 freezer.
        fn sleeper() -> Option<Frozen> {
            let dir = crate::act::scratch::own_v1_group("freezer")?
                .join(format!("oomguard-mrelease-{}", std::process::id()));
            std::fs::create_dir(&dir).ok()?;
            let child = Command::new("sleep").arg("60").spawn().unwrap();
            let f = Frozen { dir, child };
            std::fs::write(f.dir.join("cgroup.procs"), f.child.id().to_string()).ok()?;
            std::fs::write(f.dir.join("freezer.state"), "FROZEN").ok()?;
            let until = Instant::now() + Duration::from_secs(10);
            while std::fs::read_to_string(f.dir.join("freezer.state"))
                .ok()?
                .trim()
                != "FROZEN"
            {
                if Instant::now() > until {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Some(f)
        }
    }

    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
            let _ = self.child.kill();
            let _ = self.child.wait();
            let until = Instant::now() + Duration::from_secs(10);
            while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The real thing: a victim that does not exit after SIGKILL (frozen by the v1 freezer) is
    /// handed to the reaper thread [`RELEASE_AFTER`] later, whose `process_mrelease` reaps its
    /// memory; the kill says released once that call has returned.
    #[test]
    fn a_victim_that_does_not_exit_is_mreleased_by_the_reaper_thread() {
        use std::os::fd::AsFd;
        let me = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        // A live process is refused (EINVAL); ENOSYS: a kernel before 5.15.
        if super::super::pidfd::mrelease(me.as_fd())
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOSYS))
        {
            panic!(
                "cannot run this test: this kernel has no process_mrelease (5.15+). A test that \
                 checks nothing must not pass"
            );
        }
        let Some(frozen) = Frozen::sleeper() else {
            panic!(
                "cannot run this test: no cgroup v1 freezer to hold a killed process (run as \
                 root where /sys/fs/cgroup/freezer is mounted). A test that checks nothing must \
                 not pass"
            );
        };
        let pid = frozen.child.id() as i32;
        let mut kill = planned_kill(pid);
        let reaper = Reaper::start().unwrap();
        kill.reap_with(Some(&reaper));
        kill.signal_all(Signal::KILL);
        let sent = Instant::now();
        kill.release();
        assert!(kill.tally.is_none(), "handed over before RELEASE_AFTER");
        let until = sent + Duration::from_secs(10);
        while !kill.released() && Instant::now() < until {
            assert!(
                !kill.wait(Duration::from_millis(20)),
                "the frozen victim exited"
            );
        }
        assert!(kill.released(), "not released ({:?})", kill.tally);
        assert!(sent.elapsed() >= RELEASE_AFTER);
        // Its anonymous memory is gone although it has not exited.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let anon = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .map(|v| v.trim().to_string());
        assert_eq!(anon.as_deref(), Some("0 kB"), "{status}");
        drop(frozen);
        assert!(wait_all(&mut kill));
    }
}
