//! Streaming logical lines of a kernel log: physical lines split into prefix and message,
//! wrapped continuation lines re-joined, other programs' lines dropped. Memory stays bounded
//! (one buffer, lines longer than [`MAX_LINE`] are cut). While the parser does not need every
//! line, the reader jumps between lines holding an OOM keyword (a multi-pattern search over
//! the buffer), which keeps it near `grep` speed on long logs.

use std::io::{self, Read};
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

use super::prefix::{Stamp, split};

/// Longest line kept; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes asked of the reader at a time: small enough that what was read is still in the CPU's
/// cache when it is searched and split.
const CHUNK: usize = 64 * 1024;
/// Most wrapped continuation lines joined to one message.
const MAX_JOINS: usize = 4;
/// A wrapped line at most this wide was wrapped at a word boundary (mail clients), so the
/// continuation is joined with a space; a wider one was cut at a terminal edge mid-word.
const WORD_WRAP_WIDTH: usize = 78;

/// Every line that can start, end or extend an OOM report outside its middle part. (A
/// `dump_header` frame matters only after a `PID:` line, when every line is read anyway.)
const KEYWORDS: [&str; 15] = [
    "oom-killer",
    "Killed process",
    "Kill process",
    "kill process",
    "oom-kill:",
    "oom_reaper",
    "Task in ",
    "Tasks in ",
    "Memory limit reached",
    "]   uid",
    "Kernel panic",
    "killable process",
    "PID: ",
    "Pid: ",
    "is already exiting",
];

/// Finds the next keyword: SIMD Teddy where the CPU has it, else an Aho-Corasick automaton.
enum Finder {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Finder {
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self {
            Finder::Packed(s) => s.find(hay).map(|m| m.start()),
            Finder::Automaton(a) => a.find(hay).map(|m| m.start()),
        }
    }
}

fn keywords() -> &'static Finder {
    static F: OnceLock<Finder> = OnceLock::new();
    F.get_or_init(|| {
        // Fat Teddy (AVX2) gives each keyword a bucket of its own, so ordinary text rarely
        // needs a verification: about twice the speed of the default (Slim, shared buckets)
        // on kernel logs. Without AVX2: the default choice, then the automaton.
        let packed = |fat: Option<bool>| {
            let mut c = aho_corasick::packed::Config::new();
            c.only_teddy_fat(fat);
            let mut b = c.builder();
            b.extend(KEYWORDS);
            b.build()
        };
        match packed(Some(true)).or_else(|| packed(None)) {
            Some(s) => Finder::Packed(s),
            None => Finder::Automaton(AhoCorasick::new(KEYWORDS).expect("static patterns")),
        }
    })
}

/// One kernel message: text without prefix, and its stamp.
#[derive(Debug)]
pub struct Logical<'a> {
    pub msg: &'a [u8],
    pub stamp: Stamp<'a>,
    /// The text holds newlines (a /dev/kmsg record of several lines, its `\x0a` decoded):
    /// each is a line of its own.
    pub lines: bool,
    /// The machine that logged it (syslog's and the journal's host), when the line names one.
    pub host: Option<&'a [u8]>,
}

/// Reads logical kernel lines from any byte stream.
pub struct LogLines<R> {
    reader: R,
    /// Allocated and zeroed once (grown only for a line longer than what is left of it);
    /// `buf[..end]` holds the input not yet consumed from `pos` on.
    buf: Vec<u8>,
    end: usize,
    pos: usize,
    eof: bool,
    tagged: bool,
    joined: Vec<u8>,
    /// The message, wall-clock time and host of a journal record in JSON
    /// ([`super::journal`]).
    journal: super::journal::Texts,
    /// The prefix split of the line at `pos` and its end and next start (as [`Self::line_at`]
    /// gives them), when already computed.
    peek: Option<(Off, usize, usize)>,
    /// A read that failed while looking past the line just given (for its continuation
    /// lines): given at the next call, so that the line is not lost.
    error: Option<io::Error>,
    /// `pos` is in the rest of a line cut at [`MAX_LINE`]: it is dropped up to the next
    /// newline, never read as lines of its own (the rest of a long message is anyone's text).
    cut: bool,
}

