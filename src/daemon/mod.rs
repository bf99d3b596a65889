//! The guard loop: sense the scope's memory on every wake-up, decide with the levels, choose
//! and signal a victim, record what happened. One thread, poll(2), no async runtime.
//!
//! Invariants:
//! - never a second victim while the first one's memory is being freed: after a kill the loop
//!   waits for the victim's exit and for memory to recover; a large process that is exiting or
//!   has SIGKILL pending (the kernel's victim, or anyone's) blocks new choices; a rise of the
//!   kernel's OOM kill counter is recorded and holds kills back until memory recovers, except,
//!   for the system scope, a rise whose kills the kernel log shows were all at a memory
//!   cgroup's own limit (`sense::kmsg`): recorded, never held for;
//! - every signal goes through a pidfd verified against the scored start time;
//! - every kill or would-be kill is one fsynced event-log record and one log line;
//! - a signal that fails (EPERM, ESRCH) is a `kill_failed` record with `ok: false`, never a
//!   `kill`; that process is not chosen again and the next candidate is tried (or, if none is
//!   left, the loop waits; a kernel OOM kill that follows is still recorded as `kernel_kill`);
//! - a kill that frees almost nothing while memory stays low (the memory is held by tmpfs or
//!   shm files, or pinned page cache, which no process exit frees) is followed by a
//!   `kill_backoff` record and no further kills until memory recovers or more of it is taken;
//! - the kill path is resident: after `mlockall` a warm-up decision at start runs the choice,
//!   pinning, signalling (signal 0 to ourselves), and record code, so the first real kill takes
//!   no page faults; each `kill` record carries the faults it did take (`faults`).

pub mod guardian;
pub mod lock;
pub mod start;
pub mod wake;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::Signal;
use rustix::thread::CapabilitySet;

use crate::act::escalate::Reading;
use crate::act::harden;
use crate::act::kill::{Kill, VictimGroup};
use crate::act::reaper::Reaper;
use crate::decide::policy::Policy;
use crate::decide::trigger::{LevelSpec, Levels, MAX_POLL, Reason, Severity};
use crate::decide::victim::{Candidate, Ranker, ScanBasis, Selection};
use crate::record::event::{self as ev, Event, Faults, KillFaults, Outcome};
use crate::record::eventlog::EventLog;
use crate::record::{Observer, Sample, Wake};
use crate::sense::breath::{self, Breath};
use crate::sense::details::{Details, Lookup};
use crate::sense::kmsg::RiseKind;
use crate::sense::mem::MemState;
use crate::sense::procs::ProcReader;
use crate::sense::psi::{Pressure, PsiWindow};
use crate::sense::scope::Scope;
use crate::sense::tasks::TaskIter;
use crate::sense::{KeptFile, Root};
use crate::values::{KillUnit, ScopeSpec, human_kb};

/// Everything the loop needs to know, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: Root,
    pub scope: ScopeSpec,
    pub levels: LevelSpec,
    pub kill_unit: KillUnit,
    pub term_grace: Duration,
    pub dry_run: bool,
    pub event_log: PathBuf,
    pub policy: Policy,
    /// `--report-interval`: a status line this often (available memory, swap, PSI, the
    /// would-be victim); `None`: off.
    pub report_interval: Option<Duration>,
}

/// What a SIGHUP reload produces: new settings, or the reason they were refused.
pub type Reload = Box<dyn FnMut() -> anyhow::Result<Settings> + Send>;

/// Flags set by signal handlers.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

/// Lists the machine's processes with the kernel's task iterator from now on (one program
/// pass per scan instead of a `statm` read per process, [`crate::sense::tasks`]); says why
/// not, and goes on reading `/proc`, when the kernel or the daemon's privileges do not allow
/// it. The kernel's type information (about 5 MiB) is read in a helper process, the daemon's
/// own binary run for that ([`TaskIter::load_via`]): it never counts in the daemon's memory.
///
/// For a cgroup scope the program lists only the group's processes ([`CgroupFilter`](crate::sense::tasks::CgroupFilter)); the
/// scan then takes it when that is cheaper than reading the group's processes one by one
/// (`decide::victim`).
pub fn use_task_iterator(reader: &mut ProcReader, scope: &Scope) {
    if !crate::sense::tasks::proc_is_own_namespace() {
        log::info!(
            "scanning /proc, one read per process: the /proc mounted here belongs to another PID namespace, so the kernel's task iterator's PIDs would not match it"
        );
        harden::shed_iterator_capabilities();
        return;
    }
    let filter = match scope.cgroup().map(|c| c.kernel_id(reader.root())) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            log::info!(
                "reading the group's processes in /proc, one read per process: the kernel's task iterator cannot pick out the group's processes here: {e}"
            );
            harden::shed_iterator_capabilities();
            return;
        }
    };
    match TaskIter::load_via(
        Path::new("/proc/self/exe"),
        Path::new(crate::sense::tasks::KERNEL_BTF),
        filter,
    ) {
        Ok(it) => {
            reader.use_tasks(it);
            let shed = shed_after_load(reader);
            if filter.is_some() {
                log::info!(
                    "scanning the group's processes with the kernel's task iterator (BPF) when its processes number 1 in {} of the machine's threads or more, else in /proc{shed}",
                    crate::decide::victim::ITERATOR_SHARE
                );
            } else {
                log::info!("scanning processes with the kernel's task iterator (BPF){shed}");
            }
            return;
        }
        // Without the privileges it needs (a sandbox without CAP_BPF/CAP_PERFMON or bpf()),
        // or a group's filter on a kernel whose types lack what it reads: said, not warned of.
        Err(e) if e.is_expected() => {
            log::info!("scanning /proc, one read per process: the kernel's task iterator is {e}")
        }
        Err(e) => log::warn!(
            "the kernel's task iterator is not available: {e}; scanning /proc, one read per process"
        ),
    }
    harden::shed_iterator_capabilities();
}

/// After the task iterator's program is loaded, the guard thread gives up CAP_PERFMON, and
/// CAP_BPF where a pass starts without it (Debian 12's 6.1 and later; older kernels ask for it
/// at every `bpf()` command): tried with CAP_BPF lowered, and raised again if the kernel
/// refuses the pass. Returns what to add to the start's log line.
/// (A daemon run as plain root keeps CAP_SYS_ADMIN, which stands for both.)
fn shed_after_load(reader: &mut ProcReader) -> &'static str {
    let held = rustix::thread::capabilities(None).map_or(CapabilitySet::empty(), |c| {
        c.permitted & harden::ITERATOR_CAPS
    });
    if held.is_empty() {
        return "";
    }
    if let Err(e) = harden::shed_capabilities(CapabilitySet::PERFMON) {
        log::warn!(
            "cannot give up CAP_PERFMON and CAP_BPF after loading the task iterator (capset: {e}; a systemd unit's SystemCallFilter=~@privileged denies it unless it allows capset again): the guard keeps them"
        );
        return "";
    }
    if !held.contains(CapabilitySet::BPF) {
        return "; CAP_PERFMON given up after loading it";
    }
    if harden::set_effective(CapabilitySet::BPF, false).is_ok()
        && matches!(reader.try_task_pass(), Some(Ok(_)))
        && harden::shed_capabilities(CapabilitySet::BPF).is_ok()
    {
        return if held.contains(CapabilitySet::PERFMON) {
            "; CAP_BPF and CAP_PERFMON given up after loading it"
        } else {
            "; CAP_BPF given up after loading it"
        };
    }
    let _ = harden::set_effective(CapabilitySet::BPF, true);
    if held.contains(CapabilitySet::PERFMON) {
        "; CAP_PERFMON given up after loading it, CAP_BPF kept (this kernel asks for it at each pass)"
    } else {
        "; CAP_BPF kept (this kernel asks for it at each pass)"
    }
}

/// `getrusage(who)`; `None` if it failed.
fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    // SAFETY: rusage is plain integers and timevals; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only into the struct we pass, which lives for the call
    // (rustix has no getrusage).
    (unsafe { libc::getrusage(who, &mut ru) } == 0).then_some(ru)
}

/// The loop thread's page faults, and the whole daemon's reads from storage.
fn faults_now() -> Faults {
    let Some(ru) = rusage(libc::RUSAGE_THREAD) else {
        return Faults::default();
    };
    Faults {
        minflt: ru.ru_minflt as u64,
        majflt: ru.ru_majflt as u64,
        inblock: rusage(libc::RUSAGE_SELF).map_or(0, |s| s.ru_inblock as u64),
    }
}

/// The reaper thread (`act::reaper`), started with the daemon while memory is plentiful. If it
/// cannot be started, killed processes are not given `process_mrelease` at all (said once,
/// here) rather than given it on the loop: the call waits for the victim's mmap lock, which a
/// process that has not exited 200 ms after SIGKILL typically holds, or waits for, for seconds,
/// and a loop in that wait sees no memory, no signal and no other victim. Without the release
/// the memory still comes back, with the victim's exit, as on kernels before 5.15.
fn start_reaper() -> Option<Reaper> {
    Reaper::start()
        .inspect_err(|e| {
            log::warn!("cannot start the reaper thread ({e}); killed processes that do not exit at once are not given process_mrelease (their memory comes back when they exit)")
        })
        .ok()
}

/// The thread that reads command lines for the rules that match on them (`cmdline` fields),
/// off the loop (see [`crate::decide::rank::CmdlineSide`]); none when no rule does.
fn cmdline_reader(s: &Settings, prefer_v2: bool) -> Option<Details> {
    if !s.policy.rules.iter().any(|r| r.cmdline.is_some()) {
        return None;
    }
    Details::start(&s.root, prefer_v2, Some(BREATH))
        .inspect_err(|e| {
            log::warn!("cannot start a thread to read command lines for the rules ({e}); they are read on the guard's loop")
        })
        .ok()
}

/// The threads that read the processes' cgroup paths off the loop
/// ([`Details::start_cgroups`]) for rules with `cgroup` or `unit` and for `--kill-unit
/// cgroup`; none when nothing needs them.
fn cgroup_reader(s: &Settings, prefer_v2: bool) -> Option<Details> {
    if s.kill_unit != KillUnit::Cgroup
        && !s
            .policy
            .rules
            .iter()
            .any(|r| r.cgroup.is_some() || r.unit.is_some())
    {
        return None;
    }
    Details::start_cgroups(&s.root, prefer_v2, Some(BREATH))
        .inspect_err(|e| {
            log::warn!("cannot start a thread to read cgroup paths for the rules ({e}); they are read on the guard's loop")
        })
        .ok()
}

/// How long a kill waits for its victim's cgroup path from the side readers when it was not
/// read ahead (`--kill-unit cgroup`); a read that takes longer waits on `cgroup_mutex`.
const GROUP_WAIT: Duration = Duration::from_millis(20);

/// The memory cgroup of `who` for `--kill-unit cgroup`, never read on the caller's thread when
/// it has side readers: as read ahead near the levels (`ahead`: the command lines' readers,
/// which read the cgroup too) or by the cgroup readers (`cgroups`), else asked of those and
/// waited for up to `wait`. Without cgroup readers (they did not start): read by the kill.
fn victim_group(
    ahead: Option<&Details>,
    cgroups: Option<&Details>,
    who: (i32, u64),
    wait: Duration,
) -> VictimGroup {
    // Read ahead with its command line: a path, or none because that read failed (not
    // because it has none: that is asked again below).
    if let Some(path) = ahead.and_then(|d| d.cached(who)).and_then(|f| f.1) {
        return VictimGroup::Known(Some(path));
    }
    let Some(cgroups) = cgroups else {
        return VictimGroup::ReadNow;
    };
    match cgroups.lookup(who, wait) {
        Lookup::Found(f) => VictimGroup::Known(f.1),
        // Its cgroup file could not be read (or it is gone: the kill finds that when it pins
        // it). Not taken for the root group.
        Lookup::Gone | Lookup::Late => VictimGroup::Unread,
    }
}

/// The faults taken since `start`.
fn faults_since(start: Faults) -> Faults {
    let now = faults_now();
    Faults {
        minflt: now.minflt.saturating_sub(start.minflt),
        majflt: now.majflt.saturating_sub(start.majflt),
        inblock: now.inblock.saturating_sub(start.inblock),
    }
}

/// How long a choice waits for one large process that is already dying (SIGKILL pending or
/// exiting) to free its memory before it chooses among the others. Dying processes free their
/// memory in milliseconds, and ours are reaped by `process_mrelease` after a short wait
/// (`act::kill`, on the reaper thread `act::reaper`); one stuck in the kernel (uninterruptible
/// sleep on storage that does not answer, with a SIGKILL from someone else) may never free it,
/// and waiting for it without end would blind the guard. The kernel's OOM reaper gives up on a victim after about 1 s.
const PROGRESS_MAX: Duration = Duration::from_secs(3);

/// How often a scope that cannot be read (a removed cgroup) is looked at again.
const UNREADABLE_POLL: Duration = Duration::from_secs(1);

/// The dying process a choice is waiting for, since when, and whether giving up on it was said.
#[derive(Debug, Default)]
struct Progress(Option<(i32, Instant, bool)>);

/// What a choice does about a dying process ([`Progress::waits`]).
#[derive(Debug, PartialEq, Eq)]
enum ProgressWait {
    /// None is dying: choose.
    Nobody,
    /// Wait for it.
    Waits,
    /// Waited [`PROGRESS_MAX`] for it: choose among the others (`first`: the first time).
    GaveUp { first: bool },
}

