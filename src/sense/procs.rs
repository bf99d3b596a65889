//! Processes under `ROOT/proc`: the hot-path reader the daemon scans with (a directory fd, one
//! reused buffer, `openat` + `read`, no allocation per process) and parsers for `stat`, `status`
//! and `oom_score_adj`. Slower, allocating readers (cmdline, exe, cgroup) serve the few
//! processes a decision names.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;

use super::tasks::{TaskIter, TaskIterError, TaskRow};
use super::{MAX_FILE, Root, Until, parse_i64, parse_u64, read_fd};

/// PF_KTHREAD in `/proc/PID/stat` field 9.
pub const PF_KTHREAD: u32 = 0x0020_0000;
/// PF_EXITING: the task is in do_exit(), its memory is being (or about to be) freed.
pub const PF_EXITING: u32 = 0x0000_0004;

/// A process name as the kernel keeps it (`comm`, 15 bytes for user tasks; longer for some
/// kernel threads), stored inline so a scan allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm {
    len: u8,
    bytes: [u8; 64],
}

impl Default for Comm {
    fn default() -> Self {
        Comm {
            len: 0,
            bytes: [0; 64],
        }
    }
}

impl Comm {
    pub fn new(b: &[u8]) -> Comm {
        let mut c = Comm::default();
        let n = b.len().min(64);
        c.bytes[..n].copy_from_slice(&b[..n]);
        c.len = n as u8;
        c
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    /// The name as text (invalid UTF-8 shown with replacement characters).
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
    /// The name as `&str` when it is valid UTF-8 (for regex matching without allocating).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

/// The fields of `/proc/PID/stat` the guard uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: Comm,
    pub state: u8,
    pub ppid: i32,
    pub flags: u32,
    /// Threads in the group (field 20).
    pub num_threads: u32,
    /// Start time in clock ticks since boot: with the PID, identifies the process.
    pub starttime: u64,
    /// Resident pages (`get_mm_rss`: anon + file + shmem), the counter the OOM killer reads.
    pub rss_pages: u64,
}

impl Stat {
    /// Parses `/proc/PID/stat`. The name may hold spaces and parentheses: it ends at the last
    /// `") "`.
    pub fn parse(text: &[u8]) -> Option<Stat> {
        let open = text.iter().position(|&b| b == b'(')?;
        let close = text.windows(2).rposition(|w| w == b") ")?;
        if close < open {
            return None;
        }
        let pid = parse_i64(&text[..open])? as i32;
        let comm = Comm::new(&text[open + 1..close]);
        let mut fields = text[close + 2..].split(|&b| b == b' ');
        let mut next = || fields.next();
        let state = *next()?.first()?;
        let ppid = parse_i64(next()?)? as i32;
        // pgrp session tty_nr tpgid
        for _ in 0..4 {
            next()?;
        }
        let flags = parse_u64(next()?)? as u32;
        // minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
        for _ in 0..10 {
            next()?;
        }
        let num_threads = parse_u64(next()?)? as u32;
        let _itrealvalue = next()?;
        let starttime = parse_u64(next()?)?;
        let _vsize = next()?;
        let rss_pages = parse_i64(next()?)?.max(0) as u64;
        Some(Stat {
            pid,
            comm,
            state,
            ppid,
            flags,
            num_threads,
            starttime,
            rss_pages,
        })
    }

    pub fn is_kthread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
    pub fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0
    }
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z' || self.state == b'X'
    }
    /// The main thread is a zombie, or on its way to being one (`PF_EXITING`: it may have let
    /// go of the address space already), while other threads of the process run on
    /// (`pthread_exit` from `main`, or a process ending thread by thread): `stat`, `statm` and
    /// `status` of `/proc/PID` are the main thread's and show no memory, while the process may
    /// still hold all of it ([`ProcReader::live_thread_status`] tells).
    pub fn main_thread_gone(&self) -> bool {
        (self.is_zombie() || self.is_exiting()) && !self.is_kthread() && self.num_threads > 1
    }
    /// Stopped (`T`, `t`) or dead (`Z`, `X`): it runs no more code, so it cannot fork.
    pub fn is_settled(&self) -> bool {
        matches!(self.state, b'T' | b't' | b'Z' | b'X' | b'x')
    }
}

