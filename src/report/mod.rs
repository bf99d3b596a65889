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

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

pub use event::{Chosen, Invoker, Kill, Kind, Memory, OomEvent, Reaped, Task, Time};
pub use source::ReportError;

use lines::LogLines;
use parse::Parser;

/// Iterator over the OOM events of a log, produced as the input is read. See [`events`].
pub struct Events<R> {
    lines: LogLines<R>,
    parser: Parser,
    ready: VecDeque<OomEvent>,
    done: bool,
    /// A read failed: given after the events the parser still held (a report cut short by
    /// the error is still an event).
    error: Option<io::Error>,
}

impl<R: Read> Events<R> {
    /// Events whose `tasks` holds no row (`Some(empty)` where the report had a task dump):
    /// for output that shows none (`explain --summary`), a report of tens of thousands of
    /// tasks then costs no memory.
    pub fn without_task_rows(mut self) -> Self {
        self.parser.drop_rows = true;
        self
    }

    /// Reads until at least one event is final or the input ends (or fails).
    #[inline]
    fn advance(&mut self) {
        while self.ready.is_empty() && !self.done {
            let skip = !self.parser.wants_all_lines();
            match self.lines.next_line(skip) {
                Ok(Some(l)) => {
                    if l.lines {
                        for part in l.msg.split(|&b| b == b'\n') {
                            self.parser.push(part, &l.stamp);
                        }
                    } else {
                        self.parser.push(l.msg, &l.stamp);
                    }
                    if self.parser.has_ready() {
                        self.ready.extend(self.parser.take_ready());
                    }
                }
                Ok(None) => {
                    self.done = true;
                    self.ready.extend(self.parser.finish());
                }
                Err(e) => {
                    self.done = true;
                    self.ready.extend(self.parser.finish());
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
        parser: Parser::new(),
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
}
