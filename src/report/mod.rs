//! Kernel OOM reports: find them in kernel log text, parse them into events, explain them.
//! `oomguard explain`, and the library API that `doctor` and `drill` use.
//!
//! - [`events`] / [`parse`]: any byte stream (a `BufRead`) → [`OomEvent`]s in log order,
//!   streaming (bounded memory, no whole-file reads).
//! - [`source::read_kmsg_at`]: the kernel ring buffer now (`/dev/kmsg`, read non-blocking to
//!   its end).
//! - [`explain`]: recomputed badness ranking and human text for one event.
//!
//! The layers: [`prefix`] (line formats) and [`journal`] (journal records in JSON) → [`lines`] (logical lines, continuation joining,
//! keyword skipping) → [`parse`] (the per-invocation state machine) → [`event`] (the data).

pub mod event;
pub mod explain;
pub mod journal;
pub mod lines;
pub mod parse;
pub mod prefix;
pub mod source;
pub mod time;

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, Read};

pub use event::{Chosen, Invoker, Kill, Kind, Memory, OomEvent, Reaped, Task, Time};
pub use source::ReportError;

use lines::LogLines;
use parse::Parser;

/// Iterator over the OOM events of a log, produced as the input is read. See [`events`].
pub struct Events<R> {
    lines: LogLines<R>,
    lanes: Lanes,
    ready: VecDeque<OomEvent>,
    done: bool,
    /// A read failed: given after the events the parser still held (a report cut short by
    /// the error is still an event).
    error: Option<io::Error>,
}

/// One machine's reports. A central syslog (rsyslog or syslog-ng collecting a fleet) and
/// `journalctl -m` interleave several machines' lines, and two machines' reports can overlap
/// line by line: each host's lines go to a parser of their own, and its events carry the host.
struct Lane {
    /// `None` until a line names its host (dmesg lines name none).
    host: Option<Box<[u8]>>,
    parser: Parser,
    /// [`Lanes::tick`] when a line last went here.
    used: u64,
    /// [`Lanes::lines`] when a line last went here.
    last: u64,
}

impl Lane {
    fn new(host: Option<Box<[u8]>>, drop_rows: bool, used: u64) -> Lane {
        let mut parser = Parser::new();
        parser.drop_rows = drop_rows;
        Lane {
            host,
            parser,
            used,
            last: 0,
        }
    }

    /// Its parser's events, given the lane's host.
    fn tag(&self, evs: Vec<OomEvent>, ready: &mut VecDeque<OomEvent>) {
        let host = self
            .host
            .as_deref()
            .map(|h| String::from_utf8_lossy(h).into_owned());
        ready.extend(evs.into_iter().map(|mut ev| {
            ev.host.clone_from(&host);
            ev
        }));
    }
}

/// Machines read side by side. One more closes the reports of the machine seen least recently
/// whose parser is between reports (what it held is given as events), so that memory stays
/// bounded on a log of any number of machines.
const MAX_LANES: usize = 4096;

/// The lanes of a log: the first is its only one unless lines name several hosts.
struct Lanes {
    all: Vec<Lane>,
    /// The lane of the line read last.
    cur: usize,
    /// Where each named host's lane is (consulted only when the host changes).
    by_host: HashMap<Box<[u8]>, usize>,
    /// How many lanes' parsers want every line ([`Parser::wants_all_lines`]).
    open: usize,
    /// A clock of lane use, for giving up the least used lane at [`MAX_LANES`].
    tick: u64,
    /// Lines routed so far (the clock of [`Parser::elapse`]).
    lines: u64,
    drop_rows: bool,
}

/// How often (in lines) the lanes not read lately are told how many lines of other machines
/// went by: a report cut off in one machine's lanes is closed while the others' lines are read,
/// so that one truncated report does not keep the rest of the log read line by line.
const SWEEP_EVERY: u64 = 256;

impl Lanes {
    fn new() -> Lanes {
        Lanes {
            all: vec![Lane::new(None, false, 0)],
            cur: 0,
            by_host: HashMap::new(),
            open: 0,
            tick: 0,
            lines: 0,
            drop_rows: false,
        }
    }

