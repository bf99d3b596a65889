//! Which kind of OOM kill made the machine's kill counter rise. `/proc/vmstat oom_kill` counts
//! every kill of the kernel's OOM killer, also those inside a memory cgroup that hit its own
//! limit (`CONSTRAINT_MEMCG`). Those free nothing the machine is short of: on a container host
//! one container killed at its limit every second or two would otherwise hold the system-wide
//! guard back for ever (`daemon::Hold`). The kernel says which kind each kill was in its log,
//! before it counts the kill: `oom-kill:constraint=CONSTRAINT_MEMCG,…,oom_memcg=/path,…,pid=N`
//! (4.19+, parsed by [`crate::report::parse::OomKillLine`]), and after it `Memory cgroup out of
//! memory: Killed process N …` or `Out of memory: Killed process N …`.
//!
//! So `/dev/kmsg` is opened at daemon start at its end, and read only when the counter rose:
//! every record logged since, one per `read`, non-blocking ([`KernelLog`]). A rise counts as
//! the memcg kills it was only when every kill it counted has a line that says so
//! ([`OomKinds`]); a kill of the machine's (`CONSTRAINT_NONE`, cpuset, mempolicy), a kill with
//! no line (old kernel, the kernel's rate limit on its reports), a log that cannot be read,
//! or records overwritten before they were read (`EPIPE`) make it a rise as before: held back.
//! Only records of the kernel's own facility count (what a program writes to `/dev/kmsg` is
//! logged with the user facility, whatever it asks for).

use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Root;
use crate::report::Kind;
use crate::report::parse::{OomKillLine, kill_prefix_kind, killed_pid};
use crate::report::prefix::{split, trim_start};

/// The read buffer: a `/dev/kmsg` read needs room for a whole record (about 1 KiB of text plus
/// its dictionary), else it fails with `EINVAL`.
const BUF: usize = 8 * 1024;
/// The most records one drain reads (a flood of kernel messages must not keep the loop).
const MAX_RECORDS: usize = 4096;

/// How a drain of the log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every record logged since the last drain was read.
    All,
    /// Records were overwritten before they were read (`EPIPE`), a record did not fit, or
    /// the drain stopped at [`MAX_RECORDS`].
    Lost,
    /// The log is not open, or a read failed.
    Unreadable,
}

/// `/dev/kmsg` (under the root), opened at its end, read on demand into one buffer.
pub struct KernelLog {
    file: Option<Box<dyn Read + Send>>,
    path: PathBuf,
    buf: Vec<u8>,
}

impl std::fmt::Debug for KernelLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelLog")
            .field("path", &self.path)
            .field("open", &self.file.is_some())
            .finish()
    }
}

impl KernelLog {
    /// Opens `dev/kmsg` under `root` non-blocking and moves to its end: only records logged
    /// from now on are read. Never fails: a log that cannot be opened (no `CAP_SYSLOG` with
    /// `kernel.dmesg_restrict=1`, no `/dev`) reads as [`Drained::Unreadable`]; the error is
    /// returned beside it to be said once.
    pub fn open(root: &Root) -> (KernelLog, Option<std::io::Error>) {
        let path = root.path("dev/kmsg");
        // std opens with O_CLOEXEC.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .and_then(|mut f| {
                use std::io::Seek;
                f.seek(std::io::SeekFrom::End(0))?;
                Ok(f)
            });
        match opened {
            Ok(f) => (KernelLog::from_reader(path, Box::new(f)), None),
            Err(e) => (
                KernelLog {
                    file: None,
                    path,
                    buf: Vec::new(),
                },
                Some(e),
            ),
        }
    }

    /// A log read from `r` (positioned where reading starts): `/dev/kmsg`, or a test's
    /// scripted reads.
    fn from_reader(path: PathBuf, r: Box<dyn Read + Send>) -> KernelLog {
        KernelLog {
            file: Some(r),
            path,
            buf: vec![0; BUF],
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Reads every record logged since the last drain and hands the message of each record of
    /// the kernel's facility to `each` (prefix removed). A `/dev/kmsg` read returns one record
    /// (its dictionary on continuation lines starting with a space); a fixture file, any
    /// number of lines, the last one maybe cut (kept for the next read).
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> Drained {
        let Some(f) = self.file.as_mut() else {
            return Drained::Unreadable;
        };
        let mut end = Drained::All;
        let mut fill = 0;
        let mut records = 0;
        loop {
            if records >= MAX_RECORDS {
                return Drained::Lost;
            }
            let n = match f.read(&mut self.buf[fill..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    // Overwritten: the next read goes on from the oldest record left.
                    end = Drained::Lost;
                    records += 1;
                    continue;
                }
                Err(_) => return Drained::Unreadable,
            };
            let data = &self.buf[..fill + n];
            let mut start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &data[start..]) {
                let line = &data[start..start + nl];
                start += nl + 1;
                if line.first() == Some(&b' ') {
                    continue; // a record's dictionary
                }
                records += 1;
                let s = split(line, false);
                if s.kmsg && s.kernel {
                    each(s.msg);
                }
            }
            // A cut line (a file read in pieces) moves to the front for the next read.
            fill = data.len() - start;
            if fill == self.buf.len() {
                end = Drained::Lost;
                fill = 0;
            } else {
                self.buf.copy_within(start..start + fill, 0);
            }
        }
        end
    }
}

