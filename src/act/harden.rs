//! Self-hardening of the daemon: its own `oom_score_adj` and priority ([`protect_self`]), its
//! memory trimmed and locked so the kill path takes no page faults ([`trim_and_lock`]), and the
//! capabilities only its start needs given up after it ([`shed_capabilities`]).

use std::sync::atomic::{AtomicI32, Ordering};

use rustix::thread::CapabilitySet;

/// What only the task iterator's start needs ([`crate::sense::tasks`]): CAP_PERFMON and CAP_BPF
/// to load its program. Older kernels also ask for CAP_BPF at each pass's `BPF_ITER_CREATE`
/// (`kernel.unprivileged_bpf_disabled` guarded every `bpf()` command there; Debian 12's 6.1 and
/// 6.18 guard only creating maps and loading programs).
/// With CAP_PERFMON a thread could load tracing programs that read kernel memory: no thread
/// keeps it once the guard loop runs.
pub const ITERATOR_CAPS: CapabilitySet = CapabilitySet::BPF.union(CapabilitySet::PERFMON);

/// Gives up `set` in the calling thread for good (effective, permitted and inheritable: not even
/// a program it starts gets them back; the ambient set follows). Capabilities are per thread:
/// each thread sheds its own. A thread that holds none of them changes nothing.
pub fn shed_capabilities(set: CapabilitySet) -> rustix::io::Result<()> {
    let mut c = rustix::thread::capabilities(None)?;
    if !(c.effective | c.permitted | c.inheritable).intersects(set) {
        return Ok(());
    }
    c.effective.remove(set);
    c.permitted.remove(set);
    c.inheritable.remove(set);
    rustix::thread::set_capabilities(None, c)
}

/// Lowers (`false`) or raises again (`true`) `set` in the calling thread's effective set only:
/// to try whether something works without it.
pub fn set_effective(set: CapabilitySet, on: bool) -> rustix::io::Result<()> {
    let mut c = rustix::thread::capabilities(None)?;
    c.effective.set(set, on);
    rustix::thread::set_capabilities(None, c)
}

/// For the daemon's side threads and the log thread, at their start: none of them ever loads
/// or runs the task iterator.
pub fn shed_iterator_capabilities() {
    let _ = shed_capabilities(ITERATOR_CAPS);
}

