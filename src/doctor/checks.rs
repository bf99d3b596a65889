//! The checks: pure functions from [`Facts`] to [`Check`]s, in a fixed order.

use super::facts::{Facts, Listing, ProcInfo};
use super::{Check, Severity};
use crate::decide::policy::protect_fields;
use crate::sense::tasks::KERNEL_BTF;
use crate::values::human_kb;

/// Where a sysctl is made permanent: systemd-sysctl reads `/etc/sysctl.d`; every init
/// (busybox, OpenRC, sysvinit's procps script) reads `/etc/sysctl.conf`.
///
/// sysctl.d(5) applies the files of all its directories in the lexicographic order of their
/// names, and the last setting of a key wins. Debian and Fedora link
/// `/etc/sysctl.d/99-sysctl.conf` to `/etc/sysctl.conf`, and local tuning often comes as
/// other `99-*.conf` files: a file sorting before them (such as `90-…`) would be overridden
/// at boot by a bad line there. `99-zz-` sorts after every `99-<letter>` name.
pub const SYSCTL_D_FILE: &str = "/etc/sysctl.d/99-zz-oomguard.conf";

fn sysctl_file(f: &Facts) -> &'static str {
    if f.systemd {
        SYSCTL_D_FILE
    } else {
        "/etc/sysctl.conf"
    }
}

/// Sets `key` now and at boot; and names the lines of the boot-time files that set it to
/// something else (they would win if they sort after the fix's file, and mislead either way).
fn sysctl_fix(f: &Facts, key: &str, value: &str) -> String {
    let file = sysctl_file(f);
    let fix = format!("sysctl -w {key}={value} && echo '{key} = {value}' >> {file}");
    let others: Vec<String> = f
        .sysctl_boot
        .iter()
        .filter(|l| l.key == key && l.value != value)
        .map(|l| format!("{} line {} ('{} = {}')", l.file, l.line, l.key, l.value))
        .collect();
    if others.is_empty() {
        return fix;
    }
    format!(
        "{fix}; then remove or correct what sets it back at boot: {}",
        others.join(", ")
    )
}

/// A zram size for `zramctl --size` (which takes a size, not a percentage): a quarter of RAM,
/// in whole GiB from 2 GiB up, else in MiB rounded down to 64 (at least 64M).
fn zram_size(mem_total_kb: u64) -> String {
    const GIB_KB: u64 = 1024 * 1024;
    let quarter = mem_total_kb / 4;
    if quarter >= 2 * GIB_KB {
        format!("{}G", (quarter + GIB_KB / 2) / GIB_KB)
    } else {
        format!("{}M", (quarter / 1024 / 64 * 64).max(64))
    }
}

/// How to start the daemon for good on this box's init.
fn start_daemon(f: &Facts) -> &'static str {
    if f.systemd {
        "systemctl enable --now oomguard"
    } else {
        "start 'oomguard run' from the init's boot scripts (e.g. an /etc/init.d/oomguard script, or 'oomguard run &' in /etc/rc.local) and run it now"
    }
}

/// Every check, in the order they are printed.
pub fn all(f: &Facts) -> Vec<Check> {
    vec![
        swap(f),
        swappiness(f),
        overcommit(f),
        commit_limit(f),
        panic_on_oom(f),
        oom_kill_allocating_task(f),
        oom_dump_tasks(f),
        min_free_kbytes(f),
        watermark_scale_factor(f),
        psi(f),
        cgroup_version(f),
        cgroup_limits(f),
        immune_processes(f),
        sshd(f),
        headroom(f),
        oom_kills(f),
        other_oom_daemons(f),
        config(f),
        oomguard_service(f),
        process_listing(f),
    ]
}

/// How the daemon's scans list processes: said, a warning only when the iterator should work
/// and does not (the daemon warns of that at its start too).
fn process_listing(f: &Facts) -> Check {
    const ID: &str = "process_listing";
    const COST: &str = "with the kernel's task iterator (Linux 5.8 or later, built with BTF) a scan reads every process's memory figures in one pass; from /proc it opens a file per process, about ten times the CPU per scan. The guard works either way";
    match &f.listing {
        Listing::Iterator { processes } => Check::new(
            ID,
            Severity::Ok,
            format!("the kernel's task iterator (BPF): one pass listed {processes} processes; the daemon scans with it when it has CAP_BPF and CAP_PERFMON (the shipped unit grants them)"),
        )
        .why(COST),
        Listing::Described(not_loaded) => Check::new(
            ID,
            Severity::Ok,
            format!("the kernel's types ({KERNEL_BTF}) describe the task iterator (not loaded: {not_loaded}); the daemon scans with it when it has CAP_BPF and CAP_PERFMON (the shipped unit grants them)"),
        )
        .why(COST),
        Listing::Proc(reason) => Check::new(
            ID,
            Severity::Ok,
            format!("/proc, one read per process: {reason}"),
        )
        .why(COST),
        Listing::Broken(e) => Check::new(
            ID,
            Severity::Warn,
            format!("/proc, one read per process: the kernel's task iterator fails here: {e}"),
        )
        .why(COST)
        .fix("nothing is needed for the guard to work; the message says what failed (the kernel's type information, or the kernel refusing the program): with `uname -r`, it is worth a bug report to oomguard"),
    }
}