/// The fields of `/proc/PID/status` the guard uses (kB unless named otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Real uid.
    pub uid: Option<u32>,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub rss_shmem_kb: u64,
    pub swap_kb: u64,
    /// `VmPTE` (page tables; 4.15+ all levels, before PTE pages only).
    pub pte_kb: u64,
    /// `VmPMD` (4.4–4.14 only).
    pub pmd_kb: u64,
    /// `Kthread: 1` (6.4+).
    pub kthread: bool,
    /// SIGKILL pending (per thread or shared): somebody is already killing it.
    pub sigkill_pending: bool,
    /// The process has an mm (a VmSize line); zombies and kernel threads have none.
    pub has_mm: bool,
    /// CAP_SYS_ADMIN (bit 21) is in its effective set (`CapEff`): kernels before 4.17 gave
    /// such a process a 3 % bonus in its badness.
    pub sys_admin: bool,
}

impl Status {
    pub fn parse(text: &[u8]) -> Status {
        let mut s = Status::default();
        for line in text.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (key, rest) = (&line[..colon], &line[colon + 1..]);
            match key {
                b"Uid" => s.uid = parse_u64(rest).map(|v| v as u32),
                b"VmSize" => s.has_mm = true,
                b"RssAnon" => s.rss_anon_kb = parse_u64(rest).unwrap_or(0),
                b"RssFile" => s.rss_file_kb = parse_u64(rest).unwrap_or(0),
                b"RssShmem" => s.rss_shmem_kb = parse_u64(rest).unwrap_or(0),
                b"VmSwap" => s.swap_kb = parse_u64(rest).unwrap_or(0),
                b"VmPTE" => s.pte_kb = parse_u64(rest).unwrap_or(0),
                b"VmPMD" => s.pmd_kb = parse_u64(rest).unwrap_or(0),
                b"Kthread" => s.kthread = parse_u64(rest) == Some(1),
                b"CapEff" => {
                    // Hex mask; CAP_SYS_ADMIN (21) is bit 1 of the sixth hex digit from the end.
                    let hex = rest.trim_ascii();
                    s.sys_admin = hex.len() >= 6
                        && (hex[hex.len() - 6] as char)
                            .to_digit(16)
                            .is_some_and(|v| v & 2 != 0);
                }
                b"SigPnd" | b"ShdPnd" => {
                    // Hex mask; SIGKILL (9) is bit 8.
                    let hex = rest.trim_ascii();
                    if hex.len() >= 3 {
                        let digit = hex[hex.len() - 3];
                        let v = (digit as char).to_digit(16).unwrap_or(0);
                        if v & 1 != 0 {
                            s.sigkill_pending = true;
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }
}

/// Why a per-process file could not be read, as its callers must tell apart (like procfs-core's
/// errors): a process that left is normal and silent, one the guard may not look at is skipped
/// and counted, anything else is worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProcError {
    /// The process exited (`ENOENT` on open, `ESRCH` on read): not an error, it left.
    #[error("process {pid} is gone")]
    Gone { pid: i32 },
    /// `EACCES`/`EPERM`: the guard may not read it (hidepid, another user's files without
    /// CAP_SYS_PTRACE, an LSM). Skip the process and count it.
    #[error(
        "reading /proc/{pid}/{file}: permission denied (run as root, or mount /proc without hidepid)"
    )]
    Denied { pid: i32, file: &'static str },
    /// Any other failure of open or read.
    #[error("reading /proc/{pid}/{file}: {errno}")]
    Io {
        pid: i32,
        file: &'static str,
        errno: Errno,
    },
    /// It was read but does not parse (a kernel format this build does not know).
    #[error("/proc/{pid}/{file} has an unexpected format")]
    Malformed { pid: i32, file: &'static str },
}

impl ProcError {
    /// Maps an errno from opening or reading `/proc/PID/FILE`.
    pub fn from_errno(pid: i32, file: &'static str, errno: Errno) -> ProcError {
        match errno {
            Errno::NOENT | Errno::SRCH => ProcError::Gone { pid },
            Errno::ACCESS | Errno::PERM => ProcError::Denied { pid, file },
            errno => ProcError::Io { pid, file, errno },
        }
    }

    /// The same from a `std::io::Error` (by its errno; one without is `EIO`).
    pub fn from_io(pid: i32, file: &'static str, e: &std::io::Error) -> ProcError {
        let errno = e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error);
        ProcError::from_errno(pid, file, errno)
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, ProcError::Gone { .. })
    }

    pub fn is_denied(&self) -> bool {
        matches!(self, ProcError::Denied { .. })
    }
}

/// The result of one per-process read.
pub type ProcResult<T> = Result<T, ProcError>;

/// The most of a command line that is read (64 KiB): enough for rules to match on, while a
/// process with megabytes of arguments cannot grow the daemon's buffer (locked in memory).
pub const MAX_CMDLINE: usize = 64 << 10;

/// What [`ProcReader::loadavg`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loadavg {
    /// Threads (tasks) there are, in the whole machine.
    pub threads: u32,
    /// The PID the kernel handed out last in this PID namespace. PIDs are handed out upwards
    /// from it and wrap at `pid_max`, so while it only grows, no PID that was in use earlier
    /// has been given to a new process.
    pub last_pid: i32,
}

