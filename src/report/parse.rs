//! The OOM-report state machine over kernel messages (prefixes already removed).
//!
//! One event per OOM invocation, in log order: an `invoked oom-killer` header starts one; so
//! does any report line (task-dump header, `oom-kill:` line, `Task in … killed`, `Kill process`,
//! `Killed process`) when the current invocation already has its kill (headers are
//! rate-limited by the kernel, kill lines are not). memory.oom.group kills and mm sharers go
//! to `also_killed`; a kill printed twice for one pid is one kill; a panic or
//! `Out of memory and no killable processes` ends the current invocation when nothing was
//! killed in it yet, else it is an event of its own. Formats: kernel-oom-spec.md §4.

use std::collections::VecDeque;

use super::event::{Chosen, Invoker, Kill, Kind, OomEvent, Reaped, Task, Time};
use super::prefix::{Stamp, trim_end, trim_start};
use compact_str::CompactString;

/// How many finished events stay open for late lines (oom_reaper comes ≥2 s after the kill).
const KEEP_OPEN: usize = 3;
/// A `CPU: … PID: … Comm:` line followed within this many lines by a `dump_header` frame
/// starts an invocation whose header was lost.
const TENTATIVE_LINES: u32 = 40;

/// Task-dump columns, named by the dump header.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Col {
    Uid,
    Tgid,
    TotalVm,
    Rss,
    RssAnon,
    RssFile,
    RssShmem,
    PgtablesBytes,
    NrPtes,
    NrPmds,
    Swapents,
    OomScoreAdj,
    OomAdj,
    Other,
}

#[derive(Debug, Default)]
struct Current {
    ev: OomEvent,
    /// The kill of this invocation happened (victim, chosen-only, panic or no-killable).
    finished: bool,
    /// `Tasks in … memory.oom.group` seen: further kills belong here.
    group: bool,
    /// The kernel chose a task that was already exiting and killed nothing (`OOM victim N (x)
    /// is already exiting. Skip killing the task`): a later kill line is another invocation's.
    skipped: bool,
    /// The text of the invocation's `invoked oom-killer` line.
    header: Option<Box<[u8]>>,
    /// Lines read since that line (while the report is open).
    since_header: u32,
    /// When the invocation's last kill line was logged.
    last_kill: Option<KillAt>,
    /// Task-dump rows read (kept in `ev.tasks` unless [`Parser::without_task_rows`]).
    rows: u32,
    /// Columns of the task-dump header, when one was seen.
    cols: Option<Vec<Col>>,
    /// Inside Mem-Info (global memory counters are read only there).
    in_meminfo: bool,
    /// Lines since the last one that belongs to a report (see [`STALE_AFTER_DUMP`]).
    idle: u32,
    /// Lines in a row that no part of a kernel report looks like (see [`FOREIGN_RUN`]).
    foreign: u32,
}

impl Current {
    /// Too many unrelated lines since the last line of the report: it was cut off.
    fn stale(&self) -> bool {
        self.idle
            > if self.rows > 0 {
                STALE_AFTER_DUMP
            } else {
                STALE_BEFORE_DUMP
            }
    }

    /// A task-dump row read: counted, and kept unless the parser drops rows (`None`).
    fn add_row(&mut self, task: Option<Task>) {
        self.rows = self.rows.saturating_add(1);
        let tasks = self.ev.tasks.get_or_insert_with(Vec::new);
        tasks.extend(task);
    }
}

/// Kill lines of one invocation come within milliseconds of each other (the victim, mm sharers,
/// the memory.oom.group members, the victim reprinted); one this long after the last is
/// another invocation's, even for the same pid.
const SAME_INVOCATION_S: f64 = 10.0;

/// The stamp of a kill line, kept to tell a kill printed twice from a later invocation's.
#[derive(Debug)]
struct KillAt {
    mono: Option<f64>,
    wall: Option<String>,
}

impl KillAt {
    fn of(stamp: &Stamp<'_>) -> KillAt {
        KillAt {
            mono: stamp.monotonic_s,
            wall: stamp.wallclock.map(lossy),
        }
    }

    /// Whether a kill line with `stamp` can belong to the same invocation: at most
    /// [`SAME_INVOCATION_S`] later by the same clock, not earlier (a reboot restarts the
    /// seconds since boot), and stamped the same way (a line without a stamp after a stamped
    /// one, or the other way round, comes from another log). Two lines without any stamp
    /// cannot be told apart.
    fn same_invocation(&self, stamp: &Stamp<'_>) -> bool {
        let within = |gap: f64| (0.0..=SAME_INVOCATION_S).contains(&gap);
        match (self.mono, stamp.monotonic_s) {
            (Some(a), Some(b)) => return within(b - a),
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (&self.wall, stamp.wallclock) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                let b = lossy(b);
                match wall_gap(a, &b) {
                    Some(gap) => within(gap),
                    None => *a == b,
                }
            }
            _ => false,
        }
    }
}

/// Seconds from wall-clock text `a` to `b` (any prefix format; a year-less date is placed
/// in the year that puts it nearest after `a`).
fn wall_gap(a: &str, b: &str) -> Option<f64> {
    use super::time::parse_wallclock;
    let reference = jiff::Timestamp::from_second(4_102_444_800)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC);
    let ta = parse_wallclock(a, &reference)?;
    let after_a = ta
        .checked_add(jiff::SignedDuration::from_hours(24))
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC);
    let tb = parse_wallclock(b, &after_a)?;
    Some(tb.duration_since(ta).as_secs_f64())
}

/// An open report whose task dump has ended gets its kill line within a few lines; one that
/// has not after this many unrelated lines was cut off (the log is truncated, or the kill was
/// filtered out) and is closed, so the rest of the log is not read line by line.
const STALE_AFTER_DUMP: u32 = 40;
/// The same before the task dump (stack traces, Mem-Info, slab tables come first).
const STALE_BEFORE_DUMP: u32 = 400;
/// An open report followed by this many lines in a row that no part of a report looks like
/// (see [`report_shaped`]) was cut off too: the window above is for the report's own lines
/// that are not read (stack frames, slab tables, the cgroup's statistics), not for other
/// programs' messages. Other messages interleaved with a report come a few at a time.
const FOREIGN_RUN: u32 = 40;

/// Parses kernel messages into [`OomEvent`]s; feed lines with [`Parser::push`].
#[derive(Debug, Default)]
pub struct Parser {
    cur: Option<Current>,
    /// Finished invocations, oldest first; the last few can still get a reaper line.
    done: VecDeque<OomEvent>,
    /// A `CPU:`/`Pid:` line not inside a report: (invoker, stamp, lines left).
    tentative: Option<(Invoker, Time, u32)>,
    /// Task-dump rows are read but not kept (see [`Parser::without_task_rows`]).
    pub(super) drop_rows: bool,
}

fn time_of(stamp: &Stamp<'_>) -> Time {
    let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    Time {
        raw: s(stamp.raw),
        monotonic_s: stamp.monotonic_s,
        wallclock: s(stamp.wallclock),
    }
}

fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Prebuilt searchers for the needles every line is checked for.
struct Finders {
    header: memchr::memmem::Finder<'static>,
    killed: memchr::memmem::Finder<'static>,
    kill: memchr::memmem::Finder<'static>,
    ill: memchr::memmem::Finder<'static>,
    cpuset: memchr::memmem::Finder<'static>,
    mems_allowed: memchr::memmem::Finder<'static>,
    exiting: memchr::memmem::Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: std::sync::OnceLock<Finders> = std::sync::OnceLock::new();
    F.get_or_init(|| Finders {
        header: memchr::memmem::Finder::new(b"invoked oom-killer:"),
        killed: memchr::memmem::Finder::new(b"Killed process "),
        kill: memchr::memmem::Finder::new(b"ill process "),
        ill: memchr::memmem::Finder::new(b"ill"),
        cpuset: memchr::memmem::Finder::new(b" cpuset="),
        mems_allowed: memchr::memmem::Finder::new(b" mems_allowed="),
        exiting: memchr::memmem::Finder::new(b") is already exiting. Skip killing"),
    })
}

/// First occurrence of `needle` (lines are short: a memchr on the first byte beats building
/// a substring searcher per call).
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut i = 0;
    while let Some(p) = memchr::memchr(first, &hay[i..]) {
        let at = i + p;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Last occurrence of `needle`.
pub(crate) fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut end = hay.len();
    while let Some(at) = memchr::memrchr(first, &hay[..end]) {
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        end = at;
    }
    None
}

/// Leading signed integer (after optional spaces): (value, bytes consumed incl. spaces).
/// At most 19 digits, and none that overflow an i64. One pass: task-dump rows call this for
/// every column.
fn int_at(s: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    let neg = i < s.len() && s[i] == b'-';
    let first = i + usize::from(neg);
    let mut end = first;
    let mut v = 0u64;
    // 19 digits fit a u64 without overflow (a 20th makes it no number: wrapping is harmless);
    // the i64 check is made once at the end.
    while end < s.len() && s[end].is_ascii_digit() && end - first < 20 {
        v = v.wrapping_mul(10).wrapping_add(u64::from(s[end] - b'0'));
        end += 1;
    }
    let n = end - first;
    if n == 0 || n > 19 {
        return None;
    }
    let v = i64::try_from(v).ok()?;
    Some((if neg { -v } else { v }, end))
}

fn uint_at(s: &[u8]) -> Option<u64> {
    match int_at(s) {
        Some((v, _)) if v >= 0 => Some(v as u64),
        _ => None,
    }
}

/// The integer after `key` (e.g. `b"order="`) anywhere in `s`.
fn int_after(s: &[u8], key: &[u8]) -> Option<i64> {
    let i = find(s, key)?;
    int_at(&s[i + key.len()..]).map(|(v, _)| v)
}

/// The kB value after `key` (`total-vm:123kB`).
fn kb_after(s: &[u8], key: &[u8]) -> Option<u64> {
    let i = find(s, key)?;
    uint_at(&s[i + key.len()..])
}

impl Parser {
    pub fn new() -> Self {
        Parser::default()
    }

    /// A parser that reads task-dump rows without keeping them: an event's `tasks` is then
    /// `Some(empty)` when its report had a dump. For what needs no row (`explain --summary`):
    /// a dump of tens of thousands of tasks costs no memory.
    pub fn without_task_rows() -> Self {
        Parser {
            drop_rows: true,
            ..Parser::default()
        }
    }

    /// True while every line matters (inside a report before its kill, or just after a
    /// `CPU:` line); otherwise only lines with an OOM keyword can change anything, and the
    /// reader may skip the rest (see [`super::lines`]).
    pub fn wants_all_lines(&self) -> bool {
        self.tentative.is_some() || self.cur.as_ref().is_some_and(|c| !c.finished)
    }

    /// Whether [`Self::take_ready`] has anything (a cheap test, made for every line).
    pub fn has_ready(&self) -> bool {
        self.done.len() > KEEP_OPEN
    }

    /// Events that can no longer change, oldest first.
    pub fn take_ready(&mut self) -> Vec<OomEvent> {
        let n = self.done.len().saturating_sub(KEEP_OPEN);
        self.done.drain(..n).collect()
    }

    /// Ends the input: every event, oldest first.
    pub fn finish(&mut self) -> Vec<OomEvent> {
        self.close_current();
        self.tentative = None;
        self.done.drain(..).collect()
    }

    /// Everything parsed so far is final (used by `--follow` after a quiet period).
    pub fn flush(&mut self) -> Vec<OomEvent> {
        if self.cur.as_ref().is_some_and(|c| c.finished) {
            self.close_current();
        }
        self.done.drain(..).collect()
    }

    fn close_current(&mut self) {
        if let Some(c) = self.cur.take() {
            self.done.push_back(c.ev);
        }
    }

    fn start(&mut self, stamp: &Stamp<'_>) -> &mut Current {
        self.close_current();
        let mut c = Current::default();
        c.ev.time = time_of(stamp);
        if let Some((inv, t, _)) = self.tentative.take() {
            // The CPU line of a report whose header was lost precedes this line.
            c.ev.invoker = Some(inv);
            c.ev.time = t;
        }
        self.cur.insert(c)
    }

    /// The open invocation for a report line: the current one if it has no kill yet,
    /// else a new one.
    fn open(&mut self, stamp: &Stamp<'_>) -> &mut Current {
        if self.cur.as_ref().is_none_or(|c| c.finished) {
            return self.start(stamp);
        }
        self.tentative = None;
        // Some and unfinished (checked above): nothing is inserted.
        self.cur.get_or_insert_with(Current::default)
    }

    /// `n` lines of other machines went by (a log of several machines, see
    /// [`super::Events`]): unrelated lines toward closing a report that was cut off, and
    /// toward giving up a `CPU:` line whose report did not follow.
    pub fn elapse(&mut self, n: u32) {
        if let Some(c) = self.cur.as_mut().filter(|c| !c.finished) {
            c.idle = c.idle.saturating_add(n);
            if c.stale() {
                c.finished = true;
            }
        }
        if let Some((_, _, left)) = &mut self.tentative {
            *left = left.saturating_sub(n);
            if *left == 0 {
                self.tentative = None;
            }
        }
    }

