//! Prediction (`top`, `why`) end to end: the computed oom_score against the kernel's own
//! `/proc/PID/oom_score` over every process of the machine, the plain table, the JSON document,
//! group mode, rules and verdicts, `why`, and what an unprivileged user sees.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oomguard::decide::policy::Policy;
use oomguard::decide::rank::{Ranker, Unreadable};
use oomguard::sense::Root;
use oomguard::sense::scope::Scope;
use oomguard::values::ScopeSpec;

use crate::util::{Reaped, TestCgroup, bin, hog_bin, oomguard};

/// A hog started in `cg`, waited for until it holds all its memory.
pub fn hog(cg: &TestCgroup, max: &str) -> Reaped {
    let mut cmd = Command::new(hog_bin());
    cmd.args(["--max", max, "--hold", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let mut child = Reaped(cg.spawn(&mut cmd));
    let out = child.0.stdout.take().expect("hog stdout");
    let mut lines = BufReader::new(out).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("holding") => break,
            Some(Ok(_)) => {}
            _ => panic!("hog {max} exited before holding its memory"),
        }
        assert!(Instant::now() < deadline, "hog {max} too slow");
    }
    // Keep reading in the background so the pipe never fills.
    std::thread::spawn(move || for _ in lines {});
    child
}

/// A hog in `cg` whose main thread exits once its two threads allocate `max` (see the hog's
/// `--leader-exits`), waited for until they hold it.
pub fn headless_hog(cg: &TestCgroup, max: &str, bytes: u64) -> Reaped {
    let mut cmd = Command::new(hog_bin());
    cmd.args(["--max", max, "--threads", "2", "--leader-exits"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let mut child = Reaped(cg.spawn(&mut cmd));
    let deadline = Instant::now() + Duration::from_secs(30);
    // At `bytes` and no longer growing (two reads 100 ms apart agree): a hog still on its way
    // from `bytes` to `max` changes its terms between every pair of reads of a comparison (a
    // CI run saw all 20 tries of `computed_oom_score_equals_the_kernels` fall in its growth).
    let mut last = 0;
    loop {
        let rss = crate::util::threads_rss_kb(child.pid());
        if rss * 1024 >= bytes && rss == last {
            break;
        }
        last = rss;
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the headless hog exited"
        );
        assert!(Instant::now() < deadline, "headless hog {max} too slow");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// A 1 GiB test group with one hog per size (in that order), all holding their memory.
pub fn group_with_hogs(name: &str, sizes: &[&str]) -> Option<(TestCgroup, Vec<Reaped>)> {
    let cg = TestCgroup::new(name, 1 << 30)?;
    let hogs = sizes.iter().map(|s| hog(&cg, s)).collect();
    Some((cg, hogs))
}

/// Sets a process's oom_score_adj (only raising works without CAP_SYS_RESOURCE).
pub fn set_adj(pid: i32, adj: i32) {
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
        .unwrap_or_else(|e| panic!("setting oom_score_adj of {pid} to {adj}: {e}"));
}

fn kernel_score(pid: i32) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn meminfo_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

/// The heart of the predictor: for every process on this machine (and three the test starts
/// with chosen sizes and adj values), the oom_score computed from stat/status/oom_score_adj
/// equals the kernel's `/proc/PID/oom_score`.
///
/// Exactness: rss comes from /proc/PID/stat, which reads the same approximate percpu counter
/// (`get_mm_rss`) as `oom_badness()`; VmPTE is the exact `mm_pgtables_bytes`; so with no swap in
/// use every stable process must match exactly. A difference of 1 is accepted only where the
/// kernel's approximate counters explain it: (a) VmSwap in status is the exact sum
/// (`get_mm_counter_sum`) while the OOM killer reads the approximate percpu value of
/// MM_SWAPENTS, so a process with swap entries may differ; (b) a process whose terms changed
/// between our reads and the kernel's (re-read up to 20 times to find a stable moment first).
#[test]
fn computed_oom_score_equals_the_kernels() {
    let Some((cg, hogs)) = group_with_hogs("predict-score", &["300M", "64M", "16M"]) else {
        return;
    };
    let [big, mid, small] = &hogs[..] else {
        unreachable!()
    };
    // And one whose main thread exited (`pthread_exit` from `main`): the kernel counts the
    // memory its threads hold, which `/proc/PID` (the main thread's) does not show.
    let headless = headless_hog(&cg, "96M", 90 << 20);
    set_adj(mid.pid(), 123);
    set_adj(small.pid(), 1000);
    set_adj(headless.pid(), 200);
    let mine = [
        (big.pid(), 0),
        (mid.pid(), 123),
        (small.pid(), 1000),
        (headless.pid(), 200),
    ];

    let root = Root::default();
    let scope = Scope::resolve(&root, &ScopeSpec::System).unwrap();
    let mut r = Ranker::new(&root, scope, Policy::default()).unwrap();
    r.kernel_threads = true;
    let (_, ctx) = r.context().unwrap();
    let page_kb = rustix::param::page_size() as u64 / 1024;
    assert_eq!(
        ctx.global_totalpages,
        meminfo_kb("MemTotal") / page_kb + meminfo_kb("SwapTotal") / page_kb,
        "totalpages = MemTotal + SwapTotal in pages"
    );

    let mut pids = Vec::new();
    r.reader.pids(&mut pids).unwrap();
    let mut unread = Unreadable::default();
    let (mut exact, mut explained, mut gone) = (0, Vec::new(), 0);
    let mut seen_mine = 0;
    'pids: for &pid in &pids {
        let mut last = None;
        for _attempt in 0..20 {
            let Some(a) = r.read_proc(pid, &ctx, &mut unread) else {
                gone += 1;
                continue 'pids;
            };
            let Some(k) = kernel_score(pid) else {
                gone += 1;
                continue 'pids;
            };
            let Some(b) = r.read_proc(pid, &ctx, &mut unread) else {
                gone += 1;
                continue 'pids;
            };
            if a.terms == b.terms && a.adj == b.adj {
                if a.oom_score == k {
                    exact += 1;
                    if let Some(&(_, adj)) = mine.iter().find(|m| m.0 == pid) {
                        assert_eq!(a.adj as i32, adj);
                        seen_mine += 1;
                    }
                    continue 'pids;
                }
                assert!(
                    a.terms.swap_pages > 0 && (a.oom_score - k).abs() <= 1,
                    "PID {pid} ({:?}): computed oom_score {} but the kernel says {k}; terms {:?} adj {} totalpages {} (stable across two reads, no swap to explain it)",
                    a.comm,
                    a.oom_score,
                    a.terms,
                    a.adj,
                    ctx.global_totalpages
                );
                explained.push(format!(
                    "PID {pid}: {} vs {k}, {} swap pages (VmSwap exact vs the OOM killer's approximate MM_SWAPENTS)",
                    a.oom_score, a.terms.swap_pages
                ));
                continue 'pids;
            }
            last = Some((a.oom_score, k, a.comm));
        }
        // Never stable over 20 tries: its memory keeps changing under us.
        let (c, k, comm) = last.unwrap();
        assert!(
            (c - k).abs() <= 1,
            "PID {pid} ({comm:?}) changed on every read; computed {c}, kernel {k}"
        );
        explained.push(format!(
            "PID {pid} ({comm:?}): {c} vs {k}, rss changed between every pair of reads"
        ));
    }
    eprintln!(
        "oom_score: {exact} exact, {} within 1 for the stated reasons, {gone} vanished, of {} PIDs",
        explained.len(),
        pids.len()
    );
    for e in &explained {
        eprintln!("  {e}");
    }
    assert_eq!(seen_mine, 4, "the four test hogs were compared exactly");
    assert!(exact >= 10, "only {exact} processes compared");
    assert!(
        explained.len() * 10 <= exact,
        "too many inexact: {explained:?}"
    );
    // The adj 1000 hog: (1000 + (points + 1000 * (totalpages/1000)) * 1000 / totalpages) * 2/3.
    let s = kernel_score(small.pid()).unwrap();
    assert!((1332..=1334).contains(&s), "adj 1000 scores {s}");
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = oomguard(args);
    assert!(
        out.status.success(),
        "oomguard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn procs(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["processes"].as_array().unwrap()
}

fn by_pid(doc: &serde_json::Value, pid: i32) -> &serde_json::Value {
    procs(doc)
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("PID {pid} not in {doc}"))
}

/// `top --json`, `--once`, `-n`, `--scope`, `--config` rules and group mode, on hogs whose
/// order the test knows: in a 1 GiB group totalpages is 262144 (unit 262), so
/// big (200M, adj 0) ≈ 51k pages, mid (64M, adj 300) ≈ 16k + 78.6k, small (32M, adj 0) ≈ 8k.
#[test]
fn top_ranks_a_cgroup_by_badness_and_follows_the_rules() {
    let Some((cg, hogs)) = group_with_hogs("predict-top", &["200M", "64M", "32M"]) else {
        return;
    };
    let [big, mid, small] = &hogs[..] else {
        unreachable!()
    };
    set_adj(mid.pid(), 300);
    let scope = format!("cgroup:{}", cg.rel());
    let empty = crate::util::tempdir();
    let no_rules = empty.path().join("none.toml");
    std::fs::write(&no_rules, "").unwrap();
    let nr = no_rules.to_str().unwrap();

    let doc = json(&["top", "--json", "--scope", &scope, "--config", nr]);
    assert_eq!(doc["scope"], scope);
    for k in ["total_kb", "available_kb", "swap_total_kb", "swap_free_kb"] {
        assert!(doc["memory"][k].is_u64(), "memory.{k}");
    }
    assert_eq!(doc["memory"]["total_kb"], 1 << 20);
    let ps = procs(&doc);
    assert_eq!(ps.len(), 3, "only the group's processes: {ps:?}");
    for p in ps {
        for k in [
            "pid",
            "comm",
            "uid",
            "rss_kb",
            "swap_kb",
            "pgtables_kb",
            "oom_score_adj",
            "badness",
            "oom_score",
            "rank",
            "verdict",
        ] {
            assert!(!p[k].is_null(), "field {k} in {p}");
        }
        // The kernel's score is global even in a cgroup scope.
        let pid = p["pid"].as_i64().unwrap() as i32;
        assert_eq!(p["oom_score"].as_i64(), kernel_score(pid), "{p}");
    }
    let order: Vec<i64> = ps.iter().map(|p| p["pid"].as_i64().unwrap()).collect();
    assert_eq!(
        order,
        [mid.pid() as i64, big.pid() as i64, small.pid() as i64]
    );
    let ranks: Vec<i64> = ps.iter().map(|p| p["rank"].as_i64().unwrap()).collect();
    assert_eq!(ranks, [1, 2, 3]);
    let badness: Vec<i64> = ps.iter().map(|p| p["badness"].as_i64().unwrap()).collect();
    assert!(badness.windows(2).all(|w| w[0] >= w[1]), "{badness:?}");
    assert_eq!(ps[0]["verdict"], "next_victim");
    assert_eq!(ps[1]["verdict"], "candidate");
    // Badness = rss + swap + page tables (pages) + adj * (totalpages / 1000).
    let m = by_pid(&doc, mid.pid());
    let pages = (m["rss_kb"].as_i64().unwrap()
        + m["swap_kb"].as_i64().unwrap()
        + m["pgtables_kb"].as_i64().unwrap())
        / 4;
    assert_eq!(
        m["badness"].as_i64().unwrap(),
        pages + 300 * (262144 / 1000)
    );
    assert!(by_pid(&doc, big.pid())["rss_kb"].as_u64().unwrap() >= 200 << 10);

    // Rules from a config file: protect mid by its command line, prefer small by name.
    let cfg = empty.path().join("rules.toml");
    std::fs::write(
        &cfg,
        "[[protect]]\ncmdline = \"--max 64M\"\n\n[[avoid]]\ncmdline = \"--max 200M\"\n",
    )
    .unwrap();
    let doc = json(&[
        "top",
        "--json",
        "--scope",
        &scope,
        "--config",
        cfg.to_str().unwrap(),
        "--prefer",
        "^oomguard-hog$",
    ]);
    // Command-line rules come first: --prefer matches all three (comm "oomguard-hog"), so the
    // config's protect and avoid never decide.
    assert!(
        procs(&doc)
            .iter()
            .all(|p| p["rule"].as_str().is_some_and(|r| r.starts_with("prefer")))
    );
    let doc = json(&[
        "top",
        "--json",
        "--scope",
        &scope,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(by_pid(&doc, mid.pid())["verdict"], "protected");
    assert_eq!(by_pid(&doc, mid.pid())["rank"], 3);
    // avoid: 51k - 78.6k < small's 8k.
    assert_eq!(by_pid(&doc, small.pid())["verdict"], "next_victim");
    assert_eq!(by_pid(&doc, big.pid())["verdict"], "avoided");
    assert_eq!(by_pid(&doc, big.pid())["rank"], 2);

    // -n and the plain table: no terminal codes, header and rows.
    let out = oomguard(&[
        "top", "--once", "-n", "2", "--scope", &scope, "--config", nr,
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "terminal codes in --once: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "summary, header, 2 rows: {text}");
    assert!(lines[0].starts_with(&format!("scope {scope}:")), "{text}");
    assert!(lines[1].contains("PID") && lines[1].contains("VERDICT"));
    assert!(
        lines[2].contains(&mid.pid().to_string()) && lines[2].contains("next_victim"),
        "{text}"
    );
    assert!(lines[3].contains(&big.pid().to_string()), "{text}");
    // Without --once, stdout not a terminal: the same plain table, no terminal codes.
    let out = oomguard(&["top", "-n", "2", "--scope", &scope, "--config", nr]);
    let piped = String::from_utf8(out.stdout).unwrap();
    assert!(
        !piped.contains('\x1b') && piped.lines().count() == 4,
        "{piped:?}"
    );
}

/// Group mode sums a parent and its workers (the php-fpm case): a shell with three 24M
/// workers outweighs a single 48M process.
#[test]
fn group_mode_sums_trees_and_cgroups() {
    let Some(cg) = TestCgroup::new("predict-group", 1 << 30) else {
        return;
    };
    let single = hog(&cg, "48M");
    let b = hog_bin();
    let b = b.to_str().unwrap();
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        &format!(
            "for i in 1 2 3; do {b} --max 24M --hold 120s >/dev/null & done; echo started; wait"
        ),
    ])
    .stdout(Stdio::piped())
    .stdin(Stdio::null());
    let mut pool = Reaped(cg.spawn(&mut sh));
    let mut first = String::new();
    BufReader::new(pool.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let scope = format!("cgroup:{}", cg.rel());
    // Wait until the workers hold their memory (4 processes under the shell).
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc = loop {
        let doc = json(&["top", "--json", "--scope", &scope, "--group", "tree"]);
        let g = &doc["groups"][0];
        if g["processes"] == 4 && g["rss_kb"].as_u64().unwrap() > 72 << 10 {
            break doc;
        }
        assert!(Instant::now() < deadline, "workers never filled: {doc}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{doc}");
    assert_eq!(
        groups[0]["key"],
        format!("{} sh", pool.pid()),
        "the shell's tree is the largest: {doc}"
    );
    assert_eq!(groups[1]["pids"], serde_json::json!([single.pid()]));
    // The single process is still the next victim (oomguard kills processes).
    assert_eq!(groups[1]["has_next_victim"], true);
    let doc = json(&["top", "--json", "--scope", &scope, "--group", "cgroup"]);
    let g = doc["groups"].as_array().unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["key"], cg.rel());
    assert_eq!(g[0]["processes"], 5);
    let out = oomguard(&["top", "--once", "--scope", &scope, "--group", "unit"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .nth(2)
            .is_some_and(|l| l.trim_end().ends_with(" -  (holds the next victim)")),
        "no unit here: {text}"
    );
    let out = oomguard(&["top", "--once", "--group", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    drop((single, pool));
}

/// `why`: terms in pages and kB, kernel score agreeing with /proc, rank, who goes first.
#[test]
fn why_explains_one_process_and_refuses_missing_ones() {
    let Some((cg, hogs)) = group_with_hogs("predict-why", &["128M", "32M"]) else {
        return;
    };
    let [big, small] = &hogs[..] else {
        unreachable!()
    };
    set_adj(small.pid(), 50);
    let scope = format!("cgroup:{}", cg.rel());
    let pid = small.pid().to_string();
    let doc = json(&["why", "--json", &pid, "--scope", &scope]);
    assert_eq!(doc["pid"], small.pid());
    assert_eq!(doc["comm"], "oomguard-hog");
    assert_eq!(doc["oom_score"].as_i64(), kernel_score(small.pid()));
    assert_eq!(doc["kernel_oom_score"], doc["oom_score"]);
    let t = &doc["terms"];
    let points = t["rss_pages"].as_i64().unwrap()
        + t["swap_pages"].as_i64().unwrap()
        + t["pgtables_pages"].as_i64().unwrap();
    assert_eq!(t["points"].as_i64().unwrap(), points);
    assert_eq!(
        t["rss_kb"].as_i64().unwrap(),
        t["rss_pages"].as_i64().unwrap() * 4
    );
    assert_eq!(t["adj_pages"].as_i64().unwrap(), 50 * 262);
    assert_eq!(doc["badness"].as_i64().unwrap(), points + 50 * 262);
    // 32M + 50 × 262 pages ≈ 21.7k < 128M ≈ 32.8k: rank 2, after the big hog.
    assert_eq!(doc["rank"], 2);
    let before = doc["killed_before"].as_array().unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["pid"], big.pid());
    assert!(before[0]["margin_pages"].as_i64().unwrap() > 0);
    let top = json(&["top", "--json", "--scope", &scope]);
    assert_eq!(by_pid(&top, small.pid())["rank"], doc["rank"]);

    let out = oomguard(&[
        "why",
        &pid,
        "--scope",
        &scope,
        "--protect",
        "^oomguard-hog$",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Badness terms:",
        "page tables",
        "oom_score_adj",
        &format!("/proc/{pid}/oom_score agrees"),
        "verdict protected",
        "Rules that match",
        "protect [name =~ /^oomguard-hog$/]",
        "Advice:",
        "oomguard never chooses it",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // By name: the highest ranked of the group's processes called oomguard-hog.
    let doc = json(&["why", "--json", "oomguard-hog", "--scope", &scope]);
    assert_eq!(doc["pid"], big.pid());
    assert_eq!(doc["rank"], 1);
    assert_eq!(doc["verdict"], "next_victim");

    let out = oomguard(&["why", "2147483000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process with PID 2147483000"));
    let out = oomguard(&["why", "no-such-name-xyz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process named"));
    // A PID outside the scope.
    let out = oomguard(&["why", "1", "--scope", &scope]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in scope"));
}

/// Without root: everything readable is shown, and what could not be read is said.
#[test]
fn unprivileged_user_sees_the_table_and_is_told_what_was_unreadable() {
    let root_pid_readable = rustix::process::geteuid().is_root();
    if !crate::util::require(root_pid_readable, "root (to switch to nobody)") {
        return;
    }
    let d = crate::util::tempdir();
    let cfg = d.path().join("exe.toml");
    std::fs::write(&cfg, "[[protect]]\nexe = \"/usr/sbin/sshd\"\n").unwrap();
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(d.path(), perms).unwrap();
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&cfg, perms).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(["top", "--once", "--config", cfg.to_str().unwrap()])
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(" 1 ") && stdout.lines().count() > 3,
        "{stdout}"
    );
    assert!(
        stderr.contains("could not read /proc/PID/exe of"),
        "unreadable exe not reported: {stderr}"
    );
    // PID 1 is root's, yet its score is there.
    assert!(stdout.lines().any(|l| l.contains(" immune ")), "{stdout}");
}

/// Processes that come and go during a refresh are dropped silently: a group where a shell
/// forks short-lived children all the time never makes `top` fail or complain.
#[test]
fn vanishing_processes_are_dropped_silently() {
    let Some(cg) = TestCgroup::new("predict-churn", 256 << 20) else {
        return;
    };
    let mut sh = Command::new("sh");
    sh.args(["-c", "while :; do /bin/true; done"])
        .stdin(Stdio::null());
    let churn = Reaped(cg.spawn(&mut sh));
    let scope = format!("cgroup:{}", cg.rel());
    for _ in 0..20 {
        let out = oomguard(&["top", "--json", "--scope", &scope]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["notes"], serde_json::json!([]));
        assert!(procs(&doc).iter().any(|p| p["pid"] == churn.pid()));
    }
}

/// `why TID` of a thread explains its process (a thread has a `/proc/TID` of its own, which
/// listings leave out), and says so.
#[test]
fn why_of_a_thread_explains_its_process() {
    let me = std::process::id() as i32;
    // This test binary runs its tests on threads of its own.
    let tid = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&t| t != me)
        .expect("a thread of the test process");
    let out = Command::new(bin())
        .args(["why", "--json", &tid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["pid"], me, "{doc}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{tid} is a thread of process {me}")),
        "{err}"
    );
}

/// A container's init (PID 1 of a PID namespace of its own, with its own /proc) is scored by the
/// kernel like any other process; only the machine's init is never killed. `why 1` run inside
/// the namespace must give the kernel's score, not 0 and "PID 1 (init) is never killed".
#[test]
fn a_containers_init_has_the_kernels_score() {
    let unshare = std::path::Path::new("/usr/bin/unshare").exists();
    if !crate::util::require(unshare, "unshare (util-linux) to make a PID namespace") {
        return;
    }
    let script = format!(
        "{} why --json 1 && echo && cat /proc/1/oom_score",
        bin().display()
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (json, score) = text
        .trim_end()
        .rsplit_once('\n')
        .expect("why's json, then the score");
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let kernel: u64 = score.trim().parse().unwrap();
    assert!(
        kernel > 0,
        "the kernel scores the namespace's init: {kernel}"
    );
    assert_eq!(doc["pid"], 1, "{doc}");
    assert_eq!(doc["immune_reason"], "namespace_init", "{doc}");
    let ours = doc["kernel_oom_score"].as_u64().expect("a kernel score");
    assert!(
        ours.abs_diff(kernel) <= 2,
        "why says {ours}, the kernel {kernel}: {doc}"
    );
    let advice = doc["advice"].to_string();
    assert!(
        advice.contains("kernel's own OOM killer still can"),
        "{advice}"
    );
}

/// The contract: command-line rules first, and the first rule that matches decides. Among the
/// flags that is the order they were typed in, whatever their kinds: `--prefer x --protect x`
/// prefers, `--protect x --prefer x` protects.
#[test]
fn command_line_rules_keep_the_order_they_were_typed_in() {
    let mut child = Reaped(
        Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.pid().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n" {
        assert!(Instant::now() < deadline, "sleep never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = |flags: &[&str]| -> serde_json::Value {
        let out = oomguard(&[&["why", "--json", &pid], flags].concat());
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let kinds = |doc: &serde_json::Value| -> Vec<String> {
        doc["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let preferred = why(&[
        "--prefer",
        "^sleep$",
        "--avoid",
        "^sle",
        "--protect",
        "^sleep$",
    ]);
    assert_eq!(
        kinds(&preferred),
        ["prefer", "avoid", "protect"],
        "{preferred}"
    );
    assert_ne!(preferred["verdict"], "protected", "{preferred}");
    assert_eq!(preferred["rules"][0]["decides"], true, "{preferred}");
    assert_eq!(preferred["effective_adj"], 300, "{preferred}");
    let protected = why(&["--protect=^sleep$", "--prefer", "^sleep$"]);
    assert_eq!(kinds(&protected), ["protect", "prefer"], "{protected}");
    assert_eq!(protected["verdict"], "protected", "{protected}");
    let _ = child.0.kill();
}
