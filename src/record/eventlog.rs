//! The event log (`docs/cli-contract.md`): one JSON object per line, appended and fsynced before
//! the daemon's next action, never rewritten. Every record has `time`, `action`, `scope`,
//! `host`; the rest depends on the action. Readers skip a torn last line with a warning.
//!
//! The records and their fields (the wire format) are documented in [`super::event`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::event::{Event, Record};
use super::side::HEALTH;

/// The default path: `/var/lib/oomguard/events.jsonl` for root, else
/// `$XDG_STATE_HOME/oomguard/events.jsonl` (`~/.local/state/...`; the home directory from the
/// user database when HOME is not set), else `/tmp/oomguard-UID/events.jsonl`.
pub fn default_path() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from("/var/lib/oomguard/events.jsonl");
    }
    match state_home(
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
        || passwd_home(uid.as_raw()),
    ) {
        Some(state) => state.join("oomguard/events.jsonl"),
        None => PathBuf::from(format!("/tmp/oomguard-{}/events.jsonl", uid.as_raw())),
    }
}

/// The state directory: `xdg` if absolute (the XDG spec ignores a relative one), else
/// `HOME/.local/state` for an absolute `home`, else the same under the home directory of the
/// user database (`passwd`). None without any: the caller falls back to a directory of its
/// own under `/tmp`, one per user (a shared `/tmp/oomguard` could be made first by another
/// user, who could then read, replace or fill what is written there).
fn state_home(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
    passwd: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    let absolute = |p: PathBuf| p.is_absolute().then_some(p);
    xdg.map(PathBuf::from).and_then(absolute).or_else(|| {
        home.map(PathBuf::from)
            .and_then(absolute)
            .or_else(passwd)
            .map(|h| h.join(".local/state"))
    })
}

