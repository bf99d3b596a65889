//! Reading an event log as it grows (`oomguard events --follow`, like `tail -F`): the complete
//! lines appended since the last read, as typed records. Survives the file being created
//! later, truncated, or replaced (logrotate).
//!
//! The file is read through a descriptor held open between reads, not opened by its path each
//! time: after a rotation (the file renamed away, a new one made at the path) the records the
//! daemon appended to the old file after the last read, before it reopened the path, are
//! still read from the old file before the new one. The switch to the new file waits until it
//! holds something: the daemon writes there only once it has reopened the path, and so wrote
//! its last record into the old one before.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::event::Record;
use super::eventlog::{Unparsed, parse};

/// At most this much of the file per [`Tail::read`]: a log of gigabytes is read in parts
/// (`Batch::more`), so reading it costs this buffer, not the file's size.
pub const CHUNK: u64 = 1 << 20;

/// The longest line kept while its newline has not come: no record is anywhere near this
/// long (a command line is cut at 64 KiB). A longer line is no record; it is skipped up to its
/// newline and counted as a line that is not one, so a line without end costs a reader
/// bounded memory, not the file's size.
pub const MAX_LINE: usize = 4 << 20;

/// A reader that remembers how far it has read.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    /// The file being read, held open across reads, and its (device, inode).
    file: Option<(File, (u64, u64))>,
    /// Bytes of `file` read so far (complete lines and `pending`).
    offset: u64,
    /// Complete lines read so far (for the line numbers in warnings).
    lines_read: usize,
    /// A line read without its newline yet.
    pending: Vec<u8>,
    /// The line being read was longer than [`MAX_LINE`]: skipped up to its newline.
    skipping: bool,
}

/// What one read found.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records of the complete lines read.
    pub records: Vec<Record>,
    /// The lines that are not event records.
    pub unparsed: Unparsed,
    /// Whether the file was replaced or truncated (reading started over at its beginning).
    pub restarted: bool,
    /// The file holds more than this read took ([`CHUNK`]): read again at once.
    pub more: bool,
}

