//! The ranking model behind `top` and `why`: a snapshot of every process of a scope with its
//! badness terms, `oom_score_adj`, the kernel's badness and `/proc/PID/oom_score` (computed, not
//! read), oomguard's effective score under the rules, its rank and its verdict.
//!
//! Order: first the processes oomguard may choose, in the daemon's own victim order
//! ([`super::order`]: immunity, prefer/avoid, tie-break); then protected processes; then the
//! immune ones (PID 1, kernel threads, zombies, adj −1000, oomguard daemons). Rank 1 is the next
//! victim, the process the daemon would choose.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use super::order::Immune;
use super::order::{self, Key};
use super::policy::{Policy, ProcFacts, RuleKind, unit_of_cgroup};
use super::score::{RootBonus, ScoreEra, Terms, badness_on, oom_score};
use crate::sense::Root;
use crate::sense::cgroup::memory_path_of;
use crate::sense::details::{Details, Lookup};
use crate::sense::mem::MemState;
use crate::sense::procs::{Comm, ProcReader, Status};
use crate::sense::scope::{Scope, ScopeError};

/// oomguard's verdict on a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NextVictim,
    Candidate,
    Protected,
    Preferred,
    Avoided,
    Immune,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NextVictim => "next_victim",
            Verdict::Candidate => "candidate",
            Verdict::Protected => "protected",
            Verdict::Preferred => "preferred",
            Verdict::Avoided => "avoided",
            Verdict::Immune => "immune",
        }
    }
}

/// One process of the snapshot.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub comm: Comm,
    pub state: u8,
    pub starttime: u64,
    pub uid: Option<u32>,
    pub terms: Terms,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub rss_shmem_kb: u64,
    pub adj: i16,
    /// CAP_SYS_ADMIN in its effective set (the root bonus of kernels before 4.17).
    pub sys_admin: bool,
    pub exiting: bool,
    /// The memory-controller cgroup path as in `/proc/PID/cgroup`.
    pub cgroup: Option<String>,
    /// The systemd unit its cgroup path names.
    pub unit: Option<String>,
    /// Index of the first matching rule in the policy.
    pub rule: Option<usize>,
    pub rule_kind: Option<RuleKind>,
    pub immune: Option<Immune>,
    /// The kernel's badness against the scope's totalpages (`None`: the kernel never picks it).
    pub badness: Option<i64>,
    /// `/proc/PID/oom_score` as the kernel computes it (always against the global totalpages).
    pub oom_score: i64,
    /// oomguard's score: badness with the rule's adj shift (`None`: never chosen).
    pub effective: Option<i64>,
    /// 1-based position in oomguard's order.
    pub rank: usize,
    /// 1-based position in the kernel's order among those it may kill (`None`: never).
    pub kernel_rank: Option<usize>,
    pub verdict: Verdict,
}

impl Proc {
    pub fn rss_kb(&self, page_kb: u64) -> u64 {
        self.terms.rss_pages * page_kb
    }
    pub fn swap_kb(&self, page_kb: u64) -> u64 {
        self.terms.swap_pages * page_kb
    }
    pub fn pgtables_kb(&self, page_kb: u64) -> u64 {
        self.terms.pgtables_pages * page_kb
    }
    /// The share of the scope's totalpages its points (rss + swap + page tables) make, in %.
    pub fn share_pct(&self, totalpages: u64) -> f64 {
        self.terms.points() as f64 * 100.0 / totalpages.max(1) as f64
    }
}

/// The figures a snapshot is computed against.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub page_kb: u64,
    /// RAM + swap of the machine in pages: what `/proc/PID/oom_score` divides by.
    pub global_totalpages: u64,
    /// The scope's totalpages (the machine's, or the cgroup's limit + swap).
    pub totalpages: u64,
    pub era: ScoreEra,
    /// The kernel's root bonus (before 4.17).
    pub bonus: RootBonus,
}

/// Something a snapshot could not read (said once, with a count).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unreadable {
    /// Processes that exist but whose stat/status could not be read (e.g. `hidepid`).
    pub processes: usize,
    /// Processes whose `exe` link could not be read for an `exe` rule (needs root).
    pub exe: usize,
    /// Processes whose cmdline could not be read.
    pub cmdline: usize,
    /// Processes whose cgroup could not be read.
    pub cgroup: usize,
}

impl Unreadable {
    /// Human notes, empty when everything was read.
    pub fn notes(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.processes > 0 {
            v.push(format!(
                "could not read /proc/PID/stat or status of {} processes (hidepid or permissions; run as root to see them)",
                self.processes
            ));
        }
        if self.exe > 0 {
            v.push(format!(
                "could not read /proc/PID/exe of {} processes, so exe rules could not match them (needs root or the same user)",
                self.exe
            ));
        }
        if self.cmdline > 0 {
            v.push(format!(
                "could not read /proc/PID/cmdline of {} processes",
                self.cmdline
            ));
        }
        if self.cgroup > 0 {
            v.push(format!(
                "could not read /proc/PID/cgroup of {} processes",
                self.cgroup
            ));
        }
        v
    }
}