impl<R: Read> LogLines<R> {
    pub fn new(reader: R) -> Self {
        LogLines {
            reader,
            buf: Vec::new(),
            end: 0,
            pos: 0,
            eof: false,
            tagged: false,
            joined: Vec::new(),
            journal: Default::default(),
            peek: None,
            error: None,
            cut: false,
        }
    }

    /// Drops consumed bytes and reads more. False at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let old = self.end;
        if self.buf.len() < old + CHUNK {
            self.buf.resize(old + CHUNK, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[old..old + CHUNK]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end = old + n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.eof = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the rest of a line cut at [`MAX_LINE`], through its newline. False at end of
    /// input.
    fn drop_cut_rest(&mut self) -> io::Result<bool> {
        loop {
            let hay = &self.buf[self.pos..self.end];
            if let Some(nl) = memchr::memchr(b'\n', hay) {
                self.pos += nl + 1;
                self.cut = false;
                self.peek = None;
                return Ok(true);
            }
            self.pos = self.end;
            if !self.fill()? {
                self.cut = false;
                return Ok(false);
            }
        }
    }

    /// End (exclusive, without newline) and next start of the physical line at `from`
    /// (relative to `pos`), reading more input as needed. None at end of input. A line
    /// longer than [`MAX_LINE`] ends there, and its next start is that end too: the caller
    /// drops the rest ([`Self::cut`]).
    fn line_at(&mut self, from: usize) -> io::Result<Option<(usize, usize)>> {
        loop {
            let start = self.pos + from;
            let avail = &self.buf[start.min(self.end)..self.end];
            if let Some(nl) = memchr::memchr(b'\n', &avail[..avail.len().min(MAX_LINE)]) {
                return Ok(Some((from + nl, from + nl + 1)));
            }
            if avail.len() >= MAX_LINE {
                return Ok(Some((from + MAX_LINE, from + MAX_LINE)));
            }
            if !self.fill()? {
                let avail = self.end.saturating_sub(self.pos + from);
                if avail == 0 {
                    return Ok(None);
                }
                return Ok(Some((from + avail, from + avail)));
            }
        }
    }

    fn text(&self, from: usize, end: usize) -> &[u8] {
        let s = &self.buf[self.pos + from..self.pos + end];
        s.strip_suffix(b"\r").unwrap_or(s)
    }

    /// With `skip`, moves `pos` to the start of the next line holding a keyword (or of the
    /// prefixed line it continues). False at end of input.
    fn skip_to_candidate(&mut self) -> io::Result<bool> {
        loop {
            let hay = &self.buf[self.pos..self.end];
            if let Some(m) = keywords().find(hay) {
                let mut start = memchr::memrchr(b'\n', &hay[..m]).map_or(0, |i| i + 1);
                if m - start >= MAX_LINE {
                    // In the part of an over-long line that is cut off: not a line of its own.
                    self.pos += m;
                    self.cut = true;
                    if !self.drop_cut_rest()? {
                        return Ok(false);
                    }
                    continue;
                }
                // A keyword on a wrapped continuation line: start at the line it continues.
                let line_end = memchr::memchr(b'\n', &hay[m..]).map_or(hay.len(), |e| m + e);
                for _ in 0..MAX_JOINS {
                    if start == 0 || split(&hay[start..line_end], self.tagged).has_prefix {
                        break;
                    }
                    let prev = memchr::memrchr(b'\n', &hay[..start - 1]).map_or(0, |i| i + 1);
                    if split(&hay[prev..start - 1], self.tagged).has_prefix {
                        start = prev;
                        break;
                    }
                    start = prev;
                }
                self.pos += start;
                return Ok(true);
            }
            // Keep only the unfinished last line (a keyword may complete in it). One longer
            // than MAX_LINE is cut there and its first MAX_LINE bytes held no keyword: the
            // rest is dropped, so memory stays bounded and each byte is searched a bounded
            // number of times (linear time).
            let keep = memchr::memrchr(b'\n', hay).map_or(0, |i| i + 1);
            if hay.len() - keep >= MAX_LINE {
                self.pos = self.end;
                self.cut = true;
                if !self.drop_cut_rest()? {
                    return Ok(false);
                }
                continue;
            }
            self.pos += keep;
            if !self.fill()? {
                return Ok(self.pos < self.end);
            }
        }
    }

    /// The next kernel message. With `skip`, lines without an OOM keyword may be skipped.
    #[inline]
    pub fn next_line(&mut self, skip: bool) -> io::Result<Option<Logical<'_>>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        loop {
            if self.cut && !self.drop_cut_rest()? {
                return Ok(None);
            }
            if skip {
                let before = self.pos;
                if !self.skip_to_candidate()? {
                    return Ok(None);
                }
                if self.pos != before {
                    self.peek = None;
                }
            }
            let (first, end0, mut next) = match self.peek.take() {
                Some(p) => p,
                None => {
                    let Some((end0, next)) = self.line_at(0)? else {
                        return Ok(None);
                    };
                    (offsets(self.text(0, end0), self.tagged), end0, next)
                }
            };
            // Cut at MAX_LINE (not at a newline, nor at the end of input): the rest is dropped.
            let cut_here = next == end0 && next == MAX_LINE;
            self.tagged |= first.tagged;
            let mut joins: Vec<(usize, usize, bool)> = Vec::new();
            let mut prev_width = end0;
            let mut peek = None;
            if first.has_prefix && !cut_here {
                for _ in 0..MAX_JOINS {
                    let (e, n) = match self.line_at(next) {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(err) => {
                            self.error = Some(err);
                            break;
                        }
                    };
                    if e == n && e - next == MAX_LINE {
                        break; // an over-long line: read (and cut) as a line of its own
                    }
                    let t = self.text(next, e);
                    if t.is_empty() {
                        break;
                    }
                    if first.kmsg {
                        if t[0] == b' ' {
                            next = n; // record metadata ("SUBSYSTEM=…")
                            continue;
                        }
                        break;
                    }
                    let o = offsets(t, self.tagged);
                    if o.has_prefix || !continues(t) {
                        peek = Some((o, e - next, n - next));
                        break;
                    }
                    joins.push((next, e, prev_width <= WORD_WRAP_WIDTH));
                    prev_width = e - next;
                    next = n;
                }
            }
            let base = self.pos;
            let line_len = self.text(0, end0).len();
            self.pos += next;
            self.peek = peek;
            self.cut = cut_here;
            if !first.kernel {
                continue;
            }
            if !first.has_prefix
                && self.buf.get(base) == Some(&b'{')
                && let Some(j) =
                    super::journal::record(&self.buf[base..base + line_len], &mut self.journal)
            {
                if !j.kernel {
                    continue;
                }
                let t = &self.journal;
                let wall = (!t.wall.is_empty()).then_some(&t.wall[..]);
                return Ok(Some(Logical {
                    msg: &t.msg,
                    stamp: Stamp {
                        raw: wall,
                        monotonic_s: j.monotonic_s,
                        wallclock: wall,
                    },
                    lines: j.lines,
                    host: (!t.host.is_empty()).then_some(&t.host[..]),
                }));
            }
            let whole = &self.buf[base..base + line_len];
            let stamp = first.stamp(whole);
            let host = first.host.and_then(|(a, b)| whole.get(a..b));
            let msg = &whole[first.msg..];
            if first.kmsg && memchr::memmem::find(msg, b"\\x").is_some() {
                // /dev/kmsg escapes bytes outside printable ASCII (`\xe3`, `\x0a`).
                self.joined.clear();
                let lines = super::prefix::kmsg_unescape(msg, &mut self.joined);
                return Ok(Some(Logical {
                    msg: &self.joined,
                    stamp,
                    lines,
                    host,
                }));
            }
            if joins.is_empty() {
                return Ok(Some(Logical {
                    msg,
                    stamp,
                    lines: false,
                    host,
                }));
            }
            self.joined.clear();
            self.joined.extend_from_slice(msg);
            for (s, e, space) in joins {
                let mut t = &self.buf[base + s..base + e];
                t = t.strip_suffix(b"\r").unwrap_or(t);
                if space && !self.joined.is_empty() {
                    self.joined.push(b' ');
                }
                self.joined.extend_from_slice(t);
                if self.joined.len() > MAX_LINE {
                    break;
                }
            }
            return Ok(Some(Logical {
                msg: &self.joined,
                stamp,
                lines: false,
                host,
            }));
        }
    }
}