/// Drops the page-table entries of code and read-only file pages that only start-up used
/// (argument and config parsing), then locks memory on fault: the daemon keeps the pages its
/// loop touches, and those can never be reclaimed or swapped. Only pages of file-backed,
/// read-only, private mappings are dropped, and of those only the ones still shared with the
/// page cache (they re-fault unchanged); a copied-on-write page (one the dynamic loader
/// relocated: the GOT in a RELRO mapping, a library's relocated tables) is kept, found by
/// `/proc/self/pagemap`, as are writable mappings. Can be called again: locked mappings are
/// unlocked first (the kernel refuses to drop locked pages).
///
/// Our own binary's pages are also dropped from the page cache, and its mappings marked
/// random-access. Otherwise each fault maps the cached pages around it (fault-around, 64 KiB)
/// and every one of them stays locked: the constants the loop reads are spread over the 2 MiB
/// of `.rodata`, and they kept about 400 KiB resident. Evicted, a fault reads back only its own
/// page (no read-around on a random-access mapping). Code is still read around on a fault
/// whatever the advice (recent kernels read executable mappings around by a rule of their
/// own); the link order keeps the code the loop runs together instead (`link/hot-first.sh`).
/// Since Linux 6.18 a fault maps the whole large folio it hits when the folio fits the mapping
/// and its page table, and ext4 fills the cache with folios of up to the read-ahead size: a
/// folio that holds the last hot page and cold code after it is mapped, and locked, whole
/// (16 to 32 more pages, when the page cache holds such a folio there).
/// `tests/link_order.rs` tells those apart by their frames.
/// Pages another process maps stay cached. A page the warm-up did not touch now comes back
/// from disk rather than from the cache; under memory pressure, when the guard acts, the
/// cache would have lost it anyway, and only what is locked is sure to be there.
pub fn trim_and_lock() -> Option<String> {
    let _ = rustix::mm::munlockall();
    let exe_path = std::fs::read_link("/proc/self/exe").ok();
    let exe = std::fs::File::open("/proc/self/exe").ok();
    let pagemap = std::fs::File::open("/proc/self/pagemap").ok();
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        let mut current: Option<(usize, usize, bool)> = None;
        let mut drop_ranges = Vec::new();
        let mut own = Vec::new();
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            let first = f.next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = f.next().unwrap_or("");
                let path = f.nth(3).unwrap_or("");
                let eligible = perms.len() == 4
                    && &perms[1..2] == "-"
                    && &perms[3..4] == "p"
                    && path.starts_with('/');
                if eligible && exe_path.as_deref().is_some_and(|e| e.as_os_str() == path) {
                    own.push((start, end));
                }
                current = Some((start, end, eligible));
            } else if first == "Anonymous:"
                && let Some((start, end, true)) = current
            {
                if f.next() == Some("0") {
                    drop_ranges.push((start, end));
                } else if let Some(pm) = &pagemap {
                    // Relocated pages among clean ones (a RELRO mapping with the GOT): only
                    // the runs of pages still in the page cache.
                    shared_runs(pm, start, end, &mut drop_ranges);
                }
            }
        }
        for (start, end) in own {
            // SAFETY: advice only; the mapping's contents do not change.
            let _ = unsafe {
                rustix::mm::madvise(
                    start as *mut std::ffi::c_void,
                    end - start,
                    rustix::mm::Advice::Random,
                )
            };
        }
        for (start, end) in drop_ranges {
            // SAFETY: the range lies in a read-only private file mapping and holds no
            // anonymous (copied) page: a whole mapping without any, or a run of pages that
            // pagemap showed as page-cache pages (a read-only mapping cannot be written, so
            // none is copied since); MADV_DONTNEED only drops PTEs, which re-fault with the
            // same file contents.
            let _ = unsafe {
                rustix::mm::madvise(
                    start as *mut std::ffi::c_void,
                    end - start,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
        // Right after the drop, before the other threads map much back: only pages nobody
        // maps are evicted.
        if let Some(exe) = &exe {
            write_back(exe);
            let _ = rustix::fs::fadvise(exe, 0, None, rustix::fs::Advice::DontNeed);
        }
    }
    use rustix::mm::MlockAllFlags;
    rustix::mm::mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .err()
        .map(|e| format!("mlockall failed ({e}); the daemon's memory may be swapped or reclaimed under pressure"))
}

/// Appends to `out` the runs of pages in `start..end` (a read-only private file mapping) that
/// are mapped from the page cache, by `/proc/self/pagemap` (bit 63: present; bit 61: a file
/// page, clear for a private copy). Pages not present are skipped (nothing to drop); on any
/// read error nothing is appended, so a copied page is never dropped.
fn shared_runs(pagemap: &std::fs::File, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    use std::os::unix::fs::FileExt;
    let page = rustix::param::page_size();
    const PRESENT: u64 = 1 << 63;
    const FILE: u64 = 1 << 61;
    let pages = (end - start) / page;
    let mut raw = vec![0u8; pages * 8];
    if pagemap
        .read_exact_at(&mut raw, (start / page * 8) as u64)
        .is_err()
    {
        return;
    }
    let mut run: Option<usize> = None;
    for (i, e) in raw.chunks_exact(8).enumerate() {
        let e = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
        let addr = start + i * page;
        if e & PRESENT != 0 && e & FILE != 0 {
            run.get_or_insert(addr);
        } else if let Some(s) = run.take() {
            out.push((s, addr));
        }
    }
    if let Some(s) = run {
        out.push((s, end));
    }
}

/// Writes back and waits for the dirty page-cache pages of `file` (data only: no metadata, no
/// flush of the disk's cache; nothing to do, and quick, when none are dirty). The kernel does not
/// evict dirty pages on `POSIX_FADV_DONTNEED` (it starts their writeback and leaves them): a
/// binary copied or installed moments before the daemon started (`cp`, `cargo install`, a CI
/// job; dpkg syncs what it unpacks) would stay cached whole, and fault-around would map, and
/// the lock keep, 64 KiB of it around every page the loop touches.
fn write_back(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a system call on a descriptor we own; it reads no memory of ours.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
}

/// Returns the heap's free pages to the kernel (glibc keeps what start-up and the warm-up freed
/// at the top of the heap and in each thread's arena). Called once, after the warm-up.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The nice value for work that can wait: the one the daemon started with (its unit's
/// `Nice=`, or its parent's), but not below 0 once [`protect_self`] has raised the guard loop
/// to −20 (the shipped unit's `Nice=-10` is for the guard loop, not for a D-Bus connection or a
/// hook). Side threads go to it ([`to_base_priority`]). `i32::MIN` until `protect_self` has
/// run.
static BASE_NICE: AtomicI32 = AtomicI32::new(i32::MIN);

/// Puts the calling thread at the base nice value ([`BASE_NICE`]; a side thread:
/// the event-log writer, hooks, notifications, metrics, the watch list). Only the guard loop
/// and what it waits for or races with need nice −20 (the read-ahead of command lines, on the
/// kill path; the protection thread, which races new processes); a side thread's work at
/// −20 (a JSON record, a hook and its children) would take the CPU from the machine's own
/// tasks when memory runs out, a single-CPU machine's above all. Linux keeps a nice value per
/// thread, and new threads and processes inherit the caller's. Does nothing before
/// [`protect_self`].
pub fn to_base_priority() {
    let base = BASE_NICE.load(Ordering::Relaxed);
    if base != i32::MIN {
        let _ = rustix::process::setpriority_process(None, base);
    }
}

/// Runs `f` on the calling thread at the base nice value ([`BASE_NICE`]), then puts the
/// thread's nice value back: work of the guard loop that is not urgent (the settle's trim,
/// lock and warm-up) leaves the CPU to the machine's tasks meanwhile. Just `f` before
/// [`protect_self`].
pub fn at_base_priority<T>(f: impl FnOnce() -> T) -> T {
    let before = rustix::process::getpriority_process(None);
    to_base_priority();
    let out = f();
    if let Ok(nice) = before {
        let _ = rustix::process::setpriority_process(None, nice);
    }
    out
}

/// Protects the daemon itself: lowest `oom_score_adj` and highest priority where permitted,
/// and the open-file limit raised to its hard limit (memory is locked later, by
/// [`trim_and_lock`]). Returns warnings for what was refused.
pub fn protect_self() -> Vec<String> {
    let mut notes = Vec::new();
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        notes.push(format!(
            "cannot set our own oom_score_adj to -1000 ({e}; needs CAP_SYS_RESOURCE): the kernel's OOM killer could pick oomguard"
        ));
    }
    notes.extend(raise_fd_limit());
    let start = rustix::process::getpriority_process(None);
    let raised = rustix::process::setpriority_process(None, -20);
    if let Ok(start) = start {
        // Work that can wait runs no higher than the machine's own tasks (a unit's `Nice=-10` is
        // for the guard), but only if the guard loop can come back from there: it could raise
        // its priority just now, and `at_base_priority` returns to −20 after such work.
        let base = if raised.is_ok() { start.max(0) } else { start };
        BASE_NICE.store(base, Ordering::Relaxed);
    }
    if let Err(e) = raised {
        notes.push(format!(
            "cannot raise our priority (nice -20: {e}); under a storm the daemon may wake late"
        ));
    }
    notes
}

/// Raises the open-file limit to its hard limit (at most 2^20): a tree or group kill holds a
/// pidfd for every member it signals (`act::kill`), and a fork storm can have thousands.
/// Returns a warning if that was refused.
pub fn raise_fd_limit() -> Option<String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(1 << 20).min(1 << 20);
    if lim.current.is_some_and(|c| c >= want) {
        return None;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        },
    )
    .err()
    .map(|e| {
        format!(
            "cannot raise the open-file limit to {want} ({e}): a tree kill pins each member with \
             a pidfd, and members beyond the limit are not signalled"
        )
    })
}