/// A ranked view of one scope at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub scope: String,
    pub memory: MemState,
    pub ctx: Context,
    /// In oomguard's order (rank 1 first).
    pub procs: Vec<Proc>,
    pub kernel_threads: usize,
    pub unreadable: Unreadable,
}

impl Snapshot {
    pub fn find(&self, pid: i32) -> Option<&Proc> {
        self.procs.iter().find(|p| p.pid == pid)
    }
    pub fn next_victim(&self) -> Option<&Proc> {
        self.procs
            .first()
            .filter(|p| p.verdict == Verdict::NextVictim)
    }
}

/// What does not change while a process lives (keyed by pid, starttime and name): its cgroup,
/// unit, rule and whether it is an oomguard daemon.
#[derive(Debug)]
struct Cached {
    starttime: u64,
    comm: Comm,
    cgroup: Option<String>,
    unit: Option<String>,
    rule: Option<usize>,
    daemon: bool,
    unread_exe: bool,
    unread_cmdline: bool,
    unread_cgroup: bool,
    /// The last full reading and the resident pages (`stat`) it was taken at.
    last: Option<(u64, Proc)>,
}

/// Takes snapshots of a scope; keeps per-process facts between refreshes (the live view).
pub struct Ranker {
    pub reader: ProcReader,
    pub scope: Scope,
    pub policy: Policy,
    pub era: ScoreEra,
    pub bonus: RootBonus,
    /// Include kernel threads in snapshots.
    pub kernel_threads: bool,
    /// Incremental refresh (1: off, every snapshot reads every process in full). With N > 1
    /// an unchanged process is read in full (stat, status, oom_score_adj) only every 6·N
    /// snapshots; in between `statm` is read every time and `oom_score_adj` every N; a
    /// process whose size, resident pages or adj changed and a new one are read in full; the
    /// PIDs in `watched` have their adj checked on every snapshot. The live view uses this
    /// to stay cheap.
    pub full_every: u32,
    /// PIDs whose oom_score_adj is checked on every snapshot (the rows on screen).
    pub watched: Vec<i32>,
    tick: u32,
    prefer_v2: bool,
    cache: HashMap<i32, Cached>,
    pids: Vec<i32>,
    /// Thread ids, listed for a process whose main thread is gone.
    tids: Vec<i32>,
    /// Whether PID 1 is the machine's init ([`ProcReader::pid1_is_global_init`]).
    pid1_global: bool,
}

/// The facts a rule may look at: name, uid and cgroup known, cmdline and exe read on demand.
pub struct LazyFacts<'a> {
    reader: &'a mut ProcReader,
    pid: i32,
    comm: &'a str,
    uid: Option<u32>,
    cgroup: Option<Option<String>>,
    cmdline: Option<Option<String>>,
    exe: Option<Option<String>>,
    prefer_v2: bool,
    /// Where the command line comes from when not read here ([`CmdlineSide`]).
    side: Option<CmdlineSide<'a>>,
    /// The command line was not read in time ([`CmdlineSide`]).
    late: bool,
    /// The cgroup path was not read in time ([`CmdlineSide::cgroup`]).
    late_cgroup: bool,
    /// How often a rule asked for the command line or cgroup path that was not read in time.
    late_asks: u32,
}

/// Command lines read by a side thread ([`Details`]) within a time budget, not on the
/// caller's thread: a read of `/proc/PID/cmdline` waits on the process's mmap lock, which a
/// process faulting at the bottom of memory, or stuck on storage that does not answer, can
/// hold for seconds (see `sense::details`). The guard's loop matches rules this way.
pub struct CmdlineSide<'a> {
    /// The command lines' readers (`None`: read on the caller's thread).
    pub details: Option<&'a Details>,
    /// The cgroup paths' readers ([`Details::start_cgroups`]; `None`: read on the caller's
    /// thread).
    pub cgroups: Option<&'a Details>,
    /// The process's start time (a reused PID is not it).
    pub starttime: u64,
    /// What the caller may still wait, over all its reads; each read takes what it waited.
    pub budget: &'a mut Duration,
}

impl CmdlineSide<'_> {
    /// The command line of `pid`: `None` when it is gone, or (`late` set) not read in time.
    pub(crate) fn read(
        &mut self,
        reader: &mut ProcReader,
        pid: i32,
        late: &mut bool,
    ) -> Option<String> {
        match self.details {
            Some(d) => Self::look(d, pid, self.starttime, self.budget, late).map(|f| f.0),
            None => reader.cmdline(pid).ok(),
        }
    }

    /// The memory cgroup path of `pid` (see [`crate::sense::cgroup::memory_path_of`]):
    /// `None` when it is gone, has none, or (`late` set) was not read in time.
    pub(crate) fn cgroup(
        &mut self,
        reader: &mut ProcReader,
        pid: i32,
        prefer_v2: bool,
        late: &mut bool,
    ) -> Option<String> {
        match self.cgroups {
            Some(d) => Self::look(d, pid, self.starttime, self.budget, late).and_then(|f| f.1),
            None => read_cgroup(reader, pid, prefer_v2),
        }
    }

    fn look(
        d: &Details,
        pid: i32,
        starttime: u64,
        budget: &mut Duration,
        late: &mut bool,
    ) -> Option<crate::sense::details::Facts> {
        if budget.is_zero() {
            *late = true;
            return None;
        }
        let t = Instant::now();
        let got = d.lookup((pid, starttime), *budget);
        *budget = budget.saturating_sub(t.elapsed());
        match got {
            Lookup::Found(f) => Some(f),
            Lookup::Gone => None,
            Lookup::Late => {
                *late = true;
                None
            }
        }
    }
}

