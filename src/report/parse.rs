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
    /// Columns of the task-dump header, when one was seen.
    cols: Option<Vec<Col>>,
    /// Inside Mem-Info (global memory counters are read only there).
    in_meminfo: bool,
    /// Lines since the last one that belongs to a report (see [`STALE_AFTER_DUMP`]).
    idle: u32,
}

/// An open report whose task dump has ended gets its kill line within a few lines; one that
/// has not after this many unrelated lines was cut off (the log is truncated, or the kill was
/// filtered out) and is closed, so the rest of the log is not read line by line.
const STALE_AFTER_DUMP: u32 = 40;
/// The same before the task dump (stack traces, Mem-Info, slab tables come first).
const STALE_BEFORE_DUMP: u32 = 400;

/// Parses kernel messages into [`OomEvent`]s; feed lines with [`Parser::push`].
#[derive(Debug, Default)]
pub struct Parser {
    cur: Option<Current>,
    /// Finished invocations, oldest first; the last few can still get a reaper line.
    done: VecDeque<OomEvent>,
    /// A `CPU:`/`Pid:` line not inside a report: (invoker, stamp, lines left).
    tentative: Option<(Invoker, Time, u32)>,
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
    String::from_utf8_lossy(b).into_owned()
}

/// Prebuilt searchers for the needles every line is checked for.
struct Finders {
    header: memchr::memmem::Finder<'static>,
    killed: memchr::memmem::Finder<'static>,
    kill: memchr::memmem::Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: std::sync::OnceLock<Finders> = std::sync::OnceLock::new();
    F.get_or_init(|| Finders {
        header: memchr::memmem::Finder::new(b"invoked oom-killer:"),
        killed: memchr::memmem::Finder::new(b"Killed process "),
        kill: memchr::memmem::Finder::new(b"ill process "),
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
fn int_at(s: &[u8]) -> Option<(i64, usize)> {
    let sp = s.iter().take_while(|b| **b == b' ').count();
    let t = &s[sp..];
    let neg = t.first() == Some(&b'-');
    let digits = t[neg as usize..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let n = neg as usize + digits;
    let mut v: i64 = 0;
    for b in &t[neg as usize..n] {
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some((if neg { -v } else { v }, sp + n))
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

    /// True while every line matters (inside a report before its kill, or just after a
    /// `CPU:` line); otherwise only lines with an OOM keyword can change anything, and the
    /// reader may skip the rest (see [`super::lines`]).
    pub fn wants_all_lines(&self) -> bool {
        self.tentative.is_some() || self.cur.as_ref().is_some_and(|c| !c.finished)
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
        if self.cur.as_ref().is_some_and(|c| !c.finished) {
            self.tentative = None;
            return self.cur.as_mut().expect("checked");
        }
        self.start(stamp)
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
            let dumped = c.ev.tasks.as_ref().is_some_and(|t| !t.is_empty());
            if c.idle
                > if dumped {
                    STALE_AFTER_DUMP
                } else {
                    STALE_BEFORE_DUMP
                }
            {
                c.finished = true;
            }
        }
        if msg[0] == b' ' && self.tentative.is_none() {
            // Stack frames and continuation lines: only Mem-Info's matter.
            if let Some(c) = self.cur.as_mut().filter(|c| !c.finished && c.in_meminfo) {
                meminfo_counters(t, &mut c.ev.memory);
                c.idle = 0;
            }
            return;
        }
        // Task-dump rows, the bulk of a report: straight to the row parser.
        if t[0] == b'['
            && let Some(c) = self.cur.as_mut().filter(|c| !c.finished)
            && let Some(cols) = &c.cols
            && let Some(task) = dump_row(t, cols)
        {
            c.ev.tasks.get_or_insert_with(Vec::new).push(task);
            c.idle = 0;
            return;
        }
        if let Some((_, _, left)) = &mut self.tentative {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.tentative = None;
            }
        }
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
        if let Some(i) = finders().kill.find(t) {
            if i > 0 && (t[i - 1] == b'K' || t[i - 1] == b'k') {
                self.kill_process(t, i - 1, stamp);
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
        if t.starts_with(b"Task in ") && find(t, b" killed as a result of limit of ").is_some() {
            self.task_in(t, stamp);
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
                && let Some(task) = dump_row(t, cols)
            {
                c.ev.tasks.get_or_insert_with(Vec::new).push(task);
            }
            return;
        }
        if t.starts_with(b"Mem-Info:") {
            c.in_meminfo = true;
            c.idle = 0;
            return;
        }
        if let Some(rest) = t.strip_prefix(b"memory: usage ") {
            c.ev.memory.memcg_usage_kb = uint_at(rest);
            c.ev.memory.memcg_limit_kb = kb_after(rest, b"limit ");
            c.ev.memory.memcg_failcnt = kb_after(rest, b"failcnt ");
            c.ev.kind.get_or_insert(Kind::Memcg);
            return;
        }
        if let Some(rest) = t.strip_prefix(b"memory+swap: usage ") {
            c.ev.memory.memsw_usage_kb = uint_at(rest);
            c.ev.memory.memsw_limit_kb = kb_after(rest, b"limit ");
            c.ev.memory.memsw_failcnt = kb_after(rest, b"failcnt ");
            return;
        }
        if let Some(rest) = t.strip_prefix(b"swap: usage ") {
            c.ev.memory.memcg_swap_usage_kb = uint_at(rest);
            c.ev.memory.memcg_swap_limit_kb = kb_after(rest, b"limit ");
            return;
        }
        if let Some(rest) = t.strip_prefix(b"kmem: usage ") {
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
        if !t.starts_with(b"Node ") && c.in_meminfo {
            meminfo_counters(t, &mut c.ev.memory);
            c.idle = 0;
            return;
        }
        if let Some(j) = find(t, b" cpuset=")
            && let Some(k) = find(t, b" mems_allowed=")
            && k > j
        {
            c.ev.cpuset = Some(lossy(&t[j + 8..k]));
            c.ev.mems_allowed = Some(lossy(&t[k + 14..]));
        }
    }

    /// Kernel notes that can come after the kill.
    fn late_note(&mut self, t: &[u8]) {
        let note = find(t, b"is already exiting. Skip killing the task").is_some()
            || find(t, b"has a pending SIGKILL").is_some()
            || find(t, b"has mm pinned by").is_some();
        if note && let Some(c) = self.cur.as_mut() {
            c.ev.kernel_notes.push(lossy(t));
        }
    }

    fn header(&mut self, t: &[u8], i: usize, stamp: &Stamp<'_>) {
        self.tentative = None;
        self.close_current();
        let mut c = Current::default();
        c.ev.time = time_of(stamp);
        c.ev.has_header = true;
        let who = trim_end(&t[..i]);
        if !who.is_empty() {
            let mut inv = Invoker {
                comm: lossy(who),
                ..Default::default()
            };
            // Some patched kernels print "comm:pid".
            if let Some(k) = who.iter().rposition(|b| *b == b':') {
                let (name, pid) = (&who[..k], &who[k + 1..]);
                if !name.is_empty() && !pid.is_empty() && pid.iter().all(u8::is_ascii_digit) {
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

    fn task_in(&mut self, t: &[u8], stamp: &Stamp<'_>) {
        let j = find(t, b" killed as a result of limit of ").expect("checked by caller");
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
        const KEYS: [&[u8]; 10] = [
            b"constraint=",
            b"nodemask=",
            b"cpuset=",
            b"mems_allowed=",
            b"oom_memcg=",
            b"global_oom",
            b"task_memcg=",
            b"task=",
            b"pid=",
            b"uid=",
        ];
        let body = &t[9..];
        // Positions of each key at the start or after a comma, in order.
        let mut found: Vec<(usize, usize)> = Vec::new(); // (key index, value start)
        let mut from = 0;
        for (k, key) in KEYS.iter().enumerate() {
            let mut search = from;
            while let Some(p) = find(&body[search..], key) {
                let at = search + p;
                if at == 0 || body[at - 1] == b',' {
                    found.push((k, at + key.len()));
                    from = at + key.len();
                    break;
                }
                search = at + 1;
            }
        }
        let value = |idx: usize| -> Option<&[u8]> {
            let pos = found.iter().position(|(k, _)| *k == idx)?;
            let start = found[pos].1;
            let end = found
                .get(pos + 1)
                .map(|(k, s)| s - KEYS[*k].len() - 1)
                .unwrap_or(body.len());
            (end >= start).then(|| trim_end(trim_start(&body[start..end])))
        };
        let constraint = value(0).map(lossy);
        let nodemask = value(1).map(lossy);
        let cpuset = value(2).map(lossy);
        let mems = value(3).map(lossy);
        let oom_memcg = value(4).map(lossy);
        let task_memcg = value(6).map(lossy);
        let task = value(7).map(lossy);
        let pid = value(8).and_then(|v| int_at(v).map(|x| x.0));
        let c = self.open(stamp);
        c.in_meminfo = false;
        let kind = match constraint.as_deref() {
            Some("CONSTRAINT_MEMCG") => Some(Kind::Memcg),
            Some("CONSTRAINT_CPUSET") => Some(Kind::Cpuset),
            Some("CONSTRAINT_MEMORY_POLICY") => Some(Kind::Mempolicy),
            Some("CONSTRAINT_NONE") => Some(Kind::Global),
            _ => None,
        };
        // 5.0/5.1 printed CONSTRAINT_NONE for memcg OOMs too; oom_memcg= tells.
        c.ev.kind = if oom_memcg.is_some() {
            Some(Kind::Memcg)
        } else {
            kind.or(c.ev.kind)
        };
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
            self.cur.as_mut().expect("checked")
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
        {
            if v.pid == kill.pid || c.ev.also_killed.iter().any(|k| k.pid == kill.pid) {
                return; // printed twice: one kill
            }
            if c.group && kill.message == v.message {
                c.ev.also_killed.push(kill);
                return;
            }
        }
        let c = match self.cur.as_mut() {
            Some(c)
                if c.ev.victim.is_none()
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
fn kind_from_prefix(ev: &mut OomEvent, prefix: &[u8]) {
    if ev.kind.is_some() {
        return;
    }
    if prefix.ends_with(b"Memory cgroup out of memory") {
        ev.kind = Some(Kind::Memcg);
    } else if prefix.starts_with(b"Out of memory") || prefix.starts_with(b"Out of Memory") {
        ev.kind = Some(Kind::Global);
    } else if prefix.ends_with(b"(MPOL_BIND)") {
        ev.kind = Some(Kind::Mempolicy);
    } else if prefix.ends_with(b"in cpuset") {
        ev.kind = Some(Kind::Cpuset);
    }
}

/// `Killed process N (comm) total-vm:…` in all its variants (RHEL6 `Killed process N, UID U,
/// (comm)`, RHEL7 `Killed process N (comm), UID U, total-vm…`, 2.6.33 `vsz:`, 5.4+ `UID:`).
fn parse_killed(t: &[u8], i: usize) -> Option<Kill> {
    let rest = &t[i + "Killed process ".len()..];
    let (pid, n) = int_at(rest)?;
    if pid < 0 {
        return None;
    }
    let after = &rest[n..];
    let mut kill = Kill {
        pid,
        ..Default::default()
    };
    let prefix = trim_end(&t[..i]);
    let prefix = prefix.strip_suffix(b":").unwrap_or(prefix);
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
    let close = memchr::memchr(b']', &t[..t.len().min(16)])?;
    let (pid, _) = int_at(trim_start(&t[1..close]))?;
    let mut task = Task {
        pid,
        ..Default::default()
    };
    let mut rest = &t[close + 1..];
    let mut ptes: Option<u64> = None;
    let mut pmds: Option<u64> = None;
    for col in cols {
        let (v, n) = int_at(rest)?;
        rest = &rest[n..];
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
    }
    if task.pgtables_bytes.is_none() && ptes.is_some() {
        task.pgtables_bytes = Some(
            ptes.unwrap_or(0)
                .saturating_add(pmds.unwrap_or(0))
                .saturating_mul(4096),
        );
    }
    let name = trim_start(rest);
    if name.is_empty() || rest.first().is_none_or(|b| *b != b' ') {
        return None;
    }
    task.name = lossy(name);
    Some(task)
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

/// Global page counters of Mem-Info (`active_anon:N inactive_anon:N … free:N …`).
fn meminfo_counters(t: &[u8], m: &mut super::event::Memory) {
    for w in t.split(|b| *b == b' ') {
        let Some(colon) = memchr::memchr(b':', w) else {
            continue;
        };
        let (k, v) = (&w[..colon], &w[colon + 1..]);
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            continue;
        }
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
}
