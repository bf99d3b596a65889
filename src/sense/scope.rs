//! A scope: the whole machine or one memory cgroup. One reader answers what every wake-up
//! needs — the scope's memory and swap, its pressure file, its processes and the kernel's OOM
//! kill counter — through buffers it owns.

use std::path::PathBuf;

use super::cgroup::{CgVersion, Cgroup, CgroupNotFound, Mounts};
use super::floor::Floor;
use super::kmsg::{KernelLog, OomKinds};
use super::meminfo::{Meminfo, MeminfoError};
use super::{KeptFile, Root};
use crate::sense::mem::MemState;
use crate::values::ScopeSpec;

/// Reading the scope failed.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(transparent)]
    NotFound(#[from] CgroupNotFound),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Meminfo {
        path: PathBuf,
        #[source]
        source: MeminfoError,
    },
}

/// The resolved scope.
#[derive(Debug, Clone)]
pub enum ScopeKind {
    System,
    Cgroup(Cgroup),
}

/// A scope and its reusable read buffer.
#[derive(Debug)]
pub struct Scope {
    pub root: Root,
    pub kind: ScopeKind,
    pub mounts: Mounts,
    buf: Vec<u8>,
    meminfo: KeptFile,
    vmstat: KeptFile,
    /// The live machine's cheap floor (system scope only).
    floor: Option<Floor>,
    /// Free RAM (kB) at the last reading of the system scope (meminfo or the floor).
    last_free_kb: Option<u64>,
    /// The kinds of the machine's OOM kills (system scope, once [`Scope::watch_kernel_log`]).
    oom_kinds: Option<OomKinds>,
    /// A v1 cgroup scope's sub-groups, whose kills its counter does not count.
    sub_groups: SubGroups,
}

/// The `memory.oom_control` files of a v1 scope's descendant groups. Cgroup v1 counts a kernel
/// OOM kill only in the victim's own group (`memcg_memory_event` stops at the first group off
/// the default hierarchy), where v2's `memory.events` counts it up the tree: without these, a
/// kill in a sub-group of the scope (a container's own groups, a service's children) was
/// never seen. Listed again at most every [`SubGroups::RELIST`], and when one is gone.
#[derive(Debug, Default)]
struct SubGroups {
    files: Vec<PathBuf>,
    listed: Option<std::time::Instant>,
}

impl SubGroups {
    const RELIST: std::time::Duration = std::time::Duration::from_secs(1);

    /// The sum of the sub-groups' kill counters (read through `root`).
    fn kills(&mut self, root: &Root, dir: &std::path::Path, buf: &mut Vec<u8>) -> u64 {
        if self.listed.is_none_or(|t| t.elapsed() >= Self::RELIST) {
            self.files.clear();
            list_sub_groups(root, dir, &mut self.files);
            self.listed = Some(std::time::Instant::now());
        }
        let mut sum = 0u64;
        for f in &self.files {
            match super::read_into(f, buf) {
                Ok(_) => {
                    sum += buf
                        .split(|&b| b == b'\n')
                        .find_map(|l| l.strip_prefix(b"oom_kill ").and_then(super::parse_u64))
                        .unwrap_or(0)
                }
                // Removed: listed again at the next read.
                Err(_) => self.listed = None,
            }
        }
        sum
    }
}

/// Appends the `memory.oom_control` file of every group below `dir` (real paths).
fn list_sub_groups(root: &Root, dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root.path(dir)) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let sub = dir.join(e.file_name());
            out.push(root.path(sub.join("memory.oom_control")));
            list_sub_groups(root, &sub, out);
        }
    }
}

impl Scope {
    /// Resolves a scope spec against the mounts found under `root`.
    pub fn resolve(root: &Root, spec: &ScopeSpec) -> Result<Scope, ScopeError> {
        let mounts = Mounts::discover(root);
        let kind = match spec {
            ScopeSpec::System => ScopeKind::System,
            ScopeSpec::Cgroup(p) => ScopeKind::Cgroup(Cgroup::resolve(root, &mounts, p)?),
        };
        let floor = match kind {
            ScopeKind::System => Floor::new(root),
            ScopeKind::Cgroup(_) => None,
        };
        Ok(Scope {
            root: root.clone(),
            floor,
            last_free_kb: None,
            oom_kinds: None,
            sub_groups: SubGroups::default(),
            kind,
            mounts,
            buf: Vec::with_capacity(8192),
            meminfo: KeptFile::whole(root.path("proc/meminfo")),
            vmstat: KeptFile::new(root.path("proc/vmstat")),
        })
    }

