//! Choosing the victim: a ranked candidate table kept between wake-ups, and a precise choice
//! when a level is crossed.
//!
//! System-wide, where the daemon could load it, a scan lists the processes with the kernel's
//! task iterator ([`crate::sense::tasks`]): one pass gives every process's resident pages,
//! swap, page tables, `oom_score_adj` and whether it is a kernel thread or has no memory (the
//! figures a `statm`, `status` and `oom_score_adj` read would give), and no file per process
//! is read; a process new to the table is learnt from its row alone unless rules must be
//! matched. What follows describes the scan from `/proc`, for cgroup scopes and where the
//! iterator is not permitted; the choice is the same for both.
//!
//! A full scan ([`Ranker::refresh`]) reads one `statm` per known process, by path. (Keeping
//! each `statm` open would spare the path lookup, `open` and `close`, but every open `/proc`
//! file that has been read holds its own page-sized read buffer in the kernel until it is
//! closed: 10 000 kept files held 41 MiB of unreclaimable kernel memory, charged to the
//! daemon's cgroup, for about a quarter less CPU per rescan in one measurement; the reads
//! alone, 5 000 in a bare loop, took 10.4 ms by `pread` on kept files against 37.6 ms by
//! path.) A process the table knows, found
//! again under its PID, is taken for the same process until the choice reads its start time
//! (a reused PID is learnt afresh then); one the choice never reaches needs no identity, but a
//! protected one (`oom_score_adj` -1000), which the choice never looks at, has its start time
//! read at every scan. A newcomer costs `statm` and `oom_score_adj` (its start time and name
//! are read when it nears the top, its page tables and uid at its first detail read);
//! with rules to match or swap in use it gets `stat`, `status` and `oom_score_adj` at once.
//! `status` and `oom_score_adj` are read again for everyone while swap is in use. Otherwise
//! every tenth scan per process (spread over the scans; protected processes too: one that
//! raises its `oom_score_adj` from -1000 becomes a candidate again) reads `oom_score_adj`, and
//! `status` only where the page tables can have grown: never read yet, or the resident set
//! moved by more than an eighth since they were (page tables grow only as pages are faulted in;
//! `status` costs three to four `oom_score_adj` reads: a rescan of 1 000 and 10 000 idle
//! processes whose details were read once takes 23 % and 12 % less CPU than with `status`
//! every tenth scan). The choice ([`Ranker::select`])
//! re-reads precisely (stat + status + adj) only the top of the table, in order of the estimate,
//! and stops once no process further down could overtake the best one with memory it took
//! since the scan: a process can have taken at most the pages allocated system-wide since then
//! (the `pgalloc` counters), so one whose estimate plus that bound is below the best precise
//! score is passed over. The bound covers memory taken, not every way a score can rise, and a
//! passed-over process is judged by its new figures from its next read on: one that maps pages
//! already in memory (a file in the page cache, shared memory: its resident set grows, no page
//! is allocated, and killing it would not free them), or raises its `oom_score_adj` (on this
//! path read every tenth scan while no swap is in use; at every scan from the task iterator's
//! rows). When much was allocated since a recent scan, a choice needs no rescan either:
//! [`Ranker::relist_watching`] lists the processes again and reads only the newcomers (a
//! process started since has no such bound).
//!
//! The rescan near the levels, every half second there ([`Ranker::refresh_near`]), uses the
//! same bound: between two full scans it lists the processes again (newcomers read, leavers
//! dropped) and re-reads only the rows that could overtake the best one with the pages
//! allocated since the last full scan, best first. A full scan follows when the last one is
//! [`FULL_RESCAN_EVERY`] old, when more than 1/[`BOUNDED_GROWTH_SHARE`] of the scope's pages
//! (memory and swap) was allocated since it, when more than [`BOUNDED_MAX_NEW`] PIDs were handed
//! out since the last listing, when the PID counter wrapped or cannot be read, when the table
//! is stale (after a kill, a reload, a scan the kernel's OOM killer interrupted) and while a
//! full scan is under way; with the task iterator every rescan is full (its pass gives every
//! row). So near the levels a row the bound rules out keeps its figures, and its
//! `oom_score_adj`, for up to that long: what the bound does not cover (pages mapped from
//! memory, an `oom_score_adj` raised) is seen at the next full scan, as the choice sees it at
//! its next read. Rows whose rules are undecided are re-read at every rescan, bounded or
//! not. A bounded rescan counts as a scan for the detail reads below: where nine
//! rescans in ten are bounded, the full one re-reads the `oom_score_adj` of most rows.
//!
//! Who may be chosen, the score and the tie-break are [`super::order`]'s, shared with `top`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::order::{self, Key};
use super::policy::{Policy, RuleKind};
use super::rank::CmdlineSide;
use super::score::{self, Terms};
use crate::sense::details::Details;
use crate::sense::procs::{Comm, ProcError, ProcReader, Stat, Status};
use crate::sense::scope::Scope;
use crate::sense::tasks::TaskRow;

/// What the table knows of one process.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// `starttime` and `comm_hash` were read. A newcomer learnt by the light read (`statm` and
    /// `oom_score_adj` only: no rules to match, no swap in use) is known by its PID alone
    /// until the choice reads its `stat`.
    known: bool,
    starttime: u64,
    /// A hash of the name: a change means exec or a rename, so the rules are matched again.
    comm_hash: u32,
    /// Page counts in 32 bits ([`pages`]): the table holds a row per process, 56 bytes.
    rss_pages: u32,
    swap_pages: u32,
    pgtables_pages: u32,
    /// `rss_pages` when `pgtables_pages` was read ([`NOT_READ`]: not yet, an estimate). Page
    /// tables grow only as pages are faulted in, so while the resident set stays near this,
    /// they are what was read and a detail read needs no `status`.
    tables_rss: u32,
    adj: i16,
    /// Real uid ([`NOT_READ`]: not read; `(uid_t)-1` is no uid), 4 bytes where an `Option`
    /// takes 8: the row stays 56 bytes.
    uid: u32,
    /// Index of the first matching rule ([`NO_RULE`]: none), in 16 bits: with `class` the
    /// pair takes the 4 bytes an `Option<u16>` would.
    rule: u16,
    /// How sure the rule is ([`CLASS_UNSURE`], [`CLASS_MAYBE_PROTECTED`]; 0: sure).
    class: u8,
    /// Never chosen ([`order::immunity`]).
    immune: bool,
    /// Its main thread has exited and other threads run on (`pthread_exit` from `main`): what
    /// `/proc/PID` shows of memory is the main thread's, nothing, so it is read from a live
    /// thread's `status` ([`Ranker::headless_status`]), as the kernel's OOM killer finds the
    /// memory through any thread that still has it.
    headless: bool,
    seen_gen: u32,
    detail_gen: u32,
}

/// A table row.
#[derive(Debug)]
struct Slot {
    e: Entry,
}

/// The table's rows: a dense vector, and a map from PID to position. A hash map of whole rows
/// (a power of two of buckets, at most 7/8 full) kept 164 KiB resident at 1 000 processes;
/// here only the map's 8-byte buckets are spare, and the rows (56 bytes) grow by an eighth:
/// about 80 KiB.
/// Every operation stays O(1): a row leaves by `swap_remove` (the last row takes its place), so
/// a fork storm's exits cost no shifting.
#[derive(Debug, Default)]
struct PidTable {
    /// Hashed with foldhash, seeded at random per map: "minimally DoS-resistant" by its own
    /// account, which fits keys that a local user can pick only by cycling through the PID
    /// space, from a map whose hashes it never sees; SipHash cost more per lookup, once per
    /// process per scan.
    index: HashMap<i32, u32, foldhash::fast::RandomState>,
    rows: Vec<(i32, Slot)>,
}

impl PidTable {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    fn clear(&mut self) {
        self.index = HashMap::default();
        self.rows = Vec::new();
    }
    fn get(&self, pid: i32) -> Option<&Slot> {
        let &i = self.index.get(&pid)?;
        Some(&self.rows[i as usize].1)
    }
    fn get_mut(&mut self, pid: i32) -> Option<&mut Slot> {
        let &i = self.index.get(&pid)?;
        Some(&mut self.rows[i as usize].1)
    }
    /// Stores the row; returns the one it replaced.
    fn insert(&mut self, pid: i32, slot: Slot) -> Option<Slot> {
        if let Some(&i) = self.index.get(&pid) {
            return Some(std::mem::replace(&mut self.rows[i as usize].1, slot));
        }
        if self.rows.len() == self.rows.capacity() {
            self.rows.reserve_exact(self.rows.len() / 8 + 16);
        }
        self.index.insert(pid, self.rows.len() as u32);
        self.rows.push((pid, slot));
        None
    }
    fn remove(&mut self, pid: i32) -> Option<Slot> {
        let i = self.index.remove(&pid)? as usize;
        let (_, slot) = self.rows.swap_remove(i);
        if let Some(&(moved, _)) = self.rows.get(i) {
            self.index.insert(moved, i as u32);
        }
        Some(slot)
    }
    /// Keeps the rows `keep` accepts; gives memory back once a third of the rows is empty.
    fn retain(&mut self, mut keep: impl FnMut(&mut Slot) -> bool) {
        let before = self.rows.len();
        self.rows.retain_mut(|(_, slot)| keep(slot));
        let len = self.rows.len();
        if len == before {
            return;
        }
        if self.rows.capacity() > 64 && len < self.rows.capacity() / 3 * 2 {
            self.rows.shrink_to(len + len / 8);
        }
        self.index.clear();
        if self.index.capacity() > 64 && len < self.index.capacity() / 3 {
            self.index.shrink_to(len);
        }
        for (i, &(pid, _)) in self.rows.iter().enumerate() {
            self.index.insert(pid, i as u32);
        }
    }
    /// Room for `rows` rows at once (a first scan, or many newcomers): no chain of regrowths.
    fn reserve_for(&mut self, rows: usize) {
        if rows > self.rows.capacity() {
            self.rows.reserve_exact(rows + rows / 16 - self.rows.len());
        }
        if rows > self.index.capacity() {
            self.index.reserve(rows - self.index.len());
        }
    }
    fn iter(&self) -> impl Iterator<Item = (i32, &Slot)> {
        self.rows.iter().map(|(pid, slot)| (*pid, slot))
    }
}

/// A `u32` row field not read yet.
const NOT_READ: u32 = u32::MAX;

/// Resident pages from `status` (`RssAnon + RssFile + RssShmem`, the counters `stat`'s rss
/// sums): for a headless process, whose `stat` shows none.
pub(crate) fn status_rss_pages(s: &Status, page_kb: u64) -> u64 {
    (s.rss_anon_kb + s.rss_file_kb + s.rss_shmem_kb) / page_kb.max(1)
}

impl Entry {
    fn uid(&self) -> Option<u32> {
        (self.uid != NOT_READ).then_some(self.uid)
    }

    fn rule(&self) -> Option<u16> {
        (self.rule != NO_RULE).then_some(self.rule)
    }

    /// Matched without a command line that was not read in time: matched again at its next
    /// sight.
    fn unsure(&self) -> bool {
        self.class & CLASS_UNSURE != 0
    }

    /// Whether the page tables may have changed since they were read: never read, or the
    /// resident set moved by more than an eighth (and 1 MiB of 4 KiB pages) since. A process
    /// that maps memory sparsely grows its tables only by faulting pages in, which shows here.
    fn tables_due(&self) -> bool {
        if self.tables_rss == NOT_READ {
            return true;
        }
        let moved = self.rss_pages.abs_diff(self.tables_rss);
        moved > (self.tables_rss / 8).max(256)
    }

    fn points(&self) -> i64 {
        (u64::from(self.rss_pages) + u64::from(self.swap_pages) + u64::from(self.pgtables_pages))
            as i64
    }
}

/// A page count as the table keeps it: 32 bits, up to 16 TiB of 4 KiB pages (more saturates).
fn pages(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn comm_hash(c: &Comm) -> u32 {
    // FNV-1a: tiny, no allocation, plenty for telling one name from another.
    c.as_bytes().iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A scored process, as records and the CLI show it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pid: i32,
    pub starttime: u64,
    pub comm: String,
    pub uid: Option<u32>,
    pub rss_kb: u64,
    pub swap_kb: u64,
    pub pgtables_kb: u64,
    pub oom_score_adj: i16,
    /// The kernel's badness (pages, adj scaled in).
    pub badness: i64,
    /// oomguard's score: badness with a prefer/avoid rule's ±300 adj shift (pages).
    pub score: i64,
    /// The rule that matched, if any (`kind` and where it came from).
    pub rule: Option<String>,
    pub rule_kind: Option<RuleKind>,
}

impl Candidate {
    /// A process known only by PID, start time and name (not scored): what pinning and
    /// signalling need, for the warm-up and for tests of the kill path.
    pub fn unscored(pid: i32, starttime: u64, comm: &str) -> Candidate {
        Candidate {
            pid,
            starttime,
            comm: comm.to_string(),
            uid: None,
            rss_kb: 0,
            swap_kb: 0,
            pgtables_kb: 0,
            oom_score_adj: 0,
            badness: 0,
            score: 0,
            rule: None,
            rule_kind: None,
        }
    }

    /// Its place in the victim order.
    pub fn key(&self) -> Key {
        Key::new(self.score, self.starttime, self.pid)
    }
}

/// What a scan scores against: the scope's size in pages (the badness denominator), whether
/// swap is in use (then every process's swap is read), and the page allocation counter at the
/// scan (the growth bound of later choices starts from it).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanBasis {
    pub totalpages: u64,
    pub swap_in_use: bool,
    pub pgalloc: u64,
}

/// A scan in slices under way ([`Ranker::refresh_slice`]).
#[derive(Debug, Clone, Copy)]
struct Partial {
    /// Index in the listing of the next process to look at.
    next: usize,
    /// When the processes were listed.
    listed: Instant,
    basis: ScanBasis,
}

/// What one slice of a scan did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceDone {
    /// Processes looked at in this slice.
    pub looked: usize,
    /// The scan is done (the table's age starts over).
    pub finished: bool,
}

/// What a rescan near the levels did ([`Ranker::refresh_near`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearRescan {
    /// Processes read: in a bounded rescan, the newcomers and the rows re-read (a newcomer
    /// that could overtake the best is both); in a full one (or its part done here), every
    /// listed process.
    pub looked: usize,
    /// The rescan is done (the table's age starts over).
    pub finished: bool,
    /// It was bounded: the processes listed again, and only the rows that could overtake the
    /// best one re-read (`false`: a full rescan, or its part done in this call).
    pub bounded: bool,
}

/// The longest the rescan near the levels goes on bounded ([`Ranker::refresh_near`]) before
/// it reads every process again: ten of its rescans, half a second apart.
pub const FULL_RESCAN_EVERY: Duration = Duration::from_secs(5);

/// The most PIDs handed out since the last listing with which a rescan near the levels is
/// still bounded ([`Ranker::refresh_near`]): its newcomers are learnt without a look at memory.
pub const BOUNDED_MAX_NEW: u32 = 128;

/// The most allocated since the last full scan, as a share of the scope's pages (1 in this),
/// with which a rescan near the levels is still bounded: half of what a choice takes from the
/// table without relisting (`daemon::Daemon::select_watching`), so that a decision after a
/// bounded rescan keeps its short way.
pub const BOUNDED_GROWTH_SHARE: u64 = 40;

/// The outcome of a choice.
#[derive(Debug, Default)]
pub struct Selection {
    /// The best victim (highest score), if any process is eligible.
    pub victim: Option<Candidate>,
    /// The top candidates, best first (the victim included), at most five.
    pub candidates: Vec<Candidate>,
    /// A large process already on its way out (exiting or SIGKILL pending): its memory is being
    /// freed, so no new victim may be chosen now.
    pub in_progress: Option<(i32, String)>,
    /// How many processes were re-read precisely.
    pub precise_reads: usize,
    /// The first pass ended because no process further down could overtake the best one (or
    /// the table was read to its end), not at its cap of reads: the choice is the right one
    /// for the growth bound it was given.
    pub bounded: bool,
}

