//! Memory cgroups, v1 and v2: find the mounts, resolve a scope path, read limit / usage /
//! reclaimable file pages / swap / the kernel's OOM kill counter, and list the processes of a
//! group and all its descendants.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::tasks::CgroupFilter;
use super::{Root, parse_u64, read_into};

/// Which cgroup hierarchy a group lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgVersion {
    V1,
    V2,
}

/// Where the memory controller is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The cgroup2 mount, only if the memory controller is enabled there.
    pub v2_memory: Option<PathBuf>,
    /// Any cgroup2 mount (for `memory.pressure` and the like).
    pub v2_any: Option<PathBuf>,
    /// The cgroup v1 mount that carries the memory controller.
    pub v1_memory: Option<PathBuf>,
}

impl Mounts {
    /// Reads `ROOT/proc/self/mountinfo`; paths returned are real paths (not under the root).
    pub fn discover(root: &Root) -> Mounts {
        let text = std::fs::read(root.path("proc/self/mountinfo")).unwrap_or_default();
        let mut m = Mounts::parse_mountinfo(&text);
        if let Some(v2) = &m.v2_any {
            let ctl = std::fs::read_to_string(root.path(v2).join("cgroup.controllers"))
                .unwrap_or_default();
            if ctl.split_whitespace().any(|c| c == "memory") {
                m.v2_memory = Some(v2.clone());
            }
        }
        m
    }

    fn parse_mountinfo(text: &[u8]) -> Mounts {
        let mut m = Mounts::default();
        for line in String::from_utf8_lossy(text).lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(unescape_mountinfo(pre[4]));
            match post[0] {
                "cgroup2" if m.v2_any.is_none() => m.v2_any = Some(mount_point),
                "cgroup" if post[2].split(',').any(|o| o == "memory") => {
                    m.v1_memory.get_or_insert(mount_point);
                }
                _ => {}
            }
        }
        m
    }
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A resolved cgroup scope.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub version: CgVersion,
    /// The group's directory (real path; read through the root).
    pub dir: PathBuf,
    /// The path as printed in `/proc/PID/cgroup` (relative to the mount), e.g. `/app`.
    pub rel: String,
    /// The mount the group lives under.
    pub mount: PathBuf,
}

/// A scope path that does not name a memory cgroup.
#[derive(Debug, thiserror::Error)]
#[error(
    "cgroup '{0}' was not found: give a cgroup directory (e.g. /sys/fs/cgroup/memory/app) or a path as in /proc/PID/cgroup, under a mount with the memory controller ({1})"
)]
pub struct CgroupNotFound(pub String, pub String);

/// One reading of a group's memory, all in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgMemory {
    /// The effective limit: of the group's own and its ancestors', the one with the least room
    /// left ([`Cgroup::limited_domain`]). `None`: unlimited all the way up (the scope then
    /// takes the system's memory).
    pub limit: Option<u64>,
    /// Usage of the group whose limit applies (the domain).
    pub usage: u64,
    /// Reclaimable file pages of the domain (`total_inactive_file` / `inactive_file`).
    pub inactive_file: u64,
    /// Swap limit and usage, when the hierarchy accounts swap: v1 the domain's, v2 those of
    /// the group on the way up with the least swap room left.
    pub swap_limit: Option<u64>,
    pub swap_usage: Option<u64>,
}

/// Values at or above this are "no limit" (v1 prints PAGE_COUNTER_MAX pages in bytes).
const UNLIMITED: u64 = 1 << 60;