    /// Feeds one kernel message (one logical line, prefix removed).
    pub fn push(&mut self, msg: &[u8], stamp: &Stamp<'_>) {
        let msg = trim_end(msg);
        let t = trim_start(msg);
        if t.is_empty() {
            return;
        }
        if let Some(c) = self.cur.as_mut().filter(|c| !c.finished) {
            c.idle += 1;
            c.since_header = c.since_header.saturating_add(1);
            c.foreign = if report_shaped(msg, t) {
                0
            } else {
                c.foreign + 1
            };
            if c.foreign > FOREIGN_RUN || c.stale() {
                c.finished = true;
            }
        }
        if msg[0] == b' ' && self.tentative.is_none() {
            // Stack frames and continuation lines: only Mem-Info's matter.
            if let Some(c) = self.cur.as_mut().filter(|c| !c.finished && c.in_meminfo)
                && meminfo_counters(t, &mut c.ev.memory)
            {
                c.idle = 0;
            }
            return;
        }
        // Task-dump rows, the bulk of a report: straight to the row parser.
        let keep = !self.drop_rows;
        if t[0] == b'['
            && let Some(c) = self.cur.as_mut().filter(|c| !c.finished)
            && let Some(cols) = &c.cols
            && let Some(task) = row(t, cols, keep)
        {
            c.add_row(task);
            c.idle = 0;
            return;
        }
        if let Some((_, _, left)) = &mut self.tentative {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.tentative = None;
            }
        }
        // The needles below all hold "ill": one search rules them out on most lines.
        if finders().ill.find(t).is_some() {
            if let Some(i) = finders().header.find(t) {
                self.header(t, i, stamp);
                return;
            }
            if t.starts_with(b"oom-killer: gfp_mask=") {
                self.header(t, 0, stamp);
                return;
            }
            if let Some(i) = finders().killed.find(t) {
                self.killed(t, i, stamp);
                return;
            }
            if let Some(i) = finders().kill.find(t)
                && i > 0
                && (t[i - 1] == b'K' || t[i - 1] == b'k')
            {
                self.kill_process(t, i - 1, stamp);
                return;
            }
            if let Some(e) = finders().exiting.find(t) {
                self.already_exiting(t, e, stamp);
                return;
            }
        }
        if t.starts_with(b"oom-kill:") {
            self.oom_kill_line(t, stamp);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"oom_reaper: ") {
            self.reaper(rest);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"Kernel panic - not syncing: ") {
            self.panic(rest, stamp);
            return;
        }
        if t.starts_with(b"Out of memory and no killable processes") {
            self.end_without_kill(Kind::NoKillable, None, stamp);
            return;
        }
        if let Some(task) = t.strip_prefix(b"Task in ")
            && let Some(j) = find(task, b" killed as a result of limit of ")
        {
            let j = j + 8;
            self.task_in(t, j, stamp);
            return;
        }
        if let Some(path) = t.strip_prefix(b"Memory limit reached of cgroup ") {
            let c = self.open(stamp);
            c.ev.memcg = Some(lossy(trim_end(path)));
            c.ev.kind.get_or_insert(Kind::Memcg);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"Tasks in ") {
            if let Some(j) = find(rest, b" are going to be killed due to memory.oom.group set") {
                if let Some(c) = self.cur.as_mut() {
                    c.group = true;
                    c.ev.oom_group = Some(lossy(&rest[..j]));
                }
                return;
            }
        }
        if t.starts_with(b"[") && is_dump_header(t) {
            let cols = dump_columns(t);
            let c = self.open(stamp);
            c.cols = Some(cols);
            c.in_meminfo = false;
            c.ev.tasks.get_or_insert_with(Vec::new);
            return;
        }
        if let Some(inv) = cpu_line(t) {
            self.cpu(inv, stamp);
            return;
        }
        if is_dump_header_frame(t) {
            if self.tentative.is_some() && self.cur.as_ref().is_none_or(|c| c.finished) {
                self.start(stamp);
            }
            return;
        }
        // Lines that only matter inside an open report.
        let Some(c) = self.cur.as_mut().filter(|c| !c.finished) else {
            self.late_note(t);
            return;
        };
        if t[0] == b'[' {
            if let Some(cols) = &c.cols
                && let Some(task) = row(t, cols, keep)
            {
                c.add_row(task);
            }
            return;
        }
        if t.starts_with(b"Mem-Info:") {
            c.in_meminfo = true;
            c.idle = 0;
            return;
        }
        if t.starts_with(b"Memory cgroup stats for ") {
            // One per group of the subtree before 5.3 (hundreds on a busy host), each with
            // its statistics on the same line; 5.3+ prints one, its statistics below.
            c.idle = 0;
            return;
        }
        if let Some(rest) = t.strip_prefix(b"memory: usage ") {
            c.idle = 0;
            c.ev.memory.memcg_usage_kb = uint_at(rest);
            c.ev.memory.memcg_limit_kb = kb_after(rest, b"limit ");
            c.ev.memory.memcg_failcnt = kb_after(rest, b"failcnt ");
            c.ev.kind.get_or_insert(Kind::Memcg);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"memory+swap: usage ") {
            c.idle = 0;
            c.ev.memory.memsw_usage_kb = uint_at(rest);
            c.ev.memory.memsw_limit_kb = kb_after(rest, b"limit ");
            c.ev.memory.memsw_failcnt = kb_after(rest, b"failcnt ");
            return;
        }
        if let Some(rest) = t.strip_prefix(b"swap: usage ") {
            c.idle = 0;
            c.ev.memory.memcg_swap_usage_kb = uint_at(rest);
            c.ev.memory.memcg_swap_limit_kb = kb_after(rest, b"limit ");
            return;
        }
        if let Some(rest) = t.strip_prefix(b"kmem: usage ") {
            c.idle = 0;
            c.ev.memory.kmem_usage_kb = uint_at(rest);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"Free swap  = ") {
            c.ev.memory.swap_free_kb = uint_at(rest);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"Total swap = ") {
            c.ev.memory.swap_total_kb = uint_at(rest);
            return;
        }
        if t.ends_with(b" total pagecache pages") {
            c.ev.memory.pagecache_pages = uint_at(t);
            return;
        }
        if t.ends_with(b" pages RAM") {
            c.ev.memory.ram_pages = uint_at(t);
            return;
        }
        if c.in_meminfo {
            // Only a line of Mem-Info's own keeps the report open: a report cut off inside
            // Mem-Info must still go stale, not read the rest of the log line by line. Per-node
            // lines (a large NUMA machine prints hundreds) keep it open without being read:
            // their counters are the node's, not the machine's.
            if let Some(node) = t.strip_prefix(b"Node ") {
                if node.first().is_some_and(u8::is_ascii_digit) {
                    c.idle = 0;
                }
                return;
            }
            if meminfo_counters(t, &mut c.ev.memory) || mem_info_shaped(t) {
                c.idle = 0;
            }
            return;
        }
        if let Some(j) = finders().cpuset.find(t)
            && let Some(k) = finders().mems_allowed.find(t)
            && k > j
        {
            c.ev.cpuset = Some(lossy(&t[j + 8..k]));
            c.ev.mems_allowed = Some(lossy(&t[k + 14..]));
        }
    }

    /// Kernel notes that can come after the kill.
    fn late_note(&mut self, t: &[u8]) {
        let note =
            find(t, b"has a pending SIGKILL").is_some() || find(t, b"has mm pinned by").is_some();
        if note && let Some(c) = self.cur.as_mut() {
            c.ev.kernel_notes.push(lossy(t));
        }
    }

    fn header(&mut self, t: &[u8], i: usize, stamp: &Stamp<'_>) {
        if let Some(c) = &self.cur
            && !c.finished
            && c.since_header == 1
            && stamp.raw.is_some()
            && c.header.as_deref() == Some(t)
            && c.ev.time == time_of(stamp)
        {
            // The line just before, logged twice (same stamp, same text): one invocation.
            return;
        }
        self.tentative = None;
        self.close_current();
        let mut c = Current::default();
        c.ev.time = time_of(stamp);
        c.ev.has_header = true;
        c.header = Some(t.into());
        let who = trim_end(&t[..i]);
        if !who.is_empty() {
            let mut inv = Invoker {
                comm: lossy(who),
                ..Default::default()
            };
            // Some patched kernels print "comm:pid"; `kworker/0:1` (a sysrq-f OOM) is a
            // name, not "kworker/0" with pid 1.
            if let Some(k) = who.iter().rposition(|b| *b == b':') {
                let (name, pid) = (&who[..k], &who[k + 1..]);
                if !name.is_empty()
                    && !name.contains(&b'/')
                    && !pid.is_empty()
                    && pid.iter().all(u8::is_ascii_digit)
                {
                    inv.comm = lossy(name);
                    inv.pid = uint_at(pid).map(|p| p as i64);
                }
            }
            c.ev.invoker = Some(inv);
        }
        let rest = &t[i..];
        if let Some(j) = find(rest, b"gfp_mask=") {
            let m = &rest[j + 9..];
            let hex = m
                .iter()
                .take_while(|b| b.is_ascii_hexdigit() || **b == b'x' || **b == b'X')
                .count();
            if hex > 0 {
                c.ev.gfp_mask = Some(lossy(&m[..hex]));
            }
            if m.get(hex) == Some(&b'(')
                && let Some(close) = memchr::memchr(b')', &m[hex..])
            {
                c.ev.gfp_flags = Some(lossy(&m[hex + 1..hex + close]));
            }
        }
        c.ev.order = int_after(rest, b"order=");
        if let Some(j) = find(rest, b"nodemask=") {
            let v = &rest[j + 9..];
            let end = memchr::memchr(b',', v).unwrap_or(v.len());
            c.ev.nodemask = Some(lossy(&v[..end]));
        }
        let adj = int_after(rest, b"oom_score_adj=")
            .or_else(|| int_after(rest, b"oomkilladj="))
            .or_else(|| int_after(rest, b"oom_adj="));
        if let Some(inv) = c.ev.invoker.as_mut() {
            inv.oom_score_adj = adj;
        }
        self.cur = Some(c);
    }

    fn cpu(&mut self, inv: (i64, Vec<u8>), stamp: &Stamp<'_>) {
        if let Some(c) = self.cur.as_mut().filter(|c| !c.finished)
            && c.ev.has_header
            && c.ev.tasks.is_none()
        {
            let i = c.ev.invoker.get_or_insert_with(Invoker::default);
            if i.pid.is_none() {
                i.pid = Some(inv.0);
                if i.comm.is_empty() {
                    i.comm = lossy(&inv.1);
                }
            }
            return;
        }
        if self.cur.as_ref().is_some_and(|c| {
            !c.finished || matches!(c.ev.kind, Some(Kind::Panic | Kind::NoKillable))
        }) {
            return; // inside a report, or the stack dump of its panic
        }
        self.tentative = Some((
            Invoker {
                comm: lossy(&inv.1),
                pid: Some(inv.0),
                oom_score_adj: None,
            },
            time_of(stamp),
            TENTATIVE_LINES,
        ));
    }

    /// `Task in <task memcg> killed as a result of limit of <memcg>`; `j`: where the middle
    /// text starts.
    fn task_in(&mut self, t: &[u8], j: usize, stamp: &Stamp<'_>) {
        let task = lossy(&t[8..j]);
        let limit = lossy(trim_end(&t[j + 32..]));
        let c = self.open(stamp);
        c.ev.task_memcg = Some(task);
        c.ev.memcg = Some(limit);
        if !matches!(c.ev.kind, Some(Kind::Cpuset | Kind::Mempolicy)) {
            c.ev.kind = Some(Kind::Memcg);
        }
    }

    fn oom_kill_line(&mut self, t: &[u8], stamp: &Stamp<'_>) {
        let Some(l) = OomKillLine::parse(t) else {
            return;
        };
        let constraint = l.constraint.map(lossy);
        let nodemask = l.nodemask.map(lossy);
        let cpuset = l.cpuset.map(lossy);
        let mems = l.mems_allowed.map(lossy);
        let oom_memcg = l.oom_memcg.map(lossy);
        let task_memcg = l.task_memcg.map(lossy);
        let task = l.task.map(lossy);
        let pid = l.pid;
        let kind = l.kind();
        let c = self.open(stamp);
        c.in_meminfo = false;
        c.ev.kind = kind.or(c.ev.kind);
        c.ev.constraint = constraint.or(c.ev.constraint.take());
        c.ev.nodemask = nodemask.or(c.ev.nodemask.take());
        c.ev.cpuset = cpuset.or(c.ev.cpuset.take());
        c.ev.mems_allowed = mems.or(c.ev.mems_allowed.take());
        c.ev.memcg = oom_memcg.or(c.ev.memcg.take());
        c.ev.task_memcg = task_memcg.or(c.ev.task_memcg.take());
        if let Some(pid) = pid
            && c.ev.chosen.is_none()
        {
            c.ev.chosen = Some(Chosen {
                pid,
                comm: task,
                score: None,
            });
        }
    }

    /// `[prefix: ]Kill process N (comm) score S or sacrifice child` (the chosen task) and
    /// `Kill process N (comm) sharing same memory` (an mm sharer, also killed).
    fn kill_process(&mut self, t: &[u8], i: usize, stamp: &Stamp<'_>) {
        let rest = &t[i + "Kill process ".len()..];
        let Some((pid, n)) = int_at(rest) else {
            return;
        };
        let after = &rest[n..];
        if let Some(end) = rfind(after, b") sharing same memory") {
            let comm = after
                .iter()
                .position(|b| *b == b'(')
                .filter(|s| *s < end)
                .map(|s| lossy(&after[s + 1..end]));
            if let Some(c) = self.cur.as_mut() {
                let dup = c.ev.victim.as_ref().is_some_and(|v| v.pid == pid)
                    || c.ev.also_killed.iter().any(|k| k.pid == pid);
                if !dup {
                    c.ev.also_killed.push(Kill {
                        pid,
                        comm,
                        ..Default::default()
                    });
                }
            }
            return;
        }
        let score_at = rfind(after, b") score ");
        let comm = match (memchr::memchr(b'(', after), score_at) {
            (Some(s), Some(e)) if s < e => Some(lossy(&after[s + 1..e])),
            _ => None,
        };
        let score = score_at.and_then(|e| int_at(&after[e + 8..]).map(|x| x.0));
        let prefix = trim_end(&t[..i]);
        let prefix = prefix.strip_suffix(b":").unwrap_or(prefix);
        let c = if self.cur.as_ref().is_some_and(|c| {
            !c.finished && c.ev.chosen.as_ref().is_none_or(|ch| ch.score.is_none())
        }) {
            // Some (checked above): nothing is inserted.
            self.cur.get_or_insert_with(Current::default)
        } else {
            self.start(stamp)
        };
        c.in_meminfo = false;
        kind_from_prefix(&mut c.ev, prefix);
        c.ev.chosen = Some(Chosen { pid, comm, score });
    }

    fn killed(&mut self, t: &[u8], i: usize, stamp: &Stamp<'_>) {
        let Some(kill) = parse_killed(t, i) else {
            return;
        };
        let prefix = trim_end(&t[..i]);
        let prefix = prefix.strip_suffix(b":").unwrap_or(prefix);
        if let Some(c) = self.cur.as_mut()
            && let Some(v) = &c.ev.victim
            && c.last_kill
                .as_ref()
                .is_none_or(|k| k.same_invocation(stamp))
        {
            // Within one invocation (kill lines a few seconds apart at most, the clock not
            // gone back, the same kind of line prefix): the same pid again is the kill printed
            // twice (a memory.oom.group kill reprints the victim), one kill; with
            // memory.oom.group, other pids are the group's.
            if v.pid == kill.pid || c.ev.also_killed.iter().any(|k| k.pid == kill.pid) {
                return;
            }
            if c.group && kill.message == v.message {
                c.ev.also_killed.push(kill);
                c.last_kill = Some(KillAt::of(stamp));
                return;
            }
        }
        let c = match self.cur.as_mut() {
            Some(c)
                if c.ev.victim.is_none()
                    && (!c.skipped || c.group)
                    && !matches!(c.ev.kind, Some(Kind::Panic | Kind::NoKillable)) =>
            {
                c
            }
            _ => self.start(stamp),
        };
        c.finished = true;
        c.in_meminfo = false;
        kind_from_prefix(&mut c.ev, prefix);
        let mut kill = kill;
        if let Some(ch) = &c.ev.chosen {
            kill.score = ch.score;
        }
        if find(prefix, b"oom_kill_allocating_task").is_some() {
            c.ev.kernel_notes.push(
                "vm.oom_kill_allocating_task: the allocating task was killed, not the one with the highest badness".into(),
            );
        }
        c.ev.victim = Some(kill);
        c.last_kill = Some(KillAt::of(stamp));
        self.tentative = None;
    }

    /// `[prefix: ]OOM victim N (comm) is already exiting. Skip killing the task` (5.9+,
    /// `__oom_kill_process`; `e`: where `) is already exiting` starts): the kernel chose N but
    /// killed nothing, as the task had already lost its memory. It ends the invocation of the
    /// open report (its kill line will never come), or, after a kill, is a memory.oom.group
    /// member of that invocation; otherwise (the header rate-limited) an invocation of its own.
    fn already_exiting(&mut self, t: &[u8], e: usize, stamp: &Stamp<'_>) {
        let head = &t[..e];
        let Some(v) = find(head, b"OOM victim ") else {
            return;
        };
        let Some((pid, n)) = int_at(&head[v + 11..]) else {
            return;
        };
        let after = &head[v + 11 + n..];
        let comm = trim_start(after).strip_prefix(b"(").map(lossy);
        let prefix = trim_end(&t[..v]);
        let prefix = prefix.strip_suffix(b":").unwrap_or(prefix);
        let note = lossy(t);
        if let Some(c) = self.cur.as_mut()
            && c.finished
            && c.last_kill
                .as_ref()
                .is_none_or(|k| k.same_invocation(stamp))
            && (c.group
                || c.ev.victim.as_ref().is_some_and(|k| k.pid == pid)
                || c.ev.also_killed.iter().any(|k| k.pid == pid)
                || (c.skipped && c.ev.chosen.as_ref().is_some_and(|ch| ch.pid == pid)))
        {
            // A group member, or the same note again.
            if !c.ev.kernel_notes.contains(&note) {
                c.ev.kernel_notes.push(note);
            }
            return;
        }
        let c = match self.cur.as_mut() {
            Some(c) if !c.finished => c,
            _ => self.start(stamp),
        };
        c.finished = true;
        c.skipped = true;
        c.in_meminfo = false;
        kind_from_prefix(&mut c.ev, prefix);
        if c.ev.chosen.as_ref().is_none_or(|ch| ch.pid != pid) {
            c.ev.chosen = Some(Chosen {
                pid,
                comm,
                score: None,
            });
        }
        c.ev.kernel_notes.push(note);
        self.tentative = None;
    }

    fn reaper(&mut self, rest: &[u8]) {
        let Some(r) = rest.strip_prefix(b"reaped process ") else {
            if rest.starts_with(b"unable to reap") {
                let pid = int_after(rest, b"pid:");
                if let Some(ev) = self.recent_with_victim(pid) {
                    ev.kernel_notes.push(lossy(rest));
                }
            }
            return;
        };
        let Some((pid, n)) = int_at(r) else { return };
        let after = &r[n..];
        let end = rfind(after, b"), now ").unwrap_or(after.len());
        let comm = memchr::memchr(b'(', after)
            .filter(|s| *s < end)
            .map(|s| lossy(&after[s + 1..end]))
            .unwrap_or_default();
        let reaped = Reaped {
            pid,
            comm,
            anon_rss_kb: kb_after(after, b"anon-rss:").unwrap_or(0),
            file_rss_kb: kb_after(after, b"file-rss:").unwrap_or(0),
            shmem_rss_kb: kb_after(after, b"shmem-rss:").unwrap_or(0),
        };
        if let Some(ev) = self.recent_with_victim(Some(pid))
            && ev.reaped.is_none()
        {
            ev.reaped = Some(reaped);
        }
    }

    /// The most recent event (current or still open) whose victim has this pid.
    fn recent_with_victim(&mut self, pid: Option<i64>) -> Option<&mut OomEvent> {
        let pid = pid?;
        let cur = self.cur.as_mut().map(|c| &mut c.ev);
        cur.into_iter()
            .chain(self.done.iter_mut().rev())
            .find(|e| e.victim.as_ref().is_some_and(|v| v.pid == pid))
    }

    fn panic(&mut self, rest: &[u8], stamp: &Stamp<'_>) {
        let msg = trim_end(rest);
        if msg.starts_with(b"Out of memory and no killable processes") {
            self.end_without_kill(Kind::NoKillable, Some(msg), stamp);
        } else if msg.starts_with(b"System is deadlocked on memory") {
            match self.cur.as_mut() {
                Some(c) if c.ev.kind == Some(Kind::NoKillable) && c.ev.panic_message.is_none() => {
                    c.ev.panic_message = Some(lossy(msg));
                }
                _ => self.end_without_kill(Kind::NoKillable, Some(msg), stamp),
            }
        } else if find(msg, b"panic_on_oom").is_some()
            || find(msg, b"out of memory").is_some()
            || find(msg, b"Out of memory").is_some()
        {
            self.end_without_kill(Kind::Panic, Some(msg), stamp);
        }
    }

    fn end_without_kill(&mut self, kind: Kind, panic: Option<&[u8]>, stamp: &Stamp<'_>) {
        if let Some(c) = self.cur.as_mut()
            && c.ev.kind == Some(kind)
            && c.finished
            && c.ev.victim.is_none()
        {
            // The warning line then the panic line of the same report.
            if c.ev.panic_message.is_none() {
                c.ev.panic_message = panic.map(lossy);
            }
            return;
        }
        let c = self.open(stamp);
        c.finished = true;
        c.ev.kind = Some(kind);
        c.ev.panic_message = panic.map(lossy);
    }
}

