//! Scratch memory cgroups: a group that oomguard itself makes, limits, runs a process in,
//! empties and removes (the fire drill, and the tests' hogs). It belongs to act, not sense:
//! it changes the machine (mkdir, limits, moving a process, killing what is left inside),
//! and it only ever signals processes of the group it made.
//!
//! [`spawn_in`] starts a command inside a group: the child joins it between fork and exec,
//! so not one page of the program is charged elsewhere.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::sense::cgroup::{CgVersion, Mounts, memory_path_of};
use crate::sense::{Root, parse_u64};

/// Making the scratch group failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "no memory cgroup controller is mounted (neither on cgroup2 nor v1): a scratch group needs one"
    )]
    NoController,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("/proc/self/cgroup names no memory cgroup")]
    NoOwnGroup,
    #[error(
        "cannot enable the memory controller for children of {parent} (a cgroup2 group with other processes in it cannot delegate it): run it alone in a delegated group, e.g. systemd-run --scope -p Delegate=yes oomguard drill: {source}"
    )]
    Delegate {
        parent: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the scratch cgroup {dir} (needs root or a delegated cgroup): {source}")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {value} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

/// A memory cgroup this process made; [`ScratchCgroup::remove`] (also on drop) kills what is
/// left inside and removes it.
#[derive(Debug)]
pub struct ScratchCgroup {
    pub dir: PathBuf,
    /// As in /proc/PID/cgroup.
    pub rel: String,
    pub version: CgVersion,
    /// v2: the leaf this process moved itself into so that its own group could delegate the
    /// memory controller ([`delegate_memory`]); it moves back on removal.
    own_leaf: Option<PathBuf>,
}

/// Enables the memory controller for the children of `parent` (cgroup v2). A group with
/// processes in it cannot delegate a controller (the kernel's "no internal processes" rule,
/// EBUSY): when this process is alone in it, as in `systemd-run --scope -p Delegate=yes
/// oomguard drill`, it moves itself into a leaf of its own first, as systemd's
/// `DelegateSubgroup=` does, and returns that leaf (`None`: nothing moved).
fn delegate_memory(parent: &Path, name: &str) -> Result<Option<PathBuf>, ScratchError> {
    let control = parent.join("cgroup.subtree_control");
    let delegate_err = |source| ScratchError::Delegate {
        parent: parent.to_path_buf(),
        source,
    };
    let busy = match std::fs::write(&control, "+memory") {
        Ok(()) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => e,
        Err(e) => return Err(delegate_err(e)),
    };
    let me = std::process::id() as i32;
    if procs(parent) != [me] {
        return Err(delegate_err(busy));
    }
    let leaf = parent.join(format!("{name}-self"));
    std::fs::create_dir(&leaf).map_err(|source| ScratchError::Create {
        dir: leaf.clone(),
        source,
    })?;
    let moved = std::fs::write(leaf.join("cgroup.procs"), me.to_string())
        .and_then(|()| std::fs::write(&control, "+memory"));
    if let Err(e) = moved {
        let _ = std::fs::write(parent.join("cgroup.procs"), me.to_string());
        let _ = std::fs::remove_dir(&leaf);
        return Err(delegate_err(e));
    }
    Ok(Some(leaf))
}

/// The caller's own memory cgroup, where scratch groups are made: its directory, the
/// hierarchy's version (v2 where the memory controller is on cgroup2, else v1), and its path
/// as in /proc/PID/cgroup.
fn own_group(root: &Root) -> Result<(PathBuf, CgVersion, String), ScratchError> {
    let mounts = Mounts::discover(root);
    let (mount, version) = match (&mounts.v2_memory, &mounts.v1_memory) {
        (Some(m), _) => (m.clone(), CgVersion::V2),
        (None, Some(m)) => (m.clone(), CgVersion::V1),
        _ => return Err(ScratchError::NoController),
    };
    let path = root.path("proc/self/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|source| ScratchError::Read {
        path: path.clone(),
        source,
    })?;
    let own = memory_path_of(&text, version == CgVersion::V2).ok_or(ScratchError::NoOwnGroup)?;
    let dir = root.path(mount.join(own.trim_start_matches('/')));
    Ok((dir, version, own.to_string()))
}