impl Progress {
    /// Our own victim outlived SIGKILL without freeing its memory (`act::escalate`'s
    /// `stuck`): the next choice does not wait for it again.
    fn given_up(&mut self, pid: i32, now: Instant) {
        if let Some(since) = now.checked_sub(PROGRESS_MAX) {
            self.0 = Some((pid, since, true));
        }
    }

    fn waits(&mut self, dying: Option<i32>, now: Instant) -> ProgressWait {
        let Some(pid) = dying else {
            self.0 = None;
            return ProgressWait::Nobody;
        };
        match &mut self.0 {
            Some((p, since, said)) if *p == pid => {
                if now.saturating_duration_since(*since) < PROGRESS_MAX {
                    ProgressWait::Waits
                } else {
                    ProgressWait::GaveUp {
                        first: !std::mem::replace(said, true),
                    }
                }
            }
            _ => {
                self.0 = Some((pid, now, false));
                ProgressWait::Waits
            }
        }
    }
}

/// Why kills are held back after one that freed nothing.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Available memory right after that kill.
    available_kb: u64,
    tiny_kb: u64,
}

impl Backoff {
    /// Whether a kill freed almost nothing: less than `tiny_kb` (a 64th of the scope) and
    /// less than half the victim's resident set. A small victim (a worker among many, under a
    /// 64th of memory) that freed what it held did its part: memory still low then calls for
    /// the next victim, not for a backoff. (Judged by `tiny_kb` alone, each such kill backed
    /// off, and in a storm of small processes the guard stood aside.)
    fn freed_nothing(freed_kb: u64, tiny_kb: u64, victim_rss_kb: u64) -> bool {
        freed_kb < tiny_kb.min((victim_rss_kb / 2).max(512))
    }

    /// How far memory must fall below the level right after that kill to re-arm kills: a
    /// 64th of the scope, or half of what was left then if that is less. (With `tiny_kb`
    /// alone, a kill that left less than a 64th available could never be followed: memory
    /// cannot fall by more than what is left.)
    fn fall_kb(&self) -> u64 {
        self.tiny_kb.min((self.available_kb / 2).max(1))
    }

    /// Whether memory fell far enough since that kill to re-arm kills.
    fn rearms(&self, available_kb: u64) -> bool {
        available_kb.saturating_add(self.fall_kb()) <= self.available_kb
    }
}

/// After a kernel OOM kill no victim is chosen until memory recovers. The kernel's victim frees
/// its memory asynchronously (the oom_reaper, then `exit_mmap` of its last thread; slow under
/// load), and meanwhile it can drop out of the candidates (a leader that is already a zombie
/// reads as 0 rss): choosing then would kill an innocent. The hold lasts `HOLD_MIN`, and longer
/// while available memory keeps rising (by `HOLD_RISE_KB` per `HOLD_MIN`), up to `HOLD_MAX`
/// after the kill: a kernel kill that frees nothing does not disarm the guard for long.
#[derive(Debug, Clone, Copy)]
struct Hold {
    since: Instant,
    until: Instant,
    available_kb: u64,
}

const HOLD_MIN: Duration = Duration::from_secs(2);
const HOLD_MAX: Duration = Duration::from_secs(10);
const HOLD_RISE_KB: u64 = 1024;

impl Hold {
    fn new(now: Instant, available_kb: u64) -> Hold {
        Hold {
            since: now,
            until: now + HOLD_MIN,
            available_kb,
        }
    }

    /// True while choices stay held back.
    fn holds(&mut self, now: Instant, available_kb: u64, recovered: bool) -> bool {
        if recovered {
            return false;
        }
        if now < self.until {
            return true;
        }
        if available_kb >= self.available_kb + HOLD_RISE_KB && now < self.since + HOLD_MAX {
            // Still coming back: hold on for another stretch.
            self.available_kb = available_kb;
            self.until = now + HOLD_MIN;
            return true;
        }
        false
    }
}

/// At most this many refused victims are remembered (oldest forgotten first).
const MAX_REFUSED: usize = 32;

/// How often the kernel's OOM kill counter is read near the levels but above them.
const NEAR_OOM_CHECK: Duration = Duration::from_millis(50);
/// How often the kernel's OOM kill counter is read far from the levels.
const FAR_OOM_CHECK: Duration = Duration::from_secs(5);

/// The longest sleep far from the levels when the kernel watches the machine's memory use for
/// the daemon (usage marks on the v1 root group, `daemon::wake`): a hog of any speed wakes it
/// at a mark while free memory lasts, so the sleep only has to cover memory that group does not
/// count (kernel slabs, page tables), still bounded by the fill-rate model
/// ([`Levels::next_poll_upto`]). Without marks armed, [`MAX_POLL`] (1 s, as earlyoom). Far
/// from the levels only: near them nothing changes.
const FAR_POLL_WATCHED: Duration = Duration::from_secs(3);
/// How often the rescan near the levels, done in one go, looks at what a wake-up would see
/// ([`NearLook`]): memory, the kernel's notifications and signals, its OOM kills.
pub const NEAR_SCAN_LOOK: Duration = Duration::from_millis(2);

/// What the rescan near the levels looks at while it runs ([`Ranker::refresh_until`]): the
/// loop's reasons to act, so that the scan in one go never keeps the loop from them longer
/// than [`NEAR_SCAN_LOOK`] (done in slices instead, one per wake-up, the rescan finished
/// over about 40 wake-ups at 10 000 processes, for about the same CPU, and memory was looked
/// at once per wake-up, 7 ms apart at the shortest). It stops the scan when memory reaches a
/// level (with the PSI share, if `--psi`), a notification or signal has come
/// ([`wake::Waker::pending`], which keeps it for the loop's next wait), the kernel's OOM killer
/// acted in the scope (read every [`NEAR_OOM_CHECK`], as the loop does near the levels), or
/// the daemon is stopping. The loop then wakes at once; the scan goes on from where it
/// stopped, at the next wake-up near the levels or at a decision.
struct NearLook<'a> {
    waker: &'a mut wake::Waker,
    spec: &'a LevelSpec,
    pressure: Option<&'a mut KeptFile>,
    buf: &'a mut Vec<u8>,
    psi_window: Option<&'a PsiWindow>,
    oom_kills: Option<u64>,
    kernel_looked: Instant,
    stop: &'a AtomicBool,
}

impl NearLook<'_> {
    fn interrupts(&mut self, scope: &mut Scope) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.waker.pending() {
            return true;
        }
        let Ok(mem) = scope.memory() else {
            // The loop reports it.
            return true;
        };
        let psi = match (self.spec.psi, self.psi_window, self.pressure.as_deref_mut()) {
            (Some(spec), Some(w), Some(f)) => f
                .read_into(self.buf)
                .ok()
                .and_then(|_| Pressure::parse(self.buf))
                .and_then(|p| w.peek(Instant::now(), p.total_us(spec.kind)))
                .map(|share| (spec, share)),
            _ => None,
        };
        if self.spec.resolve(&mem).evaluate(&mem, psi).0 != Severity::None {
            return true;
        }
        if let Some(k0) = self.oom_kills
            && self.kernel_looked.elapsed() >= NEAR_OOM_CHECK
        {
            self.kernel_looked = Instant::now();
            return scope.kernel_oom_kills().is_some_and(|k| k > k0);
        }
        false
    }
}

/// How the main thread and the read-ahead thread share the CPU while they read `/proc` at nice
/// −20 (`sense::breath`): at most 2 ms of reading, then 1 ms of sleep, as the tree walk does
/// (`act::kill`). In the VM fork storm (one emulated CPU) a rescan slice near the levels ran
/// 5–6 ms in one piece and the choice 8–9 ms, and a 10 ms heartbeat woken meanwhile waited for
/// it all. A pause of 0.1 ms was too short: the heartbeat, woken, needed about 1 ms of CPU to
/// get back to its own code, and the guard, waking from each pause, took the CPU back from it
/// every time (traced: three pauses in one 9 ms stall). The pause is taken only while more
/// tasks are runnable than there are CPUs: a scan in one go on a quiet machine (a choice on a
/// stale table) no longer sleeps a third of its time away.
pub const BREATH: Breath = Breath {
    every: Duration::from_millis(2),
    pause: Duration::from_millis(1),
};

/// The oldest table a choice uses without a rescan (`Daemon::select_watching`): its age is
/// that of its last listing, by a full scan or a bounded rescan near the levels, whose rows it
/// passed over are as old as the last full scan (at most `victim::FULL_RESCAN_EVERY` before),
/// within the growth bound the choice allows for.
const TABLE_MAX_AGE: Duration = Duration::from_secs(2);

/// When start-up is over, side threads included (the log writers and the read-ahead thread
/// begin on their own schedule, often after the main thread's first trim): memory is trimmed
/// and locked again then, with a second warm-up (see [`Daemon::lock_working_set`]).
const SETTLE: Duration = Duration::from_secs(3);

/// The longest the settle waits for memory to hold still (see [`settle_due`]).
const SETTLE_MAX_WAIT: Duration = Duration::from_secs(60);

/// Whether the settle ([`SETTLE`] after start) runs now. It waits for quiet: not near the
/// levels, and memory holding still ([`Stillness`]). Its trim, lock and warm-up are a burst:
/// tens of ms on a slow single CPU (16–40 ms in the VM bench), which at nice −20 every other
/// task of a memory storm would wait for (it runs at the base nice now, but still holds the
/// guard loop up). After [`SETTLE_MAX_WAIT`] it runs anyway.
fn settle_due(now: Instant, due: Instant, near: bool, still: bool) -> bool {
    !near && now >= due && (still || now >= due + SETTLE_MAX_WAIT)
}

/// Whether available memory holds still: it fell by at most 1/128 of the total (from its
/// highest look) over the last second or more. Measured per second, not per wake-up: wake-ups
/// come faster as memory nears the levels, and each sees only a small fall. A floor and the
/// kernel's figure (see `far_floor`) are not compared: the first look after a change of kind
/// is not still.
#[derive(Debug, Default)]
struct Stillness {
    /// The look that later ones are measured against: kB, a floor, when.
    anchor: Option<(u64, bool, Instant)>,
    still: bool,
}

impl Stillness {
    fn look(&mut self, avail_kb: u64, floor: bool, now: Instant, total_kb: u64) -> bool {
        let bound = total_kb / 128;
        match self.anchor {
            Some((kb, f, at)) if f == floor => {
                let fell = kb.saturating_sub(avail_kb);
                if avail_kb > kb {
                    // A fall is measured from the highest look since the anchor.
                    self.anchor = Some((avail_kb, floor, at));
                }
                if fell > bound {
                    self.still = false;
                    self.anchor = Some((avail_kb, floor, now));
                } else if now.duration_since(at) >= Duration::from_secs(1) {
                    self.still = true;
                    self.anchor = Some((avail_kb, floor, now));
                }
            }
            _ => {
                self.still = false;
                self.anchor = Some((avail_kb, floor, now));
            }
        }
        self.still
    }
}

/// The running daemon.
pub struct Daemon {
    s: Settings,
    scope: Scope,
    reader: ProcReader,
    ranker: Ranker,
    waker: wake::Waker,
    log: EventLog,
    observers: Vec<Box<dyn Observer>>,
    flags: Flags,
    reload: Option<Reload>,
    pressure: Option<KeptFile>,
    psi_window: Option<PsiWindow>,
    psi_some: PsiWindow,
    psi_full: PsiWindow,
    buf: Vec<u8>,
    /// The scope's kernel OOM kill counter as last read, less the kills at a memory cgroup's
    /// own limit (system scope, [`Scope::kernel_oom_kills`]).
    last_oom_kills: Option<u64>,
    /// The kills at a memory cgroup's own limit as last read ([`crate::sense::kmsg::OomKinds`]).
    last_memcg_kills: u64,
    last_oom_check: Instant,
    /// The last wake-up was near the levels (see `tick`).
    was_near: bool,
    /// Whether memory holds still, for the settle.
    stillness: Stillness,
    /// Set by a kernel OOM kill: no choice until memory recovers (see `Hold`).
    hold: Option<Hold>,
    dry_last: Option<(i32, u64, Instant)>,
    warned_nothing: Option<Instant>,
    warned_progress: Option<Instant>,
    /// Since when the choice has waited for the same dying process (`sel.in_progress`).
    progress: Progress,
    /// When to register the PSI trigger again after it was dropped for an error.
    psi_rearm: Option<Instant>,
    /// Victims whose signal failed (pid, start time): never chosen again.
    refused: Vec<(i32, u64)>,
    /// Set by a kill that freed nothing; cleared when memory recovers or falls further.
    backoff: Option<Backoff>,
    warned_backoff: Option<Instant>,
    /// When the next `--report-interval` status line is due.
    next_report: Option<Instant>,
    /// Reads the victim's command line off the loop (`None`: the thread could not start).
    details: Option<Details>,
    /// The last victim whose command line was said (at info) not to be read ahead: a dry run
    /// decides on the same victim at each wake-up, and says it again only at debug.
    said_unread: Option<(i32, u64)>,
    /// Runs `process_mrelease` for killed processes off the loop (`None`: the thread could not
    /// start, and nothing is released; see `start_reaper`).
    reaper: Option<Reaper>,
    /// Since when the scope's memory cannot be read, and why (see `scope_unreadable`).
    unreadable: Option<(Instant, String)>,
}