fn ino_of(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Tail {
    /// A reader at the start of `path` (which need not exist yet).
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            file: None,
            offset: 0,
            lines_read: 0,
            pending: Vec::new(),
            skipping: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a line without its newline is waiting (a record being written, or a torn one).
    pub fn has_partial_line(&self) -> bool {
        !self.pending.is_empty() || self.skipping
    }

    /// Reads what was appended since the last read. A file that does not exist (yet) reads as
    /// nothing. Errors: the file exists but cannot be read.
    pub fn read(&mut self) -> std::io::Result<Batch> {
        let mut batch = Batch::default();
        if self.file.is_none() && !self.open_path()? {
            return Ok(batch);
        }
        let at_end = self.read_held(&mut batch)?;
        if at_end && self.replacement() {
            // Drained: the old file's last records are in this batch. On with the new one.
            if self.has_partial_line() {
                let n = self.lines_read + 1;
                batch.unparsed.add(n, || {
                    "a torn last line in the file before it was replaced".to_string()
                });
            }
            self.reset();
            batch.restarted = true;
            if self.open_path()? {
                self.read_held(&mut batch)?;
            }
        }
        Ok(batch)
    }

    /// Opens the path. Returns whether a file is held now (false: there is none yet). Errors:
    /// it cannot be opened, or it is not a regular file (opened without blocking: a FIFO with
    /// no writer must not hold the reader up for ever).
    fn open_path(&mut self) -> std::io::Result<bool> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let m = f.metadata()?;
        if !m.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (an event log is one)",
            ));
        }
        self.file = Some((f, ino_of(&m)));
        Ok(true)
    }

    /// Starts over at the beginning of a file.
    fn reset(&mut self) {
        self.file = None;
        self.offset = 0;
        self.lines_read = 0;
        self.pending.clear();
        self.skipping = false;
    }

    /// The file the path names now, when it is another one than the one held and already holds
    /// something (the writer has moved on to it). A path that names nothing (the file removed,
    /// or renamed and not made again yet) keeps the held file.
    fn replacement(&self) -> bool {
        let Some((_, held)) = self.file.as_ref() else {
            return false;
        };
        std::fs::metadata(&self.path).is_ok_and(|m| ino_of(&m) != *held && m.len() > 0)
    }

    /// Reads the held file from where the last read stopped, at most [`CHUNK`]. Returns whether
    /// it is now read to its end.
    fn read_held(&mut self, batch: &mut Batch) -> std::io::Result<bool> {
        let Some((f, _)) = self.file.as_mut() else {
            return Ok(true);
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            // Truncated: start over at its beginning.
            self.offset = 0;
            self.lines_read = 0;
            self.pending.clear();
            self.skipping = false;
            batch.restarted = true;
        }
        if len <= self.offset {
            return Ok(true);
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let want = (len - self.offset).min(CHUNK);
        let mut buf = Vec::with_capacity(want as usize);
        f.take(want).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        let more = !buf.is_empty() && self.offset < len;
        batch.more |= more;
        self.take_lines(&buf, batch);
        Ok(!more)
    }

    /// Adds `buf` to the line being read and parses the lines it completes.
    fn take_lines(&mut self, mut buf: &[u8], batch: &mut Batch) {
        if self.skipping {
            // The rest of an over-long line, up to its newline.
            match buf.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.skipping = false;
                    self.lines_read += 1;
                    buf = &buf[end + 1..];
                }
                None => return,
            }
        }
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = self.pending.drain(..=end).collect();
            let (recs, bad) = parse(&complete, self.lines_read + 1);
            self.lines_read += complete.iter().filter(|&&b| b == b'\n').count();
            batch.records.extend(recs);
            batch.unparsed.absorb(bad);
        }
        if self.pending.len() > MAX_LINE {
            let n = self.lines_read + 1;
            batch.unparsed.add(n, || {
                format!("a line longer than {MAX_LINE} bytes, not an event record")
            });
            self.pending = Vec::new();
            self.skipping = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LINE: &str = r#"{"time":"2026-11-30T18:00:00.000+00:00","action":"warn","scope":"system","host":"h","state":"high","used_pct":91.0,"level_pct":90.0,"clear_pct":85.0,"available_kb":1,"total_kb":10}"#;

    /// A log larger than a read's part comes in parts, every line once, none cut.
    #[test]
    fn a_large_log_is_read_in_parts_with_every_line_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let n = (CHUNK as usize * 5 / 2) / (LINE.len() + 1) + 3;
        let mut f = std::fs::File::create(&p).unwrap();
        for _ in 0..n {
            writeln!(f, "{LINE}").unwrap();
        }
        writeln!(f, "not json").unwrap();
        let mut t = Tail::new(&p);
        let (mut recs, mut parts, mut bad) = (0, 0, Unparsed::default());
        loop {
            let b = t.read().unwrap();
            recs += b.records.len();
            bad.absorb(b.unparsed);
            parts += 1;
            if !b.more {
                break;
            }
        }
        assert_eq!(recs, n);
        assert_eq!(parts, 3);
        assert_eq!((bad.count, bad.lines.clone()), (1, vec![n + 1]));
        assert!(!t.has_partial_line());
    }

    #[test]
    fn reads_complete_lines_as_they_come_and_starts_over_after_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut t = Tail::new(&p);
        assert!(t.read().unwrap().records.is_empty(), "no file yet");
        let mut f = std::fs::File::create(&p).unwrap();
        write!(f, "{LINE}\n{}", &LINE[..20]).unwrap();
        let b = t.read().unwrap();
        assert_eq!(b.records.len(), 1);
        assert!(t.has_partial_line());
        writeln!(f, "{}", &LINE[20..]).unwrap();
        let b = t.read().unwrap();
        assert_eq!(b.records.len(), 1, "the rest of the split line");
        assert!(!t.has_partial_line());
        assert!(t.read().unwrap().records.is_empty());
        // Truncated and rewritten (smaller): read from the start again.
        std::fs::write(&p, "garbage\n").unwrap();
        let b = t.read().unwrap();
        assert!(b.restarted);
        assert_eq!(b.unparsed.count, 1);
        assert_eq!(b.unparsed.lines, [1]);
    }
    /// Rotation (the file renamed away and a new one made): what was appended to the old file
    /// after the last read is read before the new file, none lost.
    #[test]
    fn lines_appended_to_a_rotated_file_before_the_switch_are_not_lost() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let rotated = d.path().join("events.jsonl.1");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "{LINE}").unwrap();
        let mut t = Tail::new(&p);
        assert_eq!(t.read().unwrap().records.len(), 1);
        // The daemon writes one more record, half of another, then logrotate moves the file
        // and the daemon, reopening, finishes nothing there and writes on into a new one.
        write!(f, "{}\n{}", LINE.replace("91.0", "92.0"), &LINE[..30]).unwrap();
        std::fs::rename(&p, &rotated).unwrap();
        writeln!(f, "{}", &LINE[30..]).unwrap();
        drop(f);
        std::fs::write(&p, format!("{}\n", LINE.replace("91.0", "93.0"))).unwrap();
        let mut used = Vec::new();
        loop {
            let b = t.read().unwrap();
            assert_eq!(b.unparsed.count, 0, "{:?}", b.unparsed);
            used.extend(b.records.iter().map(|r| match &r.event {
                crate::record::event::Event::Warn(w) => w.used_pct,
                e => panic!("{e:?}"),
            }));
            if !b.more {
                break;
            }
        }
        assert_eq!(used, [92.0, 91.0, 93.0]);
        assert!(!t.has_partial_line());
        // And on from the new file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(format!("{LINE}\n").as_bytes())
            .unwrap();
        assert_eq!(t.read().unwrap().records.len(), 1);
    }

    /// A line that never ends costs bounded memory: it is skipped up to its newline and
    /// counted once, and the records after it are read.
    #[test]
    fn an_endless_line_is_skipped_with_bounded_memory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "{LINE}").unwrap();
        let junk = vec![b'x'; CHUNK as usize];
        for _ in 0..(MAX_LINE / CHUNK as usize) * 2 + 1 {
            f.write_all(&junk).unwrap();
        }
        let mut t = Tail::new(&p);
        let (mut recs, mut bad) = (0, Unparsed::default());
        loop {
            let b = t.read().unwrap();
            recs += b.records.len();
            bad.absorb(b.unparsed);
            assert!(
                t.pending.len() <= MAX_LINE + CHUNK as usize,
                "{}",
                t.pending.len()
            );
            if !b.more {
                break;
            }
        }
        assert_eq!(recs, 1);
        assert!(t.has_partial_line());
        assert_eq!((bad.count, bad.lines.clone()), (1, vec![2]));
        // Its end, and a record after it (line 3).
        write!(f, "yyy\n{LINE}\n").unwrap();
        let b = t.read().unwrap();
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.unparsed.count, 0);
        assert!(!t.has_partial_line());
        writeln!(f, "garbage").unwrap();
        assert_eq!(t.read().unwrap().unparsed.lines, [4]);
    }

    /// A FIFO (or anything but a regular file) at the path is an error at once, not a read
    /// that waits for a writer for ever.
    #[test]
    fn a_fifo_is_an_error_not_a_wait() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("events.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path in a fresh temporary directory.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = Tail::new(&fifo).read().unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = Tail::new(d.path()).read().unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
