//! What `doctor` reads: every file through the root, so fixture trees can model any box.
//! Gathering never fails on a missing file; the checks say what they could not read.

use std::path::{Component, Path, PathBuf};

use crate::config::{Config, passwd_lookup};
use crate::sense::cgroup::{CgVersion, Mounts};
use crate::sense::meminfo::Meminfo;
use crate::sense::procs::ProcReader;
use crate::sense::users::Users;
use crate::sense::vmstat::Vmstat;
use crate::sense::{Root, parse_i64, parse_u64};

/// One line of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapDev {
    pub name: String,
    pub kind: String,
    pub size_kb: u64,
    pub used_kb: u64,
}

impl SwapDev {
    pub fn is_zram(&self) -> bool {
        self.name.starts_with("/dev/zram")
    }
}

/// Parses `/proc/swaps` (a header line, then one device per line).
pub fn parse_swaps(text: &str) -> Vec<SwapDev> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(SwapDev {
                name: f.first()?.to_string(),
                kind: f.get(1)?.to_string(),
                size_kb: f.get(2)?.parse().ok()?,
                used_kb: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// A process as doctor sees it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
    pub adj: Option<i16>,
    pub rss_kb: u64,
    /// Real uid (`None`: unreadable).
    pub uid: Option<u32>,
    /// The systemd service its cgroup names ([`service_of_cgroup_text`]).
    pub service: Option<String>,
}

/// A memory cgroup of a service (or a top-level group) and whether it has a limit.
#[derive(Debug, Clone)]
pub struct GroupLimit {
    pub path: String,
    pub limited: bool,
}

/// The `vm.*` sysctls doctor looks at (`None`: not readable / not on this kernel).
#[derive(Debug, Clone, Default)]
pub struct Sysctls {
    pub swappiness: Option<i64>,
    pub overcommit_memory: Option<i64>,
    pub overcommit_ratio: Option<i64>,
    pub overcommit_kbytes: Option<i64>,
    pub panic_on_oom: Option<i64>,
    pub oom_kill_allocating_task: Option<i64>,
    pub oom_dump_tasks: Option<i64>,
    pub min_free_kbytes: Option<i64>,
    pub watermark_scale_factor: Option<i64>,
}

/// How the daemon lists processes on this machine (`decide::victim`): with the kernel's task
/// iterator, or one `/proc` read per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// The iterator loaded, and a pass of it listed this many processes.
    Iterator { processes: usize },
    /// The kernel's types describe the iterator, but it was not loaded: why (a tree, not the
    /// running kernel; doctor without the privileges).
    Described(String),
    /// No iterator, for a reason that is no fault (an older kernel, no BTF, no privileges, a
    /// `/proc` of another PID namespace): the reason, as the daemon says it at its start.
    Proc(String),
    /// The iterator should work here and does not: what failed.
    Broken(String),
}

/// Everything the checks need.
#[derive(Debug, Clone)]
pub struct Facts {
    pub meminfo: Option<Meminfo>,
    pub swaps: Option<Vec<SwapDev>>,
    pub vm: Sysctls,
    pub psi_memory: bool,
    pub mounts: Mounts,
    pub groups: Vec<GroupLimit>,
    pub procs: Vec<ProcInfo>,
    pub oom_kills: Option<u64>,
    /// The last kernel OOM kills, one line each (newest last).
    pub last_kills: Vec<String>,
    /// The oomguard config: path and either its rule count or the error.
    pub config: Option<(String, Result<Config, String>)>,
    /// Unit files of oomguard that exist.
    pub units: Vec<String>,
    /// PID 1 is systemd: fixes may say `systemctl`; otherwise they name sysctl.conf and the
    /// init's own scripts.
    pub systemd: bool,
    /// What each running `oomguard run` guards.
    pub guards: Vec<Guard>,
    /// How a daemon would list processes.
    pub listing: Listing,
    /// `ROOT/etc/passwd`: user names for the rules fixes suggest.
    pub users: Users,
    /// The sysctl settings applied at boot, in the order they are applied
    /// ([`sysctl_boot_lines`]).
    pub sysctl_boot: Vec<SysctlLine>,
}