/// A [`Split`] as offsets into its line, so it can be kept while the buffer moves.
#[derive(Debug, Clone, Copy)]
struct Off {
    msg: usize,
    raw: Option<(usize, usize)>,
    wall: Option<(usize, usize)>,
    mono: Option<f64>,
    kernel: bool,
    has_prefix: bool,
    kmsg: bool,
    tagged: bool,
    host: Option<(usize, usize)>,
}

impl Off {
    fn stamp<'a>(&self, line: &'a [u8]) -> Stamp<'a> {
        let at = |r: Option<(usize, usize)>| r.and_then(|(a, b)| line.get(a..b));
        Stamp {
            raw: at(self.raw),
            monotonic_s: self.mono,
            wallclock: at(self.wall),
        }
    }
}

fn offsets(line: &[u8], tagged: bool) -> Off {
    let s = split(line, tagged);
    let base = line.as_ptr() as usize;
    let rel = |x: &[u8]| {
        let a = (x.as_ptr() as usize).saturating_sub(base);
        (a, a + x.len())
    };
    Off {
        msg: line.len() - s.msg.len(),
        raw: s.stamp.raw.map(rel),
        wall: s.stamp.wallclock.map(rel),
        mono: s.stamp.monotonic_s,
        kernel: s.kernel,
        has_prefix: s.has_prefix,
        kmsg: s.kmsg,
        tagged: s.tagged,
        host: s.host.map(rel),
    }
}