fn swap(f: &Facts) -> Check {
    let Some(m) = &f.meminfo else {
        return Check::unreadable("swap", "/proc/meminfo");
    };
    let devs = f.swaps.clone().unwrap_or_default();
    let zram: Vec<String> = devs
        .iter()
        .filter(|d| d.is_zram())
        .map(|d| format!("{} {}", d.name, human_kb(d.size_kb)))
        .collect();
    if m.swap_total_kb == 0 {
        return Check::new("swap", Severity::Warn, "no swap and no zram")
            .why("without swap, anonymous memory that is rarely used cannot be moved out: the box goes from fine to the OOM killer with little warning, and reclaim can only evict file pages (thrashing)")
            .fix(format!("zram (fast, no disk; a quarter of RAM): modprobe zram && zramctl --find --size {} --algorithm zstd | xargs -I{{}} sh -c 'mkswap {{}} && swapon -p 100 {{}}'; or a swap file: fallocate -l 4G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile && echo '/swapfile none swap sw 0 0' >> /etc/fstab", zram_size(m.mem_total_kb)));
    }
    let used = m.swap_total_kb.saturating_sub(m.swap_free_kb);
    let pct = used * 100 / m.swap_total_kb.max(1);
    let found = format!(
        "{} swap on {} device(s){}, {pct}% used",
        human_kb(m.swap_total_kb),
        devs.len(),
        if zram.is_empty() {
            ", no zram".to_string()
        } else {
            format!(" (zram: {})", zram.join(", "))
        }
    );
    if pct >= 90 {
        return Check::new("swap", Severity::Warn, found)
            .why("swap is nearly full: the next shortage has nowhere to go but the OOM killer")
            .fix("add swap (zram or a swap file) or find what fills it: oomguard top --once");
    }
    Check::new("swap", Severity::Ok, found).why("swap gives reclaim room and time to act")
}

fn swappiness(f: &Facts) -> Check {
    let Some(v) = f.vm.swappiness else {
        return Check::unreadable("swappiness", "/proc/sys/vm/swappiness");
    };
    let has_swap = f.meminfo.as_ref().is_some_and(|m| m.swap_total_kb > 0);
    let found = format!("vm.swappiness = {v}");
    if has_swap && v == 0 {
        return Check::new("swappiness", Severity::Warn, found)
            .why("with swappiness 0 the kernel swaps only at the last moment: page cache is thrown out first, the box thrashes, then the OOM killer runs although swap was free")
            .fix(sysctl_fix(f, "vm.swappiness", "60"));
    }
    let note = if has_swap {
        ""
    } else {
        " (no swap for it to use)"
    };
    Check::new("swappiness", Severity::Ok, format!("{found}{note}"))
        .why("how eagerly anonymous memory goes to swap rather than page cache being dropped")
}

fn overcommit(f: &Facts) -> Check {
    let Some(mode) = f.vm.overcommit_memory else {
        return Check::unreadable("overcommit", "/proc/sys/vm/overcommit_memory");
    };
    let ratio = f.vm.overcommit_ratio.unwrap_or(50);
    match mode {
        1 => Check::new(
            "overcommit",
            Severity::Warn,
            "vm.overcommit_memory = 1 (always overcommit)",
        )
        .why("the kernel never refuses an allocation, however absurd: every overrun ends in the OOM killer instead of a failed malloc the program could handle")
        .fix(sysctl_fix(f, "vm.overcommit_memory", "0")),
        2 => {
            let m = f.meminfo.unwrap_or_default();
            let kbytes = f.vm.overcommit_kbytes.unwrap_or(0);
            let found = if kbytes > 0 {
                format!("vm.overcommit_memory = 2 (strict), overcommit_kbytes = {kbytes}")
            } else {
                format!("vm.overcommit_memory = 2 (strict), overcommit_ratio = {ratio}")
            };
            let limit = m.commit_limit_kb.unwrap_or(0);
            if m.mem_total_kb > 0 && limit < m.mem_total_kb * 3 / 4 {
                Check::new("overcommit", Severity::Warn, found)
                    .why(format!("strict accounting with CommitLimit {} on {} of RAM: allocations fail while a quarter or more of RAM is unused", human_kb(limit), human_kb(m.mem_total_kb)))
                    .fix(sysctl_fix(f, "vm.overcommit_ratio", "90"))
            } else {
                Check::new("overcommit", Severity::Ok, found)
                    .why("strict accounting: allocations fail instead of OOM kills")
            }
        }
        _ => Check::new(
            "overcommit",
            Severity::Ok,
            format!("vm.overcommit_memory = {mode} (heuristic), overcommit_ratio = {ratio}"),
        )
        .why("the heuristic refuses obviously impossible allocations"),
    }
}