/// A running `oomguard run` and its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub pid: i32,
    /// `system` or `cgroup:PATH`, as given.
    pub scope: String,
    /// Where the scope came from: `--scope`, `scope` in FILE, or the default.
    pub origin: String,
    /// For a cgroup scope: the group exists (under the root's memory mounts).
    pub exists: bool,
    /// Dry run: `--dry-run` on its command line.
    pub dry_run_flag: bool,
    /// Dry run: `dry_run = true` in the `[run]` section of this config file (the one it reads).
    pub dry_run_config: Option<String>,
}

impl Guard {
    /// It decides and records but never signals anything.
    pub fn dry_run(&self) -> bool {
        self.dry_run_flag || self.dry_run_config.is_some()
    }
}

/// The scope of an `oomguard run` command line (arguments joined by single spaces): its
/// `--scope`, else `[run] scope` of its `--config` file (or of the default config when it
/// names none), else `system`. `load_scope(path)` reads a config file's scope.
pub fn guard_scope(cmdline: &str, load_scope: impl Fn(&str) -> Option<String>) -> (String, String) {
    if let Some(s) = run_flag(cmdline, "--scope") {
        return (s, "--scope".into());
    }
    let file = guard_config(cmdline);
    match load_scope(&file) {
        Some(s) => (s, format!("scope in {file}")),
        None => ("system".into(), "the default".into()),
    }
}

/// The value of `--NAME VALUE` or `--NAME=VALUE` on an `oomguard run` command line.
fn run_flag(cmdline: &str, name: &str) -> Option<String> {
    let args: Vec<&str> = cmdline.split(' ').collect();
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&format!("{name}="))
            .map(str::to_string)
            .or_else(|| (*a == name).then(|| args.get(i + 1).map(|v| v.to_string()))?)
    })
}

/// The config file an `oomguard run` command line reads: its `--config`, else the default
/// path (read when it exists, as `Config::load` does).
pub fn guard_config(cmdline: &str) -> String {
    run_flag(cmdline, "--config").unwrap_or_else(|| crate::config::DEFAULT_CONFIG_PATH.to_string())
}

/// Whether an `oomguard run` command line runs dry: `--dry-run` on it (a switch, as clap takes
/// it), and the config file it reads with `dry_run = true` (`load_dry_run(path)`: that file's
/// `[run] dry_run`). The daemon runs dry when either says so.
pub fn guard_dry_run(
    cmdline: &str,
    load_dry_run: impl Fn(&str) -> Option<bool>,
) -> (bool, Option<String>) {
    let flag = cmdline.split(' ').any(|a| a == "--dry-run");
    let file = guard_config(cmdline);
    let config = (load_dry_run(&file) == Some(true)).then_some(file);
    (flag, config)
}

fn read_i64(root: &Root, rel: &str) -> Option<i64> {
    parse_i64(&std::fs::read(root.path(rel)).ok()?)
}

impl Facts {
    /// Reads everything under `root`. `exclude_pid`: the calling process (not a daemon).
    pub fn gather(root: &Root, exclude_pid: Option<i32>) -> Facts {
        let meminfo = std::fs::read(root.path("proc/meminfo"))
            .ok()
            .and_then(|b| Meminfo::parse(&b).ok());
        let swaps = std::fs::read_to_string(root.path("proc/swaps"))
            .ok()
            .map(|t| parse_swaps(&t));
        let sys = |name: &str| read_i64(root, &format!("proc/sys/vm/{name}"));
        let vm = Sysctls {
            swappiness: sys("swappiness"),
            overcommit_memory: sys("overcommit_memory"),
            overcommit_ratio: sys("overcommit_ratio"),
            overcommit_kbytes: sys("overcommit_kbytes"),
            panic_on_oom: sys("panic_on_oom"),
            oom_kill_allocating_task: sys("oom_kill_allocating_task"),
            oom_dump_tasks: sys("oom_dump_tasks"),
            min_free_kbytes: sys("min_free_kbytes"),
            watermark_scale_factor: sys("watermark_scale_factor"),
        };
        let mounts = Mounts::discover(root);
        let groups = service_groups(root, &mounts);
        let oom_kills = std::fs::read(root.path("proc/vmstat"))
            .ok()
            .and_then(|b| Vmstat::parse(&b).oom_kill);
        let config_path = root.path(crate::config::DEFAULT_CONFIG_PATH);
        let config = config_path.exists().then(|| {
            let users = passwd_lookup(root.as_path());
            (
                crate::config::DEFAULT_CONFIG_PATH.to_string(),
                // The error names the file as read (under a test's root): named here as the
                // machine knows it.
                Config::load(Some(&config_path), &users).map_err(|e| {
                    e.to_string().replace(
                        &config_path.display().to_string(),
                        crate::config::DEFAULT_CONFIG_PATH,
                    )
                }),
            )
        });
        let units = [
            "etc/systemd/system/oomguard.service",
            "lib/systemd/system/oomguard.service",
            "usr/lib/systemd/system/oomguard.service",
        ]
        .iter()
        .filter(|p| root.path(p).exists())
        .map(|p| format!("/{p}"))
        .collect();
        let procs = processes(root, exclude_pid);
        let systemd = procs.iter().any(|p| p.pid == 1 && p.comm == "systemd");
        let guards = guards(root, &mounts, &procs);
        Facts {
            systemd,
            guards,
            users: Users::load(root.as_path()),
            sysctl_boot: sysctl_boot_lines(root),
            listing: listing(root),
            meminfo,
            swaps,
            vm,
            psi_memory: root.path("proc/pressure/memory").exists(),
            groups,
            procs,
            oom_kills,
            last_kills: last_oom_kills(root, 3),
            config,
            units,
            mounts,
        }
    }
}

