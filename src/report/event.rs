//! One kernel OOM invocation as read from a log: the `--json` shape of `oomguard explain`
//! (issue 10; names fixed there). `None` always means "the log does not say", never zero.

use compact_str::CompactString;
use serde::Serialize;

/// What ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The whole machine (`CONSTRAINT_NONE`, `Out of memory:`).
    Global,
    /// A memory cgroup's limit.
    Memcg,
    /// The allocating task's cpuset.
    Cpuset,
    /// The allocating task's NUMA memory policy.
    Mempolicy,
    /// `panic_on_oom`: the kernel panicked instead of killing.
    Panic,
    /// `Out of memory and no killable processes`.
    NoKillable,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Global => "global",
            Kind::Memcg => "memcg",
            Kind::Cpuset => "cpuset",
            Kind::Mempolicy => "mempolicy",
            Kind::Panic => "panic",
            Kind::NoKillable => "no_killable",
        }
    }
}

/// When the invocation happened (its first line's prefix).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Time {
    pub raw: Option<String>,
    pub monotonic_s: Option<f64>,
    pub wallclock: Option<String>,
}

/// The task whose allocation invoked the OOM killer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Invoker {
    pub comm: String,
    pub pid: Option<i64>,
    pub oom_score_adj: Option<i64>,
}

/// A process the kernel killed (`Killed process …`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Kill {
    pub pid: i64,
    /// `None` only when the line is cut before the name.
    pub comm: Option<String>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub uid: Option<i64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i64>,
    /// The score printed on `Kill process N (x) score S or sacrifice child` (pre-5.1).
    pub score: Option<i64>,
    /// The text before `Killed process` (`Out of memory`, `Memory cgroup out of memory`, …).
    pub message: Option<String>,
}

/// The task the kernel selected (`Kill process … score …`, or `task=`/`pid=` of the
/// `oom-kill:` line); differs from the victim when a child was sacrificed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Chosen {
    pub pid: i64,
    pub comm: Option<String>,
    pub score: Option<i64>,
}

/// One row of the task dump. Memory values in pages except `pgtables_bytes`, which JSON
/// gives in kB as `pgtables_kb` (the contract's units: `_kb` or `_pages`; the kernel's page
/// tables are whole pages, so no byte is lost), and `swapents` as `swapents_pages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Task {
    pub pid: i64,
    pub uid: Option<i64>,
    pub tgid: Option<i64>,
    pub total_vm_pages: Option<u64>,
    pub rss_pages: Option<u64>,
    pub rss_anon_pages: Option<u64>,
    pub rss_file_pages: Option<u64>,
    pub rss_shmem_pages: Option<u64>,
    /// Page-table bytes (4.15+ `pgtables_bytes`; older layouts: `nr_ptes`(+`nr_pmds`) × 4096).
    #[serde(rename = "pgtables_kb", serialize_with = "bytes_as_kb")]
    pub pgtables_bytes: Option<u64>,
    #[serde(rename = "swapents_pages")]
    pub swapents: Option<u64>,
    pub oom_score_adj: Option<i64>,
    /// Legacy `oom_adj` column (2.6.x–3.5).
    pub oom_adj: Option<i64>,
    /// The task's `comm` (kernel: at most 15 bytes), kept inline up to 24 bytes.
    pub name: CompactString,
}

fn bytes_as_kb<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_u64(b / 1024),
        None => s.serialize_none(),
    }
}

/// `oom_reaper: reaped process …` for the victim.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reaped {
    pub pid: i64,
    pub comm: String,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
}

/// Memory state printed with the report (only what was printed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    /// Free pages (`free:` of Mem-Info).
    pub free_pages: Option<u64>,
    pub active_anon_pages: Option<u64>,
    pub inactive_anon_pages: Option<u64>,
    pub active_file_pages: Option<u64>,
    pub inactive_file_pages: Option<u64>,
    pub shmem_pages: Option<u64>,
    pub slab_unreclaimable_pages: Option<u64>,
    pub pagecache_pages: Option<u64>,
    pub ram_pages: Option<u64>,
    pub swap_free_kb: Option<u64>,
    pub swap_total_kb: Option<u64>,
    /// memcg `memory: usage …, limit …, failcnt …`.
    pub memcg_usage_kb: Option<u64>,
    pub memcg_limit_kb: Option<u64>,
    pub memcg_failcnt: Option<u64>,
    /// v1 `memory+swap:` line.
    pub memsw_usage_kb: Option<u64>,
    pub memsw_limit_kb: Option<u64>,
    pub memsw_failcnt: Option<u64>,
    /// v2 `swap:` line.
    pub memcg_swap_usage_kb: Option<u64>,
    pub memcg_swap_limit_kb: Option<u64>,
    pub kmem_usage_kb: Option<u64>,
}

/// One OOM invocation (or a panic / no-killable report), in log order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OomEvent {
    pub kind: Option<Kind>,
    pub time: Time,
    /// The machine that logged the report, when its lines name one (syslog, the journal).
    pub host: Option<String>,
    pub invoker: Option<Invoker>,
    pub gfp_mask: Option<String>,
    pub gfp_flags: Option<String>,
    pub order: Option<i64>,
    pub constraint: Option<String>,
    pub memcg: Option<String>,
    pub task_memcg: Option<String>,
    pub victim: Option<Kill>,
    pub also_killed: Vec<Kill>,
    pub tasks: Option<Vec<Task>>,
    pub reaped: Option<Reaped>,
    pub panic_message: Option<String>,
    // Fields beyond the fixed set.
    pub chosen: Option<Chosen>,
    pub nodemask: Option<String>,
    pub cpuset: Option<String>,
    pub mems_allowed: Option<String>,
    /// `memory.oom.group` cgroup whose tasks were all killed.
    pub oom_group: Option<String>,
    pub memory: Memory,
    /// Notes the kernel printed that change how to read the event (a victim already exiting,
    /// a pending SIGKILL, an mm pinned by init, a reap failure).
    pub kernel_notes: Vec<String>,
    /// True when the report has an `invoked oom-killer` header (else it was rate-limited or
    /// cut off).
    pub has_header: bool,
}