/// `/proc/PID/cgroup`'s memory cgroup path, read on this thread.
fn read_cgroup(reader: &mut ProcReader, pid: i32, prefer_v2: bool) -> Option<String> {
    reader
        .cgroup_text(pid)
        .ok()
        .and_then(|t| crate::sense::cgroup::memory_path_of(&t, prefer_v2).map(str::to_string))
}

impl<'a> LazyFacts<'a> {
    /// Facts with the cgroup path already known (as the caller read it).
    pub fn new(
        reader: &'a mut ProcReader,
        pid: i32,
        comm: &'a str,
        uid: Option<u32>,
        cgroup: Option<&'a str>,
    ) -> LazyFacts<'a> {
        LazyFacts {
            reader,
            pid,
            comm,
            uid,
            cgroup: Some(cgroup.map(str::to_string)),
            cmdline: None,
            exe: None,
            prefer_v2: false,
            side: None,
            late: false,
            late_cgroup: false,
            late_asks: 0,
        }
    }

    /// Facts that read the cgroup path (the memory controller's: the v2 line when
    /// `prefer_v2`, else the v1 memory line) only if a rule asks for it.
    pub fn lazy(
        reader: &'a mut ProcReader,
        pid: i32,
        comm: &'a str,
        uid: Option<u32>,
        prefer_v2: bool,
    ) -> LazyFacts<'a> {
        LazyFacts {
            reader,
            pid,
            comm,
            uid,
            cgroup: None,
            cmdline: None,
            exe: None,
            prefer_v2,
            side: None,
            late: false,
            late_cgroup: false,
            late_asks: 0,
        }
    }

    /// The same, with the command line read by a side thread within a budget.
    pub fn with_side(mut self, side: Option<CmdlineSide<'a>>) -> LazyFacts<'a> {
        self.side = side;
        self
    }

    /// How often a rule asked for a command line (or cgroup path) that was not read in time (a rule that did
    /// is undecided: it might have matched).
    pub fn late_asks(&self) -> u32 {
        self.late_asks
    }
}

impl ProcFacts for LazyFacts<'_> {
    fn comm(&self) -> &str {
        self.comm
    }
    fn uid(&mut self) -> Option<u32> {
        self.uid
    }
    fn cmdline(&mut self) -> Option<&str> {
        if self.cmdline.is_none() {
            let read = match &mut self.side {
                None => self.reader.cmdline(self.pid).ok(),
                Some(side) => side.read(self.reader, self.pid, &mut self.late),
            };
            self.cmdline = Some(read);
        }
        if self.late {
            self.late_asks += 1;
        }
        self.cmdline.as_ref().and_then(|c| c.as_deref())
    }
    fn exe(&mut self) -> Option<&str> {
        if self.exe.is_none() {
            self.exe = Some(self.reader.exe(self.pid).ok());
        }
        self.exe.as_ref().and_then(|c| c.as_deref())
    }
    fn cgroup(&mut self) -> Option<&str> {
        if self.cgroup.is_none() {
            let read = match &mut self.side {
                None => read_cgroup(self.reader, self.pid, self.prefer_v2),
                Some(side) => {
                    side.cgroup(self.reader, self.pid, self.prefer_v2, &mut self.late_cgroup)
                }
            };
            self.cgroup = Some(read);
        }
        if self.late_cgroup {
            self.late_asks += 1;
        }
        self.cgroup.as_ref().and_then(|c| c.as_deref())
    }
}

/// The systemd unit a process's cgroup text names: from the v2 line, the `name=systemd` line,
/// then any other line.
pub fn unit_of_cgroup_text(text: &str) -> Option<String> {
    let mut best: Option<(u8, &str)> = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Some(unit) = unit_of_cgroup(path) else {
            continue;
        };
        let pref = match ctl {
            "" => 0,
            "name=systemd" => 1,
            _ => 2,
        };
        if best.is_none_or(|(p, _)| pref < p) {
            best = Some((pref, unit));
        }
    }
    best.map(|(_, u)| u.to_string())
}

/// Is this cmdline an oomguard daemon (`oomguard [options] run ...`)?
fn is_daemon_cmdline(cmdline: &str) -> bool {
    cmdline
        .split(' ')
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| a == "run")
}

