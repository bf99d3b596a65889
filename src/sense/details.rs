//! The victim's command line and memory cgroup for the kill record, read ahead on a side thread
//! while memory is still plentiful, and only looked up at the bottom.
//!
//! Reading `/proc/PID/cmdline` is not like reading `stat` or `statm`: the kernel takes a reference
//! on the process's address space (`get_task_mm`), then allocates a page, then copies the
//! arguments out under the mmap lock. At the bottom of memory that allocation stalls in reclaim
//! and can end in the kernel's OOM killer, and all that time the reference keeps the process's
//! memory from being freed when it exits. Seen in the VM test of a four-thread hog against the
//! kernel: with the read on the loop, the loop sat 1.5 s in it between the choice and the signal;
//! with the read on a side thread, that thread invoked the kernel's OOM killer, the kernel killed
//! the hog, the hog exited, but its 340 MiB stayed pinned by the read, and the next allocation
//! anywhere made the kernel kill a bystander.
//!
//! So the loop asks for the facts of its likely victims while memory is near the levels but not
//! below them ([`Details::prefetch`], which never waits), and at kill time only looks them up
//! ([`Details::cached`]). A victim nobody read ahead goes into the record without its command
//! line.
//!
//! There are [`READERS`] reader threads: a read stuck on one process's mmap lock holds up that
//! process's facts only, and the other reader goes on with everyone else's (the rules' command
//! lines, `decide::rank::CmdlineSide`, and the protection thread's).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Root;
use super::breath::Breath;
use super::procs::ProcReader;

/// The command line (empty when unreadable) and the memory cgroup path of one process.
pub type Facts = (String, Option<String>);

/// How many processes' facts are kept (the likely victims of the last look).
const KEPT: usize = 4;

/// How long kept facts answer a lookup, and a prefetch leaves them be: a process can exec
/// (a new command line under the same PID and start time) or move to another cgroup. Read
/// ahead every half second near the levels, a likely victim's facts stay fresher than this.
const FRESH: Duration = Duration::from_secs(2);

/// A process: PID and start time (clock ticks after boot), so a reused PID never matches.
type Who = (i32, u64);

#[derive(Default)]
struct Slot {
    /// Processes to read, in order (replaced by each prefetch).
    want: Vec<Who>,
    /// The processes the readers are reading now (requests taken and not answered yet), and
    /// since when: one entry per busy reader.
    reading: Vec<(Who, Instant)>,
    /// What was read, and when, oldest first.
    kept: Vec<(Who, Facts, Instant)>,
    /// Readers waiting for a request.
    idle: usize,
}

struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
    /// Readers still running (one ends only on a bug: its panic is contained, see
    /// `record::side`).
    alive: AtomicUsize,
    /// The handle was dropped: the readers end (a stuck one once its read returns).
    closed: AtomicBool,
}

/// The reader threads' handle (see the module documentation).
pub struct Details {
    shared: Arc<Shared>,
}

impl Drop for Details {
    fn drop(&mut self) {
        let _s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.closed.store(true, Ordering::Release);
        self.shared.cv.notify_all();
    }
}

/// Counts a reader out however it ends.
struct GoneOnDrop(Arc<Shared>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
        self.0.cv.notify_all();
    }
}

/// How many readers a [`Details`] runs: one read stuck on a process's mmap lock leaves the
/// other to read everyone else's facts. Started with the handle, while memory is plentiful:
/// a thread started later would be started when a read is stuck, at the bottom of memory,
/// by the guard's loop.
pub const READERS: usize = 2;

impl Details {
    /// Starts the [`READERS`] threads, each with its own `/proc` reader under `root`.
    /// `prefer_v2`: which memory cgroup path to report when a process is in both hierarchies.
    /// `breath`: how the threads share the CPU while they read ([`super::breath`]).
    pub fn start(root: &Root, prefer_v2: bool, breath: Option<Breath>) -> std::io::Result<Details> {
        Self::start_reading(root, prefer_v2, breath, true)
    }

