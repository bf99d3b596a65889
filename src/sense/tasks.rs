//! Every process's badness terms in a few reads: the kernel's task iterator (a BPF `iter/task`
//! program; kernel 5.8 and later with BTF: checked on 5.10, 5.15, 6.1 and 6.18) instead of one
//! `/proc/PID/statm` per process.
//!
//! The program is built here, for the running kernel: the byte offsets of the fields it reads
//! come from the kernel's own type information ([`super::btf`]), so no compiler, object file
//! or library is needed. For each thread-group leader in the reader's PID namespace it writes
//! one fixed record: the PID as this namespace numbers it, the task's flags, the resident
//! file, anon and shmem pages, the swap entries and page-table bytes of its `mm` (the
//! counters as the kernel's own `oom_badness` and `/proc/PID/stat` read them, without the
//! per-CPU parts that `statm` and `status` add on newer kernels: at most a batch per CPU and
//! counter apart), and `oom_score_adj`. Loading needs `CAP_BPF` and `CAP_PERFMON` (or
//! `CAP_SYS_ADMIN`) and a kernel with BTF; without them the caller reads `/proc` as before.
//! The daemon has the BTF (5 MiB) read by a helper process ([`TaskIter::load_via`]), so that
//! its own memory never holds it. Checked on 6.18 (`percpu_counter` counters) by the unit
//! tests here, and on Debian 12's 6.1 (`mm_rss_stat`) by the VM storms (`tests/vm_scenarios.rs`).
//!
//! One scan is one `bpf(BPF_ITER_CREATE)`, a read per 32 KiB of records (585 processes), and a
//! close. Nothing is written, nothing in the kernel changes: the program only reads.

use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use thiserror::Error;

use super::btf::{Btf, BtfError};

/// A process as the task iterator saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskRow {
    /// The PID in the reader's PID namespace.
    pub pid: i32,
    /// The task's `PF_*` flags.
    pub flags: u32,
    /// Resident pages: file + anon + shmem (the kernel's `get_mm_rss`, `stat`'s field 24).
    /// The page counts are 32 bits (up to 16 TiB of 4 KiB pages; more saturates): a row per
    /// process is kept between scans, and its size is the daemon's memory per process.
    pub rss_pages: u32,
    pub swap_pages: u32,
    /// Page tables, in pages (the kernel's `mm_pgtables_bytes / PAGE_SIZE`).
    pub pgtables_pages: u32,
    pub adj: i16,
    /// It has an address space (not a kernel thread, not a zombie).
    pub has_mm: bool,
}

impl TaskRow {
    const PF_KTHREAD: u32 = 0x0020_0000;
    pub fn is_kthread(&self) -> bool {
        self.flags & Self::PF_KTHREAD != 0
    }
}

#[derive(Debug, Error)]
pub enum TaskIterError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("the kernel's {0} has a layout this program does not know")]
    Layout(&'static str),
    #[error(
        "not permitted ({0}): loading it needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) and the bpf() system call (a systemd unit's SystemCallFilter=~@privileged denies it)"
    )]
    NotPermitted(Errno),
    #[error("the kernel refused the task iterator program ({errno}){}", log_tail(.log))]
    Load { errno: Errno, log: String },
    /// The running kernel has no task iterator to offer: no type information, or none for
    /// the iterator (before 5.8).
    #[error("missing here ({0})")]
    Absent(String),
    #[error("cannot work out the kernel's layout in a helper process: {0}")]
    Helper(String),
    #[error(
        "not able to pick out one group's processes on this kernel (its types lack what the filter reads: the memory controller's id, or a cgroup's list of its ancestors, cgroup.ancestors since 6.0, cgroup.ancestor_ids from 5.5 to 5.19)"
    )]
    NoCgroupFilter,
    #[error("cannot attach the task iterator ({0})")]
    Attach(Errno),
    #[error("cannot start a pass of the task iterator: {0}")]
    Iter(Errno),
    #[error("cannot read the task iterator: {0}")]
    Read(Errno),
    #[error("the task iterator wrote a partial record ({0} bytes)")]
    Torn(usize),
    #[error(
        "the task iterator's read buffer of {0} bytes holds no whole record ({RECORD} bytes): a bug, please report it"
    )]
    SmallBuffer(usize),
}

impl TaskIterError {
    /// A choice of whoever runs the daemon (its privileges, a unit's sandbox), or a kernel
    /// without the iterator or too old for a cgroup's filter: said, not warned of.
    pub fn is_expected(&self) -> bool {
        matches!(
            self,
            TaskIterError::NotPermitted(_)
                | TaskIterError::NoCgroupFilter
                | TaskIterError::Absent(_)
        )
    }
}

fn log_tail(log: &str) -> String {
    let t = log.trim_end();
    if t.is_empty() {
        String::new()
    } else {
        let tail: Vec<&str> = t.lines().rev().take(3).collect();
        format!(
            ": {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )
    }
}

/// The loaded program, attached as an iterator.
pub struct TaskIter {
    link: OwnedFd,
    /// Kept so the program's id stays for tools like `bpftool` (the link holds it anyway).
    _prog: OwnedFd,
    page_size: u64,
}

impl std::fmt::Debug for TaskIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskIter")
            .field("link", &self.link.as_raw_fd())
            .finish()
    }
}

/// Where the kernel describes its types: what the task iterator is built from.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Whether the `/proc` mounted here is this process's PID namespace's. The iterator numbers
/// processes as the caller's namespace does, and the choice reads them in `/proc` by those
/// numbers: a `/proc` of another namespace (a container given the host's) names others.
pub fn proc_is_own_namespace() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}

/// The record the program writes, in bytes (see [`Layout::program`]).
pub const RECORD: usize = 56;

/// The offsets the program reads at, from the kernel's BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `bpf_iter_task`'s BTF id: the iterator the program attaches to.
    pub attach_btf_id: u32,
    pub task_pid: i16,
    pub task_tgid: i16,
    pub task_flags: i16,
    pub task_mm: i16,
    pub task_signal: i16,
    pub task_thread_pid: i16,
    /// From a `struct pid` to its `level` (of its innermost namespace).
    pub pid_level: i16,
    /// From a `struct pid` to `numbers[0].nr`, and the size of one `numbers` entry: the PID in
    /// the namespace at level `l` is at `pid_nr + l * upid_size`.
    pub pid_nr: i32,
    pub upid_size: i32,
    pub signal_adj: i16,
    /// From an `mm_struct` to the counters of file, anon, swap and shmem pages.
    pub mm_file: i16,
    pub mm_anon: i16,
    pub mm_swap: i16,
    pub mm_shmem: i16,
    /// From an `mm_struct` to `pgtables_bytes` (`None`: the kernel has no such field).
    pub mm_pgtables: Option<i16>,
    /// Read the counters and page-table bytes with `bpf_probe_read_kernel`, not by direct
    /// loads: before 6.2 they are `atomic_long_t` in an array, which the verifier of those
    /// kernels (6.1) cannot walk into ("Type 'atomic_long_t' is not a struct").
    pub probe_counters: bool,
    /// Where a task's memory cgroup is, for a program that lists one cgroup's processes
    /// (`None`: the kernel lacks a field the filter reads, or has no memory controller).
    pub cgroup: Option<CgroupOffsets>,
}

/// The path from a task to the id of its memory cgroup's ancestor at a given level:
/// `task->cgroups->subsys[memory_cgrp_id]->cgroup`, then `->ancestors[L]->kn->id` (6.0 and
/// later) or `->ancestor_ids[L]` (5.5 to 5.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupOffsets {
    pub task_cgroups: i16,
    /// From a `css_set` to its memory controller's `cgroup_subsys_state` pointer.
    pub css_set_memory: i16,
    pub css_cgroup: i16,
    pub cgroup_level: i16,
    /// Where a cgroup lists its ancestors, indexed by level (itself at its own level).
    pub ancestors: Ancestors,
    pub cgroup_kn: i16,
    pub kn_id: i16,
}