impl Ranker {
    pub fn new(root: &Root, mut scope: Scope, policy: Policy) -> std::io::Result<Ranker> {
        let mut reader = ProcReader::open(root)?;
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let prefer_v2 = scope.mounts.v2_memory.is_some();
        let pid1_global = reader.pid1_is_global_init();
        let bonus = RootBonus::from_release(&release);
        let era = own_era(&mut reader, &mut scope, bonus)
            .unwrap_or_else(|| ScoreEra::from_release(&release));
        Ok(Ranker {
            pid1_global,
            reader,
            scope,
            policy,
            era,
            bonus,
            kernel_threads: false,
            full_every: 1,
            watched: Vec::new(),
            tick: 0,
            prefer_v2,
            cache: HashMap::new(),
            pids: Vec::new(),
            tids: Vec::new(),
        })
    }

    /// The figures of the scope now.
    pub fn context(&mut self) -> Result<(MemState, Context), ScopeError> {
        let memory = self.scope.memory()?;
        let mi = self.scope.meminfo()?;
        let page_kb = self.reader.page_kb;
        let ctx = Context {
            page_kb,
            global_totalpages: mi.mem_total_kb / page_kb + mi.swap_total_kb / page_kb,
            totalpages: memory.totalpages(page_kb),
            era: self.era,
            bonus: self.bonus,
        };
        Ok((memory, ctx))
    }

    /// Reads one process and scores it (unranked: `rank` 0, verdict candidate/immune/rule).
    /// `None` when it is gone or unreadable (`unread` counts the latter).
    pub fn read_proc(&mut self, pid: i32, ctx: &Context, unread: &mut Unreadable) -> Option<Proc> {
        if self.full_every > 1
            && let Some(p) = self.read_quick(pid, ctx)
        {
            return Some(p);
        }
        let stat = match self.reader.stat(pid) {
            Ok(s) => s,
            Err(e) => {
                // A process that left is dropped silently; only a living one counts.
                if !e.is_gone() {
                    unread.processes += 1;
                }
                return None;
            }
        };
        let kthread = stat.is_kthread();
        // Its main thread gone while others run on: its memory as a live thread sees it (the
        // main thread's files show none), as the kernel's OOM killer counts it.
        let live = if stat.main_thread_gone() {
            self.reader
                .live_thread_status(pid, &mut self.tids)
                .ok()
                .flatten()
        } else {
            None
        };
        let headless = live.is_some();
        // The live thread's own exit (its SIGKILL already taken): the process is ending.
        let thread_exiting = live.as_ref().is_some_and(|&(tid, _)| {
            self.reader
                .task_stat(pid, tid)
                .is_ok_and(|t| t.is_exiting())
        });
        let status = if kthread {
            Status::default()
        } else if let Some((_, s)) = live {
            s
        } else {
            match self.reader.status(pid) {
                Ok(s) => s,
                Err(e) => {
                    if !e.is_gone() {
                        unread.processes += 1;
                    }
                    return None;
                }
            }
        };
        let adj = if kthread {
            0
        } else {
            self.reader.oom_score_adj(pid).unwrap_or(0)
        };
        let mut terms = Terms::from_proc(&stat, &status, ctx.page_kb);
        if headless {
            terms.rss_pages = crate::decide::victim::status_rss_pages(&status, ctx.page_kb);
        }
        let zombie = (stat.is_zombie() && !headless) || (!kthread && !status.has_mm);
        // Facts that live as long as the process (and its name) do.
        let known = self
            .cache
            .get(&pid)
            .is_some_and(|c| c.starttime == stat.starttime && c.comm == stat.comm);
        if !known && !kthread {
            let cached = self.read_facts(pid, &stat.comm, status.uid, stat.starttime);
            self.cache.insert(pid, cached);
        }
        let cached = self.cache.get(&pid).filter(|_| !kthread);
        if let Some(c) = cached {
            unread.exe += c.unread_exe as usize;
            unread.cmdline += c.unread_cmdline as usize;
            unread.cgroup += c.unread_cgroup as usize;
        }
        // Every oomguard daemon excludes itself; `top` cannot tell which one guards this scope
        // (see `order` on why the daemon spares no other guard).
        let daemon = cached.is_some_and(|c| c.daemon);
        let immune =
            order::immunity(pid, kthread || status.kthread, zombie, adj, daemon).or_else(|| {
                // A vfork child: the kernel scores it 0 and never picks it (see `order`).
                (!kthread && stat.ppid > 1 && self.reader.shares_mm(pid, stat.ppid))
                    .then_some(Immune::Vfork)
            });
        // A container's init: the kernel scores it (see `order`).
        let immune = match immune {
            Some(Immune::Init) if !self.pid1_global => Some(Immune::NamespaceInit),
            i => i,
        };
        let rule = cached.and_then(|c| c.rule);
        let rule_kind = rule.map(|i| self.policy.rules[i].kind);
        let mut p = Proc {
            pid,
            ppid: stat.ppid,
            comm: stat.comm,
            state: stat.state,
            starttime: stat.starttime,
            uid: status.uid,
            terms,
            rss_anon_kb: status.rss_anon_kb,
            rss_file_kb: status.rss_file_kb,
            rss_shmem_kb: status.rss_shmem_kb,
            adj,
            sys_admin: status.sys_admin,
            // A headless process's main thread has exited: not the process.
            exiting: (stat.is_exiting() && !headless) || thread_exiting || status.sigkill_pending,
            cgroup: cached.and_then(|c| c.cgroup.clone()),
            unit: cached.and_then(|c| c.unit.clone()),
            rule,
            rule_kind,
            immune,
            badness: None,
            oom_score: 0,
            effective: None,
            rank: 0,
            kernel_rank: None,
            verdict: Verdict::Candidate,
        };
        score(&mut p, ctx);
        if self.full_every > 1
            && !kthread
            && let Some(c) = self.cache.get_mut(&pid)
        {
            c.last = Some((stat.rss_pages, p.clone()));
        }
        Some(p)
    }

