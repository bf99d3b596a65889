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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Root;
use super::breath::Breath;
use super::procs::ProcReader;

/// The command line (empty when unreadable) and the memory cgroup path of one process.
pub type Facts = (String, Option<String>);

/// How many processes' facts are kept (the likely victims of the last look).
const KEPT: usize = 4;

/// A process: PID and start time (clock ticks after boot), so a reused PID never matches.
type Who = (i32, u64);

#[derive(Default)]
struct Slot {
    /// Processes to read, in order (replaced by each prefetch).
    want: Vec<Who>,
    /// The process the thread is reading now (a request taken and not answered yet), and
    /// since when.
    reading: Option<(Who, Instant)>,
    /// What was read, oldest first.
    kept: Vec<(Who, Facts)>,
}

struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
    /// The thread has ended (only on a bug: its panic is contained, see `record::side`).
    gone: AtomicBool,
}

/// The reader thread's handle (see the module documentation).
pub struct Details {
    shared: Arc<Shared>,
}

/// Marks the thread gone however it ends.
struct GoneOnDrop(Arc<Shared>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Release);
        self.0.cv.notify_all();
    }
}

impl Details {
    /// Starts the thread, with its own `/proc` reader under `root`. `prefer_v2`: which memory
    /// cgroup path to report when a process is in both hierarchies. `breath`: how the thread
    /// shares the CPU while it reads ([`super::breath`]).
    pub fn start(root: &Root, prefer_v2: bool, breath: Option<Breath>) -> std::io::Result<Details> {
        let mut reader = ProcReader::open(root)?;
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                want: Vec::with_capacity(KEPT),
                reading: None,
                kept: Vec::with_capacity(KEPT + 1),
            }),
            cv: Condvar::new(),
            gone: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let root = root.clone();
        crate::record::side::spawn("oomguard-details", move || {
            super::breath::enable(breath, &root);
            let guard = GoneOnDrop(theirs);
            let sh = &guard.0;
            loop {
                let who = {
                    let mut s = sh.slot.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if !s.want.is_empty() {
                            let w = s.want.remove(0);
                            s.reading = Some((w, Instant::now()));
                            break w;
                        }
                        s = sh.cv.wait(s).unwrap_or_else(|e| e.into_inner());
                        super::breath::rested();
                    }
                };
                let facts = read_facts(&mut reader, who, prefer_v2);
                let mut s = sh.slot.lock().unwrap_or_else(|e| e.into_inner());
                s.reading = None;
                if let Some(facts) = facts {
                    s.kept.retain(|(w, _)| *w != who);
                    s.kept.push((who, facts));
                    if s.kept.len() > KEPT {
                        s.kept.remove(0);
                    }
                }
                sh.cv.notify_all();
            }
        })?;
        Ok(Details { shared })
    }

    /// Asks for the facts of these processes (at most [`KEPT`], the likeliest first) that are
    /// neither kept nor being read; replaces an earlier request still waiting. Never waits for the reads.
    pub fn prefetch(&self, who: impl IntoIterator<Item = Who>) {
        let mut s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        s.want.clear();
        for w in who.into_iter().take(KEPT) {
            if s.reading.is_none_or(|(r, _)| r != w)
                && !s.want.contains(&w)
                && !s.kept.iter().any(|(k, _)| *k == w)
            {
                s.want.push(w);
            }
        }
        if !s.want.is_empty() {
            self.shared.cv.notify_all();
        }
    }

    /// The facts of the process if they were read ahead; never reads.
    pub fn cached(&self, who: Who) -> Option<Facts> {
        let s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        s.kept
            .iter()
            .find(|(w, _)| *w == who)
            .map(|(_, f)| f.clone())
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
    /// gone from one not read in time. Gives up as soon as the thread has spent [`STUCK`] on
    /// one read (this one's or another's that it queues behind): a read that slow waits on a
    /// process's mmap lock, and may for seconds.
    pub fn lookup(&self, who: Who, wait: Duration) -> Lookup {
        self.wait_for(who, wait, Some(STUCK))
    }

    fn wait_for(&self, who: Who, wait: Duration, stuck: Option<Duration>) -> Lookup {
        self.prefetch([who]);
        let deadline = Instant::now() + wait;
        let mut s = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((_, f)) = s.kept.iter().find(|(w, _)| *w == who) {
                return Lookup::Found(f.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.shared.gone.load(Ordering::Acquire) {
                return Lookup::Late;
            }
            // With `stuck`, looked at again at least that often: the thread takes a request
            // without a word, and from then on it is the time it spends on it that counts.
            let mut nap = stuck.map_or(left, |st| left.min(st));
            match (s.reading, stuck) {
                (Some((_, since)), Some(stuck)) => {
                    let spent = since.elapsed();
                    if spent >= stuck {
                        return Lookup::Late;
                    }
                    nap = nap.min(stuck - spent);
                }
                (None, _) if s.want.is_empty() => {
                    // Read and not kept: the process is gone (or was never there).
                    return Lookup::Gone;
                }
                _ => {}
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

/// What [`Details::lookup`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Facts),
    /// Read, and the process is gone (or its PID is someone else's now).
    Gone,
    /// Not read in time (the read is stuck, or waits behind one that is).
    Late,
}

/// How long one read may take before the thread counts as stuck on it: a read of a command
/// line takes microseconds unless it waits on the process's mmap lock.
const STUCK: Duration = Duration::from_millis(5);

/// `None` when the process is gone or its PID now belongs to another process.
fn read_facts(reader: &mut ProcReader, (pid, start): Who, prefer_v2: bool) -> Option<Facts> {
    let cmdline = reader.cmdline(pid).ok()?;
    let cgroup = reader
        .cgroup_text(pid)
        .ok()
        .and_then(|t| super::cgroup::memory_path_of(&t, prefer_v2).map(str::to_string));
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

    /// `lookup` tells a process that is gone from one not read in time, and gives up on a
    /// thread stuck on one read (its own or another's) after [`STUCK`], not after `wait`.
    #[test]
    fn a_lookup_tells_gone_from_late_and_gives_up_on_a_stuck_read() {
        use rustix::fs::{Mode, OFlags};
        let (dir, root) = tree(4242, 777);
        std::fs::write(dir.path().join("proc/4242/cmdline"), b"x\0").unwrap();
        let d = Details::start(&root, true, None).unwrap();
        assert_eq!(d.lookup((9999, 1), Duration::from_secs(5)), Lookup::Gone);
        assert!(matches!(
            d.lookup((4242, 777), Duration::from_secs(5)),
            Lookup::Found((c, _)) if c == "x"
        ));
        std::fs::create_dir_all(dir.path().join("proc/4243")).unwrap();
        let fifo = dir.path().join("proc/4243/cmdline");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        std::fs::copy(
            dir.path().join("proc/4242/stat"),
            dir.path().join("proc/4243/stat"),
        )
        .unwrap();
        let t = Instant::now();
        assert_eq!(d.lookup((4243, 777), Duration::from_secs(5)), Lookup::Late);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // Another process behind the stuck read: late at once.
        let t = Instant::now();
        assert_eq!(d.lookup((4242, 778), Duration::from_secs(5)), Lookup::Late);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let w = rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        drop(w);
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
        // The thread is stuck in open(2) of the FIFO.
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