/// A cgroup's list of its ancestors (`struct cgroup`'s last member), by kernel era.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestors {
    /// `cgroup.ancestors` (6.0 and later): pointers, each ancestor's id read from its
    /// `kn->id`.
    Pointers(i16),
    /// `cgroup.ancestor_ids` (5.5 to 5.19): the ancestors' ids (their `kn->id`), 64-bit.
    Ids(i16),
}

impl Ancestors {
    /// The offset and the kind, as two numbers (1 for ids).
    fn fields(self) -> [i16; 2] {
        match self {
            Ancestors::Pointers(o) => [o, 0],
            Ancestors::Ids(o) => [o, 1],
        }
    }

    fn from_fields(offset: i16, kind: i16) -> Option<Ancestors> {
        match kind {
            0 => Some(Ancestors::Pointers(offset)),
            1 => Some(Ancestors::Ids(offset)),
            _ => None,
        }
    }
}

/// A program that lists only the processes of one memory cgroup and its descendants: the
/// group's id (the inode number of its directory, the kernel's `kernfs_node.id`) and its
/// level (0 for the hierarchy's root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupFilter {
    pub id: u64,
    /// The group's level; with `reader_depth`, its depth below the root of the reader's
    /// cgroup namespace (which is all its path tells there).
    pub level: u32,
    /// In a cgroup namespace of its own, the reader's memory cgroup's depth below the
    /// namespace's root: the program takes the root's level from the reader's memory cgroup
    /// (its level less this), and adds `level`. `None` in the initial namespace.
    pub reader_depth: Option<u32>,
}

fn off(v: u32, what: &'static str) -> Result<i16, TaskIterError> {
    i16::try_from(v).map_err(|_| TaskIterError::Layout(what))
}

impl CgroupOffsets {
    fn from_btf(btf: &Btf, task: u32) -> Result<CgroupOffsets, TaskIterError> {
        let member = |s: &'static str, m: &'static str| -> Result<(i16, u32), TaskIterError> {
            let sid = btf.struct_id(s)?;
            let mb = btf
                .member(sid, m)
                .ok_or_else(|| BtfError::Missing(format!("{s}.{m}")))?;
            Ok((off(mb.offset, s)?, mb.type_id))
        };
        let cgroups = btf
            .member(task, "cgroups")
            .ok_or_else(|| BtfError::Missing("task_struct.cgroups".into()))?;
        let (subsys, subsys_type) = member("css_set", "subsys")?;
        let memory = u32::try_from(btf.enum_value("memory_cgrp_id")?)
            .map_err(|_| TaskIterError::Layout("memory_cgrp_id"))?;
        let (_, slots) = btf
            .array(subsys_type)
            .ok_or(TaskIterError::Layout("css_set.subsys"))?;
        if memory >= slots {
            return Err(TaskIterError::Layout("css_set.subsys"));
        }
        let cgroup = btf.struct_id("cgroup")?;
        let ancestors = if let Some(m) = btf.member(cgroup, "ancestors") {
            Ancestors::Pointers(off(m.offset, "cgroup")?)
        } else {
            // Before 6.0: the ids themselves, u64 since 5.5 (when a cgroup's id became its
            // kernfs node's 64-bit id); an older kernel's `int` ids are not the inode's.
            let m = btf
                .member(cgroup, "ancestor_ids")
                .ok_or_else(|| BtfError::Missing("cgroup.ancestors".into()))?;
            let (elem, _) = btf
                .array(m.type_id)
                .ok_or(TaskIterError::Layout("cgroup.ancestor_ids"))?;
            if btf.size(elem) != Some(8) {
                return Err(TaskIterError::Layout("cgroup.ancestor_ids"));
            }
            Ancestors::Ids(off(m.offset, "cgroup")?)
        };
        Ok(CgroupOffsets {
            task_cgroups: off(cgroups.offset, "task_struct")?,
            css_set_memory: subsys
                .checked_add(memory as i16 * 8)
                .ok_or(TaskIterError::Layout("css_set"))?,
            css_cgroup: member("cgroup_subsys_state", "cgroup")?.0,
            cgroup_level: member("cgroup", "level")?.0,
            ancestors,
            cgroup_kn: member("cgroup", "kn")?.0,
            kn_id: member("kernfs_node", "id")?.0,
        })
    }

    fn fields(&self) -> [i16; 8] {
        let [ancestors, kind] = self.ancestors.fields();
        [
            self.task_cgroups,
            self.css_set_memory,
            self.css_cgroup,
            self.cgroup_level,
            ancestors,
            kind,
            self.cgroup_kn,
            self.kn_id,
        ]
    }
}

