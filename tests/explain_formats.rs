//! One OOM report (the project's own, written from the kernel's 6.x format strings) in every
//! line format the parser reads: the parsed events must be the same in each, and the
//! command line must give the same answer from plain, compressed and piped input.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::{bin, oomguard, require, tempdir};

/// The kernel messages: a memcg v2 OOM with an oom.group kill, a kill printed twice and a
/// reaper line; a rate-limited second invocation (Killed line only); a panic_on_oom report.
const MESSAGES: &[&str] = &[
    "stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "CPU: 3 UID: 1000 PID: 4242 Comm: stress Not tainted 6.8.0 #1",
    "Call Trace:",
    " <TASK>",
    " dump_stack_lvl+0x44/0x60",
    " dump_header+0x4a/0x240",
    " oom_kill_process+0xf9/0x190",
    "memory: usage 524288kB, limit 524288kB, failcnt 77",
    "swap: usage 0kB, limit 9007199254740988kB, failcnt 0",
    "Memory cgroup stats for /app.slice/web.service:",
    "anon 530000000",
    "Tasks state (memory values in pages):",
    "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
    "[   4242]  1000  4242   150000   120000   119000     1000         0   1048576        0           200 stress",
    "[   4250]  1000  4250    50000    10000     9000     1000         0    262144        0             0 my worker (2)",
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/app.slice/web.service,task_memcg=/app.slice/web.service,task=stress,pid=4242,uid=1000",
    "Memory cgroup out of memory: Killed process 4242 (stress) total-vm:600000kB, anon-rss:476000kB, file-rss:4000kB, shmem-rss:0kB, UID:1000 pgtables:1024kB oom_score_adj:200",
    "Tasks in /app.slice/web.service are going to be killed due to memory.oom.group set",
    "Memory cgroup out of memory: Killed process 4250 (my worker (2)) total-vm:200000kB, anon-rss:36000kB, file-rss:4000kB, shmem-rss:0kB, UID:1000 pgtables:256kB oom_score_adj:0",
    "Memory cgroup out of memory: Killed process 4242 (stress) total-vm:600000kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:1024kB oom_score_adj:200",
    "oom_reaper: reaped process 4242 (stress), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    "Out of memory: Killed process 5000 (java) total-vm:9000000kB, anon-rss:8000000kB, file-rss:100kB, shmem-rss:0kB, UID:0 pgtables:16000kB oom_score_adj:0",
    "hog invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0",
    "CPU: 0 PID: 111 Comm: hog Not tainted 6.1.0 #1",
    "Mem-Info:",
    "active_anon:100 inactive_anon:120000 isolated_anon:0",
    " free:1200 free_pcp:0 free_cma:0",
    "Free swap  = 0kB",
    "Total swap = 0kB",
    "131072 pages RAM",
    "Kernel panic - not syncing: Out of memory: compulsory panic_on_oom is enabled",
    "CPU: 0 PID: 111 Comm: hog Not tainted 6.1.0 #1",
    " panic+0x118/0x2f4",
];

/// Other programs' lines quoting OOM text: never events.
const FOREIGN: &str =
    "containerd[99]: event: Memory cgroup out of memory: Killed process 1 (x) total-vm:1kB";

fn stamp(fmt: &str, i: usize) -> String {
    let secs = 1234.5 + i as f64 * 0.001;
    let usec = (secs * 1e6) as u64;
    match fmt {
        "dmesg" => format!("[{secs:12.6}] "),
        "dmesg-caller" => format!("[{secs:12.6}][ T4242] "),
        "dmesg-T" => "[Mon Nov 30 18:00:01 2026] ".into(),
        "dmesg-iso" => "2026-11-30T18:00:01,123456+00:00 ".into(),
        "dmesg-x" => format!("kern  :warn  : [{secs:12.6}] "),
        "syslog" => "Nov 30 18:00:01 host kernel: ".into(),
        "syslog-dmesg" => format!("Nov 30 18:00:01 host kernel: [{secs:12.6}] "),
        "short-precise" => "Nov 30 18:00:01.123456 host kernel: ".into(),
        "short-iso" => "2026-11-30T18:00:01+0000 host kernel: ".into(),
        "short-full" => "Mon 2026-11-30 18:00:01 UTC host kernel: ".into(),
        "short-unix" => "1764525601.123456 host kernel: ".into(),
        "short-monotonic" => format!("[{secs:12.6}] host kernel: "),
        "kmsg" => format!("6,{},{usec},-;", 1000 + i),
        _ => String::new(),
    }
}