impl Daemon {
    /// Resolves the scope, opens the event log, arms the kernel notifications.
    pub fn new(
        s: Settings,
        observers: Vec<Box<dyn Observer>>,
        flags: Flags,
        signal_pipe: Option<OwnedFd>,
        reload: Option<Reload>,
    ) -> anyhow::Result<Daemon> {
        let mut scope =
            Scope::resolve(&s.root, &s.scope).with_context(|| format!("--scope {}", s.scope))?;
        if let Err(e) = scope.watch_kernel_log() {
            log::info!(
                "{e}: every rise of the kernel's OOM kill counter holds choices back, also a kill inside a memory cgroup at its own limit"
            );
        }
        let mut reader = ProcReader::open(&s.root)?;
        if s.root.as_path() == Path::new("/") {
            use_task_iterator(&mut reader, &scope);
        } else {
            // A fixture tree's processes are read from its /proc.
            harden::shed_iterator_capabilities();
        }
        let mem = scope
            .memory()
            .with_context(|| format!("cannot read the memory of scope {}", scope.label()))?;
        let levels = s.levels.resolve(&mem);
        // Its errors name the path and say what to do.
        let log = EventLog::open(&s.event_log, &scope.label())?;
        let waker = wake::Waker::new(&mut scope, &levels, &mem, s.levels.psi, signal_pipe);
        let prefer_v2 = scope.mounts.v2_memory.is_some();
        let pressure = scope
            .pressure_path()
            .map(|p| KeptFile::whole(s.root.path(p)));
        let psi_window = s.levels.psi.map(|p| PsiWindow::new(p.window));
        let page_kb = reader.page_kb;
        let mut ranker = Ranker::new(page_kb, prefer_v2);
        ranker.set_cmdline_reader(cmdline_reader(&s, prefer_v2));
        ranker.set_cgroup_reader(cgroup_reader(&s, prefer_v2));
        Ok(Daemon {
            ranker,
            scope,
            reader,
            waker,
            log,
            observers,
            flags,
            reload,
            pressure,
            psi_window,
            psi_some: PsiWindow::new(Duration::from_secs(10)),
            psi_full: PsiWindow::new(Duration::from_secs(10)),
            buf: Vec::with_capacity(8192),
            last_oom_kills: None,
            last_memcg_kills: 0,
            last_oom_check: Instant::now(),
            was_near: false,
            stillness: Stillness::default(),
            hold: None,
            dry_last: None,
            warned_nothing: None,
            warned_progress: None,
            progress: Progress::default(),
            psi_rearm: None,
            refused: Vec::with_capacity(MAX_REFUSED),
            backoff: None,
            warned_backoff: None,
            next_report: s.report_interval.map(|_| Instant::now()),
            details: Details::start(&s.root, prefer_v2, Some(BREATH))
                .inspect_err(|e| {
                    log::warn!("cannot start the details thread ({e}); kill records will go without command lines")
                })
                .ok(),
            said_unread: None,
            reaper: start_reaper(),
            unreadable: None,
            s,
        })
    }

    /// The event log the daemon writes (fleet features append their own records to it).
    pub fn event_log(&self) -> &EventLog {
        &self.log
    }

    /// Adds an observer after start-up (the fleet features, built once the log is open).
    pub fn add_observer(&mut self, o: Box<dyn Observer>) {
        self.observers.push(o);
    }

    fn pgalloc(&mut self) -> u64 {
        self.scope.pgalloc()
    }

    fn read_pressure(&mut self) -> Option<Pressure> {
        self.pressure.as_mut()?.read_into(&mut self.buf).ok()?;
        Pressure::parse(&self.buf)
    }

    /// Runs until SIGTERM/SIGINT. Errors only when the scope cannot be read at start; later,
    /// a scope that cannot be read (a cgroup removed) is waited for (`scope_unreadable`).
    pub fn run(&mut self) -> anyhow::Result<()> {
        breath::enable(Some(BREATH), &self.s.root);
        let mem = self.scope.memory()?;
        let levels = self.s.levels.resolve(&mem);
        log::info!(
            "guarding {} ({}): SIGTERM below {} available, SIGKILL below {}{}; {} processes; wake-ups: {}; event log {}",
            self.scope.label(),
            if self.s.dry_run {
                "dry run: nothing is killed"
            } else {
                "killing"
            },
            human_kb(levels.mem_term_kb),
            human_kb(levels.mem_kill_kb),
            if mem.swap_total_kb > 0 {
                format!(
                    " with swap below {}/{}",
                    human_kb(levels.swap_term_kb),
                    human_kb(levels.swap_kill_kb)
                )
            } else {
                " (no swap: memory alone counts)".into()
            },
            self.refresh(&mem),
            self.waker.describe(),
            self.log.path().display()
        );
        for n in levels.start_notes(&mem) {
            log::warn!("{n}");
        }
        for n in std::mem::take(&mut self.waker.notes) {
            log::warn!("{n}");
        }
        if let Some(n) = self.lock_working_set() {
            log::warn!("{n}");
        }
        let mut settle = Some(Instant::now() + SETTLE);
        self.watch_kernel_kills();
        let mut wake = Wake::Timer;
        while !self.flags.stop.load(Ordering::Relaxed) {
            if self.flags.reload.swap(false, Ordering::Relaxed) {
                self.do_reload();
            }
            let timeout = self.tick(wake)?;
            // Not near the levels (there, the pages are in use and a trim would only re-fault
            // them), and not while memory falls.
            if settle.is_some_and(|due| {
                settle_due(Instant::now(), due, self.was_near, self.stillness.still)
            }) {
                settle = None;
                // At the base nice (`act::harden`), not −20: it is not urgent, and in the VM
                // fork storm, where it came right after the kill, it held a heartbeat up by 5–8
                // ms.
                if let Some(n) = crate::act::harden::at_base_priority(|| self.lock_working_set()) {
                    log::debug!("{n}");
                }
            }
            // Until the settle has run, at most 1 s: it waits for two looks at memory a second
            // apart, and the longer far sleep would put it (a warm-up burst) later.
            wake = self.waker.wait(if settle.is_some() {
                timeout.min(MAX_POLL)
            } else {
                timeout
            });
            breath::rested();
        }
        log::info!("stopping");
        Ok(())
    }

    fn do_reload(&mut self) {
        let Some(r) = self.reload.as_mut() else {
            return;
        };
        match r() {
            Ok(new) => {
                if new.scope != self.s.scope || new.event_log != self.s.event_log {
                    log::warn!(
                        "config reload: scope and event log changes need a restart; keeping {} and {}",
                        self.s.scope,
                        self.s.event_log.display()
                    );
                }
                if new.levels.psi != self.s.levels.psi {
                    // A new --psi: its window, and the kernel trigger for it (or none).
                    self.psi_window = new.levels.psi.map(|p| PsiWindow::new(p.window));
                    let armed = self.waker.set_psi(&mut self.scope, new.levels.psi);
                    for n in self.waker.notes.drain(..) {
                        log::warn!("{n}");
                    }
                    match new.levels.psi {
                        Some(p) if armed => {
                            log::info!("config reload: --psi {p}, PSI trigger registered")
                        }
                        Some(p) => log::info!("config reload: --psi {p}, no PSI trigger (polling)"),
                        None => log::info!("config reload: --psi off, PSI trigger removed"),
                    }
                }
                let keep_scope = self.s.scope.clone();
                let keep_log = self.s.event_log.clone();
                self.s = Settings {
                    scope: keep_scope,
                    event_log: keep_log,
                    ..new
                };
                self.ranker.reset_rules();
                let prefer_v2 = self.scope.mounts.v2_memory.is_some();
                if !self.ranker.has_cmdline_reader() {
                    self.ranker
                        .set_cmdline_reader(cmdline_reader(&self.s, prefer_v2));
                }
                if !self.ranker.has_cgroup_reader() {
                    self.ranker
                        .set_cgroup_reader(cgroup_reader(&self.s, prefer_v2));
                }
                log::info!("config reloaded: {} rules", self.s.policy.rules.len());
            }
            Err(e) => log::error!(
                "config reload refused, the old config stays in force: {}",
                crate::record::log::error_text(&e)
            ),
        }
    }

    /// One wake-up. Returns how long to wait for the next.
    fn tick(&mut self, wake: Wake) -> anyhow::Result<Duration> {
        let now = Instant::now();
        self.log.poke_reopen();
        // A PSI trigger dropped for an error (its group removed, perhaps made again under the
        // same name): registered again a second later, and again after each error, so that a
        // trigger that keeps failing costs a registration a second, not a spinning loop.
        if self.waker.take_broken_psi() {
            self.psi_rearm = Some(now + Duration::from_secs(1));
        }
        if self.psi_rearm.is_some_and(|t| now >= t) {
            self.psi_rearm = None;
            if self.waker.set_psi(&mut self.scope, self.s.levels.psi) {
                log::info!("PSI trigger registered again on {}", self.scope.label());
            } else if self.scope_group_gone() {
                // Its group is still gone (a restart takes longer than a second): tried again
                // each second until the group is made again. Given up after the first try,
                // the trigger never came back, and the guard woke for the group's pressure by
                // polling alone.
                self.psi_rearm = Some(now + Duration::from_secs(1));
            }
        }
        let floor = self.far_floor();
        let mem = match floor {
            Some(m) => m,
            None => match self.scope.memory() {
                Ok(m) => m,
                Err(e) => return Ok(self.scope_unreadable(now, &e)),
            },
        };
        // Readable again (a removed cgroup made again under its name): its processes are
        // listed afresh, and its kernel notifications checked and registered anew below.
        let back = self.unreadable.take().is_some_and(|(since, _)| {
            log::info!(
                "{} can be read again after {} s: guarding it again",
                self.scope.label(),
                since.elapsed().as_secs()
            );
            true
        });
        if back {
            self.ranker.mark_stale();
        }
        self.stillness
            .look(mem.available_kb, floor.is_some(), now, mem.total_kb);
        let levels = self.s.levels.resolve(&mem);
        // Pressure is read only when something uses it (a --psi trigger, metrics, the report).
        let pressure = if self.s.levels.psi.is_some()
            || self.next_report.is_some()
            || self.observers.iter().any(|o| o.wants_pressure())
        {
            self.read_pressure()
        } else {
            None
        };
        let (mut psi_some, mut psi_full, mut psi_user) = (None, None, None);
        if let Some(p) = pressure {
            psi_some = self.psi_some.push(now, p.some_total_us);
            psi_full = p.full_total_us.and_then(|t| self.psi_full.push(now, t));
            if let (Some(spec), Some(w)) = (self.s.levels.psi, self.psi_window.as_mut()) {
                psi_user = w
                    .push(now, p.total_us(spec.kind))
                    .map(|share| (spec, share));
            }
        }
        let mut scan_time = None;
        let mut scanned = 0;
        let mut bounded = false;
        let mut interrupted = false;
        let (sev, reason) = levels.evaluate(&mem, psi_user);

        // The kernel's OOM killer acted in the scope: record it, and hold back (for the system
        // scope, not for kills at a memory cgroup's own limit: `kernel_kill_check`). The
        // counter is read on every wake-up below a level (a choice follows, and its /proc reads
        // must not come after a kernel kill), before a rescan near the levels, every 50 ms
        // otherwise near them (recording is all that waits: there is no choice to hold back
        // above the levels, and `/proc/vmstat` costs four times the memory reading it guards),
        // every 5 s when far (idle CPU). Also on the first wake-up after a near one: memory that
        // came back at once may have come from a kernel kill, which is recorded now rather than
        // up to 5 s later.
        let near_now = sev != Severity::None || levels.near(&mem);
        let was_near = std::mem::replace(&mut self.was_near, near_now);
        self.waker.rearm_if_changed(
            &mut self.scope,
            &levels,
            &mem,
            back || matches!(wake, Wake::Threshold | Wake::PressureLevel),
            near_now,
        );
        for n in self.waker.notes.drain(..) {
            log::warn!("{n}");
        }
        let rescan = near_now
            && sev == Severity::None
            && (self.ranker.scan_under_way()
                || self
                    .ranker
                    .age()
                    .is_none_or(|a| a > Duration::from_millis(500)));
        let since = self.last_oom_check.elapsed();
        let check_kernel = sev != Severity::None
            || rescan
            || (was_near && !near_now)
            || (near_now && since >= NEAR_OOM_CHECK)
            || since >= FAR_OOM_CHECK;
        if check_kernel {
            self.kernel_kill_check(now, &mem, floor.is_none());
        }

        if rescan {
            let t = Instant::now();
            // The basis is taken when a scan starts, not for each slice.
            let basis = if self.ranker.scan_under_way() {
                ScanBasis::default()
            } else {
                self.basis(&mem)
            };
            // In one go, with a look every NEAR_SCAN_LOOK at what a wake-up would see.
            let mut look = NearLook {
                waker: &mut self.waker,
                spec: &self.s.levels,
                pressure: self.pressure.as_mut(),
                buf: &mut self.buf,
                psi_window: self.psi_window.as_ref(),
                oom_kills: self.last_oom_kills,
                kernel_looked: Instant::now(),
                stop: &self.flags.stop,
            };
            // Bounded when it can be: newcomers and the rows that could overtake the best
            // re-read, the rest allowed for by what was allocated since the last full scan.
            let done = self.ranker.refresh_near(
                &mut self.reader,
                &mut self.scope,
                &self.s.policy,
                basis,
                NEAR_SCAN_LOOK,
                &mut |scope| look.interrupts(scope),
            );
            interrupted = !done.finished;
            scanned = done.looked;
            bounded = done.bounded;
            scan_time = Some(t.elapsed());
            // Memory is near the levels but not below: read the likely victims' command lines
            // now, while that is still safe (see `victim_details`).
            if done.finished && self.details.is_some() {
                // After a bounded rescan the rows it passed over are as old as the last full
                // scan: the choice allows for what was allocated since (a scan under way has
                // a default basis: 0).
                let growth = basis.pgalloc.saturating_sub(self.ranker.pgalloc_at_scan());
                let sel = self.ranker.select(&mut self.reader, &self.s.policy, growth);
                self.prefetch_details(&sel);
            }
        }

        let sample = Sample {
            mem,
            levels,
            psi_some,
            psi_full,
            psi_some_avg10: pressure.map(|p| p.some_avg10),
            psi_full_avg10: pressure.and_then(|p| p.full_total_us.map(|_| p.full_avg10)),
            wake,
            scan: scan_time,
            scanned,
            bounded,
            floor: floor.is_some(),
        };
        for o in &mut self.observers {
            o.sample(&sample);
        }
        if let (Some(due), Some(every)) = (self.next_report, self.s.report_interval)
            && now >= due
        {
            self.next_report = Some(now + every);
            self.report(&mem, pressure);
        }

        if sev == Severity::None {
            self.dry_last = None;
            if levels.recovered(&mem) {
                self.hold = None;
                if self.backoff.take().is_some() {
                    log::info!("memory recovered in {}; kills re-armed", self.scope.label());
                }
            }
            // A rescan that stopped for something the loop must see: at once.
            if interrupted {
                return Ok(Duration::ZERO);
            }
            return Ok(self.poll_interval(&levels, &mem));
        }
        if let Some(h) = self.hold.as_mut() {
            if h.holds(now, mem.available_kb, levels.recovered(&mem)) {
                return Ok(Duration::from_millis(10));
            }
            self.hold = None;
        }
        self.decide_and_act(
            now,
            &mem,
            &levels,
            sev,
            reason.unwrap_or(Reason::LowMemoryTerm),
            psi_user,
        )
    }