impl Layout {
    /// The offsets for the running kernel, from its type information at `btf_path`; a
    /// kernel without any (built without `CONFIG_DEBUG_INFO_BTF`) has no iterator to offer
    /// ([`TaskIterError::Absent`]).
    pub fn read(btf_path: &Path) -> Result<Layout, TaskIterError> {
        let btf = Btf::read(btf_path).map_err(|e| match e {
            BtfError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                TaskIterError::Absent(format!(
                    "no {}: the kernel was built without CONFIG_DEBUG_INFO_BTF, or /sys is not mounted",
                    btf_path.display()
                ))
            }
            e => e.into(),
        })?;
        Layout::from_btf(&btf)
    }

    /// The offsets for the kernel `btf` describes.
    pub fn from_btf(btf: &Btf) -> Result<Layout, TaskIterError> {
        let member = |sid: u32, s: &'static str, m: &'static str| {
            btf.member(sid, m)
                .ok_or_else(|| BtfError::Missing(format!("{s}.{m}")))
        };
        let task = btf.struct_id("task_struct")?;
        let tm = |m: &'static str| -> Result<i16, TaskIterError> {
            off(member(task, "task_struct", m)?.offset, "task_struct")
        };
        let signal = btf.struct_id("signal_struct")?;
        let pid = btf.struct_id("pid")?;
        let upid = btf.struct_id("upid")?;
        let numbers = member(pid, "pid", "numbers")?.offset;
        let upid_size = btf.size(upid).ok_or(TaskIterError::Layout("upid"))?;
        let nr = member(upid, "upid", "nr")?.offset;
        let level = member(pid, "pid", "level")?.offset;
        let mm = btf.struct_id("mm_struct")?;
        let rss = member(mm, "mm_struct", "rss_stat")?;
        // Counter `i` sits at `base + i * stride`: since 6.2 an array of percpu_counter (its
        // `count`, what `statm` reads), before it a struct of an atomic_long_t array.
        let (base, stride, probe_counters) = if let Some((elem, _)) = btf.array(rss.type_id) {
            let count = member(elem, "percpu_counter", "count")?.offset;
            let size = btf
                .size(elem)
                .ok_or(TaskIterError::Layout("percpu_counter"))?;
            (rss.offset + count, size, false)
        } else if btf.is_struct(rss.type_id) {
            let count = member(rss.type_id, "mm_rss_stat", "count")?;
            let (elem, _) = btf
                .array(count.type_id)
                .ok_or(TaskIterError::Layout("mm_rss_stat"))?;
            let size = btf.size(elem).ok_or(TaskIterError::Layout("mm_rss_stat"))?;
            (rss.offset + count.offset, size, true)
        } else {
            return Err(TaskIterError::Layout("mm_struct.rss_stat"));
        };
        let counter = |name: &str| -> Result<i16, TaskIterError> {
            let i = btf.enum_value(name)?;
            off(
                u32::try_from(i as u64 * stride as u64 + base as u64)
                    .map_err(|_| TaskIterError::Layout("mm_struct"))?,
                "mm_struct",
            )
        };
        Ok(Layout {
            attach_btf_id: btf.func_id("bpf_iter_task").map_err(|e| match e {
                BtfError::Missing(_) => TaskIterError::Absent(
                    "the kernel's type information has no bpf_iter_task: the task iterator came in Linux 5.8".into(),
                ),
                e => e.into(),
            })?,
            task_pid: tm("pid")?,
            task_tgid: tm("tgid")?,
            task_flags: tm("flags")?,
            task_mm: tm("mm")?,
            task_signal: tm("signal")?,
            task_thread_pid: tm("thread_pid")?,
            pid_level: off(level, "pid")?,
            pid_nr: i32::try_from(numbers + nr).map_err(|_| TaskIterError::Layout("pid"))?,
            upid_size: i32::try_from(upid_size).map_err(|_| TaskIterError::Layout("upid"))?,
            signal_adj: off(
                member(signal, "signal_struct", "oom_score_adj")?.offset,
                "signal_struct",
            )?,
            mm_file: counter("MM_FILEPAGES")?,
            mm_anon: counter("MM_ANONPAGES")?,
            mm_swap: counter("MM_SWAPENTS")?,
            mm_shmem: counter("MM_SHMEMPAGES")?,
            mm_pgtables: btf
                .member(mm, "pgtables_bytes")
                .map(|m| off(m.offset, "mm_struct"))
                .transpose()?,
            probe_counters,
            cgroup: CgroupOffsets::from_btf(btf, task).ok(),
        })
    }

    /// The program. Registers: r6 the context, r7 the task, r8 the reader's namespace level
    /// times the size of a `numbers` entry, then the task's mm, r9 its signal struct (before
    /// that, with a filter, the pointers from the task to its memory cgroup's ancestor). The
    /// record on the stack, at fp−56 (fp−64 is scratch): pid (u32), flags (u32), file, anon, swap, shmem
    /// (s64 each), page-table bytes (s64), adj (u16), has-mm (u8), padding.
    ///
    /// With a `filter` (and [`Layout::cgroup`]), a leader whose memory cgroup is not the
    /// filter's group or below it is passed over before anything else is read: its memory
    /// cgroup's ancestor at the group's level (`ancestors[L]`, or `ancestor_ids[L]` before 6.0;
    /// the group itself when the task is in it) must have the group's id. A task's memory
    /// cgroup is the nearest group up from its own with the memory controller on, and the
    /// filter's group has it on, so this is membership of the group's subtree, as
    /// `cgroup.procs` of the group and its descendants lists it (on v1, where a process's
    /// threads may be placed in groups one by one, its leader's group decides, which is where
    /// v1 charges its memory). In a cgroup namespace of its own ([`CgroupFilter::reader_depth`])
    /// L is worked out for each task from the reader's memory cgroup (fp−72 scratch too), and a
    /// reader since moved up above its depth lists no one.
    pub fn program(&self, filter: Option<CgroupFilter>) -> Vec<Insn> {
        self.program_with(filter, Current::Btf)
    }

    /// [`Layout::program`], finding the reader's task with `current`.
    pub fn program_with(&self, filter: Option<CgroupFilter>, current: Current) -> Vec<Insn> {
        let mut p = Asm::default();
        p.mov_reg(6, 1);
        p.ldx(DW, 7, 6, 8); // ctx->task
        p.jeq_imm(7, 0, "out");
        p.ldx(W, 1, 7, self.task_pid);
        p.ldx(W, 2, 7, self.task_tgid);
        p.jne_reg(1, 2, "out"); // threads other than the leader
        if let (Some(f), Some(c)) = (filter, self.cgroup) {
            // Each pointer is read as a number into fp−64, as the PID below.
            let next = |p: &mut Asm, base: u8, field: i32| {
                p.probe_read(-64, 8, base, field);
                p.ldx(DW, 9, 10, -64);
                p.jeq_imm(9, 0, "out");
            };
            next(&mut p, 7, c.task_cgroups.into());
            next(&mut p, 9, c.css_set_memory.into());
            next(&mut p, 9, c.css_cgroup.into());
            p.probe_read(-64, 4, 9, c.cgroup_level.into());
            p.ldx(W, 1, 10, -64);
            // Where ancestors[L] is from the memory cgroup in r9: at L × 8 past the list's start.
            let shift = match f.reader_depth {
                None => {
                    p.jlt_imm(1, f.level as i32, "out");
                    (f.level as i32).saturating_mul(8)
                }
                Some(depth) => {
                    // The group's level L = the reader's memory cgroup's level − its depth
                    // + the group's depth (both below the namespace's root), read from the
                    // current task (the reader) for each task: the task's level into fp−72,
                    // its memory cgroup into r8 (free until the PID below), r9 moved by L.
                    p.stx(W, 10, 1, -72);
                    p.mov_reg(8, 9);
                    p.call(HELPER_GET_CURRENT_TASK);
                    p.probe_read(-64, 8, 0, c.task_cgroups.into());
                    p.ldx(DW, 9, 10, -64);
                    p.jeq_imm(9, 0, "out");
                    next(&mut p, 9, c.css_set_memory.into());
                    next(&mut p, 9, c.css_cgroup.into());
                    p.probe_read(-64, 4, 9, c.cgroup_level.into());
                    p.ldx(W, 2, 10, -64);
                    p.add_imm(2, f.level as i32);
                    // The reader moved above its depth at the start: no level, no one listed
                    // (the scan then reads the group's processes in /proc).
                    p.jlt_imm(2, depth as i32, "out");
                    p.add_imm(2, -(depth as i32));
                    p.ldx(W, 1, 10, -72);
                    p.jlt_reg(1, 2, "out");
                    p.mul_imm(2, 8);
                    p.mov_reg(9, 8);
                    p.add_reg(9, 2);
                    0
                }
            };
            let at = |o: i16| i32::from(o).saturating_add(shift);
            match c.ancestors {
                Ancestors::Pointers(o) => {
                    next(&mut p, 9, at(o));
                    next(&mut p, 9, c.cgroup_kn.into());
                    p.probe_read(-64, 8, 9, c.kn_id.into());
                }
                Ancestors::Ids(o) => p.probe_read(-64, 8, 9, at(o)),
            }
            p.ldx(DW, 1, 10, -64);
            p.ld_imm64(2, f.id);
            p.jne_reg(1, 2, "out");
        }
        // The PID in the reader's namespace: task->thread_pid->numbers[L].nr, where L is the
        // level of the reader's own namespace (the iterator lists that namespace's tasks,
        // and runs in the reader's read(2), so the current task is the reader). The address
        // is computed on the pointer's value (read with bpf_probe_read_kernel, a plain
        // number), and the PID read the same way: `numbers` may be declared with length 1.
        match current {
            Current::Btf => {
                p.call(HELPER_GET_CURRENT_TASK_BTF);
                p.ldx(DW, 1, 0, self.task_thread_pid);
                p.ldx(W, 8, 1, self.pid_level);
            }
            Current::Plain => {
                // The task as a number: both steps read with bpf_probe_read_kernel.
                p.call(HELPER_GET_CURRENT_TASK);
                p.probe_read(-64, 8, 0, self.task_thread_pid as i32);
                p.ldx(DW, 3, 10, -64);
                p.probe_read(-64, 4, 3, self.pid_level as i32);
                p.ldx(W, 8, 10, -64);
            }
        }
        p.mul_imm(8, self.upid_size);
        p.probe_read(-64, 8, 7, self.task_thread_pid as i32);
        p.ldx(DW, 3, 10, -64);
        p.add_reg(3, 8);
        p.probe_read(-56, 4, 3, self.pid_nr);
        p.ldx(W, 1, 7, self.task_flags);
        p.stx(W, 10, 1, -52);
        p.ldx(DW, 9, 7, self.task_signal);
        p.ldx(H, 1, 9, self.signal_adj);
        p.stx(DW, 10, 1, -8);
        for at in [-48, -40, -32, -24, -16] {
            p.st_imm(DW, 10, at, 0);
        }
        p.ldx(DW, 8, 7, self.task_mm);
        p.jeq_imm(8, 0, "write");
        let mut fields = vec![
            (self.mm_file, -48),
            (self.mm_anon, -40),
            (self.mm_swap, -32),
            (self.mm_shmem, -24),
        ];
        fields.extend(self.mm_pgtables.map(|pt| (pt, -16)));
        for (field, at) in fields {
            if self.probe_counters {
                p.probe_read(at.into(), 8, 8, field.into());
            } else {
                p.ldx(DW, 1, 8, field);
                p.stx(DW, 10, 1, at);
            }
        }
        p.st_imm(B, 10, -6, 1);
        p.label("write");
        p.ldx(DW, 1, 6, 0); // ctx->meta
        p.ldx(DW, 1, 1, 0); // meta->seq
        p.mov_reg(2, 10);
        p.add_imm(2, -56);
        p.mov_imm(3, RECORD as i32);
        p.call(HELPER_SEQ_WRITE);
        p.label("out");
        p.mov_imm(0, 0);
        p.exit();
        p.finish()
    }
}