/// Kind implied by the kill message prefix, when nothing more precise was seen.
///
/// `Out of memory` is the prefix of cpuset and memory-policy OOMs too; before 5.0 nothing else
/// may tell them apart. A header of 4.9–4.20 that names a node list (`nodemask=1`, not
/// `(null)`) shows an allocation confined to some nodes (4.14–4.20 print the mask only for a
/// memory policy; 4.9 the policy's or the cpuset's nodes): what ran out is then not known to
/// be the whole machine, and the kind stays unknown.
fn kind_from_prefix(ev: &mut OomEvent, prefix: &[u8]) {
    if ev.kind.is_some() {
        return;
    }
    let kind = kill_prefix_kind(prefix);
    let confined = ev.nodemask.as_deref().is_some_and(|n| n != "(null)");
    if kind == Some(Kind::Global) && confined {
        return;
    }
    ev.kind = kind;
}

/// What ran out, as the text before `Kill process` / `Killed process` says (`Memory cgroup
/// out of memory`, `Out of memory`, …); `None` when it says nothing (4.19–5.0 print `Killed
/// process` with no prefix).
pub fn kill_prefix_kind(prefix: &[u8]) -> Option<Kind> {
    if prefix.ends_with(b"Memory cgroup out of memory") {
        Some(Kind::Memcg)
    } else if prefix.starts_with(b"Out of memory") || prefix.starts_with(b"Out of Memory") {
        Some(Kind::Global)
    } else if prefix.ends_with(b"(MPOL_BIND)") {
        Some(Kind::Mempolicy)
    } else if prefix.ends_with(b"in cpuset") {
        Some(Kind::Cpuset)
    } else {
        None
    }
}

/// The fields of the kernel's `oom-kill:` summary line (4.19+, printed before the kill is
/// counted), borrowed from the line: `constraint=…,nodemask=…,cpuset=…,mems_allowed=…,`
/// then `oom_memcg=…` or `global_oom`, then `task_memcg=…,task=…,pid=…,uid=…`. Parsing
/// allocates nothing (the daemon reads it on its loop, `sense::kmsg`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OomKillLine<'a> {
    pub constraint: Option<&'a [u8]>,
    pub nodemask: Option<&'a [u8]>,
    pub cpuset: Option<&'a [u8]>,
    pub mems_allowed: Option<&'a [u8]>,
    /// The group whose limit was hit (memcg OOMs only).
    pub oom_memcg: Option<&'a [u8]>,
    /// The kernel's `global_oom` token: no group's limit was hit.
    pub global_oom: bool,
    pub task_memcg: Option<&'a [u8]>,
    pub task: Option<&'a [u8]>,
    pub pid: Option<i64>,
}

impl<'a> OomKillLine<'a> {
    /// Parses a message (prefix removed) that starts with `oom-kill:`; `None` for any other.
    ///
    /// Values in the line are anyone's to write: the victim's name (`task=`, up to 15 bytes,
    /// `prctl(PR_SET_NAME)`) and the cgroup and cpuset names (a user's delegated subtree may
    /// hold a group named `x,oom_memcg=`). So the tail is read from the end (`pid=` is the
    /// last `,pid=`, after the name; `task=` the first `,task=` within a name's length before
    /// it), the keys before it only in the text before `task=`, and what ran out from the
    /// constraint and a `global_oom` token anywhere in the line, which the kernel prints for
    /// every OOM that no group's limit caused: a name can add one but never hide the kernel's,
    /// so it can never make a machine-wide kill look like a group's (the daemon would not
    /// hold back for it); the other way round it only makes the daemon hold back longer.
    pub fn parse(t: &'a [u8]) -> Option<OomKillLine<'a>> {
        // `global_oom` (no value) is not among them: it is looked for as a token, and cut off
        // the value it follows.
        const KEYS: [&[u8]; 6] = [
            b"constraint=",
            b"nodemask=",
            b"cpuset=",
            b"mems_allowed=",
            b"oom_memcg=",
            b"task_memcg=",
        ];
        /// `,task=` and a name of `TASK_COMM_LEN` less its NUL, each byte maybe printed as
        /// `\xNN` (`/dev/kmsg` escapes bytes outside printable ASCII).
        const TASK_SPAN: usize = 6 + 4 * 15;
        let body = t.strip_prefix(b"oom-kill:")?;
        let pid_at = rfind(body, b",pid=");
        let task_at = pid_at.and_then(|p| {
            let lo = p.saturating_sub(TASK_SPAN);
            find(&body[lo..p], b",task=").map(|q| lo + q)
        });
        // Without that tail (a line cut short): the keys in order, over the whole line.
        let head = &body[..task_at.unwrap_or(body.len())];
        // Positions of each key at the start or after a comma, in order: (key index, value
        // start).
        let mut found = [(0usize, 0usize); KEYS.len()];
        let mut n = 0;
        let mut from = 0;
        for (k, key) in KEYS.iter().enumerate() {
            let mut search = from;
            while let Some(p) = find(&head[search..], key) {
                let at = search + p;
                if at == 0 || head[at - 1] == b',' {
                    found[n] = (k, at + key.len());
                    n += 1;
                    from = at + key.len();
                    break;
                }
                search = at + 1;
            }
        }
        let found = &found[..n];
        let value = |idx: usize| -> Option<&'a [u8]> {
            let pos = found.iter().position(|(k, _)| *k == idx)?;
            let start = found[pos].1;
            let end = found
                .get(pos + 1)
                .map(|(k, s)| s - KEYS[*k].len() - 1)
                .unwrap_or(head.len());
            (end >= start).then(|| {
                let v = trim_end(trim_start(&head[start..end]));
                v.strip_suffix(b",global_oom").map_or(v, trim_end)
            })
        };
        // Over the whole line: a `global_oom` can only be added, never hidden, and a record
        // cut short (a long group path continued in the next record) may have its `pid=` only
        // in an attacker's cpuset name, before the kernel's `global_oom`.
        let global_oom = body
            .split(|&b| b == b',')
            .skip(1)
            .any(|f| trim_end(trim_start(f)) == b"global_oom");
        // The kernel's tail is `,task=NAME,pid=N,uid=N` at the end of the line (a line cut
        // short may end inside it, after `pid=`'s digits). Text of another shape there (a
        // translated or hand-edited line: `pid= 2953 , liquid=999`) is no kernel's: the task,
        // its pid, and the end of the group path before it are not known.
        let tail_ok = pid_at.is_some_and(|p| kernel_tail(&body[p + 5..]));
        let (task, pid) = match (task_at, pid_at) {
            (Some(t), Some(p)) if tail_ok => {
                (Some(&body[t + 6..p]), int_at(&body[p + 5..]).map(|x| x.0))
            }
            _ => (None, None),
        };
        let garbled = task_at.is_some() && !tail_ok;
        let constraint = value(0);
        // The constraint is the line's first value, a word of the kernel's: it settles a group's
        // limit. Otherwise an `oom_memcg=` counts only where no `global_oom` was printed (a
        // `global_oom` in a group's name can make a group's OOM look machine-wide: the daemon
        // then holds back a moment longer than it needed to, never the other way round).
        let memcg_constraint = constraint == Some(b"CONSTRAINT_MEMCG".as_slice());
        Some(OomKillLine {
            constraint,
            nodemask: value(1),
            cpuset: value(2),
            mems_allowed: value(3),
            oom_memcg: if global_oom && !memcg_constraint {
                None
            } else {
                value(4)
            },
            global_oom,
            task_memcg: if garbled { None } else { value(5) },
            task,
            pid,
        })
    }