/// The home directory of `uid` in the user database (`getpwuid_r`, through NSS): None when it
/// has no entry, or its home is `/` or a directory that does not exist (`nobody`'s
/// `/nonexistent`), where no state directory could be made.
fn passwd_home(uid: u32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is plain data (integers and pointers): all zeroes is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pw` and `buf` outlive the call and the reads of `pw`'s strings below, which
        // point into `buf` (of the length given); `out` is set to `&pw` or null.
        let r =
            unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if r != 0 || out.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string in `buf`, set by getpwuid_r.
        let dir = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) };
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        return (dir.is_absolute() && dir != Path::new("/") && dir.is_dir()).then_some(dir);
    }
}

/// The first directory on the way to `dir` that is another user's, and its owner: neither the
/// effective uid's nor root's. An event log or a lock there could be read, replaced or filled
/// by that user (a directory made first, under `/tmp`, by someone else), and the owner of any
/// directory above it could rename it away and put one of their own in its place (as sshd's
/// StrictModes reasons). Checked: `dir` and each directory above it as the path names them
/// (a symbolic link by its own owner), then as the path resolves; parts not made yet are
/// skipped (they will be ours). None when every one is ours or root's, or cannot be read
/// (what opens there then says why).
pub fn foreign_owner(dir: &Path) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let theirs = |m: std::fs::Metadata| Some(m.uid()).filter(|&u| u != me && u != 0);
    let named = std::path::absolute(dir).ok()?;
    for a in named.ancestors() {
        if let Some(owner) = std::fs::symlink_metadata(a).ok().and_then(theirs) {
            return Some((a.to_path_buf(), owner));
        }
    }
    let real = named
        .ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok())?;
    real.ancestors().find_map(|a| {
        let owner = std::fs::metadata(a).ok().and_then(theirs)?;
        Some((a.to_path_buf(), owner))
    })
}

/// The event log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The path names something other than a regular file (a usage error: exit code 2).
    #[error(
        "event log {path}: {what}, not a regular file; the event log must be a regular file \
         (choose another path with --event-log)"
    )]
    NotRegular { path: PathBuf, what: &'static str },
    /// Its directory does not exist and cannot be made.
    #[error(
        "event log {path}: cannot create its directory {dir}: {source} \
         (choose another path with --event-log)"
    )]
    Dir {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "event log {path}: cannot open it for appending: {source} \
         (choose another path with --event-log)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory on its path belongs to another user (see [`foreign_owner`]).
    #[error(
        "event log {path}: {dir}, a directory on its path, belongs to uid {owner}, not to you \
         (uid {me}) or root: that user could read, replace or fill the log (remove the \
         directory or give it to root, or choose another path with --event-log)"
    )]
    ForeignDir {
        path: PathBuf,
        dir: PathBuf,
        owner: u32,
        me: u32,
    },
    #[error("event log {path}: cannot start its writer thread: {source}")]
    Thread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl EventLogError {
    /// Whether the error is the user's to fix by choosing another path (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, EventLogError::NotRegular { .. })
    }
}

/// Records the writer's queue holds; more are dropped and counted (the loop never waits for
/// room).
pub const QUEUE: usize = 256;

/// How long `append` waits for its record to be written (into the file, not yet fsynced).
///
/// The contract says a record is appended and fsynced before the daemon's next action. Both
/// happen on the writer thread, so a slow disk, a full one or a hung NFS server can never
/// stall the guard loop: `append` waits only for the `write` (microseconds into the page
/// cache; at most this long, and not at all when the writer is already behind or still in
/// the fsync of the record before: that write could not start before the fsync ends), and the
/// writer fsyncs right after. The trade-off: the fsync is no longer awaited by the loop, so
/// a power loss in the few milliseconds between a kill and the fsync of its record can lose
/// that record, and on a stalled disk the guard keeps killing while its records wait (or are
/// counted as lost). Waiting for the fsync instead cost a 400 MiB hog race against the
/// kernel's OOM killer under load (tests/record_blocking.rs): guarding memory comes first,
/// the durable record of it a moment later. Readers (`oomguard events`) see the record as
/// soon as `append` returns, unless the writer was busy then: a moment later. Before its next
/// kill's first signal the daemon waits (at most this long again) until every earlier record
/// is fsynced: with a working disk the contract's order holds exactly.
pub const SYNC_WAIT: Duration = Duration::from_millis(250);

/// Bumped by the reopen signals (SIGUSR1, SIGHUP); writers reopen their file when it changes.
static REOPEN: AtomicU64 = AtomicU64::new(0);
/// Records queued in any event log and not yet written (or given up).
static UNWRITTEN: AtomicU64 = AtomicU64::new(0);

/// Makes SIGUSR1 and SIGHUP reopen every event log by its path (after logrotate moved it).
pub fn reopen_on_signals() -> std::io::Result<()> {
    for sig in [signal_hook::consts::SIGUSR1, signal_hook::consts::SIGHUP] {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, || {
                REOPEN.fetch_add(1, Ordering::SeqCst);
            })?;
        }
    }
    Ok(())
}

/// Waits (at most `timeout`) until every record queued in any event log is written: at exit.
/// Returns whether all were.
pub fn flush_all(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while UNWRITTEN.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// How far the writer has got.
#[derive(Debug, Default)]
struct Progress {
    /// Records handed to `append` (sequence numbers 1..=queued).
    queued: u64,
    /// Records written into the file (or given up); readers can see them.
    written: u64,
    /// Records the writer is done with (written and fsynced, or given up).
    done: u64,
    /// Records dropped because the queue was full, not yet reported by the writer.
    dropped: u64,
}

/// What the writer thread is handed.
#[derive(Debug)]
enum Msg {
    /// A record's line, to write and fsync.
    Line(Vec<u8>),
    /// A wake-up to reopen the path ([`EventLog::poke_reopen`]).
    Reopen,
    /// Run what a write does before it writes, and write nothing ([`EventLog::warm_up`]).
    WarmUp,
}

#[derive(Debug, Default)]
struct Shared {
    progress: Mutex<Progress>,
    cv: Condvar,
    /// The reopen generation last passed on to the writer ([`EventLog::poke_reopen`]).
    poked: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An append-only, fsynced JSON-lines log, shareable between threads. Appends never block on
/// the file: one writer thread per opened log writes and fsyncs (see [`SYNC_WAIT`]).
#[derive(Clone, Debug)]
pub struct EventLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    path: PathBuf,
    scope: String,
    host: String,
}

/// The time as RFC 3339 with milliseconds and the local offset.
pub fn now_rfc3339() -> String {
    let z = jiff::Timestamp::now().to_zoned(local_zone().clone());
    z.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// The local time zone, read once. `/etc/localtime` is read directly when `TZ` is unset:
/// `jiff::tz::TimeZone::system()` would also name the zone, which walks and keeps the whole
/// zoneinfo tree (about 1 900 names, 67 KiB of a daemon's heap). Its rules (DST included) are
/// all in the file; a zone changed while the daemon runs takes effect at its restart.
fn local_zone() -> &'static jiff::tz::TimeZone {
    static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        if std::env::var_os("TZ").is_none()
            && let Ok(data) = std::fs::read("/etc/localtime")
            && let Ok(z) = jiff::tz::TimeZone::tzif("localtime", &data)
        {
            return z;
        }
        jiff::tz::TimeZone::system()
    })
}

/// This machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn file_kind(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for appending, creating its directories and the file: only a regular file,
/// never through a symbolic link (`O_NOFOLLOW`), never opening a device or FIFO at all.
///
/// What it creates is made durable: the directory holding each new entry (a new file, a new
/// directory) is fsynced, as fsync(2) asks. Before, a new log's first records were fsynced but
/// its name was not: a crash soon after could leave a directory without the file, and the
/// records with it. A file that was there already costs nothing more.
pub fn open_file(path: &Path) -> Result<File, EventLogError> {
    let p = || path.to_path_buf();
    let new = new_entries(path);
    let hidepid =
        proc_hidepid(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        // Before anything is made in another user's directory.
        if let Some((theirs, owner)) = foreign_owner(dir) {
            return Err(EventLogError::ForeignDir {
                path: p(),
                dir: theirs,
                owner,
                me: rustix::process::geteuid().as_raw(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| EventLogError::Dir {
            path: p(),
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    // Refuse before opening: opening a device or a FIFO can have effects of its own.
    if let Ok(m) = std::fs::symlink_metadata(path)
        && !m.file_type().is_file()
    {
        return Err(EventLogError::NotRegular {
            path: p(),
            what: file_kind(m.file_type()),
        });
    }
    // Readable too: the writer looks at the last byte for a torn line before each record.
    let f = OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .mode(if hidepid.is_some() { 0o640 } else { 0o644 })
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => EventLogError::NotRegular {
                path: p(),
                what: "a symbolic link",
            },
            Some(libc::EISDIR) => EventLogError::NotRegular {
                path: p(),
                what: "a directory",
            },
            _ => EventLogError::Open { path: p(), source },
        })?;
    // And again on what was opened (the path may have been replaced in between).
    let m = f
        .metadata()
        .map_err(|source| EventLogError::Open { path: p(), source })?;
    if !m.file_type().is_file() {
        return Err(EventLogError::NotRegular {
            path: p(),
            what: file_kind(m.file_type()),
        });
    }
    // The group that hidepid lets see every process may read the log too.
    if let Some(Some(gid)) = hidepid
        && new.first() == Some(&path)
        && let Err(e) = rustix::fs::fchown(&f, None, Some(rustix::fs::Gid::from_raw(gid)))
    {
        log::warn!(
            "event log {}: cannot give it to group {gid}, which /proc's hidepid lets see every \
             process: {e}; only root can read it",
            path.display()
        );
    }
    for dir in new.iter().filter_map(|e| e.parent()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            log::warn!(
                "event log {}: cannot fsync the directory {} that holds what was created: {e}; \
                 a crash soon could lose the log's name, and its records with it",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(f)
}

/// Whether the `/proc` of this mount table (`/proc/self/mountinfo`; the last mount on `/proc`
/// is the one seen) hides other users' processes: `hidepid` set to anything but 0
/// (`noaccess`, `invisible`, `ptraceable` or their numbers). `Some(gid)`: the group it lets
/// see every process (`gid=`), if any.
///
/// A new event log is made 0640 there (an existing file keeps its mode), given to that group:
/// the log names processes of every user with their command lines, which such a host keeps
/// from other users. Elsewhere it is made 0644, so that any user can read it with `oomguard
/// events`, as any user can read `/proc`.
fn proc_hidepid(mountinfo: &str) -> Option<Option<u32>> {
    let options = mountinfo
        .lines()
        .filter_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            let mut fs = fs.split(' ');
            let (kind, _source, options) = (fs.next()?, fs.next()?, fs.next().unwrap_or(""));
            (kind == "proc" && mount.split(' ').nth(4) == Some("/proc")).then_some(options)
        })
        .next_back()?;
    let option = |name: &str| options.split(',').find_map(|o| o.strip_prefix(name));
    option("hidepid=")
        .filter(|v| !matches!(*v, "0" | "off"))
        .map(|_| option("gid=").and_then(|g| g.parse().ok()))
}