/// Parses one record of the program (`None`: shorter than [`RECORD`]).
pub fn parse_record(r: &[u8], page_size: u64) -> Option<TaskRow> {
    if r.len() < RECORD {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    // A percpu counter's total may dip below zero for a moment; the kernel's readers clamp.
    let pages = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&r[i..i + 8]);
        i64::from_le_bytes(b).max(0) as u64
    };
    let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Some(TaskRow {
        pid: u32_at(0) as i32,
        flags: u32_at(4),
        rss_pages: narrow(pages(8).saturating_add(pages(16)).saturating_add(pages(32))),
        swap_pages: narrow(pages(24)),
        pgtables_pages: narrow(pages(40) / page_size.max(1)),
        adj: i16::from_le_bytes([r[48], r[49]]),
        has_mm: r[50] != 0,
    })
}

/// How the program finds the task that reads it (for its PID namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    /// `bpf_get_current_task_btf` (5.11 and later): a typed pointer, its fields loaded directly.
    Btf,
    /// `bpf_get_current_task`: a number, its fields read with `bpf_probe_read_kernel` (for
    /// 5.8 to 5.10, which refuse the program with the other).
    Plain,
}

/// The argument that makes the `oomguard` binary print the [`Layout`] for the BTF at the path
/// that follows, and exit ([`layout_helper_main`]).
pub const LAYOUT_HELPER_ARG: &str = "__task-iterator-layout";

impl Layout {
    /// One line of numbers (`-1` for no page-table field), for a helper process to hand over.
    /// The cgroup offsets follow, eight numbers (the fifth and sixth are [`Ancestors`]), or one
    /// `-1` when there are none.
    pub fn to_line(&self) -> String {
        let cgroup = match self.cgroup {
            Some(c) => c.fields().map(|f| f.to_string()).join(" "),
            None => "-1".into(),
        };
        format!(
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {cgroup}",
            self.attach_btf_id,
            self.task_pid,
            self.task_tgid,
            self.task_flags,
            self.task_mm,
            self.task_signal,
            self.task_thread_pid,
            self.pid_level,
            self.pid_nr,
            self.upid_size,
            self.signal_adj,
            self.mm_file,
            self.mm_anon,
            self.mm_swap,
            self.mm_shmem,
            self.mm_pgtables.map_or(-1, i32::from),
            u8::from(self.probe_counters),
        )
    }

    /// Parses [`Layout::to_line`]'s line.
    pub fn from_line(line: &str) -> Option<Layout> {
        let v: Vec<i64> = line
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let h = |x: i64| i16::try_from(x).ok();
        let (v, cgroup) = match v.len() {
            18 if v[17] == -1 => (&v[..17], None),
            25 => {
                let c = &v[17..];
                let cgroup = CgroupOffsets {
                    task_cgroups: h(c[0])?,
                    css_set_memory: h(c[1])?,
                    css_cgroup: h(c[2])?,
                    cgroup_level: h(c[3])?,
                    ancestors: Ancestors::from_fields(h(c[4])?, h(c[5])?)?,
                    cgroup_kn: h(c[6])?,
                    kn_id: h(c[7])?,
                };
                (&v[..17], Some(cgroup))
            }
            _ => return None,
        };
        let [
            id,
            pid,
            tgid,
            flags,
            mm,
            signal,
            thread_pid,
            level,
            nr,
            upid,
            adj,
            file,
            anon,
            swap,
            shmem,
            pgt,
            probe,
        ] = v[..]
        else {
            return None;
        };
        Some(Layout {
            attach_btf_id: u32::try_from(id).ok()?,
            task_pid: h(pid)?,
            task_tgid: h(tgid)?,
            task_flags: h(flags)?,
            task_mm: h(mm)?,
            task_signal: h(signal)?,
            task_thread_pid: h(thread_pid)?,
            pid_level: h(level)?,
            pid_nr: i32::try_from(nr).ok()?,
            upid_size: i32::try_from(upid).ok()?,
            signal_adj: h(adj)?,
            mm_file: h(file)?,
            mm_anon: h(anon)?,
            mm_swap: h(swap)?,
            mm_shmem: h(shmem)?,
            mm_pgtables: if pgt < 0 { None } else { Some(h(pgt)?) },
            probe_counters: match probe {
                0 => false,
                1 => true,
                _ => return None,
            },
            cgroup,
        })
    }
}

/// The helper's exit status when the kernel has no task iterator ([`TaskIterError::Absent`],
/// whose reason it prints alone).
const ABSENT_EXIT: i32 = 3;

