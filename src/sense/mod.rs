//! Sense: read the machine. Every reader is rooted at a configurable path (`/` in production,
//! a fixture tree in tests); every parser takes bytes and allocates nothing per call.
pub mod breath;
pub mod btf;
pub mod cgroup;
pub mod details;
pub mod floor;
pub mod kmsg;
pub mod mem;
pub mod meminfo;
pub mod procevents;
pub mod procs;
pub mod psi;
pub mod scope;
pub mod tasks;
pub mod users;
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

/// The most any reader keeps of one file (64 MiB: a `cgroup.procs` listing every possible PID
/// is about 32 MiB). Bytes past it are not read.
pub const MAX_FILE: usize = 64 << 20;

/// Reads a whole file into `buf` (cleared first), returning the bytes read: one `open`, reads
/// until end of file, one `close`. Kernel files that list many records (`cgroup.procs`,
/// `/proc/vmstat`, `/proc/PID/maps`) hand out about one page per `read`, so a short read is
/// not the end; only a read of 0 bytes is. At most [`MAX_FILE`] bytes are kept.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    buf.clear();
    read_fd(&fd, buf, Until::Eof, MAX_FILE, false)
}

/// When a reader has the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// A read returned 0 bytes: the only end a file has in general.
    Eof,
    /// A read returned less than asked. True only of files the kernel generates whole, as one
    /// record, on the first read (`single_open`: `/proc/PID/stat`, `statm`, `status`,
    /// `oom_score_adj`): for those it saves one syscall per file per process per scan.
    ShortRead,
    /// End of file, or a complete line starting with this key (`/proc/vmstat`'s `oom_kill `,
    /// within its first page): the rest of the file is not read, which would cost the kernel
    /// a second generation of the whole file.
    Line(&'static [u8]),
}

/// True when `buf` holds a whole line that starts with `key`.
fn has_line(buf: &[u8], key: &[u8]) -> bool {
    memchr::memmem::find_iter(buf, key).any(|i| {
        (i == 0 || buf[i - 1] == b'\n') && memchr::memchr(b'\n', &buf[i + key.len()..]).is_some()
    })
}