/// Reads that failed for a process that was still there, since the ranker was made. A process
/// that left (`Gone`) is not counted: it is simply dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unread {
    /// Permission denied: the process was skipped (it can neither be chosen nor ranked).
    pub denied: u64,
    /// Any other error; the first one is logged.
    pub io: u64,
}

impl Unread {
    /// Counts `e`; `true` if the process left. The first I/O error gets a log line (a broken
    /// `/proc` would otherwise say it once per process per scan).
    fn note(&mut self, e: ProcError) -> bool {
        match e {
            ProcError::Gone { .. } => return true,
            ProcError::Denied { .. } => self.denied += 1,
            ProcError::Io { .. } | ProcError::Malformed { .. } => {
                if self.io == 0 {
                    log::warn!(
                        "{e}; skipping that process (further read errors are counted, not logged)"
                    );
                }
                self.io += 1;
            }
        }
        false
    }
}

/// A cgroup's processes are listed with the kernel's task iterator when they number at
/// least 1 in this many of the machine's threads: a /proc listing reads a file per process,
/// while the iterator walks every thread to find the group's, each at about a twentieth of
/// the cost of a process's `statm` read (`benches/daemon.rs` measures both and prints where
/// they break even).
pub const ITERATOR_SHARE: usize = 12;

/// The ranked candidate table.
pub struct Ranker {
    table: PidTable,
    pids: Vec<i32>,
    /// The listed processes' badness terms, when the reader lists with the kernel's task
    /// iterator (`rows[i]` is `pids[i]`); empty otherwise.
    rows: Vec<TaskRow>,
    /// The table in the victim order (by estimate), best first.
    order: Vec<Key>,
    /// The keys with fresh rss of pass 1, best first.
    fresh: Vec<Key>,
    /// Thread ids, listed for a headless process ([`Entry::headless`]).
    tids: Vec<i32>,
    generation: u32,
    self_pid: i32,
    /// When the table's processes were last listed with every row read or bounded: by a full
    /// scan, or a bounded rescan ([`Ranker::refresh_near`]).
    scanned_at: Option<Instant>,
    /// When the last full scan listed the processes (every row read then).
    full_at: Option<Instant>,
    /// The kernel's page allocation counter at the last full scan: the growth bound's start.
    pgalloc_at_scan: u64,
    /// A scan done in slices ([`Ranker::refresh_slice`]) that is not finished yet.
    partial: Option<Partial>,
    /// The kernel's last handed-out PID ([`Loadavg::last_pid`](crate::sense::procs::Loadavg::last_pid)) when the table's rows were
    /// listed: at the listing of its last scan, or of a later [`Ranker::relist_watching`].
    last_pid: Option<i32>,
    /// The same at the listing of the scan under way (it becomes `last_pid` when it ends).
    listing_last_pid: Option<i32>,
    totalpages: u64,
    page_kb: u64,
    /// Whether the last listing of a cgroup scope took the task iterator (`None`: none yet).
    group_iterated: Option<bool>,
    /// Match rules' `cgroup`/`unit` against the v2 path rather than the v1 memory path.
    prefer_v2_path: bool,
    unread: Unread,
    /// The thread that reads command lines for rules ([`Ranker::set_cmdline_reader`]);
    /// `None`: read here.
    cmdline_side: Option<Details>,
    /// The threads that read cgroup paths for rules ([`Ranker::set_cgroup_reader`]); `None`:
    /// read here.
    cgroup_side: Option<Details>,
    /// What the scan or choice under way may still wait for command lines.
    cmdline_budget: Duration,
}

/// [`Entry::class`]: the rules were matched without a command line that was not read in
/// time (a rule that needs it is undecided); matched again at the process's next sight.
const CLASS_UNSURE: u8 = 1;
/// [`Entry::class`]: with [`CLASS_UNSURE`], an undecided rule is a `protect` rule: never chosen
/// until the rules are decided.
const CLASS_MAYBE_PROTECTED: u8 = 2;
/// [`Entry::rule`]: no rule matched (at most 256 rules are allowed).
const NO_RULE: u16 = u16::MAX;

/// How long matching rules may wait for command lines, in all, per scan and per choice
/// ([`CmdlineSide`]); a process whose command line was not read in time is matched again
/// at its next sight.
const CMDLINE_BUDGET: Duration = Duration::from_millis(20);

/// A process's rule (first match) and how sure it is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub rule: Option<usize>,
    /// A rule before the match (or any, when none matched) needed the command line, which
    /// was not read in time.
    pub unsure: bool,
    /// One of those undecided rules is a `protect` rule.
    pub maybe_protected: bool,
}

/// Classifies one process with the policy (first matching rule). With `side`, command lines
/// come from its thread within its budget (see [`CmdlineSide`]); without, they are read here.
pub fn classify(
    reader: &mut ProcReader,
    policy: &Policy,
    pid: i32,
    comm: &Comm,
    uid: Option<u32>,
    prefer_v2: bool,
    side: Option<CmdlineSide<'_>>,
) -> Class {
    let mut class = Class::default();
    if policy.rules.is_empty() {
        return class;
    }
    let name = comm.to_string_lossy();
    let mut f = super::rank::LazyFacts::lazy(reader, pid, &name, uid, prefer_v2).with_side(side);
    for (i, r) in policy.rules.iter().enumerate() {
        let asked = f.late_asks();
        if r.matches(&mut f) {
            class.rule = Some(i);
            break;
        }
        if f.late_asks() > asked {
            class.unsure = true;
            class.maybe_protected |= r.kind == RuleKind::Protect;
        }
    }
    class
}

/// The kernel's OOM kill counter, looked at during a scan at the bottom of memory at most
/// once a millisecond (see [`Ranker::refresh_watching`]).
struct KernelWatch {
    /// The counter as last read; `None`: not watched.
    oom_kills: Option<u64>,
    looked: Instant,
}

impl KernelWatch {
    fn new(oom_kills: Option<u64>) -> KernelWatch {
        KernelWatch {
            oom_kills,
            looked: Instant::now(),
        }
    }

    /// Whether the counter rose past the one last read (for the system scope, not by kills at
    /// a memory cgroup's own limit: [`Scope::kernel_oom_kills`]).
    fn acted(&mut self, scope: &mut Scope) -> bool {
        let Some(k0) = self.oom_kills else {
            return false;
        };
        if self.looked.elapsed() < Duration::from_millis(1) {
            return false;
        }
        self.looked = Instant::now();
        scope.kernel_oom_kills().is_some_and(|k| k > k0)
    }
}

impl Ranker {
    pub fn new(page_kb: u64, prefer_v2_path: bool) -> Ranker {
        Ranker {
            table: PidTable::default(),
            pids: Vec::new(),
            rows: Vec::new(),
            order: Vec::new(),
            fresh: Vec::with_capacity(64),
            tids: Vec::new(),
            generation: 0,
            self_pid: std::process::id() as i32,
            scanned_at: None,
            full_at: None,
            pgalloc_at_scan: 0,
            partial: None,
            last_pid: None,
            listing_last_pid: None,
            group_iterated: None,
            totalpages: 1,
            page_kb: page_kb.max(1),
            prefer_v2_path,
            unread: Unread::default(),
            cmdline_side: None,
            cgroup_side: None,
            cmdline_budget: CMDLINE_BUDGET,
        }
    }

    /// The reads that failed for processes that were there (denied, other errors).
    pub fn unread(&self) -> Unread {
        self.unread
    }

    /// Time since the table's processes were last listed with every row read or bounded: by
    /// a full scan, or a bounded rescan near the levels ([`Ranker::refresh_near`]) (`None`:
    /// never scanned, or stale).
    pub fn age(&self) -> Option<Duration> {
        self.scanned_at.map(|t| t.elapsed())
    }

    pub fn pgalloc_at_scan(&self) -> u64 {
        self.pgalloc_at_scan
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Marks the table out of date, so that the next choice rescans in full (a scan under way
    /// is dropped too: its listing is older than what made the table stale, a kill). The rows
    /// stay for that rescan to reuse. Costs nothing now: the rescan
    /// comes when a choice needs it, or in slices when memory is near the levels again.
    pub fn mark_stale(&mut self) {
        self.scanned_at = None;
        self.partial = None;
    }

    /// Command lines for rules (`cmdline` fields) come from this thread, within
    /// [`CMDLINE_BUDGET`] per scan and per choice, not from the caller's thread (`None`: read
    /// on the caller's; fine for a one-shot listing, not for the guard's loop).
    pub fn set_cmdline_reader(&mut self, details: Option<Details>) {
        self.cmdline_side = details;
    }

    pub fn has_cmdline_reader(&self) -> bool {
        self.cmdline_side.is_some()
    }

    /// Cgroup paths for rules (`cgroup` and `unit` fields) come from these threads
    /// ([`Details::start_cgroups`]), within the same budget as command lines, not from the
    /// caller's thread (`None`: read on the caller's).
    pub fn set_cgroup_reader(&mut self, details: Option<Details>) {
        self.cgroup_side = details;
    }

    pub fn has_cgroup_reader(&self) -> bool {
        self.cgroup_side.is_some()
    }

    /// The cgroup paths' readers, if started (`--kill-unit cgroup` asks them too).
    pub fn cgroup_reader(&self) -> Option<&Details> {
        self.cgroup_side.as_ref()
    }

    /// The rules' side readers, if any, for one process.
    fn side<'a>(
        cmdlines: &'a Option<Details>,
        cgroups: &'a Option<Details>,
        starttime: u64,
        budget: &'a mut Duration,
    ) -> Option<CmdlineSide<'a>> {
        (cmdlines.is_some() || cgroups.is_some()).then_some(CmdlineSide {
            details: cmdlines.as_ref(),
            cgroups: cgroups.as_ref(),
            starttime,
            budget,
        })
    }

    /// Looks `who` up through the command-line thread, if there is one (the warm-up: the
    /// lookup's code is then resident and locked for the scans at the bottom of memory).
    pub fn warm_cmdline_reader(&self, reader: &mut ProcReader, who: (i32, u64)) {
        let mut budget = Duration::from_secs(1);
        if let Some(mut side) =
            Self::side(&self.cmdline_side, &self.cgroup_side, who.1, &mut budget)
        {
            std::hint::black_box(side.read(reader, who.0, &mut false));
            std::hint::black_box(side.cgroup(reader, who.0, self.prefer_v2_path, &mut false));
        }
    }

    /// Forgets rule matches (after a config reload): the rows go, and with them the table's
    /// age and any scan under way, so the next choice rescans in full. (Kept fresh, an empty
    /// table would be chosen from for up to [`TABLE_MAX_AGE`](crate::daemon) after a reload,
    /// and a scan under way would finish over only its second half, the hog missing.)
    pub fn reset_rules(&mut self) {
        self.table.clear();
        self.mark_stale();
    }

    /// A full scan of the scope's processes. Returns how many were looked at.
    pub fn refresh(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
    ) -> usize {
        self.refresh_watching(reader, scope, policy, basis, None)
            .unwrap_or(0)
    }

    /// [`Ranker::refresh`] at the bottom of memory: `oom_kills` is the scope's kernel OOM kill
    /// counter as last read. Every /proc read allocates in the kernel, and a read that stalls
    /// in reclaim can end in the kernel's OOM killer; its victim then frees its memory while
    /// the scan goes on, and each further read risks a second kernel kill of an innocent. So
    /// whenever a millisecond has passed since the last look, the counter is read again (a
    /// kept file, no allocation); when it rose the scan stops at once, the table is marked
    /// stale, and `None` is returned. A scan in slices that was not finished is dropped: this
    /// one lists the processes anew.
    pub fn refresh_watching(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        oom_kills: Option<u64>,
    ) -> Option<usize> {
        self.begin_scan(reader, scope, basis);
        self.scan_rest_watching(reader, scope, policy, 0, basis.swap_in_use, oom_kills)?;
        self.finish_scan(Instant::now(), basis.pgalloc);
        Some(self.pids.len())
    }

    /// Ends the scan in slices under way ([`Ranker::refresh_slice`]) in one go, watching the
    /// kernel's OOM kill counter as [`Ranker::refresh_watching`] does. At a decision this
    /// costs what is left of the scan, not a new one, and the table's age and growth bound
    /// start from that scan's listing. Returns how many processes it looked at (0 with no scan
    /// under way), or `None` when the kernel acted.
    pub fn finish_watching(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        oom_kills: Option<u64>,
    ) -> Option<usize> {
        let Some(p) = self.partial.take() else {
            return Some(0);
        };
        self.scan_rest_watching(
            reader,
            scope,
            policy,
            p.next,
            p.basis.swap_in_use,
            oom_kills,
        )?;
        self.finish_scan(p.listed, p.basis.pgalloc);
        Some(self.pids.len() - p.next)
    }

    /// Looks at the listed processes from `from` on; `None` (and a stale table) when the
    /// kernel's OOM kill counter rose past `oom_kills` meanwhile (read at most every 1 ms).
    fn scan_rest_watching(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        from: usize,
        swap_in_use: bool,
        oom_kills: Option<u64>,
    ) -> Option<()> {
        let mut watch = KernelWatch::new(oom_kills);
        for i in from..self.pids.len() {
            if watch.acted(scope) {
                self.scanned_at = None;
                return None;
            }
            self.scan_one(reader, policy, i, swap_in_use);
        }
        Some(())
    }

    /// Brings the table's rows up to the processes there are now without re-reading the ones
    /// it knows: the scope's processes are listed again, newcomers learnt, and the rows of
    /// processes that left dropped. The table's age and growth bound stay those of its last
    /// scan: what a known process allocated since is at most the pages allocated since, which
    /// [`Ranker::select`] allows for (the module docs say what that bound does not cover). A
    /// process started since (a new allocator, or a fork that shares its parent's pages) has
    /// no such bound, so it is read. At a decision after much allocation this replaces the
    /// full rescan, which costs one `statm` read per known process at nice −20.
    ///
    /// A known PID among those handed out since the last listing (above the kernel's last
    /// handed-out PID then, up to it now) is learnt afresh: once the counter has gone round,
    /// the kernel hands out the free PIDs above it, those of processes that ended since among
    /// them.
    ///
    /// Returns `Some(false)`, having done nothing, when the table has no scan to go on from or
    /// a known PID may since name someone else: the kernel's last handed-out PID fell since the
    /// last listing (the counter wrapped at `pid_max`) or cannot be read. (A whole turn of the
    /// PID space between two listings, at least `pid_max` − 300 forks within the table's age,
    /// is not seen.) `None` when the kernel's OOM killer acted meanwhile (`oom_kills`, as in
    /// [`Ranker::refresh_watching`]); the table is then stale.
    pub fn relist_watching(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        oom_kills: Option<u64>,
    ) -> Option<bool> {
        self.relist_at_most(reader, scope, policy, basis, oom_kills, u32::MAX)
            .map(|n| n.is_some())
    }

    /// [`Ranker::relist_watching`], saying how many newcomers it learnt, and doing nothing
    /// (`Some(None)`) when it cannot or when more than `max_new` PIDs were handed out since
    /// the last listing.
    // Inlined into both callers, as `scan_pid` is.
    #[inline(always)]
    fn relist_at_most(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        oom_kills: Option<u64>,
        max_new: u32,
    ) -> Option<Option<usize>> {
        if self.scanned_at.is_none() {
            return Some(None);
        }
        let (Some(before), Some(load)) = (self.last_pid, reader.loadavg()) else {
            return Some(None);
        };
        let now = load.last_pid;
        if now < before || (now - before) as u32 > max_new {
            return Some(None);
        }
        // The rows' values stay those of the last scan; only the membership is new.
        self.partial = None;
        self.generation = self.generation.wrapping_add(1);
        self.cmdline_budget = CMDLINE_BUDGET;
        self.last_pid = Some(now);
        self.list(reader, scope, Some(load.threads));
        let generation = self.generation;
        let mut watch = KernelWatch::new(oom_kills);
        let mut learnt = 0;
        for i in 0..self.pids.len() {
            if watch.acted(scope) {
                self.scanned_at = None;
                return None;
            }
            let pid = self.pids[i];
            if i % 8 == 0 && !self.rows.is_empty() {
                crate::sense::breath::tick();
            }
            // A PID handed out since the last listing names a process started since. Known
            // under it, it belonged to an older one: once the counter has gone round, the
            // kernel hands out the free PIDs above it, among them those of processes that
            // ended since (`idr_alloc_cyclic`).
            let handed_out = pid > before && pid <= now;
            match self.table.get_mut(pid) {
                Some(slot) if !handed_out => slot.e.seen_gen = generation,
                known => {
                    if known.is_some() {
                        self.forget(pid);
                    }
                    let row = self.rows.get(i).copied();
                    self.learn(reader, policy, pid, basis.swap_in_use, row);
                    learnt += 1;
                }
            }
        }
        self.drop_unseen();
        Some(Some(learnt))
    }

