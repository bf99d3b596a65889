//! Reading an event log as it grows (`oomguard events --follow`, like `tail -F`): the complete
//! lines appended since the last read, as typed records. Survives the file being created
//! later, truncated, or replaced (logrotate).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::event::Record;
use super::eventlog::{Unparsed, parse};

/// At most this much of the file per [`Tail::read`]: a log of gigabytes is read in parts
/// (`Batch::more`), so reading it costs this buffer, not the file's size.
pub const CHUNK: u64 = 1 << 20;

/// A reader that remembers how far it has read.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    /// Bytes read so far (complete lines and `pending`).
    offset: u64,
    /// Complete lines read so far (for the line numbers in warnings).
    lines_read: usize,
    /// A line read without its newline yet.
    pending: Vec<u8>,
    /// The file read (device, inode), to notice a replacement.
    ino: Option<(u64, u64)>,
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
            offset: 0,
            lines_read: 0,
            pending: Vec::new(),
            ino: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a line without its newline is waiting (a record being written, or a torn one).
    pub fn has_partial_line(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Reads what was appended since the last read. A file that does not exist (yet) reads as
    /// nothing. Errors: the file exists but cannot be read.
    pub fn read(&mut self) -> std::io::Result<Batch> {
        let mut batch = Batch::default();
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(batch);
        };
        let ino = ino_of(&meta);
        if self.ino.is_some_and(|i| i != ino) || meta.len() < self.offset {
            // Replaced or truncated: start over at its beginning.
            self.offset = 0;
            self.lines_read = 0;
            self.pending.clear();
            batch.restarted = true;
        }
        self.ino = Some(ino);
        if meta.len() <= self.offset {
            return Ok(batch);
        }
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        let want = (meta.len() - self.offset).min(CHUNK);
        let mut buf = Vec::with_capacity(want as usize);
        f.take(want).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        batch.more = !buf.is_empty() && self.offset < meta.len();
        self.pending.extend_from_slice(&buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = self.pending.drain(..=end).collect();
            let (recs, bad) = parse(&complete, self.lines_read + 1);
            self.lines_read += complete.iter().filter(|&&b| b == b'\n').count();
            batch.records = recs;
            batch.unparsed = bad;
        }
        Ok(batch)
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
}