impl Cgroup {
    /// Resolves the user's `PATH`: a directory, or a `/proc/PID/cgroup` path under the v2
    /// memory mount, else under the v1 memory mount.
    pub fn resolve(root: &Root, mounts: &Mounts, path: &Path) -> Result<Cgroup, CgroupNotFound> {
        let candidates = [
            (CgVersion::V2, mounts.v2_memory.as_ref()),
            (CgVersion::V1, mounts.v1_memory.as_ref()),
        ];
        // A directory given directly.
        for (version, mount) in candidates {
            if let Some(mount) = mount
                && let Ok(rel) = path.strip_prefix(mount)
                && root.path(path).is_dir()
            {
                return Ok(Cgroup {
                    version,
                    dir: path.to_path_buf(),
                    rel: rel_label(rel),
                    mount: mount.clone(),
                });
            }
        }
        // A path as in /proc/PID/cgroup.
        let rel = path.strip_prefix("/").unwrap_or(path);
        for (version, mount) in candidates {
            if let Some(mount) = mount {
                let dir = mount.join(rel);
                if root.path(&dir).is_dir() {
                    return Ok(Cgroup {
                        version,
                        rel: rel_label(rel),
                        dir,
                        mount: mount.clone(),
                    });
                }
            }
        }
        let seen = format!(
            "v2 memory mount: {}, v1 memory mount: {}",
            mounts
                .v2_memory
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
            mounts
                .v1_memory
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string())
        );
        Err(CgroupNotFound(path.display().to_string(), seen))
    }

    fn read_u64(root: &Root, dir: &Path, file: &str, buf: &mut Vec<u8>) -> Option<u64> {
        read_into(&root.path(dir.join(file)), buf).ok()?;
        if buf.starts_with(b"max") {
            return Some(u64::MAX);
        }
        parse_u64(buf)
    }

    fn stat_value(root: &Root, dir: &Path, key: &[u8], buf: &mut Vec<u8>) -> Option<u64> {
        read_into(&root.path(dir.join("memory.stat")), buf).ok()?;
        buf.split(|&b| b == b'\n').find_map(|l| {
            let rest = l.strip_prefix(key)?;
            rest.first().filter(|&&b| b == b' ')?;
            parse_u64(rest)
        })
    }

    /// The directory from the group up to the mount whose memory limit binds first, and that
    /// limit: of the groups on the way with a limit, the one with the least room left (limit
    /// − usage). A group's own limit is not always the one that binds: a service limited to
    /// 16 GiB in a slice limited to 4 GiB, or a container inside a pod or a node's
    /// allocatable, runs out at the ancestor, and its own figures would keep the guard blind
    /// until the kernel's OOM killer acts there. (On cgroup v1 a parent's limit covers its
    /// children with `use_hierarchy`, the only mode of kernels since 5.x.) `None`: no limit up
    /// to the mount.
    pub fn limited_domain(&self, root: &Root, buf: &mut Vec<u8>) -> Option<(PathBuf, u64)> {
        self.domain(root, buf).ok().flatten()
    }

    /// [`Cgroup::limited_domain`], failing when the group's directory is gone: a removed group's
    /// ancestors' figures are not the group's.
    fn domain(&self, root: &Root, buf: &mut Vec<u8>) -> std::io::Result<Option<(PathBuf, u64)>> {
        let (limit_file, usage_file) = match self.version {
            CgVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
            CgVersion::V2 => ("memory.max", "memory.current"),
        };
        let mut dir = self.dir.clone();
        let mut best: Option<(PathBuf, u64, u64)> = None;
        loop {
            let read = Self::read_u64(root, &dir, limit_file, buf);
            // (A v2 root group has no `memory.max`: only a missing directory is an error.)
            if read.is_none() && dir == self.dir && !root.path(&dir).is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the group's directory is gone",
                ));
            }
            if let Some(l) = read
                && l < UNLIMITED
            {
                let room =
                    l.saturating_sub(Self::read_u64(root, &dir, usage_file, buf).unwrap_or(0));
                if best.as_ref().is_none_or(|b| room < b.2) {
                    best = Some((dir.clone(), l, room));
                }
            }
            if dir == self.mount || !dir.pop() || !dir.starts_with(&self.mount) {
                return Ok(best.map(|(d, l, _)| (d, l)));
            }
        }
    }

    /// v2: the swap limit that binds first from the group up to the mount, as (limit, usage)
    /// of the group with the least swap room left. A `memory.swap.max` of 0 anywhere on the
    /// way (a unit's `MemorySwapMax=0`, kubelet's NoSwap) means no swap for the group, whatever
    /// the machine has. `None`: no swap limit up to the mount.
    fn v2_swap_bound(&self, root: &Root, buf: &mut Vec<u8>) -> Option<(u64, u64)> {
        let mut dir = self.dir.clone();
        let mut best: Option<(u64, u64)> = None;
        loop {
            if let Some(l) = Self::read_u64(root, &dir, "memory.swap.max", buf)
                && l < UNLIMITED
            {
                let u = Self::read_u64(root, &dir, "memory.swap.current", buf).unwrap_or(0);
                if best.is_none_or(|(bl, bu)| l.saturating_sub(u) < bl.saturating_sub(bu)) {
                    best = Some((l, u));
                }
            }
            if dir == self.mount || !dir.pop() || !dir.starts_with(&self.mount) {
                return best;
            }
        }
    }

    /// Reads the memory of the group's domain. `buf` is reused.
    pub fn read_memory(&self, root: &Root, buf: &mut Vec<u8>) -> std::io::Result<CgMemory> {
        let (domain, limit) = match self.domain(root, buf)? {
            Some((d, l)) => (d, Some(l)),
            None => (self.dir.clone(), None),
        };
        let (usage_file, inactive_key) = match self.version {
            CgVersion::V1 => ("memory.usage_in_bytes", &b"total_inactive_file"[..]),
            CgVersion::V2 => ("memory.current", &b"inactive_file"[..]),
        };
        let usage = Self::read_u64(root, &domain, usage_file, buf).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot read {}", domain.join(usage_file).display()),
            )
        })?;
        let inactive_file = Self::stat_value(root, &domain, inactive_key, buf).unwrap_or(0);
        let (swap_limit, swap_usage) = match self.version {
            // v1 `memory.swappiness` 0 on the group whose limit binds: reclaim at that limit
            // takes page cache only and never swaps (the kernel's `get_scan_count` for cgroup
            // reclaim), so however much swap is free, none of it is room for this group.
            CgVersion::V1 if Self::read_u64(root, &domain, "memory.swappiness", buf) == Some(0) => {
                (Some(0), Some(0))
            }
            CgVersion::V1 => {
                let memsw_limit = Self::read_u64(root, &domain, "memory.memsw.limit_in_bytes", buf);
                let memsw_usage = Self::read_u64(root, &domain, "memory.memsw.usage_in_bytes", buf);
                match (memsw_limit, memsw_usage) {
                    (Some(l), Some(u)) => (
                        (l < UNLIMITED).then(|| l.saturating_sub(limit.unwrap_or(0))),
                        Some(u.saturating_sub(usage)),
                    ),
                    _ => (None, None),
                }
            }
            CgVersion::V2 => match self.v2_swap_bound(root, buf) {
                Some((l, u)) => (Some(l), Some(u)),
                None => (
                    None,
                    Self::read_u64(root, &domain, "memory.swap.current", buf),
                ),
            },
        };
        Ok(CgMemory {
            limit,
            usage,
            inactive_file,
            swap_limit,
            swap_usage,
        })
    }

    /// The kernel's OOM kill counter for the group (v1 `memory.oom_control`, v2 `memory.events`).
    pub fn oom_kills(&self, root: &Root, buf: &mut Vec<u8>) -> Option<u64> {
        let file = match self.version {
            CgVersion::V1 => "memory.oom_control",
            CgVersion::V2 => "memory.events",
        };
        read_into(&root.path(self.dir.join(file)), buf).ok()?;
        buf.split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"oom_kill ").and_then(parse_u64))
    }

    /// Appends the PIDs of the group and all its descendants to `out`.
    pub fn procs(&self, root: &Root, out: &mut Vec<i32>, buf: &mut Vec<u8>) {
        collect_procs(root, &self.dir, out, buf);
    }

    /// The pressure file of the group, if the hierarchy has one (v2).
    pub fn pressure_path(&self) -> Option<PathBuf> {
        (self.version == CgVersion::V2).then(|| self.dir.join("memory.pressure"))
    }

    /// The group as the kernel knows it: its id (the inode number of its directory, which is
    /// the kernel's `kernfs_node.id` on 64-bit kernels) and its level (how many groups deep it
    /// is below the hierarchy's root). The level is known from the path in the initial cgroup
    /// namespace, with the hierarchy mounted from its root. In a cgroup namespace of its own
    /// (a container's), with the hierarchy mounted from the namespace's root, the path gives
    /// the depth below that root: the program then takes the root's level from this
    /// process's memory cgroup, whose depth below it `/proc/self/cgroup` gives.
    /// What the task iterator's program for the group compares a process's memory cgroup
    /// with.
    pub fn kernel_id(&self, root: &Root) -> Result<CgroupFilter, NoKernelId> {
        let ns = root.path("proc/self/ns/cgroup");
        let meta = std::fs::metadata(&ns).map_err(|source| NoKernelId::Io { path: ns, source })?;
        let reader_depth = if meta.ino() == INITIAL_CGROUP_NS {
            None
        } else {
            Some(self.own_depth(root)?)
        };
        let text = std::fs::read(root.path("proc/self/mountinfo")).unwrap_or_default();
        if mount_root(&text, &self.mount).as_deref() != Some("/") {
            return Err(NoKernelId::MountRoot(self.mount.clone()));
        }
        let io = |path: PathBuf| move |source| NoKernelId::Io { path, source };
        let dir = root.path(&self.dir);
        let mount = root.path(&self.mount);
        // The level from the real path (a `..` or a link in the given one counts for nothing).
        let real = std::fs::canonicalize(&dir).map_err(io(dir.clone()))?;
        let real_mount = std::fs::canonicalize(&mount).map_err(io(mount.clone()))?;
        let level = real
            .strip_prefix(&real_mount)
            .map_err(|_| NoKernelId::Outside(real.clone(), real_mount.clone()))?
            .components()
            .count();
        // Below the root of a cgroup2 hierarchy a group has the memory controller only where
        // its parent hands it down; without it, its processes' memory cgroup is an ancestor.
        if self.version == CgVersion::V2 && level > 0 && !real.join("memory.current").exists() {
            return Err(NoKernelId::NoController(real));
        }
        let meta = std::fs::metadata(&real).map_err(io(real.clone()))?;
        Ok(CgroupFilter {
            id: meta.ino(),
            level: u32::try_from(level).unwrap_or(u32::MAX),
            reader_depth,
        })
    }

    /// How many groups deep this process's memory cgroup in the group's hierarchy is below
    /// the root of its cgroup namespace (`/proc/self/cgroup`'s path; on cgroup2 the nearest
    /// group up from it with the memory controller on, as the kernel charges it).
    fn own_depth(&self, root: &Root) -> Result<u32, NoKernelId> {
        let at = root.path("proc/self/cgroup");
        let text = std::fs::read_to_string(&at).map_err(|source| NoKernelId::Io {
            path: at.clone(),
            source,
        })?;
        let own = memory_path_of(&text, self.version == CgVersion::V2)
            .ok_or_else(|| NoKernelId::OwnGroup(at.clone()))?;
        let mut parts: Vec<&str> = own.split('/').filter(|c| !c.is_empty()).collect();
        if !own.starts_with('/') || parts.contains(&"..") {
            // A process outside its namespace's root is shown as `/..`.
            return Err(NoKernelId::OwnGroup(at));
        }
        if self.version == CgVersion::V2 {
            let mount = root.path(&self.mount);
            while !parts.is_empty() && !mount.join(parts.join("/")).join("memory.current").exists()
            {
                parts.pop();
            }
            // Its memory cgroup above the namespace's root, a group without the controller
            // (the hierarchy's real root, which alone has no `cgroup.type`, is the memory
            // cgroup of what nothing else holds): its level says nothing here.
            if parts.is_empty()
                && !mount.join("memory.current").exists()
                && mount.join("cgroup.type").exists()
            {
                return Err(NoKernelId::OwnGroup(at));
            }
        }
        Ok(u32::try_from(parts.len()).unwrap_or(u32::MAX))
    }
}