/// How a daemon would list processes here, found as it finds it at its start
/// (`daemon::use_task_iterator`): on the running kernel the iterator is loaded and makes one
/// pass; in a tree, only the kernel's types are read.
fn listing(root: &Root) -> Listing {
    use crate::sense::tasks::{KERNEL_BTF, Layout, TaskIter, TaskIterError};
    let btf = root.path(KERNEL_BTF.trim_start_matches('/'));
    let told = |e: TaskIterError| {
        if e.is_expected() {
            Listing::Proc(format!("the kernel's task iterator is {e}"))
        } else {
            Listing::Broken(e.to_string())
        }
    };
    if !root.is_real() {
        return match Layout::read(&btf) {
            Ok(_) => Listing::Described("this is a tree, not the running kernel".into()),
            Err(e) => told(e),
        };
    }
    if !crate::sense::tasks::proc_is_own_namespace() {
        return Listing::Proc(
            "the /proc mounted here belongs to another PID namespace, so the kernel's task iterator's PIDs would not match it".into(),
        );
    }
    let it = match TaskIter::load(&btf, None) {
        Ok(it) => it,
        // The types were read (the load comes after); doctor is not root, the daemon is.
        Err(TaskIterError::NotPermitted(_)) if !rustix::process::geteuid().is_root() => {
            return Listing::Described(
                "doctor runs without CAP_BPF and CAP_PERFMON; as root it tries the load".into(),
            );
        }
        Err(e) => return told(e),
    };
    let mut buf = vec![std::mem::MaybeUninit::uninit(); 32 * 1024];
    let mut rows = Vec::new();
    match it.read(&mut buf, &mut rows) {
        Ok(()) => Listing::Iterator {
            processes: rows.len(),
        },
        Err(e) => told(e),
    }
}

/// The `oomguard run` processes and what they guard.
fn guards(root: &Root, mounts: &Mounts, procs: &[ProcInfo]) -> Vec<Guard> {
    let users = passwd_lookup(root.as_path());
    let load = |file: &str| {
        let path = root.path(file.trim_start_matches('/'));
        Config::load(Some(&path), &users).ok()
    };
    let load_scope = |file: &str| load(file)?.run.scope.map(|s| s.to_string());
    let load_dry_run = |file: &str| load(file)?.run.dry_run;
    procs
        .iter()
        .filter(|p| is_daemon(p))
        .map(|p| {
            let (scope, origin) = guard_scope(&p.cmdline, load_scope);
            let (dry_run_flag, dry_run_config) = guard_dry_run(&p.cmdline, load_dry_run);
            let exists = match scope.parse::<crate::values::ScopeSpec>() {
                Ok(crate::values::ScopeSpec::Cgroup(path)) => {
                    crate::sense::cgroup::Cgroup::resolve(root, mounts, &path).is_ok()
                }
                Ok(crate::values::ScopeSpec::System) => true,
                Err(_) => false,
            };
            Guard {
                pid: p.pid,
                scope,
                origin,
                exists,
                dry_run_flag,
                dry_run_config,
            }
        })
        .collect()
}