    /// The incremental path: the last full reading again when `/proc/PID/stat` shows the same
    /// process (start time and name: a PID given to someone new is read in full) with the same
    /// resident pages, and it is not due for a full read. Read by path: a `/proc` file kept open
    /// holds a page-sized read buffer in the kernel (see `decide::victim`).
    fn read_quick(&mut self, pid: i32, ctx: &Context) -> Option<Proc> {
        let slot = (pid as u32).wrapping_add(self.tick) % (self.full_every * 6);
        if slot == 0 {
            return None;
        }
        self.cache.get(&pid)?.last.as_ref()?;
        let st = self.reader.stat(pid).ok()?;
        // Every full_every snapshots (rows on screen: every time), oom_score_adj too: it
        // changes without the memory.
        let adj = if slot % self.full_every == 0 || self.watched.contains(&pid) {
            Some(self.reader.oom_score_adj(pid).ok()?)
        } else {
            None
        };
        let (rss0, last) = self.cache.get(&pid)?.last.as_ref()?;
        if st.starttime != last.starttime
            || st.comm != last.comm
            || st.rss_pages != *rss0
            || st.is_exiting()
            || adj.is_some_and(|a| a != last.adj)
        {
            return None;
        }
        let mut p = last.clone();
        score(&mut p, ctx);
        Some(p)
    }

    fn read_facts(&mut self, pid: i32, comm: &Comm, uid: Option<u32>, starttime: u64) -> Cached {
        let cg_text = self.reader.cgroup_text(pid).ok();
        let unread_cgroup = cg_text.is_none();
        let (cgroup, unit) = match &cg_text {
            Some(t) => (
                memory_path_of(t, self.prefer_v2).map(str::to_string),
                unit_of_cgroup_text(t),
            ),
            None => (None, None),
        };
        let name = comm.to_string_lossy();
        let mut facts = LazyFacts::new(&mut self.reader, pid, &name, uid, cgroup.as_deref());
        let rule = self.policy.rules.iter().position(|r| r.matches(&mut facts));
        let daemon = name == "oomguard" && facts.cmdline().is_some_and(is_daemon_cmdline);
        let mut unread_exe = matches!(facts.exe, Some(None));
        let mut unread_cmdline = matches!(facts.cmdline, Some(None));
        let mut unread_cgroup = unread_cgroup;
        // A failed read of a process that has since exited is a vanished process, dropped
        // silently; only a living one counts as unreadable.
        if (unread_exe || unread_cmdline || unread_cgroup)
            && self
                .reader
                .stat(pid)
                .ok()
                .is_none_or(|s| s.starttime != starttime)
        {
            (unread_exe, unread_cmdline, unread_cgroup) = (false, false, false);
        }
        Cached {
            starttime,
            comm: *comm,
            cgroup,
            unit,
            rule,
            daemon,
            unread_exe,
            unread_cmdline,
            unread_cgroup,
            last: None,
        }
    }

    /// Every process of the scope, scored, ranked and judged.
    pub fn snapshot(&mut self) -> Result<Snapshot, ScopeError> {
        let (memory, ctx) = self.context()?;
        self.tick = self.tick.wrapping_add(1);
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        if !self.scope.cgroup_pids(&mut pids) {
            self.reader
                .pids(&mut pids)
                .map_err(|source| ScopeError::Io {
                    path: self.reader.root().path("proc"),
                    source,
                })?;
        }
        pids.sort_unstable();
        pids.dedup();
        let mut unreadable = Unreadable::default();
        let mut procs = Vec::with_capacity(pids.len());
        let mut kernel_threads = 0;
        for &pid in &pids {
            if let Some(p) = self.read_proc(pid, &ctx, &mut unreadable) {
                if p.immune == Some(Immune::KernelThread) {
                    kernel_threads += 1;
                    if !self.kernel_threads {
                        continue;
                    }
                }
                procs.push(p);
            }
        }
        // Forget processes that are gone.
        if self.cache.len() > pids.len() + 64 {
            self.cache.retain(|pid, _| pids.binary_search(pid).is_ok());
        }
        self.pids = pids;
        rank(&mut procs);
        Ok(Snapshot {
            scope: self.scope.label(),
            memory,
            ctx,
            procs,
            kernel_threads,
            unreadable,
        })
    }
}