    /// [`Details::start`] for readers of the memory cgroup path alone (the command line of
    /// their facts is empty): for rules with `cgroup` or `unit`. Reading `/proc/PID/cgroup`
    /// takes no mmap lock, but kernels before "cgroup: Make operations on the cgroup root_list
    /// RCU safe" take the global `cgroup_mutex` in it, which a cgroup operation stuck in
    /// reclaim can hold at the bottom of memory; and a rule that needs only the cgroup must not
    /// wait for a command line (whose read waits on the process's mmap lock).
    pub fn start_cgroups(
        root: &Root,
        prefer_v2: bool,
        breath: Option<Breath>,
    ) -> std::io::Result<Details> {
        Self::start_reading(root, prefer_v2, breath, false)
    }

    fn start_reading(
        root: &Root,
        prefer_v2: bool,
        breath: Option<Breath>,
        cmdlines: bool,
    ) -> std::io::Result<Details> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                want: Vec::with_capacity(KEPT),
                reading: Vec::with_capacity(READERS),
                kept: Vec::with_capacity(KEPT + 1),
                idle: 0,
            }),
            cv: Condvar::new(),
            alive: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        // Dropped on an error: the readers already started end.
        let details = Details {
            shared: Arc::clone(&shared),
        };
        for _ in 0..READERS {
            let reader = ProcReader::open(root)?;
            shared.alive.fetch_add(1, Ordering::AcqRel);
            let guard = GoneOnDrop(Arc::clone(&shared));
            let root = root.clone();
            // A reader that did not start is counted out by its guard, dropped with the closure.
            crate::record::side::spawn("oomguard-details", move || {
                super::breath::enable(breath, &root);
                serve(&guard.0, reader, prefer_v2, cmdlines);
            })?;
        }
        Ok(details)
    }

    /// Asks for the facts of these processes (at most [`KEPT`], the likeliest first) that are
    /// neither kept (read within [`FRESH`]) nor being read; replaces an earlier request still waiting. Never waits for the reads.
    pub fn prefetch(&self, who: impl IntoIterator<Item = Who>) {
        let mut s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        s.want.clear();
        for w in who.into_iter().take(KEPT) {
            if !s.reading.iter().any(|(r, _)| *r == w)
                && !s.want.contains(&w)
                && !s
                    .kept
                    .iter()
                    .any(|(k, _, at)| *k == w && at.elapsed() < FRESH)
            {
                s.want.push(w);
            }
        }
        if !s.want.is_empty() {
            self.shared.cv.notify_all();
        }
    }

    /// The facts of the process if they were read ahead (however long ago); never reads.
    pub fn cached(&self, who: Who) -> Option<Facts> {
        let s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        s.kept
            .iter()
            .find(|(w, _, _)| *w == who)
            .map(|(_, f, _)| f.clone())
    }

    /// Whether every reader has spent [`STUCK`] or more on its read: a lookup now is late at
    /// once, and stays so until a read returns.
    pub fn stuck(&self) -> bool {
        let s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        all_stuck(&s, self.shared.alive.load(Ordering::Acquire), STUCK).is_none()
    }

    /// Prefetches one process and waits up to `wait` for it (for callers away from the bottom
    /// of memory: the start-up warm-up, tests).
    pub fn read(&self, who: Who, wait: Duration) -> Option<Facts> {
        match self.wait_for(who, wait, None) {
            Lookup::Found(f) => Some(f),
            Lookup::Gone | Lookup::Late => None,
        }
    }

    /// Prefetches one process and waits up to `wait` for its facts; tells a process that is
    /// gone from one not read in time. Gives up as soon as its own read has taken [`STUCK`],
    /// or, while it waits for a reader, every reader has spent that long on a read: a read
    /// that slow waits on a process's mmap lock, and may for seconds.
    pub fn lookup(&self, who: Who, wait: Duration) -> Lookup {
        self.wait_for(who, wait, Some(STUCK))
    }

    fn wait_for(&self, who: Who, wait: Duration, stuck: Option<Duration>) -> Lookup {
        self.prefetch([who]);
        let deadline = Instant::now() + wait;
        let mut s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((_, f, _)) = s
                .kept
                .iter()
                .find(|(w, _, at)| *w == who && at.elapsed() < FRESH)
            {
                return Lookup::Found(f.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let alive = self.shared.alive.load(Ordering::Acquire);
            if left.is_zero() || alive == 0 {
                return Lookup::Late;
            }
            // With `stuck`, looked at again at least that often: a reader takes a request
            // without a word, and from then on it is the time it spends on it that counts.
            let mut nap = stuck.map_or(left, |st| left.min(st));
            if let Some(&(_, since)) = s.reading.iter().find(|(w, _)| *w == who) {
                if let Some(stuck) = stuck {
                    let spent = since.elapsed();
                    if spent >= stuck {
                        return Lookup::Late;
                    }
                    nap = nap.min(stuck - spent);
                }
            } else if s.want.contains(&who) {
                // Waits for a reader: in vain while every one is stuck.
                if let Some(stuck) = stuck {
                    match all_stuck(&s, alive, stuck) {
                        None => return Lookup::Late,
                        Some(until) => nap = nap.min(until),
                    }
                }
            } else {
                // Read and not kept: the process is gone (or was never there).
                return Lookup::Gone;
            }
            s = self
                .shared
                .cv
                .wait_timeout(s, nap)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// `None` when all `alive` readers have spent `stuck` or more on their reads; else how long
/// until that could first be so (`stuck` itself while a reader is idle).
fn all_stuck(s: &Slot, alive: usize, stuck: Duration) -> Option<Duration> {
    if s.idle > 0 || s.reading.len() < alive {
        // A reader is idle, or between two requests.
        return Some(stuck);
    }
    s.reading
        .iter()
        .map(|(_, since)| since.elapsed())
        .filter(|spent| *spent < stuck)
        .map(|spent| stuck - spent)
        .min()
}

/// One reader's loop: takes the first request waiting, reads it, keeps the facts.
fn serve(sh: &Shared, mut reader: ProcReader, prefer_v2: bool, cmdlines: bool) {
    loop {
        let who = {
            let mut s = sh.slot.lock().unwrap_or_else(|e| e.into_inner());
            while s.want.is_empty() {
                if sh.closed.load(Ordering::Acquire) {
                    return;
                }
                s.idle += 1;
                s = sh.cv.wait(s).unwrap_or_else(|e| e.into_inner());
                s.idle -= 1;
                super::breath::rested();
            }
            let w = s.want.remove(0);
            s.reading.push((w, Instant::now()));
            w
        };
        let facts = read_facts(&mut reader, who, prefer_v2, cmdlines);
        let mut s = sh.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = s.reading.iter().position(|(w, _)| *w == who) {
            s.reading.swap_remove(i);
        }
        if let Some(facts) = facts {
            s.kept.retain(|(w, _, _)| *w != who);
            s.kept.push((who, facts, Instant::now()));
            if s.kept.len() > KEPT {
                s.kept.remove(0);
            }
        }
        sh.cv.notify_all();
    }
}

/// What [`Details::lookup`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Facts),
    /// Read, and the process is gone (or its PID is someone else's now).
    Gone,
    /// Not read in time (the read is stuck, or waits for a reader and every one is stuck).
    Late,
}

/// How long one read may take before its reader counts as stuck on it: a read of a command
/// line takes microseconds unless it waits on the process's mmap lock.
const STUCK: Duration = Duration::from_millis(5);

/// `None` when the process is gone or its PID now belongs to another process. Without
/// `cmdlines`, the cgroup path alone (a process whose cgroup cannot be read is gone).
fn read_facts(
    reader: &mut ProcReader,
    (pid, start): Who,
    prefer_v2: bool,
    cmdlines: bool,
) -> Option<Facts> {
    let (cmdline, cgroup) = if cmdlines {
        let cmdline = reader.cmdline(pid).ok()?;
        let text = reader.cgroup_text(pid).ok();
        (cmdline, text)
    } else {
        (String::new(), Some(reader.cgroup_text(pid).ok()?))
    };
    let cgroup =
        cgroup.and_then(|t| super::cgroup::memory_path_of(&t, prefer_v2).map(str::to_string));
    // Read after the command line: the same process all along.
    (reader.stat(pid).ok()?.starttime == start).then_some((cmdline, cgroup))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(pid: i32, start: u64) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("proc/{pid}"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("cgroup"), "0::/system.slice/x.service\n").unwrap();
        std::fs::write(
            p.join("stat"),
            format!("{pid} (x) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 100000 10 18446744073709551615 0 0\n"),
        )
        .unwrap();
        let root = Root::new(dir.path());
        (dir, root)
    }

    /// Cgroup readers read the cgroup path alone: a command line that cannot be read (a FIFO
    /// nobody writes, as a process whose mmap lock is held) does not hold them up; a process
    /// without a readable cgroup is gone.
    #[test]
    fn cgroup_readers_read_no_command_line() {
        let (dir, root) = tree(42, 777);
        let fifo = dir.path().join("proc/42/cmdline");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let d = Details::start_cgroups(&root, true, None).unwrap();
        assert_eq!(
            d.lookup((42, 777), Duration::from_secs(5)),
            Lookup::Found((String::new(), Some("/system.slice/x.service".into())))
        );
        std::fs::remove_file(dir.path().join("proc/42/cgroup")).unwrap();
        assert_eq!(d.lookup((43, 1), Duration::from_secs(5)), Lookup::Gone);
    }

    #[test]
    fn facts_read_ahead_are_looked_up_without_reading() {
        let (dir, root) = tree(4242, 777);
        let cmdline = dir.path().join("proc/4242/cmdline");
        std::fs::write(&cmdline, b"php-fpm\0-R\0").unwrap();
        let d = Details::start(&root, true, None).unwrap();
        assert_eq!(d.cached((4242, 777)), None, "nothing read ahead yet");
        let got = d.read((4242, 777), Duration::from_secs(5)).unwrap();
        assert_eq!(got.0, "php-fpm -R");
        assert_eq!(got.1.as_deref(), Some("/system.slice/x.service"));
        // The lookup does not read: the file is gone and the kept facts still answer.
        std::fs::remove_file(&cmdline).unwrap();
        assert_eq!(d.cached((4242, 777)).unwrap().0, "php-fpm -R");
        // Another start time is another process (a reused PID): not the kept facts.
        assert_eq!(d.cached((4242, 778)), None);
        assert_eq!(d.read((4242, 778), Duration::from_secs(5)), None);
        // A process that is gone reads as nothing.
        assert_eq!(d.read((9999, 1), Duration::from_secs(5)), None);
    }

    /// Kept facts answer for [`FRESH`], then are read again: a process that exec'd or moved to
    /// another cgroup under the same PID and start time is not matched on what it was.
    #[test]
    fn kept_facts_are_read_again_once_stale() {
        let (dir, root) = tree(4343, 777);
        let cmdline = dir.path().join("proc/4343/cmdline");
        std::fs::write(&cmdline, b"before\0").unwrap();
        let d = Details::start(&root, true, None).unwrap();
        let look = |d: &Details| match d.lookup((4343, 777), Duration::from_secs(5)) {
            Lookup::Found(f) => f.0,
            other => panic!("{other:?}"),
        };
        assert_eq!(look(&d), "before");
        std::fs::write(&cmdline, b"after\0").unwrap();
        assert_eq!(look(&d), "before", "fresh facts answer without a read");
        std::thread::sleep(FRESH + Duration::from_millis(50));
        assert_eq!(
            d.cached((4343, 777)).unwrap().0,
            "before",
            "cached never reads"
        );
        assert_eq!(look(&d), "after");
    }

    /// `lookup` tells a process that is gone from one not read in time, and gives up on its
    /// own stuck read after [`STUCK`], not after `wait`. While one reader is stuck, the other
    /// reads everyone else's facts; once every reader is stuck, a lookup is late at once; and
    /// when the reads return, the readers go on.
    #[test]
    fn a_lookup_tells_gone_from_late_and_one_stuck_read_holds_up_no_other() {
        use rustix::fs::{Mode, OFlags};
        assert_eq!(
            READERS, 2,
            "the test sticks every reader but one, then the last"
        );
        let (dir, root) = tree(4242, 777);
        std::fs::write(dir.path().join("proc/4242/cmdline"), b"x\0").unwrap();
        let d = Details::start(&root, true, None).unwrap();
        assert_eq!(d.lookup((9999, 1), Duration::from_secs(5)), Lookup::Gone);
        assert!(matches!(
            d.lookup((4242, 777), Duration::from_secs(5)),
            Lookup::Found((c, _)) if c == "x"
        ));
        // Processes whose command line blocks (FIFOs nobody writes).
        let stuck = |pid: i32| {
            let p = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            let fifo = p.join("cmdline");
            rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
            std::fs::copy(dir.path().join("proc/4242/stat"), p.join("stat")).unwrap();
            fifo
        };
        let (f1, f2) = (stuck(4243), stuck(4244));
        let plain = |pid: i32, text: &[u8]| {
            let p = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cmdline"), text).unwrap();
            std::fs::copy(dir.path().join("proc/4242/stat"), p.join("stat")).unwrap();
        };
        plain(4245, b"second\0");
        plain(4246, b"third\0");

        let t = Instant::now();
        assert_eq!(d.lookup((4243, 777), Duration::from_secs(5)), Lookup::Late);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(!d.stuck(), "one reader is stuck, the other is free");
        // Another process, while one reader is stuck: read by the other.
        let t = Instant::now();
        assert!(
            matches!(
                d.lookup((4245, 777), Duration::from_secs(5)),
                Lookup::Found((c, _)) if c == "second"
            ),
            "a stuck read held up another process's"
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // The other reader sticks too: from then on a lookup is late at once.
        assert_eq!(d.lookup((4244, 777), Duration::from_secs(5)), Lookup::Late);
        assert!(d.stuck());
        let t = Instant::now();
        assert_eq!(d.lookup((4246, 777), Duration::from_secs(5)), Lookup::Late);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // The reads return (a writer that writes nothing: an empty command line); the readers
        // go on with what waits.
        for f in [&f1, &f2] {
            let w = rustix::fs::open(f, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
            drop(w);
        }
        let until = Instant::now() + Duration::from_secs(10);
        while d.stuck() {
            assert!(Instant::now() < until, "the readers never came back");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(
            d.lookup((4246, 777), Duration::from_secs(5)),
            Lookup::Found((c, _)) if c == "third"
        ));
    }

    /// A command line whose read blocks (a FIFO nobody writes, as a cmdline read stalls at the
    /// bottom of memory): prefetching and looking up never wait, and once the read returns
    /// the thread goes on with the next request.
    #[test]
    fn a_read_that_blocks_never_stalls_the_caller() {
        use rustix::fs::{Mode, OFlags};
        let (dir, root) = tree(4242, 777);
        let fifo = dir.path().join("proc/4242/cmdline");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        let d = Details::start(&root, true, None).unwrap();

        let t = Instant::now();
        d.prefetch([(4242, 777)]);
        std::thread::sleep(Duration::from_millis(50));
        // A reader is stuck in open(2) of the FIFO.
        for _ in 0..100 {
            d.prefetch([(4242, 777)]);
            assert_eq!(d.cached((4242, 777)), None);
        }
        assert_eq!(d.read((4242, 777), Duration::from_millis(30)), None);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the caller waited {:?} on a stuck read",
            t.elapsed()
        );

        // Unblock the stuck read: a writer that writes nothing and closes (the read gives an
        // empty command line). Then a plain file, read at the next request.
        let w = rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        drop(w);
        let until = Instant::now() + Duration::from_secs(10);
        while d.cached((4242, 777)).is_none() {
            assert!(Instant::now() < until, "the thread never came back");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(&fifo).unwrap();
        std::fs::write(&fifo, b"sleep\x00100\x00").unwrap();
        std::fs::create_dir_all(dir.path().join("proc/4243")).unwrap();
        std::fs::copy(
            dir.path().join("proc/4242/stat"),
            dir.path().join("proc/4243/stat"),
        )
        .unwrap();
        std::fs::write(dir.path().join("proc/4243/cmdline"), b"next\x00").unwrap();
        // 4243's stat says start time 777 too (copied).
        let got = d.read((4243, 777), Duration::from_secs(5)).unwrap();
        assert_eq!(got.0, "next");
    }
}