/// What one rise of the counter was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiseKind {
    /// Every kill was at a memory cgroup's own limit.
    Memcg,
    /// A kill of the kernel acting on the machine's memory (`Global`, or a task's cpuset or
    /// memory policy).
    Machine(Kind),
    /// Not known: held back as any kill.
    Unknown(Unknown),
}

impl RiseKind {
    /// The record's `constraint` value.
    pub fn as_str(self) -> &'static str {
        match self {
            RiseKind::Memcg => "memcg",
            RiseKind::Machine(k) => k.as_str(),
            RiseKind::Unknown(_) => "unknown",
        }
    }
}

/// Why a rise could not be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The kernel log cannot be read.
    NoLog,
    /// Records were lost before they were read.
    Lost,
    /// Fewer kill lines than kills (an old kernel, or the kernel's rate limit on its
    /// reports), or a constraint this version does not know.
    NoLine,
}

impl Unknown {
    pub fn as_str(self) -> &'static str {
        match self {
            Unknown::NoLog => "the kernel log is not readable",
            Unknown::Lost => "kernel log records were lost",
            Unknown::NoLine => "the kernel log does not say which kind every kill was",
        }
    }
}

/// Kills counted but whose line has not been read are forgotten after this long: the kernel
/// prints a kill's lines around its count, so lines that have not come by then never will
/// (lost, or rate-limited away), and a line of long ago must not stand for a kill of now.
const OWED_FORGET: Duration = Duration::from_secs(10);
/// Victims remembered so that a kill's second line (`oom-kill:` before the count, `Killed
/// process` after it, maybe read at the next rise) counts once.
const SEEN: usize = 32;

/// The machine's OOM kill counter split into the kills at a cgroup's own limit and the rest:
/// [`OomKinds::observe`] takes the counter's value and returns the rest (what holds the guard
/// back), reading the kernel log when the counter rose.
#[derive(Debug)]
pub struct OomKinds {
    log: KernelLog,
    /// The counter as last observed.
    raw: Option<u64>,
    /// Kills told to be at a cgroup's own limit, since the start.
    memcg: u64,
    /// Kills counted whose victim has no line yet, and since when.
    owed: u64,
    owed_since: Instant,
    seen: [i64; SEEN],
    seen_next: usize,
    /// The last rise not of memcg kills only.
    last_held: Option<RiseKind>,
    /// The group whose limit the last memcg kill hit (`oom_memcg=`), when the log said.
    last_memcg: String,
}

impl OomKinds {
    /// Starts from the counter's value `raw` now, with the log opened after it was read (a
    /// kill in between is counted after `raw` with its line before the log's start: a kill
    /// with no line, held back).
    pub fn new(raw: Option<u64>, log: KernelLog) -> OomKinds {
        OomKinds {
            log,
            raw,
            memcg: 0,
            owed: 0,
            owed_since: Instant::now(),
            seen: [-1; SEEN],
            seen_next: 0,
            last_held: None,
            last_memcg: String::new(),
        }
    }