/// The formula of `/proc/PID/oom_score` on this kernel, told by this process's own score
/// ([`ScoreEra::from_sample`]); None when it cannot be read (a fixture root) or does not tell.
fn own_era(reader: &mut ProcReader, scope: &mut Scope, bonus: RootBonus) -> Option<ScoreEra> {
    let pid = std::process::id() as i32;
    let mi = scope.meminfo().ok()?;
    let page_kb = reader.page_kb.max(1);
    let total = mi.mem_total_kb / page_kb + mi.swap_total_kb / page_kb;
    let stat = reader.stat(pid).ok()?;
    let status = reader.status(pid).ok()?;
    let adj = reader.oom_score_adj(pid).ok()?;
    let kernel = reader.oom_score(pid).ok()?;
    let terms = Terms::from_proc(&stat, &status, page_kb);
    let b = badness_on(&terms, adj as i64, total, bonus, status.sys_admin);
    ScoreEra::from_sample(b, total, kernel as i64)
}

/// Computes a process's badness, oom_score, effective score and base verdict from its terms,
/// adj, immunity and rule (rank and kernel rank are reset for [`rank`]).
fn score(p: &mut Proc, ctx: &Context) {
    let kernel_ok = p.immune.is_none_or(|i| !i.kernel_immune());
    let adj = p.adj as i64;
    let of = |total| badness_on(&p.terms, adj, total, ctx.bonus, p.sys_admin);
    p.badness = kernel_ok.then(|| of(ctx.totalpages));
    let global = kernel_ok.then(|| of(ctx.global_totalpages));
    p.oom_score = oom_score(global, ctx.global_totalpages, ctx.era);
    p.effective = match p.immune {
        None => order::score(p.terms.points(), p.adj, p.rule_kind, ctx.totalpages),
        Some(_) => None,
    };
    p.rank = 0;
    p.kernel_rank = None;
    p.verdict = if p.immune.is_some() {
        Verdict::Immune
    } else {
        match p.rule_kind {
            Some(RuleKind::Protect) => Verdict::Protected,
            Some(RuleKind::Prefer) => Verdict::Preferred,
            Some(RuleKind::Avoid) => Verdict::Avoided,
            None => Verdict::Candidate,
        }
    };
}

/// Sorts processes into oomguard's order and sets `rank`, `kernel_rank` and the next victim.
pub fn rank(procs: &mut [Proc]) {
    // Kernel order first (its own rank), then oomguard's.
    let mut idx: Vec<usize> = (0..procs.len())
        .filter(|&i| procs[i].badness.is_some())
        .collect();
    // The kernel breaks ties as oomguard does (most recent first), by PID after that.
    let kernel_key = |p: &Proc| p.badness.map(|b| Key::new(b, p.starttime, p.pid));
    idx.sort_by(|&a, &b| kernel_key(&procs[b]).cmp(&kernel_key(&procs[a])));
    for (r, i) in idx.into_iter().enumerate() {
        procs[i].kernel_rank = Some(r + 1);
    }
    let class = |p: &Proc| -> u8 {
        if p.effective.is_some() {
            0
        } else if p.immune.is_none() {
            1
        } else {
            2
        }
    };
    // Choosable processes in the victim order; the others (never chosen) by size.
    let key = |p: &Proc| p.effective.map(|s| Key::new(s, p.starttime, p.pid));
    procs.sort_by(|a, b| {
        class(a)
            .cmp(&class(b))
            .then(key(b).cmp(&key(a)))
            .then(b.badness.cmp(&a.badness))
            .then(b.terms.points().cmp(&a.terms.points()))
            .then(b.starttime.cmp(&a.starttime))
            .then(b.pid.cmp(&a.pid))
    });
    for (r, p) in procs.iter_mut().enumerate() {
        p.rank = r + 1;
    }
    if let Some(first) = procs.first_mut()
        && first.effective.is_some()
    {
        first.verdict = Verdict::NextVictim;
    }
}

/// How `top --group` sums processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// A process and all its descendants, rooted below PID 1 (or at the scope's top).
    Tree,
    /// The memory cgroup.
    Cgroup,
    /// The systemd unit.
    Unit,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tree" => Ok(GroupBy::Tree),
            "cgroup" => Ok(GroupBy::Cgroup),
            "unit" => Ok(GroupBy::Unit),
            _ => Err(format!(
                "'{s}' is not a group mode: use tree, cgroup or unit"
            )),
        }
    }
}

/// Processes summed by tree, cgroup or unit.
#[derive(Debug, Clone)]
pub struct Group {
    /// `PID comm` of the tree's root, the cgroup path or the unit (`-`: none).
    pub key: String,
    /// Members in oomguard's order (their ranks ascending).
    pub members: Vec<i32>,
    pub terms: Terms,
    /// The best (lowest) rank of a member.
    pub best_rank: usize,
    pub has_next_victim: bool,
}