/// What opening `path` will create: the directories that do not exist yet and the file, from
/// the deepest up (each one's parent is to be fsynced once it exists). Empty when the file is
/// there.
fn new_entries(path: &Path) -> Vec<&Path> {
    let mut new = Vec::new();
    for a in path.ancestors() {
        if a.as_os_str().is_empty() || std::fs::symlink_metadata(a).is_ok() {
            break;
        }
        new.push(a);
    }
    new
}

impl EventLog {
    /// Opens (creating directories and the file) for appending and starts its writer thread.
    /// Errors: not a regular file (a FIFO, device, directory or symbolic link), a directory
    /// that cannot be created, a file that cannot be opened for writing (read-only file
    /// system, permissions).
    pub fn open(path: &Path, scope: &str) -> Result<EventLog, EventLogError> {
        let f = open_file(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            poked: AtomicU64::new(REOPEN.load(Ordering::SeqCst)),
            ..Shared::default()
        });
        let w = Writer {
            path: path.to_path_buf(),
            file: f,
            generation: REOPEN.load(Ordering::SeqCst),
            shared: shared.clone(),
            failing: None,
            lost: 0,
            dropped_reported: 0,
            unfollowed: None,
        };
        super::side::spawn_background("oomguard-eventlog", move || w.run(rx)).map_err(
            |source| EventLogError::Thread {
                path: path.to_path_buf(),
                source,
            },
        )?;
        Ok(EventLog {
            tx,
            shared,
            path: path.to_path_buf(),
            scope: scope.to_string(),
            host: hostname(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wakes the writer to reopen the file when a reopen signal came since the last call: the
    /// writer sleeps until it has something to do (no timed wake-ups when idle), so the loop
    /// that owns the log calls this on its wake-ups. Without it the file is reopened before the
    /// next record is written. One atomic load when nothing changed.
    pub fn poke_reopen(&self) {
        let g = REOPEN.load(Ordering::SeqCst);
        if self.shared.poked.swap(g, Ordering::SeqCst) != g {
            // A wake-up, nothing written. A full queue wakes it anyway.
            let _ = self.tx.try_send(Msg::Reopen);
        }
    }

    /// Has the writer thread run what it does before a write (a look at the file's end), and
    /// write nothing: the daemon's warm-up, after memory is locked on fault, so that the first
    /// record's write, which the next kill waits for ([`EventLog::sync`]), reads none of the
    /// writer's pages from storage. The first record after start-up otherwise did (the daemon
    /// drops its binary's unlocked pages from the page cache). Does not wait.
    pub fn warm_up(&self) {
        let _ = self.tx.try_send(Msg::WarmUp);
    }

    /// `event` as a record of this log (now, its scope and host) and the line written for
    /// it, with its newline.
    pub fn render(&self, event: Event) -> (Record, Vec<u8>) {
        self.render_record(Record::new(&self.scope, &self.host, event))
    }

    fn render_record(&self, rec: Record) -> (Record, Vec<u8>) {
        let mut line = serde_json::to_vec(&rec).unwrap_or_default();
        line.push(b'\n');
        (rec, line)
    }

    /// A record of `event` stamped now with this log's scope and host, not written: what the
    /// pre-kill hooks get before the `kill` record is written.
    pub fn stamp(&self, event: Event) -> Record {
        Record::new(&self.scope, &self.host, event)
    }

    /// Appends one record of `event`: `time`, `action`, `scope`, `host` and the event's
    /// fields, as one line. The writer thread writes it in one `write` and fsyncs; this waits
    /// for that at most [`SYNC_WAIT`]. A record that cannot be queued (the writer is far
    /// behind) is dropped and counted. Returns the record.
    pub fn append(&self, event: Event) -> Result<Record, EventLogError> {
        self.append_record(Record::new(&self.scope, &self.host, event), Append::Wait)
    }

    /// [`EventLog::append`], or without its wait for the write ([`Append::Queue`]: for records
    /// that nothing waits on; the next kill still waits for them, [`EventLog::sync`]), or only
    /// rendered, as a warm-up ([`Append::Dry`]: nothing is queued or written).
    pub fn append_as(&self, event: Event, how: Append) -> Result<Record, EventLogError> {
        self.append_record(Record::new(&self.scope, &self.host, event), how)
    }

    /// As [`EventLog::append`], with the record stamped `time` (taken when the decision was
    /// made, so that records a fixed interval apart are stamped that far apart however long
    /// each took to render).
    pub fn append_at(&self, time: String, event: Event) -> Result<Record, EventLogError> {
        self.append_record(
            Record::at(time, &self.scope, &self.host, event),
            Append::Wait,
        )
    }

    fn append_record(&self, rec: Record, how: Append) -> Result<Record, EventLogError> {
        let (rec, line) = self.render_record(rec);
        let mut p = self.shared.lock();
        if how == Append::Dry {
            return Ok(rec);
        }
        // Waited for only when the writer is idle: done with every record, its fsync too. A
        // writer still in an fsync (`written` counts the write before it) could make this
        // wait the whole SYNC_WAIT for a write that cannot start before the fsync ends.
        let caught_up = p.done == p.queued;
        p.queued += 1;
        let seq = p.queued;
        UNWRITTEN.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                p.written += 1;
                p.done += 1;
                p.dropped += 1;
                UNWRITTEN.fetch_sub(1, Ordering::SeqCst);
                HEALTH.event_records_lost.fetch_add(1, Ordering::Relaxed);
                return Ok(rec);
            }
        }
        if caught_up && how == Append::Wait {
            let deadline = Instant::now() + SYNC_WAIT;
            while p.written < seq {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                p = self
                    .shared
                    .cv
                    .wait_timeout(p, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        Ok(rec)
    }

    /// Waits (at most `timeout`) until every record appended so far is written and fsynced.
    /// Returns
    /// whether they all were.
    pub fn sync(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.shared.lock();
        let seq = p.queued;
        while p.done < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self
                .shared
                .cv
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// How [`EventLog::append_as`] hands a record on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// Queued, and waited for while the writer keeps up (at most [`SYNC_WAIT`]).
    Wait,
    /// Queued.
    Queue,
    /// Rendered only (a warm-up).
    Dry,
}

/// The writer thread of one event log.
struct Writer {
    path: PathBuf,
    file: File,
    generation: u64,
    shared: Arc<Shared>,
    /// Since when writes fail (and the error), while they do.
    failing: Option<String>,
    /// Records lost to failed writes in the current failure.
    lost: u64,
    dropped_reported: u64,
    /// What the path named (device, inode; `None`: nothing) when opening it anew failed
    /// ([`Writer::follow_path`]): not tried again, nor said again, until that changes.
    unfollowed: Option<Option<(u64, u64)>>,
}

/// The (device, inode) of a file.
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let Ok(msg) = rx.recv() else {
                return;
            };
            self.maybe_reopen();
            let line = match msg {
                Msg::Line(line) => line,
                // A wake-up to reopen (`EventLog::poke_reopen`).
                Msg::Reopen => continue,
                Msg::WarmUp => {
                    // What a write does before it writes (see `EventLog::warm_up`).
                    self.follow_path();
                    std::hint::black_box(self.ends_torn());
                    continue;
                }
            };
            self.follow_path();
            let r = self.write(&line);
            let r = match r {
                Ok(()) => {
                    self.shared.lock().written += 1;
                    self.shared.cv.notify_all();
                    self.file.sync_data()
                }
                Err(e) => {
                    self.shared.lock().written += 1;
                    self.shared.cv.notify_all();
                    Err(e)
                }
            };
            self.account(r);
            UNWRITTEN.fetch_sub(1, Ordering::SeqCst);
            let mut p = self.shared.lock();
            p.done += 1;
            let dropped = p.dropped;
            drop(p);
            self.shared.cv.notify_all();
            if dropped > self.dropped_reported && self.failing.is_none() {
                log::warn!(
                    "event log {}: {} record(s) were dropped because the writer fell behind \
                     (the disk was too slow)",
                    self.path.display(),
                    dropped - self.dropped_reported
                );
                self.dropped_reported = dropped;
            }
        }
    }

    /// After a reopen signal: opens the path anew (logrotate moved the file away).
    fn maybe_reopen(&mut self) {
        let g = REOPEN.load(Ordering::SeqCst);
        if g == self.generation {
            return;
        }
        self.generation = g;
        match open_file(&self.path) {
            Ok(f) => {
                self.file = f;
                log::info!("event log {} reopened", self.path.display());
            }
            Err(e) => log::error!("{e}; writing on to the file opened before"),
        }
    }

    /// Opens the path anew when it no longer names the file written, without a reopen signal:
    /// the file was removed, renamed away (a rotation without `postrotate`) or replaced.
    /// Records written on into the old file would be lost to every reader of the path (and a
    /// removed file's space never freed). Before each record: two `stat`s. A path that cannot
    /// be opened (now a symbolic link, a directory) is said once and the old file written on.
    fn follow_path(&mut self) {
        let Ok(held) = self.file.metadata().map(|m| identity(&m)) else {
            return;
        };
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| identity(&m));
        if now == Some(held) {
            self.unfollowed = None;
            return;
        }
        if self.unfollowed == Some(now) {
            return;
        }
        let what = if now.is_some() {
            "replaced"
        } else {
            "removed or moved away"
        };
        match open_file(&self.path) {
            Ok(f) => {
                self.file = f;
                self.unfollowed = None;
                log::warn!(
                    "event log {}: the file was {what}; writing on into the file now at the path",
                    self.path.display()
                );
            }
            Err(e) => {
                self.unfollowed = Some(now);
                log::error!(
                    "event log {}: the file was {what}, and {e}; writing on to the file \
                     opened before",
                    self.path.display()
                );
            }
        }
    }

    /// Writes one line (the caller fsyncs). When the file does not end in a newline (a failed or
    /// short write before, a crash mid-write, another writer's torn line), the line starts
    /// with one, so no record is ever glued to a torn one.
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let torn = self.ends_torn();
        let mut buf = Vec::with_capacity(line.len() + 1);
        if torn {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line);
        (&self.file).write_all(&buf)
    }

