//! Where kernel log text comes from: files (plain, gzip, xz, zstd — told by their magic
//! bytes), the kernel ring buffer (`/dev/kmsg`), the systemd journal (`journalctl -k`).
//! The parsers never do I/O; this module only opens and decompresses.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::event::OomEvent;

/// Failures to get at kernel log text.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot open {}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {what}")]
    Read { what: String, source: io::Error },
    #[error(
        "cannot read the kernel ring buffer {} (run as root, or give a log file such as /var/log/kern.log, or use --journalctl)",
        path.display()
    )]
    Kmsg { path: PathBuf, source: io::Error },
    #[error("cannot run journalctl: {0} (is systemd's journalctl installed?)")]
    Journalctl(String),
}

/// The ring buffer device.
pub const KMSG: &str = "/dev/kmsg";

/// Opens a log file, decompressing gzip, xz and zstd (recognised by content, not name).
pub fn open_file(path: &Path) -> Result<Box<dyn BufRead + Send>, ReportError> {
    let f = File::open(path).map_err(|source| ReportError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // As large as the reads of the line splitter (`lines::CHUNK`), so that its reads of a
    // plain file bypass this buffer instead of being copied through it.
    decompress(BufReader::with_capacity(64 * 1024, f)).map_err(|source| ReportError::Read {
        what: path.display().to_string(),
        source,
    })
}

/// Wraps a stream in the decompressor its first bytes call for.
pub fn decompress<R: BufRead + Send + 'static>(mut r: R) -> io::Result<Box<dyn BufRead + Send>> {
    let head = r.fill_buf()?;
    const BUF: usize = 64 * 1024;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(BufReader::with_capacity(
            BUF,
            flate2::bufread::MultiGzDecoder::new(r),
        )));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Ok(Box::new(BufReader::with_capacity(
            BUF,
            lzma_rust2::XzReader::new(r, true),
        )));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let z = ruzstd::decoding::StreamingDecoder::new(r)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        return Ok(Box::new(BufReader::with_capacity(BUF, z)));
    }
    Ok(Box::new(r))
}

/// When a log file was last written (its mtime) and, when it is an uncompressed regular file,
/// the wall-clock text of its last stamped line (read from its last 64 KiB, without moving
/// the file's offset): what places its year-less syslog dates ([`super::time::year_anchor`]).
/// `None` for what is no regular file (a pipe).
pub fn written_and_last_stamp(f: &File) -> Option<(std::time::SystemTime, Option<String>)> {
    use std::os::unix::fs::FileExt;
    const TAIL: u64 = 64 * 1024;
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let written = meta.modified().ok()?;
    let len = meta.len();
    let mut magic = [0u8; 6];
    let n = f.read_at(&mut magic, 0).unwrap_or(0);
    let magic = &magic[..n];
    let compressed = magic.starts_with(&[0x1f, 0x8b])
        || magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if compressed {
        return Some((written, None));
    }
    let start = len.saturating_sub(TAIL);
    let mut tail = vec![0u8; (len - start) as usize];
    let mut got = 0;
    while got < tail.len() {
        match f.read_at(&mut tail[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    tail.truncate(got);
    // The first line may be cut by the window: it is not read.
    let lines = tail.split(|&b| b == b'\n');
    let skip_first = usize::from(start > 0);
    let last = lines
        .skip(skip_first)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            super::prefix::split(l, false).stamp.wallclock
        })
        .map(|w| String::from_utf8_lossy(w).into_owned());
    Some((written, last))
}

/// `/dev/kmsg` opened for reading; `EPIPE` (records overwritten while reading) is skipped.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    /// Opens the ring buffer at its oldest record. `nonblocking`: a read at the end returns
    /// `WouldBlock` instead of waiting.
    pub fn open(path: &Path, nonblocking: bool) -> Result<Kmsg, ReportError> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        if nonblocking {
            o.custom_flags(libc::O_NONBLOCK);
        }
        let file = o.open(path).map_err(|source| ReportError::Kmsg {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Kmsg { file })
    }

    /// Moves to the end: only records logged from now on are read.
    pub fn seek_end(&mut self) -> io::Result<()> {
        use std::io::Seek;
        self.file.seek(io::SeekFrom::End(0)).map(|_| ())
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }
}

impl Read for Kmsg {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read(buf) {
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                r => return r,
            }
        }
    }
}

/// The OOM events in a /dev/kmsg device (or a file of its records) now, read without blocking
/// to its end. `/dev/kmsg` needs root or `kernel.dmesg_restrict=0`.
pub fn read_kmsg_at(path: &Path) -> Result<Vec<OomEvent>, ReportError> {
    let k = Kmsg::open(path, true)?;
    super::parse(BufReader::with_capacity(256 * 1024, k)).map_err(|source| ReportError::Read {
        what: path.display().to_string(),
        source,
    })
}

/// `journalctl -k -o short-monotonic` as a child whose stdout is the log.
pub struct Journal {
    pub child: Child,
}

impl Journal {
    pub fn spawn() -> Result<Journal, ReportError> {
        let child = Command::new("journalctl")
            .args(["-k", "-o", "short-monotonic", "--no-pager", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ReportError::Journalctl(e.to_string()))?;
        Ok(Journal { child })
    }

    /// Waits for journalctl; its failure (with what it printed on stderr) is an error.
    pub fn finish(mut self) -> Result<(), ReportError> {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self
            .child
            .wait()
            .map_err(|e| ReportError::Journalctl(e.to_string()))?;
        if status.success() {
            Ok(())
        } else {
            Err(ReportError::Journalctl(format!(
                "{status}: {}",
                err.trim().lines().next().unwrap_or("no message")
            )))
        }
    }
}

/// Follows `/dev/kmsg` from now on and calls `on_event` for each OOM event as it completes
/// (a report is complete when the next one starts or after `quiet` without new records).
/// Returns only on a read error or when `on_event` fails.
pub fn follow_kmsg(
    path: &Path,
    quiet: std::time::Duration,
    mut on_event: impl FnMut(OomEvent) -> io::Result<()>,
) -> Result<(), ReportError> {
    use rustix::event::{PollFd, PollFlags, poll};

    let mut k = Kmsg::open(path, true)?;
    k.seek_end().map_err(|source| ReportError::Kmsg {
        path: path.to_path_buf(),
        source,
    })?;
    let mut parser = super::parse::Parser::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut text = Vec::new();
    let mut last = std::time::Instant::now();
    let read_err = |source: io::Error| ReportError::Read {
        what: path.display().to_string(),
        source,
    };
    loop {
        match k.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                // One record: its text up to the first newline (the text's own newlines are
                // escaped), then the device's ` KEY=value` lines.
                let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or(&[]);
                let s = super::prefix::split(line, false);
                if s.kernel {
                    // Escaped bytes (`\xe3`, `\x0a`) decoded, each line of the record pushed.
                    text.clear();
                    super::prefix::kmsg_unescape(s.msg, &mut text);
                    for part in text.split(|&b| b == b'\n') {
                        parser.push(part, &s.stamp);
                    }
                }
                last = std::time::Instant::now();
                for ev in parser.take_ready() {
                    on_event(ev).map_err(read_err)?;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        }
        if last.elapsed() >= quiet {
            for ev in parser.flush() {
                on_event(ev).map_err(read_err)?;
            }
        }
        let fd = k.fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(read_err(e.into())),
        }
    }
}
