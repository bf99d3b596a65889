//! Sense: read the machine. Every reader is rooted at a configurable path (`/` in production,
//! a fixture tree in tests); every parser takes bytes and allocates nothing per call.
pub mod cgroup;
pub mod meminfo;
pub mod procevents;
pub mod procs;
pub mod psi;
pub mod scope;
pub mod vmstat;

use std::path::{Path, PathBuf};

/// The root that all OS paths are resolved against.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Default for Root {
    fn default() -> Self {
        Root(PathBuf::from("/"))
    }
}

impl Root {
    pub fn new(p: impl Into<PathBuf>) -> Root {
        Root(p.into())
    }
    /// `rel` (absolute or not) under the root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.0.join(rel)
    }
    pub fn as_path(&self) -> &Path {
        &self.0
    }
    pub fn is_real(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// Reads a whole small file into `buf` (cleared first), returning the bytes read. One `open`,
/// reads until a short read (proc and cgroup files are generated whole), one `close`.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    buf.clear();
    read_fd(&fd, buf, None)
}

fn read_fd(
    fd: &std::os::fd::OwnedFd,
    buf: &mut Vec<u8>,
    at_start: Option<()>,
) -> std::io::Result<usize> {
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let offset = buf.len() as u64;
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        let got = match at_start {
            Some(()) => rustix::io::pread(fd, spare, offset)?.0.len(),
            None => rustix::io::read(fd, spare)?.0.len(),
        };
        // SAFETY: the read initialised `got` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + got) };
        if got == 0 || got < room {
            return Ok(buf.len());
        }
    }
}

/// A file read again and again (`/proc/meminfo`, `/proc/vmstat`, pressure files): opened once,
/// re-read with `pread` from offset 0, so a wake-up costs one syscall per file.
#[derive(Debug)]
pub struct KeptFile {
    path: PathBuf,
    fd: Option<std::os::fd::OwnedFd>,
}

impl KeptFile {
    pub fn new(path: PathBuf) -> KeptFile {
        KeptFile { path, fd: None }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Reads the whole file into `buf` (cleared first); reopens once if the kept fd fails.
    pub fn read_into(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        use rustix::fs::{Mode, OFlags};
        for attempt in 0..2 {
            if self.fd.is_none() {
                self.fd = Some(rustix::fs::open(
                    &self.path,
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?);
            }
            buf.clear();
            match read_fd(self.fd.as_ref().expect("opened above"), buf, Some(())) {
                Ok(n) => return Ok(n),
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => self.fd = None,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// Parses the leading unsigned decimal of `s` (after spaces); `None` if there is none.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = trim_ascii_start(s);
    let mut v: u64 = 0;
    let mut any = false;
    for &b in s {
        if b.is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// Parses a leading signed decimal.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let s = trim_ascii_start(s);
    match s.first() {
        Some(b'-') => parse_u64(&s[1..])
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

fn trim_ascii_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}