    fn ends_torn(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(len) = self.file.metadata().map(|m| m.len()) else {
            return false;
        };
        let mut last = [0u8];
        len > 0 && self.file.read_at(&mut last, len - 1).is_ok_and(|n| n == 1) && last[0] != b'\n'
    }

    /// Logs a failure once when it starts and once when writing works again.
    fn account(&mut self, r: std::io::Result<()>) {
        match r {
            Ok(()) => {
                if let Some(e) = self.failing.take() {
                    log::warn!(
                        "event log {}: writable again; {} record(s) were lost while writes failed ({e})",
                        self.path.display(),
                        self.lost
                    );
                    self.lost = 0;
                }
            }
            Err(e) => {
                HEALTH.event_records_lost.fetch_add(1, Ordering::Relaxed);
                self.lost += 1;
                if self.failing.is_none() {
                    log::error!(
                        "event log {}: cannot write a record: {e}; records are lost until \
                         writing works again (free space or fix the file system)",
                        self.path.display()
                    );
                    self.failing = Some(e.to_string());
                }
            }
        }
    }
}

/// Reads an event log: every complete JSON line as a typed record. Lines that are not event
/// records (torn, glued, not JSON, not an object with an `action`, a known kind with fields of
/// the wrong type) are skipped and summed up in the returned warnings (one warning, with their
/// count and line numbers).
pub fn read_all(path: &Path) -> std::io::Result<(Vec<Record>, Vec<String>)> {
    let text = std::fs::read(path)?;
    Ok(parse_lines(&text, path))
}