    /// The lane of a line naming `host` (none: the lane of the line before). A lane given
    /// up for a new one leaves its events in `ready`.
    #[inline]
    fn route(&mut self, host: Option<&[u8]>, ready: &mut VecDeque<OomEvent>) -> &mut Lane {
        if let Some(h) = host {
            let c = &mut self.all[self.cur];
            match c.host.as_deref() {
                Some(ch) if ch == h => {}
                // The first host named: the lines before it were this machine's too.
                None => {
                    c.host = Some(h.into());
                    self.by_host.insert(h.into(), self.cur);
                }
                Some(_) => {
                    self.cur = match self.by_host.get(h) {
                        Some(&i) => i,
                        None => self.add(h, ready),
                    };
                    self.tick += 1;
                    self.all[self.cur].used = self.tick;
                }
            }
        }
        self.lines += 1;
        let lane = &mut self.all[self.cur];
        let gap = self.lines - lane.last - 1;
        lane.last = self.lines;
        if gap > 0 && lane.parser.wants_all_lines() {
            lane.parser.elapse(u32::try_from(gap).unwrap_or(u32::MAX));
            if !lane.parser.wants_all_lines() {
                self.open -= 1;
            }
        }
        &mut self.all[self.cur]
    }

    /// Tells the open lanes other than the current one how many lines went by since their
    /// last (see [`SWEEP_EVERY`]).
    fn sweep(&mut self) {
        for (i, lane) in self.all.iter_mut().enumerate() {
            if i == self.cur || !lane.parser.wants_all_lines() {
                continue;
            }
            let gap = self.lines - lane.last;
            lane.last = self.lines;
            lane.parser.elapse(u32::try_from(gap).unwrap_or(u32::MAX));
            if !lane.parser.wants_all_lines() {
                self.open -= 1;
            }
        }
    }

    fn add(&mut self, host: &[u8], ready: &mut VecDeque<OomEvent>) -> usize {
        if self.all.len() >= MAX_LANES
            && let Some(i) = (0..self.all.len())
                .filter(|&i| i != self.cur && !self.all[i].parser.wants_all_lines())
                .min_by_key(|&i| self.all[i].used)
        {
            let mut gone = self.all.swap_remove(i);
            let evs = gone.parser.finish();
            gone.tag(evs, ready);
            if let Some(h) = &gone.host {
                self.by_host.remove(h);
            }
            if let Some(moved) = self.all.get(i).and_then(|l| l.host.clone()) {
                self.by_host.insert(moved, i);
            }
        }
        self.all
            .push(Lane::new(Some(host.into()), self.drop_rows, self.tick));
        self.by_host.insert(host.into(), self.all.len() - 1);
        self.all.len() - 1
    }

    /// Every lane's events, at the end of the input.
    fn finish(&mut self, ready: &mut VecDeque<OomEvent>) {
        for l in &mut self.all {
            let evs = l.parser.finish();
            l.tag(evs, ready);
        }
        self.open = 0;
    }
}

impl<R: Read> Events<R> {
    /// Events whose `tasks` holds no row (`Some(empty)` where the report had a task dump):
    /// for output that shows none (`explain --summary`), a report of tens of thousands of
    /// tasks then costs no memory.
    pub fn without_task_rows(mut self) -> Self {
        self.lanes.drop_rows = true;
        for l in &mut self.lanes.all {
            l.parser.drop_rows = true;
        }
        self
    }

    /// Reads until at least one event is final or the input ends (or fails).
    #[inline]
    fn advance(&mut self) {
        while self.ready.is_empty() && !self.done {
            let skip = self.lanes.open == 0;
            match self.lines.next_line(skip) {
                Ok(Some(l)) => {
                    let lane = self.lanes.route(l.host, &mut self.ready);
                    let was = lane.parser.wants_all_lines();
                    if l.lines {
                        for part in l.msg.split(|&b| b == b'\n') {
                            lane.parser.push(part, &l.stamp);
                        }
                    } else {
                        lane.parser.push(l.msg, &l.stamp);
                    }
                    let now = lane.parser.wants_all_lines();
                    if lane.parser.has_ready() {
                        let evs = lane.parser.take_ready();
                        lane.tag(evs, &mut self.ready);
                    }
                    self.lanes.open = self.lanes.open + usize::from(now) - usize::from(was);
                    if self.lanes.open > usize::from(now) && self.lanes.lines % SWEEP_EVERY == 0 {
                        self.lanes.sweep();
                    }
                }
                Ok(None) => {
                    self.done = true;
                    self.lanes.finish(&mut self.ready);
                }
                Err(e) => {
                    self.done = true;
                    self.lanes.finish(&mut self.ready);
                    self.error = Some(e);
                }
            }
        }
    }
}