    /// The scope's memory cannot be read: almost always a cgroup that was removed (its service
    /// stopped, its container gone, perhaps to be made again under the same name; or its last
    /// process was just killed by us and the manager removed the group). The guard does not
    /// exit, which would leave the group unguarded for good when it comes back: it says so
    /// once (again when the reason changes), looks again every [`UNREADABLE_POLL`], and
    /// guards the group again when it can read it. Returns the wait.
    fn scope_unreadable(&mut self, now: Instant, e: &crate::sense::scope::ScopeError) -> Duration {
        let why = e.to_string();
        let since = match self.unreadable.take() {
            Some((since, last)) if last == why => {
                self.unreadable = Some((since, last));
                // (The registration of a PSI trigger on the missing group fails each second.)
                for n in self.waker.notes.drain(..) {
                    log::debug!("{n}");
                }
                return UNREADABLE_POLL;
            }
            Some((since, _)) => since,
            None => now,
        };
        let gone = self.scope_group_gone();
        log::warn!(
            "cannot read the memory of {} ({why}){}: not guarding it until it can be read again, looking every {} s",
            self.scope.label(),
            if gone { "; the cgroup was removed" } else { "" },
            UNREADABLE_POLL.as_secs()
        );
        for n in self.waker.notes.drain(..) {
            log::debug!("{n}");
        }
        self.unreadable = Some((since, why));
        UNREADABLE_POLL
    }

    /// Whether the scope is a cgroup whose directory is gone (removed, not made again yet).
    fn scope_group_gone(&self) -> bool {
        self.scope
            .cgroup()
            .is_some_and(|c| !self.scope.root.path(&c.dir).is_dir())
    }

    /// Far from the levels, the machine's memory from `sysinfo(2)` with a floor for the
    /// available figure (`sense::floor`), when that floor alone shows the levels far: then the
    /// wake-up reads no meminfo (the 5 s check of the kernel's kill counter reads it only when
    /// the counter rose, for its record). `None` (read meminfo) for a cgroup or a fixture root,
    /// on the first wake-up after a near one, when `--psi` or the status report needs the
    /// kernel's figures, when an observer would not take the floor for them, and whenever the
    /// floor is near a level or its headroom would shorten the sleep (so a floor never adds
    /// wake-ups).
    fn far_floor(&mut self) -> Option<MemState> {
        if self.was_near || self.s.levels.psi.is_some() || self.next_report.is_some() {
            return None;
        }
        let m = self.scope.memory_floor()?;
        let levels = self.s.levels.resolve(&m);
        // Far enough that even the floor's headroom allows the longest sleep: the wake-up
        // cadence stays what the kernel's figure would give.
        let far = !levels.near(&m)
            && levels.evaluate(&m, None).0 == Severity::None
            && levels.next_poll_upto(&m, self.far_poll()) >= self.far_poll();
        (far && self.observers.iter().all(|o| o.accepts_floor(&m))).then_some(m)
    }

