//! `oomguard hog` (hidden): a memory hog for drills and tests. Allocates anonymous memory and
//! touches every page, at a given rate or as fast as it can, from one or more threads, up to a
//! bound. Never run it outside a memory-limited cgroup without `--max`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::values::{Dur, Size};

#[derive(Debug, clap::Args)]
pub struct HogArgs {
    /// Stop growing at this size (all threads together) and hold it.
    #[arg(long, value_parser = |s: &str| s.parse::<Size>())]
    pub max: Size,
    /// Bytes per second (all threads together); omitted: as fast as it can.
    #[arg(long, value_parser = |s: &str| s.parse::<Size>())]
    pub rate: Option<Size>,
    /// Allocating threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Ignore SIGTERM (a victim that only SIGKILL ends).
    #[arg(long)]
    pub ignore_term: bool,
    /// Wait this long before allocating.
    #[arg(long, value_parser = |s: &str| s.parse::<Dur>())]
    pub delay: Option<Dur>,
    /// Set the process name (comm, up to 15 bytes) so rules and tests can tell hogs apart.
    #[arg(long)]
    pub name: Option<String>,
    /// Exit after holding the memory this long (default: hold until killed).
    #[arg(long, value_parser = |s: &str| s.parse::<Dur>())]
    pub hold: Option<Dur>,
}

const CHUNK: usize = 1 << 20;

pub fn run(a: HogArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &a.name {
        let c = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| anyhow::anyhow!("--name must not contain NUL"))?;
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a valid pointer.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
    if a.ignore_term {
        // SAFETY: installing SIG_IGN for SIGTERM has no handler code to race with.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    println!("hog {} ready", std::process::id());
    if let Some(d) = a.delay {
        std::thread::sleep(d.0);
    }
    let threads = a.threads.max(1);
    let per_thread = a.max.0 as usize / threads;
    let rate = a.rate.map(|r| r.0 as f64 / threads as f64);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut held: Vec<Vec<u8>> = Vec::new();
                let mut total = 0usize;
                while total < per_thread {
                    let n = CHUNK.min(per_thread - total);
                    let mut v: Vec<u8> = Vec::with_capacity(n);
                    // Write every byte so every page is really resident.
                    // SAFETY: capacity is n; all n bytes are written before set_len.
                    unsafe {
                        std::ptr::write_bytes(v.as_mut_ptr(), 1, n);
                        v.set_len(n);
                    }
                    held.push(v);
                    total += n;
                    if let Some(r) = rate {
                        let due = Duration::from_secs_f64(total as f64 / r);
                        let el = start.elapsed();
                        if due > el {
                            std::thread::sleep(due - el);
                        }
                    }
                }
                held
            })
        })
        .collect();
    let held: Vec<_> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    println!(
        "hog {} holding {} MiB",
        std::process::id(),
        held.iter().flatten().map(Vec::len).sum::<usize>() >> 20
    );
    match a.hold {
        Some(d) => std::thread::sleep(d.0),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    drop(held);
    Ok(ExitCode::SUCCESS)
}