impl<R: Read> Iterator for Events<R> {
    type Item = io::Result<OomEvent>;

    /// Events in log order; after a read error, the events read before it, then the error
    /// (once), then nothing.
    fn next(&mut self) -> Option<Self::Item> {
        self.advance();
        match self.ready.pop_front() {
            Some(ev) => Some(Ok(ev)),
            None => self.error.take().map(Err),
        }
    }
}

/// Streams the OOM events of kernel log text in any line format (dmesg, dmesg -T, iso,
/// syslog, journalctl short formats, raw /dev/kmsg records, no prefix), one event per OOM
/// invocation, in log order. Damaged input yields what can be read; it never panics.
///
/// ```
/// let log = b"[  3.1] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
///             [  3.2] Out of memory: Killed process 114 (hog) total-vm:62600kB, anon-rss:60920kB, file-rss:4kB, shmem-rss:0kB\n";
/// let events: Vec<_> = oomguard::report::events(&log[..]).collect::<Result<_, _>>().unwrap();
/// assert_eq!(events[0].victim.as_ref().unwrap().pid, 114);
/// ```
pub fn events<R: BufRead>(reader: R) -> Events<R> {
    Events {
        lines: LogLines::new(reader),
        lanes: Lanes::new(),
        ready: VecDeque::new(),
        done: false,
        error: None,
    }
}

/// All OOM events of kernel log text (see [`events`]). Fails only when reading fails (the
/// events read before the failure are then lost: iterate [`events`] to keep them).
pub fn parse<R: BufRead>(reader: R) -> io::Result<Vec<OomEvent>> {
    events(reader).collect()
}