/// Line numbers listed in an [`Unparsed`] summary (the count is always complete).
pub const LISTED: usize = 20;

/// The lines of an event log that are not event records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Unparsed {
    /// How many.
    pub count: usize,
    /// The first [`LISTED`] line numbers (1-based).
    pub lines: Vec<usize>,
    /// What was wrong with the first one.
    pub first_error: String,
}

impl Unparsed {
    /// Counts line `line` (1-based), with what was wrong with it.
    pub fn add(&mut self, line: usize, err: impl FnOnce() -> String) {
        if self.count == 0 {
            self.first_error = err();
        }
        self.count += 1;
        if self.lines.len() < LISTED {
            self.lines.push(line);
        }
    }

    /// Adds the lines of a later part of the same file.
    pub fn absorb(&mut self, later: Unparsed) {
        if later.count == 0 {
            return;
        }
        if self.count == 0 {
            self.first_error = later.first_error;
        }
        self.count += later.count;
        let room = LISTED.saturating_sub(self.lines.len());
        self.lines.extend(later.lines.into_iter().take(room));
    }

    /// One warning naming the file, the count and the line numbers; `None` when all parsed.
    pub fn warning(&self, path: &Path) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let nums: Vec<String> = self.lines.iter().map(usize::to_string).collect();
        let more = if self.count > self.lines.len() {
            format!(", ... (the first {} of them)", self.lines.len())
        } else {
            String::new()
        };
        Some(format!(
            "{}: skipped {} line(s) that are not event records: line{} {}{more}; line {}: {}",
            path.display(),
            self.count,
            if self.count == 1 { "" } else { "s" },
            nums.join(", "),
            self.lines[0],
            self.first_error
        ))
    }
}