/// `oomguard run ...`: the daemon (not `oomguard top`, not a drill).
pub fn is_daemon(p: &ProcInfo) -> bool {
    p.comm == "oomguard" && p.cmdline.split(' ').nth(1) == Some("run")
}

fn processes(root: &Root, exclude_pid: Option<i32>) -> Vec<ProcInfo> {
    let Ok(mut r) = ProcReader::open(root) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    if r.pids(&mut pids).is_err() {
        return Vec::new();
    }
    pids.sort_unstable();
    let page_kb = r.page_kb;
    pids.into_iter()
        .filter(|&p| Some(p) != exclude_pid)
        .filter_map(|pid| {
            let st = r.stat(pid).ok()?;
            if st.is_kthread() || st.is_zombie() {
                return None;
            }
            Some(ProcInfo {
                pid,
                comm: st.comm.to_string_lossy().into_owned(),
                cmdline: r.cmdline(pid).unwrap_or_default(),
                adj: r.oom_score_adj(pid).ok(),
                rss_kb: st.rss_pages * page_kb,
                uid: r.status(pid).ok().and_then(|s| s.uid),
                service: r
                    .cgroup_text(pid)
                    .ok()
                    .and_then(|t| service_of_cgroup_text(&t)),
            })
        })
        .collect()
}

/// The systemd service a process runs in, from its `/proc/PID/cgroup` text: the unit systemd
/// names for it ([`crate::decide::rank::unit_of_cgroup_text`]: the first component below the
/// slices), when that is a `.service` with a name systemd could have given it
/// (`/system.slice/sshd.service` → `sshd.service`; a `session-2.scope` is none).
pub fn service_of_cgroup_text(text: &str) -> Option<String> {
    let unit = crate::decide::rank::unit_of_cgroup_text(text)?;
    // Fixes put it in shell commands: plain names only (systemd's `\x2d` escapes are none).
    let unit_chars = |c: char| c.is_ascii_alphanumeric() || ":-_.@".contains(c);
    (unit.ends_with(".service") && unit.chars().all(unit_chars)).then_some(unit)
}

/// The directories of sysctl.d(5), most important first: a file name in an earlier one hides
/// the same name in a later one.
const SYSCTL_DIRS: [&str; 5] = [
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
];

/// One `key = value` line of a sysctl configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlLine {
    /// The file that holds the line, as the machine names it (a symlink followed).
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// Dotted (`vm.panic_on_oom`), whether the file wrote dots or slashes.
    pub key: String,
    pub value: String,
}

/// The settings of a sysctl configuration file's text: `(line, key, value)`. Comments (`#`,
/// `;`), blank lines and lines without `=` are skipped; a leading `-` (ignore failure) is
/// dropped and slashes in the key become dots.
pub fn parse_sysctl_conf(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.starts_with(['#', ';']) {
                return None;
            }
            let (key, value) = l.trim_start_matches('-').split_once('=')?;
            let key = key.trim().replace('/', ".");
            (!key.is_empty()).then(|| (i + 1, key, value.trim().to_string()))
        })
        .collect()
}