/// All OOM events of a byte slice (reading a slice cannot fail).
pub fn parse_bytes(bytes: &[u8]) -> Vec<OomEvent> {
    events(bytes).filter_map(Result::ok).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives its bytes, then fails (a gzip file cut short, a disk error).
    struct FailsAfter<'a>(&'a [u8]);

    impl Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut short"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// A read error comes after every event read before it, the open ones included (the
    /// parser keeps the last few open for late oom_reaper lines, and the last report may
    /// still be waiting for its kill line).
    #[test]
    fn a_read_error_comes_after_the_events_read_before_it() {
        let mut log = String::new();
        for pid in 1..=3 {
            log += &format!(
                "[  {pid}.0] Out of memory: Killed process {pid} (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n"
            );
        }
        // A fourth report cut off before its kill line.
        log += "[  4.0] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n";
        let got: Vec<io::Result<OomEvent>> =
            events(io::BufReader::new(FailsAfter(log.as_bytes()))).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        for (i, ev) in got[..3].iter().enumerate() {
            let ev = ev.as_ref().unwrap();
            assert_eq!(ev.victim.as_ref().unwrap().pid, i as i64 + 1);
        }
        let cut = got[3].as_ref().unwrap();
        assert!(cut.has_header && cut.victim.is_none());
        let e = got[4].as_ref().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // `parse` still fails as a whole.
        assert!(parse(io::BufReader::new(FailsAfter(log.as_bytes()))).is_err());
    }

    /// Raw /dev/kmsg records escape bytes outside printable ASCII: a name in UTF-8 and a
    /// record of several lines (Mem-Info's counters) are read decoded.
    #[test]
    fn kmsg_records_are_unescaped() {
        let log = b"4,100,7382000,-;hog invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0\n\
            4,101,7382010,-;CPU: 0 PID: 121 Comm: hog Not tainted 6.1.0 #1\n\
            6,102,7382020,-;Mem-Info:\n\
            6,103,7382030,-;active_anon:279 inactive_anon:24996 isolated_anon:0\\x0a active_file:395743 inactive_file:848017 isolated_file:0\\x0a free:1234 free_pcp:0 free_cma:0\n \
            SUBSYSTEM=x\n\
            3,105,7382050,-;Out of memory: Killed process 121 (\\xe3\\x83\\x86st) total-vm:380000kB, anon-rss:370000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:800kB oom_score_adj:0\n";
        let evs = parse_bytes(log);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        let ev = &evs[0];
        assert_eq!(
            ev.victim.as_ref().unwrap().comm.as_deref(),
            Some("\u{30c6}st")
        );
        assert_eq!(ev.memory.free_pages, Some(1234));
        assert_eq!(ev.memory.active_file_pages, Some(395743));
        assert_eq!(ev.memory.active_anon_pages, Some(279));
    }

    /// `dmesg -r` (and `/proc/kmsg`) lines: the priority taken off; a program's record
    /// (facility 1, `<12>`) is no kernel line.
    #[test]
    fn priority_prefixed_lines() {
        let log = b"<4>[    7.382101] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
            <12>[    7.383000] vmh: Out of memory: Killed process 666 (spoof) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n\
            <3>[    7.386359] Out of memory: Killed process 121 (hog) total-vm:380040kB, anon-rss:377984kB, file-rss:4kB, shmem-rss:708kB\n";
        let evs = parse_bytes(log);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert!(evs[0].has_header);
        assert_eq!(evs[0].time.monotonic_s, Some(7.382101));
        assert_eq!(evs[0].victim.as_ref().unwrap().pid, 121);
    }

    /// A central log of more machines than [`MAX_LANES`]: every machine's event comes out,
    /// named by its host, and no more lanes are kept than the bound.
    #[test]
    fn a_log_of_more_machines_than_lanes_keeps_each_event_and_bounded_memory() {
        let hosts = MAX_LANES + 904;
        let mut log = String::new();
        for h in 0..hosts {
            log += &format!(
                "Nov 30 18:00:01 node-{h} kernel: Out of memory: Killed process {} (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n",
                h + 100
            );
        }
        let mut evs = events(log.as_bytes());
        let mut got = Vec::new();
        let mut most = 0;
        while let Some(ev) = evs.next() {
            most = most.max(evs.lanes.all.len());
            got.push(ev.unwrap());
        }
        assert!(most <= MAX_LANES, "{most} lanes");
        assert_eq!(got.len(), hosts);
        got.sort_by_key(|e| e.victim.as_ref().unwrap().pid);
        for (h, ev) in got.iter().enumerate() {
            assert_eq!(ev.victim.as_ref().unwrap().pid, h as i64 + 100);
            assert_eq!(ev.host.as_deref(), Some(format!("node-{h}").as_str()));
        }
    }

    /// Lines that name no host before the first that does are that machine's (one report of a
    /// file that begins with dmesg text and goes on as syslog stays whole).
    #[test]
    fn lines_before_the_first_host_are_its_machines() {
        let log = b"[  3.1] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
            Nov 30 18:00:01 web-1 kernel: [  3.2] Out of memory: Killed process 114 (hog) total-vm:62600kB, anon-rss:60920kB, file-rss:4kB, shmem-rss:0kB\n";
        let evs = parse_bytes(log);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert!(evs[0].has_header);
        assert_eq!(evs[0].victim.as_ref().unwrap().pid, 114);
        assert_eq!(evs[0].host.as_deref(), Some("web-1"));
    }

    /// One machine's report cut off (the machine froze) while the others go on logging: it is
    /// closed after the unrelated lines a report of one machine would allow, so that the
    /// rest of the log is not read line by line, and it is still an event.
    #[test]
    fn a_report_cut_off_on_one_machine_does_not_keep_the_log_read_line_by_line() {
        let mut log = String::from(
            "Nov 30 18:00:01 web-1 kernel: hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n\
             Nov 30 18:00:01 web-1 kernel: CPU: 0 PID: 111 Comm: hog Not tainted 6.1.0 #1\n",
        );
        for i in 0..2000 {
            log += &format!("Nov 30 18:00:02 db-2 kernel: e1000e eth0: NIC Link is Up {i} Mbps\n");
        }
        for pid in 1..=5 {
            log += &format!(
                "Nov 30 18:00:03 db-2 kernel: Out of memory: Killed process {pid} (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB\n"
            );
        }
        let mut evs = events(log.as_bytes());
        let first = evs.next().unwrap().unwrap();
        assert_eq!(first.host.as_deref(), Some("db-2"));
        assert_eq!(evs.lanes.open, 0, "web-1's cut-off report is still open");
        let rest: Vec<OomEvent> = evs.map(Result::unwrap).collect();
        let cut = rest
            .iter()
            .find(|e| e.host.as_deref() == Some("web-1"))
            .unwrap();
        assert!(cut.has_header && cut.victim.is_none());
        assert_eq!(cut.invoker.as_ref().unwrap().pid, Some(111));
        assert_eq!(rest.len(), 5);
    }
}