impl Group {
    /// The share of the scope's totalpages its points make, in %.
    pub fn share_pct(&self, totalpages: u64) -> f64 {
        self.terms.points() as f64 * 100.0 / totalpages.max(1) as f64
    }
}

/// The root of `pid`'s tree: the highest ancestor that is in `parent` and not PID 1, 0 or 2.
fn tree_root(pid: i32, parent: &HashMap<i32, i32>) -> i32 {
    let mut cur = pid;
    for _ in 0..4096 {
        match parent.get(&cur) {
            Some(&pp) if pp > 2 && parent.contains_key(&pp) => cur = pp,
            _ => break,
        }
    }
    cur
}

/// Sums a snapshot's processes by `by`, largest (most points) first. Immune processes count
/// (their memory is part of the group) but kernel threads hold none.
pub fn group(snap: &Snapshot, by: GroupBy) -> Vec<Group> {
    let parent: HashMap<i32, i32> = snap.procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let comm: HashMap<i32, String> = snap
        .procs
        .iter()
        .map(|p| (p.pid, p.comm.to_string_lossy().into_owned()))
        .collect();
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for p in &snap.procs {
        let key = match by {
            GroupBy::Tree => {
                let r = tree_root(p.pid, &parent);
                format!("{r} {}", comm.get(&r).map_or("?", String::as_str))
            }
            GroupBy::Cgroup => p.cgroup.clone().unwrap_or_else(|| "-".into()),
            GroupBy::Unit => p.unit.clone().unwrap_or_else(|| "-".into()),
        };
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(Group {
                key,
                members: Vec::new(),
                terms: Terms::default(),
                best_rank: usize::MAX,
                has_next_victim: false,
            });
            groups.len() - 1
        });
        let g = &mut groups[i];
        g.members.push(p.pid);
        g.terms.rss_pages += p.terms.rss_pages;
        g.terms.swap_pages += p.terms.swap_pages;
        g.terms.pgtables_pages += p.terms.pgtables_pages;
        g.best_rank = g.best_rank.min(p.rank);
        g.has_next_victim |= p.verdict == Verdict::NextVictim;
    }
    groups.sort_by(|a, b| {
        b.terms
            .points()
            .cmp(&a.terms.points())
            .then(a.best_rank.cmp(&b.best_rank))
    });
    groups
}

/// User names from `ROOT/etc/passwd`, by uid.
#[derive(Debug, Default, Clone)]
pub struct UserNames(HashMap<u32, String>);