fn commit_limit(f: &Facts) -> Check {
    let Some(m) = &f.meminfo else {
        return Check::unreadable("commit_limit", "/proc/meminfo");
    };
    let (Some(limit), Some(committed)) = (m.commit_limit_kb, m.committed_as_kb) else {
        return Check::unreadable("commit_limit", "CommitLimit/Committed_AS in /proc/meminfo");
    };
    let found = format!(
        "Committed_AS {} against CommitLimit {} (RAM + swap {})",
        human_kb(committed),
        human_kb(limit),
        human_kb(m.mem_total_kb + m.swap_total_kb)
    );
    if f.vm.overcommit_memory == Some(2) && committed * 10 >= limit * 9 {
        return Check::new("commit_limit", Severity::Critical, found)
            .why("strict overcommit and the commit limit nearly reached: new allocations (fork, malloc) are about to fail")
            .fix("raise vm.overcommit_ratio or add swap, or stop what commits the most: oomguard top --once");
    }
    if committed > 2 * (m.mem_total_kb + m.swap_total_kb) {
        return Check::new("commit_limit", Severity::Warn, found)
            .why("programs were promised more than twice the memory that exists; if they use it, the OOM killer decides who stays")
            .fix("add swap or memory, or cap the big reservers (cgroup MemoryMax=, JVM -Xmx, database buffers)");
    }
    Check::new("commit_limit", Severity::Ok, found)
        .why("what programs were promised compared to what exists")
}

fn panic_on_oom(f: &Facts) -> Check {
    let Some(v) = f.vm.panic_on_oom else {
        return Check::unreadable("panic_on_oom", "/proc/sys/vm/panic_on_oom");
    };
    let found = format!("vm.panic_on_oom = {v}");
    if v != 0 {
        return Check::new("panic_on_oom", Severity::Critical, found)
            .why("an out-of-memory condition panics the whole machine (reboot or hang) instead of killing one process")
            .fix(sysctl_fix(f, "vm.panic_on_oom", "0"));
    }
    Check::new("panic_on_oom", Severity::Ok, found).why("an OOM kills a process, not the machine")
}

fn oom_kill_allocating_task(f: &Facts) -> Check {
    let Some(v) = f.vm.oom_kill_allocating_task else {
        return Check::unreadable(
            "oom_kill_allocating_task",
            "/proc/sys/vm/oom_kill_allocating_task",
        );
    };
    let found = format!("vm.oom_kill_allocating_task = {v}");
    if v != 0 {
        return Check::new("oom_kill_allocating_task", Severity::Warn, found)
            .why("the kernel kills whichever process asked for the last page, often a small innocent one, instead of the biggest")
            .fix(sysctl_fix(f, "vm.oom_kill_allocating_task", "0"));
    }
    Check::new("oom_kill_allocating_task", Severity::Ok, found)
        .why("the kernel picks its victim by badness")
}

fn oom_dump_tasks(f: &Facts) -> Check {
    let Some(v) = f.vm.oom_dump_tasks else {
        return Check::unreadable("oom_dump_tasks", "/proc/sys/vm/oom_dump_tasks");
    };
    let found = format!("vm.oom_dump_tasks = {v}");
    if v == 0 {
        return Check::new("oom_dump_tasks", Severity::Warn, found)
            .why("kernel OOM reports lack the task table: 'oomguard explain' cannot say who held the memory")
            .fix(sysctl_fix(f, "vm.oom_dump_tasks", "1"));
    }
    Check::new("oom_dump_tasks", Severity::Ok, found)
        .why("OOM reports list every task, so they can be explained")
}

/// The kernel's own default: sqrt(lowmem_kb * 16), clamped to 128 kB..256 MiB.
fn default_min_free_kb(mem_total_kb: u64) -> u64 {
    (((mem_total_kb * 16) as f64).sqrt() as u64).clamp(128, 262_144)
}