    /// What ran out: the constraint, except that `oom_memcg=` always means a group's limit
    /// (5.0/5.1 printed `CONSTRAINT_NONE` for memcg OOMs too). `None` for a constraint this
    /// version does not know.
    pub fn kind(&self) -> Option<Kind> {
        if self.oom_memcg.is_some() {
            return Some(Kind::Memcg);
        }
        match self.constraint? {
            b"CONSTRAINT_MEMCG" => Some(Kind::Memcg),
            b"CONSTRAINT_CPUSET" => Some(Kind::Cpuset),
            b"CONSTRAINT_MEMORY_POLICY" => Some(Kind::Mempolicy),
            b"CONSTRAINT_NONE" => Some(Kind::Global),
            _ => None,
        }
    }
}

/// `N,uid=N` (the text after the `oom-kill:` line's `,pid=`), or `N` or `N,uid` and less (a
/// line cut short), with nothing after but spaces.
fn kernel_tail(s: &[u8]) -> bool {
    let s = trim_end(s);
    let digits = |x: &[u8]| x.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = digits(s);
    if n == 0 {
        return false;
    }
    let rest = &s[n..];
    if rest.is_empty() {
        return true;
    }
    let Some(after) = rest.strip_prefix(b",") else {
        return false;
    };
    // Cut short: a prefix of `uid=`; else `uid=` then digits, a `-` allowed.
    if b"uid=".starts_with(after) {
        return true;
    }
    let Some(uid) = after.strip_prefix(b"uid=") else {
        return false;
    };
    let uid = uid.strip_prefix(b"-").unwrap_or(uid);
    digits(uid) == uid.len()
}

/// The pid of a `[prefix: ]Killed process N …` message and its prefix (without the colon),
/// allocating nothing; `None` for any other message.
pub fn killed_pid(t: &[u8]) -> Option<(i64, &[u8])> {
    let (pid, prefix, _) = killed_head(t, finders().killed.find(t)?)?;
    Some((pid, prefix))
}

/// `Killed process` at `i` of `t`: the pid, the prefix (without its colon), and the text
/// after the pid.
fn killed_head(t: &[u8], i: usize) -> Option<(i64, &[u8], &[u8])> {
    let rest = &t[i + "Killed process ".len()..];
    let (pid, n) = int_at(rest)?;
    if pid < 0 {
        return None;
    }
    let prefix = trim_end(&t[..i]);
    Some((pid, prefix.strip_suffix(b":").unwrap_or(prefix), &rest[n..]))
}

/// `Killed process N (comm) total-vm:…` in all its variants (RHEL6 `Killed process N, UID U,
/// (comm)`, RHEL7 `Killed process N (comm), UID U, total-vm…`, 2.6.33 `vsz:`, 5.4+ `UID:`).
fn parse_killed(t: &[u8], i: usize) -> Option<Kill> {
    let (pid, prefix, after) = killed_head(t, i)?;
    let mut kill = Kill {
        pid,
        ..Default::default()
    };
    if !prefix.is_empty() {
        kill.message = Some(lossy(prefix));
    }
    // Where the name ends: before the first field after it.
    let tails: [&[u8]; 5] = [b") total-vm:", b") vsz:", b"), UID ", b"),", b")."];
    let open = memchr::memchr(b'(', after);
    let mut fields = after;
    if let Some(s) = open {
        let close = tails
            .iter()
            .filter_map(|tail| rfind(after, tail))
            .filter(|e| *e > s)
            .min()
            .or_else(|| memchr::memrchr(b')', after).filter(|e| *e > s));
        if let Some(e) = close {
            kill.comm = Some(lossy(&after[s + 1..e]));
            fields = &after[e + 1..];
        }
    }
    kill.total_vm_kb = kb_after(fields, b"total-vm:").or_else(|| kb_after(fields, b"vsz:"));
    kill.anon_rss_kb = kb_after(fields, b"anon-rss:");
    kill.file_rss_kb = kb_after(fields, b"file-rss:");
    kill.shmem_rss_kb = kb_after(fields, b"shmem-rss:");
    kill.pgtables_kb = kb_after(fields, b"pgtables:");
    kill.oom_score_adj = int_after(fields, b"oom_score_adj:");
    kill.uid = int_after(fields, b"UID:").or_else(|| int_after(fields, b"UID "));
    if kill.uid.is_none() {
        // RHEL6: "Killed process N, UID U, (comm)".
        kill.uid = int_after(&after[..open.unwrap_or(after.len())], b"UID ");
    }
    Some(kill)
}

/// A reliable call-trace frame of `dump_header` (`dump_header+0x4c/0x22b`, old
/// `[<addr>] dump_header+…`, ARM `[<addr>] (dump_header.isra.7+…)`); not a `? ` guess.
fn is_dump_header_frame(t: &[u8]) -> bool {
    let mut f = t;
    if f.starts_with(b"[<")
        && let Some(e) = find(f, b">] ")
    {
        f = &f[e + 3..];
    }
    let f = f.strip_prefix(b"(").unwrap_or(f);
    f.starts_with(b"dump_header")
}

fn is_dump_header(t: &[u8]) -> bool {
    let Some(close) = memchr::memchr(b']', &t[..t.len().min(16)]) else {
        return false;
    };
    trim_start(trim_end(&t[1..close])) == b"pid" && find(&t[close..], b"uid").is_some()
}

fn dump_columns(t: &[u8]) -> Vec<Col> {
    let close = memchr::memchr(b']', t).unwrap_or(0);
    let mut cols: Vec<Col> = t[close + 1..]
        .split(|b| *b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            b"uid" => Col::Uid,
            b"tgid" => Col::Tgid,
            b"total_vm" => Col::TotalVm,
            b"rss" => Col::Rss,
            b"rss_anon" => Col::RssAnon,
            b"rss_file" => Col::RssFile,
            b"rss_shmem" => Col::RssShmem,
            b"pgtables_bytes" => Col::PgtablesBytes,
            b"nr_ptes" => Col::NrPtes,
            b"nr_pmds" => Col::NrPmds,
            b"swapents" => Col::Swapents,
            b"oom_score_adj" => Col::OomScoreAdj,
            b"oom_adj" => Col::OomAdj,
            _ => Col::Other,
        })
        .collect();
    cols.pop(); // the last column is the name
    cols
}

/// `[ 1234]  uid  tgid … name` with the columns of the header.
fn dump_row(t: &[u8], cols: &[Col]) -> Option<Task> {
    let mut task = Task::default();
    let mut ptes: Option<u64> = None;
    let mut pmds: Option<u64> = None;
    let (pid, name) = scan_row(t, cols, |col, v| {
        let u = u64::try_from(v).ok();
        match col {
            Col::Uid => task.uid = Some(v),
            Col::Tgid => task.tgid = Some(v),
            Col::TotalVm => task.total_vm_pages = u,
            Col::Rss => task.rss_pages = u,
            Col::RssAnon => task.rss_anon_pages = u,
            Col::RssFile => task.rss_file_pages = u,
            Col::RssShmem => task.rss_shmem_pages = u,
            Col::PgtablesBytes => task.pgtables_bytes = u,
            Col::NrPtes => ptes = u,
            Col::NrPmds => pmds = u,
            Col::Swapents => task.swapents = u,
            Col::OomScoreAdj => task.oom_score_adj = Some(v),
            Col::OomAdj => task.oom_adj = Some(v),
            Col::Other => {}
        }
    })?;
    task.pid = pid;
    if task.pgtables_bytes.is_none() && ptes.is_some() {
        task.pgtables_bytes = Some(
            ptes.unwrap_or(0)
                .saturating_add(pmds.unwrap_or(0))
                .saturating_mul(4096),
        );
    }
    task.name = match std::str::from_utf8(name) {
        Ok(s) => CompactString::from(s),
        Err(_) => CompactString::from_utf8_lossy(name),
    };
    Some(task)
}

/// A task-dump row: `Some(task)` to keep, `Some(None)` when rows are not kept (the row is
/// checked without making the task), `None` when `t` is no row.
fn row(t: &[u8], cols: &[Col], keep: bool) -> Option<Option<Task>> {
    if keep {
        dump_row(t, cols).map(Some)
    } else {
        scan_row(t, cols, |_, _| {}).map(|_| None)
    }
}

/// A task-dump row `[  pid]  n  n … name`: its pid and name, each column's number given to
/// `col` as it is read. None when it is not one (a column without a number, no name).
#[inline]
fn scan_row<'a>(
    t: &'a [u8],
    cols: &[Col],
    mut col: impl FnMut(Col, i64),
) -> Option<(i64, &'a [u8])> {
    let close = memchr::memchr(b']', &t[..t.len().min(16)])?;
    let (pid, _) = int_at(trim_start(&t[1..close]))?;
    let mut rest = &t[close + 1..];
    for &c in cols {
        let (v, n) = int_at(rest)?;
        rest = &rest[n..];
        col(c, v);
    }
    let name = trim_start(rest);
    if name.is_empty() || rest.first().is_none_or(|b| *b != b' ') {
        return None;
    }
    Some((pid, name))
}

/// `CPU: 1 PID: 946 Comm: x …`, `CPU: 1 UID: 0 PID: 946 Comm: x …`, `Pid: 9247, comm: x …`.
fn cpu_line(t: &[u8]) -> Option<(i64, Vec<u8>)> {
    let (pid, comm_at) = if t.starts_with(b"CPU: ") {
        let p = find(t, b" PID: ")?;
        let (pid, _) = int_at(&t[p + 6..])?;
        let c = find(t, b" Comm: ")? + 7;
        (pid, c)
    } else if let Some(r) = t.strip_prefix(b"Pid: ") {
        let (pid, _) = int_at(r)?;
        let c = find(t, b", comm: ")? + 8;
        (pid, c)
    } else {
        return None;
    };
    let c = &t[comm_at..];
    let end = [&b" Not tainted"[..], b" Tainted:", b" Kdump:", b" Not"]
        .iter()
        .filter_map(|m| find(c, m))
        .min()
        .unwrap_or(c.len());
    Some((pid, trim_end(&c[..end]).to_vec()))
}

/// Global page counters of Mem-Info (`active_anon:N inactive_anon:N … free:N …`). True when
/// the line has a counter (`name:N`, the name in lower case, known or not).
fn meminfo_counters(t: &[u8], m: &mut super::event::Memory) -> bool {
    let mut any = false;
    for w in t.split(|b| *b == b' ') {
        // Words are short: memchr's set-up per word showed in perf (not measured apart).
        let Some(colon) = w.iter().position(|&b| b == b':') else {
            continue;
        };
        let (k, v) = (&w[..colon], &w[colon + 1..]);
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            continue;
        }
        any |= !k.is_empty() && k.iter().all(|b| b.is_ascii_lowercase() || *b == b'_');
        let v = uint_at(v);
        match k {
            b"free" => m.free_pages = v,
            b"active_anon" => m.active_anon_pages = v,
            b"inactive_anon" => m.inactive_anon_pages = v,
            b"active_file" => m.active_file_pages = v,
            b"inactive_file" => m.inactive_file_pages = v,
            b"shmem" => m.shmem_pages = v,
            b"slab_unreclaimable" => m.slab_unreclaimable_pages = v,
            _ => {}
        }
    }
    any
}

/// Whether a line (`msg` as logged, `t` without its indent) can be part of a kernel OOM
/// report or of the warnings printed around one: indented or bracketed lines (stack frames,
/// the task dump), stack frames (`+0x`), Mem-Info's and the cgroup's counters (`name 123`,
/// `… kB`, `123 pages …`), and the report's other line starts. Other programs' messages
/// (a driver's, the audit log's) are not.
fn report_shaped(msg: &[u8], t: &[u8]) -> bool {
    const STARTS: [&[u8]; 12] = [
        b"Node ",
        b"Call ",
        b"<",
        b"Hardware name",
        b"Mem-Info",
        b"Memory cgroup",
        b"memory",
        b"kmem:",
        b"swap:",
        b"Tasks state",
        b"oom",
        b"Modules linked in",
    ];
    if msg.first() == Some(&b' ')
        || t.first() == Some(&b'[')
        || mem_info_shaped(t)
        || STARTS.iter().any(|p| t.starts_with(p))
        || stat_shaped(t)
    {
        return true;
    }
    find(t, b"+0x").is_some()
}

/// `anon 1234`: one counter of a cgroup's `memory.stat` as a cgroup v2 report prints them.
fn stat_shaped(t: &[u8]) -> bool {
    let Some(sp) = memchr::memchr(b' ', t) else {
        return false;
    };
    let (name, value) = (&t[..sp], &t[sp + 1..]);
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        && !value.is_empty()
        && value.iter().all(u8::is_ascii_digit)
}

/// The other lines `show_mem` prints in every era (kernel-oom-spec.md §4): page totals
/// (`N pages RAM`), zone lines and per-CPU lists (`DMA per-cpu:`, `CPU    0: hi: …`),
/// `lowmem_reserve[]:`, free lists and slab rows (ending in `kB`/`KB`), swap lines, the
/// unreclaimable slab table's heading.
fn mem_info_shaped(t: &[u8]) -> bool {
    const STARTS: [&[u8]; 12] = [
        b"lowmem_reserve",
        b"Swap cache",
        b"Free swap",
        b"Total swap",
        b"CPU ",
        b"Unreclaimable slab",
        b"Name ",
        b"Active:",
        b"DMA",
        b"Normal",
        b"HighMem",
        b"Movable",
    ];
    let t = trim_end(t);
    t.first().is_some_and(u8::is_ascii_digit)
        || t.ends_with(b"kB")
        || t.ends_with(b"KB")
        || STARTS.iter().any(|s| t.starts_with(s))
}