/// The sysctl settings applied at boot, in the order they are applied, so the last line of a
/// key is the value it gets. sysctl.d(5) (systemd-sysctl, and procps' `sysctl --system`):
/// the `*.conf` files of all [`SYSCTL_DIRS`] sorted by file name (a name found in two
/// directories read from the first), then `/etc/sysctl.conf`, which procps reads last and
/// systemd reads where a `99-sysctl.conf` link in `/etc/sysctl.d` points to it (Debian,
/// Fedora). A file read twice through a link is listed once, at its first place.
pub fn sysctl_boot_lines(root: &Root) -> Vec<SysctlLine> {
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for dir in SYSCTL_DIRS {
        let Ok(rd) = std::fs::read_dir(root.path(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !names.iter().any(|(n, _)| *n == name) {
                names.push((name.clone(), Path::new(dir).join(&name)));
            }
        }
    }
    names.sort();
    let files = names
        .into_iter()
        .map(|(_, rel)| rel)
        .chain([PathBuf::from("etc/sysctl.conf")]);
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for rel in files {
        let Some(real) = resolve_in_root(root, &rel) else {
            continue;
        };
        if seen.contains(&real) {
            continue;
        }
        seen.push(real.clone());
        let Ok(text) = std::fs::read_to_string(root.path(&real)) else {
            continue;
        };
        let file = format!("/{}", real.display());
        out.extend(
            parse_sysctl_conf(&text)
                .into_iter()
                .map(|(line, key, value)| SysctlLine {
                    file: file.clone(),
                    line,
                    key,
                    value,
                }),
        );
    }
    out
}

/// `rel` (a path under the root, without its leading `/`) with its symlinks followed inside
/// the root (an absolute target is read under the root too): the file as the machine names
/// it, relative to the root. `None` for a broken link or a loop.
fn resolve_in_root(root: &Root, rel: &Path) -> Option<PathBuf> {
    let mut cur = rel.to_path_buf();
    for _ in 0..8 {
        let Ok(target) = std::fs::read_link(root.path(&cur)) else {
            return root.path(&cur).is_file().then_some(cur);
        };
        let joined = match target.strip_prefix("/") {
            Ok(abs) => abs.to_path_buf(),
            Err(_) => cur.parent().unwrap_or(Path::new("")).join(&target),
        };
        // `..` taken lexically, never above the root.
        let mut norm = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::Normal(n) => norm.push(n),
                Component::ParentDir => {
                    norm.pop();
                }
                _ => {}
            }
        }
        cur = norm;
    }
    None
}

