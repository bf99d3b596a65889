//! `oomguard-hog`: the tests' memory hog (built only with the `test-support` feature, which only
//! `cargo test` turns on; never shipped). Allocates anonymous memory and touches every page
//! ([`oomguard::act::hog::fill`]), at a given rate or as fast as it can, from one or more
//! threads, up to a bound, then holds it. Never run it outside a memory-limited cgroup without
//! a small `--max`.
//!
//! Prints `hog PID ready` before it allocates and `hog PID holding N MiB` once it holds it all.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use oomguard::values::{Dur, Size};

#[derive(Debug, Parser)]
#[command(name = "oomguard-hog")]
struct HogArgs {
    /// Stop growing at this size (all threads together) and hold it.
    #[arg(long, value_parser = |s: &str| s.parse::<Size>())]
    max: Size,
    /// Bytes per second (all threads together); omitted: as fast as it can.
    #[arg(long, value_parser = |s: &str| s.parse::<Size>())]
    rate: Option<Size>,
    /// Allocating threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Ignore SIGTERM (a victim that only SIGKILL ends).
    #[arg(long)]
    ignore_term: bool,
    /// Block SIGTERM: it stays pending (`ShdPnd` in /proc/PID/status) and only SIGKILL ends
    /// the hog.
    #[arg(long)]
    block_term: bool,
    /// Wait this long before allocating.
    #[arg(long, value_parser = |s: &str| s.parse::<Dur>())]
    delay: Option<Dur>,
    /// Start this many idle child processes first (a process tree for `--kill-unit tree`).
    #[arg(long, default_value_t = 0)]
    children: usize,
    /// Set the process name (comm, up to 15 bytes) so rules and tests can tell hogs apart.
    #[arg(long)]
    name: Option<String>,
    /// The main thread exits once the allocating threads have started (`exit(2)` of that
    /// thread alone, as `pthread_exit` from `main`): the process lives on in its threads, and
    /// `/proc/PID/stat`, `statm` and `status`, read from the main thread, show a zombie without
    /// memory. The threads hold until killed.
    #[arg(long)]
    leader_exits: bool,
    /// Shared anonymous memory (shmem pages): freed at exit, but not by `process_mrelease` or
    /// the kernel's OOM reaper, so a killed hog that cannot exit keeps it.
    #[arg(long)]
    shared: bool,
    /// Once holding, start a child with vfork semantics (`clone(CLONE_VM | CLONE_VFORK)`, as
    /// `vfork(2)` and `posix_spawn(3)` do) that never execs: the child shares the hog's memory
    /// and the hog waits, suspended, until the child ends. Prints `hog PID vfork` first.
    #[arg(long)]
    vfork_child: bool,
    /// Give up CAP_SYS_ADMIN (effective and permitted sets) first: a root process that kernels
    /// before 4.17 score without their 3 % root bonus.
    #[arg(long)]
    no_sys_admin: bool,
    /// Exit after holding the memory this long (default: hold until killed).
    #[arg(long, value_parser = |s: &str| s.parse::<Dur>())]
    hold: Option<Dur>,
}

fn main() -> ExitCode {
    let a = HogArgs::parse();
    if let Some(name) = &a.name {
        let Ok(c) = std::ffi::CString::new(name.as_bytes()) else {
            eprintln!("oomguard-hog: --name must not contain NUL");
            return ExitCode::from(2);
        };
        let _ = rustix::thread::set_name(&c);
    }
    if a.no_sys_admin {
        use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
        let dropped = capabilities(None).and_then(|mut c| {
            c.effective.remove(CapabilitySet::SYS_ADMIN);
            c.permitted.remove(CapabilitySet::SYS_ADMIN);
            set_capabilities(None, c)
        });
        if let Err(e) = dropped {
            eprintln!("oomguard-hog: cannot give up CAP_SYS_ADMIN: {e}");
            return ExitCode::FAILURE;
        }
    }
    if a.ignore_term {
        // SAFETY: installing SIG_IGN for SIGTERM has no handler code to race with.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    if a.block_term {
        // SAFETY: a sigset on our stack, filled by sigemptyset/sigaddset before use; blocking
        // a signal in the only thread so far (threads started later inherit the mask).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }
    let mut kids = Vec::new();
    for _ in 0..a.children {
        match std::process::Command::new("sleep").arg("3600").spawn() {
            Ok(k) => kids.push(k),
            Err(e) => {
                eprintln!("oomguard-hog: cannot start sleep: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("hog {} ready", std::process::id());
    if let Some(d) = a.delay {
        std::thread::sleep(d.0);
    }
    let threads = a.threads.max(1);
    let per_thread = usize::try_from(a.max.0).unwrap_or(usize::MAX) / threads;
    let rate = a.rate.map(|r| r.0 as f64 / threads as f64);
    let shared = a.shared;
    if a.leader_exits {
        for _ in 0..threads {
            std::thread::spawn(move || {
                oomguard::act::hog::fill_mapped(per_thread, rate, shared);
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            });
        }
        println!("hog {} main thread exiting", std::process::id());
        // SAFETY: `SYS_exit` ends the calling thread only (not `exit_group`): nothing unwinds
        // and no destructor runs, and the allocating threads, which own nothing of this one's,
        // go on. The process ends when they are killed.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!("SYS_exit returned");
    }
    let held: usize = (0..threads)
        .map(|_| {
            std::thread::spawn(move || oomguard::act::hog::fill_mapped(per_thread, rate, shared))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|h| h.join().ok())
        .sum();
    println!("hog {} holding {} MiB", std::process::id(), held >> 20);
    if a.vfork_child {
        println!("hog {} vfork", std::process::id());
        vfork_child();
    }
    match a.hold {
        Some(d) => std::thread::sleep(d.0),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    ExitCode::SUCCESS
}

/// Starts a child that shares this process's memory and waits (`pause`) until it is killed;
/// this process is suspended meanwhile (vfork semantics). Returns when the child has ended.
fn vfork_child() {
    extern "C" fn child(_: *mut libc::c_void) -> libc::c_int {
        loop {
            // SAFETY: pause(2) only waits for a signal.
            unsafe { libc::pause() };
        }
    }
    let mut stack = vec![0u8; 64 << 10];
    // SAFETY: the child runs `child` on `stack` (its top passed, 16-byte aligned, as clone(2)
    // wants for a downward-growing stack), which lives until clone returns: CLONE_VFORK keeps
    // this thread suspended until the child has ended, and the child touches nothing else.
    let r = unsafe {
        let top = stack.as_mut_ptr().add(stack.len()) as usize & !15;
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        eprintln!("oomguard-hog: clone: {}", std::io::Error::last_os_error());
    }
}
