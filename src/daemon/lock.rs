//! One guard per scope: `oomguard run` holds an exclusive `flock` on a lock file named from its
//! canonical scope, under the state directory (`/var/lib/oomguard` as root, else
//! `$XDG_STATE_HOME/oomguard`). A second guard on the same scope finds the lock taken and
//! refuses to start, naming the first one's PID (which the holder writes into the file). The
//! kernel drops the lock when the holder exits, however it exits: no stale lock to clean up.
//! Lock files are never removed (removing one while another guard opens it would let two guards
//! hold "the" lock).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::sense::Root;
use crate::sense::scope::{Scope, ScopeKind};
use crate::values::ScopeSpec;

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another oomguard (PID {pid}) already guards {scope} (lock {path}); stop it first, or guard another scope"
    )]
    Held {
        scope: String,
        pid: String,
        path: PathBuf,
    },
    /// A directory on the way to the locks belongs to another user
    /// ([`crate::record::eventlog::foreign_owner`]): that user could hold the lock, or put
    /// something else in its place, and keep this guard from starting.
    #[error(
        "cannot take the lock {path} that keeps a second guard off {scope}: {dir}, a directory on its path, belongs to uid {owner}, not to you (uid {me}) or root, and that user could hold or replace the lock (remove the directory or give it to root, or put the locks elsewhere with --lock-dir DIR)"
    )]
    ForeignDir {
        scope: String,
        path: PathBuf,
        dir: PathBuf,
        owner: u32,
        me: u32,
    },
    #[error(
        "cannot take the lock {path} that keeps a second guard off {scope}: {source} (the directory of the locks must be writable: /var/lib/oomguard as root, else $XDG_STATE_HOME/oomguard, or the one given with --lock-dir DIR)"
    )]
    Io {
        scope: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lock on one scope, held while this value lives (and in any case until the process exits).
#[derive(Debug)]
pub struct ScopeLock {
    _file: File,
    path: PathBuf,
}

impl ScopeLock {
    /// Takes the lock for `spec` under `dir`. A scope that does not resolve takes no lock
    /// (`Ok(None)`): the daemon then fails on it with its own message.
    pub fn acquire(
        dir: &Path,
        root: &Root,
        spec: &ScopeSpec,
    ) -> Result<Option<ScopeLock>, LockError> {
        let Ok(scope) = Scope::resolve(root, spec) else {
            return Ok(None);
        };
        let key = key(root, &scope);
        let mut label = scope.label();
        if scope.cgroup().is_some_and(|c| is_root_group(root, c)) {
            label.push_str(" (the root group: every process, as with --scope system)");
        }
        let path = dir.join(file_name(&key));
        let io = |source| LockError::Io {
            scope: label.clone(),
            path: path.clone(),
            source,
        };
        // Before anything is made in another user's directory.
        if let Some((theirs, owner)) = crate::record::eventlog::foreign_owner(dir) {
            return Err(LockError::ForeignDir {
                scope: label,
                path,
                dir: theirs,
                owner,
                me: rustix::process::geteuid().as_raw(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Never through a symbolic link, and only a regular file: the lock is truncated
            // and written, and its directory may be one that others can write (`/tmp`).
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        if !file.metadata().map_err(io)?.file_type().is_file() {
            return Err(io(std::io::Error::other(
                "not a regular file; remove it, or put the locks elsewhere with --lock-dir DIR",
            )));
        }
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(LockError::Held {
                    pid: holder_pid(&mut file),
                    scope: label,
                    path,
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            f.flush()
        };
        write_pid(&mut file).map_err(io)?;
        Ok(Some(ScopeLock { _file: file, path }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The PID the holder wrote; it may be a moment from writing it (it takes the lock first):
/// waits up to 200 ms for it.
fn holder_pid(file: &mut File) -> String {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let mut text = String::new();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        let pid = text.trim();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            return pid.to_string();
        }
        if Instant::now() > deadline {
            return "unknown".into();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The default directory of lock files: the state directory (that of the default event log).
pub fn default_dir() -> PathBuf {
    let log = crate::record::eventlog::default_path();
    log.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// What identifies a scope: `system`, or the group's real directory (so both spellings of one
/// group, and the v1 and v2 groups of one path, are told apart right); under a fixture root,
/// prefixed by the root.
///
/// The directory as the kernel resolves it, not as it was written: `cgroup:` takes a path with
/// `//`, `/./`, `..` or a symbolic link on the way, and each spelling of one group must name one
/// lock file (before, `--scope cgroup:/sys/fs/cgroup/memory//app` started a second guard beside
/// the one on `cgroup:/app`). A group that cannot be resolved now (removed since) keeps its
/// path with the separators and `.` components folded.
///
/// The hierarchy's root group (`cgroup:/`) is `system`: it holds every process, so a guard on
/// each would choose among the same processes, and kill twice for one shortage (before, on v1
/// `--scope system` and `--scope cgroup:/` ran side by side).
fn key(root: &Root, scope: &Scope) -> String {
    let k = match &scope.kind {
        ScopeKind::System => "system".to_string(),
        ScopeKind::Cgroup(c) if is_root_group(root, c) => "system".to_string(),
        ScopeKind::Cgroup(c) => {
            let real = std::fs::canonicalize(root.path(&c.dir))
                .ok()
                .and_then(|p| {
                    if root.is_real() {
                        Some(p)
                    } else {
                        // Under a fixture root: the path inside it, as on a real machine.
                        let base = std::fs::canonicalize(root.as_path()).ok()?;
                        p.strip_prefix(base)
                            .ok()
                            .map(|rel| Path::new("/").join(rel))
                    }
                })
                .unwrap_or_else(|| c.dir.components().collect());
            format!("cgroup{}", real.display())
        }
    };
    if root.is_real() {
        k
    } else {
        format!("root{}-{k}", root.as_path().display())
    }
}

/// Whether `c` is its hierarchy's root group (its directory, resolved, is the mount's).
fn is_root_group(root: &Root, c: &crate::sense::cgroup::Cgroup) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(root.path(p)).ok();
    canonical(&c.dir).is_some_and(|d| Some(d) == canonical(&c.mount))
}

/// `run-KEY.lock` with KEY escaped as systemd does (`/` → `-`, other bytes outside
/// `[A-Za-z0-9_.:]` → `\xNN`): distinct scopes get distinct names. A name too long for the
/// filesystem is cut and ends in a hash of the whole key.
fn file_name(key: &str) -> String {
    let mut esc = String::with_capacity(key.len());
    for (i, &b) in key.trim_matches('/').as_bytes().iter().enumerate() {
        match b {
            b'/' => esc.push('-'),
            b'.' if i == 0 => esc.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b':' => esc.push(b as char),
            _ => esc.push_str(&format!("\\x{b:02x}")),
        }
    }
    const MAX: usize = 200;
    if esc.len() > MAX {
        let mut cut = MAX - 17;
        while !esc.is_char_boundary(cut) {
            cut -= 1;
        }
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        esc = format!("{}-{hash:016x}", &esc[..cut]);
    }
    format!("run-{esc}.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_bounded() {
        assert_eq!(file_name("system"), "run-system.lock");
        assert_eq!(
            file_name("cgroup/sys/fs/cgroup/memory/a-b"),
            "run-cgroup-sys-fs-cgroup-memory-a\\x2db.lock"
        );
        assert_ne!(file_name("cgroup/x/a-b"), file_name("cgroup/x/a/b"));
        let long = format!("cgroup/{}", "d/".repeat(300));
        let other = format!("cgroup/{}e", "d/".repeat(300));
        let (a, b) = (file_name(&long), file_name(&other));
        assert!(a.len() <= 255 && b.len() <= 255);
        assert_ne!(a, b);
    }

    #[test]
    fn a_second_lock_on_a_scope_names_the_first_holder_and_other_scopes_are_free() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::default();
        let first = ScopeLock::acquire(d.path(), &root, &ScopeSpec::System)
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        let e = ScopeLock::acquire(d.path(), &root, &ScopeSpec::System).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("PID {}", std::process::id())) && msg.contains("system"),
            "{msg}"
        );
        drop(first);
        let again = ScopeLock::acquire(d.path(), &root, &ScopeSpec::System).unwrap();
        assert!(again.is_some());
    }

    /// One group, however its path is spelt (`//`, `/./`, `..`, a link, a path as in
    /// /proc/PID/cgroup or the directory), is one lock: the second guard refuses to start.
    /// Another group is another lock. (A fixture tree with a v1 memory mount.)
    #[test]
    fn every_spelling_of_one_group_takes_the_same_lock() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        let mount = r.join("sys/fs/cgroup/memory");
        std::fs::create_dir_all(mount.join("app")).unwrap();
        std::fs::create_dir_all(mount.join("other")).unwrap();
        std::os::unix::fs::symlink(mount.join("app"), mount.join("link")).unwrap();
        let root = Root::new(&r);
        let locks = d.path().join("locks");
        let spec = |s: &str| s.parse::<ScopeSpec>().unwrap();
        let first = ScopeLock::acquire(&locks, &root, &spec("cgroup:/app"))
            .unwrap()
            .expect("the group resolves");
        for other in [
            "cgroup:/app/",
            "cgroup:/sys/fs/cgroup/memory/app",
            "cgroup:/sys/fs/cgroup/memory//app",
            "cgroup:/sys/fs/cgroup/memory/./app",
            "cgroup:/other/../app",
            "cgroup:/link",
        ] {
            match ScopeLock::acquire(&locks, &root, &spec(other)) {
                Err(LockError::Held { pid, .. }) => {
                    assert_eq!(pid, std::process::id().to_string(), "{other}")
                }
                Err(e) => panic!("{other}: {e}"),
                Ok(l) => panic!(
                    "{other}: a second lock {:?} beside {}",
                    l.map(|l| l.path().to_path_buf()),
                    first.path().display()
                ),
            }
        }
        assert!(
            ScopeLock::acquire(&locks, &root, &spec("cgroup:/other"))
                .unwrap()
                .is_some(),
            "another group is another lock"
        );
        // The root group holds every process: it is the machine's lock, however it is spelt.
        let machine = ScopeLock::acquire(&locks, &root, &ScopeSpec::System)
            .unwrap()
            .expect("the machine's lock");
        for other in ["cgroup:/", "cgroup://", "cgroup:/sys/fs/cgroup/memory"] {
            match ScopeLock::acquire(&locks, &root, &spec(other)) {
                Err(LockError::Held { .. }) => {}
                r => panic!("{other}: {r:?} beside {}", machine.path().display()),
            }
        }
        // A group that is only named so is not the machine.
        std::fs::create_dir_all(mount.join("system")).unwrap();
        let named = match ScopeLock::acquire(&locks, &root, &spec("cgroup:/system")) {
            Ok(Some(l)) => l,
            r => panic!("cgroup:/system: {r:?}"),
        };
        assert_ne!(named.path(), machine.path());
        let e = ScopeLock::acquire(&locks, &root, &spec("cgroup:/system")).unwrap_err();
        assert!(!e.to_string().contains("root group"), "{e}");
        drop(machine);
        let group_root = ScopeLock::acquire(&locks, &root, &spec("cgroup:/"))
            .unwrap()
            .expect("the root group resolves");
        assert!(
            matches!(
                ScopeLock::acquire(&locks, &root, &ScopeSpec::System),
                Err(LockError::Held { .. })
            ),
            "system beside {}",
            group_root.path().display()
        );
        let e = ScopeLock::acquire(&locks, &root, &spec("cgroup:/")).unwrap_err();
        assert!(e.to_string().contains("the root group"), "{e}");
    }

    #[test]
    fn a_lock_path_that_is_a_link_or_no_file_is_refused_and_nothing_is_written() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::default();
        // Someone else's directory, the lock's name a link to a file of ours.
        let precious = d.path().join("precious");
        std::fs::write(&precious, "keep me\n").unwrap();
        let lock = d.path().join(file_name("system"));
        std::os::unix::fs::symlink(&precious, &lock).unwrap();
        let e = ScopeLock::acquire(d.path(), &root, &ScopeSpec::System).unwrap_err();
        assert!(e.to_string().contains("cannot take the lock"), "{e}");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
        // A FIFO in its place: refused, not waited on.
        std::fs::remove_file(&lock).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &lock,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = ScopeLock::acquire(d.path(), &root, &ScopeSpec::System).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