/// The inode number of the initial cgroup namespace (`PROC_CGROUP_INIT_INO`).
const INITIAL_CGROUP_NS: u64 = 0xEFFF_FFFB;

/// Why a group's id and level cannot be known ([`Cgroup::kernel_id`]).
#[derive(Debug, thiserror::Error)]
pub enum NoKernelId {
    #[error(
        "this process is in a cgroup namespace of its own, and its memory cgroup is not found below the namespace's root in {0}, so a group's path does not say how deep it is"
    )]
    OwnGroup(PathBuf),
    #[error("{0} mounts part of its hierarchy, not the whole of it")]
    MountRoot(PathBuf),
    #[error("{0} is not under its mount {1}")]
    Outside(PathBuf, PathBuf),
    #[error("{0} does not have the memory controller on (no memory.current)")]
    NoController(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The root within its hierarchy (mountinfo's fourth field) of the mount at `mount_point`.
fn mount_root(mountinfo: &[u8], mount_point: &Path) -> Option<String> {
    // The last such line: a later mount on the same point hides the earlier ones.
    String::from_utf8_lossy(mountinfo)
        .lines()
        .rev()
        .find_map(|line| {
            let mut f = line.split(' ');
            let (root, point) = (f.nth(3)?, f.next()?);
            (Path::new(&unescape_mountinfo(point)) == mount_point).then(|| unescape_mountinfo(root))
        })
}

fn collect_procs(root: &Root, dir: &Path, out: &mut Vec<i32>, buf: &mut Vec<u8>) {
    let real = root.path(dir);
    if read_into(&real.join("cgroup.procs"), buf).is_ok() {
        out.extend(
            buf.split(|&b| b == b'\n')
                .filter_map(|l| parse_u64(l).and_then(|v| i32::try_from(v).ok())),
        );
    }
    let Ok(rd) = std::fs::read_dir(&real) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_procs(root, &dir.join(e.file_name()), out, buf);
        }
    }
}