/// The helper's side: `oomguard __task-iterator-layout BTF` prints the layout line for that
/// BTF, or the error, and exits (0, [`ABSENT_EXIT`] or 1).
pub fn layout_helper_main(btf_path: &Path) -> std::process::ExitCode {
    match Layout::read(btf_path) {
        Ok(l) => {
            println!("{}", l.to_line());
            std::process::ExitCode::SUCCESS
        }
        Err(TaskIterError::Absent(why)) => {
            eprintln!("{why}");
            std::process::ExitCode::from(ABSENT_EXIT as u8)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    }
}

impl TaskIter {
    /// Loads the program for the running kernel and attaches it: BTF from `btf_path`
    /// (normally `/sys/kernel/btf/vmlinux`), read in this process.
    /// With a `filter`, only that cgroup's processes are listed.
    pub fn load(btf_path: &Path, filter: Option<CgroupFilter>) -> Result<TaskIter, TaskIterError> {
        TaskIter::load_layout(Layout::read(btf_path)?, filter)
    }

    /// [`TaskIter::load`] with the kernel's type information read by a helper process, `exe`
    /// run with [`LAYOUT_HELPER_ARG`] (the daemon's own binary): the 5 MiB it reads and
    /// indexes then never count in the caller's memory, whose high-water mark stays that of
    /// the guard itself.
    pub fn load_via(
        exe: &Path,
        btf_path: &Path,
        filter: Option<CgroupFilter>,
    ) -> Result<TaskIter, TaskIterError> {
        bpf_permitted()?;
        let out = std::process::Command::new(exe)
            .arg(LAYOUT_HELPER_ARG)
            .arg(btf_path)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| TaskIterError::Helper(format!("cannot run {}: {e}", exe.display())))?;
        if out.status.code() == Some(ABSENT_EXIT) {
            return Err(TaskIterError::Absent(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        if !out.status.success() {
            return Err(TaskIterError::Helper(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let layout = Layout::from_line(text.trim()).ok_or_else(|| {
            TaskIterError::Helper(format!("it printed {:?}, not a layout", text.trim()))
        })?;
        TaskIter::load_layout(layout, filter)
    }

    fn load_layout(
        layout: Layout,
        filter: Option<CgroupFilter>,
    ) -> Result<TaskIter, TaskIterError> {
        if filter.is_some() && layout.cgroup.is_none() {
            return Err(TaskIterError::NoCgroupFilter);
        }
        match TaskIter::attach(&layout, filter, Current::Btf) {
            // A kernel before 5.11 does not know bpf_get_current_task_btf: the program that
            // finds the reader without it instead (its own refusal, if any, is the one said).
            Err(TaskIterError::Load { log, .. })
                if refused_helper(&log, HELPER_GET_CURRENT_TASK_BTF) =>
            {
                TaskIter::attach(&layout, filter, Current::Plain)
            }
            r => r,
        }
    }

    /// Loads and attaches the program `current` builds.
    fn attach(
        layout: &Layout,
        filter: Option<CgroupFilter>,
        current: Current,
    ) -> Result<TaskIter, TaskIterError> {
        let prog = prog_load(&layout.program_with(filter, current), layout.attach_btf_id)?;
        let link = link_create(&prog).map_err(|e| match e {
            Errno::PERM | Errno::ACCESS => TaskIterError::NotPermitted(e),
            e => TaskIterError::Attach(e),
        })?;
        Ok(TaskIter {
            link,
            _prog: prog,
            page_size: rustix::param::page_size() as u64,
        })
    }

    /// One pass: every thread-group leader of this PID namespace into `out` (cleared first),
    /// in increasing PID order. `buf` is scratch space for the reads (32 KiB is plenty; at
    /// least one [`RECORD`]).
    pub fn read(
        &self,
        buf: &mut [MaybeUninit<u8>],
        out: &mut Vec<TaskRow>,
    ) -> Result<(), TaskIterError> {
        out.clear();
        // Whole records only: the kernel fills its buffer (8 pages) until it holds at least
        // what was asked and then hands out just that, so a read of a length that is no
        // multiple of the record (32 KiB where a page is 64 KiB) would cut one in two.
        let len = buf.len();
        let buf = whole_records(buf).ok_or(TaskIterError::SmallBuffer(len))?;
        let fd = iter_create(&self.link).map_err(TaskIterError::Iter)?;
        loop {
            // A read lists up to 585 processes (the kernel's 32 KiB buffer); a breathing
            // thread may pause between reads as between two /proc files.
            super::breath::tick();
            let n = match rustix::io::read(&fd, &mut *buf) {
                Ok((init, _)) => init.len(),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(TaskIterError::Read(e)),
            };
            if n == 0 {
                return Ok(());
            }
            if n % RECORD != 0 {
                return Err(TaskIterError::Torn(n));
            }
            // SAFETY: the kernel initialised the first `n` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            for rec in bytes.chunks_exact(RECORD) {
                if let Some(row) = parse_record(rec, self.page_size)
                    && row.pid > 0
                {
                    out.push(row);
                }
            }
        }
    }
}

/// The longest start of `buf` that holds whole [`RECORD`]s; `None` when not even one fits.
fn whole_records(buf: &mut [MaybeUninit<u8>]) -> Option<&mut [MaybeUninit<u8>]> {
    let len = buf.len() / RECORD * RECORD;
    (len > 0).then(|| &mut buf[..len])
}

// --- the bpf(2) system call ---

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;
const HELPER_PROBE_READ_KERNEL: i32 = 113;
const HELPER_SEQ_WRITE: i32 = 127;
const HELPER_GET_CURRENT_TASK_BTF: i32 = 158;
const HELPER_GET_CURRENT_TASK: i32 = 35;

/// Whether the verifier's `log` refuses a call of helper `id`: `invalid func unknown#158` or
/// `unknown func …#158`, as it words a helper it does not know or does not allow here.
fn refused_helper(log: &str, id: i32) -> bool {
    let num = format!("#{id}");
    log.lines()
        .any(|l| l.contains("func ") && l.trim_end().ends_with(&num))
}

fn sys_bpf(cmd: libc::c_long, attr: &mut [u64]) -> Result<OwnedFd, Errno> {
    // SAFETY: `attr` is a zeroed `union bpf_attr` prefix of the length passed; the kernel reads
    // the fields of `cmd` from it and writes nothing back for these commands.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    // SAFETY: a successful call returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Writes `v` at byte offset `at` of an attr made of u64 words.
fn put32(attr: &mut [u64], at: usize, v: u32) {
    let w = &mut attr[at / 8];
    let shift = (at % 8) * 8;
    *w = (*w & !(0xffff_ffffu64 << shift)) | (v as u64) << shift;
}

/// Whether this process may load BPF programs at all, asked without loading one: an empty
/// program is refused for its size (E2BIG) only once the caller has passed the checks for
/// `CAP_BPF` and any seccomp filter (EPERM). Spares a helper process that would be in vain.
fn bpf_permitted() -> Result<(), TaskIterError> {
    let mut attr = [0u64; 16];
    put32(&mut attr, 0, BPF_PROG_TYPE_TRACING);
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Err(e @ (Errno::PERM | Errno::ACCESS)) => Err(TaskIterError::NotPermitted(e)),
        // E2BIG as expected, or anything else: the real load will say.
        _ => Ok(()),
    }
}

fn prog_load(insns: &[Insn], attach_btf_id: u32) -> Result<OwnedFd, TaskIterError> {
    let license = c"GPL";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, BPF_PROG_TYPE_TRACING);
        put32(&mut attr, 4, insns.len() as u32);
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        if let Some(log) = log {
            put32(&mut attr, 24, 1);
            put32(&mut attr, 28, log.len() as u32);
            attr[4] = log.as_mut_ptr() as u64;
        }
        // prog_name at 48 (16 bytes): "oomguard_tasks".
        attr[6] = u64::from_le_bytes(*b"oomguard");
        attr[7] = u64::from_le_bytes(*b"_tasks\0\0");
        put32(&mut attr, 68, BPF_TRACE_ITER);
        put32(&mut attr, 108, attach_btf_id);
        sys_bpf(BPF_PROG_LOAD, &mut attr)
    };
    attempt(None).or_else(|errno| {
        if errno == Errno::PERM || errno == Errno::ACCESS {
            return Err(TaskIterError::NotPermitted(errno));
        }
        // Again with the verifier's log, to say why.
        let mut log = vec![0u8; 64 * 1024];
        match attempt(Some(&mut log)) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let end = memchr::memchr(0, &log).unwrap_or(log.len());
                Err(TaskIterError::Load {
                    errno,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                })
            }
        }
    })
}

fn link_create(prog: &OwnedFd) -> Result<OwnedFd, Errno> {
    let mut attr = [0u64; 8];
    put32(&mut attr, 0, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, BPF_TRACE_ITER);
    sys_bpf(BPF_LINK_CREATE, &mut attr)
}

fn iter_create(link: &OwnedFd) -> Result<OwnedFd, Errno> {
    let mut attr = [0u64; 1];
    put32(&mut attr, 0, link.as_raw_fd() as u32);
    sys_bpf(BPF_ITER_CREATE, &mut attr)
}

// --- a BPF assembler, just what the program needs ---

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    /// Jumps to patch: instruction index, label.
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        });
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.push(0xbf, dst, src, 0, 0);
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.push(0xb7, dst, 0, 0, imm);
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.push(0x07, dst, 0, 0, imm);
    }
    fn add_reg(&mut self, dst: u8, src: u8) {
        self.push(0x0f, dst, src, 0, 0);
    }
    fn mul_imm(&mut self, dst: u8, imm: i32) {
        self.push(0x27, dst, 0, 0, imm);
    }
    /// dst = *(size *)(src + off)
    fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.push(0x61 | size, dst, src, off, 0);
    }
    /// *(size *)(dst + off) = src
    fn stx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.push(0x63 | size, dst, src, off, 0);
    }
    /// *(size *)(dst + off) = imm
    fn st_imm(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.push(0x62 | size, dst, 0, off, imm);
    }
    fn jeq_imm(&mut self, dst: u8, imm: i32, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.push(0x15, dst, 0, 0, imm);
    }
    /// Unsigned `dst < imm`.
    fn jlt_imm(&mut self, dst: u8, imm: i32, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.push(0xa5, dst, 0, 0, imm);
    }
    /// dst = imm (64 bits; two instruction slots).
    fn ld_imm64(&mut self, dst: u8, imm: u64) {
        self.push(0x18, dst, 0, 0, imm as u32 as i32);
        self.push(0x00, 0, 0, 0, (imm >> 32) as u32 as i32);
    }
    /// Unsigned `dst < src`.
    fn jlt_reg(&mut self, dst: u8, src: u8, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.push(0xad, dst, src, 0, 0);
    }
    fn jne_reg(&mut self, dst: u8, src: u8, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.push(0x5d, dst, src, 0, 0);
    }
    fn call(&mut self, helper: i32) {
        self.push(0x85, 0, 0, 0, helper);
    }
    /// `size` bytes at register `base` + `field`, kernel memory read as a plain number, into
    /// the stack at fp + `at` with bpf_probe_read_kernel (a read that fails leaves zeros): no
    /// verifier walks the types. Uses r1–r3 (`base` may be r3); the call clobbers r0–r5.
    fn probe_read(&mut self, at: i32, size: i32, base: u8, field: i32) {
        self.mov_reg(1, 10);
        self.add_imm(1, at);
        self.mov_imm(2, size);
        if base != 3 {
            self.mov_reg(3, base);
        }
        self.add_imm(3, field);
        self.call(HELPER_PROBE_READ_KERNEL);
    }
    fn exit(&mut self) {
        self.push(0x95, 0, 0, 0, 0);
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.insns.len()));
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, to) in std::mem::take(&mut self.fixups) {
            let target = self
                .labels
                .iter()
                .find(|(n, _)| *n == to)
                .map(|&(_, i)| i)
                .expect("a jump to a label the program defines");
            self.insns[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_parses_to_the_kernels_figures() {
        let mut r = [0u8; RECORD];
        r[0..4].copy_from_slice(&4242u32.to_le_bytes());
        r[4..8].copy_from_slice(&0x0020_0004u32.to_le_bytes());
        r[8..16].copy_from_slice(&100i64.to_le_bytes()); // file
        r[16..24].copy_from_slice(&200i64.to_le_bytes()); // anon
        r[24..32].copy_from_slice(&7i64.to_le_bytes()); // swap
        r[32..40].copy_from_slice(&(-3i64).to_le_bytes()); // shmem, dipped below zero
        r[40..48].copy_from_slice(&(3 * 4096i64).to_le_bytes());
        r[48..50].copy_from_slice(&(-900i16).to_le_bytes());
        r[50] = 1;
        let row = parse_record(&r, 4096).unwrap();
        assert!(parse_record(&r[..RECORD - 1], 4096).is_none());
        assert_eq!(
            row,
            TaskRow {
                pid: 4242,
                flags: 0x0020_0004,
                rss_pages: 300,
                swap_pages: 7,
                pgtables_pages: 3,
                adj: -900,
                has_mm: true,
            }
        );
        assert!(row.is_kthread());
    }

    /// The program on this machine's kernel against `/proc`: a child with a known size and
    /// `oom_score_adj`, this process, and a kernel thread. Needs root with `CAP_BPF` and
    /// `CAP_PERFMON` and a kernel with BTF; without them the test fails, naming what failed.
    #[test]
    fn the_kernels_task_iterator_agrees_with_proc() {
        agrees_with_proc(Current::Btf);
        // The program of 5.8 to 5.10, which finds the reader without a typed pointer.
        agrees_with_proc(Current::Plain);
    }

    /// A read asks for whole records only: 32 KiB holds 585 and 8 bytes over (a 64 KiB-page
    /// kernel fills its 512 KiB buffer past 32 KiB and would hand out 32768 bytes).
    #[test]
    fn reads_ask_for_whole_records() {
        let len = |n: usize| whole_records(&mut vec![MaybeUninit::uninit(); n]).map(|b| b.len());
        assert_eq!(len(32 * 1024), Some(585 * RECORD));
        assert_eq!(len(RECORD), Some(RECORD));
        assert_eq!(len(RECORD - 1), None);
    }

    /// The same on this machine's kernel: a buffer of 1000 bytes (17 records and 48 bytes) is
    /// what 32 KiB is to a 64 KiB-page kernel, whose buffer holds more than was asked: the
    /// kernel fills its buffer to at least the length read and hands out that much, so a read
    /// of 1000 bytes would end in the middle of the 18th record. Needs what
    /// `the_kernels_task_iterator_agrees_with_proc` needs.
    #[test]
    fn a_buffer_of_no_whole_number_of_records_reads_whole_records() {
        let it = Layout::read(Path::new("/sys/kernel/btf/vmlinux"))
            .and_then(|layout| TaskIter::attach(&layout, None, Current::Btf))
            .unwrap_or_else(|e| {
                panic!("cannot check the task iterator: {e} (run the tests as root on a kernel with BTF)")
            });
        let mut rows = Vec::new();
        it.read(&mut vec![MaybeUninit::uninit(); 1000], &mut rows)
            .expect("a pass with a 1000-byte buffer");
        assert!(rows.len() > 17, "one read's worth only: {}", rows.len());
        assert!(rows.windows(2).all(|w| w[0].pid < w[1].pid), "in PID order");
        let me = std::process::id() as i32;
        assert!(rows.iter().any(|r| r.pid == me), "this process is listed");
        let mut small = Vec::new();
        assert!(matches!(
            it.read(&mut [MaybeUninit::uninit(); RECORD - 1], &mut small),
            Err(TaskIterError::SmallBuffer(55))
        ));
    }

    fn agrees_with_proc(current: Current) {
        use std::process::{Command, Stdio};
        let it = Layout::read(Path::new("/sys/kernel/btf/vmlinux"))
            .and_then(|layout| TaskIter::attach(&layout, None, current))
            .unwrap_or_else(|e| {
            panic!(
                "cannot check the task iterator ({current:?}): {e} (run the tests as root on a kernel with BTF)"
            )
        });
        // A child that holds 8 MiB it wrote, then waits.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "x=$(head -c 8388608 /dev/zero | tr '\\0' a); echo ready; read _",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), "333").unwrap();
        let mut buf = vec![MaybeUninit::uninit(); 32 * 1024];
        let mut rows = Vec::new();
        it.read(&mut buf, &mut rows).unwrap();
        // `stat`'s rss (field 24) is the kernel's `get_mm_rss`, the figure `oom_badness`
        // reads; `statm` and `status` sum the per-CPU parts of the counters on newer kernels
        // and may be a few batches apart from it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let listed = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .count();
        drop(child.stdin.take());
        let _ = child.wait();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let resident: u64 = after_comm
            .split_whitespace()
            .nth(21)
            .unwrap()
            .parse()
            .unwrap();
        assert!(rows.windows(2).all(|w| w[0].pid < w[1].pid), "in PID order");
        let row = rows
            .iter()
            .find(|r| r.pid == pid)
            .unwrap_or_else(|| panic!("the child is listed ({current:?})"));
        assert_eq!(row.adj, 333);
        assert!(row.has_mm && !row.is_kthread());
        assert!(
            resident > 2048,
            "the child holds its 8 MiB: {resident} pages"
        );
        assert_eq!(
            u64::from(row.rss_pages),
            resident,
            "stat read after the pass"
        );
        assert!(u64::from(row.pgtables_pages) <= resident / 64);
        let me = rows
            .iter()
            .find(|r| r.pid == std::process::id() as i32)
            .expect("this process is listed");
        assert!(me.has_mm && me.rss_pages > 0);
        // About as many as /proc lists (processes come and go meanwhile), so not one per
        // thread.
        assert!(
            rows.len() * 2 > listed && listed * 2 > rows.len(),
            "{} rows, {listed} in /proc",
            rows.len()
        );
        assert!(!rows.iter().any(|r| r.pid == 0));
        if let Some(k) = rows.iter().find(|r| r.pid == 2) {
            assert!(k.is_kthread() && !k.has_mm, "kthreadd: {k:?}");
        }
    }

    /// The same in a new PID namespace (the daemon in a container, the bench's sandbox): the
    /// iterator lists the namespace's processes by the PIDs it gives them.
    #[test]
    fn the_task_iterator_numbers_processes_as_their_namespace_does() {
        if std::env::var_os("OOMGUARD_TEST_IN_PIDNS").is_some() {
            return; // the inner run of this test itself
        }
        let me = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(&me)
            .args([
                "--exact",
                "sense::tasks::tests::the_kernels_task_iterator_agrees_with_proc",
            ])
            .env("OOMGUARD_TEST_IN_PIDNS", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run unshare(1) (util-linux): {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "in a new PID namespace: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A program with a cgroup filter lists the group's processes and its descendants', and
    /// no others; a filter with the group's id at another level, or another id, lists none.
    /// Needs root, a memory cgroup controller and the iterator's privileges; fails without.
    #[test]
    fn the_cgroup_filter_lists_the_groups_processes_and_no_others() {
        use crate::sense::Root;
        use crate::sense::cgroup::{Cgroup, Mounts};
        let root = Root::default();
        with_sleepers_in_a_group("oomguard-filter", |group, sub, ids| {
            let cg = Cgroup::resolve(&root, &Mounts::discover(&root), &group.dir).unwrap();
            let k = cg.kernel_id(&root).unwrap();
            let pass = |filter: CgroupFilter| {
                let it = TaskIter::load(Path::new("/sys/kernel/btf/vmlinux"), Some(filter))
                    .unwrap_or_else(|e| panic!("cannot load the filtered task iterator: {e}"));
                let mut buf = vec![MaybeUninit::uninit(); 32 * 1024];
                let mut rows = Vec::new();
                it.read(&mut buf, &mut rows).unwrap();
                rows.iter().map(|r| r.pid).collect::<Vec<_>>()
            };
            let f = k;
            let mut want = vec![ids[0], ids[1]];
            want.sort();
            assert_eq!(
                pass(f),
                want,
                "the group's two, not {} or this process",
                ids[2]
            );
            assert!(
                pass(CgroupFilter {
                    level: f.level + 1,
                    ..f
                })
                .is_empty()
            );
            assert!(pass(CgroupFilter { id: f.id + 1, ..f }).is_empty());
            // The sub-group alone: only the process in it. (On cgroup2 the sub-group has no
            // memory controller of its own here, the group having a process: no filter.)
            let cs = Cgroup::resolve(&root, &Mounts::discover(&root), sub).unwrap();
            match cs.kernel_id(&root) {
                Ok(ks) => {
                    assert_eq!(ks.level, k.level + 1);
                    assert_eq!(pass(ks), vec![ids[1]]);
                }
                Err(e) => assert!(
                    group.version == crate::sense::cgroup::CgVersion::V2,
                    "no id for a v1 group: {e}"
                ),
            }
            // A path through `..` is the same group, at the same level.
            let dotted = group.dir.join("sub/..");
            let cd = Cgroup::resolve(&root, &Mounts::discover(&root), &dotted).unwrap();
            assert_eq!(cd.kernel_id(&root).unwrap(), k);
        });
    }

    /// A scratch memory cgroup `NAME-PID` (64 MiB) with a sub-group `sub`, a sleeper in each
    /// and one outside them: `f` gets the group, the sub-group and the sleepers' PIDs (in, below,
    /// outside). The sleepers are ended and the groups removed after, also when `f` panics.
    fn with_sleepers_in_a_group(
        name: &str,
        f: impl FnOnce(&crate::act::scratch::ScratchCgroup, &Path, [i32; 3]),
    ) {
        use crate::act::scratch::{ScratchCgroup, spawn_in};
        use std::process::{Command, Stdio};
        let root = crate::sense::Root::default();
        let group =
            ScratchCgroup::create(&root, &format!("{name}-{}", std::process::id()), 64 << 20)
                .unwrap_or_else(|e| panic!("cannot make a memory cgroup for the filter: {e}"));
        let sub = group.dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let sleep = || {
            let mut c = Command::new("sleep");
            c.arg("300").stdin(Stdio::null());
            c
        };
        let mut children = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let inside = group.spawn(&mut sleep()).unwrap();
            let below = spawn_in(&sub, &mut sleep()).unwrap();
            let outside = sleep().spawn().unwrap();
            let ids = [inside.id(), below.id(), outside.id()].map(|p| p as i32);
            children.extend([inside, below, outside]);
            f(&group, &sub, ids);
        }));
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir(&sub);
        group.remove();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    /// In a cgroup namespace of its own (a container's), with the hierarchy mounted from the
    /// namespace's root, a group's path gives its depth below that root only: the program takes
    /// the root's level from the reader's memory cgroup, and lists the group's processes as in
    /// the initial namespace. Run in a scratch group made the namespace's root (made below
    /// this process's own group: one level down at least, three on these machines), by this
    /// test binary re-run under unshare(1).
    #[test]
    fn the_cgroup_filter_lists_the_groups_processes_in_a_cgroup_namespace() {
        use crate::sense::Root;
        use crate::sense::cgroup::{CgVersion, Cgroup, Mounts};
        use std::process::{Command, Stdio};
        let root = Root::default();
        if let Ok(want) = std::env::var("OOMGUARD_TEST_IN_CGNS") {
            // The inner run: this process is in the namespace's root group, listed with the
            // group's sleeper and the sub-group's.
            let mut want: Vec<Vec<i32>> = want
                .split(';')
                .map(|l| l.split(' ').map(|p| p.parse().unwrap()).collect())
                .collect();
            want[0].push(std::process::id() as i32);
            want[0].sort();
            let mounts = Mounts::discover(&root);
            let mount = mounts.v2_memory.or(mounts.v1_memory).unwrap();
            for (dir, want) in [(mount.clone(), &want[0]), (mount.join("sub"), &want[1])] {
                let cg = Cgroup::resolve(&root, &Mounts::discover(&root), &dir).unwrap();
                let f = cg
                    .kernel_id(&root)
                    .unwrap_or_else(|e| panic!("no filter for {}: {e}", dir.display()));
                assert_eq!(f.reader_depth, Some(0), "{f:?}");
                let it = TaskIter::load(Path::new(KERNEL_BTF), Some(f))
                    .unwrap_or_else(|e| panic!("cannot load the filtered task iterator: {e}"));
                let mut buf = vec![MaybeUninit::uninit(); 32 * 1024];
                let mut rows = Vec::new();
                it.read(&mut buf, &mut rows).unwrap();
                let got: Vec<i32> = rows.iter().map(|r| r.pid).collect();
                assert_eq!(&got, want, "{} ({f:?})", dir.display());
            }
            return;
        }
        with_sleepers_in_a_group(
            "oomguard-filter-ns",
            |group, _, [inside_pid, below_pid, _]| {
                let cg = Cgroup::resolve(&root, &Mounts::discover(&root), &group.dir).unwrap();
                let outer = cg.kernel_id(&root).unwrap();
                assert!(
                    outer.level >= 1 && outer.reader_depth.is_none(),
                    "{outer:?}"
                );
                let fstype = match group.version {
                    CgVersion::V1 => "-t cgroup -o memory",
                    CgVersion::V2 => "-t cgroup2",
                };
                // The inner run moves itself into the group, then takes a new cgroup namespace
                // there (its root) and mounts the hierarchy from that root in place of the old
                // mount (the kernel refuses the same hierarchy over its own root).
                let me = std::env::current_exe().unwrap();
                let script = format!(
                    "echo $$ > '{}/cgroup.procs' && exec unshare --cgroup --mount --propagation private sh -c \"umount -l '{m}' && mount {fstype} none '{m}' && exec '{}' --exact sense::tasks::tests::the_cgroup_filter_lists_the_groups_processes_in_a_cgroup_namespace\"",
                    group.dir.display(),
                    me.display(),
                    m = cg.mount.display(),
                );
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &script]).stdin(Stdio::null());
                let out = cmd
                    .env(
                        "OOMGUARD_TEST_IN_CGNS",
                        format!("{inside_pid} {below_pid};{below_pid}"),
                    )
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run sh and unshare(1): {e}"));
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && text.contains("1 passed"),
                    "in a cgroup namespace: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            },
        );
    }

    fn a_layout() -> Layout {
        Layout {
            attach_btf_id: 1,
            task_pid: 10,
            task_tgid: 14,
            task_flags: 20,
            task_mm: 30,
            task_signal: 40,
            task_thread_pid: 50,
            pid_level: 4,
            pid_nr: 96,
            upid_size: 16,
            signal_adj: 60,
            mm_file: 100,
            mm_anon: 140,
            mm_swap: 180,
            mm_shmem: 220,
            mm_pgtables: None,
            probe_counters: false,
            cgroup: None,
        }
    }

    /// Offsets as 6.18 has them (any will do: the program is only assembled).
    fn cgroup_offsets() -> CgroupOffsets {
        CgroupOffsets {
            task_cgroups: 2376,
            css_set_memory: 32,
            css_cgroup: 0,
            cgroup_level: 216,
            ancestors: Ancestors::Pointers(2224),
            cgroup_kn: 256,
            kn_id: 96,
        }
    }

    /// A kernel built without type information, or one before 5.8 (its type information
    /// has no `bpf_iter_task`), has no iterator: said as such (an expected state, not
    /// warned of), while a broken type information file is a fault.
    #[test]
    fn a_kernel_without_the_iterator_is_told_from_a_broken_one() {
        let missing = Layout::read(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(matches!(missing, TaskIterError::Absent(_)), "{missing}");
        assert!(missing.is_expected());
        assert!(
            missing.to_string().contains("CONFIG_DEBUG_INFO_BTF"),
            "{missing}"
        );

        // This kernel's type information with the iterator's function renamed, as before 5.8.
        let path = "/sys/kernel/btf/vmlinux";
        let mut raw = std::fs::read(path).unwrap_or_else(|e| {
            panic!("cannot check without the kernel's type information {path}: {e}")
        });
        Layout::from_btf(&Btf::parse(&raw).unwrap()).expect("this kernel's layout");
        let at = memchr::memmem::find(&raw, b"\0bpf_iter_task\0").expect("bpf_iter_task");
        raw[at + 13] = b'X';
        let old = Layout::from_btf(&Btf::parse(&raw).unwrap()).unwrap_err();
        assert!(matches!(old, TaskIterError::Absent(_)), "{old}");
        assert!(old.is_expected());
        assert!(old.to_string().contains("Linux 5.8"), "{old}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("vmlinux");
        std::fs::write(&junk, b"not BTF").unwrap();
        let broken = Layout::read(&junk).unwrap_err();
        assert!(matches!(broken, TaskIterError::Btf(_)), "{broken}");
        assert!(!broken.is_expected());
    }

    #[test]
    fn a_layout_crosses_to_the_helpers_caller_intact() {
        let l = a_layout();
        assert_eq!(Layout::from_line(&l.to_line()), Some(l));
        let with = Layout {
            mm_pgtables: Some(1234),
            probe_counters: true,
            ..l
        };
        assert_eq!(Layout::from_line(&with.to_line()), Some(with));
        let cg = Layout {
            cgroup: Some(cgroup_offsets()),
            ..l
        };
        assert_eq!(Layout::from_line(&cg.to_line()), Some(cg));
        let ids = Layout {
            cgroup: Some(CgroupOffsets {
                ancestors: Ancestors::Ids(2224),
                ..cgroup_offsets()
            }),
            ..l
        };
        assert_eq!(Layout::from_line(&ids.to_line()), Some(ids));
        assert_ne!(ids.to_line(), cg.to_line());
        // Seven cgroup numbers, one out of range, or a kind of ancestors list that is neither
        // pointers (0) nor ids (1): not a layout.
        let line = cg.to_line();
        assert_eq!(Layout::from_line(line.rsplit_once(' ').unwrap().0), None);
        assert_eq!(Layout::from_line(&line.replace(" 2224 ", " 40000 ")), None);
        assert_eq!(
            Layout::from_line(&line.replace(" 2224 0 ", " 2224 2 ")),
            None
        );
        assert_eq!(Layout::from_line("1 2 3"), None);
        assert_eq!(Layout::from_line(&format!("{} 99999", l.to_line())), None);
        assert_eq!(
            Layout::from_line(&l.to_line().replace(" 60 ", " 70000 ")),
            None
        );
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let c = cgroup_offsets();
        // 6.0 and later (ancestors' pointers), and 5.5 to 5.19 (their ids).
        let with_ptrs = Layout {
            cgroup: Some(c),
            ..a_layout()
        };
        let with_ids = Layout {
            cgroup: Some(CgroupOffsets {
                ancestors: Ancestors::Ids(2224),
                ..c
            }),
            ..a_layout()
        };
        let group = CgroupFilter {
            id: 0x1_0000_0007,
            level: 3,
            reader_depth: None,
        };
        let filter = Some(group);
        let in_ns = Some(CgroupFilter {
            reader_depth: Some(2),
            ..group
        });
        let counters = Layout {
            probe_counters: true,
            mm_pgtables: Some(300),
            ..a_layout()
        };
        for (l, f) in [
            (a_layout(), None),
            (counters, None),
            (with_ptrs, None),
            (with_ptrs, filter),
            (with_ids, filter),
            (with_ptrs, in_ns),
            (with_ids, in_ns),
        ] {
            jumps_land(&l.program(f));
            jumps_land(&l.program_with(f, Current::Plain));
        }
        // The address each probe read of the group's filter takes (up to the filter's id, a
        // 64-bit immediate): r3 = base + offset before the call.
        let reads = |p: &[Insn]| -> Vec<i32> {
            let end = p
                .iter()
                .position(|i| i.code == 0x18)
                .expect("the filter's id");
            p[..end]
                .windows(2)
                .filter(|w| w[0].code == 0x07 && w[0].regs & 0x0f == 3 && w[1].code == 0x85)
                .map(|w| w[0].imm)
                .collect()
        };
        let ancestor = 2224 + 3 * 8;
        // Pointers: the ancestor's pointer, its kernfs node, the node's id.
        let ptrs = with_ptrs.program(filter);
        let r = reads(&ptrs);
        let i = r
            .iter()
            .position(|&o| o == ancestor)
            .expect("reads ancestors[3]");
        assert_eq!(
            r[i + 1..i + 3],
            [i32::from(c.cgroup_kn), i32::from(c.kn_id)]
        );
        // Ids: the id at ancestor_ids[3], compared as it is.
        let ids = with_ids.program(filter);
        let r = reads(&ids);
        let i = r
            .iter()
            .position(|&o| o == ancestor)
            .expect("reads ancestor_ids[3]");
        assert!(!r[i + 1..].contains(&i32::from(c.kn_id)), "{r:?}");
        // Two pointer reads fewer (each a probe read of six instructions, a load and a test).
        assert_eq!(ids.len() + 2 * 8, ptrs.len());
        // The filter's id is one 64-bit immediate, in two slots.
        let at = ptrs
            .iter()
            .position(|i| i.code == 0x18)
            .expect("a 64-bit load");
        assert_eq!((ptrs[at].imm, ptrs[at + 1].imm), (7, 1));
        assert_eq!(
            with_ptrs.program(None),
            a_layout().program(None),
            "no filter, the same program"
        );
    }

    #[test]
    fn a_kernel_without_the_typed_current_task_is_told_from_other_refusals() {
        // Debian 11's 5.10, as the verifier words it.
        let log = "0: (bf) r6 = r1\n6: (85) call unknown#158\ninvalid func unknown#158\nprocessed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert!(refused_helper(log, HELPER_GET_CURRENT_TASK_BTF));
        assert!(refused_helper(
            "unknown func bpf_get_current_task_btf#158\n",
            HELPER_GET_CURRENT_TASK_BTF
        ));
        assert!(!refused_helper(log, HELPER_GET_CURRENT_TASK));
        assert!(!refused_helper(
            "R1 invalid mem access 'scalar'\nprocessed 12 insns\n",
            HELPER_GET_CURRENT_TASK_BTF
        ));
        assert!(!refused_helper("invalid func unknown#1580\n", 158));
    }

    fn jumps_land(p: &[Insn]) {
        let last = p.len() - 1;
        assert_eq!(p[last].code, 0x95, "ends with exit");
        // Every jump lands inside the program, and the two to "out" on `r0 = 0`.
        for (i, insn) in p.iter().enumerate() {
            if matches!(insn.code, 0x15 | 0x5d | 0xa5) {
                let to = i as i64 + 1 + insn.off as i64;
                assert!((0..=last as i64).contains(&to));
            }
        }
        assert_eq!(p[last - 1].code, 0xb7);
    }
}