    /// `system` or `cgroup:PATH` (the path as in /proc/PID/cgroup).
    pub fn label(&self) -> String {
        match &self.kind {
            ScopeKind::System => "system".into(),
            ScopeKind::Cgroup(c) => format!("cgroup:{}", c.rel),
        }
    }

    pub fn cgroup(&self) -> Option<&Cgroup> {
        match &self.kind {
            ScopeKind::System => None,
            ScopeKind::Cgroup(c) => Some(c),
        }
    }

    /// The live machine's memory with a floor for `available_kb` ([`Floor`]): no meminfo read.
    /// `None` for a cgroup, a fixture root, or when the floor cannot be read.
    pub fn memory_floor(&mut self) -> Option<MemState> {
        let f = self.floor.as_mut()?;
        let m = f.memory(&mut self.buf)?;
        self.last_free_kb = Some(f.free_kb);
        Some(m)
    }

    /// The machine's free RAM (kB) at the last reading of the system scope (`memory` or
    /// `memory_floor`); `None` for a cgroup scope or before the first reading.
    pub fn last_free_kb(&self) -> Option<u64> {
        self.last_free_kb
    }

    /// `/proc/meminfo`, parsed.
    pub fn meminfo(&mut self) -> Result<Meminfo, ScopeError> {
        if let Err(source) = self.meminfo.read_into(&mut self.buf) {
            return Err(ScopeError::Io {
                path: self.meminfo.path().to_path_buf(),
                source,
            });
        }
        Meminfo::parse(&self.buf).map_err(|source| ScopeError::Meminfo {
            path: self.meminfo.path().to_path_buf(),
            source,
        })
    }

    /// The scope's memory now. For a cgroup: total = the effective limit (the group's or its
    /// nearest limited ancestor's; unlimited all the way up = the machine's), available = limit
    /// − usage + inactive file, swap = what the group may still swap (bounded by the machine's
    /// free swap).
    pub fn memory(&mut self) -> Result<MemState, ScopeError> {
        let mi = self.meminfo()?;
        let cg = match &self.kind {
            ScopeKind::System => {
                self.last_free_kb = Some(mi.mem_free_kb);
                return Ok(MemState {
                    total_kb: mi.mem_total_kb,
                    available_kb: mi.available_kb(),
                    swap_total_kb: mi.swap_total_kb,
                    swap_free_kb: mi.swap_free_kb,
                });
            }
            ScopeKind::Cgroup(c) => c,
        };
        let m = cg
            .read_memory(&self.root, &mut self.buf)
            .map_err(|source| ScopeError::Io {
                path: self.root.path(&cg.dir),
                source,
            })?;
        let Some(limit) = m.limit else {
            return Ok(MemState {
                total_kb: mi.mem_total_kb,
                available_kb: mi.available_kb(),
                swap_total_kb: mi.swap_total_kb,
                swap_free_kb: mi.swap_free_kb,
            });
        };
        let total_kb = (limit / 1024).min(mi.mem_total_kb);
        let available_kb = ((limit.saturating_sub(m.usage) + m.inactive_file) / 1024)
            .min(total_kb)
            .min(mi.available_kb());
        let (swap_total_kb, swap_free_kb) = if mi.swap_total_kb == 0 {
            (0, 0)
        } else {
            let total = m
                .swap_limit
                .map_or(mi.swap_total_kb, |l| (l / 1024).min(mi.swap_total_kb));
            let used = m.swap_usage.unwrap_or(0) / 1024;
            (total, total.saturating_sub(used).min(mi.swap_free_kb))
        };
        Ok(MemState {
            total_kb,
            available_kb,
            swap_total_kb,
            swap_free_kb,
        })
    }

