//! Kernel OOM reports: find them in kernel log text, parse them into events, explain them.
//! `oomguard explain`, and the library API that `doctor` and `drill` use.
//!
//! - [`events`] / [`parse`]: any byte stream (a `BufRead`) → [`OomEvent`]s in log order,
//!   streaming (bounded memory, no whole-file reads).
//! - [`source::read_kmsg_at`]: the kernel ring buffer now (`/dev/kmsg`, read non-blocking to
//!   its end).
//! - [`explain`]: recomputed badness ranking and human text for one event.
//!
//! The layers: [`prefix`] (line formats) → [`lines`] (logical lines, continuation joining,
//! keyword skipping) → [`parse`] (the per-invocation state machine) → [`event`] (the data).

pub mod event;
pub mod explain;
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
}

impl<R: Read> Events<R> {
    /// Reads until at least one event is final or the input ends.
    #[inline]
    fn advance(&mut self) -> io::Result<()> {
        while self.ready.is_empty() && !self.done {
            let skip = !self.parser.wants_all_lines();
            match self.lines.next_line(skip)? {
                Some(l) => {
                    self.parser.push(l.msg, &l.stamp);
                    if self.parser.has_ready() {
                        self.ready.extend(self.parser.take_ready());
                    }
                }
                None => {
                    self.done = true;
                    self.ready.extend(self.parser.finish());
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Events<R> {
    type Item = io::Result<OomEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.advance() {
            self.done = true;
            return Some(Err(e));
        }
        self.ready.pop_front().map(Ok)
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
    }
}

/// All OOM events of kernel log text (see [`events`]). Fails only when reading fails.
pub fn parse<R: BufRead>(reader: R) -> io::Result<Vec<OomEvent>> {
    events(reader).collect()
}

/// All OOM events of a byte slice (reading a slice cannot fail).
pub fn parse_bytes(bytes: &[u8]) -> Vec<OomEvent> {
    events(bytes).filter_map(Result::ok).collect()
}
