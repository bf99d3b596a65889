//! Daemon benchmark against earlyoom, measured in the same run (`cargo bench --bench daemon`).
//!
//! For N = 1 000, 5 000 and 10 000 idle processes, inside a private PID namespace (so both
//! daemons see only the benchmark's processes):
//! - CPU per full scan: oomguard's `Ranker::refresh` (warm table; the cold first scan too)
//!   against earlyoom's victim selection (which scans everything every time), from the CPU time
//!   earlyoom spends per decision while `--dryrun -m 99` keeps it deciding every 100 ms;
//! - decision latency (wake-up to victim chosen): oomguard's `decision in … us` debug lines
//!   against earlyoom's `selecting victim took … ms`, both daemons in dry run with an
//!   always-true trigger;
//! - idle RSS and idle CPU of both daemons with their default levels over 20 s.
//!
//! Needs root, `unshare` (util-linux) and earlyoom (`apt-get install earlyoom`).
#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failed unwrap aborts the measurement with its location"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oomguard::decide::policy::Policy;
use oomguard::decide::victim::Ranker;
use oomguard::sense::Root;
use oomguard::sense::procs::ProcReader;
use oomguard::sense::scope::Scope;
use oomguard::values::ScopeSpec;

fn thread_cpu() -> Duration {
    // SAFETY: rusage is plain integers; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    Duration::from_secs(ru.ru_utime.tv_sec as u64 + ru.ru_stime.tv_sec as u64)
        + Duration::from_micros(ru.ru_utime.tv_usec as u64 + ru.ru_stime.tv_usec as u64)
}