/// Service groups and their limits: `system.slice/*` when there is one, else the top-level
/// groups of the memory hierarchy.
fn service_groups(root: &Root, mounts: &Mounts) -> Vec<GroupLimit> {
    let (mount, version) = match (&mounts.v2_memory, &mounts.v1_memory) {
        (Some(m), _) => (m, CgVersion::V2),
        (None, Some(m)) => (m, CgVersion::V1),
        _ => return Vec::new(),
    };
    let slice = mount.join("system.slice");
    let base = if root.path(&slice).is_dir() {
        slice
    } else {
        mount.clone()
    };
    let Ok(rd) = std::fs::read_dir(root.path(&base)) else {
        return Vec::new();
    };
    let mut out: Vec<GroupLimit> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let dir = root.path(base.join(e.file_name()));
            GroupLimit {
                path: format!(
                    "/{}",
                    Path::new(&base)
                        .join(e.file_name())
                        .strip_prefix(mount)
                        .unwrap_or(Path::new(""))
                        .display()
                ),
                limited: has_limit(&dir, version),
            }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn has_limit(dir: &Path, version: CgVersion) -> bool {
    const UNLIMITED: u64 = 1 << 60;
    let limited = |file: &str| {
        std::fs::read(dir.join(file))
            .ok()
            .is_some_and(|b| !b.starts_with(b"max") && parse_u64(&b).is_some_and(|v| v < UNLIMITED))
    };
    match version {
        CgVersion::V2 => limited("memory.max") || limited("memory.high"),
        CgVersion::V1 => limited("memory.limit_in_bytes"),
    }
}

/// The last `n` kernel OOM kills from the kernel log (`/dev/kmsg`), one line each: the
/// kernel's own "Killed process" line, trimmed. A stand-in until `explain` can summarise the
/// whole report (see [`summarise_kill_line`]).
pub fn last_oom_kills(root: &Root, n: usize) -> Vec<String> {
    // The kernel log read through `explain`'s parser: one summary per OOM invocation.
    let events = crate::report::source::read_kmsg_at(&root.path("dev/kmsg")).unwrap_or_default();
    let mut kills: Vec<String> = events.iter().filter_map(summarise_event).collect();
    let skip = kills.len().saturating_sub(n);
    kills.drain(..skip);
    kills
}

/// One parsed OOM event → `"memcg OOM killed 123 (hog), anon-rss 512 MiB"` (kills only).
pub fn summarise_event(ev: &crate::report::OomEvent) -> Option<String> {
    let v = ev.victim.as_ref()?;
    let kind = match ev.kind {
        Some(crate::report::Kind::Memcg) => "memcg OOM",
        _ => "OOM",
    };
    let who = format!("{} ({})", v.pid, v.comm.as_deref().unwrap_or("?"));
    Some(match v.anon_rss_kb {
        Some(kb) => format!(
            "{kind} killed {who}, anon-rss {}",
            crate::values::human_kb(kb)
        ),
        None => format!("{kind} killed {who}"),
    })
}

/// One kernel log line → a short summary if it is an OOM kill line.
/// `"...: Memory cgroup out of memory: Killed process 123 (hog) total-vm:..., anon-rss:524288kB, ..."`
/// → `"memcg OOM killed 123 (hog), anon-rss 512 MiB"`.
pub fn summarise_kill_line(line: &str) -> Option<String> {
    let at = line.find("Killed process ")?;
    let rest = &line[at + "Killed process ".len()..];
    let who_end = rest.find(')').map_or(rest.len(), |i| i + 1);
    let who = &rest[..who_end];
    let kind = if line.contains("Memory cgroup out of memory") {
        "memcg OOM"
    } else {
        "OOM"
    };
    let anon = rest.split([' ', ',']).find_map(|f| {
        f.strip_prefix("anon-rss:")
            .and_then(|v| v.strip_suffix("kB"))
            .and_then(|v| v.parse::<u64>().ok())
    });
    Some(match anon {
        Some(kb) => format!(
            "{kind} killed {who}, anon-rss {}",
            crate::values::human_kb(kb)
        ),
        None => format!("{kind} killed {who}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_and_kill_lines() {
        let s = parse_swaps(
            "Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition 2097148 1024 100\n/swapfile file 4194300 0 -2\n",
        );
        assert_eq!(s.len(), 2);
        assert!(s[0].is_zram() && !s[1].is_zram());
        assert_eq!(s[1].size_kb, 4194300);
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
        assert_eq!(
            summarise_kill_line("6,1234,567,-;Memory cgroup out of memory: Killed process 4242 (oomguard) total-vm:600000kB, anon-rss:524288kB, file-rss:0kB").as_deref(),
            Some("memcg OOM killed 4242 (oomguard), anon-rss 512 MiB")
        );
        assert_eq!(
            summarise_kill_line("[ 12.3] Out of memory: Killed process 7 (java)").as_deref(),
            Some("OOM killed 7 (java)")
        );
        assert_eq!(summarise_kill_line("eth0: link up"), None);
    }

    #[test]
    fn a_daemons_scope_comes_from_its_flag_then_its_config_then_the_default() {
        let none = |_: &str| None;
        assert_eq!(
            guard_scope("/usr/bin/oomguard run --scope cgroup:/app --dry-run", none),
            ("cgroup:/app".to_string(), "--scope".to_string())
        );
        assert_eq!(guard_scope("oomguard run --scope=system", none).0, "system");
        let cfg = |f: &str| (f == "/srv/og.toml").then(|| "cgroup:/web".to_string());
        assert_eq!(
            guard_scope("oomguard run --config /srv/og.toml", cfg),
            (
                "cgroup:/web".to_string(),
                "scope in /srv/og.toml".to_string()
            )
        );
        assert_eq!(
            guard_scope("oomguard run", cfg),
            ("system".to_string(), "the default".to_string())
        );
    }

    /// A daemon runs dry with `--dry-run` on its command line, or `dry_run = true` in the
    /// config it reads: its `--config`, else the default file.
    #[test]
    fn a_daemon_runs_dry_by_its_flag_or_its_config() {
        let never = |_: &str| None;
        assert_eq!(
            guard_dry_run("/usr/bin/oomguard run --dry-run --lock-dir /tmp/x", never),
            (true, None)
        );
        assert_eq!(guard_dry_run("oomguard run", never), (false, None));
        // Not a flag of its own: part of another value.
        assert_eq!(
            guard_dry_run("oomguard run --event-log /x/--dry-run.jsonl", never),
            (false, None)
        );
        let dry = |f: &str| Some(f == "/srv/og.toml");
        assert_eq!(
            guard_dry_run("oomguard run --config /srv/og.toml", dry),
            (false, Some("/srv/og.toml".to_string()))
        );
        assert_eq!(
            guard_dry_run("oomguard run --config=/srv/og.toml --dry-run", dry),
            (true, Some("/srv/og.toml".to_string()))
        );
        // Without --config: the default file's setting.
        assert_eq!(guard_dry_run("oomguard run", dry), (false, None));
        let default_dry = |f: &str| Some(f == crate::config::DEFAULT_CONFIG_PATH);
        assert_eq!(
            guard_dry_run("oomguard run", default_dry).1.as_deref(),
            Some(crate::config::DEFAULT_CONFIG_PATH)
        );
    }

    #[test]
    fn the_service_is_the_first_component_below_the_slices() {
        let svc = |t: &str| service_of_cgroup_text(t);
        assert_eq!(
            svc("0::/system.slice/sshd.service\n").as_deref(),
            Some("sshd.service")
        );
        // v1: the name=systemd line before a controller's.
        assert_eq!(
            svc("5:memory:/system.slice\n1:name=systemd:/system.slice/ssh.service\n").as_deref(),
            Some("ssh.service")
        );
        // The unit, not a group a service made below it.
        assert_eq!(
            svc("0::/system.slice/ssh.service/extra\n").as_deref(),
            Some("ssh.service")
        );
        assert_eq!(
            svc("0::/system.slice/system-sshd.slice/sshd@3-10.0.0.1:22-10.0.0.2:4000.service\n")
                .as_deref(),
            Some("sshd@3-10.0.0.1:22-10.0.0.2:4000.service")
        );
        // A login session's scope, the root, a name no shell should see: none.
        assert_eq!(
            svc("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
        assert_eq!(svc("0::/\n"), None);
        assert_eq!(svc("0::/system.slice/a'b.service\n"), None);
        assert_eq!(svc(""), None);
    }

    #[test]
    fn sysctl_files_parse_as_sysctl_d_says() {
        assert_eq!(
            parse_sysctl_conf(
                "# c\n; c\n\nvm.swappiness=10\n  -vm/panic_on_oom = 1 \nnot a setting\n"
            ),
            [
                (4, "vm.swappiness".to_string(), "10".to_string()),
                (5, "vm.panic_on_oom".to_string(), "1".to_string()),
            ]
        );
    }

    /// Files are applied by name across the directories (a name in /etc hides the same name
    /// in /usr/lib), /etc/sysctl.conf last or where a link points to it, each file once.
    #[test]
    fn sysctl_boot_order_is_by_file_name_across_directories() {
        let d = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("usr/lib/sysctl.d/50-default.conf", "vm.swappiness = 1\n");
        w("etc/sysctl.d/50-default.conf", "vm.swappiness = 2\n");
        w("usr/lib/sysctl.d/10-early.conf", "vm.swappiness = 3\n");
        w("run/sysctl.d/60-run.conf", "vm.swappiness = 4\n");
        w("etc/sysctl.d/readme.txt", "vm.swappiness = 99\n");
        w("etc/sysctl.conf", "\nvm.panic_on_oom = 1\n");
        std::os::unix::fs::symlink(
            "../sysctl.conf",
            d.path().join("etc/sysctl.d/99-sysctl.conf"),
        )
        .unwrap();
        w("etc/sysctl.d/99-zz-oomguard.conf", "vm.panic_on_oom = 0\n");
        let got: Vec<(String, usize, String)> = sysctl_boot_lines(&Root::new(d.path()))
            .into_iter()
            .map(|l| (l.file, l.line, l.value))
            .collect();
        let want = [
            ("/usr/lib/sysctl.d/10-early.conf", 1, "3"),
            ("/etc/sysctl.d/50-default.conf", 1, "2"),
            ("/run/sysctl.d/60-run.conf", 1, "4"),
            ("/etc/sysctl.conf", 2, "1"),
            ("/etc/sysctl.d/99-zz-oomguard.conf", 1, "0"),
        ];
        let want: Vec<(String, usize, String)> = want
            .iter()
            .map(|&(f, l, v)| (f.to_string(), l, v.to_string()))
            .collect();
        assert_eq!(got, want);
        // Without the link, /etc/sysctl.conf comes last (procps reads it after the rest).
        std::fs::remove_file(d.path().join("etc/sysctl.d/99-sysctl.conf")).unwrap();
        let last = sysctl_boot_lines(&Root::new(d.path())).pop().unwrap();
        assert_eq!(last.file, "/etc/sysctl.conf");
    }
}