/// One test per line kind of kernel-oom-spec.md §4, each era's format written out from the
/// kernel's format string (the shared corpus stays outside the project).
#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Vec<OomEvent> {
        let mut p = Parser::new();
        for l in lines {
            p.push(l.as_bytes(), &Stamp::default());
        }
        p.finish()
    }

    fn one(lines: &[&str]) -> OomEvent {
        let mut evs = run(lines);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        evs.remove(0)
    }

    const HEADER: &str = "hog invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0";
    const KILLED_54: &str = "Out of memory: Killed process 114 (hog) total-vm:62600kB, anon-rss:60920kB, file-rss:4kB, shmem-rss:8kB, UID:1000 pgtables:164kB oom_score_adj:300";
    /// A one-row task dump and its kill line (pid 114), to end a report in a test.
    const DUMP_AND_KILL_114: [&str; 4] = [
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
        "[    114]  1000   114    15650    15230   139264        0           300 hog",
        KILLED_54,
    ];

    #[test]
    fn header_5_0_and_later() {
        let ev = one(&[HEADER]);
        assert!(ev.has_header);
        let inv = ev.invoker.unwrap();
        assert_eq!(
            (inv.comm.as_str(), inv.pid, inv.oom_score_adj),
            ("hog", None, Some(0))
        );
        assert_eq!(ev.gfp_mask.as_deref(), Some("0x140cca"));
        assert_eq!(
            ev.gfp_flags.as_deref(),
            Some("GFP_HIGHUSER_MOVABLE|__GFP_COMP")
        );
        assert_eq!(ev.order, Some(0));
        assert_eq!(ev.nodemask, None);
    }

    #[test]
    fn header_of_each_older_era() {
        // 2.6.12: no invoker, no order.
        let ev = one(&["oom-killer: gfp_mask=0xd0"]);
        assert!(ev.has_header && ev.invoker.is_none());
        assert_eq!((ev.gfp_mask.as_deref(), ev.order), (Some("0xd0"), None));
        // 2.6.16.
        let ev = one(&["oom-killer: gfp_mask=0x201d2, order=0"]);
        assert_eq!(
            (ev.gfp_mask.as_deref(), ev.order),
            (Some("0x201d2"), Some(0))
        );
        // 2.6.20 – 2.6.31: oomkilladj.
        let ev = one(&["java invoked oom-killer: gfp_mask=0x201d2, order=0, oomkilladj=-17"]);
        assert_eq!(ev.invoker.unwrap().oom_score_adj, Some(-17));
        // 2.6.32 – 2.6.35: oom_adj.
        let ev = one(&["java invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=2"]);
        assert_eq!(ev.invoker.unwrap().oom_score_adj, Some(2));
        // 2.6.36 – 3.6: both; oom_score_adj wins.
        let ev = one(&[
            "java invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=-500",
        ]);
        assert_eq!(ev.invoker.unwrap().oom_score_adj, Some(-500));
        // 4.14: nodemask=(null) and two spaces before order.
        let ev = one(&[
            "stress invoked oom-killer: gfp_mask=0x14280ca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), nodemask=(null),  order=0, oom_score_adj=0",
        ]);
        assert_eq!(ev.nodemask.as_deref(), Some("(null)"));
        assert_eq!(ev.order, Some(0));
        assert_eq!(
            ev.gfp_flags.as_deref(),
            Some("GFP_HIGHUSER_MOVABLE|__GFP_ZERO")
        );
        // 4.15 – 4.20: nodemask as a list.
        let ev = one(&[
            "stress invoked oom-killer: gfp_mask=0x6280ca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), nodemask=0-1, order=0, oom_score_adj=0",
        ]);
        assert_eq!(ev.nodemask.as_deref(), Some("0-1"));
        // sysrq-f: order=-1.
        let ev = one(&[
            "kworker/0:1 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=-1, oom_score_adj=0",
        ]);
        assert_eq!(ev.order, Some(-1));
        assert_eq!(ev.invoker.unwrap().comm, "kworker/0:1");
        // Patched kernels: "comm:pid".
        let ev = one(&[
            "hog:4242 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        ]);
        let inv = ev.invoker.unwrap();
        assert_eq!((inv.comm.as_str(), inv.pid), ("hog", Some(4242)));
    }

    #[test]
    fn cpu_line_gives_the_invoker_pid_in_each_form() {
        for (line, pid, comm) in [
            (
                "CPU: 1 UID: 0 PID: 20314 Comm: grower Not tainted 6.18.44 #1 PREEMPT(none)",
                20314,
                "grower",
            ),
            (
                "CPU: 0 PID: 946 Comm: hog Tainted: G        W         5.15.0 #1",
                946,
                "hog",
            ),
            (
                "Pid: 9247, comm: hog Not tainted 2.6.32-431.el6.x86_64 #1",
                9247,
                "hog",
            ),
        ] {
            let header = format!(
                "{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
            );
            let ev = one(&[&header, line]);
            let inv = ev.invoker.unwrap();
            assert_eq!((inv.pid, inv.comm.as_str()), (Some(pid), comm), "{line}");
        }
    }

    #[test]
    fn cpu_line_and_dump_header_frame_start_a_report_whose_header_was_lost() {
        let ev = one(&[
            "CPU: 0 PID: 946 Comm: hog Not tainted 6.1.0 #1",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " dump_header+0x4a/0x211",
            "Out of memory: Killed process 946 (hog) total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:12kB oom_score_adj:0",
        ]);
        assert!(!ev.has_header);
        assert_eq!(ev.invoker.unwrap().pid, Some(946));
        assert_eq!(ev.victim.unwrap().pid, 946);
        // Without the dump_header frame a CPU line is just a stack dump.
        let evs = run(&[
            "CPU: 0 PID: 946 Comm: hog Not tainted 6.1.0 #1",
            "Call Trace:",
        ]);
        assert!(evs.is_empty(), "{evs:#?}");
    }

    #[test]
    fn mem_info_global_counters_and_not_the_per_node_lines() {
        let ev = one(&[
            HEADER,
            "Mem-Info:",
            "active_anon:1000 inactive_anon:2000 isolated_anon:0",
            " active_file:30 inactive_file:40 isolated_file:0",
            " unevictable:0 dirty:0 writeback:0",
            " slab_reclaimable:5 slab_unreclaimable:700",
            " mapped:1 shmem:50 pagetables:2",
            " sec_pagetables:0 bounce:0",
            " kernel_misc_reclaimable:0",
            " free:99 free_pcp:1 free_cma:0",
            "Node 0 active_anon:4000kB inactive_anon:8000kB active_file:120kB inactive_file:160kB free:1kB",
            "Node 0 DMA free:15908kB boost:0kB min:128kB low:160kB high:192kB",
            "lowmem_reserve[]: 0 2939 3896 3896",
            "Node 0 DMA: 1*4kB (U) 0*8kB = 4kB",
            "1234 total pagecache pages",
            "0 pages in swap cache",
            "Free swap  = 10kB",
            "Total swap = 20kB",
            "4194174 pages RAM",
            "0 pages HighMem/MovableOnly",
            KILLED_54,
        ]);
        let m = ev.memory;
        assert_eq!(m.active_anon_pages, Some(1000));
        assert_eq!(m.inactive_anon_pages, Some(2000));
        assert_eq!(m.active_file_pages, Some(30));
        assert_eq!(m.inactive_file_pages, Some(40));
        assert_eq!(m.slab_unreclaimable_pages, Some(700));
        assert_eq!(m.shmem_pages, Some(50));
        assert_eq!(
            m.free_pages,
            Some(99),
            "a Node line must not overwrite free:"
        );
        assert_eq!(m.pagecache_pages, Some(1234));
        assert_eq!(m.swap_free_kb, Some(10));
        assert_eq!(m.swap_total_kb, Some(20));
        assert_eq!(m.ram_pages, Some(4194174));
    }

    #[test]
    fn mem_info_3_10_layout() {
        let ev = one(&[
            HEADER,
            "Mem-Info:",
            "active_anon:11 inactive_anon:12 isolated_anon:0",
            " active_file:13 inactive_file:14 isolated_file:0",
            " unevictable:0 dirty:0 writeback:0 unstable:0",
            " free:15 slab_reclaimable:1 slab_unreclaimable:16",
            " mapped:1 shmem:17 pagetables:2 bounce:0",
            " free_cma:0",
            KILLED_54,
        ]);
        let m = ev.memory;
        assert_eq!(
            (
                m.active_anon_pages,
                m.free_pages,
                m.slab_unreclaimable_pages,
                m.shmem_pages
            ),
            (Some(11), Some(15), Some(16), Some(17))
        );
    }

    /// A dump header and one row in each era's layout, and the task it must give.
    #[test]
    fn task_dump_of_each_era() {
        let base = Task {
            pid: 1234,
            uid: Some(1000),
            tgid: Some(1234),
            total_vm_pages: Some(50000),
            rss_pages: Some(40000),
            name: "my hog".into(),
            ..Default::default()
        };
        let cases: [(&str, &[&str], &str, Task); 7] = [
            (
                "2.6.25",
                &[],
                "[ pid ]   uid  tgid total_vm      rss cpu oom_adj name",
                Task {
                    oom_adj: Some(-17),
                    ..base.clone()
                },
            ),
            (
                "2.6.36",
                &[],
                "[ pid ]   uid  tgid total_vm      rss cpu oom_adj oom_score_adj name",
                Task {
                    oom_adj: Some(0),
                    oom_score_adj: Some(-1000),
                    ..base.clone()
                },
            ),
            (
                "3.6",
                &[],
                "[ pid ]   uid  tgid total_vm      rss nr_ptes swapents oom_score_adj name",
                Task {
                    pgtables_bytes: Some(90 * 4096),
                    swapents: Some(7),
                    oom_score_adj: Some(-1000),
                    ..base.clone()
                },
            ),
            (
                "4.4",
                &[],
                "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name",
                Task {
                    pgtables_bytes: Some((90 + 3) * 4096),
                    swapents: Some(7),
                    oom_score_adj: Some(-1000),
                    ..base.clone()
                },
            ),
            (
                "4.15",
                &[],
                "[ pid ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
                Task {
                    pgtables_bytes: Some(368640),
                    swapents: Some(7),
                    oom_score_adj: Some(-1000),
                    ..base.clone()
                },
            ),
            (
                "4.19",
                &["Tasks state (memory values in pages):"],
                "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
                Task {
                    pgtables_bytes: Some(368640),
                    swapents: Some(7),
                    oom_score_adj: Some(-1000),
                    ..base.clone()
                },
            ),
            (
                "6.8",
                &["Tasks state (memory values in pages):"],
                "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
                Task {
                    rss_anon_pages: Some(39000),
                    rss_file_pages: Some(900),
                    rss_shmem_pages: Some(100),
                    pgtables_bytes: Some(368640),
                    swapents: Some(7),
                    oom_score_adj: Some(-1000),
                    ..base.clone()
                },
            ),
        ];
        // Rows written from each era's format string (§4.3).
        let rows = [
            format!(
                "[{:5}] {:5} {:5} {:8} {:8} {:3}     {:3} {}",
                1234, 1000, 1234, 50000, 40000, 1, -17, "my hog"
            ),
            format!(
                "[{:5}] {:5} {:5} {:8} {:8} {:3}     {:3}         {:5} {}",
                1234, 1000, 1234, 50000, 40000, 1, 0, -1000, "my hog"
            ),
            format!(
                "[{:5}] {:5} {:5} {:8} {:8} {:7} {:8}         {:5} {}",
                1234, 1000, 1234, 50000, 40000, 90, 7, -1000, "my hog"
            ),
            format!(
                "[{:5}] {:5} {:5} {:8} {:8} {:7} {:7} {:8}         {:5} {}",
                1234, 1000, 1234, 50000, 40000, 90, 3, 7, -1000, "my hog"
            ),
            format!(
                "[{:5}] {:5} {:5} {:8} {:8} {:8} {:8}         {:5} {}",
                1234, 1000, 1234, 50000, 40000, 368640, 7, -1000, "my hog"
            ),
            format!(
                "[{:7}] {:5} {:5} {:8} {:8} {:8} {:8}         {:5} {}",
                1234, 1000, 1234, 50000, 40000, 368640, 7, -1000, "my hog"
            ),
            format!(
                "[{:7}] {:5} {:5} {:8} {:8} {:8} {:8} {:9} {:8} {:8}         {:5} {}",
                1234, 1000, 1234, 50000, 40000, 39000, 900, 100, 368640, 7, -1000, "my hog"
            ),
        ];
        for ((era, before, header, want), row) in cases.into_iter().zip(rows) {
            let mut lines = vec![HEADER];
            lines.extend_from_slice(before);
            lines.extend([header, row.as_str(), KILLED_54]);
            let ev = one(&lines);
            assert_eq!(ev.tasks, Some(vec![want]), "era {era}: {row}");
        }
    }

    #[test]
    fn task_dump_row_that_does_not_fit_the_header_is_not_a_task() {
        let ev = one(&[
            HEADER,
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
            "[   1234]  1000  1234    50000    40000   368640        7          0 ok",
            "[   1235]  1000  1235    50000",
            KILLED_54,
        ]);
        let tasks = ev.tasks.unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].name, "ok");
    }

    #[test]
    fn killed_process_of_each_era() {
        struct Want {
            pid: i64,
            comm: &'static str,
            total_vm: Option<u64>,
            anon: Option<u64>,
            file: Option<u64>,
            shmem: Option<u64>,
            uid: Option<i64>,
            pgtables: Option<u64>,
            adj: Option<i64>,
        }
        let w = |pid, comm| Want {
            pid,
            comm,
            total_vm: None,
            anon: None,
            file: None,
            shmem: None,
            uid: None,
            pgtables: None,
            adj: None,
        };
        let cases = [
            ("Out of Memory: Killed process 123 (foo).", w(123, "foo")),
            ("Killed process 123 (foo)", w(123, "foo")),
            (
                "Killed process 123 (foo) vsz:1000kB, anon-rss:800kB, file-rss:4kB",
                Want {
                    total_vm: Some(1000),
                    anon: Some(800),
                    file: Some(4),
                    ..w(123, "foo")
                },
            ),
            (
                "Killed process 123 (foo) total-vm:1000kB, anon-rss:800kB, file-rss:4kB",
                Want {
                    total_vm: Some(1000),
                    anon: Some(800),
                    file: Some(4),
                    ..w(123, "foo")
                },
            ),
            (
                "Killed process 123 (foo) total-vm:1000kB, anon-rss:800kB, file-rss:4kB, shmem-rss:2kB",
                Want {
                    total_vm: Some(1000),
                    anon: Some(800),
                    file: Some(4),
                    shmem: Some(2),
                    ..w(123, "foo")
                },
            ),
            (
                "Out of memory: Killed process 123 (foo) total-vm:1000kB, anon-rss:800kB, file-rss:4kB, shmem-rss:2kB, UID:1000 pgtables:164kB oom_score_adj:-900",
                Want {
                    total_vm: Some(1000),
                    anon: Some(800),
                    file: Some(4),
                    shmem: Some(2),
                    uid: Some(1000),
                    pgtables: Some(164),
                    adj: Some(-900),
                    ..w(123, "foo")
                },
            ),
            // RHEL6 and RHEL7 backports.
            (
                "Killed process 123, UID 48, (httpd) total-vm:1000kB, anon-rss:800kB, file-rss:4kB",
                Want {
                    total_vm: Some(1000),
                    anon: Some(800),
                    file: Some(4),
                    uid: Some(48),
                    ..w(123, "httpd")
                },
            ),
            (
                "Killed process 123 (httpd), UID 48, total-vm:1000kB, anon-rss:800kB, file-rss:4kB, shmem-rss:0kB",
                Want {
                    total_vm: Some(1000),
                    anon: Some(800),
                    file: Some(4),
                    shmem: Some(0),
                    uid: Some(48),
                    ..w(123, "httpd")
                },
            ),
            // A name with spaces and parentheses.
            (
                "Out of memory: Killed process 77 (a (b) c) total-vm:10kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
                Want {
                    total_vm: Some(10),
                    anon: Some(9),
                    file: Some(0),
                    shmem: Some(0),
                    uid: Some(0),
                    pgtables: Some(4),
                    adj: Some(0),
                    ..w(77, "a (b) c")
                },
            ),
        ];
        for (line, want) in cases {
            let v = one(&[line]).victim.unwrap();
            assert_eq!(v.pid, want.pid, "{line}");
            assert_eq!(v.comm.as_deref(), Some(want.comm), "{line}");
            assert_eq!(v.total_vm_kb, want.total_vm, "{line}");
            assert_eq!(v.anon_rss_kb, want.anon, "{line}");
            assert_eq!(v.file_rss_kb, want.file, "{line}");
            assert_eq!(v.shmem_rss_kb, want.shmem, "{line}");
            assert_eq!(v.uid, want.uid, "{line}");
            assert_eq!(v.pgtables_kb, want.pgtables, "{line}");
            assert_eq!(v.oom_score_adj, want.adj, "{line}");
        }
    }

    #[test]
    fn kill_prefix_gives_the_kind() {
        for (prefix, kind) in [
            ("Out of memory", Kind::Global),
            ("Out of Memory", Kind::Global),
            ("Memory cgroup out of memory", Kind::Memcg),
            ("Out of memory (oom_kill_allocating_task)", Kind::Global),
            ("No available memory (MPOL_BIND)", Kind::Mempolicy),
            ("No available memory in cpuset", Kind::Cpuset),
        ] {
            let line =
                format!("{prefix}: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB");
            let ev = one(&[&line]);
            assert_eq!(ev.kind, Some(kind), "{line}");
            assert_eq!(ev.victim.unwrap().message.as_deref(), Some(prefix));
        }
        let ev = one(&[
            "Out of memory (oom_kill_allocating_task): Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        ]);
        assert!(
            ev.kernel_notes[0].contains("oom_kill_allocating_task"),
            "{:?}",
            ev.kernel_notes
        );
    }

    #[test]
    fn kill_process_score_line_names_the_chosen_task() {
        // 2.6.36 – 5.0: chosen task with its score, then the victim (maybe a child).
        let ev = one(&[
            HEADER,
            "Out of memory: Kill process 100 (parent) score 900 or sacrifice child",
            "Killed process 101 (child) total-vm:1000kB, anon-rss:800kB, file-rss:4kB, shmem-rss:0kB",
        ]);
        let ch = ev.chosen.unwrap();
        assert_eq!(
            (ch.pid, ch.comm.as_deref(), ch.score),
            (100, Some("parent"), Some(900))
        );
        let v = ev.victim.unwrap();
        assert_eq!((v.pid, v.score), (101, Some(900)));
        assert_eq!(ev.kind, Some(Kind::Global));
        // 2.6.20 – 2.6.35: lower-case "kill process … or a child".
        let ev = one(&[
            "oom_kill_process: kill process 100 (parent) score 123456 or a child",
            "Killed process 100 (parent)",
        ]);
        assert_eq!(ev.chosen.unwrap().score, Some(123456));
        // 2.6.16: "and children."
        let ev = one(&[
            "Out of Memory: Kill process 100 (parent) score 77 and children.",
            "Out of memory: Killed process 101 (child).",
        ]);
        assert_eq!(ev.chosen.unwrap().score, Some(77));
        assert_eq!(ev.victim.unwrap().comm.as_deref(), Some("child"));
    }

    #[test]
    fn mm_sharers_and_oom_group_are_also_killed() {
        let ev = one(&[
            HEADER,
            "Out of memory: Kill process 100 (a) score 900 or sacrifice child",
            "Killed process 100 (a) total-vm:1000kB, anon-rss:800kB, file-rss:4kB, shmem-rss:0kB",
            "Kill process 102 (b) sharing same memory",
        ]);
        assert_eq!(ev.victim.unwrap().pid, 100);
        assert_eq!(ev.also_killed.len(), 1);
        assert_eq!(
            (ev.also_killed[0].pid, ev.also_killed[0].comm.as_deref()),
            (102, Some("b"))
        );

        let ev = one(&[
            HEADER,
            "Memory cgroup out of memory: Killed process 200 (w1) total-vm:10kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            "Tasks in /job are going to be killed due to memory.oom.group set",
            "Memory cgroup out of memory: Killed process 201 (w2) total-vm:10kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            "Memory cgroup out of memory: Killed process 202 (w3) total-vm:10kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ]);
        assert_eq!(ev.oom_group.as_deref(), Some("/job"));
        assert_eq!(ev.victim.unwrap().pid, 200);
        let also: Vec<i64> = ev.also_killed.iter().map(|k| k.pid).collect();
        assert_eq!(also, [201, 202]);
    }

    #[test]
    fn kill_lines_without_header_are_one_event_each_and_a_repeat_is_one_kill() {
        // Headers are rate-limited, kill lines are not.
        let evs = run(&[
            HEADER,
            KILLED_54,
            KILLED_54,
            "Out of memory: Killed process 115 (hog2) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ]);
        let pids: Vec<i64> = evs.iter().map(|e| e.victim.as_ref().unwrap().pid).collect();
        assert_eq!(pids, [114, 115]);
        assert!(evs[0].has_header && !evs[1].has_header);
    }

    #[test]
    fn oom_reaper_lines() {
        let ev = one(&[
            HEADER,
            KILLED_54,
            "oom_reaper: reaped process 114 (hog), now anon-rss:0kB, file-rss:4kB, shmem-rss:8kB",
        ]);
        let r = ev.reaped.unwrap();
        assert_eq!(
            (
                r.pid,
                r.comm.as_str(),
                r.anon_rss_kb,
                r.file_rss_kb,
                r.shmem_rss_kb
            ),
            (114, "hog", 0, 4, 8)
        );
        let ev = one(&[
            HEADER,
            KILLED_54,
            "oom_reaper: unable to reap pid:114 (hog)",
        ]);
        assert_eq!(ev.kernel_notes, ["unable to reap pid:114 (hog)"]);
        // A reaper line for another pid does not attach.
        let ev = one(&[
            HEADER,
            KILLED_54,
            "oom_reaper: reaped process 999 (other), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
        ]);
        assert!(ev.reaped.is_none());
    }

    #[test]
    fn oom_kill_summary_line() {
        let ev = one(&[
            HEADER,
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/user-1000.slice,task=hog,pid=114,uid=1000",
            KILLED_54,
        ]);
        assert_eq!(ev.kind, Some(Kind::Global));
        assert_eq!(ev.constraint.as_deref(), Some("CONSTRAINT_NONE"));
        assert_eq!(ev.nodemask.as_deref(), Some("(null)"));
        assert_eq!(ev.cpuset.as_deref(), Some("/"));
        assert_eq!(ev.mems_allowed.as_deref(), Some("0"));
        assert_eq!(ev.memcg, None);
        assert_eq!(
            ev.task_memcg.as_deref(),
            Some("/user.slice/user-1000.slice")
        );
        let ch = ev.chosen.unwrap();
        assert_eq!((ch.pid, ch.comm.as_deref()), (114, Some("hog")));

        // The spec's memcg example (no CONFIG_CPUSETS fields would also parse).
        let ev = one(&[
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=liz,mems_allowed=0,oom_memcg=/liz,task_memcg=/liz,task=mem_stress,pid=10233,uid=0",
        ]);
        assert_eq!(ev.kind, Some(Kind::Memcg));
        assert_eq!(
            (ev.memcg.as_deref(), ev.cpuset.as_deref()),
            (Some("/liz"), Some("liz"))
        );
        assert_eq!(ev.chosen.unwrap().pid, 10233);

        // 5.0/5.1 bug: CONSTRAINT_NONE printed for a memcg OOM; oom_memcg= tells.
        let ev = one(&[
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),oom_memcg=/a,task_memcg=/a/b,task=x,pid=5,uid=0",
        ]);
        assert_eq!(ev.kind, Some(Kind::Memcg));
        assert_eq!(ev.task_memcg.as_deref(), Some("/a/b"));

        for (c, kind) in [
            ("CONSTRAINT_CPUSET", Kind::Cpuset),
            ("CONSTRAINT_MEMORY_POLICY", Kind::Mempolicy),
        ] {
            let line = format!("oom-kill:constraint={c},nodemask=0,global_oom,task=x,pid=5,uid=0");
            let ev = one(&[&line]);
            assert_eq!(ev.kind, Some(kind), "{line}");
            assert_eq!(ev.nodemask.as_deref(), Some("0"));
        }
    }

    #[test]
    fn names_in_the_oom_kill_line_cannot_change_what_ran_out() {
        let k = |line: &str| {
            let l = OomKillLine::parse(line.as_bytes()).unwrap();
            (l.kind(), l.oom_memcg.map(lossy), l.task.map(lossy), l.pid)
        };
        // A victim named to look like a group's OOM (15 bytes, `prctl(PR_SET_NAME)`).
        assert_eq!(
            k(
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=x,oom_memcg=/,pid=4242,uid=1000"
            ),
            (
                Some(Kind::Global),
                None,
                Some("x,oom_memcg=/".into()),
                Some(4242)
            )
        );
        // A group in a user's delegated subtree named so.
        assert_eq!(
            k(
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/u/x,oom_memcg=/a,task=hog,pid=7,uid=1000"
            ),
            (Some(Kind::Global), None, Some("hog".into()), Some(7))
        );
        // A cpuset named to print a whole memcg head before the real one.
        assert_eq!(
            k("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=x,mems_allowed=0,oom_memcg=/a,mems_allowed=0,global_oom,task_memcg=/,task=hog,pid=7,uid=0").0,
            Some(Kind::Global)
        );
        // A name that prints a `pid=` of its own: the last one is the kernel's.
        assert_eq!(
            k(
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task_memcg=/,task=a,pid=1,pid=99,uid=0"
            ),
            (Some(Kind::Global), None, Some("a,pid=1".into()), Some(99))
        );
        // The other way round a group's OOM stays one: its constraint is the kernel's word.
        assert_eq!(
            k(
                "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/liz,task_memcg=/liz/x,global_oom,task=hog,pid=8,uid=0"
            ),
            (
                Some(Kind::Memcg),
                Some("/liz".into()),
                Some("hog".into()),
                Some(8)
            )
        );
        // A record cut short after `task_memcg=` (a long group path went on in the next
        // record), with a cpuset named to print a tail of its own before `global_oom`.
        assert_eq!(
            k(
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=a,oom_memcg=,task=h,pid=4242,mems_allowed=0,global_oom,task_memcg="
            )
            .0,
            Some(Kind::Global)
        );
        // A name `/dev/kmsg` printed escaped (15 bytes, 60 printed): its pid still read.
        let esc = "\\xe3\\x83\\x86\\xe3\\x82\\xb9\\xe3\\x83\\x88\\xe3\\x82\\xb8\\xe3\\x83\\xa7";
        assert_eq!(esc.len(), 60);
        let line = format!(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/c,task_memcg=/c/x,task={esc},pid=77,uid=0"
        );
        assert_eq!(
            k(&line),
            (
                Some(Kind::Memcg),
                Some("/c".into()),
                Some(esc.into()),
                Some(77)
            )
        );
        // The same through the parser of whole reports.
        let ev = one(&[
            HEADER,
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=x,oom_memcg=/,pid=4242,uid=1000",
        ]);
        assert_eq!((ev.kind, ev.memcg), (Some(Kind::Global), None));
        assert_eq!(ev.chosen.unwrap().pid, 4242);
    }

    #[test]
    fn cpuset_line_before_5_0() {
        let ev = one(&[HEADER, "hog cpuset=/ mems_allowed=0-1", KILLED_54]);
        assert_eq!(
            (ev.cpuset.as_deref(), ev.mems_allowed.as_deref()),
            (Some("/"), Some("0-1"))
        );
    }

    #[test]
    fn memcg_lines_v1_and_v2() {
        let ev = one(&[
            HEADER,
            "Task in /a/b killed as a result of limit of /a",
            "memory: usage 65536kB, limit 65536kB, failcnt 19",
            "memory+swap: usage 65540kB, limit 9007199254740988kB, failcnt 3",
            "kmem: usage 240kB, limit 9007199254740988kB, failcnt 0",
            "Memory cgroup stats for /a: cache:0KB rss:65536KB",
            "Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB",
        ]);
        assert_eq!(ev.kind, Some(Kind::Memcg));
        assert_eq!(
            (ev.task_memcg.as_deref(), ev.memcg.as_deref()),
            (Some("/a/b"), Some("/a"))
        );
        let m = ev.memory;
        assert_eq!(
            (m.memcg_usage_kb, m.memcg_limit_kb, m.memcg_failcnt),
            (Some(65536), Some(65536), Some(19))
        );
        assert_eq!(
            (m.memsw_usage_kb, m.memsw_limit_kb, m.memsw_failcnt),
            (Some(65540), Some(9007199254740988), Some(3))
        );
        assert_eq!(m.kmem_usage_kb, Some(240));

        let ev = one(&[
            HEADER,
            "memory: usage 1024kB, limit 1024kB, failcnt 7",
            "swap: usage 512kB, limit 2048kB, failcnt 0",
            "Memory cgroup stats for /job:",
            "anon 1048576",
            "Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB",
        ]);
        let m = ev.memory;
        assert_eq!(
            (m.memcg_swap_usage_kb, m.memcg_swap_limit_kb),
            (Some(512), Some(2048))
        );
        assert_eq!(m.memsw_usage_kb, None);

        // A damaged line with no task path (the needle overlaps "Task in ") is no Task-in
        // line, and no panic.
        let ev = one(&[HEADER, "Task in killed as a result of limit of /a"]);
        assert_eq!(ev.memcg, None);

        // 4.4 – 4.20 without a victim.
        let ev = one(&[HEADER, "Memory limit reached of cgroup /a"]);
        assert_eq!(
            (ev.kind, ev.memcg.as_deref()),
            (Some(Kind::Memcg), Some("/a"))
        );
    }

    #[test]
    fn panic_on_oom_of_each_era() {
        for msg in [
            "out of memory. panic_on_oom is selected",
            "out of memory. Compulsory panic_on_oom is selected.",
            "out of memory from page fault. panic_on_oom is selected.",
            "out of memory(memcg). panic_on_oom is selected.",
            "Out of memory: system-wide panic_on_oom is enabled",
            "Out of memory: compulsory panic_on_oom is enabled",
        ] {
            let line = format!("Kernel panic - not syncing: {msg}");
            let ev = one(&[HEADER, &line]);
            assert_eq!(ev.kind, Some(Kind::Panic), "{line}");
            assert_eq!(ev.panic_message.as_deref(), Some(msg));
            assert!(ev.victim.is_none());
        }
        // Other panics are not OOM events.
        assert!(run(&["Kernel panic - not syncing: VFS: Unable to mount root fs"]).is_empty());
    }

    #[test]
    fn nothing_killable_of_each_era() {
        // ≤4.18: the panic itself.
        let ev = one(&[
            HEADER,
            "Kernel panic - not syncing: Out of memory and no killable processes...",
        ]);
        assert_eq!(ev.kind, Some(Kind::NoKillable));
        assert_eq!(
            ev.panic_message.as_deref(),
            Some("Out of memory and no killable processes...")
        );
        // 4.19+: a warning, then the deadlock panic of the same report.
        let ev = one(&[
            HEADER,
            "Out of memory and no killable processes...",
            "Kernel panic - not syncing: System is deadlocked on memory",
        ]);
        assert_eq!(ev.kind, Some(Kind::NoKillable));
        assert_eq!(
            ev.panic_message.as_deref(),
            Some("System is deadlocked on memory")
        );
        // 4.19+ memcg: the warning only.
        let ev = one(&[HEADER, "Out of memory and no killable processes..."]);
        assert_eq!(
            (ev.kind, ev.panic_message.as_deref()),
            (Some(Kind::NoKillable), None)
        );
    }

    #[test]
    fn kernel_notes_after_the_kill() {
        let ev = one(&[
            HEADER,
            KILLED_54,
            "oom killer 114 (hog) has mm pinned by 1 (init)",
        ]);
        assert_eq!(
            ev.kernel_notes,
            ["oom killer 114 (hog) has mm pinned by 1 (init)"]
        );
    }

    #[test]
    fn int_at_bounds() {
        assert_eq!(int_at(b"  42 x"), Some((42, 4)));
        assert_eq!(int_at(b"-17,"), Some((-17, 3)));
        assert_eq!(int_at(b" -0"), Some((0, 3)));
        assert_eq!(int_at(b"9223372036854775807"), Some((i64::MAX, 19)));
        assert_eq!(int_at(b"-9223372036854775807"), Some((-i64::MAX, 20)));
        // Overflow, more than 19 digits (even if small), no digits.
        assert_eq!(int_at(b"9223372036854775808"), None);
        assert_eq!(int_at(b"00000000000000000001"), None);
        for bad in [&b""[..], b"   ", b"-", b" - 1", b"x1"] {
            assert_eq!(int_at(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unrelated_lines_do_not_make_events() {
        assert!(run(&[
            "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
            "[   12.3] not a dump header",
            "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF",
            "oom_reaper: reaped process 1 (init), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
        ])
        .is_empty());
    }

    /// A report cut off inside Mem-Info goes stale like any other (it kept every later line
    /// of the log in the line-by-line path, and a later `free:N` could overwrite its
    /// counters); a long Mem-Info of the report's own (a slab table) keeps it open.
    #[test]
    fn mem_info_keeps_a_report_open_only_with_lines_of_its_own() {
        let unrelated = "audit: type=1400 audit(1700000000.123:5): apparmor=\"ALLOWED\" operation=\"open\" pid=1 comm=\"x\"";
        let mut p = Parser::new();
        let s = Stamp::default();
        for l in [
            HEADER,
            "Mem-Info:",
            "active_anon:1 inactive_anon:2 isolated_anon:0",
            " free:100 free_pcp:0",
        ] {
            p.push(l.as_bytes(), &s);
        }
        let mut read = 0;
        while p.wants_all_lines() && read < 10_000 {
            p.push(unrelated.as_bytes(), &s);
            read += 1;
        }
        assert_eq!(read, FOREIGN_RUN as usize + 1, "unrelated lines read");
        p.push(b" free:5 free_pcp:0", &s);
        // The next report (its header lost) is an event of its own, not merged into this one.
        for l in [
            "Task in /ltp killed as a result of limit of /ltp",
            "memory: usage 132kB, limit 132kB, failcnt 9",
            KILLED_54,
        ] {
            p.push(l.as_bytes(), &s);
        }
        let evs = p.finish();
        assert_eq!(evs.len(), 2, "{evs:#?}");
        assert_eq!(evs[0].memory.free_pages, Some(100));
        assert!(evs[0].victim.is_none() && evs[0].memcg.is_none());
        assert_eq!(evs[1].victim.as_ref().map(|v| v.pid), Some(114));
        assert_eq!(evs[1].memcg.as_deref(), Some("/ltp"));

        let mut lines = vec![
            HEADER.to_string(),
            "Mem-Info:".into(),
            "active_anon:1 inactive_anon:2 isolated_anon:0".into(),
            " free:100 free_pcp:0".into(),
            "Node 0 DMA: 1*4kB (U) 0*8kB = 4kB".into(),
            "lowmem_reserve[]: 0 1 2 3".into(),
            "262014 pages RAM".into(),
        ];
        // Each kind alone longer than the stale limit: per-CPU lists of old kernels, the
        // per-node lines of a large NUMA machine, a slab table.
        let long = STALE_BEFORE_DUMP as usize + 50;
        lines.push("DMA per-cpu:".into());
        lines.extend((0..long).map(|i| format!("CPU {i:4}: hi:    0, btch:   1 usd:   0")));
        lines.extend((0..long).map(|i| {
            format!(
                "Node {i} hugepages_total=0 hugepages_free=0 hugepages_surp=0 hugepages_size=2048kB"
            )
        }));
        lines.push("Unreclaimable slab info:".into());
        lines.push("Name                      Used          Total".into());
        lines.extend((0..long).map(|i| format!("kmalloc-{i}             12KB         16KB")));
        lines.extend(DUMP_AND_KILL_114.map(String::from));
        let ev = one(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(ev.victim.as_ref().map(|v| v.pid), Some(114));
        assert_eq!(ev.tasks.as_ref().map(Vec::len), Some(1));
        assert_eq!(ev.memory.free_pages, Some(100));
    }

    /// Other programs' messages close a report after [`FOREIGN_RUN`] of them in a row; the
    /// report's own lines that are not read (stack frames of every arch, a cgroup's
    /// `memory.stat`, a slab table) keep it open up to [`STALE_BEFORE_DUMP`], with a few
    /// foreign lines between them.
    #[test]
    fn only_other_programs_lines_close_a_report_early() {
        let foreign = |i: usize| format!("e1000e 0000:00:1f.6 eth0: NIC Link is Up {i} Mbps");
        let mut lines = vec![HEADER.to_string(), "Call Trace:".into()];
        // 4 blocks and 4 gaps: 358 lines in all, under the longer window.
        let long = 200;
        let gap = FOREIGN_RUN as usize - 1;
        lines.extend((0..long / 4).map(|i| format!(" ? frame_{i}+0x1a/0x2b0")));
        lines.extend((0..gap).map(foreign));
        lines.extend((0..long / 4).map(|i| format!("frame_{i} from show_stack+0x18/0x1c")));
        lines.extend((0..gap).map(foreign));
        lines.extend((0..long / 4).map(|i| format!("[<c0{i:06}>] (frame_{i}) from [<c0101010>]")));
        lines.extend((0..gap).map(foreign));
        lines.push("Memory cgroup stats for /ltp:".into());
        lines.extend((0..long / 4).map(|i| format!("counter_{i} {}", i * 4096)));
        lines.extend((0..gap).map(foreign));
        lines.extend(DUMP_AND_KILL_114.map(String::from));
        let ev = one(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(ev.victim.as_ref().map(|v| v.pid), Some(114));
        assert_eq!(ev.tasks.as_ref().map(Vec::len), Some(1));

        // Two more foreign lines in the last gap, 41 in a row: the report was cut off, the dump
        // is another's.
        let mut cut = lines.clone();
        let at = cut
            .iter()
            .position(|l| l.starts_with("Tasks state"))
            .unwrap();
        cut.insert(at, foreign(0));
        cut.insert(at, foreign(0));
        let evs = run(&cut.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(evs.len(), 2, "{evs:#?}");
        assert!(evs[0].victim.is_none() && evs[0].has_header);
        assert_eq!(evs[1].tasks.as_ref().map(Vec::len), Some(1));

        // The report's own lines, unread, still close it after the longer window.
        let mut p = Parser::new();
        let s = Stamp::default();
        p.push(HEADER.as_bytes(), &s);
        let mut read = 0;
        while p.wants_all_lines() && read < 10_000 {
            p.push(b" ? frame+0x1a/0x2b0", &s);
            read += 1;
        }
        assert_eq!(read, STALE_BEFORE_DUMP as usize + 1, "stack frames read");
    }

    /// Parses lines through the line reader (prefixes, keyword skipping), as `explain` does.
    fn read(text: &str) -> Vec<OomEvent> {
        crate::report::parse_bytes(text.as_bytes())
    }

    const EXITING_121: &str =
        "Out of memory: OOM victim 121 (hog) is already exiting. Skip killing the task";

    /// 5.9+: the chosen task had already lost its memory: the kernel prints that it skips the
    /// kill, and the invocation ends there. The next invocation's kill (its header
    /// rate-limited) is an event of its own, not this one's victim.
    #[test]
    fn a_victim_already_exiting_ends_the_invocation_without_a_kill() {
        let text = [
            "[    7.382101] hog invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0",
            "[    7.382200] CPU: 0 PID: 121 Comm: hog Not tainted 6.1.0 #1",
            "[    7.385000] Tasks state (memory values in pages):",
            "[    7.385105] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
            "[    7.385200] [    121]     0   121    95010    94673   798720        0             0 hog",
            "[    7.385300] [    130]     0   130    25000    22500   204800        0             0 other",
            "[    7.385447] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=hog,pid=121,uid=0",
            &format!("[    7.386359] {EXITING_121}"),
            "[    9.100000] Out of memory: Killed process 130 (other) total-vm:100000kB, anon-rss:90000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:200kB oom_score_adj:0",
        ]
        .join("\n");
        let evs = read(&text);
        assert_eq!(evs.len(), 2, "{evs:#?}");
        let ev = &evs[0];
        assert!(ev.has_header && ev.victim.is_none(), "{ev:#?}");
        assert_eq!(ev.kind, Some(Kind::Global));
        assert_eq!(ev.chosen.as_ref().map(|c| c.pid), Some(121));
        assert_eq!(ev.kernel_notes, [EXITING_121]);
        assert_eq!(ev.tasks.as_ref().map(Vec::len), Some(2));
        let a = crate::report::explain::analyse(ev);
        assert!(
            a.not_by_badness
                .as_deref()
                .is_some_and(|n| n.contains("already exiting")),
            "{a:?}"
        );
        let text = crate::report::explain::render(ev);
        assert!(
            text.contains("Chosen:        hog (pid 121), already exiting"),
            "{text}"
        );
        assert!(!evs[1].has_header);
        assert_eq!(evs[1].victim.as_ref().map(|v| v.pid), Some(130));
        assert!(evs[1].kernel_notes.is_empty());
    }

    /// Without an open report (its header and dump rate-limited), the line is an invocation of
    /// its own; after a memory.oom.group kill, a group member already exiting is a note of
    /// that invocation; the same line twice is one note.
    #[test]
    fn already_exiting_outside_an_open_report() {
        let evs = read(&format!(
            "[ 1.0] {KILLED_54}\n[ 3.0] {EXITING_121}\n[ 3.0] {EXITING_121}\n"
        ));
        assert_eq!(evs.len(), 2, "{evs:#?}");
        assert_eq!(evs[0].victim.as_ref().map(|v| v.pid), Some(114));
        assert!(evs[0].kernel_notes.is_empty());
        assert!(evs[1].victim.is_none() && !evs[1].has_header);
        assert_eq!(evs[1].chosen.as_ref().map(|c| c.pid), Some(121));
        assert_eq!(evs[1].kind, Some(Kind::Global));
        assert_eq!(evs[1].kernel_notes, [EXITING_121]);
        let evs = read(
            "[ 1.0] Memory cgroup out of memory: Killed process 114 (hog) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n\
             [ 1.1] Tasks in /app are going to be killed due to memory.oom.group set\n\
             [ 1.2] Memory cgroup out of memory: OOM victim 115 (w) is already exiting. Skip killing the task\n\
             [ 1.3] Memory cgroup out of memory: Killed process 116 (w) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n",
        );
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert_eq!(evs[0].also_killed.len(), 1);
        assert_eq!(evs[0].kernel_notes.len(), 1);
        assert!(evs[0].kernel_notes[0].contains("OOM victim 115"));
    }

    /// Kernels ≤ 5.2 print one `Memory cgroup stats for` line per group of the OOMing
    /// subtree, hundreds on a busy host, between the memcg counters and the task dump: the
    /// report stays one invocation.
    #[test]
    fn hundreds_of_memcg_stats_lines_stay_in_one_report() {
        let mut lines = vec![
            "java invoked oom-killer: gfp_mask=0x6000c0(GFP_KERNEL), nodemask=(null), order=0, oom_score_adj=0".to_string(),
            "CPU: 1 PID: 4242 Comm: java Not tainted 4.19.0 #1".into(),
            "Task in /kubepods/pod1/c1 killed as a result of limit of /kubepods".into(),
            "memory: usage 1048576kB, limit 1048576kB, failcnt 12".into(),
            "memory+swap: usage 0kB, limit 9007199254740988kB, failcnt 0".into(),
            "kmem: usage 10240kB, limit 9007199254740988kB, failcnt 0".into(),
        ];
        for g in 0..600 {
            lines.push(format!(
                "Memory cgroup stats for /kubepods/pod{g}/c{g}: cache:0KB rss:4KB rss_huge:0KB shmem:0KB mapped_file:0KB dirty:0KB writeback:0KB inactive_anon:0KB active_anon:4KB inactive_file:0KB active_file:0KB unevictable:0KB"
            ));
        }
        lines.push("Tasks state (memory values in pages):".into());
        lines.push(
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"
                .into(),
        );
        lines.push(
            "[   4242]  1000  4242   400000   262000  2200000        0             0 java".into(),
        );
        lines.push(
            "Memory cgroup out of memory: Kill process 4242 (java) score 999 or sacrifice child"
                .into(),
        );
        lines.push("Killed process 4242 (java) total-vm:1600000kB, anon-rss:1040000kB, file-rss:8000kB, shmem-rss:0kB".into());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let ev = one(&refs);
        assert_eq!(ev.victim.as_ref().map(|v| v.pid), Some(4242));
        assert_eq!(ev.tasks.as_ref().map(Vec::len), Some(1));
        assert_eq!(ev.memcg.as_deref(), Some("/kubepods"));
        assert_eq!(ev.kind, Some(Kind::Memcg));
    }

    /// The same pid killed again is the kill printed twice only within one invocation:
    /// within seconds, by a clock that did not go back (a reboot), with the same kind of
    /// stamp. Otherwise (pids are reused) it is another invocation.
    #[test]
    fn a_pid_killed_again_later_is_another_invocation() {
        let kill = |stamp: &str, rss: u32| {
            let sep = if stamp.is_empty() { "" } else { " " };
            format!(
                "{stamp}{sep}Out of memory: Killed process 1234 (java) total-vm:7823732kB, anon-rss:{rss}kB, file-rss:768kB, shmem-rss:0kB\n"
            )
        };
        let victims = |text: String| -> Vec<Option<u64>> {
            read(&text)
                .iter()
                .map(|e| e.victim.as_ref().and_then(|v| v.anon_rss_kb))
                .collect()
        };
        // A reboot between: the seconds since boot went back (syslog with the kernel's stamp).
        assert_eq!(
            victims(
                kill("Mar  2 17:35:10 server1 kernel: [2858609.598568]", 1)
                    + &kill("Mar  9 04:01:22 server1 kernel: [  812.000001]", 2)
            ),
            [Some(1), Some(2)]
        );
        // An hour later by the same clock.
        assert_eq!(
            victims(kill("[ 100.000000]", 1) + &kill("[3700.000000]", 2)),
            [Some(1), Some(2)]
        );
        // A week later by the wall clock only (syslog, `dmesg -T`).
        assert_eq!(
            victims(
                kill("Mar  2 17:35:10 server1 kernel:", 1)
                    + &kill("Mar  9 04:01:22 server1 kernel:", 2)
            ),
            [Some(1), Some(2)]
        );
        assert_eq!(
            victims(kill("[Mon Mar  2 17:35:10 2026]", 1) + &kill("[Mon Mar  9 04:01:22 2026]", 2)),
            [Some(1), Some(2)]
        );
        // One stamped, one not: two logs.
        let mut p = Parser::new();
        let line = kill("", 1);
        let stamped = Stamp {
            monotonic_s: Some(100.0),
            ..Default::default()
        };
        p.push(line.as_bytes(), &stamped);
        p.push(line.as_bytes(), &Stamp::default());
        assert_eq!(p.finish().len(), 2);
        // Printed twice within the invocation: one kill, the first line's values.
        assert_eq!(
            victims(kill("[ 139.201482]", 1) + &kill("[ 139.243276]", 2)),
            [Some(1)]
        );
        assert_eq!(
            victims(kill("Dec 31 23:59:59 h kernel:", 1) + &kill("Jan  1 00:00:01 h kernel:", 2)),
            [Some(1)]
        );
        assert_eq!(
            victims(kill("[Mon Mar  2 17:35:10 2026]", 1) + &kill("[Mon Mar  2 17:35:10 2026]", 2)),
            [Some(1)]
        );
        assert_eq!(victims(kill("", 1) + &kill("", 2)), [Some(1)]);
        // memory.oom.group kills after a long pause are not the group's.
        let evs = read(
            "[ 1.0] Memory cgroup out of memory: Killed process 114 (hog) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n\
             [ 1.1] Tasks in /app are going to be killed due to memory.oom.group set\n\
             [ 1.2] Memory cgroup out of memory: Killed process 115 (w) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n\
             [ 900.0] Memory cgroup out of memory: Killed process 116 (w) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n",
        );
        assert_eq!(evs.len(), 2, "{evs:#?}");
        assert_eq!(evs[0].also_killed.len(), 1);
        assert_eq!(evs[1].victim.as_ref().map(|v| v.pid), Some(116));
    }

    /// A header line logged twice (same stamp, same text) is one invocation, not a phantom
    /// header-only event before the real one.
    #[test]
    fn a_header_logged_twice_is_one_invocation() {
        let h = format!("[    7.382101] {HEADER}");
        let mut text = format!("{h}\n{h}\n");
        for l in DUMP_AND_KILL_114 {
            text += &format!("[    7.385000] {l}\n");
        }
        let evs = read(&text);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert_eq!(evs[0].victim.as_ref().map(|v| v.pid), Some(114));
        assert_eq!(evs[0].time.monotonic_s, Some(7.382101));
        // Two headers with different stamps are two invocations, also within one second of
        // syslog's clock (the kernel's own stamps differ).
        let text = format!("[    7.382101] {HEADER}\n[    7.482101] {HEADER}\n");
        assert_eq!(read(&text).len(), 2);
        let text = format!(
            "Oct 12 19:00:20 h kernel: [ 8523.444701] {HEADER}\nOct 12 19:00:20 h kernel: [ 8523.347168] {HEADER}\n"
        );
        assert_eq!(read(&text).len(), 2);
        // The same header again after other lines (a log read twice): two.
        let text =
            format!("{h}\n[    7.382200] CPU: 0 PID: 114 Comm: hog Not tainted 6.1.0 #1\n{h}\n");
        assert_eq!(read(&text).len(), 2);
    }

    /// `Out of memory` before 5.0 is also the prefix of cpuset and memory-policy OOMs: with a
    /// node list in the header's nodemask (4.9–4.20), the kind is not known; with
    /// `nodemask=(null)`, or no nodemask, it is a global OOM.
    #[test]
    fn a_node_list_in_the_header_leaves_the_kind_unknown() {
        let report = |nodemask: &str| {
            one(&[
                &format!(
                    "oom02 invoked oom-killer: gfp_mask=0x16080c0(GFP_KERNEL|__GFP_ZERO|__GFP_NOTRACK), nodemask={nodemask},  order=0, oom_score_adj=0"
                ),
                "Out of memory: Kill process 4578 (oom02) score 952 or sacrifice child",
                "Killed process 4578 (oom02) total-vm:151104120kB, anon-rss:131562528kB, file-rss:1300kB, shmem-rss:0kB",
            ])
        };
        assert_eq!(report("1").kind, None);
        assert_eq!(report("0-1").kind, None);
        assert_eq!(report("(null)").kind, Some(Kind::Global));
        // A memcg prefix still says what it says.
        let ev = one(&[
            "x invoked oom-killer: gfp_mask=0x14000c0(GFP_KERNEL), nodemask=0, order=0, oom_score_adj=0",
            "Memory cgroup out of memory: Kill process 5 (x) score 1 or sacrifice child",
        ]);
        assert_eq!(ev.kind, Some(Kind::Memcg));
    }

    /// An `oom-kill:` line whose tail is not the kernel's `,task=…,pid=N,uid=N` (a translated
    /// or edited line) gives no task, pid or task group: where the group path ends is not
    /// known. A line cut short inside the tail still gives what it has.
    #[test]
    fn an_oom_kill_line_with_a_tail_of_another_shape() {
        let l = OomKillLine::parse(b"oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/docker/e9d9 5 a33d,task=python,pid= 2953 , liquid=999").unwrap();
        assert_eq!((l.task_memcg, l.task, l.pid), (None, None, None), "{l:?}");
        assert_eq!(l.constraint, Some(&b"CONSTRAINT_NONE"[..]));
        assert_eq!(l.kind(), Some(Kind::Global));
        for (line, pid) in [
            (
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task_memcg=/a b,task=x,pid=12,uid=0",
                12,
            ),
            (
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task_memcg=/a b,task=x,pid=12,uid=-1  ",
                12,
            ),
            (
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task_memcg=/a b,task=x,pid=12,ui",
                12,
            ),
            (
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task_memcg=/a b,task=x,pid=12",
                12,
            ),
        ] {
            let l = OomKillLine::parse(line.as_bytes()).unwrap();
            assert_eq!(
                (l.task_memcg, l.task, l.pid),
                (Some(&b"/a b"[..]), Some(&b"x"[..]), Some(pid)),
                "{line}"
            );
        }
        for bad in [
            ",pid=12 ,uid=0",
            ",pid=12,uid=0 x",
            ",pid=12,gid=0",
            ",pid=x12",
        ] {
            let line = format!("oom-kill:constraint=CONSTRAINT_NONE,task_memcg=/a,task=x{bad}");
            let l = OomKillLine::parse(line.as_bytes()).unwrap();
            assert_eq!((l.task_memcg, l.pid), (None, None), "{line}");
        }
    }

    /// Without task rows (`explain --summary`), the same events: the dump's rows read (its
    /// extent, where its report ends) but not kept.
    #[test]
    fn without_task_rows_the_events_are_the_same_but_the_rows() {
        for (filler, n, events) in [("x", STALE_AFTER_DUMP - 1, 1), (" frame+0x1/0x2", 100, 2)] {
            let mut lines = vec![HEADER.to_string()];
            lines.push(DUMP_AND_KILL_114[0].into());
            lines.push(DUMP_AND_KILL_114[1].into());
            for pid in 0..20_000 {
                lines.push(format!(
                    "[{pid:>7}]  1000 {pid:>5}    15650    15230   139264        0             0 w"
                ));
            }
            lines.extend((0..n).map(|_| filler.to_string()));
            lines.push("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=hog,pid=114,uid=1000".into());
            lines.push(KILLED_54.into());
            let parse = |mut p: Parser| {
                for l in &lines {
                    p.push(l.as_bytes(), &Stamp::default());
                }
                p.finish()
            };
            let mut kept = parse(Parser::new());
            assert_eq!(kept.len(), events, "{filler}");
            assert_eq!(kept[0].tasks.as_ref().map(Vec::len), Some(20_000));
            kept[0].tasks = Some(Vec::new());
            assert_eq!(parse(Parser::without_task_rows()), kept, "{filler}");
        }
    }

    /// A line shaped like a task-dump row that is none (a column without a number, no name)
    /// is no row whether rows are kept or not: it does not make the report's dump begin, so
    /// the report stays open through the lines a report before its dump may hold.
    #[test]
    fn a_row_without_its_columns_or_name_is_no_row_with_or_without_kept_rows() {
        let mut lines = vec![HEADER.to_string()];
        lines.push(DUMP_AND_KILL_114[0].into());
        lines.push(DUMP_AND_KILL_114[1].into());
        lines.push("[    115]  1000   115    15650    15230   139264        0           0".into());
        lines.push("[    116]  1000   116    15650    x   139264        0           0 w".into());
        lines.push("[    117]  1000   117    15650    15230   139264        0           0w".into());
        lines.extend((0..STALE_AFTER_DUMP + 20).map(|_| " frame+0x1/0x2".to_string()));
        // Read only while the report is open (a dump begun would have closed it by now).
        lines.push("Free swap  = 4kB".into());
        lines.push(KILLED_54.into());
        for mut p in [Parser::new(), Parser::without_task_rows()] {
            for l in &lines {
                p.push(l.as_bytes(), &Stamp::default());
            }
            let evs = p.finish();
            assert_eq!(evs.len(), 1, "{evs:#?}");
            assert!(evs[0].has_header);
            assert_eq!(evs[0].victim.as_ref().map(|v| v.pid), Some(114));
            assert_eq!(evs[0].memory.swap_free_kb, Some(4), "the report went stale");
            assert_eq!(evs[0].tasks.as_deref(), Some(&[][..]));
        }
    }
}