/// The hot-path reader: `openat` relative to a `/proc` directory fd, into one reused buffer.
pub struct ProcReader {
    root: Root,
    dir: OwnedFd,
    buf: Vec<u8>,
    dirbuf: Vec<MaybeUninit<u8>>,
    /// The kernel's task iterator, when the daemon loaded it ([`ProcReader::use_tasks`]).
    tasks: Option<TaskIter>,
    /// Page size in kB (the kernel's unit for rss and badness).
    pub page_kb: u64,
    /// Clock ticks per second (the unit of `starttime`).
    pub ticks: u64,
}

impl ProcReader {
    pub fn open(root: &Root) -> std::io::Result<ProcReader> {
        let path = root.path("proc");
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
        })?;
        Ok(ProcReader {
            root: root.clone(),
            dir,
            buf: Vec::with_capacity(16 * 1024),
            dirbuf: vec![MaybeUninit::uninit(); 32 * 1024],
            tasks: None,
            page_kb: (rustix::param::page_size() / 1024).max(1) as u64,
            ticks: rustix::param::clock_ticks_per_second(),
        })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// From now on [`ProcReader::task_rows`] lists the processes with `it` (one program pass
    /// instead of a directory listing and a `statm` per process).
    pub fn use_tasks(&mut self, it: TaskIter) {
        self.tasks = Some(it);
    }

    /// Whether the task iterator is in use.
    pub fn has_tasks(&self) -> bool {
        self.tasks.is_some()
    }

    /// Every process of this PID namespace with its badness terms, from the task iterator,
    /// into `out` (cleared first); false, `out` empty, when the iterator is not in use. A pass
    /// that fails (it never has) stops its use, with a warning: the caller lists `/proc`.
    pub fn task_rows(&mut self, out: &mut Vec<TaskRow>) -> bool {
        out.clear();
        let Some(it) = &self.tasks else {
            return false;
        };
        match it.read(&mut self.dirbuf, out) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("{e}; reading /proc per process from now on");
                self.tasks = None;
                out.clear();
                false
            }
        }
    }

    /// Stops using the task iterator: processes are read in `/proc` from now on.
    pub fn stop_tasks(&mut self) {
        self.tasks = None;
    }

    /// One pass of the task iterator, its rows thrown away, to see whether a pass works (after
    /// a change of privileges); the iterator stays in use either way. `None` when it is not in
    /// use.
    pub fn try_task_pass(&mut self) -> Option<Result<usize, TaskIterError>> {
        let it = self.tasks.as_ref()?;
        let mut rows = Vec::new();
        Some(it.read(&mut self.dirbuf, &mut rows).map(|()| rows.len()))
    }

    /// Appends every numeric entry of `/proc` (the thread-group leaders) to `out`.
    pub fn pids(&mut self, out: &mut Vec<i32>) -> std::io::Result<()> {
        rustix::fs::seek(&self.dir, rustix::fs::SeekFrom::Start(0))?;
        let mut it = RawDir::new(&self.dir, &mut self.dirbuf);
        while let Some(e) = it.next() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name.first().is_some_and(u8::is_ascii_digit)
                && let Some(pid) = parse_u64(name)
            {
                out.push(pid as i32);
            }
        }
        Ok(())
    }

    /// `/proc/loadavg`'s counts: the number of threads there are, and the last PID handed out
    /// (its last field); `None` when it cannot be read.
    pub fn loadavg(&mut self) -> Option<Loadavg> {
        let fd = rustix::fs::openat(
            &self.dir,
            "loadavg",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        self.buf.clear();
        read_fd(&fd, &mut self.buf, Until::ShortRead, 256, false).ok()?;
        let mut fields = self
            .buf
            .split(u8::is_ascii_whitespace)
            .filter(|f| !f.is_empty())
            .skip(3);
        // "running/threads", then the last PID.
        let threads = fields.next()?.split(|&b| b == b'/').nth(1)?;
        let threads = parse_u64(threads).and_then(|v| u32::try_from(v).ok())?;
        let last = parse_u64(fields.next()?).and_then(|v| i32::try_from(v).ok())?;
        Some(Loadavg {
            threads,
            last_pid: last,
        })
    }

    /// Reads `/proc/PID/FILE` into the internal buffer.
    fn read(&mut self, pid: i32, file: &'static str) -> ProcResult<&[u8]> {
        self.read_task(pid, None, file)
    }

    /// Opens `/proc/PID/FILE`, or `/proc/PID/task/TID/FILE` for a thread (no allocation).
    fn open_task(&self, pid: i32, tid: Option<i32>, file: &'static str) -> ProcResult<OwnedFd> {
        let mut name = [0u8; 64];
        let free = {
            use std::io::Write;
            // Digits by `itoa`, not `write!`: this runs once per process per scan.
            let mut digits = itoa::Buffer::new();
            let mut rest = &mut name[..];
            let built: std::io::Result<()> = (|| {
                rest.write_all(digits.format(pid).as_bytes())?;
                if let Some(tid) = tid {
                    rest.write_all(b"/task/")?;
                    rest.write_all(digits.format(tid).as_bytes())?;
                }
                rest.write_all(b"/")?;
                rest.write_all(file.as_bytes())
            })();
            built.map_err(|_| ProcError::Io {
                pid,
                file,
                errno: Errno::NAMETOOLONG,
            })?;
            rest.len()
        };
        let n = name.len() - free;
        rustix::fs::openat(
            &self.dir,
            &name[..n],
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ProcError::from_errno(pid, file, e))
    }

    /// Reads `/proc/PID/FILE`, or `/proc/PID/task/TID/FILE` for a thread.
    fn read_task(&mut self, pid: i32, tid: Option<i32>, file: &'static str) -> ProcResult<&[u8]> {
        let fd = self.open_task(pid, tid, file)?;
        self.buf.clear();
        // The per-scan files are generated whole on the first read: a short read is their end
        // (one syscall saved per file per process). The others are read until end of file:
        // `children` among them, which the kernel hands out a page (about 800 PIDs) per read.
        let (until, max) = match file {
            "stat" | "statm" | "status" | "oom_score_adj" | "oom_score" => {
                (Until::ShortRead, MAX_FILE)
            }
            "cmdline" => (Until::Eof, MAX_CMDLINE),
            _ => (Until::Eof, MAX_FILE),
        };
        read_fd(&fd, &mut self.buf, until, max, false)
            .map_err(|e| ProcError::from_io(pid, file, &e))?;
        Ok(&self.buf)
    }

    /// `/proc/PID/stat`. A file that reads empty or cut short is `Gone` (a process that was
    /// reaped while it was read).
    pub fn stat(&mut self, pid: i32) -> ProcResult<Stat> {
        let b = self.read(pid, "stat")?;
        parse_stat(b, pid)
    }

    /// `/proc/PID/task/TID/stat`: one thread's state (the process's other fields).
    pub fn task_stat(&mut self, pid: i32, tid: i32) -> ProcResult<Stat> {
        let b = self.read_task(pid, Some(tid), "stat")?;
        parse_stat(b, pid)
    }

    /// `/proc/PID/task/TID/status`: one thread's view, whose memory lines are the process's
    /// (its address space is shared) while that thread lives.
    pub fn task_status(&mut self, pid: i32, tid: i32) -> ProcResult<Status> {
        let b = self.read_task(pid, Some(tid), "status")?;
        if b.is_empty() {
            return Err(ProcError::Gone { pid });
        }
        Ok(Status::parse(b))
    }

    /// For a process whose main thread is gone ([`Stat::main_thread_gone`]): the `status` of
    /// the first other thread that still has the address space, whose memory lines are the
    /// process's (as the kernel's OOM killer finds the memory through any such thread).
    /// With the thread's id; `None` when no thread has it any more. `tids`: scratch for the
    /// thread list.
    pub fn live_thread_status(
        &mut self,
        pid: i32,
        tids: &mut Vec<i32>,
    ) -> ProcResult<Option<(i32, Status)>> {
        tids.clear();
        self.tids(pid, tids)?;
        for &tid in tids.iter().filter(|&&t| t != pid) {
            match self.task_status(pid, tid) {
                Ok(s) if s.has_mm => return Ok(Some((tid, s))),
                Ok(_) | Err(ProcError::Gone { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Appends the thread ids of `pid` (`/proc/PID/task`) to `out`.
    pub fn tids(&mut self, pid: i32, out: &mut Vec<i32>) -> ProcResult<()> {
        let mut name = [0u8; 32];
        let n = {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut name[..]);
            let _ = write!(cur, "{pid}/task");
            cur.position() as usize
        };
        let fd = rustix::fs::openat(
            &self.dir,
            &name[..n],
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ProcError::from_errno(pid, "task", e))?;
        let mut it = RawDir::new(&fd, &mut self.dirbuf);
        while let Some(e) = it.next() {
            let e = e.map_err(|e| ProcError::from_errno(pid, "task", e))?;
            if let Some(tid) = parse_u64(e.file_name().to_bytes()) {
                out.push(tid as i32);
            }
        }
        Ok(())
    }

    /// Appends the children of thread `tid` of `pid` (`/proc/PID/task/TID/children`, kernels
    /// with CONFIG_PROC_CHILDREN) to `out`. A kernel without the file answers `Gone`.
    pub fn children(&mut self, pid: i32, tid: i32, out: &mut Vec<i32>) -> ProcResult<()> {
        let b = self.read_task(pid, Some(tid), "children")?;
        out.extend(
            b.split(|&c| c == b' ' || c == b'\n')
                .filter_map(parse_u64)
                .map(|p| p as i32),
        );
        Ok(())
    }

    /// Resident pages from `/proc/PID/statm` (its second field: anon + file + shmem, the same
    /// counters as `stat`'s rss). The cheapest per-process read the kernel offers for it; it
    /// says nothing of identity, so callers check the start time where that matters.
    pub fn statm_rss(&mut self, pid: i32) -> ProcResult<u64> {
        self.statm(pid).map(|(_, resident)| resident)
    }

    pub fn status(&mut self, pid: i32) -> ProcResult<Status> {
        let b = self.read(pid, "status")?;
        if b.is_empty() {
            return Err(ProcError::Gone { pid });
        }
        Ok(Status::parse(b))
    }

    /// `/proc/PID/statm`: (size, resident) in pages — the cheapest look at a process's memory.
    pub fn statm(&mut self, pid: i32) -> ProcResult<(u64, u64)> {
        self.read(pid, "statm")?;
        Self::parse_statm(&self.buf, pid)
    }

    /// Opens `/proc/PID/stat` to be kept and re-read with [`stat_kept`]. A kept fd names the
    /// process, not the number: once that process is gone its reads fail with `ESRCH`
    /// (`Gone`), even when the PID has been given to someone new. (It holds a page-sized read
    /// buffer in the kernel once read: the kill path keeps one, for its victim.)
    pub fn open_stat(&mut self, pid: i32) -> ProcResult<OwnedFd> {
        self.open_task(pid, None, "stat")
    }

    fn parse_statm(b: &[u8], pid: i32) -> ProcResult<(u64, u64)> {
        if b.is_empty() {
            return Err(ProcError::Gone { pid });
        }
        let mut f = b.split(|&c| c == b' ');
        f.next()
            .and_then(parse_u64)
            .zip(f.next().and_then(parse_u64))
            .ok_or(ProcError::Malformed { pid, file: "statm" })
    }

    pub fn oom_score_adj(&mut self, pid: i32) -> ProcResult<i16> {
        let b = self.read(pid, "oom_score_adj")?;
        if b.is_empty() {
            return Err(ProcError::Gone { pid });
        }
        parse_i64(b).map(|v| v as i16).ok_or(ProcError::Malformed {
            pid,
            file: "oom_score_adj",
        })
    }

    /// The kernel's own `/proc/PID/oom_score`.
    pub fn oom_score(&mut self, pid: i32) -> ProcResult<u64> {
        let b = self.read(pid, "oom_score")?;
        if b.is_empty() {
            return Err(ProcError::Gone { pid });
        }
        parse_u64(b).ok_or(ProcError::Malformed {
            pid,
            file: "oom_score",
        })
    }

    /// The arguments joined by single spaces (empty for kernel threads and zombies); at most
    /// the first [`MAX_CMDLINE`] bytes.
    pub fn cmdline(&mut self, pid: i32) -> ProcResult<String> {
        let b = self.read(pid, "cmdline")?;
        let mut s = String::from_utf8_lossy(b).replace('\0', " ");
        s.truncate(s.trim_end().len());
        Ok(s)
    }

    /// The executable's path. Kernel threads and zombies have none (`Gone`, as the kernel
    /// answers `ENOENT` for both). The path it was started from also when the file has since
    /// been replaced or removed (the kernel then adds " (deleted)"): a package upgrade does
    /// not make a running daemon another program, nor lift an `exe` rule from it.
    pub fn exe(&self, pid: i32) -> ProcResult<String> {
        std::fs::read_link(self.root.path(format!("proc/{pid}/exe")))
            .map(|p| {
                let mut s = p.to_string_lossy().into_owned();
                if let Some(n) = s.strip_suffix(" (deleted)").map(str::len) {
                    s.truncate(n);
                }
                s
            })
            .map_err(|e| ProcError::from_io(pid, "exe", &e))
    }

    /// Whether processes `pid` and `other` share one address space (`kcmp(2)`, `KCMP_VM`): a
    /// vfork child and its parent do until the child execs or exits. Killing either frees
    /// nothing while the other holds it. Only on the real /proc (a fixture tree's PIDs are not
    /// processes); false when the kernel cannot tell (no `CONFIG_KCMP`, no right to inspect
    /// one of them) or either is gone.
    pub fn shares_mm(&self, pid: i32, other: i32) -> bool {
        const KCMP_VM: libc::c_long = 1;
        if !self.root.is_real() || pid <= 0 || other <= 0 || pid == other {
            return false;
        }
        // SAFETY: kcmp(2) takes two PIDs, a type and two unused integers; it reads and writes
        // no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_kcmp,
                pid as libc::c_long,
                other as libc::c_long,
                KCMP_VM,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        };
        r == 0
    }

    /// Whether PID 1 of this /proc is the machine's init, which the kernel never kills, rather
    /// than the init of a PID namespace of its own (a container's, when /proc is the
    /// container's), which it scores and kills like any other process. Told by its namespace
    /// link: the initial PID namespace is always `pid:[4026531836]` (`PROC_PID_INIT_INO`). PID
    /// 1's link needs the right to inspect it (a non-dumpable init refuses even root without
    /// CAP_SYS_PTRACE): then this process's own namespace tells, the /proc it reads being its
    /// own. True when neither can be read.
    pub fn pid1_is_global_init(&self) -> bool {
        const INITIAL: &str = "pid:[4026531836]";
        ["proc/1/ns/pid", "proc/self/ns/pid"]
            .iter()
            .find_map(|p| std::fs::read_link(self.root.path(p)).ok())
            .is_none_or(|l| l.as_os_str() == INITIAL)
    }

    /// The raw `/proc/PID/cgroup` text.
    pub fn cgroup_text(&mut self, pid: i32) -> ProcResult<String> {
        self.read(pid, "cgroup")
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// `/proc/PID/stat` from an fd kept open by [`ProcReader::open_stat`]: one `pread` into `buf`
/// (for a holder without the reader, such as a kill waiting for its victim's exit).
pub fn stat_kept(fd: &OwnedFd, pid: i32, buf: &mut Vec<u8>) -> ProcResult<Stat> {
    buf.clear();
    read_fd(fd, buf, Until::ShortRead, MAX_FILE, true)
        .map_err(|e| ProcError::from_io(pid, "stat", &e))?;
    parse_stat(buf, pid)
}

/// A `stat` read: empty or cut short is `Gone` (a process reaped while it was read).
fn parse_stat(b: &[u8], pid: i32) -> ProcResult<Stat> {
    if b.is_empty() {
        return Err(ProcError::Gone { pid });
    }
    Stat::parse(b).ok_or(ProcError::Malformed { pid, file: "stat" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 10000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_name_with_spaces_and_parens() {
        let s = Stat::parse(STAT).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm.as_str(), Some("a (b) c"));
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.starttime, 987654);
        assert_eq!(s.rss_pages, 2560);
        assert!(!s.is_kthread());
        let k = Stat::parse(b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0\n").unwrap();
        assert!(k.is_kthread());
        let resolved =
            Stat::parse(b"7 ((resolved)) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 3 0\n")
                .unwrap();
        assert_eq!(resolved.comm.as_str(), Some("(resolved)"));
    }

    #[test]
    fn truncated_stat_is_none() {
        assert!(Stat::parse(b"4242 (x) S 1 2").is_none());
        assert!(Stat::parse(b"").is_none());
        assert!(Stat::parse(b"garbage) ").is_none());
    }

    #[test]
    fn status_fields_and_pending_sigkill() {
        let t = b"Name:\tx\nUid:\t1000\t1000\t1000\t1000\nVmSize:\t 100 kB\nRssAnon:\t  4 kB\nRssFile:\t 8 kB\nRssShmem:\t 0 kB\nVmPTE:\t 44 kB\nVmSwap:\t 12 kB\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n";
        let s = Status::parse(t);
        assert_eq!(s.uid, Some(1000));
        assert_eq!(
            (s.rss_anon_kb, s.rss_file_kb, s.swap_kb, s.pte_kb),
            (4, 8, 12, 44)
        );
        assert!(s.sigkill_pending && s.has_mm);
        let z = Status::parse(
            b"Name:\tz\nUid:\t0\t0\t0\t0\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n",
        );
        assert!(!z.sigkill_pending && !z.has_mm);
        assert!(!s.sys_admin && !z.sys_admin, "no CapEff line");
    }

    /// CAP_SYS_ADMIN is bit 21 of `CapEff` (root's full set; a set without it; one with only
    /// it; a short mask).
    #[test]
    fn cap_sys_admin_from_the_effective_set() {
        let cap =
            |mask: &str| Status::parse(format!("Name:\tx\nCapEff:\t{mask}\n").as_bytes()).sys_admin;
        assert!(cap("000001ffffffffff"));
        assert!(!cap("000001ffffdfffff"));
        assert!(cap("0000000000200000"));
        assert!(!cap("0000000000100000"));
        assert!(!cap("ff"));
    }

    /// PID 1 is the machine's init only in the initial PID namespace: by its `ns/pid` link,
    /// else by the reader's own, else assumed.
    #[test]
    fn pid1_is_the_machines_init_only_in_the_initial_pid_namespace() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("proc")).unwrap();
        let r = ProcReader::open(&Root::new(d.path())).unwrap();
        assert!(r.pid1_is_global_init(), "nothing to tell by: assumed");
        let link = |pid: &str, target: &str| {
            let ns = d.path().join(format!("proc/{pid}/ns"));
            std::fs::create_dir_all(&ns).unwrap();
            let _ = std::fs::remove_file(ns.join("pid"));
            std::os::unix::fs::symlink(target, ns.join("pid")).unwrap();
        };
        link("self", "pid:[4026532555]");
        assert!(
            !r.pid1_is_global_init(),
            "the reader's own namespace, a container's"
        );
        link("1", "pid:[4026531836]");
        assert!(r.pid1_is_global_init(), "PID 1's link first");
        link("1", "pid:[4026532555]");
        assert!(!r.pid1_is_global_init());
    }

    /// A command line the kernel hands out in pieces is read whole; one longer than
    /// [`MAX_CMDLINE`] is cut there. `/proc/PID/cgroup` is read to its end as well.
    #[test]
    fn cmdline_and_cgroup_are_read_past_short_reads() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("proc/4242");
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<u8> = (0..2000)
            .flat_map(|i| format!("--arg{i:05}\0").into_bytes())
            .collect();
        let huge: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("--x{i:05}\0").into_bytes())
            .collect();
        let cgroup: Vec<u8> = (0..200)
            .flat_map(|i| {
                format!("{i}:name=n{i}:/a/very/long/path/for/group/{i:04}\n").into_bytes()
            })
            .collect();
        let mut r = ProcReader::open(&Root::new(d.path())).unwrap();

        let server = crate::sense::fixture::chunked(&dir.join("cmdline"), args.clone(), 1000);
        let got = r.cmdline(4242).unwrap();
        server.join().unwrap().unwrap();
        assert_eq!(
            got.len(),
            args.len() - 1,
            "{}",
            &got[got.len().saturating_sub(40)..]
        );
        assert!(
            got.ends_with("--arg01999"),
            "{}",
            &got[got.len().saturating_sub(40)..]
        );
        std::fs::remove_file(dir.join("cmdline")).unwrap();

        let server = crate::sense::fixture::chunked(&dir.join("cmdline"), huge.clone(), 4000);
        let got = r.cmdline(4242).unwrap();
        assert_eq!(got.len(), MAX_CMDLINE);
        assert!(got.starts_with("--x00000 --x00001 "));
        // The rest is not read: the writer sees the reader gone.
        server.join().unwrap().unwrap();

        let server = crate::sense::fixture::chunked(&dir.join("cgroup"), cgroup.clone(), 900);
        let got = r.cgroup_text(4242).unwrap();
        server.join().unwrap().unwrap();
        assert!(
            got.as_bytes() == cgroup,
            "read {} of {} bytes",
            got.len(),
            cgroup.len()
        );
    }

    #[test]
    fn reader_sees_itself() {
        let mut r = ProcReader::open(&Root::default()).unwrap();
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        r.pids(&mut pids).unwrap();
        assert!(pids.contains(&me));
        let s = r.stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.rss_pages > 0);
        assert!(r.status(me).unwrap().has_mm);
        assert!(r.oom_score_adj(me).is_ok());
        let rss = r.statm_rss(me).unwrap();
        assert!(
            rss > 0 && rss.abs_diff(s.rss_pages) < 1024,
            "{rss} vs {}",
            s.rss_pages
        );
        assert_eq!(
            r.stat(i32::MAX),
            Err(ProcError::Gone { pid: i32::MAX }),
            "a PID that does not exist is gone"
        );
    }

    /// Each way a read fails is told apart: a missing process (or a file emptied by the exit
    /// that reaped it) is gone, a mode that forbids reading is denied, anything else is an I/O
    /// error with its errno, and text that does not parse is malformed.
    /// A program whose file was replaced (as a package upgrade does: a new file renamed over
    /// it) keeps its path: the kernel's " (deleted)" is not part of it.
    #[test]
    fn exe_is_the_path_also_after_the_file_was_replaced() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("oomg-upgraded");
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("sleep");
        std::fs::copy(sleep, &bin).unwrap();
        struct Child(std::process::Child);
        impl Drop for Child {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Child(std::process::Command::new(&bin).arg("30").spawn().unwrap());
        let pid = child.0.id() as i32;
        let r = ProcReader::open(&Root::default()).unwrap();
        let want = bin.to_string_lossy().into_owned();
        let t0 = std::time::Instant::now();
        while r.exe(pid).ok().as_deref() != Some(&want) {
            assert!(t0.elapsed().as_secs() < 5, "{:?}", r.exe(pid));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let new = d.path().join("oomg-upgraded.new");
        std::fs::copy(sleep, &new).unwrap();
        std::fs::rename(&new, &bin).unwrap();
        let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(link.to_string_lossy().ends_with(" (deleted)"), "{link:?}");
        assert_eq!(r.exe(pid).unwrap(), want);
    }

    #[test]
    fn reads_tell_gone_denied_io_and_malformed_apart() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let proc = d.path().join("proc");
        std::fs::create_dir_all(proc.join("10")).unwrap();
        std::fs::write(proc.join("10/stat"), STAT).unwrap();
        std::fs::write(proc.join("10/statm"), "100 20 5 1 0 30 0\n").unwrap();
        std::fs::write(proc.join("10/oom_score_adj"), "").unwrap();
        std::fs::write(proc.join("10/status"), "Name:\tx\n").unwrap();
        std::fs::set_permissions(
            proc.join("10/status"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        // A directory where a file should be: read(2) fails with EISDIR.
        std::fs::create_dir_all(proc.join("10/cgroup")).unwrap();
        std::fs::write(proc.join("10/oom_score"), "many\n").unwrap();
        let mut r = ProcReader::open(&Root::new(d.path())).unwrap();

        assert_eq!(r.stat(10).unwrap().starttime, 987654);
        assert_eq!(r.statm(10), Ok((100, 20)));
        assert_eq!(r.stat(11), Err(ProcError::Gone { pid: 11 }));
        assert_eq!(r.cmdline(11), Err(ProcError::Gone { pid: 11 }));
        assert!(r.exe(11).unwrap_err().is_gone());
        assert_eq!(r.oom_score_adj(10), Err(ProcError::Gone { pid: 10 }));
        assert_eq!(
            r.cgroup_text(10),
            Err(ProcError::Io {
                pid: 10,
                file: "cgroup",
                errno: Errno::ISDIR
            })
        );
        assert_eq!(
            r.oom_score(10),
            Err(ProcError::Malformed {
                pid: 10,
                file: "oom_score"
            })
        );
        let denied = crate::sense::fixture::without_dac_override(move || r.status(10));
        assert_eq!(
            denied,
            Err(ProcError::Denied {
                pid: 10,
                file: "status"
            })
        );
        let msg = denied.unwrap_err().to_string();
        assert!(
            msg.contains("/proc/10/status") && msg.contains("permission denied"),
            "{msg}"
        );
    }

    #[test]
    fn errnos_map_to_gone_denied_or_io() {
        let gone = ProcError::Gone { pid: 1 };
        assert_eq!(ProcError::from_errno(1, "stat", Errno::NOENT), gone);
        assert_eq!(ProcError::from_errno(1, "stat", Errno::SRCH), gone);
        for e in [Errno::ACCESS, Errno::PERM] {
            assert!(ProcError::from_errno(1, "stat", e).is_denied());
        }
        assert_eq!(
            ProcError::from_io(1, "stat", &std::io::Error::from_raw_os_error(libc::EIO)),
            ProcError::Io {
                pid: 1,
                file: "stat",
                errno: Errno::IO
            }
        );
        assert!(
            ProcError::from_io(1, "stat", &std::io::ErrorKind::NotFound.into())
                .to_string()
                .contains("/proc/1/stat")
        );
    }

    /// A kept `stat` follows its process: read again it shows the state now, and once the
    /// process is reaped it answers `Gone`.
    #[test]
    fn a_kept_stat_is_read_again_and_gone_after_the_reap() {
        let mut reader = ProcReader::open(&Root::default()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fd = reader.open_stat(pid).unwrap();
        let mut buf = Vec::new();
        let st = stat_kept(&fd, pid, &mut buf).unwrap();
        assert_eq!(st.pid, pid);
        assert!(!st.is_exiting());
        child.kill().unwrap();
        // A zombie until reaped: still readable, in state Z.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stat_kept(&fd, pid, &mut buf).is_ok_and(|s| !s.is_zombie())
            && std::time::Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(stat_kept(&fd, pid, &mut buf).unwrap().is_zombie());
        child.wait().unwrap();
        assert_eq!(
            stat_kept(&fd, pid, &mut buf).unwrap_err(),
            ProcError::Gone { pid }
        );
    }
}