    /// The scan of [`Ranker::refresh`] spread over calls: each call goes on where the last one
    /// stopped and returns once `slice` has passed (looked at every 32 processes), so no
    /// wake-up does the whole scan at once: how the daemon rescanned near the levels before
    /// [`Ranker::refresh_until`], kept for the bench, which measures the two side by side, and
    /// for the tests. A call with no scan under way starts one (listing the processes, with
    /// `basis`). The table's age and growth bound start from the listing,
    /// when the scan is done; until then the choice uses the table as it is, rows already
    /// re-read fresher.
    pub fn refresh_slice(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        slice: Duration,
    ) -> SliceDone {
        self.refresh_until(reader, scope, policy, basis, slice, |_| true)
    }

    /// The scan of [`Ranker::refresh`], stopped when `stop` says so: it is asked each time
    /// `every` has passed since it was last asked (the clock looked at every 32 processes read
    /// from /proc, every 8 task-iterator rows). The scan then stops where it is, and the next
    /// call (or [`Ranker::finish_watching`]) goes on from there; a call with no scan under way
    /// starts one (listing the processes, with `basis`). `stop` gets the scope, to read its
    /// memory. The daemon's rescan near the levels: in one go, while `stop` looks at memory,
    /// the kernel's notifications and its OOM kills every 2 ms (`daemon::NearLook`). In 2 ms
    /// slices, one per wake-up, the same rescan took about 40 wake-ups at 10 000 processes, so
    /// its table was at least a quarter of a second old when done, for about the same CPU
    /// (`benches/daemon.rs`, the two measured alternately, two runs: 1.5–6 % more at 5 000 and
    /// 10 000 processes, each slice starting on caches gone cold in the poll's sleep; −3 to
    /// +3 % at 1 000).
    /// The table's age and growth bound start from the listing, when the scan is done; until
    /// then the choice uses the table as it is, rows already re-read fresher.
    pub fn refresh_until(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        every: Duration,
        mut stop: impl FnMut(&mut Scope) -> bool,
    ) -> SliceDone {
        let t0 = Instant::now();
        let mut look = t0;
        let mut p = match self.partial.take() {
            Some(p) => p,
            None => {
                self.begin_scan(reader, scope, basis);
                Partial {
                    next: 0,
                    listed: t0,
                    basis,
                }
            }
        };
        let start = p.next;
        // The clock is looked at every 32 processes read from /proc, every 8 from the task
        // iterator's rows (no read between them: 32 took 2.5 ms in the VM's emulated CPU).
        let clock_every = if self.rows.is_empty() { 32 } else { 8 };
        while p.next < self.pids.len() {
            if p.next > start && (p.next - start) % clock_every == 0 && look.elapsed() >= every {
                if stop(scope) {
                    let looked = p.next - start;
                    self.partial = Some(p);
                    return SliceDone {
                        looked,
                        finished: false,
                    };
                }
                look = Instant::now();
            }
            self.scan_one(reader, policy, p.next, p.basis.swap_in_use);
            p.next += 1;
        }
        self.finish_scan(p.listed, p.basis.pgalloc);
        SliceDone {
            looked: p.next - start,
            finished: true,
        }
    }

    /// The rescan near the levels, every half second there (`daemon::Daemon::tick`). Reading
    /// from `/proc`, it is bounded when it can be: the processes are listed again (newcomers
    /// learnt, leavers dropped, as [`Ranker::relist_watching`] does), the best row is re-read,
    /// then every row whose estimate plus the pages allocated since the last full scan (what
    /// it can have taken since, the bound [`Ranker::select`] uses) reaches the best score read
    /// so far, and every row whose rules are undecided (matched again, as at every scan). It
    /// is a full rescan
    /// ([`Ranker::refresh_until`]) instead when a scan is under way, the last full scan is
    /// [`FULL_RESCAN_EVERY`] old, more than 1/[`BOUNDED_GROWTH_SHARE`] of the scope's pages
    /// was allocated since it, more than [`BOUNDED_MAX_NEW`] PIDs were handed out since the
    /// last listing, the processes cannot be relisted (a stale table, the PID counter wrapped
    /// or unreadable), or the table comes from the kernel's task iterator (whose pass gives every
    /// row fresh for the cost of a listing). A bounded rescan sets the table's age, not its
    /// growth bound, which stays that of the last full scan. `stop` is asked as in
    /// [`Ranker::refresh_until`]; a bounded rescan it stops is dropped (the rows it re-read
    /// stay fresher) and not marked done. (`stop` is a `dyn` closure: the daemon's loop and its
    /// warm-up run the one instance.)
    pub fn refresh_near(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        every: Duration,
        stop: &mut dyn FnMut(&mut Scope) -> bool,
    ) -> NearRescan {
        let bounded_due = self.partial.is_none()
            && self.rows.is_empty()
            && self
                .full_at
                .is_some_and(|t| t.elapsed() < FULL_RESCAN_EVERY)
            && basis.pgalloc.saturating_sub(self.pgalloc_at_scan)
                <= basis.totalpages / BOUNDED_GROWTH_SHARE;
        if bounded_due
            && let Some(done) = self.rescan_bounded(reader, scope, policy, basis, every, stop)
        {
            return done;
        }
        let done = self.refresh_until(reader, scope, policy, basis, every, stop);
        NearRescan {
            looked: done.looked,
            finished: done.finished,
            bounded: false,
        }
    }

    /// The bounded rescan of [`Ranker::refresh_near`]; `None` when the processes could not be
    /// relisted, or the listing came from the task iterator (a full rescan follows).
    fn rescan_bounded(
        &mut self,
        reader: &mut ProcReader,
        scope: &mut Scope,
        policy: &Policy,
        basis: ScanBasis,
        every: Duration,
        stop: &mut dyn FnMut(&mut Scope) -> bool,
    ) -> Option<NearRescan> {
        let t0 = Instant::now();
        // Newcomers are learnt without a look (the listing is not resumable): with many, the
        // full rescan, which looks every `every` and goes on where it stopped, does it.
        let Some(Some(newcomers)) =
            self.relist_at_most(reader, scope, policy, basis, None, BOUNDED_MAX_NEW)
        else {
            return None;
        };
        if !self.rows.is_empty() {
            // A cgroup whose share of the threads grew past the iterator's: its rows came
            // with the listing, and a full rescan takes them.
            return None;
        }
        let growth = basis.pgalloc.saturating_sub(self.pgalloc_at_scan) as i64;
        // The rows' estimates (`order`); the best one re-read first, for a floor under the
        // best score; then every row that could reach the floor, which rises as they are read
        // (a row passed over could not reach it when passed, nor the final best since).
        // A row whose rules are undecided (its command line was not read in time) has no
        // estimate while a `protect` rule may match it: read at every rescan, as a full one
        // would, with a score that no floor passes over.
        self.order.clear();
        let mut top: Option<Key> = None;
        for (pid, slot) in self.table.iter() {
            if slot.e.unsure() {
                self.order.push(Key::new(i64::MAX, slot.e.starttime, pid));
            } else if let Some(est) = self.estimate(policy, &slot.e) {
                let k = Key::new(est, slot.e.starttime, pid);
                self.order.push(k);
                top = top.max(Some(k));
            }
        }
        let mut best: Option<i64> = None;
        let mut reread = 0;
        let mut look = t0;
        let mut finished = true;
        let mut keys = std::mem::take(&mut self.order);
        let first = top.map(|t| t.pid);
        for k in first.map(|pid| (pid, i64::MAX)).into_iter().chain(
            keys.iter()
                .filter(|k| Some(k.pid) != first)
                .map(|k| (k.pid, k.score)),
        ) {
            let (pid, score) = k;
            if best.is_some_and(|b| score.saturating_add(growth) < b) {
                continue;
            }
            if reread > 0 && reread % 32 == 0 && look.elapsed() >= every {
                if stop(scope) {
                    finished = false;
                    break;
                }
                look = Instant::now();
            }
            let fresh = self.scan_pid(reader, policy, pid, None, basis.swap_in_use);
            reread += 1;
            // A row whose read failed keeps its older figures: no floor for the best.
            if fresh
                && let Some(est) = self
                    .table
                    .get(pid)
                    .and_then(|s| self.estimate(policy, &s.e))
            {
                best = Some(best.map_or(est, |b| b.max(est)));
            }
        }
        keys.clear();
        self.order = keys;
        if finished {
            self.scanned_at = Some(t0);
        }
        Some(NearRescan {
            looked: newcomers + reread,
            finished,
            bounded: true,
        })
    }

    /// Whether a scan in slices is under way.
    pub fn scan_under_way(&self) -> bool {
        self.partial.is_some()
    }

    /// The scan in slices under way: when it listed the processes, and the kernel's page
    /// allocation counter then (what its table's age and growth bound will start from).
    pub fn scan_under_way_since(&self) -> Option<(Instant, u64)> {
        self.partial.as_ref().map(|p| (p.listed, p.basis.pgalloc))
    }

    /// A new scan: a new generation and the scope's processes listed.
    fn begin_scan(&mut self, reader: &mut ProcReader, scope: &mut Scope, basis: ScanBasis) {
        self.partial = None;
        self.generation = self.generation.wrapping_add(1);
        self.cmdline_budget = CMDLINE_BUDGET;
        self.totalpages = basis.totalpages.max(1);
        // The kernel's last PID is read before the listing: a process started meanwhile is
        // listed too.
        let load = reader.loadavg();
        self.listing_last_pid = load.map(|l| l.last_pid);
        self.list(reader, scope, load.map(|l| l.threads));
    }

    /// The scope's processes listed into `pids`; with the kernel's task iterator, their
    /// badness terms into `rows` too. For a cgroup, the iterator (its program lists only the
    /// group's processes, but walks every thread there is to find them) is taken when the
    /// group's processes number at least 1 in [`ITERATOR_SHARE`] of the machine's `threads`:
    /// as many as the table knows, or, with none known yet, as `cgroup.procs` lists. Else the
    /// group's `cgroup.procs`, and a read per process.
    fn list(&mut self, reader: &mut ProcReader, scope: &mut Scope, threads: Option<u32>) {
        self.pids.clear();
        self.rows.clear();
        if scope.cgroup().is_none() {
            if reader.task_rows(&mut self.rows) {
                self.pids.extend(self.rows.iter().map(|r| r.pid));
            } else {
                let _ = reader.pids(&mut self.pids);
            }
            self.table.reserve_for(self.pids.len());
            return;
        }
        let mut from_procs = false;
        let members = if self.table.is_empty() && reader.has_tasks() {
            scope.cgroup_pids(&mut self.pids);
            from_procs = true;
            self.pids.len()
        } else {
            self.table.len()
        };
        let iterate =
            reader.has_tasks() && threads.is_some_and(|t| members * ITERATOR_SHARE >= t as usize);
        if reader.has_tasks() && self.group_iterated != Some(iterate) {
            self.group_iterated = Some(iterate);
            log::debug!(
                "listing {} {} ({members} processes in it, {} threads on the machine)",
                scope.label(),
                if iterate {
                    "with the kernel's task iterator"
                } else {
                    "from cgroup.procs, reading /proc per process"
                },
                threads.map_or("unknown".to_string(), |t| t.to_string()),
            );
        }
        if iterate && reader.task_rows(&mut self.rows) {
            if self.rows.is_empty() {
                // An empty group, or a filter that picks out nothing: `cgroup.procs` says.
                if !from_procs {
                    scope.cgroup_pids(&mut self.pids);
                }
                if !self.pids.is_empty() {
                    log::warn!(
                        "the kernel's task iterator found none of the {} processes of {}; reading them in /proc from now on",
                        self.pids.len(),
                        scope.label()
                    );
                    reader.stop_tasks();
                }
            } else {
                self.pids.clear();
                self.pids.extend(self.rows.iter().map(|r| r.pid));
            }
        } else if !from_procs {
            scope.cgroup_pids(&mut self.pids);
        }
        self.table.reserve_for(self.pids.len());
    }

    /// Listed process `i` re-read (known) or learnt (new): from its task-iterator row when
    /// there is one, else from `/proc`.
    fn scan_one(&mut self, reader: &mut ProcReader, policy: &Policy, i: usize, swap_in_use: bool) {
        let pid = self.pids[i];
        let row = self.rows.get(i).copied();
        if row.is_some() && i % 8 == 0 {
            // A row costs no read, and reads are where a breathing thread pauses.
            crate::sense::breath::tick();
        }
        let _ = self.scan_pid(reader, policy, pid, row, swap_in_use);
    }

    /// Process `pid` re-read (known) or learnt (new), from its task-iterator `row` when there
    /// is one, else from `/proc`. False when a read failed for a process that is there (its
    /// row, if any, keeps its older figures).
    // Inlined into both callers: the idle daemon's full scans keep the one body they ran
    // before (`scan_one`, in `link/hot-symbols.txt`), and the bounded rescan near the levels
    // has its own copy outside the locked hot range.
    #[inline(always)]
    fn scan_pid(
        &mut self,
        reader: &mut ProcReader,
        policy: &Policy,
        pid: i32,
        row: Option<TaskRow>,
        swap_in_use: bool,
    ) -> bool {
        let generation = self.generation;
        let known = match self.table.get(pid).map(|s| s.e) {
            None => None,
            // Headless: its memory from a live thread (its `statm` and its task-iterator row
            // are the main thread's: nothing).
            Some(e) if e.headless => {
                if !self.refresh_headless(reader, pid) {
                    self.forget(pid);
                    self.learn(reader, policy, pid, swap_in_use, row);
                }
                return true;
            }
            // Immune with memory (`oom_score_adj` -1000, or this process): the choice never
            // looks at the row, so its identity is checked here, or a PID reused by another
            // process would stay immune. Such rows are few.
            Some(e) if e.immune && e.rss_pages > 0 => Some(match reader.stat(pid) {
                Ok(st) if e.known && st.starttime != e.starttime => {
                    self.forget(pid);
                    self.learn(reader, policy, pid, swap_in_use, row);
                    return true;
                }
                Ok(st) => {
                    if let Some(slot) = self.table.get_mut(pid) {
                        slot.e.known = true;
                        slot.e.starttime = st.starttime;
                        slot.e.comm_hash = comm_hash(&st.comm);
                    }
                    Ok(st.rss_pages)
                }
                Err(err) => Err(err),
            }),
            // Known: its row, or one read of statm. Identity (start time) and renames are
            // checked when the process comes near the top (`select`).
            Some(_) => Some(match row {
                Some(r) => Ok(u64::from(r.rss_pages)),
                None => reader.statm_rss(pid),
            }),
        };
        let rss = match known {
            None => {
                self.learn(reader, policy, pid, swap_in_use, row);
                return true;
            }
            Some(Ok(rss)) => rss,
            Some(Err(err)) if err.is_gone() => {
                // The process we knew left. The PID was listed just now: it may already
                // belong to someone new.
                self.forget(pid);
                self.learn(reader, policy, pid, swap_in_use, row);
                return true;
            }
            Some(Err(err)) => {
                self.unread.note(err);
                return false;
            }
        };
        if rss == 0
            && self
                .table
                .get(pid)
                .is_some_and(|s| !s.e.immune && s.e.rss_pages > 0)
            && let Ok(st) = reader.stat(pid)
            && st.main_thread_gone()
        {
            // Its memory went to nothing since the last scan, and its main thread is a zombie
            // while others run: headless from now on (see `Entry::headless`). A process that
            // is ending or swapped out whole costs this one `stat`, once.
            let mut e = self.new_entry(reader, policy, &st);
            e.seen_gen = self.generation;
            self.update(pid, e);
            return true;
        }
        let Some(slot) = self.table.get_mut(pid) else {
            return false;
        };
        let e = &mut slot.e;
        let protected = e
            .rule()
            .and_then(|i| policy.rules.get(i as usize))
            .is_some_and(|r| r.kind == RuleKind::Protect);
        if protected && e.known {
            // A row a rule protects never comes near the top, where the choice checks who a
            // PID is and matches the rules again: learnt afresh here, at every full scan (a
            // few reads per protected process). A new process given its PID must not inherit
            // the protection, nor may a process that exec'd under the same name, changed its
            // user or moved to another cgroup keep a rule it no longer meets.
            self.forget(pid);
            self.learn(reader, policy, pid, swap_in_use, row);
            return true;
        }
        if e.unsure() {
            // Its rules were matched without its command line: learnt again, rules included.
            self.forget(pid);
            self.learn(reader, policy, pid, swap_in_use, row);
            return true;
        }
        if e.immune && e.rss_pages == 0 && rss > 0 {
            // A kernel thread or zombie has no memory: this PID belongs to someone new.
            self.forget(pid);
            self.learn(reader, policy, pid, swap_in_use, row);
            return true;
        }
        e.rss_pages = pages(rss);
        e.seen_gen = generation;
        if let Some(r) = row {
            // The row has what a detail read would fetch, fresh: swap, page tables, adj,
            // and whether it is a kernel thread or has no memory.
            self.take_row(pid, &r);
            return true;
        }
        let stale = generation.wrapping_sub(e.detail_gen) >= 10;
        // Protected rows with memory too: a process can raise its `oom_score_adj` from -1000.
        if (swap_in_use || stale) && (!e.immune || e.rss_pages > 0) {
            let mut e2 = *e;
            if swap_in_use || e2.tables_due() {
                self.read_detail(reader, &mut e2, pid);
            } else {
                // Nothing `status` has can have moved (no swap in use, page tables with the
                // resident set): `oom_score_adj` alone, a fifth to a quarter of the cost.
                self.reread_adj(reader, &mut e2, pid);
            }
            self.update(pid, e2);
        }
        true
    }