/// Parses JSON lines into typed records; `first_line` is the number of the first line of
/// `text` in its file. Blank lines are ignored; every other line that is not an event record
/// (not JSON, no string `action`, or a known kind with fields of the wrong type) is counted in
/// [`Unparsed`]. Kinds this version does not know are kept ([`Event::Other`]).
///
/// [`Event::Other`]: super::event::Event::Other
pub fn parse(text: &[u8], first_line: usize) -> (Vec<Record>, Unparsed) {
    let mut recs = Vec::new();
    let mut bad = Unparsed::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = first_line + i;
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => match Record::from_value(v) {
                Ok(r) => recs.push(r),
                Err(e) => bad.add(n, || e),
            },
            Err(e) => bad.add(n, || e.to_string()),
        }
    }
    (recs, bad)
}

/// Parses JSON lines read from `path` (named in the warning about bad lines).
pub fn parse_lines(text: &[u8], path: &Path) -> (Vec<Record>, Vec<String>) {
    let (recs, bad) = parse(text, 1);
    (recs, bad.warning(path).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_is_xdgs_then_homes_then_the_user_databases() {
        let p = |s: &str| Some(std::ffi::OsString::from(s));
        let never = || -> Option<PathBuf> { panic!("the user database was asked") };
        let db = || Some(PathBuf::from("/home/db"));
        assert_eq!(
            state_home(p("/x/state"), p("/home/a"), never),
            Some(PathBuf::from("/x/state"))
        );
        // A relative XDG_STATE_HOME is ignored (the XDG spec), and so is a relative HOME.
        assert_eq!(
            state_home(p("rel"), p("/home/a"), never),
            Some(PathBuf::from("/home/a/.local/state"))
        );
        assert_eq!(
            state_home(None, p("rel"), db),
            Some(PathBuf::from("/home/db/.local/state"))
        );
        assert_eq!(
            state_home(None, None, db),
            Some(PathBuf::from("/home/db/.local/state"))
        );
        // Nothing known: the caller's own directory under /tmp.
        assert_eq!(state_home(None, None, || None), None);
    }

    #[test]
    fn a_directory_is_foreign_when_another_user_owns_it() {
        let d = tempfile::tempdir().unwrap();
        // Ours (and root's: `/`) is not; another user's is (giving it away takes root).
        assert_eq!(foreign_owner(d.path()), None);
        assert_eq!(foreign_owner(Path::new("/")), None);
        assert_eq!(foreign_owner(&d.path().join("missing")), None);
        if rustix::process::geteuid().is_root() {
            // Below another user's directory: ours, and not made yet, alike.
            let sub = d.path().join("sub");
            std::fs::create_dir(&sub).unwrap();
            std::os::unix::fs::chown(d.path(), Some(4321), None).unwrap();
            let theirs = Some((d.path().to_path_buf(), 4321));
            assert_eq!(foreign_owner(d.path()), theirs);
            assert_eq!(foreign_owner(&sub), theirs);
            assert_eq!(foreign_owner(&sub.join("missing/deeper")), theirs);
            // A symbolic link of another user's on the way, in a directory of ours, though it
            // leads to one of ours; and the way through a link to another user's directory.
            let e = tempfile::tempdir().unwrap();
            let link = e.path().join("link");
            std::os::unix::fs::symlink(&sub, &link).unwrap();
            assert_eq!(foreign_owner(&link), theirs, "through the link");
            std::os::unix::fs::chown(d.path(), Some(0), None).unwrap();
            assert_eq!(foreign_owner(&link), None);
            std::os::unix::fs::lchown(&link, Some(4321), None).unwrap();
            assert_eq!(foreign_owner(&link), Some((link.clone(), 4321)));
            assert_eq!(foreign_owner(&link.join("missing")), Some((link, 4321)));
        }
    }

    /// The user database names root's home for uid 0 (this host's, from NSS).
    #[test]
    fn the_user_databases_home_is_read() {
        let home = passwd_home(0);
        let listed = std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("root:")?
                    .split(':')
                    .nth(4)
                    .map(PathBuf::from)
            });
        let listed = listed.expect("no root entry in /etc/passwd");
        assert_eq!(
            home,
            (listed != Path::new("/") && listed.is_dir()).then_some(listed)
        );
    }
    use crate::record::event::{Decision, Warn};

    #[test]
    fn record_times_carry_the_same_local_offset_as_the_system_zone() {
        let t = now_rfc3339();
        let parsed = jiff::Zoned::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", &t).unwrap();
        let now = jiff::Zoned::now();
        assert_eq!(parsed.offset(), now.offset(), "{t} vs {now}");
        let apart = now.timestamp().duration_since(parsed.timestamp());
        assert!(
            apart.abs() < jiff::SignedDuration::from_secs(5),
            "{t} vs {now}"
        );
    }

    #[test]
    fn a_proc_that_hides_processes_is_told_from_its_mount_options() {
        let line = |opts: &str| format!("22 27 0:21 / /proc rw,relatime - proc proc {opts}\n");
        assert_eq!(proc_hidepid(&line("rw")), None);
        assert_eq!(proc_hidepid(&line("rw,hidepid=0,gid=27")), None);
        assert_eq!(proc_hidepid(&line("rw,hidepid=off")), None);
        for v in ["1", "2", "4", "noaccess", "invisible", "ptraceable"] {
            assert_eq!(
                proc_hidepid(&line(&format!("rw,hidepid={v},gid=27"))),
                Some(Some(27)),
                "{v}"
            );
        }
        assert_eq!(proc_hidepid(&line("rw,hidepid=2")), Some(None));
        // Another mount of proc, elsewhere, is not the one seen at /proc.
        let elsewhere = "40 27 0:50 / /run/proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(proc_hidepid(&format!("{}{elsewhere}", line("rw"))), None);
        // A mount over /proc hides the one below it.
        assert_eq!(
            proc_hidepid(&format!("{}{}", line("rw"), line("rw,hidepid=invisible"))),
            Some(None)
        );
        assert_eq!(proc_hidepid(""), None);
    }

    /// The entries a new log creates, deepest first: the directories whose names the fsyncs
    /// make durable (each one's parent). None for a log that exists.
    #[test]
    fn a_new_logs_created_entries_are_listed_and_an_existing_log_creates_none() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/events.jsonl");
        assert_eq!(
            new_entries(&p),
            [p.as_path(), &d.path().join("a/b"), &d.path().join("a")]
        );
        drop(open_file(&p).unwrap());
        assert!(new_entries(&p).is_empty());
        assert_eq!(new_entries(Path::new("/")), Vec::<&Path>::new());
        let rel = Path::new("no-such-oomguard-log.jsonl");
        assert_eq!(new_entries(rel), [rel]);
    }

    #[test]
    fn appends_lines_with_the_common_fields_and_readers_skip_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/dir/events.jsonl");
        let log = EventLog::open(&p, "system").unwrap();
        let with_rss = |rss_kb| {
            let mut d = Decision::default();
            d.victim.rss_kb = rss_kb;
            d
        };
        log.append(Event::DryRun(with_rss(5))).unwrap();
        log.append(Event::Kill(with_rss(6))).unwrap();
        // The second append did not wait if the writer was still in the first one's fsync.
        assert!(
            flush_all(Duration::from_secs(10)),
            "the records were not written"
        );
        // A torn tail, as after a crash mid-write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"time\":\"x")
            .unwrap();
        let (recs, warns) = read_all(&p).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(warns.len(), 1);
        assert_eq!(recs[0].event.action(), "dry_run");
        assert!(matches!(&recs[1].event, Event::Kill(d) if d.victim.rss_kb == 6));
        assert_eq!(recs[0].scope, "system");
        let t = recs[0].time.as_str();
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", t).is_ok(),
            "{t}"
        );
        assert!(t.len() == "2026-11-30T17:45:19.123+00:00".len(), "{t}");
    }

    #[test]
    fn a_record_after_a_torn_line_starts_on_a_line_of_its_own() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let log = EventLog::open(&p, "system").unwrap();
        let warn = |used_pct| {
            Event::Warn(Warn {
                used_pct,
                ..Default::default()
            })
        };
        log.append(warn(1.0)).unwrap();
        // A failed or short write (or a crash) left half a record.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"time\":\"2026-")
            .unwrap();
        log.append(warn(2.0)).unwrap();
        assert!(log.sync(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"time\":\"2026-");
        let (recs, warns) = parse_lines(text.as_bytes(), &p);
        assert_eq!(recs.len(), 2, "{text}");
        assert!(matches!(&recs[1].event, Event::Warn(w) if w.used_pct == 2.0));
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(
            warns[0].contains("1 line(s)") && warns[0].contains("line 2"),
            "{warns:?}"
        );
    }

    /// The file renamed away or removed without a reopen signal: the next record goes to a
    /// file at the path, where readers look, not into the old one.
    #[test]
    fn a_file_moved_away_or_removed_without_a_signal_is_followed_by_its_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let rotated = d.path().join("events.jsonl.1");
        let log = EventLog::open(&p, "system").unwrap();
        let warn = |used_pct| {
            Event::Warn(Warn {
                used_pct,
                ..Default::default()
            })
        };
        let used = |path: &Path| -> Vec<f64> {
            read_all(path)
                .unwrap()
                .0
                .iter()
                .map(|r| match &r.event {
                    Event::Warn(w) => w.used_pct,
                    e => panic!("{e:?}"),
                })
                .collect()
        };
        log.append(warn(1.0)).unwrap();
        assert!(log.sync(Duration::from_secs(10)));
        std::fs::rename(&p, &rotated).unwrap();
        log.append(warn(2.0)).unwrap();
        assert!(log.sync(Duration::from_secs(10)));
        assert_eq!(used(&rotated), [1.0]);
        assert_eq!(used(&p), [2.0]);
        std::fs::remove_file(&p).unwrap();
        log.append(warn(3.0)).unwrap();
        assert!(log.sync(Duration::from_secs(10)));
        assert_eq!(used(&p), [3.0]);
        // A path that cannot be opened now (a symbolic link): the file opened before is
        // written on, and the record is not lost.
        std::fs::rename(&p, d.path().join("moved.jsonl")).unwrap();
        std::os::unix::fs::symlink(&rotated, &p).unwrap();
        log.append(warn(4.0)).unwrap();
        log.append(warn(5.0)).unwrap();
        assert!(log.sync(Duration::from_secs(10)));
        assert_eq!(used(&d.path().join("moved.jsonl")), [3.0, 4.0, 5.0]);
        assert_eq!(used(&rotated), [1.0]);
    }

    #[test]
    fn lines_that_are_not_records_are_counted_with_their_numbers() {
        let mut text = String::from(
            "{\"action\":\"kill\"}\n42\n\n{\"x\":1}\n{\"action\":\"warn\"}{\"action\":\"warn\"}\n",
        );
        for _ in 0..30 {
            text.push_str("garbage\n");
        }
        text.push_str("{\"action\":\"warn\"}\n");
        let (recs, bad) = parse(text.as_bytes(), 1);
        assert_eq!(recs.len(), 2);
        assert_eq!(bad.count, 33);
        assert_eq!(bad.lines.len(), LISTED);
        assert_eq!(&bad.lines[..4], &[2, 4, 5, 6]);
        let w = bad.warning(Path::new("e.jsonl")).unwrap();
        assert!(w.starts_with("e.jsonl: skipped 33 line(s)"), "{w}");
        assert!(
            w.contains("lines 2, 4, 5, 6, 7,") && w.contains("the first 20"),
            "{w}"
        );
        assert!(w.contains("line 2: not an event record"), "{w}");
        assert_eq!(parse(b"\n", 1).1, Unparsed::default());
        // A known kind whose fields have the wrong types is not a record either.
        let (recs, bad) = parse(b"{\"action\":\"kill\",\"victim\":{\"pid\":\"x\"}}\n", 7);
        assert!(recs.is_empty());
        assert_eq!(bad.lines, [7]);
        assert!(bad.first_error.starts_with("a 'kill' record:"), "{bad:?}");
    }

    #[test]
    fn refuses_anything_but_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path in a fresh temporary directory.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let target = d.path().join("target.jsonl");
        std::fs::write(&target, "").unwrap();
        let link = d.path().join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = d.path().join("dangling.jsonl");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        for (p, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/null"), "a character device"),
            (d.path(), "a directory"),
            (link.as_path(), "a symbolic link"),
            (dangling.as_path(), "a symbolic link"),
        ] {
            let e = EventLog::open(p, "system").unwrap_err();
            assert!(e.is_usage(), "{}: {e}", p.display());
            assert!(e.to_string().contains(what), "{e}");
            assert!(e.to_string().contains("--event-log"), "{e}");
        }
        // The dangling link did not create its target.
        assert!(!d.path().join("nowhere").exists());
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("file"), "").unwrap();
        let p = d.path().join("file/sub/events.jsonl");
        let e = EventLog::open(&p, "system").unwrap_err();
        assert!(!e.is_usage());
        let msg = e.to_string();
        assert!(
            msg.contains("cannot create its directory") && msg.contains("file/sub"),
            "{msg}"
        );
    }
}