    pub fn log(&self) -> &KernelLog {
        &self.log
    }

    /// Kills at a cgroup's own limit since the start.
    pub fn memcg_kills(&self) -> u64 {
        self.memcg
    }

    /// What the last rise that was not memcg kills only was.
    pub fn last_held(&self) -> Option<RiseKind> {
        self.last_held
    }

    /// The group whose limit the last memcg kill hit (`None`: the log did not say).
    pub fn last_memcg(&self) -> Option<&str> {
        (!self.last_memcg.is_empty()).then_some(self.last_memcg.as_str())
    }

    /// Takes the counter's value now; returns the counter less the kills at a cgroup's own
    /// limit. When it rose, the log is read and the rise classified ([`OomKinds::classify`]).
    pub fn observe(&mut self, raw: u64, now: Instant) -> u64 {
        if let Some(prev) = self.raw.replace(raw)
            && raw > prev
            && self.classify(raw - prev, now) == RiseKind::Memcg
        {
            self.memcg += raw - prev;
        }
        raw.saturating_sub(self.memcg)
    }

    /// Classifies a rise of `kills` from the records logged since the last rise.
    pub fn classify(&mut self, kills: u64, now: Instant) -> RiseKind {
        if self.owed > 0 && now.saturating_duration_since(self.owed_since) > OWED_FORGET {
            self.owed = 0;
        }
        if self.owed == 0 {
            self.owed_since = now;
        }
        self.owed += kills;
        let mut machine = None;
        let mut unknown = false;
        let mut memcg_lines = 0u64;
        let mut first_memcg = true;
        let Self {
            log,
            owed,
            seen,
            seen_next,
            last_memcg,
            ..
        } = self;
        let drained = log.drain(|msg| {
            let t = trim_start(msg);
            let (pid, kind, group) = if let Some(l) = OomKillLine::parse(t) {
                let Some(pid) = l.pid else {
                    unknown = true;
                    return;
                };
                (pid, l.kind(), l.oom_memcg)
            } else if let Some((pid, prefix)) = killed_pid(t) {
                match kill_prefix_kind(prefix) {
                    Some(k) => (pid, Some(k), None),
                    // 4.19–5.0 `Killed process` says nothing of the kind: no evidence.
                    None => return,
                }
            } else {
                return;
            };
            if seen.contains(&pid) {
                return;
            }
            seen[*seen_next] = pid;
            *seen_next = (*seen_next + 1) % SEEN;
            *owed = owed.saturating_sub(1);
            match kind {
                Some(Kind::Memcg) => {
                    memcg_lines += 1;
                    if let Some(g) = group
                        && first_memcg
                    {
                        first_memcg = false;
                        last_memcg.clear();
                        last_memcg.push_str(&String::from_utf8_lossy(g));
                    }
                }
                Some(k) => {
                    machine.get_or_insert(k);
                }
                None => unknown = true,
            }
        });
        let kind = match drained {
            Drained::Unreadable => RiseKind::Unknown(Unknown::NoLog),
            Drained::Lost => RiseKind::Unknown(Unknown::Lost),
            Drained::All => match machine {
                Some(k) => RiseKind::Machine(k),
                None if unknown || self.owed > 0 || memcg_lines == 0 => {
                    RiseKind::Unknown(Unknown::NoLine)
                }
                None => RiseKind::Memcg,
            },
        };
        if kind != RiseKind::Memcg {
            self.last_held = Some(kind);
        } else if first_memcg {
            // Not named this time (its `oom-kill:` line rate-limited away): no stale name.
            self.last_memcg.clear();
        }
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const MEMCG_LINE: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/box,task_memcg=/box,task=hog,pid=PID,uid=0";
    const MEMCG_KILLED: &str = "Memory cgroup out of memory: Killed process PID (hog) total-vm:40000kB, anon-rss:32000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0";
    const GLOBAL_LINE: &str = "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=big,pid=PID,uid=0";
    const GLOBAL_KILLED: &str = "Out of memory: Killed process PID (big) total-vm:40000kB, anon-rss:32000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0";

    /// A fixture `dev/kmsg` (a plain file) and a writer of records to it.
    struct Fixture {
        dir: tempfile::TempDir,
        seq: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("dev")).unwrap();
            // Records from before the start: never read.
            std::fs::write(
                dir.path().join("dev/kmsg"),
                format!("3,1,100,-;{}\n", GLOBAL_LINE.replace("PID", "1")),
            )
            .unwrap();
            Fixture { dir, seq: 2 }
        }