    /// The end of a scan: rows not seen in it dropped (their processes left), its time and
    /// page allocation counter kept.
    fn finish_scan(&mut self, at: Instant, pgalloc: u64) {
        self.drop_unseen();
        self.last_pid = self.listing_last_pid;
        self.scanned_at = Some(at);
        self.full_at = Some(at);
        self.pgalloc_at_scan = pgalloc;
    }

    /// Drops the rows the latest listing did not have (their processes left).
    fn drop_unseen(&mut self) {
        let generation = self.generation;
        self.table.retain(|slot| slot.e.seen_gen == generation);
    }

    /// Stores `e` in its row.
    fn update(&mut self, pid: i32, e: Entry) {
        if let Some(slot) = self.table.get_mut(pid) {
            slot.e = e;
        }
    }

    /// Drops a row.
    fn forget(&mut self, pid: i32) {
        self.table.remove(pid);
    }

    /// A process the table does not know: the light read — resident pages and
    /// `oom_score_adj`, the rest learnt later (the start time and name when it nears the top,
    /// page tables and uid at its first detail read, spread over the next ten scans). Rules to
    /// match, swap in use, or no memory (a kernel thread, a zombie or a process swapped out
    /// whole) take the full read.
    ///
    /// With a task-iterator `row` the light read reads nothing: the row has the resident
    /// pages, swap, page tables and adj (so swap in use needs no full read either).
    fn learn(
        &mut self,
        reader: &mut ProcReader,
        policy: &Policy,
        pid: i32,
        swap_in_use: bool,
        row: Option<TaskRow>,
    ) {
        let rss = match row {
            Some(r) => Ok(u64::from(r.rss_pages)),
            None => reader.statm_rss(pid),
        };
        let rss = match rss {
            Ok(rss) => rss,
            Err(err) => {
                self.unread.note(err);
                return;
            }
        };
        let e = if policy.rules.is_empty() && (!swap_in_use || row.is_some()) && rss > 0 {
            let mut e = Entry {
                known: false,
                starttime: 0,
                comm_hash: 0,
                rss_pages: pages(rss),
                swap_pages: 0,
                // Until it is read: the fewest a dense address space needs (one page per 512).
                pgtables_pages: pages(rss / 512),
                tables_rss: NOT_READ,
                adj: 0,
                uid: NOT_READ,
                rule: NO_RULE,
                class: 0,
                immune: pid == self.self_pid,
                headless: false,
                seen_gen: self.generation,
                // Due for a detail read within ten scans, newcomers spread over them.
                detail_gen: self.generation.wrapping_sub(pid.unsigned_abs() % 10),
            };
            if let Some(r) = row {
                Self::apply_row(&mut e, pid, &r, self.self_pid, self.generation);
            } else if !self.read_adj(reader, &mut e, pid) {
                return;
            }
            e
        } else {
            match reader.stat(pid) {
                Ok(st) => self.new_entry(reader, policy, &st),
                Err(err) => {
                    self.unread.note(err);
                    return;
                }
            }
        };
        self.table.insert(pid, Slot { e });
    }

    /// A known row brought up to its task-iterator row.
    fn take_row(&mut self, pid: i32, r: &TaskRow) {
        let (self_pid, generation) = (self.self_pid, self.generation);
        if let Some(slot) = self.table.get_mut(pid) {
            Self::apply_row(&mut slot.e, pid, r, self_pid, generation);
        }
    }

    /// What a detail read would have set, from a task-iterator row (the uid stays: it is
    /// read when rules are matched).
    fn apply_row(e: &mut Entry, pid: i32, r: &TaskRow, self_pid: i32, generation: u32) {
        e.rss_pages = r.rss_pages;
        e.swap_pages = r.swap_pages;
        e.pgtables_pages = r.pgtables_pages;
        e.tables_rss = r.rss_pages;
        e.adj = r.adj;
        e.immune =
            order::immunity(pid, r.is_kthread(), !r.has_mm, r.adj, pid == self_pid).is_some();
        e.detail_gen = generation;
    }

    /// The `status` of a live thread of `pid` (see [`Entry::headless`]), with its id; `None`
    /// when none has the address space any more (the process has ended, or is ending).
    fn live_thread(&mut self, reader: &mut ProcReader, pid: i32) -> Option<(i32, Status)> {
        reader
            .live_thread_status(pid, &mut self.tids)
            .unwrap_or_else(|err| {
                self.unread.note(err);
                None
            })
    }

    /// [`Ranker::live_thread`]'s `status` alone.
    fn headless_status(&mut self, reader: &mut ProcReader, pid: i32) -> Option<Status> {
        self.live_thread(reader, pid).map(|(_, s)| s)
    }

    /// A known headless row ([`Entry::headless`]) brought up to date from a live thread: its
    /// memory, swap and page tables, `oom_score_adj` and so whether it is immune. False when
    /// no thread has the address space any more (the process ended, or its PID is another's).
    fn refresh_headless(&mut self, reader: &mut ProcReader, pid: i32) -> bool {
        let Some(mut e) = self.table.get(pid).map(|s| s.e) else {
            return false;
        };
        let Some(status) = self.headless_status(reader, pid) else {
            return false;
        };
        e.rss_pages = pages(status_rss_pages(&status, self.page_kb));
        e.swap_pages = pages(status.swap_kb / self.page_kb);
        e.pgtables_pages = pages((status.pte_kb + status.pmd_kb) / self.page_kb);
        e.tables_rss = e.rss_pages;
        if let Ok(adj) = reader
            .oom_score_adj(pid)
            .map_err(|err| self.unread.note(err))
        {
            e.adj = adj;
        }
        e.immune =
            order::immunity(pid, status.kthread, false, e.adj, pid == self.self_pid).is_some();
        e.seen_gen = self.generation;
        e.detail_gen = self.generation;
        self.update(pid, e);
        true
    }

    /// Swap, page tables and uid from `status`, and `oom_score_adj`; with both read, whether
    /// the process is immune is judged anew (its adj may have risen from -1000).
    fn read_detail(&mut self, reader: &mut ProcReader, e: &mut Entry, pid: i32) {
        let status = if e.headless {
            self.headless_status(reader, pid)
                .inspect(|s| e.rss_pages = pages(status_rss_pages(s, self.page_kb)))
                .ok_or(ProcError::Gone { pid })
        } else {
            reader.status(pid)
        };
        let status = match status {
            Ok(status) => {
                e.swap_pages = pages(status.swap_kb / self.page_kb);
                e.pgtables_pages = pages((status.pte_kb + status.pmd_kb) / self.page_kb);
                e.tables_rss = e.rss_pages;
                e.uid = status.uid.unwrap_or(NOT_READ);
                e.immune |=
                    order::immunity(pid, status.kthread, !status.has_mm, 0, false).is_some();
                Some(status)
            }
            Err(err) => {
                self.unread.note(err);
                None
            }
        };
        if let Ok(adj) = reader
            .oom_score_adj(pid)
            .map_err(|err| self.unread.note(err))
        {
            e.adj = adj;
            if let Some(st) = status {
                e.immune = order::immunity(pid, st.kthread, !st.has_mm, adj, pid == self.self_pid)
                    .is_some();
            } else {
                e.immune |= order::immunity(pid, false, false, adj, false).is_some();
            }
        }
        e.detail_gen = self.generation;
    }

    /// A detail read without `status`: `oom_score_adj` read again, and whether the process is
    /// immune judged anew from it. Only for a row with memory (so neither a kernel thread nor
    /// a process without an address space).
    fn reread_adj(&mut self, reader: &mut ProcReader, e: &mut Entry, pid: i32) {
        if let Ok(adj) = reader
            .oom_score_adj(pid)
            .map_err(|err| self.unread.note(err))
        {
            e.adj = adj;
            e.immune = order::immunity(pid, false, false, adj, pid == self.self_pid).is_some();
        }
        e.detail_gen = self.generation;
    }

    /// Reads `oom_score_adj` into `e` (-1000 makes it immune); false, counted, if it could
    /// not be read.
    fn read_adj(&mut self, reader: &mut ProcReader, e: &mut Entry, pid: i32) -> bool {
        match reader.oom_score_adj(pid) {
            Ok(adj) => {
                e.adj = adj;
                e.immune |= order::immunity(pid, false, false, adj, false).is_some();
                true
            }
            Err(err) => {
                self.unread.note(err);
                false
            }
        }
    }

    fn new_entry(&mut self, reader: &mut ProcReader, policy: &Policy, st: &Stat) -> Entry {
        let headless = st.main_thread_gone() && self.headless_status(reader, st.pid).is_some();
        let mut e = Entry {
            known: true,
            starttime: st.starttime,
            comm_hash: comm_hash(&st.comm),
            rss_pages: pages(st.rss_pages),
            swap_pages: 0,
            pgtables_pages: 0,
            tables_rss: NOT_READ,
            adj: 0,
            uid: NOT_READ,
            rule: NO_RULE,
            class: 0,
            // "oomguard itself" is this process only (see `order`).
            immune: order::immunity(
                st.pid,
                st.is_kthread(),
                st.is_zombie() && !headless,
                0,
                st.pid == self.self_pid,
            )
            .is_some(),
            headless,
            seen_gen: self.generation,
            detail_gen: self.generation,
        };
        if !e.immune {
            self.read_detail(reader, &mut e, st.pid);
            let side = Self::side(
                &self.cmdline_side,
                &self.cgroup_side,
                st.starttime,
                &mut self.cmdline_budget,
            );
            let c = classify(
                reader,
                policy,
                st.pid,
                &st.comm,
                e.uid(),
                self.prefer_v2_path,
                side,
            );
            e.rule = c.rule.map_or(NO_RULE, |i| i as u16);
            e.class =
                (c.unsure as u8 * CLASS_UNSURE) | (c.maybe_protected as u8 * CLASS_MAYBE_PROTECTED);
        }
        e
    }

    fn kind(policy: &Policy, rule: Option<u16>) -> Option<RuleKind> {
        rule.and_then(|i| policy.rules.get(i as usize))
            .map(|r| r.kind)
    }

    /// The estimated score of an entry from the table (`None`: never chosen). A process that
    /// a `protect` rule might still match (its command line was not read in time) is not
    /// chosen until its rules are decided.
    fn estimate(&self, policy: &Policy, e: &Entry) -> Option<i64> {
        if e.immune || e.class & CLASS_MAYBE_PROTECTED != 0 {
            return None;
        }
        order::score(
            e.points(),
            e.adj,
            Self::kind(policy, e.rule()),
            self.totalpages,
        )
    }