fn min_free_kbytes(f: &Facts) -> Check {
    let (Some(v), Some(m)) = (f.vm.min_free_kbytes, &f.meminfo) else {
        return Check::unreadable("min_free_kbytes", "/proc/sys/vm/min_free_kbytes");
    };
    let v = v.max(0) as u64;
    let default = default_min_free_kb(m.mem_total_kb);
    let found = format!("vm.min_free_kbytes = {v} (kernel default for this RAM: about {default})");
    if v < default / 2 {
        return Check::new("min_free_kbytes", Severity::Warn, found)
            .why("the reserve is below the kernel's own default: kswapd wakes too late, allocations stall in direct reclaim and atomic allocations can fail")
            .fix(sysctl_fix(f, "vm.min_free_kbytes", &default.to_string()));
    }
    if m.mem_total_kb > 0 && v > m.mem_total_kb / 20 {
        return Check::new("min_free_kbytes", Severity::Warn, found)
            .why("more than 5% of RAM is held back as a reserve: it is never usable and the OOM killer runs early")
            .fix(sysctl_fix(f, "vm.min_free_kbytes", &default.to_string()));
    }
    Check::new("min_free_kbytes", Severity::Ok, found)
        .why("the free-page reserve that wakes kswapd in time")
}

fn watermark_scale_factor(f: &Facts) -> Check {
    let Some(v) = f.vm.watermark_scale_factor else {
        return Check::new(
            "watermark_scale_factor",
            Severity::Ok,
            "vm.watermark_scale_factor not present (kernel before 4.6)",
        )
        .why("the gap between kswapd's watermarks; older kernels fix it");
    };
    let found = format!("vm.watermark_scale_factor = {v} (default 10 = 0.1% of RAM)");
    if v < 10 {
        return Check::new("watermark_scale_factor", Severity::Warn, found)
            .why("a narrower gap than the default: kswapd starts late and allocations hit direct reclaim")
            .fix(sysctl_fix(f, "vm.watermark_scale_factor", "10"));
    }
    if v > 1000 {
        return Check::new("watermark_scale_factor", Severity::Warn, found)
            .why("more than 10% of RAM between watermarks: memory is reclaimed far too early")
            .fix(sysctl_fix(f, "vm.watermark_scale_factor", "10"));
    }
    Check::new("watermark_scale_factor", Severity::Ok, found)
        .why("how early kswapd starts reclaiming")
}

fn psi(f: &Facts) -> Check {
    if f.psi_memory {
        return Check::new("psi", Severity::Ok, "/proc/pressure/memory present")
            .why("pressure stall information lets oomguard (--psi) act on real stalls, not only on free memory");
    }
    Check::new("psi", Severity::Warn, "no /proc/pressure/memory (PSI off or kernel before 4.20)")
        .why("without PSI a box can thrash for minutes while free memory still looks fine; oomguard --psi and systemd-oomd need it")
        .fix("boot with psi=1 on the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot); kernels need CONFIG_PSI")
}

fn cgroup_version(f: &Facts) -> Check {
    let m = &f.mounts;
    if let Some(v2) = &m.v2_memory {
        return Check::new(
            "cgroup_version",
            Severity::Ok,
            format!("cgroup v2 with the memory controller at {}", v2.display()),
        )
        .why("v2 gives memory.high, memory.oom.group, per-group PSI and memory.events");
    }
    if let Some(v1) = &m.v1_memory {
        return Check::new(
            "cgroup_version",
            Severity::Warn,
            format!("memory controller on cgroup v1 at {}", v1.display()),
        )
        .why("v1 has no memory.high, no per-group pressure and no group OOM kill; systemd-oomd cannot run and limits are cruder")
        .fix("boot with systemd.unified_cgroup_hierarchy=1 (cgroup_no_v1=all) on the kernel command line");
    }
    Check::new("cgroup_version", Severity::Warn, "no memory cgroup controller mounted")
        .why("without memory cgroups no service can be given a memory limit")
        .fix("mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup) and enable +memory in cgroup.subtree_control")
}