/// Scratch groups that their maker left behind: named `PREFIX<pid>` (or v2's `PREFIX<pid>-self`
/// leaf, [`delegate_memory`]) beside where [`ScratchCgroup::create`] makes them, whose maker
/// (`pid`) no longer runs: what a drill ended by SIGKILL, the OOM killer or a power cut could
/// not remove. A group whose maker runs (or whose number was taken again) is left alone.
pub fn abandoned(root: &Root, prefix: &str) -> Vec<PathBuf> {
    let Ok((parent, _, _)) = own_group(root) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(&parent) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                return false;
            };
            let pid = rest.strip_suffix("-self").unwrap_or(rest);
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !root.path(format!("proc/{pid}")).exists()
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Removes the [`abandoned`] groups that hold no process (`rmdir`: the kernel refuses a group
/// with a task or a sub-group in it). Nothing is signalled: a process still inside is not
/// this caller's. Returns each group with whether it is gone.
pub fn remove_abandoned(root: &Root, prefix: &str) -> Vec<(PathBuf, bool)> {
    abandoned(root, prefix)
        .into_iter()
        .map(|d| {
            let gone = procs(&d).is_empty() && std::fs::remove_dir(&d).is_ok();
            (d, gone)
        })
        .collect()
}

impl ScratchCgroup {
    /// Makes `<own memory cgroup>/NAME` with `limit` bytes and no swap, under the caller's own
    /// group (v2 where the memory controller is on cgroup2, else v1). `root` is `/` except in
    /// tests (the group is then made under the root).
    pub fn create(root: &Root, name: &str, limit: u64) -> Result<ScratchCgroup, ScratchError> {
        let (parent, version, own) = own_group(root)?;
        let dir = parent.join(name);
        let mut own_leaf = None;
        if version == CgVersion::V2 {
            let ctl =
                std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !ctl.split_whitespace().any(|c| c == "memory") {
                own_leaf = delegate_memory(&parent, name)?;
            }
        }
        let mut s = ScratchCgroup {
            rel: format!("{}/{name}", own.trim_end_matches('/')),
            dir: dir.clone(),
            version,
            own_leaf,
        };
        if let Err(source) = std::fs::create_dir(&dir) {
            s.restore_own_group();
            s.own_leaf = None;
            return Err(ScratchError::Create { dir, source });
        }
        let write = |file: &str, v: &str| {
            let path = s.dir.join(file);
            std::fs::write(&path, v).map_err(|source| ScratchError::Write {
                path,
                value: v.to_string(),
                source,
            })
        };
        match version {
            CgVersion::V1 => {
                write("memory.limit_in_bytes", &limit.to_string())?;
                if s.dir.join("memory.memsw.limit_in_bytes").exists() {
                    write("memory.memsw.limit_in_bytes", &limit.to_string())?;
                }
            }
            CgVersion::V2 => {
                write("memory.max", &limit.to_string())?;
                if s.dir.join("memory.swap.max").exists() {
                    write("memory.swap.max", "0")?;
                }
            }
        }
        Ok(s)
    }

    /// `v1` or `v2`.
    pub fn version_str(&self) -> &'static str {
        match self.version {
            CgVersion::V1 => "v1",
            CgVersion::V2 => "v2",
        }
    }

    pub fn procs(&self) -> Vec<i32> {
        procs(&self.dir)
    }

    fn read_value(&self, file: &str, key: Option<&str>) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        match key {
            None => parse_u64(text.as_bytes()),
            Some(k) => text.lines().find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            }),
        }
    }

    /// The kernel's OOM kill counter of the group.
    pub fn oom_kills(&self) -> u64 {
        self.read_value(self.oom_counter_file(), Some("oom_kill"))
            .unwrap_or(0)
    }

    /// The file that holds the kernel's OOM kill counter.
    pub fn oom_counter_file(&self) -> &'static str {
        match self.version {
            CgVersion::V1 => "memory.oom_control",
            CgVersion::V2 => "memory.events",
        }
    }

    /// The group's peak memory use in bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        match self.version {
            CgVersion::V1 => self.read_value("memory.max_usage_in_bytes", None),
            CgVersion::V2 => self.read_value("memory.peak", None),
        }
    }

    /// Kills what is left inside (only this group's processes) and removes the group; then
    /// this process goes back to its own group, if it left it ([`delegate_memory`]).
    pub fn remove(&self) -> bool {
        let removed = remove_group(&self.dir, self.version == CgVersion::V2);
        removed && self.restore_own_group()
    }

    /// Undoes [`delegate_memory`]: the memory controller off again for the own group's
    /// children, this process back in it, its leaf removed. True when there was nothing to
    /// undo or it is undone (a child of this process still in the leaf keeps it: false).
    fn restore_own_group(&self) -> bool {
        let Some(leaf) = self.own_leaf.as_ref().filter(|l| l.exists()) else {
            return true;
        };
        let Some(parent) = leaf.parent() else {
            return false;
        };
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), "-memory");
        let _ = std::fs::write(parent.join("cgroup.procs"), std::process::id().to_string());
        std::fs::remove_dir(leaf).is_ok()
    }

    /// Starts `cmd` inside the group.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<Child> {
        spawn_in(&self.dir, cmd)
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        if (self.dir.exists() || self.own_leaf.as_ref().is_some_and(|l| l.exists()))
            && !self.remove()
        {
            log::warn!(
                "could not remove the scratch cgroup {}; remove it with: rmdir {}",
                self.dir.display(),
                self.dir.display()
            );
        }
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// SIGKILLs every process of the group `dir` and its sub-groups (v2: also `cgroup.kill`),
/// until they are gone (up to 10 s), then removes the sub-groups and the group. Only for a
/// group the caller made: every process in it is the caller's own. True when it is gone.
pub fn remove_group(dir: &Path, v2: bool) -> bool {
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    let mut ok = true;
    for s in &subdirs {
        ok &= remove_group(s, v2);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = procs(dir);
        if pids.is_empty() {
            break;
        }
        if v2 {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        for pid in pids {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // rmdir may briefly fail with EBUSY while the last task is being released.
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return ok;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts `cmd` inside the cgroup `dir`: the child writes itself to `cgroup.procs` between
/// fork and exec.
pub fn spawn_in(dir: &Path, cmd: &mut Command) -> std::io::Result<Child> {
    let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: between fork and exec the hook makes only raw system calls (open, write, close)
    // and allocates nothing; `procs` was built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open(
                procs.as_c_str(),
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            rustix::io::write(&fd, b"0\n")?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// This process's group in the cgroup v1 hierarchy of `controller` (`memory`, `freezer`)
/// mounted at `/sys/fs/cgroup/<controller>`, when that directory exists: where the tests make
/// their own groups. Test support only.
#[cfg(any(test, feature = "test-support"))]
pub fn own_v1_group(controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        ctl.split(',').any(|c| c == controller).then_some(path)
    })?;
    let dir = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 layout (the build machine has the memory controller on v1 only): the memory
    /// controller is delegated to the children of the caller's group and the limit goes to
    /// the new group's memory.max.
    #[test]
    fn v2_scratch_group_is_made_under_the_callers_group_with_memory_max() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let own = r.join("sys/fs/cgroup/user.slice/drill.scope");
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        std::fs::write(
            r.join("sys/fs/cgroup/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        std::fs::write(
            r.join("proc/self/cgroup"),
            "1:name=systemd:/x\n0::/user.slice/drill.scope\n",
        )
        .unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "pids\n").unwrap();
        let name = format!("oomguard-drill-{}", std::process::id());
        let s = ScratchCgroup::create(&Root::new(r), &name, 32 << 20).unwrap();
        assert_eq!(s.version, CgVersion::V2);
        assert_eq!(s.rel, format!("/user.slice/drill.scope/{name}"));
        assert_eq!(s.dir, own.join(&name));
        assert_eq!(
            std::fs::read_to_string(s.dir.join("memory.max")).unwrap(),
            "33554432"
        );
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        // A second drill of the same process cannot reuse the group.
        assert!(
            format!(
                "{:#}",
                ScratchCgroup::create(&Root::new(r), &name, 1 << 20)
                    .err()
                    .unwrap()
            )
            .contains("cannot create the scratch cgroup")
        );
        std::fs::remove_file(s.dir.join("memory.max")).unwrap();
        assert!(s.remove());
        assert!(!own.join(&name).exists());
    }

    /// Only groups named for a maker that no longer runs are abandoned: not a running maker's,
    /// not a name that is not a drill's, not a file.
    #[test]
    fn a_scratch_group_whose_maker_is_gone_is_abandoned_and_a_running_makers_is_not() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let own = r.join("sys/fs/cgroup/memory/app");
        std::fs::create_dir_all(r.join("proc/77")).unwrap();
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        std::fs::write(r.join("proc/self/cgroup"), "4:memory:/app\n").unwrap();
        for n in [
            "oomguard-drill-77",
            "oomguard-drill-78",
            "oomguard-drill-79-self",
            "oomguard-drill-x",
            "oomguard-drill-",
            "other-80",
        ] {
            std::fs::create_dir_all(own.join(n)).unwrap();
        }
        std::fs::write(own.join("oomguard-drill-81"), "").unwrap();
        assert_eq!(
            abandoned(&Root::new(r), "oomguard-drill-"),
            [
                own.join("oomguard-drill-78"),
                own.join("oomguard-drill-79-self")
            ]
        );
        // No memory controller: nothing, no error.
        std::fs::write(r.join("proc/self/mountinfo"), "").unwrap();
        assert!(abandoned(&Root::new(r), "oomguard-drill-").is_empty());
    }
}