impl UserNames {
    pub fn load(root: &Root) -> UserNames {
        UserNames::from_users(&crate::sense::users::Users::load(root.as_path()))
    }
    pub fn parse(text: &str) -> UserNames {
        UserNames::from_users(&crate::sense::users::Users::parse(text))
    }
    fn from_users(users: &crate::sense::users::Users) -> UserNames {
        let mut m = HashMap::new();
        for (name, uid) in users.iter() {
            m.entry(uid).or_insert_with(|| name.to_string());
        }
        UserNames(m)
    }
    /// The name of `uid` in passwd, if it has one.
    pub fn get(&self, uid: u32) -> Option<&str> {
        self.0.get(&uid).map(String::as_str)
    }
    /// The name, or the number when unknown.
    pub fn name(&self, uid: Option<u32>) -> String {
        match uid {
            None => "?".into(),
            Some(u) => self.0.get(&u).cloned().unwrap_or_else(|| u.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::score::badness;

    /// The live view's quick path (the last full reading again when the memory did not move)
    /// tells a PID given to a new process from the old one: same resident pages, another
    /// start time and name, and the row shows the new process.
    #[test]
    fn the_quick_path_sees_a_reused_pid() {
        use crate::decide::victim::tests::{Fixture, proc};
        let fx = Fixture::new();
        let root = fx.root();
        let scope = Scope::resolve(&root, &crate::values::ScopeSpec::System).unwrap();
        let mut rk = Ranker::new(&root, scope, Policy::default()).unwrap();
        rk.full_every = 5;
        let first = rk.snapshot().unwrap();
        assert_eq!(first.find(104).unwrap().comm.as_str(), Some("small"));
        // PID 104 given to another process with the same resident pages (1 000).
        proc(fx.dir.path(), 104, "new", 'S', 0, 900, 1_000, 0, 0);
        let second = rk.snapshot().unwrap();
        let p = second.find(104).unwrap();
        assert_eq!((p.comm.as_str(), p.starttime), (Some("new"), 900));
        assert_eq!(
            second.find(100).unwrap().comm.as_str(),
            Some("web (worker) 1")
        );
    }

    fn p(pid: i32, rss: u64, adj: i16, kind: Option<RuleKind>, immune: Option<Immune>) -> Proc {
        let terms = Terms {
            rss_pages: rss,
            ..Default::default()
        };
        let total = 1_000_000;
        let kernel_ok = immune.is_none_or(|i| !i.kernel_immune());
        let b = kernel_ok.then(|| badness(&terms, adj as i64, total));
        Proc {
            pid,
            ppid: 1,
            comm: Comm::new(b"x"),
            state: b'S',
            starttime: pid as u64,
            uid: Some(0),
            terms,
            rss_anon_kb: 0,
            rss_file_kb: 0,
            rss_shmem_kb: 0,
            adj,
            sys_admin: false,
            exiting: false,
            cgroup: None,
            unit: None,
            rule: None,
            rule_kind: kind,
            immune,
            badness: b,
            oom_score: 0,
            effective: immune
                .is_none()
                .then(|| order::score(terms.points(), adj, kind, total))
                .flatten(),
            rank: 0,
            kernel_rank: None,
            verdict: Verdict::Candidate,
        }
    }

    #[test]
    fn rules_reorder_and_protected_and_immune_go_last() {
        let mut v = vec![
            p(10, 5000, 0, None, None),
            p(11, 9000, 0, Some(RuleKind::Protect), None),
            p(12, 1000, 0, Some(RuleKind::Prefer), None),
            p(13, 20000, -1000, None, Some(Immune::AdjMin)),
            p(14, 7000, 0, Some(RuleKind::Avoid), None),
            p(15, 99999, 0, None, Some(Immune::Oomguard)),
        ];
        rank(&mut v);
        let order: Vec<i32> = v.iter().map(|p| p.pid).collect();
        // prefer: 1000 + 300*1000 wins; avoid: 7000 - 300000 goes below 10.
        assert_eq!(order, [12, 10, 14, 11, 15, 13]);
        assert_eq!(v[0].verdict, Verdict::NextVictim);
        assert_eq!(v[0].rank, 1);
        // The kernel's order ignores rules: oomguard (15) first, adj -1000 never.
        let k: Vec<(i32, Option<usize>)> = v.iter().map(|p| (p.pid, p.kernel_rank)).collect();
        assert!(k.contains(&(15, Some(1))) && k.contains(&(11, Some(2))));
        assert!(k.contains(&(13, None)));
    }

    #[test]
    fn ties_go_to_the_most_recent_process() {
        let mut v = vec![p(20, 100, 0, None, None), p(21, 100, 0, None, None)];
        rank(&mut v);
        assert_eq!(v[0].pid, 21);
    }

    #[test]
    fn units_and_daemons() {
        let t = "9:name=systemd:/system.slice/nginx.service\n4:memory:/x\n0::/\n";
        assert_eq!(unit_of_cgroup_text(t).as_deref(), Some("nginx.service"));
        let t2 = "4:memory:/system.slice/a.service\n0::/user.slice/user-1.slice/session-3.scope\n";
        assert_eq!(unit_of_cgroup_text(t2).as_deref(), Some("session-3.scope"));
        assert_eq!(unit_of_cgroup_text("0::/\n"), None);
        assert!(is_daemon_cmdline("/usr/bin/oomguard run --dry-run"));
        assert!(is_daemon_cmdline("oomguard --verbose run"));
        assert!(!is_daemon_cmdline("oomguard drill --limit 1M"));
        assert!(!is_daemon_cmdline("oomguard"));
        let u = UserNames::parse("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n");
        assert_eq!(u.name(Some(65534)), "nobody");
        assert_eq!(u.name(Some(7)), "7");
    }

    #[test]
    fn groups_sum_trees_and_cgroups() {
        // 100 (apache) with three small workers; 200 alone but bigger than any worker.
        let mut v = vec![
            p(100, 1000, 0, None, None),
            p(101, 3000, 0, None, None),
            p(102, 3000, 0, None, None),
            p(103, 3000, 0, None, None),
            p(200, 5000, 0, None, None),
        ];
        for q in &mut v[1..4] {
            q.ppid = 100;
            q.cgroup = Some("/web".into());
        }
        rank(&mut v);
        assert_eq!(v[0].pid, 200);
        let snap = Snapshot {
            scope: "system".into(),
            memory: MemState::default(),
            ctx: Context {
                page_kb: 4,
                global_totalpages: 1_000_000,
                totalpages: 1_000_000,
                era: ScoreEra::Signed,
                bonus: RootBonus::None,
            },
            procs: v,
            kernel_threads: 0,
            unreadable: Unreadable::default(),
        };
        let g = group(&snap, GroupBy::Tree);
        assert_eq!(g[0].key, "100 x");
        assert_eq!(g[0].terms.rss_pages, 10_000);
        assert_eq!(g[0].members.len(), 4);
        assert_eq!((g[1].key.as_str(), g[1].has_next_victim), ("200 x", true));
        let c = group(&snap, GroupBy::Cgroup);
        assert_eq!((c[0].key.as_str(), c[0].terms.rss_pages), ("/web", 9000));
        assert_eq!((c[1].key.as_str(), c[1].terms.rss_pages), ("-", 6000));
    }
}