        fn root(&self) -> Root {
            Root::new(self.dir.path())
        }

        /// Appends kernel records (facility 0), `PID` replaced by `pid`.
        fn log(&mut self, lines: &[&str], pid: i64) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.path().join("dev/kmsg"))
                .unwrap();
            for l in lines {
                let l = l.replace("PID", &pid.to_string());
                writeln!(f, "3,{},{},-;{l}\n SUBSYSTEM=x", self.seq, self.seq * 1000).unwrap();
                self.seq += 1;
            }
        }
    }

    fn kinds(fx: &Fixture, raw: u64) -> OomKinds {
        let (log, err) = KernelLog::open(&fx.root());
        assert!(err.is_none(), "{err:?}");
        OomKinds::new(Some(raw), log)
    }

    #[test]
    fn a_rise_of_memcg_kills_only_is_taken_off_the_counter() {
        let mut fx = Fixture::new();
        let mut k = kinds(&fx, 7);
        let t = Instant::now();
        assert_eq!(k.observe(7, t), 7);
        fx.log(&[MEMCG_LINE], 100);
        assert_eq!(k.observe(8, t), 7, "a kill at /box's own limit");
        assert_eq!(k.memcg_kills(), 1);
        assert_eq!(k.last_memcg(), Some("/box"));
        // Its `Killed process` line, read at the next rise, is the same kill.
        fx.log(&[MEMCG_KILLED], 100);
        fx.log(&[MEMCG_LINE, MEMCG_KILLED], 101);
        assert_eq!(k.observe(9, t), 7);
        // Two at once (a memory.oom.group kill: one summary line, a kill line each).
        fx.log(&[MEMCG_LINE, MEMCG_KILLED], 102);
        fx.log(&[MEMCG_KILLED], 103);
        assert_eq!(k.observe(11, t), 7);
        assert_eq!(k.last_held(), None);
    }

    #[test]
    fn a_global_kill_holds_and_so_does_a_mixed_rise() {
        let mut fx = Fixture::new();
        let mut k = kinds(&fx, 0);
        let t = Instant::now();
        fx.log(&[GLOBAL_LINE], 200);
        assert_eq!(k.observe(1, t), 1);
        assert_eq!(k.last_held(), Some(RiseKind::Machine(Kind::Global)));
        fx.log(&[MEMCG_LINE], 201);
        fx.log(&[GLOBAL_KILLED], 202);
        assert_eq!(k.observe(3, t), 3, "a global kill beside a memcg one");
        // cpuset and mempolicy constraints are the machine's too.
        fx.log(
            &["oom-kill:constraint=CONSTRAINT_CPUSET,nodemask=(null),cpuset=/a,mems_allowed=0,global_oom,task_memcg=/,task=x,pid=PID,uid=0"],
            203,
        );
        assert_eq!(k.observe(4, t), 4);
        assert_eq!(k.last_held(), Some(RiseKind::Machine(Kind::Cpuset)));
        assert_eq!(k.memcg_kills(), 0);
    }

    #[test]
    fn a_rise_that_cannot_be_told_holds() {
        let t = Instant::now();
        // No line at all (an old kernel, or the kernel's rate limit on its reports).
        let mut fx = Fixture::new();
        let mut k = kinds(&fx, 0);
        assert_eq!(k.observe(1, t), 1);
        assert_eq!(k.last_held(), Some(RiseKind::Unknown(Unknown::NoLine)));
        // One line for two kills: the other one may be the machine's.
        fx.log(&[MEMCG_LINE], 300);
        assert_eq!(k.observe(3, t), 3);
        // A `Killed process` line without its kind (4.19–5.0) tells nothing.
        fx.log(
            &["Killed process PID (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB"],
            301,
        );
        assert_eq!(k.observe(4, t), 4);
        // What a program writes to /dev/kmsg has the user facility: not the kernel's word.
        std::fs::OpenOptions::new()
            .append(true)
            .open(fx.dir.path().join("dev/kmsg"))
            .unwrap()
            .write_all(format!("12,99,1,-;{}\n", MEMCG_LINE.replace("PID", "302")).as_bytes())
            .unwrap();
        assert_eq!(k.observe(5, t), 5);

        // The log cannot be opened.
        let empty = tempfile::tempdir().unwrap();
        let (log, err) = KernelLog::open(&Root::new(empty.path()));
        assert!(err.is_some() && !log.is_open());
        let mut k = OomKinds::new(Some(0), log);
        assert_eq!(k.observe(1, t), 1);
        assert_eq!(k.last_held(), Some(RiseKind::Unknown(Unknown::NoLog)));
    }

    #[test]
    fn lines_owed_are_forgotten_after_a_while() {
        let mut fx = Fixture::new();
        let mut k = kinds(&fx, 0);
        let t = Instant::now();
        // A kill with no line: owed. Ten seconds on, a memcg kill with its line is one.
        assert_eq!(k.observe(1, t), 1);
        fx.log(&[MEMCG_LINE], 400);
        assert_eq!(k.observe(2, t + Duration::from_secs(1)), 2, "still owed");
        fx.log(&[MEMCG_LINE], 401);
        assert_eq!(k.observe(3, t + OWED_FORGET + Duration::from_secs(2)), 2);
    }

    /// Reads as `/dev/kmsg` answers them, scripted: a record per read, `EPIPE`, `EAGAIN`.
    struct Script(std::collections::VecDeque<Result<String, i32>>);

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.pop_front() {
                None => Err(std::io::Error::from_raw_os_error(libc::EAGAIN)),
                Some(Err(errno)) => Err(std::io::Error::from_raw_os_error(errno)),
                Some(Ok(rec)) => {
                    buf[..rec.len()].copy_from_slice(rec.as_bytes());
                    Ok(rec.len())
                }
            }
        }
    }

    fn scripted(reads: Vec<Result<String, i32>>) -> KernelLog {
        KernelLog::from_reader(PathBuf::from("script"), Box::new(Script(reads.into())))
    }

    fn record(seq: u64, line: &str, pid: i64) -> Result<String, i32> {
        Ok(format!(
            "3,{seq},{seq}000,-;{}\n",
            line.replace("PID", &pid.to_string())
        ))
    }

    /// Records overwritten before they were read (`EPIPE`): what follows is read, but the rise
    /// cannot be told, whatever those lines say; a read error likewise.
    #[test]
    fn records_lost_or_a_read_error_hold() {
        let t = Instant::now();
        let mut k = OomKinds::new(
            Some(0),
            scripted(vec![Err(libc::EPIPE), record(5, MEMCG_LINE, 500)]),
        );
        assert_eq!(k.observe(1, t), 1);
        assert_eq!(k.last_held(), Some(RiseKind::Unknown(Unknown::Lost)));

        // The same record without the loss: a memcg kill. One record per read, dictionary
        // lines included.
        let mut log = scripted(vec![Ok(format!(
            "3,5,5000,-;{}\n SUBSYSTEM=memory\n",
            MEMCG_LINE.replace("PID", "501")
        ))]);
        let mut msgs = Vec::new();
        assert_eq!(log.drain(|m| msgs.push(m.to_vec())), Drained::All);
        assert_eq!(msgs.len(), 1);
        let mut k = OomKinds::new(Some(0), scripted(vec![record(5, MEMCG_LINE, 501)]));
        assert_eq!(k.observe(1, t), 0);

        let mut k = OomKinds::new(
            Some(0),
            scripted(vec![record(5, MEMCG_LINE, 502), Err(libc::EIO)]),
        );
        assert_eq!(k.observe(1, t), 1);
        assert_eq!(k.last_held(), Some(RiseKind::Unknown(Unknown::NoLog)));
    }
}