    /// Chooses the victim in two passes. First the rss of the top of the table is re-read
    /// (`stat` only), in order of the estimate, until nothing below could overtake the best (see
    /// the module docs); `growth_bound_pages` is how many pages anyone may have gained since the
    /// scan. Then the best few are verified in full (`status` for swap, page tables and a pending
    /// SIGKILL; `oom_score_adj`), until the best verified score is at least the next unverified
    /// estimate.
    pub fn select(
        &mut self,
        reader: &mut ProcReader,
        policy: &Policy,
        growth_bound_pages: u64,
    ) -> Selection {
        self.cmdline_budget = CMDLINE_BUDGET;
        self.order.clear();
        for (pid, slot) in self.table.iter() {
            if let Some(est) = self.estimate(policy, &slot.e) {
                self.order.push(Key::new(est, slot.e.starttime, pid));
            }
        }
        // Best first, in the one victim order (its keys never tie): a heap (built in linear
        // time), as the first pass takes at most a few dozen of the best, not all of them sorted.
        let mut best_first = std::collections::BinaryHeap::from(std::mem::take(&mut self.order));
        let mut sel = Selection::default();
        let big = (self.totalpages / 100).max(1) as i64;
        let growth = growth_bound_pages as i64;
        const MAX_STAT_READS: usize = 64;

        // Pass 1: fresh rss for the top of the table.
        self.fresh.clear();
        sel.bounded = true;
        while let Some(k) = best_first.pop() {
            let pid = k.pid;
            if let Some(&best) = self.fresh.first()
                && Key::new(k.score.saturating_add(growth), k.starttime, pid) <= best
                && (self.fresh.len() >= 5 || sel.precise_reads >= 16)
            {
                break;
            }
            if sel.precise_reads >= MAX_STAT_READS {
                sel.bounded = false;
                break;
            }
            let Some(mut e) = self.table.get(pid).map(|s| s.e) else {
                continue;
            };
            sel.precise_reads += 1;
            let st = match reader.stat(pid) {
                Ok(st) => st,
                Err(err) => {
                    self.unread.note(err);
                    continue;
                }
            };
            if !e.known {
                // Learnt by the light read: now its identity.
                e.known = true;
                e.starttime = st.starttime;
                e.comm_hash = comm_hash(&st.comm);
                e.immune |= order::immunity(pid, st.is_kthread(), false, e.adj, false).is_some();
                self.update(pid, e);
            } else if st.starttime != e.starttime
                || e.comm_hash != comm_hash(&st.comm)
                || e.unsure()
            {
                // The PID was reused, or the process exec'd or renamed itself since the scan,
                // or its rules were matched without its command line: learn it afresh (rules
                // included) and judge it as it is now.
                e = self.new_entry(reader, policy, &st);
                self.update(pid, e);
            }
            if st.main_thread_gone() && !e.headless {
                // Its main thread exited (or is exiting) since the scan while other threads
                // run on: headless from now on, its memory read from a live thread (its row
                // holds what the main thread showed; skipped as a zombie, it would be missed
                // until the next scan).
                e = self.new_entry(reader, policy, &st);
                self.update(pid, e);
            }
            let Some(est) = self.estimate(policy, &e) else {
                continue;
            };
            // Exiting; for a headless process, its main thread's exit is not the process's
            // (pass 2 looks at a live thread).
            if st.is_exiting() && !st.is_zombie() && !(e.headless && st.main_thread_gone()) {
                if e.points() >= big && sel.in_progress.is_none() {
                    sel.in_progress = Some((pid, st.comm.to_string_lossy().into_owned()));
                }
                continue;
            }
            if st.is_zombie() && !e.headless {
                continue;
            }
            // Fresh resident pages: `stat`'s, or for a headless process (whose `stat` shows
            // none) what its scan read from a live thread.
            let rss_now = if e.headless {
                e.rss_pages as i64
            } else {
                st.rss_pages as i64
            };
            let key = Key::new(est - e.rss_pages as i64 + rss_now, st.starttime, pid);
            let at = self.fresh.partition_point(|&o| o > key);
            self.fresh.insert(at, key);
        }
        self.order = best_first.into_vec();

        // Pass 2: verify in full, best first.
        let mut i = 0;
        while i < self.fresh.len() {
            let next = self.fresh[i];
            let pid = next.pid;
            i += 1;
            if let Some(best) = sel.candidates.first()
                && best.key() >= next
                && sel.candidates.len() >= 5
            {
                break;
            }
            let Some(mut e) = self.table.get(pid).map(|s| s.e) else {
                continue;
            };
            let (st, status) = match reader
                .stat(pid)
                .and_then(|st| Ok((st, reader.status(pid)?)))
            {
                Ok(r) => r,
                Err(err) => {
                    self.unread.note(err);
                    continue;
                }
            };
            if st.starttime != e.starttime {
                continue;
            }
            // A headless process: memory, signals and exit as a live thread sees them (its main
            // thread's exit is not the process's).
            let headless = e.headless && st.main_thread_gone();
            let (status, rss_pages, thread_exiting) = if headless {
                match self.live_thread(reader, pid) {
                    Some((tid, s)) => {
                        let rss = status_rss_pages(&s, self.page_kb);
                        let exiting = reader.task_stat(pid, tid).is_ok_and(|t| t.is_exiting());
                        (s, rss, exiting)
                    }
                    None => continue,
                }
            } else {
                (status, st.rss_pages, false)
            };
            // A headless process's main thread in its exit is not the process's exit.
            let main_exiting = st.is_exiting() && !st.is_zombie() && !headless;
            if status.sigkill_pending || thread_exiting || main_exiting {
                if e.points().max(st.rss_pages as i64) >= big && sel.in_progress.is_none() {
                    sel.in_progress = Some((pid, st.comm.to_string_lossy().into_owned()));
                }
                continue;
            }
            let adj = match reader.oom_score_adj(pid) {
                Ok(adj) => adj,
                Err(err) => {
                    self.unread.note(err);
                    continue;
                }
            };
            if order::immunity(
                pid,
                st.is_kthread(),
                !status.has_mm,
                adj,
                pid == self.self_pid,
            )
            .is_some()
            {
                continue;
            }
            // A vfork child (its parent's memory, until it execs): its kill frees nothing, and
            // its parent, which shows the same memory, is the one to take (as the kernel does).
            if st.ppid > 1 && reader.shares_mm(pid, st.ppid) {
                continue;
            }
            // The rules again, on the process as it is now (its user from this `status`, its
            // executable, command line and cgroup as read ahead within the last seconds): one
            // that exec'd under the same name, changed its user or moved to another cgroup since
            // it was matched must neither keep a rule it no longer meets nor miss a `protect`
            // it now meets. A match that cannot be completed in time keeps the earlier one.
            if !policy.rules.is_empty() {
                let side = Self::side(
                    &self.cmdline_side,
                    &self.cgroup_side,
                    e.starttime,
                    &mut self.cmdline_budget,
                );
                let c = classify(
                    reader,
                    policy,
                    pid,
                    &st.comm,
                    status.uid,
                    self.prefer_v2_path,
                    side,
                );
                if !c.unsure {
                    e.rule = c.rule.map_or(NO_RULE, |i| i as u16);
                    e.class = 0;
                }
            }
            let terms = Terms {
                rss_pages,
                ..Terms::from_proc(&st, &status, self.page_kb)
            };
            e.rss_pages = pages(terms.rss_pages);
            e.swap_pages = pages(terms.swap_pages);
            e.pgtables_pages = pages(terms.pgtables_pages);
            e.tables_rss = e.rss_pages;
            e.adj = adj;
            e.uid = status.uid.unwrap_or(NOT_READ);
            self.update(pid, e);
            let kind = Self::kind(policy, e.rule());
            let badness = score::badness(&terms, adj as i64, self.totalpages);
            let Some(score) = order::score(terms.points(), adj, kind, self.totalpages) else {
                continue;
            };
            let c = Candidate {
                pid,
                starttime: e.starttime,
                comm: st.comm.to_string_lossy().into_owned(),
                uid: status.uid,
                rss_kb: terms.rss_pages * self.page_kb,
                swap_kb: status.swap_kb,
                pgtables_kb: status.pte_kb + status.pmd_kb,
                oom_score_adj: adj,
                badness,
                score,
                rule: e
                    .rule()
                    .and_then(|i| policy.rules.get(i as usize))
                    .map(|r| format!("{} ({})", r.kind.as_str(), r.origin)),
                rule_kind: kind,
            };
            let at = sel
                .candidates
                .iter()
                .position(|o| c.key() > o.key())
                .unwrap_or(sel.candidates.len());
            if at < 5 {
                sel.candidates.insert(at, c);
                sel.candidates.truncate(5);
            }
        }
        sel.victim = sel.candidates.first().cloned();
        sel
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decide::policy::Rule;
    use crate::sense::Root;
    use crate::values::ScopeSpec;
    use std::fs;
    use std::path::Path;

    /// The daemon's memory per process is mostly its row: keep it small.
    #[test]
    fn a_row_is_56_bytes_and_a_task_row_24() {
        assert!(std::mem::size_of::<(i32, Slot)>() <= 56);
        assert!(std::mem::size_of::<TaskRow>() <= 24);
    }

    fn row(rss: u32) -> Slot {
        Slot {
            e: Entry {
                known: true,
                starttime: 1,
                comm_hash: 0,
                rss_pages: rss,
                swap_pages: 0,
                pgtables_pages: 0,
                tables_rss: NOT_READ,
                adj: 0,
                uid: NOT_READ,
                rule: NO_RULE,
                class: 0,
                immune: false,
                headless: false,
                seen_gen: 0,
                detail_gen: 0,
            },
        }
    }

    /// Rows are found by PID after inserts, replacements and removals (a removal moves the last
    /// row into the hole), and the table gives memory back when most of it emptied.
    #[test]
    fn the_pid_table_finds_rows_by_pid_and_gives_memory_back() {
        let mut t = PidTable::default();
        for pid in [5, 1, 9, 3, 7] {
            assert!(t.insert(pid, row(pid as u32 + 10)).is_none());
        }
        let old = t.insert(7, row(70)).expect("PID 7 was there");
        assert_eq!(old.e.rss_pages, 17);
        // 3 sits in the middle: the last row (7) moves into its place.
        assert_eq!(t.remove(3).unwrap().e.rss_pages, 13);
        assert!(t.get(3).is_none() && t.remove(3).is_none() && t.len() == 4);
        let rss = |t: &PidTable| {
            let mut v: Vec<(i32, u32)> = t.iter().map(|(p, s)| (p, s.e.rss_pages)).collect();
            v.sort();
            v
        };
        assert_eq!(rss(&t), [(1, 11), (5, 15), (7, 70), (9, 19)]);
        assert_eq!(t.get(7).unwrap().e.rss_pages, 70);
        for pid in 100..1100 {
            t.insert(pid, row(1));
        }
        let grown = t.rows.capacity();
        assert!(grown < 1004 + 1004 / 4, "capacity {grown} for 1004 rows");
        t.retain(|s| s.e.rss_pages != 1);
        assert_eq!(rss(&t), [(1, 11), (5, 15), (7, 70), (9, 19)]);
        for (pid, want) in [(1, 11), (5, 15), (7, 70), (9, 19)] {
            assert_eq!(
                t.get(pid).unwrap().e.rss_pages,
                want,
                "PID {pid} after retain"
            );
        }
        assert!(t.get(100).is_none());
        assert!(t.rows.capacity() < 64, "{} rows kept", t.rows.capacity());
        assert!(
            t.index.capacity() < 64,
            "{} buckets kept",
            t.index.capacity()
        );
    }

    /// Writes a fake process: stat (comm, state, flags, start, rss), statm, status, adj.
    #[expect(
        clippy::too_many_arguments,
        reason = "one fixture row, spelled out at each call"
    )]
    pub(crate) fn proc(
        root: &Path,
        pid: i32,
        comm: &str,
        state: char,
        flags: u32,
        start: u64,
        rss: u64,
        swap_kb: u64,
        adj: i16,
    ) {
        let d = root.join(format!("proc/{pid}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("stat"),
            format!("{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {start} 100000 {rss} 18446744073709551615 0 0\n"),
        )
        .unwrap();
        fs::write(d.join("statm"), format!("1000 {rss} 10 1 0 50 0\n")).unwrap();
        let mm = if state == 'Z' || flags & 0x0020_0000 != 0 {
            ""
        } else {
            "VmSize:\t 4000 kB\n"
        };
        fs::write(
            d.join("status"),
            format!("Name:\t{comm}\nUid:\t1000\t1000\t1000\t1000\n{mm}VmPTE:\t 8 kB\nVmSwap:\t {swap_kb} kB\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"),
        )
        .unwrap();
        fs::write(d.join("oom_score_adj"), format!("{adj}\n")).unwrap();
    }

    /// A fake machine: init, a kernel thread, a worker, an adj −1000 database, a zombie, a
    /// swapper and a small process (PID 104). Shared with `decide::rank`'s tests.
    pub(crate) struct Fixture {
        pub(crate) dir: tempfile::TempDir,
    }

    impl Fixture {
        pub(crate) fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let r = dir.path();
            fs::create_dir_all(r.join("proc/self")).unwrap();
            fs::write(
                r.join("proc/meminfo"),
                "MemTotal: 4000000 kB\nMemAvailable: 100000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
            )
            .unwrap();
            fs::write(r.join("proc/self/mountinfo"), "").unwrap();
            proc(r, 1, "init", 'S', 0, 1, 90_000, 0, 0);
            proc(r, 2, "kthreadd", 'S', 0x0020_0000, 2, 0, 0, 0);
            proc(r, 100, "web (worker) 1", 'S', 0, 500, 30_000, 0, 0);
            proc(r, 101, "db", 'S', 0, 400, 50_000, 0, -1000);
            proc(r, 102, "zombie", 'Z', 0, 300, 0, 0, 0);
            proc(r, 103, "swapper", 'S', 0, 450, 10_000, 100_000, 0);
            proc(r, 104, "small", 'S', 0, 600, 1_000, 0, 0);
            Fixture { dir }
        }
        pub(crate) fn root(&self) -> Root {
            Root::new(self.dir.path())
        }
    }

    /// A reader and a machine scope on the fixture, and an empty table.
    fn unscanned(fx: &Fixture) -> (ProcReader, Scope, Ranker) {
        let root = fx.root();
        let reader = ProcReader::open(&root).unwrap();
        let scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
        (reader, scope, Ranker::new(4, false))
    }

    fn ranked(fx: &Fixture, policy: &Policy) -> (Ranker, ProcReader) {
        let (mut reader, mut scope, mut r) = unscanned(fx);
        r.refresh(&mut reader, &mut scope, policy, million_pages(0));
        (r, reader)
    }

    /// A rescan at the bottom of memory reads the kernel's OOM kill counter as it goes (once a
    /// millisecond has passed since the last look) and stops when it rose.
    #[test]
    fn a_watched_scan_stops_when_the_kernels_oom_killer_acts() {
        let fx = Fixture::new();
        let r = fx.dir.path();
        // Enough processes that a scan takes well over a millisecond anywhere.
        for pid in 1000..4000 {
            proc(r, pid, "w", 'S', 0, pid as u64, 100, 0, 0);
        }
        fs::write(r.join("proc/vmstat"), "pgalloc_normal 10\noom_kill 3\n").unwrap();
        let (mut reader, mut scope, mut rk) = unscanned(&fx);
        let policy = Policy::default();
        let basis = million_pages(0);
        // The counter as last read: the kernel has not acted since, the scan runs to the end.
        let seen = rk.refresh_watching(&mut reader, &mut scope, &policy, basis, Some(3));
        assert_eq!(seen, Some(3007));
        assert!(rk.age().is_some());
        // Last read as 2: it rose during the scan, which stops and leaves the table stale.
        let seen = rk.refresh_watching(&mut reader, &mut scope, &policy, basis, Some(2));
        assert_eq!(seen, None);
        assert!(rk.age().is_none(), "a stopped scan must not count as fresh");
        // Unwatched (away from the bottom): the counter is not looked at.
        assert_eq!(rk.refresh(&mut reader, &mut scope, &policy, basis), 3007);

        // The system scope telling kills by the kernel log (`sense::kmsg`): a kill at a memory
        // cgroup's own limit does not stop the scan; a kill the log does not tell does.
        fs::create_dir_all(r.join("dev")).unwrap();
        fs::write(r.join("dev/kmsg"), "").unwrap();
        assert_eq!(scope.watch_kernel_log(), Ok(()));
        fs::write(
            r.join("dev/kmsg"),
            "3,7,7000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/box,task_memcg=/box,task=hog,pid=77,uid=0\n",
        )
        .unwrap();
        fs::write(r.join("proc/vmstat"), "pgalloc_normal 10\noom_kill 4\n").unwrap();
        let seen = rk.refresh_watching(&mut reader, &mut scope, &policy, basis, Some(3));
        assert_eq!(seen, Some(3007), "a memcg kill stopped the scan");
        fs::write(r.join("proc/vmstat"), "pgalloc_normal 10\noom_kill 5\n").unwrap();
        let seen = rk.refresh_watching(&mut reader, &mut scope, &policy, basis, Some(3));
        assert_eq!(seen, None, "a kill with no line must stop the scan");
    }

    /// What the tests scan against: a million pages, and the allocation counter at `pgalloc`.
    fn million_pages(pgalloc: u64) -> ScanBasis {
        ScanBasis {
            totalpages: 1_000_000,
            pgalloc,
            ..Default::default()
        }
    }

    /// 100 sleeping workers (PIDs 1000–1099) besides the fixture's own 7 processes, with a
    /// reader and the system-wide scope over them.
    fn hundred_workers() -> (Fixture, ProcReader, Scope) {
        let fx = Fixture::new();
        for pid in 1000..1100 {
            proc(
                fx.dir.path(),
                pid,
                "w",
                'S',
                0,
                pid as u64,
                100 + pid as u64,
                0,
                0,
            );
        }
        let root = fx.root();
        let reader = ProcReader::open(&root).unwrap();
        let scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
        (fx, reader, scope)
    }

    /// A scan in slices finished at a decision: the rest of it, not a new one, and its age and
    /// growth bound from its listing.
    #[test]
    fn a_scan_in_slices_is_finished_in_one_go_from_where_it_stopped() {
        let (_fx, mut reader, mut scope) = hundred_workers();
        let policy = Policy::default();
        let basis = million_pages(777);
        let mut rk = Ranker::new(4, false);
        assert_eq!(
            rk.finish_watching(&mut reader, &mut scope, &policy, None),
            Some(0),
            "no scan under way: nothing to finish"
        );
        let d = rk.refresh_slice(&mut reader, &mut scope, &policy, basis, Duration::ZERO);
        assert_eq!((d.looked, d.finished), (32, false));
        std::thread::sleep(Duration::from_millis(30));
        // The rest (107 listed: 7 fixture processes and 100 more), not a new scan.
        assert_eq!(
            rk.finish_watching(&mut reader, &mut scope, &policy, None),
            Some(107 - 32)
        );
        assert!(!rk.scan_under_way());
        assert_eq!(rk.len(), 107);
        // Age and growth bound from the listing of the scan, not from its end.
        assert!(rk.age().unwrap() >= Duration::from_millis(30));
        assert_eq!(rk.pgalloc_at_scan(), 777);
        assert!(rk.select(&mut reader, &policy, 0).victim.is_some());
    }

    /// A scan in slices: each call looks at a bounded share (32 processes per look at the
    /// clock; a zero slice stops at the first look), goes on where the last one stopped, and
    /// only the last call ends the scan (age, rows of processes that left dropped). A full scan
    /// meanwhile starts over from a new listing.
    #[test]
    fn a_scan_in_slices_goes_on_where_it_stopped_and_ends_like_a_full_scan() {
        let (fx, mut reader, mut scope) = hundred_workers();
        let r = fx.dir.path();
        let policy = Policy::default();
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        let mut slices = Vec::new();
        loop {
            let d = rk.refresh_slice(&mut reader, &mut scope, &policy, basis, Duration::ZERO);
            slices.push(d.looked);
            assert_eq!(rk.scan_under_way(), !d.finished);
            assert_eq!(
                rk.age().is_some(),
                d.finished,
                "fresh only once the scan ends"
            );
            if d.finished {
                break;
            }
        }
        // 7 fixture processes and 100 more, 32 at a time.
        assert_eq!(slices, [32, 32, 32, 11]);
        assert_eq!(rk.len(), 107);
        let sliced = rk.select(&mut reader, &policy, 0).victim.unwrap().pid;

        // Gone mid-scan: a process already looked at (the first slice), and one not yet.
        rk.refresh_slice(&mut reader, &mut scope, &policy, basis, Duration::ZERO);
        fs::remove_dir_all(r.join("proc/1000")).unwrap();
        fs::remove_dir_all(r.join("proc/1099")).unwrap();
        while !rk
            .refresh_slice(&mut reader, &mut scope, &policy, basis, Duration::MAX)
            .finished
        {}
        // The one not yet looked at is dropped; the other was seen alive in this scan (as
        // in a full scan, a process that leaves after its read goes at the next scan).
        assert_eq!(rk.len(), 106);

        // A full scan under way of a sliced one starts over and ends it.
        rk.refresh_slice(&mut reader, &mut scope, &policy, basis, Duration::ZERO);
        assert!(rk.scan_under_way());
        assert_eq!(rk.refresh(&mut reader, &mut scope, &policy, basis), 105);
        assert!(!rk.scan_under_way());
        assert_eq!(rk.len(), 105);

        // The same victim as a table made by one full scan.
        let (fx2, _, _) = hundred_workers();
        let (mut full, mut reader2) = ranked(&fx2, &policy);
        assert_eq!(
            full.select(&mut reader2, &policy, 0).victim.unwrap().pid,
            sliced
        );
    }

    /// A config reload forgets the rows, the table's age and a scan under way: the next
    /// choice rescans everything (an empty table kept fresh would have nobody to choose).
    #[test]
    fn a_reload_leaves_no_fresh_empty_table_and_no_half_scan() {
        let (_fx, mut reader, mut scope) = hundred_workers();
        let policy = Policy::default();
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        assert!(rk.age().is_some() && rk.len() > 100);
        rk.reset_rules();
        assert_eq!((rk.age(), rk.len(), rk.scan_under_way()), (None, 0, false));
        // Half a scan, then a reload: the scan under way is dropped too.
        let mut asked = 0;
        rk.refresh_until(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::ZERO,
            |_| {
                asked += 1;
                asked == 2
            },
        );
        assert!(rk.scan_under_way());
        rk.reset_rules();
        assert!(!rk.scan_under_way() && rk.age().is_none());
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        assert!(
            rk.len() > 100,
            "the rescan after the reload relearnt {}",
            rk.len()
        );
    }

    /// The rescan near the levels: in one go while `stop` says no, asked every `every` (each
    /// 32 processes with a zero `every`), handed the scope; stopped where it was when `stop`
    /// says so, and gone on with from there by the next call.
    #[test]
    fn a_scan_until_told_asks_as_it_goes_and_stops_when_told() {
        let (_fx, mut reader, mut scope) = hundred_workers();
        let policy = Policy::default();
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        let mut asked = 0;
        let d = rk.refresh_until(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::ZERO,
            |scope| {
                asked += 1;
                assert!(scope.memory().is_ok(), "the look gets a readable scope");
                false
            },
        );
        // 107 processes: asked after 32, 64 and 96; never told to stop, done in one call.
        assert_eq!((d.looked, d.finished, asked), (107, true, 3));
        assert!(rk.age().is_some() && !rk.scan_under_way());

        // Told to stop at the second question: 64 looked at, the rest left for the next call.
        let mut asked = 0;
        let d = rk.refresh_until(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::ZERO,
            |_| {
                asked += 1;
                asked == 2
            },
        );
        assert_eq!((d.looked, d.finished), (64, false));
        assert!(rk.scan_under_way());
        let d = rk.refresh_until(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::MAX,
            |_| unreachable!("asked before `every` passed"),
        );
        assert_eq!((d.looked, d.finished), (43, true));
        assert_eq!(rk.len(), 107);
    }

    /// Sets the kernel's last handed-out PID of the fixture (`/proc/loadavg`).
    fn last_pid(fx: &Fixture, pid: i32) {
        fs::write(
            fx.dir.path().join("proc/loadavg"),
            format!("0.50 0.40 0.30 2/{pid} {pid}\n"),
        )
        .unwrap();
    }

    /// A relisting at a decision: newcomers learnt, leavers dropped, known rows not re-read
    /// (the table keeps its scan's age and growth bound), and the choice allows for the growth.
    #[test]
    fn a_relisting_learns_newcomers_and_drops_leavers_without_rescanning() {
        let (fx, mut reader, mut scope) = hundred_workers();
        let r = fx.dir.path();
        let policy = Policy::default();
        let basis = million_pages(500);
        last_pid(&fx, 1099);
        assert_eq!(reader.loadavg().map(|l| l.last_pid), Some(1099));
        let mut rk = Ranker::new(4, false);
        assert_eq!(
            rk.relist_watching(&mut reader, &mut scope, &policy, basis, None),
            Some(false),
            "no scan to go on from"
        );
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        assert_eq!(rk.len(), 107);
        std::thread::sleep(Duration::from_millis(20));
        // Since the scan: one worker left, a large newcomer came, a known worker grew.
        fs::remove_dir_all(r.join("proc/1050")).unwrap();
        proc(r, 2000, "hog", 'R', 0, 5000, 200_000, 0, 0);
        fs::write(r.join("proc/1000/statm"), "1000 150000 10 1 0 50 0\n").unwrap();
        last_pid(&fx, 2000);
        let later = ScanBasis {
            pgalloc: 500 + 50_000,
            ..basis
        };
        assert_eq!(
            rk.relist_watching(&mut reader, &mut scope, &policy, later, None),
            Some(true)
        );
        assert_eq!(rk.len(), 107, "one left, one came");
        assert!(
            rk.age().unwrap() >= Duration::from_millis(20),
            "not a new scan"
        );
        assert_eq!(rk.pgalloc_at_scan(), 500);
        let sel = rk.select(&mut reader, &policy, 50_000);
        assert!(sel.bounded);
        assert_eq!(sel.victim.map(|v| v.pid), Some(2000));
        assert!(sel.candidates.iter().all(|c| c.pid != 1050));

        // The PID counter went back (wrapped at pid_max): a known PID may name someone new,
        // so nothing is done and the caller rescans.
        proc(r, 2001, "late", 'S', 0, 5001, 10, 0, 0);
        last_pid(&fx, 400);
        assert_eq!(
            rk.relist_watching(&mut reader, &mut scope, &policy, later, None),
            Some(false)
        );
        assert_eq!(rk.len(), 107, "the newcomer is not learnt");
        // Without /proc/loadavg there is no telling: the same.
        fs::remove_file(r.join("proc/loadavg")).unwrap();
        assert_eq!(reader.loadavg(), None);
        assert_eq!(
            rk.relist_watching(&mut reader, &mut scope, &policy, later, None),
            Some(false)
        );
        // A full scan sets the PID it goes on from.
        last_pid(&fx, 2001);
        rk.refresh(&mut reader, &mut scope, &policy, later);
        assert_eq!(rk.len(), 108);
        assert_eq!(
            rk.relist_watching(&mut reader, &mut scope, &policy, later, None),
            Some(true)
        );
    }

    /// The rescan near the levels, bounded: the processes listed again (a newcomer learnt, a
    /// leaver dropped) and only the rows that could overtake the best re-read; a full rescan
    /// when much was allocated since the last full scan, when that scan is too old, or when
    /// the PID counter wrapped.
    #[test]
    fn a_rescan_near_the_levels_rereads_only_the_rows_that_could_overtake_the_best() {
        let (fx, mut reader, mut scope) = hundred_workers();
        let r = fx.dir.path();
        let policy = Policy::default();
        let worker = |pid: i32, rss: u64| proc(r, pid, "w", 'S', 0, pid as u64, rss, 0, 0);
        worker(1099, 20_000);
        last_pid(&fx, 1099);
        let basis = million_pages(500);
        let mut rk = Ranker::new(4, false);
        let never = |_: &mut Scope| -> bool { unreachable!("a look in a short rescan") };
        // No full scan yet: the first rescan near the levels is one.
        let d = rk.refresh_near(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::MAX,
            &mut { never },
        );
        assert_eq!((d.looked, d.finished, d.bounded), (107, true, false));
        // Ten more, so that every row's details (swap, page tables) were read once.
        for _ in 0..10 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        let rss = |rk: &Ranker, pid: i32| rk.table.get(pid).map(|s| s.e.rss_pages);
        let est = |rk: &Ranker, pid: i32| rk.estimate(&policy, &rk.table.get(pid).unwrap().e);
        // The best: "swapper" (10 000 resident pages and 25 000 swapped out), then "web"
        // (30 000), then worker 1099 (20 000); the other workers hold 1 100–1 198.
        let best = est(&rk, 103).unwrap();
        assert!(best > est(&rk, 100).unwrap() && est(&rk, 100) > est(&rk, 1099));
        std::thread::sleep(Duration::from_millis(20));

        // Since then: worker 1099 and worker 1000 grew, one worker left, a newcomer came.
        worker(1099, 40_000);
        worker(1000, 9_000);
        fs::remove_dir_all(r.join("proc/1050")).unwrap();
        proc(r, 1150, "new", 'S', 0, 5000, 50, 0, 0);
        last_pid(&fx, 1150);
        // 150 pages allocated since the full scan: no one below "swapper" can have passed it.
        let a = ScanBasis {
            pgalloc: 500 + 150,
            ..basis
        };
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, a, Duration::MAX, &mut {
            never
        });
        assert_eq!(
            (d.looked, d.finished, d.bounded),
            (2, true, true),
            "the newcomer and the best re-read"
        );
        assert_eq!(rk.len(), 107, "one left, one came");
        assert_eq!(rss(&rk, 1150), Some(50));
        assert!(rk.table.get(1050).is_none());
        assert_eq!(
            (rss(&rk, 1099), rss(&rk, 1000)),
            (Some(20_000), Some(1100)),
            "rows that could not pass the best with 150 pages are not re-read"
        );
        assert!(rk.age().unwrap() < Duration::from_millis(20), "a new age");
        assert_eq!(
            rk.pgalloc_at_scan(),
            500,
            "the growth bound of the full scan"
        );

        // 24 000 pages since: "web" (30 000) could have passed "swapper", and is re-read;
        // worker 1099 (20 000) could too, and is (40 000, the new best); worker 1000 (1 100
        // then) could not pass that, and is not.
        let b = ScanBasis {
            pgalloc: 500 + 24_000,
            ..basis
        };
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, b, Duration::MAX, &mut {
            never
        });
        assert_eq!((d.looked, d.finished, d.bounded), (3, true, true));
        assert_eq!((rss(&rk, 1099), rss(&rk, 1000)), (Some(40_000), Some(1100)));
        assert_eq!(rk.pgalloc_at_scan(), 500);

        // More than 1/40 of the pages since the full scan: a full rescan.
        let c = ScanBasis {
            pgalloc: 500 + 1_000_000 / BOUNDED_GROWTH_SHARE + 1,
            ..basis
        };
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert_eq!((d.looked, d.finished, d.bounded), (107, true, false));
        assert_eq!(rss(&rk, 1000), Some(9_000));
        assert_eq!(rk.pgalloc_at_scan(), c.pgalloc, "a new growth bound");

        // Bounded again from that scan, until it is FULL_RESCAN_EVERY old.
        worker(1000, 1_100);
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert!(d.bounded && rss(&rk, 1000) == Some(9_000));
        rk.full_at = Instant::now().checked_sub(FULL_RESCAN_EVERY);
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert!(!d.bounded && d.finished);
        assert_eq!(rss(&rk, 1000), Some(1_100));

        // The PID counter went back (wrapped): a known PID may name someone new.
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert!(d.bounded);
        last_pid(&fx, 400);
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert!(!d.bounded && d.finished);

        // More than BOUNDED_MAX_NEW PIDs handed out since the last listing: the newcomers
        // are learnt by the full rescan, which looks at memory as it goes.
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert!(d.bounded);
        last_pid(&fx, 400 + BOUNDED_MAX_NEW as i32 + 1);
        let d = rk.refresh_near(&mut reader, &mut scope, &policy, c, Duration::MAX, &mut {
            never
        });
        assert!(!d.bounded && d.finished);
    }

    /// A row whose rules are undecided (no estimate while a `protect` rule may match it) is
    /// matched again at a bounded rescan, as at a full one, however small it is.
    #[test]
    fn a_bounded_rescan_matches_undecided_rows_again() {
        let (fx, mut reader, mut scope) = hundred_workers();
        let policy = Policy::default();
        last_pid(&fx, 1099);
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        // As if its command line had not come in time for a `protect` rule.
        rk.table.get_mut(1000).unwrap().e.class = CLASS_UNSURE | CLASS_MAYBE_PROTECTED;
        assert_eq!(rk.estimate(&policy, &rk.table.get(1000).unwrap().e), None);
        let d = rk.refresh_near(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::MAX,
            &mut |_| unreachable!("a look in a short rescan"),
        );
        assert_eq!(
            (d.looked, d.finished, d.bounded),
            (2, true, true),
            "the best and the undecided row"
        );
        let e = rk.table.get(1000).unwrap().e;
        assert_eq!(e.class, 0, "decided now (no rules)");
        assert!(rk.estimate(&policy, &e).is_some());
    }

    /// A bounded rescan asks `stop` as the full one does (every 32 reads once `every` has
    /// passed); stopped, it is not done: the table keeps its age.
    #[test]
    fn a_bounded_rescan_stops_when_asked_and_is_not_done() {
        let (fx, mut reader, mut scope) = hundred_workers();
        let r = fx.dir.path();
        let policy = Policy::default();
        for pid in 1000..1100 {
            proc(r, pid, "w", 'S', 0, pid as u64, 30_000, 0, 0);
        }
        last_pid(&fx, 1099);
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        for _ in 0..11 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        std::thread::sleep(Duration::from_millis(20));
        // 10 000 pages since: every worker (30 000) could have passed "swapper" (35 000).
        let b = ScanBasis {
            pgalloc: 10_000,
            ..basis
        };
        let mut asked = 0;
        let d = rk.refresh_near(
            &mut reader,
            &mut scope,
            &policy,
            b,
            Duration::ZERO,
            &mut |_| {
                asked += 1;
                true
            },
        );
        assert_eq!((d.looked, d.finished, d.bounded), (32, false, true));
        assert_eq!(asked, 1);
        assert!(rk.age().unwrap() >= Duration::from_millis(20), "not done");
        // Not stopped: every worker is re-read, and the rescan is done.
        let d = rk.refresh_near(
            &mut reader,
            &mut scope,
            &policy,
            b,
            Duration::MAX,
            &mut |_| true,
        );
        assert!(d.finished && d.bounded && d.looked > 100, "{d:?}");
        assert!(rk.age().unwrap() < Duration::from_millis(20));
    }

    /// Once the PID counter has gone round, the kernel hands out the free PIDs above it again:
    /// a protected process's PID, given to a hog since the last listing, is learnt afresh by a
    /// relisting (a bounded rescan, a choice after much allocation), not left protected.
    #[test]
    fn a_relisting_learns_afresh_a_known_pid_handed_out_again() {
        let (fx, mut reader, mut scope) = hundred_workers();
        let r = fx.dir.path();
        let policy = Policy::default();
        // Started before the counter went round: above it.
        proc(r, 1150, "guarded", 'S', 0, 700, 5_000, 0, -1000);
        last_pid(&fx, 1099);
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        assert!(rk.table.get(1150).unwrap().e.immune);
        // It ended; the counter went on from 1099 to 1200 and gave its PID to a hog.
        proc(r, 1150, "hog", 'R', 0, 9_000, 300_000, 0, 0);
        last_pid(&fx, 1200);
        let never = |_: &mut Scope| -> bool { unreachable!("a look in a short rescan") };
        let d = rk.refresh_near(
            &mut reader,
            &mut scope,
            &policy,
            basis,
            Duration::MAX,
            &mut { never },
        );
        assert!(d.bounded && d.finished);
        let e = rk.table.get(1150).unwrap().e;
        assert!(!e.immune && e.rss_pages == 300_000, "{e:?}");
        let sel = rk.select(&mut reader, &policy, 0);
        assert_eq!(sel.victim.map(|v| v.comm), Some("hog".to_string()));
        // A known PID not handed out since is not learnt again: the next relisting, with the
        // counter where it was, learns none.
        assert_eq!(
            rk.relist_at_most(&mut reader, &mut scope, &policy, basis, None, u32::MAX),
            Some(Some(0))
        );
        // The same through a choice's relisting, on a table scanned before the hog came.
        proc(r, 1150, "guarded", 'S', 0, 700, 5_000, 0, -1000);
        last_pid(&fx, 1099);
        let mut rk = Ranker::new(4, false);
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        assert!(rk.table.get(1150).unwrap().e.immune);
        proc(r, 1150, "hog", 'R', 0, 9_000, 300_000, 0, 0);
        last_pid(&fx, 1200);
        assert_eq!(
            rk.relist_watching(&mut reader, &mut scope, &policy, basis, None),
            Some(true)
        );
        assert!(!rk.table.get(1150).unwrap().e.immune);
        let sel = rk.select(&mut reader, &policy, 0);
        assert_eq!(sel.victim.map(|v| v.comm), Some("hog".to_string()));
    }

    /// The choice says whether its first pass settled it: with a growth bound larger than
    /// everyone's size, no one can be ruled out before its cap of reads.
    #[test]
    fn a_choice_that_stops_at_its_cap_of_reads_says_so() {
        let (_fx, mut reader, mut scope) = hundred_workers();
        let policy = Policy::default();
        let basis = million_pages(0);
        let mut rk = Ranker::new(4, false);
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        let sel = rk.select(&mut reader, &policy, 0);
        assert!(sel.bounded);
        assert!(sel.precise_reads < 64);
        let sel = rk.select(&mut reader, &policy, 1_000_000);
        assert!(!sel.bounded);
        assert_eq!(sel.precise_reads, 64);
    }

    #[test]
    fn never_chooses_init_kernel_threads_zombies_or_adj_minus_1000() {
        let fx = Fixture::new();
        let policy = Policy::default();
        let (mut r, mut reader) = ranked(&fx, &policy);
        let sel = r.select(&mut reader, &policy, 0);
        let v = sel.victim.unwrap();
        // swapper: 10 000 rss + 25 000 swap pages + 2 pte pages beats web's 30 002.
        assert_eq!((v.pid, v.comm.as_str()), (103, "swapper"));
        assert_eq!(v.badness, 10_000 + 25_000 + 2);
        let pids: Vec<i32> = sel.candidates.iter().map(|c| c.pid).collect();
        assert_eq!(pids, [103, 100, 104]);
        assert_eq!(sel.candidates[1].comm, "web (worker) 1");
    }

    /// Rules on the command line are matched by a side thread within a budget, never by a
    /// read on the caller's thread: a command line whose read is stuck (a FIFO nobody writes
    /// here; on a real machine the mmap lock of a process faulting at the bottom of memory)
    /// costs a scan at most the budget and leaves the process undecided, and while a `protect`
    /// rule might match it, it is not chosen. Once its command line can be read, the next scan
    /// decides it. (Read on the caller's thread, the scan would wait on the FIFO for ever.)
    #[test]
    fn a_stuck_command_line_read_leaves_the_process_undecided_not_the_scan_stalled() {
        use rustix::fs::{Mode, OFlags};
        let fx = Fixture::new();
        let r = fx.dir.path();
        // The largest process by far; its command line is a FIFO nobody writes yet.
        proc(r, 105, "pg", 'S', 0, 700, 80_000, 0, 0);
        let fifo = r.join("proc/105/cmdline");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        let mut protect = Rule::name_only(RuleKind::Protect, "^pg$").unwrap();
        protect.cmdline = Some(regex::Regex::new("^postgres -D").unwrap());
        let policy = Policy {
            rules: vec![protect],
        };
        let (mut reader, mut scope, mut rk) = unscanned(&fx);
        rk.set_cmdline_reader(Some(Details::start(&fx.root(), false, None).unwrap()));

        let t = Instant::now();
        rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
        let sel = rk.select(&mut reader, &policy, 0);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a scan and a choice waited {:?} on a stuck read",
            t.elapsed()
        );
        assert!(
            sel.candidates.iter().all(|c| c.pid != 105),
            "an undecided process that a protect rule might match was a candidate: {:?}",
            sel.candidates
        );
        // Still stuck: the next scan is bounded too, and 105 stays out.
        let t = Instant::now();
        rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
        let sel = rk.select(&mut reader, &policy, 0);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(sel.candidates.iter().all(|c| c.pid != 105));

        let row = |rk: &Ranker| rk.table.get(105).map(|s| s.e).unwrap();
        assert!(row(&rk).unsure() && row(&rk).class & CLASS_MAYBE_PROTECTED != 0);
        // The read comes back with the command line: 105 is decided at a next scan, and
        // protected by the rule.
        let w = rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        rustix::io::write(&w, b"postgres\0-D\0/data\0").unwrap();
        drop(w);
        let until = Instant::now() + Duration::from_secs(10);
        let sel = loop {
            rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
            let sel = rk.select(&mut reader, &policy, 0);
            if !row(&rk).unsure() {
                break sel;
            }
            assert!(
                Instant::now() < until,
                "never decided: {:?}",
                sel.candidates
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!((row(&rk).rule(), row(&rk).class), (Some(0), 0));
        assert!(
            sel.candidates.iter().all(|c| c.pid != 105),
            "{:?}",
            sel.candidates
        );
        assert_eq!(
            sel.victim.unwrap().pid,
            103,
            "the swapper, as without rules"
        );

        // A new "pg" whose command line does not match the rule: decided, and chosen first.
        proc(r, 106, "pg", 'S', 0, 800, 90_000, 0, 0);
        fs::write(r.join("proc/106/cmdline"), b"pg_dump\0big\0").unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
            let sel = rk.select(&mut reader, &policy, 0);
            if sel.victim.as_ref().is_some_and(|v| v.pid == 106) {
                break;
            }
            assert!(Instant::now() < until, "never chosen: {:?}", sel.candidates);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A stuck read of a process's cgroup (a FIFO here; on kernels before "cgroup: Make
    /// operations on the cgroup root_list RCU safe", the global `cgroup_mutex` held by a cgroup
    /// operation stuck in reclaim) costs a scan at most the budget when the rules' cgroup
    /// paths come from their readers: a `cgroup` protect rule leaves the process undecided and
    /// out of the choice, and decides it once the read returns. And a `cgroup` rule does not
    /// wait for a command line: with the command line stuck instead, it decides at once. (Read
    /// on the scanning thread, the first scan would wait on the FIFO for ever: it runs on a
    /// thread of its own here, so that the test fails instead of hanging.)
    #[test]
    fn a_stuck_cgroup_read_leaves_the_process_undecided_not_the_scan_stalled() {
        use rustix::fs::{Mode, OFlags};
        let fx = Fixture::new();
        let r = fx.dir.path().to_path_buf();
        proc(&r, 105, "pg", 'S', 0, 700, 80_000, 0, 0);
        let fifo = r.join("proc/105/cgroup");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        let mut protect = Rule::name_only(RuleKind::Protect, "^pg$").unwrap();
        protect.cgroup = Some(regex::Regex::new("^/db").unwrap());
        let policy = Policy {
            rules: vec![protect],
        };
        let (mut reader, mut scope, mut rk) = unscanned(&fx);
        rk.set_cgroup_reader(Some(
            Details::start_cgroups(&fx.root(), false, None).unwrap(),
        ));
        let answer = |fifo: &Path| {
            let w =
                rustix::fs::open(fifo, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
            rustix::io::write(&w, b"4:memory:/db/pg\n").unwrap();
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let scan = std::thread::spawn({
            let policy = policy.clone();
            move || {
                rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
                let sel = rk.select(&mut reader, &policy, 0);
                let _ = tx.send(());
                (reader, scope, rk, sel)
            }
        });
        let done = rx.recv_timeout(Duration::from_secs(5));
        if done.is_err() {
            // Let the stalled scan end before failing.
            answer(&fifo);
        }
        let (mut reader, mut scope, mut rk, sel) = scan.join().unwrap();
        assert!(done.is_ok(), "the scan waited on a stuck cgroup read");
        assert!(
            sel.candidates.iter().all(|c| c.pid != 105),
            "an undecided process that a protect rule might match was a candidate: {:?}",
            sel.candidates
        );
        let row = |rk: &Ranker| rk.table.get(105).map(|s| s.e).unwrap();
        assert!(row(&rk).unsure() && row(&rk).class & CLASS_MAYBE_PROTECTED != 0);
        // The read returns: 105 is decided at a next scan, protected by the rule.
        answer(&fifo);
        let until = Instant::now() + Duration::from_secs(10);
        while row(&rk).unsure() {
            assert!(Instant::now() < until, "never decided");
            std::thread::sleep(Duration::from_millis(10));
            rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
        }
        assert_eq!((row(&rk).rule(), row(&rk).class), (Some(0), 0));

        // A stuck command line (with a command-line reader too) does not hold a cgroup rule.
        proc(&r, 106, "pg", 'S', 0, 800, 90_000, 0, 0);
        fs::write(r.join("proc/106/cgroup"), b"4:memory:/db/pg2\n").unwrap();
        let cmdline = r.join("proc/106/cmdline");
        rustix::fs::mkfifoat(rustix::fs::CWD, &cmdline, Mode::from_raw_mode(0o600)).unwrap();
        rk.set_cmdline_reader(Some(Details::start(&fx.root(), false, None).unwrap()));
        rk.refresh(&mut reader, &mut scope, &policy, million_pages(0));
        let e = rk.table.get(106).map(|s| s.e).unwrap();
        assert_eq!((e.rule(), e.unsure()), (Some(0), false));
    }

    /// `classify` without a side thread reads the command line itself and is always sure;
    /// with one whose reads are late, a rule that needed it is undecided, and only a
    /// `protect` rule among the undecided makes the process maybe protected.
    #[test]
    fn a_rule_that_needed_a_late_command_line_is_undecided() {
        use rustix::fs::Mode;
        let fx = Fixture::new();
        let r = fx.dir.path();
        fs::write(r.join("proc/104/cmdline"), b"small\0--x\0").unwrap();
        let cmd = |kind, re: &str| {
            let mut rule = Rule::name_only(kind, "^small$").unwrap();
            rule.cmdline = Some(regex::Regex::new(re).unwrap());
            rule
        };
        let policy = Policy {
            rules: vec![cmd(RuleKind::Prefer, "--x"), cmd(RuleKind::Protect, "--y")],
        };
        let mut reader = ProcReader::open(&fx.root()).unwrap();
        let comm = reader.stat(104).unwrap().comm;
        let c = classify(&mut reader, &policy, 104, &comm, None, false, None);
        assert_eq!(
            c,
            Class {
                rule: Some(0),
                unsure: false,
                maybe_protected: false
            }
        );
        // Now every side reader is stuck on another process (FIFOs) and the budget runs out.
        let stuck = [(100, 500), (103, 450)];
        assert_eq!(stuck.len(), crate::sense::details::READERS);
        for (pid, _) in stuck {
            let fifo = r.join(format!("proc/{pid}/cmdline"));
            rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        }
        let details = Details::start(&fx.root(), false, None).unwrap();
        details.prefetch(stuck);
        std::thread::sleep(Duration::from_millis(50));
        assert!(details.stuck());
        let mut budget = CMDLINE_BUDGET;
        fn side<'a>(details: &'a Details, budget: &'a mut Duration) -> Option<CmdlineSide<'a>> {
            Some(CmdlineSide {
                details: Some(details),
                cgroups: None,
                starttime: 600,
                budget,
            })
        }
        let c = classify(
            &mut reader,
            &policy,
            104,
            &comm,
            None,
            false,
            side(&details, &mut budget),
        );
        assert_eq!(
            c,
            Class {
                rule: None,
                unsure: true,
                maybe_protected: true
            }
        );
        // Only the prefer rule can still match: undecided, not maybe protected.
        let policy = Policy {
            rules: vec![cmd(RuleKind::Prefer, "--x")],
        };
        let c = classify(
            &mut reader,
            &policy,
            104,
            &comm,
            None,
            false,
            side(&details, &mut budget),
        );
        assert_eq!(
            c,
            Class {
                rule: None,
                unsure: true,
                maybe_protected: false
            }
        );
        // A rule whose name does not match never asks: decided.
        let policy = Policy {
            rules: vec![Rule {
                name: Some(regex::Regex::new("^web").unwrap()),
                ..cmd(RuleKind::Protect, "--y")
            }],
        };
        let c = classify(
            &mut reader,
            &policy,
            104,
            &comm,
            None,
            false,
            side(&details, &mut budget),
        );
        assert_eq!(c, Class::default());
        // Unblock the stuck readers so they can end with the test.
        for (pid, _) in stuck {
            let fifo = r.join(format!("proc/{pid}/cmdline"));
            let w = rustix::fs::open(&fifo, rustix::fs::OFlags::WRONLY, Mode::empty()).unwrap();
            drop(w);
        }
    }

    /// Makes `pid` of the fixture headless: its main thread a zombie (no memory in its
    /// `stat`, `statm` and `status`) among `threads` threads, of which those in `live` (thread
    /// ids) hold `rss_kb` resident, as `pthread_exit` from `main` leaves a process.
    fn behead(r: &Path, pid: i32, start: u64, threads: u32, live: &[i32], rss_kb: u64) {
        let d = r.join(format!("proc/{pid}"));
        fs::write(
            d.join("stat"),
            format!("{pid} (hless) Z 1 {pid} {pid} 0 -1 4194624 0 0 0 0 0 0 0 0 20 0 {threads} 0 {start} 0 0 18446744073709551615 0 0\n"),
        )
        .unwrap();
        fs::write(d.join("statm"), "0 0 0 0 0 0 0\n").unwrap();
        let dead = "Name:\thless\nUid:\t1000\t1000\t1000\t1000\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n";
        fs::write(d.join("status"), dead).unwrap();
        let _ = fs::remove_dir_all(d.join("task"));
        fs::create_dir_all(d.join(format!("task/{pid}"))).unwrap();
        fs::write(d.join(format!("task/{pid}/status")), dead).unwrap();
        for &tid in live {
            let t = d.join(format!("task/{tid}"));
            fs::create_dir_all(&t).unwrap();
            fs::write(
                t.join("status"),
                format!("Name:\thless\nUid:\t1000\t1000\t1000\t1000\nVmSize:\t 900000 kB\nRssAnon:\t {rss_kb} kB\nRssFile:\t 0 kB\nRssShmem:\t 0 kB\nVmPTE:\t 8 kB\nVmSwap:\t 0 kB\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"),
            )
            .unwrap();
        }
    }

    /// A process whose main thread exited while its other threads run on (`pthread_exit` from
    /// `main`) shows a zombie without memory in `/proc/PID`; its memory is found through a live
    /// thread, as the kernel's OOM killer finds it: whether it was headless when first seen or
    /// became so after, it is the victim by the memory it holds. Once no thread holds the
    /// address space (the process is ending), it is not chosen.
    #[test]
    fn a_process_whose_main_thread_exited_is_chosen_by_its_threads_memory() {
        let fx = Fixture::new();
        let r = fx.dir.path();
        // Headless at first sight: 200 000 kB in its threads (50 000 pages), more than
        // anyone's.
        proc(r, 200, "hless", 'S', 0, 800, 0, 0, 0);
        behead(r, 200, 800, 3, &[201, 202], 200_000);
        let policy = Policy::default();
        let (mut rk, mut reader) = ranked(&fx, &policy);
        let sel = rk.select(&mut reader, &policy, 0);
        let v = sel.victim.expect("a victim");
        assert_eq!((v.pid, v.rss_kb), (200, 200_000), "{:?}", sel.candidates);

        // A process learnt with its memory whose main thread exits after: from the next scan
        // on, its memory too is read from a live thread.
        proc(r, 300, "later", 'S', 0, 900, 70_000, 0, 0);
        let (mut reader2, mut scope, _) = unscanned(&fx);
        rk.refresh(&mut reader2, &mut scope, &policy, million_pages(0));
        let sel = rk.select(&mut reader2, &policy, 0);
        assert_eq!(sel.victim.unwrap().pid, 300);
        behead(r, 300, 900, 2, &[301], 400_000);
        rk.refresh(&mut reader2, &mut scope, &policy, million_pages(0));
        let sel = rk.select(&mut reader2, &policy, 0);
        let v = sel.victim.expect("a victim");
        assert_eq!((v.pid, v.rss_kb), (300, 400_000), "{:?}", sel.candidates);

        // Its live thread is exiting (its SIGKILL taken, PF_EXITING): the process is on its way
        // out, as a dying process is, not a victim.
        fs::write(
            r.join("proc/300/task/301/stat"),
            "301 (hless) R 1 300 300 0 -1 4194628 0 0 0 0 0 0 0 0 20 0 2 0 901 0 0 18446744073709551615 0 0\n",
        )
        .unwrap();
        rk.refresh(&mut reader2, &mut scope, &policy, million_pages(0));
        let sel = rk.select(&mut reader2, &policy, 0);
        assert_eq!(sel.in_progress.as_ref().map(|p| p.0), Some(300));
        assert!(
            sel.candidates.iter().all(|c| c.pid != 300),
            "{:?}",
            sel.candidates
        );

        // No thread holds the address space any more: neither is chosen.
        behead(r, 200, 800, 2, &[], 0);
        behead(r, 300, 900, 2, &[], 0);
        rk.refresh(&mut reader2, &mut scope, &policy, million_pages(0));
        let sel = rk.select(&mut reader2, &policy, 0);
        assert!(
            sel.candidates.iter().all(|c| c.pid != 200 && c.pid != 300),
            "{:?}",
            sel.candidates
        );
        assert_eq!(sel.victim.unwrap().pid, 103, "the swapper, as without them");
    }

    /// The main thread caught in its exit (`PF_EXITING`, its memory let go, not yet a zombie)
    /// while the other threads run on: a process first seen so, and one learnt with its
    /// memory and rescanned in that instant, are found through a live thread, then and once
    /// the main thread is a zombie. (Before, such a row kept no memory for ever: the memory
    /// was looked for again only when a row with memory fell to none.)
    #[test]
    fn a_process_seen_while_its_main_thread_exits_is_found_through_its_threads() {
        let fx = Fixture::new();
        let r = fx.dir.path();
        let mid_exit = |pid: i32, start: u64, rss_kb: u64| {
            behead(r, pid, start, 2, &[pid + 1], rss_kb);
            fs::write(
                r.join(format!("proc/{pid}/stat")),
                format!("{pid} (hless) R 1 {pid} {pid} 0 -1 4194628 0 0 0 0 0 0 0 0 20 0 2 0 {start} 0 0 18446744073709551615 0 0\n"),
            )
            .unwrap();
        };
        let policy = Policy::default();
        // Learnt with its memory (named as `behead` names it: a new name is learnt afresh
        // anyway), rescanned while its main thread exits.
        proc(r, 300, "hless", 'S', 0, 900, 70_000, 0, 0);
        let (mut rk, mut reader) = ranked(&fx, &policy);
        assert_eq!(rk.select(&mut reader, &policy, 0).victim.unwrap().pid, 300);
        // Its main thread exits between the scan and the choice: the choice finds it headless.
        behead(r, 300, 900, 2, &[301], 400_000);
        let sel = rk.select(&mut reader, &policy, 0);
        let v = sel.victim.as_ref().expect("a victim");
        assert_eq!((v.pid, v.rss_kb), (300, 400_000), "{:?}", sel.candidates);
        let (mut reader2, mut scope, _) = unscanned(&fx);
        proc(r, 300, "hless", 'S', 0, 900, 70_000, 0, 0);
        let _ = fs::remove_dir_all(r.join("proc/300/task"));
        rk.refresh(&mut reader2, &mut scope, &policy, million_pages(0));
        mid_exit(300, 900, 400_000);
        // First seen while its main thread exits.
        proc(r, 500, "hless", 'S', 0, 950, 0, 0, 0);
        mid_exit(500, 950, 300_000);
        for zombie in [false, true] {
            if zombie {
                behead(r, 300, 900, 2, &[301], 400_000);
                behead(r, 500, 950, 2, &[501], 300_000);
            }
            rk.refresh(&mut reader2, &mut scope, &policy, million_pages(0));
            let sel = rk.select(&mut reader2, &policy, 0);
            let v = sel.victim.as_ref().expect("a victim");
            assert_eq!(
                (v.pid, v.rss_kb, sel.in_progress.is_none()),
                (300, 400_000, true),
                "zombie: {zombie}; in progress {:?}; {:?}",
                sel.in_progress,
                sel.candidates
            );
            let first = sel.candidates.iter().find(|c| c.pid == 500);
            assert_eq!(
                first.map(|c| c.rss_kb),
                Some(300_000),
                "zombie: {zombie}; {:?}",
                sel.candidates
            );
        }
    }

    #[test]
    fn rules_protect_and_prefer() {
        let fx = Fixture::new();
        let policy = Policy {
            rules: vec![
                Rule::name_only(RuleKind::Protect, "^swapper$").unwrap(),
                Rule::name_only(RuleKind::Prefer, "^small$").unwrap(),
            ],
        };
        let (mut r, mut reader) = ranked(&fx, &policy);
        let sel = r.select(&mut reader, &policy, 0);
        // small: 1 002 pages + 300 × (1 000 000 / 1000) = 301 002 > web's 30 002.
        let v = sel.victim.unwrap();
        assert_eq!(v.comm, "small");
        assert_eq!(v.score, 1_002 + 300_000);
        assert_eq!(
            v.badness, 1_002,
            "the kernel's badness does not include the rule's shift"
        );
        assert!(v.rule.as_deref().unwrap().starts_with("prefer"));
        assert!(sel.candidates.iter().all(|c| c.comm != "swapper"));
    }

    #[test]
    fn vanished_and_unreadable_processes_are_skipped_and_a_reused_pid_is_relearned() {
        let fx = Fixture::new();
        let policy = Policy::default();
        let (mut r, mut reader) = ranked(&fx, &policy);
        let root = fx.dir.path();
        // swapper exits; web becomes unreadable (status gone) but its stat stays.
        fs::remove_dir_all(root.join("proc/103")).unwrap();
        fs::remove_file(root.join("proc/100/status")).unwrap();
        // PID 104 now belongs to a new, larger process (another start time).
        proc(root, 104, "newcomer", 'S', 0, 9_999, 40_000, 0, 0);
        let sel = r.select(&mut reader, &policy, 0);
        let v = sel.victim.unwrap();
        assert_eq!(
            (v.pid, v.comm.as_str(), v.starttime),
            (104, "newcomer", 9_999)
        );
        assert!(
            sel.candidates.iter().all(|c| c.pid != 103 && c.pid != 100),
            "{:?}",
            sel.candidates
        );
    }

    /// A process whose files may not be read is skipped and counted as denied; one that left is
    /// dropped without a count; neither is chosen.
    #[test]
    fn denied_processes_are_skipped_and_counted_gone_ones_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fixture::new();
        let root = fx.dir.path();
        // swapper (the best victim) may not be read; web left before the scan.
        for f in ["stat", "statm", "status", "oom_score_adj"] {
            fs::set_permissions(
                root.join(format!("proc/103/{f}")),
                fs::Permissions::from_mode(0o000),
            )
            .unwrap();
        }
        fs::remove_dir_all(root.join("proc/100")).unwrap();
        let policy = Policy::default();
        let (r, sel) = crate::sense::fixture::without_dac_override(|| {
            let (mut r, mut reader) = ranked(&fx, &policy);
            let sel = r.select(&mut reader, &policy, 0);
            (r.unread(), sel)
        });
        assert_eq!(r, Unread { denied: 1, io: 0 });
        let pids: Vec<i32> = sel.candidates.iter().map(|c| c.pid).collect();
        assert_eq!(pids, [104]);
    }

    /// A newcomer is learnt from `statm` and `oom_score_adj` alone (no rules, no swap): here 40
    /// small processes have no readable `stat`, yet all are ranked; the start time and name
    /// are read only for the few that near the top, and the choice has them right.
    #[test]
    fn newcomers_are_learnt_without_stat_and_identified_near_the_top() {
        let fx = Fixture::new();
        let r = fx.dir.path();
        for pid in 2000..2040 {
            proc(r, pid, "tiny", 'S', 0, pid as u64, 50, 0, 0);
            fs::remove_file(r.join(format!("proc/{pid}/stat"))).unwrap();
        }
        let policy = Policy::default();
        let (mut rk, mut reader) = ranked(&fx, &policy);
        assert_eq!(rk.len(), 7 + 40, "every process is in the table");
        let sel = rk.select(&mut reader, &policy, 0);
        let v = sel.victim.unwrap();
        assert_eq!((v.pid, v.comm.as_str(), v.starttime), (103, "swapper", 450));
        assert!(
            sel.precise_reads < 20,
            "{} precise reads: the choice must not read everyone",
            sel.precise_reads
        );
        // Those read near the top are known now; the tiny ones are still known by statm only.
        assert!(rk.table.get(103).unwrap().e.known);
        assert!(!rk.table.get(2039).unwrap().e.known);
    }

    /// A protected row is never looked at by the choice, so the scan checks its identity: when
    /// its PID is given to a new process (the protected one exited between two scans), the next
    /// scan learns that one, and it is chosen if it is the best, not protected by what protected
    /// its predecessor. (Reading by path, the PID alone does not tell.) Both kinds of
    /// protection: `oom_score_adj` -1000 (db, 101) and a `protect` rule (small, 104).
    #[test]
    fn a_protected_pid_given_to_a_new_process_is_learnt_afresh() {
        let by_rule = Policy {
            rules: vec![Rule::name_only(RuleKind::Protect, "^small$").unwrap()],
        };
        for (pid, policy, how) in [
            (101, Policy::default(), "oom_score_adj -1000"),
            (104, by_rule, "a protect rule"),
        ] {
            let fx = Fixture::new();
            let (mut reader, mut scope, mut rk) = unscanned(&fx);
            let basis = million_pages(0);
            for _ in 0..2 {
                rk.refresh(&mut reader, &mut scope, &policy, basis);
            }
            let sel = rk.select(&mut reader, &policy, 0);
            assert!(
                sel.candidates.iter().all(|c| c.pid != pid),
                "{pid} is protected by {how}"
            );
            // It leaves; a larger process, which nothing protects, gets its PID.
            proc(fx.dir.path(), pid, "hog", 'S', 0, 9_000, 200_000, 0, 0);
            rk.refresh(&mut reader, &mut scope, &policy, basis);
            let v = rk.select(&mut reader, &policy, 0).victim.unwrap();
            assert_eq!(
                (v.pid, v.comm.as_str(), v.starttime),
                (pid, "hog", 9_000),
                "{how}"
            );
            if pid != 104 {
                continue;
            }
            // And a rule-protected process keeps its row (and its protection) scan after scan.
            proc(fx.dir.path(), 104, "small", 'S', 0, 9_500, 200_000, 0, 0);
            for _ in 0..3 {
                rk.refresh(&mut reader, &mut scope, &policy, basis);
                let sel = rk.select(&mut reader, &policy, 0);
                assert!(
                    sel.candidates.iter().all(|c| c.pid != 104),
                    "{:?}",
                    sel.candidates
                );
            }
        }
    }

    /// A process that raises its `oom_score_adj` from -1000 is a candidate again within ten
    /// scans (the detail read of protected rows judges immunity anew).
    #[test]
    fn a_process_that_leaves_adj_minus_1000_becomes_a_candidate() {
        let fx = Fixture::new();
        let policy = Policy::default();
        let (mut reader, mut scope, mut rk) = unscanned(&fx);
        let basis = million_pages(0);
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        let sel = rk.select(&mut reader, &policy, 0);
        assert!(
            sel.candidates.iter().all(|c| c.pid != 101),
            "db is protected"
        );
        // db (50 000 pages, the largest but for init) sets its adj to 0.
        fs::write(fx.dir.path().join("proc/101/oom_score_adj"), "0\n").unwrap();
        for _ in 0..10 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        let v = rk.select(&mut reader, &policy, 0).victim.unwrap();
        assert_eq!((v.pid, v.comm.as_str()), (101, "db"));
    }

    /// Without swap in use, a row's periodic detail read fetches `status` (page tables) only
    /// when its resident set moved by more than an eighth since its page tables were read;
    /// otherwise `oom_score_adj` alone, which is still followed.
    #[test]
    fn page_tables_are_read_again_when_the_resident_set_moves_else_only_the_adj() {
        let fx = Fixture::new();
        let r = fx.dir.path();
        let status = |pte_kb: u64| {
            format!(
                "Name:\tsparse\nUid:\t0\t0\t0\t0\nVmSize:\t 9000000 kB\nVmPTE:\t {pte_kb} kB\nVmSwap:\t 0 kB\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"
            )
        };
        proc(r, 2000, "sparse", 'S', 0, 700, 20_000, 0, 0);
        let d = r.join("proc/2000");
        fs::write(d.join("status"), status(8)).unwrap();
        let policy = Policy::default();
        let (mut reader, mut scope, mut rk) = unscanned(&fx);
        let basis = million_pages(0);
        let row = |rk: &Ranker| rk.table.get(2000).unwrap().e;
        rk.refresh(&mut reader, &mut scope, &policy, basis);
        assert_eq!(
            row(&rk).tables_rss,
            NOT_READ,
            "a newcomer's page tables are estimated"
        );
        for _ in 0..10 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        assert_eq!((row(&rk).pgtables_pages, row(&rk).tables_rss), (2, 20_000));

        // Page tables and adj change, the resident set does not: ten scans later the adj is
        // new and the page tables are those read before (status was not read).
        fs::write(d.join("status"), status(400_000)).unwrap();
        fs::write(d.join("oom_score_adj"), "500\n").unwrap();
        for _ in 0..10 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        assert_eq!((row(&rk).adj, row(&rk).pgtables_pages), (500, 2));

        // A move of an eighth or less is not enough; more is.
        fs::write(d.join("statm"), "1000 22500 10 1 0 50 0\n").unwrap();
        for _ in 0..10 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        assert_eq!(row(&rk).pgtables_pages, 2);
        fs::write(d.join("statm"), "1000 22501 10 1 0 50 0\n").unwrap();
        for _ in 0..10 {
            rk.refresh(&mut reader, &mut scope, &policy, basis);
        }
        assert_eq!(
            (row(&rk).pgtables_pages, row(&rk).tables_rss),
            (100_000, 22_501)
        );
        let v = rk.select(&mut reader, &policy, 0).victim.unwrap();
        assert_eq!((v.pid, v.pgtables_kb), (2000, 400_000));
    }

    #[test]
    fn a_large_process_with_sigkill_pending_blocks_a_new_choice() {
        let fx = Fixture::new();
        let policy = Policy::default();
        let (mut r, mut reader) = ranked(&fx, &policy);
        let st = fx.dir.path().join("proc/103/status");
        let t = fs::read_to_string(&st)
            .unwrap()
            .replace("ShdPnd:\t0000000000000000", "ShdPnd:\t0000000000000100");
        fs::write(&st, t).unwrap();
        let sel = r.select(&mut reader, &policy, 0);
        assert_eq!(sel.in_progress.as_ref().map(|p| p.0), Some(103));
    }
}