fn cgroup_limits(f: &Facts) -> Check {
    if f.mounts.v2_memory.is_none() && f.mounts.v1_memory.is_none() {
        return Check::new(
            "cgroup_limits",
            Severity::Ok,
            "no memory cgroups to inspect",
        )
        .why("services can only be limited with a memory cgroup");
    }
    let total = f.groups.len();
    let unlimited: Vec<&str> = f
        .groups
        .iter()
        .filter(|g| !g.limited)
        .map(|g| g.path.as_str())
        .collect();
    if total == 0 {
        return Check::new("cgroup_limits", Severity::Ok, "no service groups found")
            .why("a memory limit keeps one runaway service from starving the box");
    }
    let found = format!(
        "{} of {total} service groups have a memory limit{}",
        total - unlimited.len(),
        if unlimited.is_empty() {
            String::new()
        } else {
            let shown: Vec<&str> = unlimited.iter().take(6).copied().collect();
            format!(
                "; without: {}{}",
                shown.join(", "),
                if unlimited.len() > 6 { ", ..." } else { "" }
            )
        }
    );
    if unlimited.is_empty() {
        return Check::new("cgroup_limits", Severity::Ok, found)
            .why("every service is bounded: a leak hits its own limit, not the box");
    }
    let unit = unlimited[0].rsplit('/').next().unwrap_or("NAME.service");
    let fix = if f.systemd {
        format!(
            "systemctl set-property {unit} MemoryHigh=... MemoryMax=... (or a drop-in with [Service] MemoryMax=), for each service that can grow"
        )
    } else {
        let file = if f.mounts.v2_memory.is_some() {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        format!(
            "write a limit to the group's {file} (e.g. echo 2G > <memory cgroup mount>{}/{file}) in the service's start script, for each service that can grow",
            unlimited[0]
        )
    };
    Check::new("cgroup_limits", Severity::Warn, found)
        .why("a service without a limit can take all memory; the global OOM killer then picks among everything")
        .fix(fix)
}

fn immune_processes(f: &Facts) -> Check {
    if f.procs.is_empty() {
        return Check::unreadable("immune_processes", "/proc/PID/oom_score_adj");
    }
    let immune: Vec<&ProcInfo> = f.procs.iter().filter(|p| p.adj == Some(-1000)).collect();
    if immune.is_empty() {
        return Check::new(
            "immune_processes",
            Severity::Ok,
            "no process has oom_score_adj -1000",
        )
        .why("every process stays killable");
    }
    let rss: u64 = immune.iter().map(|p| p.rss_kb).sum();
    let list: Vec<String> = immune
        .iter()
        .take(8)
        .map(|p| format!("{} ({}, {})", p.comm, p.pid, human_kb(p.rss_kb)))
        .collect();
    let found = format!(
        "{} immune process(es) holding {}: {}{}",
        immune.len(),
        human_kb(rss),
        list.join(", "),
        if immune.len() > 8 { ", ..." } else { "" }
    );
    let mem = f.meminfo.map_or(0, |m| m.mem_total_kb);
    let big = immune
        .iter()
        .any(|p| p.rss_kb > 1024 * 1024 || (mem > 0 && p.rss_kb > mem / 10));
    if big || (mem > 0 && rss > mem / 20) {
        // The rule for the biggest of them (its user too when that is a system user).
        let top = immune.iter().max_by_key(|p| p.rss_kb).copied();
        let rule = top.map_or_else(
            || "name = \"^NAME$\"".to_string(),
            |p| protect_fields(&p.comm, p.uid, p.uid.and_then(|u| f.users.name(u))),
        );
        return Check::new("immune_processes", Severity::Warn, found)
            .why("processes with oom_score_adj -1000 are never killed; if one of them grows, the kernel kills everything else and finally panics with 'no killable processes'")
            .fix(format!("use -900 instead of -1000 (systemd: OOMScoreAdjust=-900 in the unit), or an oomguard rule: [[protect]] {rule} oom_score_adj = -900"));
    }
    Check::new("immune_processes", Severity::Ok, found)
        .why("small immune daemons are fine; a large one would leave the kernel nothing to kill")
}

fn sshd(f: &Facts) -> Check {
    let sshd: Vec<&ProcInfo> = f.procs.iter().filter(|p| p.comm == "sshd").collect();
    if sshd.is_empty() {
        return Check::new("sshd", Severity::Ok, "no sshd running")
            .why("remote access is what you need most during an OOM");
    }
    let unprotected: Vec<String> = sshd
        .iter()
        .filter(|p| p.adj.is_none_or(|a| a > -500))
        .map(|p| {
            format!(
                "{} (adj {})",
                p.pid,
                p.adj.map_or("?".into(), |a| a.to_string())
            )
        })
        .collect();
    if unprotected.is_empty() {
        let adj = sshd[0].adj.unwrap_or_default();
        return Check::new(
            "sshd",
            Severity::Ok,
            format!("sshd protected (oom_score_adj {adj})"),
        )
        .why("the kernel will not pick sshd while anything else is left, so you can still log in");
    }
    let rule = f
        .config
        .as_ref()
        .and_then(|(_, c)| c.as_ref().ok())
        .and_then(|c| {
            c.rules.iter().find(|r| {
                r.oom_score_adj.is_some_and(|a| a <= -500)
                    && r.name.as_ref().is_some_and(|n| n.is_match("sshd"))
            })
        });
    let found = format!("sshd not protected: {}", unprotected.join(", "));
    let check = Check::new("sshd", Severity::Warn, found).why(
        "in an OOM the kernel may kill sshd (or its sessions' parent) and lock you out of the box",
    );
    // root's sshd only: any user can call a process sshd.
    let rule_fields = protect_fields("sshd", Some(0), Some("root"));
    match rule {
        Some(r) => check.fix(format!(
            "the config already protects sshd ({}): start the daemon ({}) or run 'oomguard protect --once'",
            r.origin,
            start_daemon(f)
        )),
        None if !f.systemd => check.fix(format!("add to /etc/oomguard/oomguard.toml: [[protect]] {rule_fields} oom_score_adj = -900 (applied by 'oomguard run' to every new sshd; 'oomguard protect --once' applies it now); or in sshd's init script, before it starts sshd: echo -900 > /proc/self/oom_score_adj")),
        None => check.fix(format!("add to /etc/oomguard/oomguard.toml: [[protect]] {rule_fields} oom_score_adj = -900 (applied by 'oomguard run' to every new sshd); or a drop-in: {}", sshd_drop_in(f))),
    }
}

/// A systemd drop-in giving sshd's unit `OOMScoreAdjust=-900`. The unit is the one root's
/// sshd runs in, from its cgroup (`ssh.service` on Debian and Ubuntu, `sshd.service` on RHEL,
/// Fedora, SUSE and Arch); `ssh.service` when no cgroup names one. A per-connection instance
/// (`sshd@….service`, socket activation) gets the drop-in for its template, which new
/// connections read: nothing to restart.
fn sshd_drop_in(f: &Facts) -> String {
    let unit = f
        .procs
        .iter()
        .filter(|p| p.comm == "sshd" && p.uid == Some(0))
        .find_map(|p| p.service.clone())
        .unwrap_or_else(|| "ssh.service".to_string());
    let (dir_unit, restart) = match unit.split_once('@') {
        Some((template, _)) => (format!("{template}@.service"), String::new()),
        None => (
            unit.clone(),
            format!(
                " && systemctl restart {}",
                unit.trim_end_matches(".service")
            ),
        ),
    };
    let dir = format!("/etc/systemd/system/{dir_unit}.d");
    format!(
        "mkdir -p {dir} && printf '[Service]\\nOOMScoreAdjust=-900\\n' > {dir}/oom.conf && systemctl daemon-reload{restart}"
    )
}

fn headroom(f: &Facts) -> Check {
    let Some(m) = &f.meminfo else {
        return Check::unreadable("headroom", "/proc/meminfo");
    };
    let avail = m.available_kb();
    let pct = avail as f64 * 100.0 / m.mem_total_kb.max(1) as f64;
    let found = format!(
        "{} of {} available ({pct:.1}%), swap free {}",
        human_kb(avail),
        human_kb(m.mem_total_kb),
        human_kb(m.swap_free_kb)
    );
    let sev = if pct < 5.0 {
        Severity::Critical
    } else if pct < 10.0 {
        Severity::Warn
    } else {
        Severity::Ok
    };
    let c = Check::new("headroom", sev, found)
        .why("memory available right now before reclaim and then the OOM killer take over");
    if sev == Severity::Ok {
        c
    } else {
        c.fix("see who uses it and who would be killed: oomguard top --once")
    }
}

fn oom_kills(f: &Facts) -> Check {
    let Some(n) = f.oom_kills else {
        return Check::new(
            "oom_kills",
            Severity::Ok,
            "no oom_kill counter in /proc/vmstat (kernel before 4.13)",
        )
        .why("OOM kills since boot show whether memory already ran out");
    };
    if n == 0 {
        return Check::new("oom_kills", Severity::Ok, "no OOM kills since boot")
            .why("the kernel's OOM killer has not run");
    }
    let last = if f.last_kills.is_empty() {
        String::new()
    } else {
        format!("; last: {}", f.last_kills.join("; "))
    };
    Check::new(
        "oom_kills",
        Severity::Warn,
        format!("{n} OOM kill(s) since boot (cgroup limits and global){last}"),
    )
    .why("memory already ran out on this box; the same will happen again unless something changed")
    .fix("oomguard explain --kmsg (or oomguard explain /var/log/kern.log) says who was killed, who held the memory and why")
}

fn other_oom_daemons(f: &Facts) -> Check {
    const PEERS: [&str; 4] = ["earlyoom", "nohang", "systemd-oomd", "oomd"];
    let found: Vec<String> = f
        .procs
        .iter()
        .filter_map(|p| {
            let arg_names = p
                .cmdline
                .split(' ')
                .take(3)
                .map(|a| a.rsplit('/').next().unwrap_or(a));
            PEERS
                .iter()
                .find(|&&peer| p.comm == peer || arg_names.clone().any(|a| a == peer))
                .map(|peer| format!("{peer} (pid {})", p.pid))
        })
        .collect();
    if found.is_empty() {
        return Check::new(
            "other_oom_daemons",
            Severity::Ok,
            "no earlyoom, nohang, systemd-oomd or oomd running",
        )
        .why("one userspace OOM killer at a time");
    }
    let first = found[0].split(' ').next().unwrap_or("earlyoom").to_string();
    Check::new(
        "other_oom_daemons",
        Severity::Warn,
        format!("another OOM daemon is running: {}", found.join(", ")),
    )
    .why("two OOM daemons fight: each kills on its own thresholds, so one shortage can cost two victims")
    .fix(if f.systemd {
        format!("keep one: systemctl disable --now {first} (or do not run oomguard run)")
    } else {
        format!("keep one: stop {first} and remove it from the init's boot scripts (e.g. /etc/init.d/{first} stop), or do not run oomguard run")
    })
}

fn config(f: &Facts) -> Check {
    match &f.config {
        None => Check::new(
            "config",
            Severity::Ok,
            "no /etc/oomguard/oomguard.toml (built-in defaults)",
        )
        .why("rules and levels come from the config file; none is needed"),
        Some((path, Ok(c))) => {
            let adj = c.rules.iter().filter(|r| r.oom_score_adj.is_some()).count();
            Check::new(
                "config",
                Severity::Ok,
                format!("{path}: valid, {} rule(s), {adj} with oom_score_adj", c.rules.len()),
            )
            .why("the config parses; the daemon will accept it")
        }
        // The error names the file already.
        Some((path, Err(e))) => Check::new("config", Severity::Critical, e.clone())
            .why("the daemon refuses a bad config: it will not start (or keeps the old one on SIGHUP)")
            .fix(format!("fix the line named above; check with: oomguard check-config {path}")),
    }
}

fn oomguard_service(f: &Facts) -> Check {
    let unit = f.units.first();
    if f.guards.is_empty() {
        return match unit {
            Some(u) if f.systemd => Check::new(
                "oomguard_service",
                Severity::Critical,
                format!("{u} is installed but oomguard run is not running"),
            )
            .why("the guard was meant to run and does not: nothing acts before the kernel's OOM killer")
            .fix("systemctl enable --now oomguard; then journalctl -u oomguard says why it stopped"),
            Some(u) => Check::new(
                "oomguard_service",
                Severity::Critical,
                format!("{u} is installed but PID 1 is not systemd and oomguard run is not running"),
            )
            .why("the unit file is never started on this box: nothing acts before the kernel's OOM killer")
            .fix(start_daemon(f)),
            None => Check::new(
                "oomguard_service",
                Severity::Warn,
                "oomguard is not installed as a service and not running",
            )
            .why("without the daemon nothing acts before the kernel's OOM killer and rules' oom_score_adj are not kept up")
            .fix(if f.systemd {
                "install a unit running 'oomguard run' (/etc/systemd/system/oomguard.service, Restart=always) and systemctl enable --now oomguard"
            } else {
                start_daemon(f)
            }),
        };
    }
    let scopes: Vec<String> = f
        .guards
        .iter()
        .map(|g| {
            let dry = if g.dry_run() {
                format!(", dry run ({})", dry_run_origin(g))
            } else {
                String::new()
            };
            format!("pid {} guards {} ({}){dry}", g.pid, g.scope, g.origin)
        })
        .collect();
    let how = match unit {
        Some(u) => format!("unit {u}"),
        None => "no service installed".to_string(),
    };
    let found = format!("oomguard run is running: {}; {how}", scopes.join(", "));
    if let Some(gone) = f.guards.iter().find(|g| !g.exists) {
        return Check::new("oomguard_service", Severity::Critical, found)
            .why(format!(
                "the daemon (pid {}) guards {}, which names no memory cgroup on this box: nothing is guarded",
                gone.pid, gone.scope
            ))
            .fix("give --scope an existing cgroup (as in /proc/PID/cgroup) or --scope system, then restart the daemon");
    }
    // A dry-run daemon decides and records, and kills nothing: it guards nothing unless a
    // daemon that acts guards the whole machine beside it.
    let acting_system = f.guards.iter().any(|g| g.scope == "system" && !g.dry_run());
    if let Some(g) = f
        .guards
        .iter()
        .find(|g| g.dry_run())
        .filter(|_| !acting_system)
    {
        return Check::new("oomguard_service", Severity::Warn, found)
            .why(format!(
                "the daemon (pid {}) runs dry ({}): it decides and records what it would kill, but never kills; a shortage meets nothing but the kernel's OOM killer",
                g.pid,
                dry_run_origin(g)
            ))
            .fix(dry_run_fix(f, g, unit.is_some()));
    }
    if acting_system {
        let why = if unit.is_some() {
            "the guard is active for the whole machine"
        } else {
            "the guard is active for the whole machine; started by hand, it will not come back after a reboot"
        };
        return Check::new("oomguard_service", Severity::Ok, found).why(why);
    }
    Check::new("oomguard_service", Severity::Warn, found)
        .why("the daemon guards one cgroup only: a shortage outside it meets nothing but the kernel's OOM killer")
        .fix(if f.systemd {
            "if the whole machine should be guarded: drop --scope (the default is system) from the unit's ExecStart, then systemctl restart oomguard"
        } else {
            "if the whole machine should be guarded: drop --scope (the default is system) where the init starts oomguard run, and restart it"
        })
}

/// Where a guard's dry run comes from: `--dry-run`, `dry_run = true in FILE`, or both.
fn dry_run_origin(g: &super::facts::Guard) -> String {
    let file = g
        .dry_run_config
        .as_ref()
        .map(|c| format!("dry_run = true in {c}"));
    match (g.dry_run_flag, file) {
        (true, Some(file)) => format!("--dry-run and {file}"),
        (true, None) => "--dry-run".to_string(),
        (false, Some(file)) => file,
        (false, None) => "not a dry run".to_string(),
    }
}

/// How to let a dry-run guard act: the config's setting gone (then a reload applies it:
/// SIGHUP reloads dry_run), and the flag gone where it is started (then a restart).
fn dry_run_fix(f: &Facts, g: &super::facts::Guard, unit: bool) -> String {
    let by_systemd = f.systemd && unit;
    let mut steps = Vec::new();
    if let Some(file) = &g.dry_run_config {
        let reload = if g.dry_run_flag {
            String::new()
        } else if by_systemd {
            ", then systemctl reload oomguard".to_string()
        } else {
            format!(", then kill -HUP {} (the daemon rereads its config)", g.pid)
        };
        steps.push(format!(
            "remove dry_run = true from the [run] section of {file} (or set dry_run = false) so it can act{reload}"
        ));
    }
    if g.dry_run_flag {
        steps.push(if by_systemd {
            "remove --dry-run from the unit's ExecStart (systemctl edit --full oomguard) so it can act, then systemctl restart oomguard".to_string()
        } else {
            format!("remove --dry-run from the command that starts the daemon (pid {}) so it can act, and restart it", g.pid)
        });
    }
    steps.join("; and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_default_reserve() {
        // 24 GiB: sqrt(24 GiB in kB * 16) ~ 20 MiB.
        assert_eq!(default_min_free_kb(24 * 1024 * 1024), 20066);
        assert_eq!(default_min_free_kb(1024), 128);
        assert_eq!(default_min_free_kb(1 << 40), 262_144);
    }

    /// zramctl takes a size with a unit (`4G`, `1536M`), never a percentage: a quarter of RAM.
    #[test]
    fn zram_size_is_a_quarter_of_ram_in_units_zramctl_takes() {
        const GIB: u64 = 1024 * 1024;
        assert_eq!(zram_size(16 * GIB), "4G");
        assert_eq!(zram_size(8 * GIB), "2G");
        // 62.8 GiB: 15.7 GiB, to the nearest GiB.
        assert_eq!(zram_size(65_843_200), "16G");
        assert_eq!(zram_size(6 * GIB), "1536M");
        // 7.7 GiB: 1972 MiB, down to a multiple of 64.
        assert_eq!(zram_size(8_079_888), "1920M");
        assert_eq!(zram_size(128 * 1024), "64M");
        for kb in [128 * 1024, 6 * GIB, 16 * GIB, 65_843_200] {
            let s = zram_size(kb);
            let (n, unit) = s.split_at(s.len() - 1);
            assert!(
                n.parse::<u64>().is_ok() && (unit == "G" || unit == "M"),
                "{s}"
            );
        }
    }
}