const FORMATS: &[&str] = &[
    "none",
    "dmesg",
    "dmesg-caller",
    "dmesg-T",
    "dmesg-iso",
    "dmesg-x",
    "syslog",
    "syslog-dmesg",
    "short-precise",
    "short-iso",
    "short-full",
    "short-unix",
    "short-monotonic",
    "kmsg",
    "journal-json",
];

/// The report in one format, with foreign lines where the format can tell them apart.
fn render(fmt: &str) -> String {
    let mut s = String::new();
    for (i, m) in MESSAGES.iter().enumerate() {
        if fmt == "journal-json" {
            // `journalctl -o json`: one object per record, the kernel's stamp in microseconds.
            let usec = ((1234.5 + i as f64 * 0.001) * 1e6).round() as u64;
            let rec = serde_json::json!({
                "__CURSOR": format!("s=ab;i={i}"),
                "__REALTIME_TIMESTAMP": (1764525601123456u64 + i as u64).to_string(),
                "__MONOTONIC_TIMESTAMP": (usec + 900).to_string(),
                "_TRANSPORT": "kernel",
                "SYSLOG_IDENTIFIER": "kernel",
                "_SOURCE_MONOTONIC_TIMESTAMP": usec.to_string(),
                "MESSAGE": m,
                "_HOSTNAME": "host",
            });
            s.push_str(&format!("{rec}\n"));
            if i == 17 {
                let other = serde_json::json!({
                    "_TRANSPORT": "syslog",
                    "SYSLOG_IDENTIFIER": "containerd",
                    "MESSAGE": FOREIGN,
                });
                s.push_str(&format!("{other}\n"));
            }
            continue;
        }
        s.push_str(&stamp(fmt, i));
        s.push_str(m);
        s.push('\n');
        if fmt == "kmsg" && i == 3 {
            s.push_str(" SUBSYSTEM=memory\n DEVICE=+memory:x\n");
            s.push_str("12,1999,1234567890,-;memhog: Killed process 9 (z) total-vm:1kB\n");
        }
        if i == 17 {
            match fmt {
                "syslog" | "syslog-dmesg" | "short-precise" => {
                    s.push_str(&format!("Nov 30 18:00:01 host {FOREIGN}\n"))
                }
                "short-iso" => s.push_str(&format!("2026-11-30T18:00:01+0000 host {FOREIGN}\n")),
                "short-full" => {
                    s.push_str(&format!("Mon 2026-11-30 18:00:01 UTC host {FOREIGN}\n"))
                }
                "short-unix" => s.push_str(&format!("1764525601.2 host {FOREIGN}\n")),
                "short-monotonic" => s.push_str(&format!("[ 1234.600000] host {FOREIGN}\n")),
                "dmesg-x" => s.push_str("user  :notice: [ 1234.6] memhog: Killed process 9 (z)\n"),
                _ => {}
            }
        }
    }
    s
}

/// The events as JSON values without their times and hosts (which differ by format).
fn parsed(text: &str) -> Vec<Value> {
    oomguard::report::parse_bytes(text.as_bytes())
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap();
            v.as_object_mut().unwrap().remove("time");
            v.as_object_mut().unwrap().remove("host");
            v
        })
        .collect()
}

/// Formats whose lines name the machine.
const WITH_HOST: &[&str] = &[
    "syslog",
    "syslog-dmesg",
    "short-precise",
    "short-iso",
    "short-full",
    "short-unix",
    "short-monotonic",
    "journal-json",
];