    /// The kernel's OOM kill counter for the scope (`/proc/vmstat` or the cgroup's file). For
    /// the system scope once [`Scope::watch_kernel_log`] ran: less the kills at a memory
    /// cgroup's own limit ([`OomKinds`]; the kernel log is read when the counter rose), so that
    /// every reader that waits for a rise waits only for the kills of the machine's shortage.
    pub fn kernel_oom_kills(&mut self) -> Option<u64> {
        match &self.kind {
            ScopeKind::System => {
                let raw = self.raw_oom_kills()?;
                Some(match self.oom_kinds.as_mut() {
                    Some(k) => k.observe(raw, std::time::Instant::now()),
                    None => raw,
                })
            }
            ScopeKind::Cgroup(c) => {
                let own = c.oom_kills(&self.root, &mut self.buf)?;
                Some(match c.version {
                    CgVersion::V1 => own + self.sub_groups.kills(&self.root, &c.dir, &mut self.buf),
                    CgVersion::V2 => own,
                })
            }
        }
    }

    /// `/proc/vmstat oom_kill` as it is.
    fn raw_oom_kills(&mut self) -> Option<u64> {
        self.vmstat.read_to_line(&mut self.buf, b"oom_kill ").ok()?;
        super::vmstat::Vmstat::parse(&self.buf).oom_kill
    }

    /// For the system scope: from now on, tells the kills at a memory cgroup's own limit from
    /// the machine's by the kernel log (`dev/kmsg` under the root, opened now at its end; see
    /// [`crate::sense::kmsg`]). The counter is read first, so that a kill between the two
    /// counts as one with no line. Returns why the log cannot be read (every kill then holds
    /// back, as without it). Nothing for a cgroup scope: its counter counts only its own.
    pub fn watch_kernel_log(&mut self) -> Result<(), String> {
        if self.cgroup().is_some() {
            return Ok(());
        }
        let raw = self.raw_oom_kills();
        let (log, err) = KernelLog::open(&self.root);
        let note = err.map(|e| format!("cannot read {}: {e}", log.path().display()));
        self.oom_kinds = Some(OomKinds::new(raw, log));
        note.map_or(Ok(()), Err)
    }

    /// The kinds of the machine's OOM kills, when they are told ([`Scope::watch_kernel_log`]).
    pub fn oom_kinds(&self) -> Option<&OomKinds> {
        self.oom_kinds.as_ref()
    }

    /// The page allocation counters (sum of `pgalloc_*` in `/proc/vmstat`); `u64::MAX` when
    /// unreadable (which makes every growth bound useless, forcing a rescan).
    pub fn pgalloc(&mut self) -> u64 {
        match self.vmstat.read_into(&mut self.buf) {
            Ok(_) => super::vmstat::Vmstat::parse(&self.buf).pgalloc,
            Err(_) => u64::MAX,
        }
    }

    /// Where the kernel OOM counter lives (for records).
    pub fn oom_counter_source(&self) -> String {
        match &self.kind {
            ScopeKind::System => "/proc/vmstat oom_kill".into(),
            ScopeKind::Cgroup(c) => match c.version {
                CgVersion::V1 => format!(
                    "{}/memory.oom_control oom_kill, with its sub-groups'",
                    c.dir.display()
                ),
                CgVersion::V2 => format!("{}/memory.events oom_kill", c.dir.display()),
            },
        }
    }

    /// The pressure file to read and to register triggers on (real path).
    pub fn pressure_path(&self) -> Option<PathBuf> {
        match &self.kind {
            ScopeKind::System => Some(PathBuf::from("/proc/pressure/memory")),
            ScopeKind::Cgroup(c) => c.pressure_path(),
        }
        .filter(|p| self.root.path(p).exists())
    }