    /// The `--report-interval` status line. Runs once per interval, not per wake-up: the
    /// choice of the would-be victim may rescan the process table.
    fn report(&mut self, mem: &MemState, pressure: Option<Pressure>) {
        let pct = |part: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                part as f64 * 100.0 / total as f64
            }
        };
        let psi = match pressure {
            Some(p) => format!(
                "psi some {:.2}% full {:.2}% (avg10)",
                p.some_avg10, p.full_avg10
            ),
            None => "psi n/a".to_string(),
        };
        let sel = self.select(mem);
        let victim = match (&sel.victim, &sel.in_progress) {
            (_, Some((pid, comm))) => format!("{comm} ({pid}) is exiting, freeing its memory"),
            (Some(v), None) => format!(
                "{} ({}), rss {}, swap {}, score {}",
                v.comm,
                v.pid,
                human_kb(v.rss_kb),
                human_kb(v.swap_kb),
                v.score
            ),
            (None, None) => "none (no eligible process)".to_string(),
        };
        log::info!(
            "status {}: available {} of {} ({:.1}%), swap free {} of {}; {psi}; next victim: {victim}",
            self.scope.label(),
            human_kb(mem.available_kb),
            human_kb(mem.total_kb),
            pct(mem.available_kb, mem.total_kb),
            human_kb(mem.swap_free_kb),
            human_kb(mem.swap_total_kb),
        );
    }

    /// Takes the kernel's OOM kill counters as they are now: rises from here on are recorded.
    fn watch_kernel_kills(&mut self) {
        self.last_oom_kills = self.scope.kernel_oom_kills();
        self.last_memcg_kills = self.memcg_kills();
    }

    fn memcg_kills(&self) -> u64 {
        self.scope.oom_kinds().map_or(0, |k| k.memcg_kills())
    }

    /// Reads the kernel's OOM kill counter of the scope; when it rose since the last read,
    /// records a `kernel_kill` and holds choices back (`Hold`). True when it held back.
    fn kernel_kill_seen(&mut self, now: Instant, mem: &MemState) -> bool {
        self.kernel_kill_check(now, mem, true)
    }

    /// [`Daemon::kernel_kill_seen`]; when `mem` is a floor (`exact` false), the record and the
    /// hold take the kernel's figure, read only when the counter rose. For the system scope, a
    /// rise whose kills were all at a memory cgroup's own limit (the kernel log says so,
    /// `sense::kmsg`) is recorded but holds nothing back, and false is returned: such a kill
    /// frees nothing the machine is short of, and on a container host one container killed at
    /// its limit every second or two would otherwise keep the guard from ever choosing.
    fn kernel_kill_check(&mut self, now: Instant, mem: &MemState, exact: bool) -> bool {
        self.last_oom_check = now;
        let Some(k) = self.scope.kernel_oom_kills() else {
            return false;
        };
        let held = self
            .last_oom_kills
            .replace(k)
            .filter(|&p| k > p)
            .map_or(0, |p| k - p);
        let memcg = self.memcg_kills();
        let at_limit = memcg.saturating_sub(std::mem::replace(&mut self.last_memcg_kills, memcg));
        if held == 0 && at_limit == 0 {
            return false;
        }
        let mem = &if exact {
            *mem
        } else {
            self.scope.memory().unwrap_or(*mem)
        };
        let kinds = self.scope.oom_kinds();
        let held_kind = kinds.and_then(|k| k.last_held());
        let oom_memcg = kinds
            .filter(|_| at_limit > 0)
            .and_then(|k| k.last_memcg())
            .map(str::to_string);
        let ev = Event::KernelKill(ev::KernelKill {
            oom_kills: held + at_limit,
            counter: self.scope.oom_counter_source(),
            available_kb: Some(mem.available_kb),
            total_kb: Some(mem.total_kb),
            constraint: kinds.map(|_| {
                if held > 0 {
                    held_kind.map_or("unknown", |k| k.as_str())
                } else {
                    "memcg"
                }
                .to_string()
            }),
            held: kinds.map(|_| held > 0),
            oom_memcg,
            ..Default::default()
        });
        if held == 0 {
            log::info!(
                "the kernel's OOM killer killed {at_limit} process(es) in {} at the limit of memory cgroup {}, the group's own: not holding back",
                self.scope.label(),
                kinds.and_then(|k| k.last_memcg()).unwrap_or("(not named)")
            );
            self.append(ev);
            return false;
        }
        log::warn!(
            "the kernel's OOM killer killed {} process(es) in {}{}; holding back until memory recovers",
            held + at_limit,
            self.scope.label(),
            match held_kind {
                Some(RiseKind::Unknown(why)) => format!(" (of a kind not known: {})", why.as_str()),
                Some(k) => format!(" ({})", k.as_str()),
                None => String::new(),
            }
        );
        self.append(ev);
        self.hold = Some(Hold::new(now, mem.available_kb));
        true
    }

    /// The longest sleep far from the levels: [`MAX_POLL`], or [`FAR_POLL_WATCHED`] when the
    /// kernel wakes the daemon as the machine's memory use rises (v1 root group thresholds).
    fn far_poll(&self) -> Duration {
        if self.waker.watches_machine_usage() {
            FAR_POLL_WATCHED
        } else {
            MAX_POLL
        }
    }

    fn poll_interval(&self, levels: &Levels, mem: &MemState) -> Duration {
        let mut d = levels.next_poll_upto(mem, self.far_poll());
        if let Some(due) = self.next_report {
            d = d.min(due.saturating_duration_since(Instant::now()));
        }
        if let Some(p) = self.s.levels.psi {
            // Sample the stall counters often enough to see the window.
            d = d.min(p.window / 10).max(Duration::from_millis(5));
        }
        d
    }

    fn basis(&mut self, mem: &MemState) -> ScanBasis {
        ScanBasis {
            totalpages: mem.totalpages(self.reader.page_kb),
            swap_in_use: mem.swap_total_kb > mem.swap_free_kb,
            pgalloc: self.pgalloc(),
        }
    }

    fn refresh(&mut self, mem: &MemState) -> usize {
        let basis = self.basis(mem);
        self.ranker
            .refresh(&mut self.reader, &mut self.scope, &self.s.policy, basis)
    }

    fn select(&mut self, mem: &MemState) -> Selection {
        self.select_watching(mem, false).unwrap_or_default()
    }

    /// The choice: from the table as it is when its scan is recent and little was allocated
    /// since; from the table relisted ([`Ranker::relist_watching`]: newcomers read, the rest
    /// bounded by the growth) when much was; after a full rescan when the table is stale or
    /// the bound cannot settle the choice. `watch` (at the bottom of memory): the rescan stops
    /// when the kernel's OOM killer acts during it, and `None` is returned (see
    /// [`Ranker::refresh_watching`]).
    fn select_watching(&mut self, mem: &MemState, watch: bool) -> Option<Selection> {
        let kills = if watch { self.last_oom_kills } else { None };
        let basis = self.basis(mem);
        // A scan begun near the levels is finished (what is left of it) rather than started
        // over, when its listing is recent enough for the table it makes to be used.
        if self
            .ranker
            .scan_under_way_since()
            .is_some_and(|(listed, pgalloc)| {
                listed.elapsed() <= TABLE_MAX_AGE
                    && basis.pgalloc.saturating_sub(pgalloc) <= basis.totalpages / 20
            })
        {
            self.ranker.finish_watching(
                &mut self.reader,
                &mut self.scope,
                &self.s.policy,
                kills,
            )?;
        }
        let growth = basis.pgalloc.saturating_sub(self.ranker.pgalloc_at_scan());
        let recent = self.ranker.age().is_some_and(|a| a <= TABLE_MAX_AGE);
        if recent && growth <= basis.totalpages / 20 {
            return Some(self.ranker.select(&mut self.reader, &self.s.policy, growth));
        }
        // Much allocated since a recent scan (a storm between the rescan near the levels and
        // the trigger): the processes are listed again, newcomers read, and the choice allows
        // for the growth; a full rescan only when the choice cannot settle within its reads.
        if recent
            && self.ranker.relist_watching(
                &mut self.reader,
                &mut self.scope,
                &self.s.policy,
                basis,
                kills,
            )?
        {
            let sel = self.ranker.select(&mut self.reader, &self.s.policy, growth);
            if sel.bounded {
                return Some(sel);
            }
        }
        // A stale table, or too much allocated since for the bound to settle the choice.
        self.ranker.refresh_watching(
            &mut self.reader,
            &mut self.scope,
            &self.s.policy,
            basis,
            kills,
        )?;
        Some(self.ranker.select(&mut self.reader, &self.s.policy, 0))
    }

    fn trigger_rec(
        mem: &MemState,
        levels: &Levels,
        sev: Severity,
        reason: Reason,
        psi: Option<(crate::values::PsiSpec, f64)>,
    ) -> ev::Trigger {
        ev::Trigger {
            reason: reason.as_str().to_string(),
            severity: sev.as_str().to_string(),
            available_kb: mem.available_kb,
            total_kb: mem.total_kb,
            swap_free_kb: mem.swap_free_kb,
            swap_total_kb: mem.swap_total_kb,
            mem_term_kb: levels.mem_term_kb,
            mem_kill_kb: levels.mem_kill_kb,
            swap_term_kb: levels.swap_term_kb,
            swap_kill_kb: levels.swap_kill_kb,
            psi: psi.map(|(spec, share)| ev::Psi {
                kind: spec.kind.as_str().to_string(),
                share_pct: crate::values::round_to(share, 100.0),
                level_pct: spec.pct.0,
                window_ms: spec.window.as_millis() as u64,
            }),
            extra: ev::Extra::new(),
        }
    }

    /// Writes `event` to the event log and hands the record to the observers.
    fn append(&mut self, event: Event) -> Option<ev::Record> {
        let rec = self.log.append(event);
        self.recorded(rec)
    }

    /// Hands an appended record to the observers (or logs why it could not be appended).
    fn recorded(
        &mut self,
        rec: Result<ev::Record, crate::record::eventlog::EventLogError>,
    ) -> Option<ev::Record> {
        match rec {
            Ok(rec) => {
                for o in &mut self.observers {
                    o.record(&rec);
                }
                Some(rec)
            }
            Err(e) => {
                log::error!("{e}");
                None
            }
        }
    }

    fn decide_and_act(
        &mut self,
        now: Instant,
        mem: &MemState,
        levels: &Levels,
        sev: Severity,
        reason: Reason,
        psi: Option<(crate::values::PsiSpec, f64)>,
    ) -> anyhow::Result<Duration> {
        let faults0 = faults_now();
        if !self.s.dry_run
            && let Some(b) = self.backoff
        {
            if b.rearms(mem.available_kb) {
                log::info!(
                    "memory in {} fell by another {} since the kill that freed nothing; kills re-armed",
                    self.scope.label(),
                    human_kb(b.available_kb - mem.available_kb)
                );
                self.backoff = None;
            } else {
                if self
                    .warned_backoff
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
                {
                    log::warn!(
                        "memory is still low in {} ({} of {} available) but the last kill freed almost nothing; not killing more until memory recovers or falls further",
                        self.scope.label(),
                        human_kb(mem.available_kb),
                        human_kb(mem.total_kb)
                    );
                    self.warned_backoff = Some(Instant::now());
                }
                return Ok(Duration::from_millis(100));
            }
        }
        let Some(sel) = self.select_watching(mem, true) else {
            // The kernel's OOM killer acted during the rescan: its victim is freeing memory.
            log::info!(
                "the kernel's OOM killer acted while {} was being scanned; not choosing now",
                self.scope.label()
            );
            self.kernel_kill_seen(Instant::now(), mem);
            return Ok(Duration::from_millis(10));
        };
        let decision_us = now.elapsed().as_micros() as u64;
        // Logged when this call returns, or right after the signal if there is one: logging
        // is nothing a signal should wait for, and the log's code is not the kill path's.
        let decision_debug = DeferredDebug(log::log_enabled!(log::Level::Debug).then(|| {
            decision_line(
                decision_us,
                sel.victim.as_ref(),
                sel.precise_reads,
                self.ranker.len(),
            )
        }));
        match (
            &sel.in_progress,
            self.progress
                .waits(sel.in_progress.as_ref().map(|p| p.0), now),
        ) {
            (Some((pid, comm)), ProgressWait::Waits) => {
                if self
                    .warned_progress
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                {
                    log::info!(
                        "{comm} ({pid}) is already being killed; waiting for its memory to be freed before choosing anyone"
                    );
                    self.warned_progress = Some(Instant::now());
                }
                return Ok(Duration::from_millis(10));
            }
            (Some((pid, comm)), ProgressWait::GaveUp { first }) if first => {
                log::warn!(
                    "{comm} ({pid}) has been dying for {} s without freeing its memory (stuck in the kernel, as in uninterruptible sleep on storage that does not answer?); no longer waiting for it: choosing among the others",
                    PROGRESS_MAX.as_secs()
                );
            }
            _ => {}
        }
        // The best candidate whose signal has not failed before.
        let refused = &self.refused;
        let allowed = |c: &&Candidate| !refused.contains(&(c.pid, c.starttime));
        let pick = sel
            .victim
            .as_ref()
            .filter(allowed)
            .or_else(|| sel.candidates.iter().find(allowed))
            .cloned();
        let Some(victim) = pick else {
            if self
                .warned_nothing
                .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
            {
                log::warn!(
                    "memory is low in {} ({} of {} available) but no process may be killed ({})",
                    self.scope.label(),
                    human_kb(mem.available_kb),
                    human_kb(mem.total_kb),
                    if sel.victim.is_some() {
                        "our signals to the remaining candidates failed; waiting"
                    } else {
                        "all protected or immune"
                    }
                );
                self.warned_nothing = Some(Instant::now());
            }
            return Ok(Duration::from_millis(100));
        };
        if self.s.dry_run {
            let fresh = match self.dry_last {
                None => true,
                Some((pid, start, at)) => {
                    pid != victim.pid
                        || start != victim.starttime
                        || at.elapsed() >= Duration::from_secs(10)
                }
            };
            if fresh {
                // The record's time and the rate limit's instant are taken together: the
                // records of one would-be victim are stamped at least 10 s apart.
                let stamp = crate::record::eventlog::now_rfc3339();
                self.dry_last = Some((victim.pid, victim.starttime, Instant::now()));
                let (cmdline, cgroup) = self.victim_details(&victim);
                log::info!(
                    "dry run: would send {} to {} ({}), score {}, rss {}: {} ({} of {} available)",
                    if sev == Severity::Kill {
                        "SIGKILL"
                    } else {
                        "SIGTERM"
                    },
                    victim.comm,
                    victim.pid,
                    victim.score,
                    human_kb(victim.rss_kb),
                    reason.as_str(),
                    human_kb(mem.available_kb),
                    human_kb(mem.total_kb)
                );
                let d = decision(
                    Self::trigger_rec(mem, levels, sev, reason, psi),
                    victim_rec(&victim, cmdline, cgroup),
                    &sel.candidates,
                    (&self.s.kill_unit.to_string(), None),
                    decision_us,
                );
                let rec = self.log.append_at(stamp, Event::DryRun(d));
                self.recorded(rec);
            }
            return Ok(self
                .poll_interval(levels, mem)
                .min(Duration::from_millis(100)));
        }

        // Every /proc read below allocates a page in the kernel. If the kernel's OOM killer
        // acted during the scan, its victim is still freeing memory, and an allocation now can
        // make the kernel kill a second, innocent process: look at its counter first (a read of
        // the kept /proc/vmstat, no allocation) and hold back.
        if self.kernel_kill_seen(Instant::now(), mem) {
            log::info!(
                "not signalling {} ({}): the kernel's OOM killer acted while it was chosen",
                victim.comm,
                victim.pid
            );
            return Ok(Duration::from_millis(10));
        }
        // `--kill-unit cgroup`: the victim's cgroup from the side readers, not read on the loop
        // (only then: the lookup copies the facts, and nothing else allocates before the
        // signal).
        let group = self.victim_group(&victim);
        let unread = group == VictimGroup::Unread;
        let mut kill = match Kill::plan_in(
            &mut self.reader,
            &self.scope,
            self.s.kill_unit,
            &victim,
            now,
            group,
        ) {
            Ok(k) => k,
            Err(e) => {
                log::info!(
                    "not signalling {} ({}): {e}; choosing again",
                    victim.comm,
                    victim.pid
                );
                if matches!(e, crate::act::pidfd::TargetError::Gone(_)) {
                    // Ended by someone else, usually the kernel's OOM killer: its memory is on
                    // the way back. No /proc rescan now: its allocations at the bottom of
                    // memory made the kernel kill a bystander while the victim was being torn
                    // down. The next wake-up sees the kernel's kill and holds back.
                    return Ok(Duration::from_millis(10));
                }
                self.ranker.mark_stale();
                return Ok(Duration::ZERO);
            }
        };
        // The contract: a record is "appended and fsynced before the next action". The writer
        // thread fsyncs each record right after writing it, so the records of earlier actions
        // are normally long on disk by now and this is one uncontended lock. On a stalled disk
        // the kill waits at most `SYNC_WAIT` for them, then goes on: a guard held up by its
        // own log would be blind (see `record::eventlog::SYNC_WAIT`). Before the kernel's
        // counter is read again: the kernel may act while this waits.
        let synced = self.log.sync(crate::record::eventlog::SYNC_WAIT);
        // The kernel's OOM killer may have acted since this wake-up read its counter: its victim
        // can drop out of the choice before /proc shows it exiting (a thread group whose leader
        // is already a zombie reads as 0 rss while the other threads still free the memory), so
        // the choice just made may be an innocent. Read the counter again last thing before the
        // signal; the pidfd is closed unused.
        if self.kernel_kill_seen(Instant::now(), mem) {
            log::info!(
                "not signalling {} ({}): the kernel's OOM killer acted while it was chosen",
                victim.comm,
                victim.pid
            );
            return Ok(Duration::from_millis(10));
        }
        // A v2 cgroup goes at once through cgroup.kill (SIGKILL), as memory.oom.group and
        // systemd-oomd do: a service whose main process dies of SIGTERM exited cleanly for
        // systemd, and Restart=on-failure would leave it down.
        let first = if sev == Severity::Kill || kill.cgroup_kill.is_some() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        kill.signal_all(first);
        let to_signal = faults_since(faults0);
        drop(decision_debug);
        kill.log_walk();
        if !synced {
            log::warn!(
                "event log {}: earlier records were not on disk {} ms after this kill was \
                 decided (a slow or stalled disk); signalled without waiting longer",
                self.log.path().display(),
                crate::record::eventlog::SYNC_WAIT.as_millis()
            );
        }
        if unread {
            log::info!(
                "the cgroup of {} ({}) was not read in time; killed it alone (its cgroup is \
                 not read on the guard's loop at the bottom of memory)",
                victim.comm,
                victim.pid
            );
        }
        // The record is built only now, after the signal: it copies the candidates and the
        // victim's facts into fresh allocations, which at the bottom of memory can wait in
        // reclaim. The details were read ahead (`victim_details` only looks them up).
        let (cmdline, cgroup) = self.victim_details(&victim);
        let mut pre = decision(
            Self::trigger_rec(mem, levels, sev, reason, psi),
            victim_rec(&victim, cmdline, cgroup),
            &sel.candidates,
            kill.unit_record(),
            decision_us,
        );
        if let Some(f) = kill.victim_failed() {
            // Not a kill. ESRCH: the victim ended between the choice and the signal, almost
            // always by the kernel's OOM killer (often invoked by this very decision's reads);
            // its memory is on the way back, so choosing the next candidate now would take an
            // innocent, and a /proc rescan at the bottom of memory can make the kernel take one
            // too: hold back as after a kernel kill. Any other error (EPERM): never choose this
            // process again, try the next one.
            let gone = f.errno == Some("ESRCH");
            log::warn!(
                "could not signal {} ({}): {}; not a kill{}",
                victim.comm,
                victim.pid,
                f.error.as_deref().unwrap_or("unknown error"),
                if gone { ", waiting for its memory" } else { "" }
            );
            if !gone {
                if self.refused.len() >= MAX_REFUSED {
                    self.refused.remove(0);
                }
                self.refused.push((victim.pid, victim.starttime));
            }
            let more = !gone
                && sel
                    .candidates
                    .iter()
                    .any(|c| !self.refused.contains(&(c.pid, c.starttime)));
            pre.ok = Some(false);
            pre.signals = Some(kill.signals.iter().map(ev::Signal::from).collect());
            pre.then = Some(if more { "next_candidate" } else { "wait" }.to_string());
            self.append(Event::KillFailed(pre));
            if gone {
                self.kernel_kill_seen(Instant::now(), mem);
                self.hold = Some(Hold::new(Instant::now(), mem.available_kb));
                return Ok(Duration::from_millis(10));
            }
            self.ranker.mark_stale();
            return Ok(if more {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            });
        }
        // SIGKILL (now or at the escalation) hands a member that has not exited 200 ms later to
        // the reaper thread; the loop never waits for its `process_mrelease`.
        kill.reap_with(self.reaper.as_ref());
        if first == Signal::KILL {
            kill.release();
        }
        // The pre-kill hooks start now, with the signal sent: a hook is a thread and a
        // process, its record JSON and environment allocations, none of which may come
        // between the choice and the signal (a hook could never have stopped the kill anyway:
        // it ran beside it). The victim may still be alive (SIGTERM and its grace time).
        if !self.observers.is_empty() {
            let before = pre_kill_record(&self.log, &pre);
            for o in &mut self.observers {
                o.kill_signalled(&before, false);
            }
        }
        log::info!(
            "sent {} to {} ({}){}, score {}, rss {}, swap {}: {} ({} of {} available, term level {})",
            if first == Signal::KILL {
                "SIGKILL"
            } else {
                "SIGTERM"
            },
            victim.comm,
            victim.pid,
            if kill.others.is_empty() {
                String::new()
            } else {
                format!(" and {} more ({})", kill.others.len(), kill.unit_note)
            },
            victim.score,
            human_kb(victim.rss_kb),
            human_kb(victim.swap_kb),
            reason.as_str(),
            human_kb(mem.available_kb),
            human_kb(mem.total_kb),
            human_kb(levels.mem_term_kb),
        );
        let outcome = self.escalate(&mut kill, first, mem.available_kb);
        if outcome.stuck {
            self.progress.given_up(victim.pid, Instant::now());
        }
        let faults = KillFaults {
            to_signal,
            to_outcome: faults_since(faults0),
        };
        log::debug!(
            "page faults of the kill: {} minor, {} major ({} blocks read) to the first signal; {} minor, {} major ({} blocks read) to the outcome",
            faults.to_signal.minflt,
            faults.to_signal.majflt,
            faults.to_signal.inblock,
            faults.to_outcome.minflt,
            faults.to_outcome.majflt,
            faults.to_outcome.inblock
        );
        let freed_kb = outcome.freed_kb;
        let exited = outcome.exited;
        match outcome.exit_ms {
            Some(ms) => log::info!(
                "{} ({}) exited after {ms} ms; {} freed",
                victim.comm,
                victim.pid,
                human_kb(outcome.freed_kb)
            ),
            None => log::info!(
                "{} ({}) did NOT exit{}; {} freed",
                victim.comm,
                victim.pid,
                if outcome.stuck {
                    " (stuck: not waited for)"
                } else {
                    ""
                },
                human_kb(outcome.freed_kb)
            ),
        }
        pre.ok = Some(true);
        pre.signals = Some(kill.signals.iter().map(ev::Signal::from).collect());
        pre.outcome = Some(outcome);
        pre.faults = Some(faults);
        // The record, its observers and the backoff check. When memory is back above the
        // levels they are not urgent and run at the base nice (`act::harden`): in the VM fork
        // storm (one slow emulated CPU), this bookkeeping and the rescan that used to follow it
        // took 8–21 ms of CPU at −20 right after the tree died (5 traced runs), and in one run
        // held a 10 ms heartbeat up 25 ms. Below the levels another choice may be due at once:
        // −20, as the kill was.
        let calm = self
            .scope
            .memory()
            .is_ok_and(|m| self.s.levels.resolve(&m).evaluate(&m, None).0 == Severity::None);
        let finish = |d: &mut Self| {
            d.append(Event::Kill(pre));
            // A kernel kill during the escalation is recorded too, and holds the next choice
            // back.
            d.kernel_kill_seen(Instant::now(), mem);
            // A victim that did not exit freed nothing because it still lives, not because
            // files hold the memory: no backoff, the next choice takes another.
            if exited {
                d.check_freed(&victim, freed_kb);
            }
        };
        if calm {
            // The kill's pidfds are closed there too (a tree's: one per member).
            crate::act::harden::at_base_priority(|| {
                drop(kill);
                finish(self)
            });
        } else {
            finish(self);
        }
        // The next choice rescans in full when it comes, not now: a rescan at −20 right after
        // the kill takes the CPU just when memory came back, and is stale by then anyway.
        self.ranker.mark_stale();
        Ok(Duration::ZERO)
    }

    /// The victim's command line and memory cgroup, for the record, if they were read ahead
    /// (see [`crate::sense::details`]: at the bottom of memory they are never read).
    fn victim_details(&mut self, v: &Candidate) -> (String, Option<String>) {
        if let Some(f) = self
            .details
            .as_ref()
            .and_then(|d| d.cached((v.pid, v.starttime)))
        {
            return f;
        }
        let level = if self.said_unread == Some((v.pid, v.starttime)) {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        self.said_unread = Some((v.pid, v.starttime));
        log::log!(
            level,
            "the command line of {} ({}) was not read ahead; it is not read at the bottom of \
             memory (the read would keep the process's memory from being freed), recording \
             without it",
            v.comm,
            v.pid
        );
        (String::new(), None)
    }

    /// The victim's memory cgroup for `--kill-unit cgroup` (see [`victim_group`]); other
    /// units need none.
    fn victim_group(&self, v: &Candidate) -> VictimGroup {
        if self.s.kill_unit != KillUnit::Cgroup {
            return VictimGroup::ReadNow;
        }
        victim_group(
            self.details.as_ref(),
            self.ranker.cgroup_reader(),
            (v.pid, v.starttime),
            GROUP_WAIT,
        )
    }

    /// Reads ahead the facts of the likely victims (near the levels, see `victim_details`):
    /// the candidates, best first (the victim is the first of them when it is one).
    fn prefetch_details(&mut self, sel: &Selection) {
        if let Some(d) = &self.details {
            d.prefetch(
                sel.victim
                    .iter()
                    .chain(sel.candidates.iter())
                    .map(|c| (c.pid, c.starttime)),
            );
        }
    }

    /// After a kill: if it freed almost nothing and memory is still below the levels, the memory
    /// is held by something no exit frees (tmpfs/shm files, pinned page cache). Killing more
    /// would only kill innocents, so record why and back off.
    fn check_freed(&mut self, victim: &Candidate, freed_kb: u64) {
        // Unreadable (the group removed with its last process): nothing left to back off for.
        let Ok(mem) = self.scope.memory() else {
            return;
        };
        let tiny_kb = (mem.total_kb / 64).max(1024);
        if !Backoff::freed_nothing(freed_kb, tiny_kb, victim.rss_kb) {
            return;
        }
        let levels = self.s.levels.resolve(&mem);
        let (sev, _) = levels.evaluate(&mem, None);
        if sev == Severity::None {
            return;
        }
        let backoff = Backoff {
            available_kb: mem.available_kb,
            tiny_kb,
        };
        let (shmem_kb, shmem_source) = self.shmem_kb();
        log::warn!(
            "killing {} ({}) freed only {} and {} still has {} of {} available{}: backing off (no more kills until memory recovers or falls by another {})",
            victim.comm,
            victim.pid,
            human_kb(freed_kb),
            self.scope.label(),
            human_kb(mem.available_kb),
            human_kb(mem.total_kb),
            shmem_kb.map_or(String::new(), |s| format!(
                "; {} are tmpfs/shm files ({shmem_source}), which no kill frees",
                human_kb(s)
            )),
            human_kb(backoff.fall_kb())
        );
        let rec = ev::Backoff {
            pid: victim.pid,
            comm: victim.comm.clone(),
            rss_kb: victim.rss_kb,
            freed_kb,
            tiny_kb,
            available_kb: mem.available_kb,
            total_kb: mem.total_kb,
            mem_term_kb: levels.mem_term_kb,
            shmem_kb,
            shmem_source,
            reason: "the kill freed almost nothing while memory stayed low (tmpfs/shm files or pinned page cache hold it)".to_string(),
            extra: ev::Extra::new(),
        };
        self.append(Event::KillBackoff(rec));
        self.backoff = Some(backoff);
        self.warned_backoff = Some(Instant::now());
    }

    /// Memory held by tmpfs/shm files in the scope, in kB, and where it was read.
    fn shmem_kb(&self) -> (Option<u64>, String) {
        let (path, key, unit) = match self.scope.cgroup() {
            None => (PathBuf::from("/proc/meminfo"), "Shmem:", 1),
            Some(c) => (
                c.dir.join("memory.stat"),
                match c.version {
                    crate::sense::cgroup::CgVersion::V1 => "total_shmem",
                    crate::sense::cgroup::CgVersion::V2 => "shmem",
                },
                1024,
            ),
        };
        let text = std::fs::read_to_string(self.s.root.path(&path)).unwrap_or_default();
        let v = text.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(key))
                .then(|| f.next()?.parse::<u64>().ok())
                .flatten()
        });
        (v.map(|v| v / unit), format!("{} {key}", path.display()))
    }

    /// Drops the pages only start-up used, locks memory on fault, and warms the kill path up
    /// so that its pages are resident and locked; then returns the heap's free pages. At start
    /// and once more when start-up has settled ([`SETTLE`]). Returns the warning if memory
    /// could not be locked.
    fn lock_working_set(&mut self) -> Option<String> {
        let note = crate::act::harden::trim_and_lock();
        // After the lock: what the warm-up faults in stays (MCL_FUTURE | MCL_ONFAULT).
        self.warm_up();
        crate::act::harden::release_free_heap();
        note
    }

    /// A decision (at start and at the settle) that runs the kill path's code without
    /// signalling anyone: the observers' warm-up (a warning's line and record), the choice
    /// (after a full scan and after a relisting), pinning (ourselves, by pidfd), signal 0 through the pidfd, the hand-over to the reaper thread
    /// and its `process_mrelease` (refused for a live process), the decision's debug line,
    /// the record's serialization with every trigger a kill can carry, the observers'
    /// `kill_signalled` (in warm-up mode: nothing launched), numbers of every magnitude
    /// formatted
    /// ([`crate::record::warm_number_formatting`]). Runs after `mlockall`
    /// (`MCL_FUTURE | MCL_ONFAULT`), so every page it touches stays resident and the first real
    /// kill takes no page faults.
    fn warm_up(&mut self) {
        let f0 = faults_now();
        crate::record::warm_number_formatting();
        let Ok(mem) = self.scope.memory() else {
            return;
        };
        let levels = self.s.levels.resolve(&mem);
        let _ = levels.evaluate(&mem, None);
        let _ = self.scope.kernel_oom_kills();
        // What observers do on their own as memory runs short (a warning's line and record).
        for o in &mut self.observers {
            o.warm_up(&mem);
            // What they do while a kill is under way (a ping only if one is due anyway).
            o.alive();
        }
        // The event log's writer thread: what it runs before a write (the kill waits for it).
        self.log.warm_up();
        let sel = self.select(&mem);
        // The rescan near the levels (bounded right after the choice's full scan; in full from
        // the task iterator's rows), whose code is otherwise first run near the levels, when
        // memory is short: without looks (`every` never passes), so it is done, not left under
        // way.
        let basis = self.basis(&mem);
        std::hint::black_box(self.ranker.refresh_near(
            &mut self.reader,
            &mut self.scope,
            &self.s.policy,
            basis,
            Duration::MAX,
            &mut |_| false,
        ));
        // The choice after a relisting (much allocated since a recent scan) runs other code.
        let kills = self.last_oom_kills;
        if self.ranker.relist_watching(
            &mut self.reader,
            &mut self.scope,
            &self.s.policy,
            basis,
            kills,
        ) == Some(true)
        {
            std::hint::black_box(
                self.ranker
                    .select(&mut self.reader, &self.s.policy, 0)
                    .bounded,
            );
        }
        let me = std::process::id() as i32;
        let Ok(st) = self.reader.stat(me) else {
            return;
        };
        let cand = Candidate::unscored(me, st.starttime, "oomguard");
        // The kill's wait for earlier records (nothing queued now: no wait).
        std::hint::black_box(self.log.sync(Duration::ZERO));
        let allowed = |c: &&Candidate| !self.refused.contains(&(c.pid, c.starttime));
        let _ = sel.candidates.iter().find(allowed);
        let (cmdline, cgroup) = self
            .details
            .as_ref()
            .and_then(|d| d.read((me, st.starttime), Duration::from_secs(1)))
            .unwrap_or_default();
        let _ = self.victim_details(&cand);
        self.ranker
            .warm_cmdline_reader(&mut self.reader, (me, st.starttime));
        let group = self.victim_group(&cand);
        let now = Instant::now();
        match Kill::plan_in(
            &mut self.reader,
            &self.scope,
            self.s.kill_unit,
            &cand,
            now,
            group,
        ) {
            Ok(mut kill) => {
                kill.probe_all();
                let _ = kill.victim_failed();
                let _ = kill.all_exited();
                // Hands ourselves to the reaper thread, which the kernel refuses (a live
                // process) without waiting on anything: the hand-over and the thread's call
                // are resident for the first real one.
                kill.reap_with(self.reaper.as_ref());
                kill.release();
                let decision_us = now.elapsed().as_micros() as u64;
                // The decision's debug line as the real decision formats it (text pages of
                // both the line and the victim's part).
                std::hint::black_box(decision_line(
                    decision_us,
                    Some(&cand),
                    sel.precise_reads,
                    self.ranker.len(),
                ));
                // Every trigger a real kill can record: each one's text (`term`,
                // `low_memory_term`, `pressure`, …) lies on its own page of the binary, and a
                // page the warm-up leaves out is read from disk at the first real kill.
                let psi = crate::values::PsiSpec {
                    kind: crate::values::PsiKind::Full,
                    pct: crate::values::Pct(0.0),
                    window: Duration::from_secs(2),
                };
                for (sev, reason, psi) in [
                    (Severity::Term, Reason::LowMemoryTerm, None),
                    (Severity::Term, Reason::Pressure, Some((psi, 0.0))),
                    (Severity::Kill, Reason::Pressure, Some((psi, 0.0))),
                ] {
                    let trigger = Self::trigger_rec(&mem, &levels, sev, reason, psi);
                    let _ = self.log.render(Event::Kill(decision(
                        trigger,
                        victim_rec(&cand, String::new(), None),
                        &[],
                        ("process", Some(String::new())),
                        decision_us,
                    )));
                }
                let mut d = decision(
                    Self::trigger_rec(&mem, &levels, Severity::Kill, Reason::LowMemoryKill, None),
                    victim_rec(&cand, cmdline, cgroup),
                    &sel.candidates,
                    kill.unit_record(),
                    decision_us,
                );
                if !self.observers.is_empty() {
                    let before = pre_kill_record(&self.log, &d);
                    for o in &mut self.observers {
                        o.kill_signalled(&before, true);
                    }
                }
                d.ok = Some(true);
                d.signals = Some(kill.signals.iter().map(ev::Signal::from).collect());
                d.outcome = Some(Outcome {
                    exited: false,
                    exit_ms: None,
                    freed_kb: 0,
                    released: kill.released(),
                    release_pending: kill.release_pending(),
                    stuck: false,
                    available_after_kb: mem.available_kb,
                });
                d.faults = Some(KillFaults {
                    to_signal: faults_since(f0),
                    to_outcome: Faults::default(),
                });
                // The record as the writer renders it, not written.
                let _ = self.log.render(Event::Kill(d));
            }
            Err(e) => log::warn!("kill path warm-up: cannot pin ourselves ({e})"),
        }
        let f = faults_since(f0);
        log::debug!(
            "kill path warmed up ({} minor, {} major page faults)",
            f.minflt,
            f.majflt
        );
    }

    /// SIGTERM → SIGKILL through [`crate::act::escalate`], reading the scope's memory; then
    /// the outcome record's figures.
    fn escalate(&mut self, kill: &mut Kill, first: Signal, avail_before: u64) -> Outcome {
        let (scope, spec, observers) = (&mut self.scope, &self.s.levels, &mut self.observers);
        let mut read = || -> Option<Reading> {
            // The loop has no wake-up until the kill is over: systemd's watchdog is pinged
            // from here.
            for o in observers.iter_mut() {
                o.alive();
            }
            let mem = scope.memory().ok()?;
            let levels = spec.resolve(&mem);
            let sev = levels.evaluate(&mem, None).0;
            Some(Reading {
                available_kb: mem.available_kb,
                below_kill: sev == Severity::Kill,
                below_term: sev != Severity::None,
                recovered: levels.recovered(&mem),
                next_look: levels.next_kill_poll(&mem),
            })
        };
        let e = crate::act::escalate::escalate(
            kill,
            first,
            self.s.term_grace,
            &self.flags.stop,
            avail_before,
            &mut read,
        );
        Outcome {
            exited: e.exit_ms.is_some(),
            exit_ms: e.exit_ms,
            freed_kb: e.available_after_kb.saturating_sub(avail_before),
            released: kill.released(),
            release_pending: kill.release_pending(),
            stuck: e.stuck,
            available_after_kb: e.available_after_kb,
        }
    }
}