/// The report as logged by machine `host`; `other` gives it other processes (another
/// machine's OOM: other pids and names, so that a mix-up shows).
fn render_on(fmt: &str, host: &str, other: bool) -> String {
    let mut s = render(fmt).replace(" host ", &format!(" {host} ")).replace(
        "\"_HOSTNAME\":\"host\"",
        &format!("\"_HOSTNAME\":\"{host}\""),
    );
    if other {
        for (a, b) in [
            ("stress", "pgsql"),
            ("4242", "7001"),
            ("4250", "7002"),
            ("5000 (java)", "7003 (java)"),
            ("PID: 111", "PID: 7004"),
        ] {
            s = s.replace(a, b);
        }
    }
    s
}

/// A central syslog (rsyslog collecting a fleet) or `journalctl -m`: two machines' reports
/// interleave line by line. Each machine's events are those of its log alone, named by host.
#[test]
fn a_log_of_several_machines_is_read_machine_by_machine() {
    for fmt in WITH_HOST {
        let a = render_on(fmt, "web-1", false);
        let b = render_on(fmt, "db-2.example.com", true);
        let alone = |t: &str, host: &str| {
            let evs = oomguard::report::parse_bytes(t.as_bytes());
            assert!(evs.iter().all(|e| e.host.as_deref() == Some(host)), "{fmt}");
            evs
        };
        let (ea, eb) = (alone(&a, "web-1"), alone(&b, "db-2.example.com"));
        assert_eq!(ea.len(), 3, "{fmt}");
        assert_eq!(eb[0].victim.as_ref().unwrap().pid, 7001, "{fmt}");
        // Line by line, then in runs of three lines of one machine and two of the other.
        for (na, nb) in [(1, 1), (3, 2)] {
            let (mut la, mut lb) = (a.lines().peekable(), b.lines().peekable());
            let mut mixed = String::new();
            while la.peek().is_some() || lb.peek().is_some() {
                for l in la.by_ref().take(na).chain(lb.by_ref().take(nb)) {
                    mixed.push_str(l);
                    mixed.push('\n');
                }
            }
            let got = oomguard::report::parse_bytes(mixed.as_bytes());
            let of = |h: &str| -> Vec<_> {
                got.iter()
                    .filter(|e| e.host.as_deref() == Some(h))
                    .cloned()
                    .collect()
            };
            assert_eq!(got.len(), 6, "{fmt} {na}:{nb}: {got:#?}");
            assert_eq!(of("web-1"), ea, "{fmt} {na}:{nb}");
            assert_eq!(of("db-2.example.com"), eb, "{fmt} {na}:{nb}");
        }
    }
    // What the command shows: the host on each event, in text and in the summary.
    let dir = tempdir();
    let log = dir.path().join("central.log");
    let a = render_on("syslog", "web-1", false);
    let b = render_on("syslog", "db-2", true);
    let mixed: String = a
        .lines()
        .zip(b.lines())
        .flat_map(|(x, y)| [x, "\n", y, "\n"])
        .collect();
    std::fs::write(&log, mixed).unwrap();
    let log = log.to_str().unwrap();
    let out = oomguard(&["explain", "--summary", log]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0], "TIME  KIND  VICTIM  RSS  INVOKER  CGROUP  HOST",
        "{text}"
    );
    assert_eq!(rows.len(), 7, "{text}");
    assert!(
        rows.iter().any(|r| r.contains("stress[4242]")
            && r.contains("by stress[4242]")
            && r.ends_with("host web-1")),
        "{text}"
    );
    assert!(
        rows.iter().any(|r| r.contains("pgsql[7001]")
            && r.contains("by pgsql[7001]")
            && r.ends_with("host db-2")),
        "{text}"
    );
    let out = oomguard(&["explain", log]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("memory cgroup OOM at Nov 30 18:00:01 on host db-2\n"),
        "{text}"
    );
}