/// The memory-controller cgroup path of a process from `/proc/PID/cgroup` text: the v2 line
/// (`0::/path`) when `prefer_v2`, else the v1 line whose controllers include `memory`.
pub fn memory_path_of(text: &str, prefer_v2: bool) -> Option<&str> {
    let mut v1 = None;
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        if ctl.is_empty() {
            v2 = Some(path);
        } else if ctl.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    if prefer_v2 { v2.or(v1) } else { v1.or(v2) }
}

/// A group's path as `/proc/PID/cgroup` prints it: `/` for the root, else no trailing `/`.
fn rel_label(rel: &Path) -> String {
    let r = format!("/{}", rel.display()).replace("//", "/");
    match r.trim_end_matches('/') {
        "" => "/".into(),
        r => r.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a cgroup namespace the reader's depth below its root comes from `/proc/self/cgroup`:
    /// on cgroup2 from the nearest group up with the memory controller on; none when that is
    /// above the namespace's root, or the process is outside it (`/..`).
    #[test]
    fn the_readers_depth_below_its_namespaces_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let v2 = Cgroup {
            version: CgVersion::V2,
            dir: PathBuf::from("/sys/fs/cgroup/app"),
            rel: "/app".into(),
            mount: PathBuf::from("/sys/fs/cgroup"),
        };
        let v1 = Cgroup {
            version: CgVersion::V1,
            mount: PathBuf::from("/sys/fs/cgroup/memory"),
            ..v2.clone()
        };
        let mount = t.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(mount.join("a/b")).unwrap();
        std::fs::write(mount.join("a/memory.current"), "0\n").unwrap();
        std::fs::create_dir_all(t.path().join("proc/self")).unwrap();
        let depth = |cg: &Cgroup, text: &str| {
            std::fs::write(t.path().join("proc/self/cgroup"), text).unwrap();
            cg.own_depth(&root).ok()
        };
        // b has no memory controller of its own: its memory cgroup is a.
        assert_eq!(depth(&v2, "0::/a/b\n"), Some(1));
        assert_eq!(depth(&v2, "0::/a\n"), Some(1));
        assert_eq!(depth(&v2, "0::/../x\n"), None);
        // The namespace's root is the hierarchy's (no cgroup.type there): depth 0.
        assert_eq!(depth(&v2, "0::/\n"), Some(0));
        // A group without the controller: the memory cgroup is above the namespace's root.
        std::fs::write(mount.join("cgroup.type"), "domain\n").unwrap();
        assert_eq!(depth(&v2, "0::/\n"), None);
        // v1: the memory line's path, as it is.
        assert_eq!(depth(&v1, "5:cpu:/\n4:memory:/x/y\n0::/a\n"), Some(2));
        assert_eq!(depth(&v1, "5:cpu:/\n"), None);
    }

    /// The root group is labelled `/` however it was named; others without a trailing `/`.
    #[test]
    fn a_groups_label_is_its_path_and_the_roots_is_a_slash() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("sys/fs/cgroup/memory/app/web")).unwrap();
        let mounts = Mounts {
            v2_memory: None,
            v2_any: None,
            v1_memory: Some(PathBuf::from("/sys/fs/cgroup/memory")),
        };
        let rel = |p: &str| Cgroup::resolve(&root, &mounts, Path::new(p)).unwrap().rel;
        for (given, label) in [
            ("/", "/"),
            ("/sys/fs/cgroup/memory", "/"),
            ("/sys/fs/cgroup/memory/", "/"),
            ("/app/", "/app"),
            ("/app/web", "/app/web"),
            ("/sys/fs/cgroup/memory/app/web/", "/app/web"),
        ] {
            assert_eq!(rel(given), label, "{given}");
        }
    }

    /// A group's level is known from its path only where the hierarchy is mounted from its
    /// root: mountinfo's fourth field, of the last mount on that point.
    #[test]
    fn a_mounts_root_in_its_hierarchy_is_read_from_the_last_mount_on_the_point() {
        let t = b"31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  40 31 0:27 /kubepods /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  41 25 0:28 /a\\040b /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        let memory = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(mount_root(t, memory).as_deref(), Some("/kubepods"));
        assert_eq!(mount_root(&t[..62], memory).as_deref(), Some("/"));
        assert_eq!(
            mount_root(t, Path::new("/mnt/c g")).as_deref(),
            Some("/a b")
        );
        assert_eq!(mount_root(t, Path::new("/sys/fs/cgroup")), None);
    }

    #[test]
    fn mountinfo_finds_v1_memory_and_v2() {
        let t = b"30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = Mounts::parse_mountinfo(t);
        assert_eq!(
            m.v1_memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            m.v2_any.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m.v2_memory, None);
    }

    /// A removed group is an error, not its limited parent's figures; a v2 root group, which
    /// has no `memory.max`, reads as unlimited.
    #[test]
    fn a_removed_groups_memory_is_an_error_not_its_parents() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let write = |rel: &str, text: &str| {
            let p = t.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("cg/slice/memory.max", "1073741824\n");
        write("cg/slice/memory.current", "536870912\n");
        write("cg/slice/app/memory.max", "max\n");
        write("cg/slice/app/memory.current", "1048576\n");
        write("cg/memory.current", "2147483648\n");
        let group = |dir: &str| Cgroup {
            version: CgVersion::V2,
            dir: PathBuf::from(dir),
            rel: dir.trim_start_matches("/cg").into(),
            mount: PathBuf::from("/cg"),
        };
        let mut buf = Vec::new();
        let app = group("/cg/slice/app");
        let m = app.read_memory(&root, &mut buf).unwrap();
        assert_eq!((m.limit, m.usage), (Some(1 << 30), 512 << 20));
        std::fs::remove_dir_all(t.path().join("cg/slice/app")).unwrap();
        let e = app.read_memory(&root, &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("gone"), "{e}");
        let top = group("/cg").read_memory(&root, &mut buf).unwrap();
        assert_eq!((top.limit, top.usage), (None, 2 << 30));
    }

    #[test]
    fn memory_path_prefers_the_asked_hierarchy() {
        let t = "9:name=systemd:/\n4:memory:/process_api/x\n0::/user.slice\n";
        assert_eq!(memory_path_of(t, false), Some("/process_api/x"));
        assert_eq!(memory_path_of(t, true), Some("/user.slice"));
        assert_eq!(memory_path_of("0::/a:b\n", false), Some("/a:b"));
    }
}