/// The debug line of a decision: how long it took and whom it chose.
fn decision_line(
    decision_us: u64,
    victim: Option<&Candidate>,
    precise_reads: usize,
    table: usize,
) -> String {
    format!(
        "decision in {decision_us} us: {} ({precise_reads} precise reads, {table} processes in the table)",
        victim.map_or("no victim".to_string(), |v| format!(
            "{} ({}) score {}",
            v.comm, v.pid, v.score
        )),
    )
}

/// The `kill` record the observers see right after the signal (the pre-kill hooks): not
/// written yet, with the scope and host that it will be written with.
fn pre_kill_record(log: &EventLog, pre: &ev::Decision) -> ev::Record {
    log.stamp(Event::Kill(pre.clone()))
}

/// A debug line logged when dropped (see `decide_and_act`).
struct DeferredDebug(Option<String>);

impl Drop for DeferredDebug {
    fn drop(&mut self) {
        if let Some(line) = self.0.take() {
            log::debug!("{line}");
        }
    }
}

/// The victim as a record names it.
fn victim_rec(v: &Candidate, cmdline: String, cgroup: Option<String>) -> ev::Victim {
    ev::Victim {
        pid: v.pid,
        comm: v.comm.clone(),
        cmdline,
        uid: v.uid,
        rss_kb: v.rss_kb,
        swap_kb: v.swap_kb,
        pgtables_kb: v.pgtables_kb,
        oom_score_adj: v.oom_score_adj,
        score: v.score,
        badness: v.badness,
        cgroup,
        rule: v.rule.clone(),
        extra: ev::Extra::new(),
    }
}