    /// For a cgroup scope, appends its processes (group and descendants) to `out` and returns
    /// true; for the system scope returns false (callers walk /proc).
    pub fn cgroup_pids(&mut self, out: &mut Vec<i32>) -> bool {
        match &self.kind {
            ScopeKind::System => false,
            ScopeKind::Cgroup(c) => {
                c.procs(&self.root, out, &mut self.buf);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// A fixture tree with a v1 memory hierarchy: /app (no limit) under /lim (1 GiB).
    fn fixture(swap: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("proc/self")).unwrap();
        fs::write(
            r.join("proc/meminfo"),
            format!(
                "MemTotal: 4000000 kB\nMemFree: 100 kB\nMemAvailable: 3000000 kB\nSwapTotal: {} kB\nSwapFree: {} kB\n",
                if swap { 2000000 } else { 0 },
                if swap { 1500000 } else { 0 }
            ),
        )
        .unwrap();
        fs::write(
            r.join("proc/self/mountinfo"),
            "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        let lim = r.join("sys/fs/cgroup/memory/lim");
        let app = lim.join("app");
        fs::create_dir_all(app.join("sub")).unwrap();
        fs::write(
            r.join("sys/fs/cgroup/memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        fs::write(lim.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        fs::write(lim.join("memory.usage_in_bytes"), "1000000000\n").unwrap();
        fs::write(
            lim.join("memory.stat"),
            "cache 0\ninactive_file 1\ntotal_inactive_file 20000000\n",
        )
        .unwrap();
        fs::write(
            lim.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        fs::write(app.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(app.join("memory.usage_in_bytes"), "500000000\n").unwrap();
        fs::write(
            app.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        fs::write(app.join("cgroup.procs"), "10\n11\n").unwrap();
        fs::write(app.join("sub/cgroup.procs"), "12\n").unwrap();
        d
    }

    /// Cgroup v1 counts a kernel OOM kill only in the victim's own group: the scope's counter
    /// adds its sub-groups' (v2's `memory.events` counts them up the tree already). A group made
    /// after the first read is counted once listed again; a removed one stops being read.
    #[test]
    fn a_v1_scopes_kill_counter_counts_its_sub_groups_kills() {
        let d = fixture(false);
        let root = Root::new(d.path());
        let app = d.path().join("sys/fs/cgroup/memory/lim/app");
        let oc = |n: u64| format!("oom_kill_disable 0\nunder_oom 0\noom_kill {n}\n");
        fs::write(app.join("sub/memory.oom_control"), oc(2)).unwrap();
        let mut s = Scope::resolve(&root, &"cgroup:/lim/app".parse().unwrap()).unwrap();
        assert_eq!(s.kernel_oom_kills(), Some(1 + 2));
        fs::create_dir_all(app.join("sub/deeper")).unwrap();
        fs::write(app.join("sub/deeper/memory.oom_control"), oc(4)).unwrap();
        fs::write(app.join("sub/memory.oom_control"), oc(3)).unwrap();
        assert_eq!(
            s.kernel_oom_kills(),
            Some(1 + 3),
            "listed again only after a while"
        );
        s.sub_groups.listed = None;
        assert_eq!(s.kernel_oom_kills(), Some(1 + 3 + 4));
        fs::remove_dir_all(app.join("sub/deeper")).unwrap();
        assert_eq!(s.kernel_oom_kills(), Some(1 + 3));
        assert!(
            s.sub_groups.listed.is_none(),
            "a group gone is listed again"
        );
        assert_eq!(s.kernel_oom_kills(), Some(1 + 3));
        assert_eq!(s.sub_groups.files.len(), 1);
    }

    #[test]
    fn unlimited_group_takes_the_nearest_limited_ancestor() {
        let d = fixture(false);
        let root = Root::new(d.path());
        let mut s = Scope::resolve(&root, &"cgroup:/lim/app".parse().unwrap()).unwrap();
        assert_eq!(s.label(), "cgroup:/lim/app");
        let m = s.memory().unwrap();
        assert_eq!(m.total_kb, 1048576);
        // (1073741824 - 1000000000 + 20000000) / 1024
        assert_eq!(m.available_kb, 91_544);
        assert_eq!(m.swap_total_kb, 0);
        let mut pids = Vec::new();
        assert!(s.cgroup_pids(&mut pids));
        pids.sort();
        assert_eq!(pids, [10, 11, 12]);
        assert_eq!(s.kernel_oom_kills(), Some(1));
        // The directory form resolves to the same group.
        let s2 = Scope::resolve(
            &root,
            &"cgroup:/sys/fs/cgroup/memory/lim/app".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(s2.label(), "cgroup:/lim/app");
    }

    /// `cgroup.procs` hands out one page per read: a group of 12 000 processes is ~75 KiB,
    /// and every one of them (and the sub-group's) is listed.
    #[test]
    fn a_group_of_twelve_thousand_processes_is_listed_whole() {
        let d = fixture(false);
        let root = Root::new(d.path());
        let procs = d.path().join("sys/fs/cgroup/memory/lim/app/cgroup.procs");
        fs::remove_file(&procs).unwrap();
        let content: Vec<u8> = (100_000..112_000)
            .flat_map(|p| format!("{p}\n").into_bytes())
            .collect();
        // As the kernel's seq_file: whole lines, at most one page per read.
        let server = crate::sense::fixture::chunked(&procs, content, 4095);
        let mut s = Scope::resolve(&root, &"cgroup:/lim/app".parse().unwrap()).unwrap();
        let mut pids = Vec::new();
        assert!(s.cgroup_pids(&mut pids));
        server.join().unwrap().unwrap();
        pids.sort();
        let want: Vec<i32> = [12].into_iter().chain(100_000..112_000).collect();
        assert_eq!(pids.len(), want.len());
        assert!(
            pids == want,
            "first {:?}, last {:?}",
            &pids[..3],
            pids.last()
        );
    }

    #[test]
    fn unlimited_all_the_way_up_is_the_machine_and_missing_groups_are_clear_errors() {
        let d = fixture(true);
        let root = Root::new(d.path());
        fs::write(
            d.path()
                .join("sys/fs/cgroup/memory/lim/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let mut s = Scope::resolve(&root, &"cgroup:/lim/app".parse().unwrap()).unwrap();
        let m = s.memory().unwrap();
        assert_eq!(
            (m.total_kb, m.available_kb, m.swap_total_kb, m.swap_free_kb),
            (4000000, 3000000, 2000000, 1500000)
        );
        let e = Scope::resolve(&root, &"cgroup:/nope".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'/nope' was not found")
                && e.contains("v1 memory mount: /sys/fs/cgroup/memory"),
            "{e}"
        );
        let mut sys = Scope::resolve(&root, &ScopeSpec::System).unwrap();
        assert_eq!(sys.memory().unwrap().available_kb, 3000000);
    }

    /// A service limited to 16 GiB in a slice limited to 4 GiB with 3.9 GiB used: the slice's
    /// limit binds first, and its `memory.swap.max` of 0 means no swap for the service, though
    /// the machine and the service's own limit have some. Once the slice has more room left
    /// than the service, the service's own limit binds again.
    #[test]
    fn the_limit_that_binds_first_may_be_an_ancestors() {
        const GIB: u64 = 1 << 30;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("proc/self")).unwrap();
        fs::write(
            r.join("proc/meminfo"),
            "MemTotal: 32000000 kB\nMemAvailable: 30000000 kB\nSwapTotal: 8388608 kB\nSwapFree: 8388608 kB\n",
        )
        .unwrap();
        fs::write(
            r.join("proc/self/mountinfo"),
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let cg = r.join("sys/fs/cgroup");
        let slice = cg.join("work.slice");
        let app = slice.join("app.service");
        fs::create_dir_all(&app).unwrap();
        fs::write(cg.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        let limits = |dir: &Path, max: u64, current: u64, inactive: u64, swap_max: &str| {
            fs::write(dir.join("memory.max"), format!("{max}\n")).unwrap();
            fs::write(dir.join("memory.current"), format!("{current}\n")).unwrap();
            fs::write(
                dir.join("memory.stat"),
                format!("anon 1\ninactive_file {inactive}\n"),
            )
            .unwrap();
            fs::write(dir.join("memory.swap.max"), format!("{swap_max}\n")).unwrap();
            fs::write(dir.join("memory.swap.current"), "0\n").unwrap();
        };
        limits(&slice, 4 * GIB, 4 * GIB - GIB / 10, 1 << 20, "0");
        limits(&app, 16 * GIB, 2 * GIB, 1 << 30, "max");
        let root = Root::new(r);
        let mut s =
            Scope::resolve(&root, &"cgroup:/work.slice/app.service".parse().unwrap()).unwrap();
        let m = s.memory().unwrap();
        assert_eq!(m.total_kb, 4 * GIB / 1024, "{m:?}");
        assert_eq!(m.available_kb, (GIB / 10 + (1 << 20)) / 1024, "{m:?}");
        assert_eq!((m.swap_total_kb, m.swap_free_kb), (0, 0), "{m:?}");
        // The slice with room to spare: the service's own limit binds (and its usage counts).
        limits(&slice, 30 * GIB, 3 * GIB, 1 << 20, "max");
        let m = s.memory().unwrap();
        assert_eq!(m.total_kb, 16 * GIB / 1024, "{m:?}");
        assert_eq!(m.available_kb, (14 * GIB + (1 << 30)) / 1024, "{m:?}");
        assert_eq!(m.swap_total_kb, 8388608, "{m:?}");
    }

    /// v1: a group whose limit binds with `memory.swappiness` 0 never swaps at that limit, so
    /// free swap on the machine is no room for it (the swap levels must not hold a kill back);
    /// with any other swappiness the machine's swap counts.
    #[test]
    fn a_v1_group_at_swappiness_zero_has_no_swap() {
        let d = fixture(true);
        let root = Root::new(d.path());
        let lim = d.path().join("sys/fs/cgroup/memory/lim");
        let mut s = Scope::resolve(&root, &"cgroup:/lim/app".parse().unwrap()).unwrap();
        fs::write(lim.join("memory.swappiness"), "60\n").unwrap();
        let m = s.memory().unwrap();
        assert_eq!(
            (m.swap_total_kb, m.swap_free_kb),
            (2000000, 1500000),
            "{m:?}"
        );
        fs::write(lim.join("memory.swappiness"), "0\n").unwrap();
        let m = s.memory().unwrap();
        assert_eq!((m.swap_total_kb, m.swap_free_kb), (0, 0), "{m:?}");
        assert_eq!(m.total_kb, 1048576, "{m:?}");
    }

    #[test]
    fn v2_layout_with_swap_and_events() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("proc/self")).unwrap();
        fs::write(
            r.join("proc/meminfo"),
            "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 1048576 kB\nSwapFree: 1000000 kB\n",
        )
        .unwrap();
        fs::write(
            r.join("proc/self/mountinfo"),
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let cg = r.join("sys/fs/cgroup");
        let app = cg.join("system.slice/app.service");
        fs::create_dir_all(&app).unwrap();
        fs::write(cg.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        fs::write(cg.join("system.slice/memory.max"), "max\n").unwrap();
        fs::write(app.join("memory.max"), "536870912\n").unwrap();
        fs::write(app.join("memory.current"), "500000000\n").unwrap();
        fs::write(
            app.join("memory.stat"),
            "anon 1\nfile 2\ninactive_file 10000000\nactive_file 5\n",
        )
        .unwrap();
        fs::write(app.join("memory.swap.max"), "268435456\n").unwrap();
        fs::write(app.join("memory.swap.current"), "68435456\n").unwrap();
        fs::write(
            app.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(
            app.join("memory.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        )
        .unwrap();
        fs::write(app.join("cgroup.procs"), "77\n").unwrap();
        let root = Root::new(r);
        let mut s =
            Scope::resolve(&root, &"cgroup:/system.slice/app.service".parse().unwrap()).unwrap();
        assert_eq!(s.cgroup().unwrap().version, CgVersion::V2);
        let m = s.memory().unwrap();
        assert_eq!(m.total_kb, 524288);
        assert_eq!(m.available_kb, (536870912 - 500000000 + 10000000) / 1024);
        assert_eq!((m.swap_total_kb, m.swap_free_kb), (262144, 262144 - 66831));
        assert_eq!(s.kernel_oom_kills(), Some(2));
        assert_eq!(
            s.pressure_path().unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/app.service/memory.pressure")
        );
        let mut pids = Vec::new();
        s.cgroup_pids(&mut pids);
        assert_eq!(pids, [77]);
    }
}