#[test]
fn every_line_format_gives_the_same_events() {
    let base = parsed(&render("none"));
    assert_eq!(base.len(), 3, "{base:#?}");
    let ev = &base[0];
    assert_eq!(ev["kind"], "memcg");
    assert_eq!(ev["invoker"]["pid"], 4242);
    assert_eq!(ev["memcg"], "/app.slice/web.service");
    assert_eq!(ev["victim"]["pid"], 4242);
    assert_eq!(ev["victim"]["anon_rss_kb"], 476000);
    assert_eq!(ev["victim"]["oom_score_adj"], 200);
    assert_eq!(ev["also_killed"].as_array().unwrap().len(), 1);
    assert_eq!(ev["also_killed"][0]["comm"], "my worker (2)");
    assert_eq!(ev["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(ev["tasks"][1]["name"], "my worker (2)");
    // The contract's units: kB or pages, named so.
    assert_eq!(ev["tasks"][0]["pgtables_kb"], 1024);
    assert_eq!(ev["tasks"][0]["rss_anon_pages"], 119000);
    assert_eq!(ev["reaped"]["pid"], 4242);
    assert_eq!(ev["memory"]["memcg_limit_kb"], 524288);
    assert_eq!(base[1]["kind"], "global");
    assert_eq!(base[1]["victim"]["comm"], "java");
    assert_eq!(base[1]["invoker"], Value::Null);
    assert_eq!(base[2]["kind"], "panic");
    assert_eq!(base[2]["invoker"]["pid"], 111);
    assert_eq!(base[2]["memory"]["swap_total_kb"], 0);
    assert_eq!(base[2]["memory"]["free_pages"], 1200);
    for fmt in FORMATS {
        let got = parsed(&render(fmt));
        assert_eq!(got, base, "format {fmt}");
        let host = oomguard::report::parse_bytes(render(fmt).as_bytes())[0]
            .host
            .clone();
        let named = WITH_HOST.contains(fmt).then(|| "host".to_string());
        assert_eq!(host, named, "format {fmt}");
    }
}

#[test]
fn times_are_read_from_every_stamp() {
    for fmt in FORMATS.iter().filter(|f| **f != "none") {
        let evs = oomguard::report::parse_bytes(render(fmt).as_bytes());
        let t = &evs[0].time;
        assert!(
            t.monotonic_s.is_some() || t.wallclock.is_some(),
            "{fmt}: no time in {t:?}"
        );
        assert!(t.raw.is_some(), "{fmt}");
    }
    let evs = oomguard::report::parse_bytes(render("dmesg").as_bytes());
    assert_eq!(evs[0].time.monotonic_s, Some(1234.5));
    let evs = oomguard::report::parse_bytes(render("journal-json").as_bytes());
    assert_eq!(evs[0].time.monotonic_s, Some(1234.5));
    assert_eq!(
        evs[0].time.wallclock.as_deref(),
        Some("2025-11-30T18:00:01.123456Z")
    );
    let evs = oomguard::report::parse_bytes(render("syslog-dmesg").as_bytes());
    assert_eq!(evs[0].time.wallclock.as_deref(), Some("Nov 30 18:00:01"));
    assert_eq!(evs[0].time.monotonic_s, Some(1234.5));
}

/// `--json` times are RFC 3339 whatever the log printed (`dmesg -T`, syslog without a year,
/// journal formats, seconds since the epoch); `raw` keeps the log's own text.
#[test]
fn json_wall_clock_times_are_rfc3339_in_every_format() {
    let d = tempfile::tempdir().unwrap();
    let rfc3339 = |t: &str| {
        let b = t.as_bytes();
        b.len() == 29
            && t.parse::<jiff::Timestamp>().is_ok()
            && b[19] == b'.'
            && (b[23] == b'+' || b[23] == b'-')
            && b[26] == b':'
    };
    let mut with_wallclock = Vec::new();
    for fmt in FORMATS {
        let f = d.path().join(format!("{fmt}.log"));
        std::fs::write(&f, render(fmt)).unwrap();
        let (code, doc, err) = explain_json(&["--json", f.to_str().unwrap()], None);
        assert_eq!(code, Some(0), "{fmt}: {err}");
        for ev in doc["events"].as_array().unwrap() {
            let t = &ev["time"];
            match t["wallclock"].as_str() {
                Some(w) => {
                    assert!(rfc3339(w), "{fmt}: wallclock {w:?}");
                    with_wallclock.push(*fmt);
                }
                None => assert!(t["wallclock"].is_null(), "{fmt}: {t}"),
            }
        }
    }
    for fmt in [
        "dmesg-T",
        "dmesg-iso",
        "syslog",
        "short-full",
        "short-unix",
        "journal-json",
    ] {
        assert!(
            with_wallclock.contains(&fmt),
            "{fmt}: no wallclock in any event"
        );
    }
}

/// A mail client wrapped the dmesg text at 70 columns (at spaces): same facts.
#[test]
fn word_wrapped_lines_are_rejoined() {
    let mut wrapped = String::new();
    for line in render("dmesg").lines() {
        let mut cur = String::new();
        for w in line.split(' ') {
            if !cur.is_empty() && cur.len() + 1 + w.len() > 70 {
                wrapped.push_str(&cur);
                wrapped.push('\n');
                cur.clear();
            } else if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
        wrapped.push_str(&cur);
        wrapped.push('\n');
    }
    let evs = oomguard::report::parse_bytes(wrapped.as_bytes());
    assert_eq!(evs.len(), 3);
    let v = evs[0].victim.as_ref().unwrap();
    assert_eq!((v.pid, v.comm.as_deref()), (4242, Some("stress")));
    assert_eq!(v.oom_score_adj, Some(200));
    assert_eq!(evs[0].gfp_flags.as_deref(), Some("GFP_KERNEL"));
    assert_eq!(evs[0].memcg.as_deref(), Some("/app.slice/web.service"));
}

fn explain_json(args: &[&str], stdin: Option<&[u8]>) -> (Option<i32>, Value, String) {
    let mut child = Command::new(bin())
        .arg("explain")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin {
        input.write_all(b).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn json_has_the_fixed_names() {
    let d = tempdir();
    let f = d.path().join("kern.log");
    std::fs::write(&f, render("dmesg")).unwrap();
    let (code, doc, err) = explain_json(&["--json", f.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{err}");
    let evs = doc["events"].as_array().unwrap();
    assert_eq!(evs.len(), 3);
    for key in [
        "kind",
        "time",
        "invoker",
        "gfp_mask",
        "gfp_flags",
        "order",
        "constraint",
        "memcg",
        "task_memcg",
        "victim",
        "also_killed",
        "tasks",
        "reaped",
        "panic_message",
    ] {
        assert!(evs[0].get(key).is_some(), "event lacks {key}");
    }
    for key in ["raw", "monotonic_s", "wallclock"] {
        assert!(evs[0]["time"].get(key).is_some(), "time lacks {key}");
    }
    for key in ["comm", "pid", "oom_score_adj"] {
        assert!(evs[0]["invoker"].get(key).is_some(), "invoker lacks {key}");
    }
    for key in [
        "pid",
        "comm",
        "total_vm_kb",
        "anon_rss_kb",
        "file_rss_kb",
        "shmem_rss_kb",
        "uid",
        "pgtables_kb",
        "oom_score_adj",
        "score",
    ] {
        assert!(evs[0]["victim"].get(key).is_some(), "victim lacks {key}");
    }
    for key in [
        "pid",
        "uid",
        "tgid",
        "total_vm_pages",
        "rss_pages",
        "pgtables_kb",
        "swapents_pages",
        "oom_score_adj",
        "name",
    ] {
        assert!(evs[0]["tasks"][0].get(key).is_some(), "task lacks {key}");
    }
    for key in ["pid", "comm", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb"] {
        assert!(evs[0]["reaped"].get(key).is_some(), "reaped lacks {key}");
    }
    assert_eq!(
        evs[2]["panic_message"],
        "Out of memory: compulsory panic_on_oom is enabled"
    );
    // null means "not in the log", never zero.
    assert_eq!(evs[1]["gfp_mask"], Value::Null);
    assert_eq!(evs[1]["tasks"], Value::Null);
    assert_eq!(evs[0]["analysis"]["victim_rank"], 1);
}

#[test]
fn compressed_and_piped_input_give_the_same_events() {
    let d = tempdir();
    let plain = d.path().join("kern.log");
    std::fs::write(&plain, render("syslog")).unwrap();
    let (_, want, _) = explain_json(&["--json", plain.to_str().unwrap()], None);
    let want_events = want["events"].clone();
    assert_eq!(want_events.as_array().unwrap().len(), 3);
    let (code, got, err) = explain_json(&["--json", "-"], Some(render("syslog").as_bytes()));
    assert_eq!(code, Some(0), "{err}");
    let strip = |v: &Value| {
        let mut v = v.clone();
        for e in v.as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("source");
        }
        v
    };
    assert_eq!(strip(&got["events"]), strip(&want_events));
    for (tool, ext) in [("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")] {
        let have = Command::new(tool).arg("--version").output().is_ok();
        if !require(have, &format!("{tool} (to make a compressed log)")) {
            continue;
        }
        let z = d.path().join(format!("kern.log.{ext}"));
        let out = Command::new(tool)
            .args(["-c", plain.to_str().unwrap()])
            .output()
            .unwrap();
        std::fs::write(&z, out.stdout).unwrap();
        let (code, got, err) = explain_json(&["--json", z.to_str().unwrap()], None);
        assert_eq!(code, Some(0), "{ext}: {err}");
        assert_eq!(strip(&got["events"]), strip(&want_events), "{ext}");
        // Compressed data on standard input too.
        let bytes = std::fs::read(&z).unwrap();
        let (_, got, _) = explain_json(&["--json", "-"], Some(&bytes));
        assert_eq!(strip(&got["events"]), strip(&want_events), "{ext} on stdin");
    }
}

#[test]
fn summary_since_and_exit_codes() {
    let d = tempdir();
    let f = d.path().join("kern.log");
    std::fs::write(&f, render("dmesg-T")).unwrap();
    let p = f.to_str().unwrap();
    let out = oomguard(&["explain", "--summary", p]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("memcg") && lines[0].contains("stress[4242]"),
        "{text}"
    );
    assert!(lines[2].contains("panic"), "{text}");
    // --since: the log's wall clock says 2026-11-30 18:00:01 (local time).
    let (_, doc, _) = explain_json(&["--json", "--since", "2026-11-30 17:59", p], None);
    assert_eq!(doc["events"].as_array().unwrap().len(), 3);
    let (_, doc, _) = explain_json(&["--json", "--since", "2026-11-30 18:01", p], None);
    assert_eq!(doc["events"].as_array().unwrap().len(), 0);
    // Human output names what ran out, who asked, the victim and the advice.
    let out = oomguard(&["explain", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "memory cgroup /app.slice/web.service reached its limit of 512 MiB",
        "Who asked:     stress (pid 4242)",
        "Killed:        stress (pid 4242)",
        "rank 1 of 2",
        "Also killed:   my worker (2) (4250)",
        "vm.panic_on_oom",
        "no swap",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Exit codes: 1 for an unreadable source (named), 2 for bad usage.
    let missing = d.path().join("missing.log");
    let out = oomguard(&["explain", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.log"));
    assert_eq!(
        oomguard(&["explain", "--since", "soonish", p])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(oomguard(&["explain", "-", "-"]).status.code(), Some(2));
    assert_eq!(oomguard(&["explain", "--kmsg", p]).status.code(), Some(2));
    assert_eq!(
        oomguard(&["explain", "--json", "--summary", p])
            .status
            .code(),
        Some(2)
    );
    // No report: success, and says so.
    let empty = d.path().join("empty.log");
    std::fs::write(&empty, "[    1.0] nothing here\n").unwrap();
    let out = oomguard(&["explain", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No kernel OOM report"));
}

/// `--json` keeps stdout one JSON document when a source fails: one that cannot be opened
/// leaves stdout empty (every source is opened first); one that fails while read (a gzip
/// file cut short) closes the document with the events so far and an `error` (exit 1).
#[test]
fn a_failing_source_leaves_json_whole() {
    let d = tempdir();
    let f = d.path().join("kern.log");
    std::fs::write(&f, render("dmesg-T")).unwrap();
    let p = f.to_str().unwrap();
    let missing = d.path().join("missing.log");
    let out = oomguard(&["explain", "--json", p, missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.log"));
    // A gzip stream cut in its middle: the error comes while it is read.
    let gz = d.path().join("cut.gz");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 1 200); do cat '{p}'; done | gzip -c > '{0}.full' && head -c $(( $(stat -c %s '{0}.full') / 2 )) '{0}.full' > '{0}'",
            gz.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let out = oomguard(&["explain", "--json", p, gz.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(doc["events"].as_array().unwrap().len() >= 3, "{doc}");
    let err = doc["error"].as_str().unwrap();
    assert!(err.contains("cut.gz"), "{err}");
}

/// `--json` with `TZ=UTC` on files of `d`; returns the events.
fn explain_utc(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(bin())
        .arg("explain")
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A syslog file prints no year: its dates keep one year per file, placed by its last line
/// (which its mtime places), in file order. A log that runs over New Year, read in
/// December: 2025-11-30, 2025-12-20, 2026-01-02 (not 2026-11-30, 2025-12-20, 2026-01-02 as
/// a year guessed per line from today gives); `--since` reads them the same way.
#[test]
fn syslog_dates_over_new_year_keep_one_year_per_file() {
    let d = tempdir();
    let f = d.path().join("kern.log");
    let kill = |date: &str, pid: u32| {
        format!(
            "{date} host kernel: Out of memory: Killed process {pid} (a) total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB\n"
        )
    };
    let text = kill("Nov 30 10:00:00", 1001)
        + &kill("Dec 20 10:00:00", 1002)
        + &kill("Jan  2 10:00:00", 1003)
        + "Jan  2 10:00:05 host systemd[1]: Started something.\n";
    std::fs::write(&f, &text).unwrap();
    // Written on 2026-12-07 (the file's last line is of an earlier January, so 2026-01-02).
    let written = "2026-12-07T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
    let set_mtime = |p: &std::path::Path, t: jiff::Timestamp| {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(std::time::SystemTime::from(t))
            .unwrap();
    };
    set_mtime(&f, written);
    let p = f.to_str().unwrap();
    let times = |doc: &Value| -> Vec<String> {
        doc["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["time"]["wallclock"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    let (code, doc, err) = explain_utc(&["--json", p]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        times(&doc),
        [
            "2025-11-30T10:00:00.000+00:00",
            "2025-12-20T10:00:00.000+00:00",
            "2026-01-02T10:00:00.000+00:00"
        ]
    );
    let (_, doc, _) = explain_utc(&["--json", "--since", "2025-12-15", p]);
    assert_eq!(
        times(&doc),
        [
            "2025-12-20T10:00:00.000+00:00",
            "2026-01-02T10:00:00.000+00:00"
        ]
    );
    // The same text redirected on standard input is the same file.
    let out = Command::new(bin())
        .args(["explain", "--json", "-"])
        .env("TZ", "UTC")
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(times(&doc)[0], "2025-11-30T10:00:00.000+00:00");
    // Compressed, the file's mtime is its last line's time (gzip keeps the original's).
    let gz = d.path().join("kern.log.1.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    set_mtime(&gz, "2026-01-02T10:00:05Z".parse().unwrap());
    let (_, doc, _) = explain_utc(&["--json", gz.to_str().unwrap()]);
    assert_eq!(
        times(&doc),
        [
            "2025-11-30T10:00:00.000+00:00",
            "2025-12-20T10:00:00.000+00:00",
            "2026-01-02T10:00:00.000+00:00"
        ]
    );
}

/// A gzip file whose end is missing (its trailer cut off): every report before the error is
/// given, the last ones that the parser still held open too, then the error in the one JSON
/// document (exit 1).
#[test]
fn a_read_error_keeps_the_events_before_it() {
    let d = tempdir();
    let mut text = String::new();
    for pid in 1..=5 {
        text += &format!(
            "[  {pid}.0] Out of memory: Killed process {pid} (a) total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB\n"
        );
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let cut = d.path().join("kern.log.gz");
    std::fs::write(&cut, &gz[..gz.len() - 8]).unwrap();
    let (code, doc, err) = explain_utc(&["--json", cut.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let pids: Vec<i64> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["victim"]["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids, [1, 2, 3, 4, 5], "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("kern.log.gz"),
        "{doc}"
    );
    // Text output: the same events, then the error on stderr.
    let out = oomguard(&["explain", "--summary", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
}