/// CPU time of a process (all threads, nanosecond `schedstat`), and its VmRSS in kB.
fn proc_cpu_rss(pid: u32) -> (Duration, u64) {
    let mut ns = 0u64;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (Duration::from_nanos(ns), rss)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs a daemon for `dur`, collecting stderr lines; returns (lines, cpu used, rss at end).
fn run_daemon(cmd: &mut Command, dur: Duration) -> (Vec<String>, Duration, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<Box<dyn std::io::Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    let threads: Vec<_> = readers
        .into_iter()
        .map(|r| {
            let l2 = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    l2.lock().unwrap().push(line);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let (c0, _) = proc_cpu_rss(child.id());
    std::thread::sleep(dur);
    let (c1, rss) = proc_cpu_rss(child.id());
    // SAFETY: SIGINT to the daemon we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    for t in threads {
        let _ = t.join();
    }
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    (lines, c1.saturating_sub(c0), rss)
}

fn inner(n: usize) {
    let me = std::env::current_exe().unwrap();
    let oomguard = me.parent().unwrap().parent().unwrap().join("oomguard");
    assert!(
        oomguard.exists(),
        "build the binary first: cargo build --release ({})",
        oomguard.display()
    );
    // N idle processes: forked children that only pause().
    let mut kids = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: the child calls only async-signal-safe pause()/_exit().
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the forked child, only async-signal-safe calls.
            unsafe {
                libc::pause();
                libc::_exit(0);
            }
        }
        kids.push(pid);
    }
    // One larger process (64 MiB), the obvious victim for both daemons.
    // SAFETY: the child only touches memory it allocated, then pauses.
    let big = unsafe { libc::fork() };
    if big == 0 {
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
        // SAFETY: in the forked child, only async-signal-safe calls.
        unsafe {
            libc::pause();
            libc::_exit(0);
        }
    }
    kids.push(big);
    std::thread::sleep(Duration::from_millis(500));

    // 1. CPU per full scan, oomguard (library).
    let root = Root::default();
    let mut reader = ProcReader::open(&root).unwrap();
    let mut scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
    let policy = Policy::default();
    let mut ranker = Ranker::new(reader.page_kb, false);
    let t0 = thread_cpu();
    let scanned = ranker.refresh(&mut reader, &mut scope, &policy, 6_000_000, false, 0);
    let cold = thread_cpu() - t0;
    let mut warm = Vec::new();
    for _ in 0..20 {
        let t0 = thread_cpu();
        ranker.refresh(&mut reader, &mut scope, &policy, 6_000_000, false, 0);
        warm.push((thread_cpu() - t0).as_secs_f64() * 1e3);
    }
    let og_scan_ms = median(&mut warm);
    let mut sel = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let s = ranker.select(&mut reader, &policy, 0);
        sel.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(s.victim.is_some());
    }
    let og_select_lib_ms = median(&mut sel);

    // 2. Decision latency and CPU per decision, both daemons in dry run, always triggered.
    let dur = Duration::from_secs(6);
    let (og_lines, og_cpu, _) = run_daemon(
        Command::new(&oomguard).args([
            "run",
            "--dry-run",
            "--mem-min",
            "99.9",
            "-v",
            "--event-log",
            "/tmp/oomguard-bench-events.jsonl",
        ]),
        dur,
    );
    let mut og_dec: Vec<f64> = og_lines
        .iter()
        .filter_map(|l| {
            l.split("decision in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|us| us / 1000.0)
        .collect();
    let og_n = og_dec.len().max(1);
    let og_dec_ms = median(&mut og_dec);
    // earlyoom without -d (its debug table would inflate its cost): one "sending SIGTERM" line
    // per decision; each decision is a full scan, CPU-bound, so its latency is its CPU time.
    let (eo_lines, eo_cpu, _) = run_daemon(
        Command::new("stdbuf").args([
            "-oL", "-eL", "earlyoom", "--dryrun", "-m", "99", "-s", "99", "-r", "0",
        ]),
        dur,
    );
    let eo_n = eo_lines
        .iter()
        .filter(|l| l.starts_with("sending SIGTERM"))
        .count()
        .max(1);
    if eo_n <= 1 {
        eprintln!(
            "earlyoom printed: {:?}",
            &eo_lines[..eo_lines.len().min(30)]
        );
    }
    let eo_scan_ms = eo_cpu.as_secs_f64() * 1e3 / eo_n as f64;
    let eo_dec_ms = eo_scan_ms;
    let og_cpu_per_dec = og_cpu.as_secs_f64() * 1e3 / og_n as f64;

    // 3. Idle RSS and CPU with default levels, side by side.
    let idle = Duration::from_secs(20);
    let og_idle = std::thread::spawn({
        let oomguard = oomguard.clone();
        move || {
            run_daemon(
                Command::new(oomguard).args([
                    "run",
                    "--dry-run",
                    "--event-log",
                    "/tmp/oomguard-bench-idle.jsonl",
                ]),
                idle,
            )
        }
    });
    let (_, eo_idle_cpu, eo_rss) = run_daemon(
        Command::new("stdbuf").args(["-oL", "-eL", "earlyoom", "--dryrun", "-r", "0"]),
        idle,
    );
    let (_, og_idle_cpu, og_rss) = og_idle.join().unwrap();

    for k in &kids {
        // SAFETY: our own forked children.
        unsafe { libc::kill(*k, libc::SIGKILL) };
    }
    for _ in &kids {
        // SAFETY: reaping our children.
        unsafe { libc::wait(std::ptr::null_mut()) };
    }

    let per_min = |cpu: Duration| cpu.as_secs_f64() * 1e3 * 60.0 / idle.as_secs_f64();
    println!("## N = {n} idle processes ({scanned} seen by the scan)");
    println!("| figure | oomguard | earlyoom 1.7 | ratio oomguard/earlyoom |");
    println!("|---|---|---|---|");
    println!(
        "| CPU per full scan (ms) | {og_scan_ms:.2} (cold first scan {:.2}) | {eo_scan_ms:.2} | {:.2} |",
        cold.as_secs_f64() * 1e3,
        og_scan_ms / eo_scan_ms
    );
    println!(
        "| decision latency, median (ms) | {og_dec_ms:.3} ({og_n} decisions; library select {og_select_lib_ms:.3}) | {eo_dec_ms:.3} ({eo_n} decisions; = its CPU per decision) | {:.3} |",
        og_dec_ms / eo_dec_ms
    );
    println!(
        "| CPU per decision (ms) | {og_cpu_per_dec:.3} | {eo_scan_ms:.3} | {:.3} |",
        og_cpu_per_dec / eo_scan_ms
    );
    println!(
        "| idle RSS (MiB) | {:.2} | {:.2} | {:.2} |",
        og_rss as f64 / 1024.0,
        eo_rss as f64 / 1024.0,
        og_rss as f64 / eo_rss.max(1) as f64
    );
    println!(
        "| idle CPU (ms per minute) | {:.1} | {:.1} | {:.2} |",
        per_min(og_idle_cpu),
        per_min(eo_idle_cpu),
        per_min(og_idle_cpu) / per_min(eo_idle_cpu).max(1e-9)
    );
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inner") {
        inner(args[i + 1].parse().unwrap());
        return;
    }
    if Command::new("earlyoom").arg("-v").output().is_err() {
        eprintln!("earlyoom is not installed: apt-get install earlyoom");
        std::process::exit(1);
    }
    let ns: Vec<usize> = std::env::var("OOMGUARD_BENCH_N")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 5000, 10000]);
    println!(
        "# oomguard vs earlyoom, {} cores, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rustix::system::uname().release().to_string_lossy()
    );
    for n in ns {
        let st = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(std::env::current_exe().unwrap())
            .args(["--inner", &n.to_string()])
            .status()
            .expect("unshare");
        assert!(st.success(), "benchmark run for N={n} failed");
    }
}