/// A `kill`, `kill_failed` or `dry_run` decision before anything was signalled.
fn decision(
    trigger: ev::Trigger,
    victim: ev::Victim,
    candidates: &[Candidate],
    (kill_unit, kill_unit_note): (&str, Option<String>),
    decision_us: u64,
) -> ev::Decision {
    ev::Decision {
        trigger,
        victim,
        candidates: candidates.iter().map(ev::Candidate::from).collect(),
        kill_unit: kill_unit.to_string(),
        kill_unit_note,
        decision_us,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--kill-unit cgroup` never reads the victim's cgroup on the loop when side readers run:
    /// it takes the facts read ahead, else asks the cgroup readers and waits a little; a read
    /// that does not answer (a FIFO here, as a read waiting on `cgroup_mutex`) leaves the group
    /// unread (the victim is killed alone) instead of holding the loop. Without cgroup readers
    /// the kill reads it itself.
    #[test]
    fn the_victims_cgroup_is_taken_from_the_side_readers_and_a_stuck_read_waits_little() {
        use rustix::fs::{Mode, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = |pid: i32, cgroup: Option<&str>| {
            let p = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} (x) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 100000 10 18446744073709551615 0 0\n"),
            )
            .unwrap();
            std::fs::write(p.join("cmdline"), b"x\0").unwrap();
            match cgroup {
                Some(c) => std::fs::write(p.join("cgroup"), c).unwrap(),
                None => rustix::fs::mkfifoat(
                    rustix::fs::CWD,
                    p.join("cgroup"),
                    Mode::from_raw_mode(0o600),
                )
                .unwrap(),
            }
            p.join("cgroup")
        };
        proc_dir(42, Some("0::/system.slice/a.service\n"));
        proc_dir(44, Some("0::/system.slice/b.service\n"));
        let fifo = proc_dir(43, None);
        let root = Root::new(dir.path());
        let ahead = Details::start(&root, true, None).unwrap();
        let cgroups = Details::start_cgroups(&root, true, None).unwrap();
        let wait = Duration::from_secs(5);
        let known = |s: &str| VictimGroup::Known(Some(s.into()));

        // Asked of the cgroup readers. (A read that takes 5 ms is given up on: on a loaded
        // machine a reader can be preempted that long; asked again then.)
        let asked = |ahead: Option<&Details>, who| {
            (0..5)
                .map(|_| victim_group(ahead, Some(&cgroups), who, wait))
                .find(|g| *g != VictimGroup::Unread)
                .unwrap_or(VictimGroup::Unread)
        };
        assert_eq!(
            asked(Some(&ahead), (42, 777)),
            known("/system.slice/a.service")
        );
        // Read ahead: taken as read, without the cgroup readers.
        assert!(ahead.read((44, 777), wait).is_some());
        std::fs::write(dir.path().join("proc/44/cgroup"), "0::/moved\n").unwrap();
        assert_eq!(
            victim_group(Some(&ahead), None, (44, 777), wait),
            known("/system.slice/b.service")
        );
        // Neither read ahead nor any cgroup reader: the kill reads it.
        assert_eq!(
            victim_group(Some(&ahead), None, (42, 777), wait),
            VictimGroup::ReadNow
        );
        // Gone (or its PID someone else's), or its cgroup file unreadable: unread, never taken
        // for the root group (the kill finds a process that is gone when it pins it).
        assert_eq!(
            victim_group(None, Some(&cgroups), (42, 1), wait),
            VictimGroup::Unread
        );
        // Read ahead without its cgroup (that read failed): the cgroup readers are asked.
        proc_dir(45, Some("0::/system.slice/e.service\n"));
        std::fs::remove_file(dir.path().join("proc/45/cgroup")).unwrap();
        assert_eq!(ahead.read((45, 777), wait), Some(("x".into(), None)));
        std::fs::write(
            dir.path().join("proc/45/cgroup"),
            "0::/system.slice/e.service\n",
        )
        .unwrap();
        assert_eq!(
            asked(Some(&ahead), (45, 777)),
            known("/system.slice/e.service")
        );
        // Stuck: unread, after the lookup's own limit, not the caller's 5 s.
        let t = Instant::now();
        let got = victim_group(None, Some(&cgroups), (43, 777), wait);
        let took = t.elapsed();
        // Let the stuck reader go.
        let w = rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        rustix::io::write(&w, b"0::/c\n").unwrap();
        drop(w);
        assert_eq!(got, VictimGroup::Unread);
        assert!(
            took < Duration::from_secs(2),
            "waited {took:?} on a stuck read"
        );
    }

    /// A choice waits for a large dying process, but not for ever: after `PROGRESS_MAX` for
    /// the same one it chooses among the others (said once); another dying process, or none,
    /// starts over.
    #[test]
    fn a_choice_waits_for_a_dying_process_but_not_for_ever() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = Progress::default();
        assert_eq!(p.waits(None, at(0)), ProgressWait::Nobody);
        assert_eq!(p.waits(Some(7), at(0)), ProgressWait::Waits);
        assert_eq!(p.waits(Some(7), at(2_990)), ProgressWait::Waits);
        assert_eq!(
            p.waits(Some(7), at(3_000)),
            ProgressWait::GaveUp { first: true }
        );
        assert_eq!(
            p.waits(Some(7), at(3_010)),
            ProgressWait::GaveUp { first: false }
        );
        // Another one dying: waited for afresh.
        assert_eq!(p.waits(Some(8), at(3_020)), ProgressWait::Waits);
        assert_eq!(
            p.waits(Some(8), at(6_020)),
            ProgressWait::GaveUp { first: true }
        );
        // Gone, then back (or its PID reused): afresh too.
        assert_eq!(p.waits(None, at(6_030)), ProgressWait::Nobody);
        assert_eq!(p.waits(Some(8), at(6_040)), ProgressWait::Waits);
        // Our own victim, given up on as stuck after SIGKILL: not waited for again (and not
        // said again), while another dying process still is.
        let now = Instant::now();
        p.given_up(9, now);
        assert_eq!(p.waits(Some(9), now), ProgressWait::GaveUp { first: false });
        assert_eq!(p.waits(Some(10), now), ProgressWait::Waits);
    }

    /// A kill frees almost nothing when it frees under a 64th of the scope and under half
    /// the victim's resident set; kills re-arm once memory falls by a 64th, or by half of
    /// what was left after the kill if that is less, so a backoff can always end.
    #[test]
    fn a_backoff_is_for_kills_that_freed_nothing_and_always_can_end() {
        const GIB: u64 = 1 << 20;
        let tiny = GIB; // a 64 GiB scope
        // A 100 MiB worker that freed its 95 MiB: not nothing, though under a 64th.
        assert!(!Backoff::freed_nothing(95 << 10, tiny, 100 << 10));
        // The same worker freeing 10 MiB (the rest shared or held elsewhere): nothing.
        assert!(Backoff::freed_nothing(10 << 10, tiny, 100 << 10));
        // An 8 GiB victim freeing 900 MiB: nothing, as before (under a 64th).
        assert!(Backoff::freed_nothing(900 << 10, tiny, 8 * GIB));
        assert!(!Backoff::freed_nothing(GIB, tiny, 8 * GIB));
        // A process of 1.7 MiB, mostly shared libraries, freeing 150 KiB: nothing.
        assert!(Backoff::freed_nothing(150, tiny, 1700));

        // Plenty left after the kill: re-armed after another 64th.
        let b = Backoff {
            available_kb: 3 * GIB,
            tiny_kb: tiny,
        };
        assert_eq!(b.fall_kb(), GIB);
        assert!(!b.rearms(2 * GIB + 1));
        assert!(b.rearms(2 * GIB));
        // 300 MiB left, under a 64th: re-armed once 150 MiB more are gone (before, never).
        let b = Backoff {
            available_kb: 300 << 10,
            tiny_kb: tiny,
        };
        assert_eq!(b.fall_kb(), 150 << 10);
        assert!(!b.rearms(151 << 10));
        assert!(b.rearms(150 << 10));
        // Nothing left: nothing can fall, and nothing re-arms on a flat line.
        let b = Backoff {
            available_kb: 0,
            tiny_kb: tiny,
        };
        assert!(!b.rearms(0));
    }

    /// The rescan near the levels runs in one go and stops for what a wake-up would see:
    /// memory at a level, the PSI share at its level (near the levels), a notification, a
    /// stop, a kernel OOM kill. Fixture `/proc` files, rewritten between looks.
    #[test]
    fn the_rescan_near_the_levels_stops_for_what_a_wake_up_would_see() {
        let d = tempfile::tempdir().unwrap();
        let proc = d.path().join("proc");
        std::fs::create_dir(&proc).unwrap();
        let meminfo = |avail_kb: u64| {
            std::fs::write(
                proc.join("meminfo"),
                format!("MemTotal: 4000000 kB\nMemFree: 100 kB\nMemAvailable: {avail_kb} kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"),
            )
            .unwrap()
        };
        let vmstat = |kills: u64| {
            std::fs::write(
                proc.join("vmstat"),
                format!("pgalloc_normal 5\noom_kill {kills}\n"),
            )
            .unwrap()
        };
        let pressure = |some_us: u64| {
            std::fs::write(
                proc.join("psi"),
                format!("some avg10=0.00 avg60=0.00 avg300=0.00 total={some_us}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            )
            .unwrap()
        };
        meminfo(1_000_000);
        vmstat(3);
        pressure(0);
        let root = Root::new(d.path());
        let mut scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
        // TERM at 10 % (400 000 kB), KILL at 5 %; near below twice TERM. PSI: some 20 % over 1 s.
        let psi: crate::values::PsiSpec = "some:20:1s".parse().unwrap();
        let spec = LevelSpec {
            mem_pct: Some(crate::values::LevelPair::parse_pct("10,5").unwrap()),
            mem_size: None,
            swap_pct: None,
            swap_size: None,
            psi: Some(psi),
        };
        let (mut waker, ev, _pipe) = wake::Waker::bare();
        let mut file = KeptFile::whole(proc.join("psi"));
        let mut buf = Vec::new();
        let mut window = PsiWindow::new(psi.window);
        let t0 = Instant::now() - Duration::from_secs(2);
        window.push(t0, 0);
        let stop = AtomicBool::new(false);
        let mut look = NearLook {
            waker: &mut waker,
            spec: &spec,
            pressure: Some(&mut file),
            buf: &mut buf,
            psi_window: Some(&window),
            oom_kills: Some(3),
            kernel_looked: Instant::now(),
            stop: &stop,
        };
        assert!(
            !look.interrupts(&mut scope),
            "near, above the levels, all quiet"
        );
        meminfo(390_000);
        assert!(look.interrupts(&mut scope), "memory at TERM");
        meminfo(700_000);
        assert!(!look.interrupts(&mut scope));
        // 2 s of samples, 1 s of them stalled: 50 % ≥ 20 %, and memory is near.
        pressure(1_000_000);
        assert!(look.interrupts(&mut scope), "the PSI share at its level");
        meminfo(1_000_000);
        assert!(
            !look.interrupts(&mut scope),
            "PSI counts only near the levels"
        );
        pressure(0);
        rustix::io::write(&ev, &1u64.to_ne_bytes()).unwrap();
        assert!(look.interrupts(&mut scope), "a notification came");
        assert_eq!(
            look.waker.wait(Duration::ZERO),
            Wake::Threshold,
            "kept for the loop"
        );
        assert!(!look.interrupts(&mut scope));
        // The kernel's counter is looked at every NEAR_OOM_CHECK.
        vmstat(4);
        look.kernel_looked = Instant::now() - NEAR_OOM_CHECK;
        assert!(look.interrupts(&mut scope), "the kernel's OOM killer acted");
        vmstat(3);
        assert!(!look.interrupts(&mut scope));
        stop.store(true, Ordering::Relaxed);
        assert!(look.interrupts(&mut scope), "the daemon is stopping");
    }

    /// For the system scope, a rise of the kernel's OOM kill counter whose kills the kernel log
    /// shows were all at a memory cgroup's own limit is recorded (`constraint: memcg`, the
    /// group, `held: false`) and holds nothing back: the check says so (a signal about to go
    /// out is not cancelled), no `Hold` is set, and the rescan near the levels goes on. A kill
    /// of the machine's, or one the log does not tell, holds back as before. The daemon's own
    /// check on a fixture tree (`proc/vmstat`, `dev/kmsg` as a plain file).
    #[test]
    fn a_kernel_kill_at_a_cgroups_own_limit_is_recorded_but_holds_nothing_back() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let r = d.path().to_path_buf();
        std::fs::create_dir_all(r.join("proc")).unwrap();
        std::fs::create_dir_all(r.join("dev")).unwrap();
        std::fs::write(
            r.join("proc/meminfo"),
            "MemTotal: 4000000 kB\nMemFree: 100 kB\nMemAvailable: 300000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .unwrap();
        let vmstat = |kills: u64| {
            std::fs::write(
                r.join("proc/vmstat"),
                format!("pgalloc_normal 5\noom_kill {kills}\n"),
            )
            .unwrap()
        };
        vmstat(3);
        std::fs::write(r.join("dev/kmsg"), "").unwrap();
        let mut seq = 0;
        let mut kmsg = |msg: String| {
            seq += 1;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(r.join("dev/kmsg"))
                .unwrap();
            writeln!(f, "3,{seq},{seq}000,-;{msg}").unwrap();
        };
        let memcg = |pid: u32| {
            format!(
                "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=app,pid={pid},uid=0"
            )
        };
        let global = |pid: u32| {
            format!(
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice,task=big,pid={pid},uid=0"
            )
        };
        let log = r.join("events.jsonl");
        let settings = Settings {
            root: Root::new(&r),
            scope: crate::values::ScopeSpec::System,
            levels: LevelSpec {
                mem_pct: Some(crate::values::LevelPair::parse_pct("10,5").unwrap()),
                mem_size: None,
                swap_pct: None,
                swap_size: None,
                psi: None,
            },
            kill_unit: KillUnit::default(),
            term_grace: Duration::from_secs(1),
            dry_run: true,
            event_log: log.clone(),
            policy: Policy::default(),
            report_interval: None,
        };
        let mut dm = Daemon::new(settings, Vec::new(), Flags::default(), None, None).unwrap();
        dm.watch_kernel_kills();
        let mem = dm.scope.memory().unwrap();
        let t = Instant::now();
        assert!(!dm.kernel_kill_check(t, &mem, true), "nothing happened yet");

        // A container killed at its own limit: recorded, not held for.
        kmsg(memcg(100));
        vmstat(4);
        assert!(!dm.kernel_kill_check(t, &mem, true));
        assert!(dm.hold.is_none());
        // The rescan near the levels does not stop for it either (the baseline stays).
        assert_eq!(dm.scope.kernel_oom_kills(), dm.last_oom_kills);

        // Memcg kills only again, seen first by a watcher (the rescan's look): no hold, and
        // the daemon's next check records them.
        kmsg(memcg(101));
        kmsg(memcg(102));
        vmstat(6);
        assert_eq!(dm.scope.kernel_oom_kills(), dm.last_oom_kills);
        assert!(!dm.kernel_kill_check(t, &mem, true));
        assert!(dm.hold.is_none());

        // The machine's own shortage: held back, as before.
        kmsg(global(103));
        vmstat(7);
        assert!(dm.kernel_kill_check(t, &mem, true));
        assert!(dm.hold.is_some());
        dm.hold = None;
        // A rise the log does not tell (its line rate-limited away, an old kernel): held.
        vmstat(8);
        assert!(dm.kernel_kill_check(t, &mem, true));
        assert!(dm.hold.is_some());
        dm.hold = None;
        // A memcg kill beside a kill with no line: held.
        kmsg(memcg(104));
        vmstat(10);
        assert!(dm.kernel_kill_check(t, &mem, true));
        assert!(dm.hold.is_some());

        assert!(dm.log.sync(Duration::from_secs(5)));
        let (recs, _) = crate::record::eventlog::read_all(&log).unwrap();
        let kk: Vec<_> = recs
            .iter()
            .filter_map(|r| match &r.event {
                Event::KernelKill(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let got: Vec<_> = kk
            .iter()
            .map(|k| {
                (
                    k.oom_kills,
                    k.constraint.as_deref(),
                    k.held,
                    k.oom_memcg.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Some("memcg"), Some(false), Some("/kubepods/pod1")),
                (2, Some("memcg"), Some(false), Some("/kubepods/pod1")),
                (1, Some("global"), Some(true), None),
                (1, Some("unknown"), Some(true), None),
                (2, Some("unknown"), Some(true), None),
            ]
        );
        assert_eq!(kk[0].available_kb, Some(300_000));
    }

    /// `--psi` on a v2 group that is removed and made again later than a second after: the
    /// trigger, dropped for its error, is tried again each second while the group is gone and
    /// is registered on the new group. Before, the one try a second after the error failed
    /// (the group still gone) and the trigger never came back. A fixture tree (the pressure
    /// file a plain file, which takes the trigger's line); the second's wait is skipped by
    /// moving the due time to now.
    #[test]
    fn a_psi_trigger_is_registered_again_on_a_group_made_again_after_a_while() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().to_path_buf();
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::write(
            r.join("proc/meminfo"),
            "MemTotal: 4000000 kB\nMemFree: 3000000 kB\nMemAvailable: 3000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .unwrap();
        std::fs::write(r.join("proc/vmstat"), "pgalloc_normal 5\noom_kill 0\n").unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let mount = r.join("sys/fs/cgroup");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::write(mount.join("cgroup.controllers"), "memory\n").unwrap();
        let app = mount.join("app");
        let make = || {
            std::fs::create_dir_all(&app).unwrap();
            for (f, v) in [
                ("memory.max", "1073741824\n"),
                ("memory.current", "100000000\n"),
                ("memory.stat", "anon 0\ninactive_file 0\n"),
                ("memory.swap.max", "0\n"),
                ("memory.swap.current", "0\n"),
                ("memory.events", "oom_kill 0\n"),
                ("cgroup.procs", ""),
                (
                    "memory.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
            ] {
                std::fs::write(app.join(f), v).unwrap();
            }
        };
        make();
        let settings = Settings {
            root: Root::new(&r),
            scope: "cgroup:/app".parse().unwrap(),
            levels: LevelSpec {
                mem_pct: Some(crate::values::LevelPair::parse_pct("10,5").unwrap()),
                mem_size: None,
                swap_pct: None,
                swap_size: None,
                psi: Some("full:20:2s".parse().unwrap()),
            },
            kill_unit: KillUnit::default(),
            term_grace: Duration::from_secs(1),
            dry_run: true,
            event_log: r.join("events.jsonl"),
            policy: Policy::default(),
            report_interval: None,
        };
        let mut dm = Daemon::new(settings, Vec::new(), Flags::default(), None, None).unwrap();
        assert!(dm.waker.psi_armed(), "no trigger at start");
        // A second has passed since the last try, if one is due.
        let second_passes = |dm: &mut Daemon| {
            if let Some(t) = dm.psi_rearm.as_mut() {
                *t = Instant::now();
            }
        };

        // The group is removed: its trigger polls in error and is dropped.
        std::fs::rename(&app, mount.join("old")).unwrap();
        dm.waker.psi_in_error();
        dm.tick(Wake::Psi).unwrap();
        assert!(!dm.waker.psi_armed());
        // A second later, and some more: the group is still gone.
        for _ in 0..3 {
            second_passes(&mut dm);
            dm.tick(Wake::Timer).unwrap();
            assert!(!dm.waker.psi_armed(), "armed on a group that is not there");
        }

        // Made again: registered at the next try, on the new group.
        make();
        second_passes(&mut dm);
        dm.tick(Wake::Timer).unwrap();
        assert!(
            dm.waker.psi_armed(),
            "the PSI trigger was not registered again on the group made again"
        );
        let line = std::fs::read(app.join("memory.pressure")).unwrap();
        assert!(
            line.starts_with(b"full "),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        // Registered: no more tries.
        assert!(dm.psi_rearm.is_none());
    }

    /// The settle waits while memory falls (a storm) and runs once it holds still, or after
    /// its longest wait; never near the levels.
    #[test]
    fn the_settle_waits_for_memory_to_hold_still() {
        let total = 512 * 1024;
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Stillness::default();
        assert!(!s.look(300_000, false, at(0), total), "the first look");
        // Falling 3 MiB per 30 ms (100 MiB/s): each step alone is under the bound of 4 MiB,
        // but two steps together are over it.
        let mut kb = 300_000;
        for ms in (30..=1200).step_by(30) {
            kb -= 3_000;
            assert!(!s.look(kb, false, at(ms), total), "falling at {ms} ms");
        }
        // Steady for a second: still.
        assert!(!s.look(kb, false, at(1500), total));
        assert!(s.look(kb - 1_000, false, at(2300), total));
        assert!(
            s.look(kb + 50_000, false, at(2400), total),
            "a rise is still"
        );
        // A fall of more than 4 MiB ends it at once.
        assert!(!s.look(kb + 45_000, false, at(2500), total));
        // A floor is not compared with the kernel's figure.
        let mut s = Stillness::default();
        s.look(300_000, false, at(0), total);
        assert!(s.look(300_000, false, at(1000), total));
        assert!(!s.look(300_000, true, at(1100), total));
        assert!(s.look(300_000, true, at(2100), total));

        let due = Instant::now();
        assert!(!settle_due(
            due - Duration::from_millis(1),
            due,
            false,
            true
        ));
        assert!(settle_due(due, due, false, true));
        assert!(!settle_due(due, due, false, false), "memory is falling");
        assert!(!settle_due(due, due, true, true), "near the levels");
        let late = due + SETTLE_MAX_WAIT;
        assert!(settle_due(late, due, false, false));
        assert!(!settle_due(late, due, true, false));
    }

    #[test]
    fn a_kernel_kill_holds_back_until_memory_recovers() {
        let t0 = Instant::now();
        let mut h = Hold::new(t0, 3_700);
        assert!(h.holds(t0 + Duration::from_millis(10), 3_700, false));
        assert!(h.holds(t0 + Duration::from_millis(1_900), 3_800, false));
        // Recovered: the hold ends at once.
        assert!(!Hold::new(t0, 3_700).holds(t0 + Duration::from_millis(10), 90_000, true));
    }

    #[test]
    fn the_hold_lasts_while_the_kernels_victim_still_frees_memory() {
        // Under load the oom_reaper and exit_mmap take seconds: 2 s after the kill memory is
        // still coming back, and choosing now could kill an innocent.
        let t0 = Instant::now();
        let mut h = Hold::new(t0, 3_700);
        assert!(h.holds(t0 + Duration::from_millis(2_100), 4_900, false));
        assert!(h.holds(t0 + Duration::from_millis(4_000), 4_950, false));
        // Another rise after the extended stretch extends it again.
        assert!(h.holds(t0 + Duration::from_millis(4_200), 6_000, false));
    }

    #[test]
    fn the_hold_is_bounded_when_nothing_comes_back() {
        let t0 = Instant::now();
        // No rise after the first stretch: the guard is armed again.
        let mut h = Hold::new(t0, 3_700);
        assert!(!h.holds(t0 + Duration::from_millis(2_100), 3_900, false));
        // Rising slowly but forever: armed again after HOLD_MAX at the latest.
        let mut h = Hold::new(t0, 3_000);
        let mut avail = 3_000;
        let mut t = t0;
        let mut held_until = t0;
        while t < t0 + Duration::from_secs(30) {
            t += Duration::from_millis(500);
            avail += 600;
            if !h.holds(t, avail, false) {
                break;
            }
            held_until = t;
        }
        assert!(
            held_until < t0 + HOLD_MAX + HOLD_MIN,
            "{:?}",
            held_until - t0
        );
        assert!(
            held_until >= t0 + HOLD_MAX - HOLD_MIN,
            "{:?}",
            held_until - t0
        );
    }
}