/// Whether an unprefixed line can be the wrapped rest of the line before: not an elision
/// mark a person left (`[...]`, `<trim>`, `...`, `(...snipped...)`).
fn continues(t: &[u8]) -> bool {
    !(t.starts_with(b"[") || t.starts_with(b"<") || t.starts_with(b"...") || t.starts_with(b"(..."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &[u8], skip: bool) -> Vec<Vec<u8>> {
        let mut r = LogLines::new(text);
        let mut out = Vec::new();
        while let Some(l) = r.next_line(skip).unwrap() {
            out.push(l.msg.to_vec());
        }
        out
    }

    /// A line longer than MAX_LINE is cut there; its rest is no line of its own, whether the
    /// reader skips between keywords or reads every line (a message of another program's
    /// cannot pass off its tail as a kernel line).
    #[test]
    fn the_rest_of_an_over_long_line_is_dropped() {
        let spoof = b"Out of memory: Killed process 666 (evil) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB";
        let real = b"[    2.0] Out of memory: Killed process 5 (hog) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB";
        for pad in [MAX_LINE, MAX_LINE + 1, MAX_LINE + 777, 3 * MAX_LINE + 5] {
            let mut text = b"[    1.0] ".to_vec();
            text.resize(pad, b'x');
            text.extend_from_slice(spoof);
            text.push(b'\n');
            text.extend_from_slice(real);
            text.push(b'\n');
            for skip in [true, false] {
                let got = messages(&text, skip);
                assert!(
                    got.iter().all(|m| m.len() <= MAX_LINE
                        && !m.windows(11).any(|w| w == b"process 666")),
                    "pad {pad}, skip {skip}: {:?}",
                    got.iter().map(|m| m.len()).collect::<Vec<_>>()
                );
                assert_eq!(
                    got.last().map(Vec::as_slice),
                    Some(&real[10..]),
                    "pad {pad}"
                );
            }
            let evs = crate::report::parse_bytes(&text);
            let pids: Vec<i64> = evs
                .iter()
                .filter_map(|e| e.victim.as_ref())
                .map(|v| v.pid)
                .collect();
            assert_eq!(pids, [5], "pad {pad}");
        }
        // Inside an open report (every line read) as well.
        let mut text = b"[    0.5] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n[    1.0] ".to_vec();
        let line_start = text.len() - 10;
        text.resize(line_start + MAX_LINE, b' ');
        text.extend_from_slice(spoof);
        text.push(b'\n');
        text.extend_from_slice(real);
        text.push(b'\n');
        let evs = crate::report::parse_bytes(&text);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert_eq!(evs[0].victim.as_ref().map(|v| v.pid), Some(5));
        // A line of exactly MAX_LINE bytes, then its newline: nothing is dropped after it.
        let mut text = b"[    1.0] ".to_vec();
        text.resize(MAX_LINE, b'x');
        text.push(b'\n');
        text.extend_from_slice(real);
        text.push(b'\n');
        for skip in [true, false] {
            assert_eq!(
                messages(&text, skip).last().map(Vec::as_slice),
                Some(&real[10..])
            );
        }
    }
}