/// Appends what `fd` holds to `buf`, up to `max` bytes in all, returning `buf.len()`.
/// `positioned`: `pread` from offset `buf.len()` (a kept fd read again from the start) instead
/// of `read`. Interrupted reads are retried.
pub(crate) fn read_fd(
    fd: &std::os::fd::OwnedFd,
    buf: &mut Vec<u8>,
    until: Until,
    max: usize,
    positioned: bool,
) -> std::io::Result<usize> {
    breath::tick();
    while buf.len() < max {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let offset = buf.len() as u64;
        let want = (buf.capacity() - buf.len()).min(max - buf.len());
        let spare = &mut buf.spare_capacity_mut()[..want];
        let res = if positioned {
            rustix::io::pread(fd, spare, offset).map(|(init, _)| init.len())
        } else {
            rustix::io::read(fd, spare).map(|(init, _)| init.len())
        };
        let got = match res {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        // SAFETY: the read initialised `got` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + got) };
        if got == 0 || (until == Until::ShortRead && got < want) {
            break;
        }
        if let Until::Line(key) = until
            && has_line(buf, key)
        {
            break;
        }
    }
    Ok(buf.len())
}

/// A file read again and again (`/proc/meminfo`, `/proc/vmstat`, pressure files): opened once,
/// re-read with `pread` from offset 0 until end of file (`/proc/vmstat` is a list of records the
/// kernel hands out a page at a time), so a wake-up costs two syscalls per file.
///
/// A file the kernel generates whole on every read from offset 0 (`single_open`: meminfo,
/// pressure) is [`KeptFile::whole`]: a read that comes back short is all of it, one syscall.
/// A reader that needs one line of a record list reads only to it ([`KeptFile::read_to_line`]:
/// the kernel OOM counter in `/proc/vmstat`), also one syscall.
#[derive(Debug)]
pub struct KeptFile {
    path: PathBuf,
    fd: Option<std::os::fd::OwnedFd>,
    until: Until,
}

impl KeptFile {
    pub fn new(path: PathBuf) -> KeptFile {
        KeptFile {
            path,
            fd: None,
            until: Until::Eof,
        }
    }
    /// A file generated whole by each read (see the type): a short read ends it.
    pub fn whole(path: PathBuf) -> KeptFile {
        KeptFile {
            until: Until::ShortRead,
            ..KeptFile::new(path)
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Reads the whole file into `buf` (cleared first); reopens once if the kept fd fails.
    pub fn read_into(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let until = self.until;
        self.read_until(buf, until)
    }

    /// Reads into `buf` (cleared first) until the line starting with `key` is whole, or to the
    /// end of the file (see [`Until::Line`]).
    pub fn read_to_line(
        &mut self,
        buf: &mut Vec<u8>,
        key: &'static [u8],
    ) -> std::io::Result<usize> {
        self.read_until(buf, Until::Line(key))
    }

    fn read_until(&mut self, buf: &mut Vec<u8>, until: Until) -> std::io::Result<usize> {
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
            match read_fd(
                self.fd.as_ref().expect("opened above"),
                buf,
                until,
                MAX_FILE,
                true,
            ) {
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

/// Test fixtures that read like kernel files listing many records.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// Runs `f` on a thread without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (capabilities are
    /// per thread), so that file modes apply to it as to an unprivileged reader, root or not.
    pub(crate) fn without_dac_override<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
                let mut caps = capabilities(None).unwrap();
                caps.effective -= CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH;
                set_capabilities(None, caps).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Makes `path` a FIFO and serves `content` through it `chunk` bytes at a time: each chunk
    /// is written only once the reader has taken the previous one, so every `read` returns at
    /// most one chunk, less than it asked for, as `cgroup.procs` or `/proc/vmstat` hand out one
    /// page per read. Closing after the last chunk is the end of file. The thread gives up
    /// after 20 s without a reader.
    pub(crate) fn chunked(
        path: &Path,
        content: Vec<u8>,
        chunk: usize,
    ) -> JoinHandle<std::io::Result<()>> {
        use rustix::fs::{Mode, OFlags};
        rustix::fs::mkfifoat(rustix::fs::CWD, path, Mode::from_raw_mode(0o600))
            .expect("mkfifo for the fixture");
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let fd = loop {
                match rustix::fs::open(
                    &path,
                    OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => break fd,
                    Err(rustix::io::Errno::NXIO) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
            for c in content.chunks(chunk) {
                match rustix::io::write(&fd, c) {
                    Ok(_) => {}
                    // The reader closed its end: it read all it wanted.
                    Err(rustix::io::Errno::PIPE) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                while rustix::io::ioctl_fionread(&fd)? > 0 {
                    // The reader closed its end (it read all it wanted): done.
                    let mut pfd = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::OUT,
                    )];
                    let zero = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    rustix::event::poll(&mut pfd, Some(&zero))?;
                    if pfd[0].revents().contains(rustix::event::PollFlags::ERR) {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(std::io::Error::other("the reader stopped reading"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_counts_only_whole_and_at_a_line_start() {
        assert!(has_line(b"a 1\noom_kill 3\n", b"oom_kill "));
        assert!(has_line(b"oom_kill 3\nb 2", b"oom_kill "));
        assert!(
            !has_line(b"a 1\noom_kill 3", b"oom_kill "),
            "no newline yet: may be cut"
        );
        assert!(!has_line(b"a 1\nxoom_kill 3\n", b"oom_kill "));
        assert!(has_line(b"xoom_kill 1\noom_kill 2\n", b"oom_kill "));
    }

    /// `/proc/vmstat` read to its `oom_kill` line (one syscall) gives the counter a whole read
    /// gives, and stops there.
    #[test]
    fn vmstat_read_to_the_oom_kill_line_gives_the_same_counter() {
        let mut kept = KeptFile::new("/proc/vmstat".into());
        let (mut part, mut whole) = (Vec::new(), Vec::new());
        kept.read_to_line(&mut part, b"oom_kill ").unwrap();
        kept.read_into(&mut whole).unwrap();
        let (p, w) = (vmstat::Vmstat::parse(&part), vmstat::Vmstat::parse(&whole));
        assert!(
            w.oom_kill.is_some(),
            "this kernel's /proc/vmstat has oom_kill"
        );
        assert_eq!(p.oom_kill, w.oom_kill);
        assert!(part.len() <= whole.len());
    }

    /// A file handed out in short reads is read to its end, not to the first short read.
    #[test]
    fn read_into_reads_past_short_reads_to_the_end() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("procs");
        let content: Vec<u8> = (100_000..104_000)
            .flat_map(|p| format!("{p}\n").into_bytes())
            .collect();
        let server = fixture::chunked(&path, content.clone(), 1000);
        let mut buf = Vec::new();
        let n = read_into(&path, &mut buf).unwrap();
        server.join().unwrap().unwrap();
        assert_eq!(n, content.len());
        assert!(
            buf == content,
            "read {} of {} bytes",
            buf.len(),
            content.len()
        );
    }

    #[test]
    fn reads_stop_at_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("big");
        std::fs::write(&path, vec![b'x'; 100_000]).unwrap();
        let fd =
            rustix::fs::open(&path, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            read_fd(&fd, &mut buf, Until::Eof, 10_000, false).unwrap(),
            10_000
        );
        assert_eq!(buf.len(), 10_000);
    }

    /// A kept file is re-read whole from the start each time, also when the kernel hands it out
    /// a page per read: `/proc/self/maps` with 300 mappings of this test's own is ~25 KiB.
    #[test]
    fn kept_file_reads_a_many_page_kernel_file_whole_every_time() {
        let page = rustix::param::page_size();
        let n = 600;
        // SAFETY: a fresh anonymous mapping this test owns; only its protections change and it
        // is unmapped at the end; nothing reads or writes it.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                n * page,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .unwrap();
        // Every other page readable: 600 mappings the kernel cannot merge.
        let ours: Vec<String> = (0..n)
            .step_by(2)
            .map(|i| {
                let at = base as usize + i * page;
                // SAFETY: `at` is a page inside the mapping made above.
                unsafe {
                    rustix::mm::mprotect(at as *mut _, page, rustix::mm::MprotectFlags::READ)
                }
                .unwrap();
                format!("{at:x}-")
            })
            .collect();
        let mut kept = KeptFile::new("/proc/self/maps".into());
        let mut buf = Vec::new();
        for _ in 0..2 {
            kept.read_into(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf).into_owned();
            let missing = ours
                .iter()
                .filter(|a| !text.lines().any(|l| l.starts_with(a.as_str())))
                .count();
            assert!(text.len() > 16 * 1024, "{} bytes", text.len());
            assert_eq!(
                missing,
                0,
                "{missing} of our mappings missing in {} bytes",
                text.len()
            );
            assert!(text.ends_with('\n'));
        }
        // SAFETY: the mapping made above, no longer used.
        unsafe { rustix::mm::munmap(base, n * page) }.unwrap();
    }
}
