//! Kernel OOM reports with their facts: every fact of a report's JSON must match what the
//! parser reads, a `null` fact ("the log does not say") included: there the parser must give
//! nothing either, not a value of its own making. Two sets, same shape
//! (`../shared/corpus/oom-reports/README.md`):
//! - the project's own fixtures, `tests/fixtures/oom-reports` (made by its own VM runs and
//!   cgroup OOMs, `scripts/make-oom-fixtures.sh`): always checked, also in a plain clone;
//! - the shared corpus, `../shared/corpus/oom-reports` (or `OOMGUARD_CORPUS_DIR`), read in
//!   place: checked when present and always in CI; elsewhere, without it, the test is ignored
//!   with the reason (build.rs sets `shared_corpus`), never reported as passed.
//!
//! The facts list one entry per kill, grouped by `invocation`; the parser gives one event per
//! invocation: the first kill of an invocation is its victim, the others are `also_killed`.

use std::path::{Path, PathBuf};
use std::process::Command;

use oomguard::report::{Kill, OomEvent};
use serde_json::Value;

use crate::util::{bin, corpus_dir};

/// `OOMGUARD_CORPUS_DIR` when the corpus is not beside the checkout (git worktrees).
pub fn corpus_from_env() -> Option<PathBuf> {
    std::env::var_os("OOMGUARD_CORPUS_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
}

/// The project's own fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oom-reports")
}

/// The report logs (`*.log`) of a directory, sorted; empty when it cannot be read.
pub fn report_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs
}

/// The shared corpus's report logs, sorted; None when the corpus is not there.
pub fn corpus_logs() -> Option<Vec<PathBuf>> {
    let dir = corpus_dir().or_else(corpus_from_env)?;
    Some(report_logs(&dir))
}

/// Every report the property tests may start from: the own fixtures, plus the shared corpus
/// when it is present.
pub fn all_report_logs() -> Vec<PathBuf> {
    let mut logs = report_logs(&fixtures_dir());
    logs.extend(corpus_logs().unwrap_or_default());
    logs
}

fn facts_of(log: &Path) -> Value {
    let json = log.with_extension("json");
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("{}: {e} (every .log has its facts)", json.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", json.display()))
}

/// Compares one corpus entry with the event of its invocation; pushes each difference. A
/// `null` fact must be parsed as nothing (`null`) too.
fn compare(entry: &Value, ev: &OomEvent, kill: Option<&Kill>, first: bool, out: &mut Vec<String>) {
    let mut check = |name: &str, want: &Value, got: Value| {
        if *want != got {
            out.push(format!("{name}: corpus {want}, parsed {got}"));
        }
    };
    let f = |k: &str| entry.get(k).cloned().unwrap_or(Value::Null);
    let inv = ev.invoker.as_ref();
    check("kind", &f("kind"), serde_json::to_value(ev.kind).unwrap());
    check(
        "invoker_comm",
        &f("invoker_comm"),
        inv.map(|i| i.comm.clone()).into(),
    );
    check(
        "invoker_pid",
        &f("invoker_pid"),
        inv.and_then(|i| i.pid).into(),
    );
    check(
        "invoker_oom_score_adj",
        &f("invoker_oom_score_adj"),
        inv.and_then(|i| i.oom_score_adj).into(),
    );
    check("gfp_mask", &f("gfp_mask"), ev.gfp_mask.clone().into());
    check("gfp_flags", &f("gfp_flags"), ev.gfp_flags.clone().into());
    check("order", &f("order"), ev.order.into());
    check("constraint", &f("constraint"), ev.constraint.clone().into());
    check("memcg", &f("memcg"), ev.memcg.clone().into());
    if first {
        check("task_memcg", &f("task_memcg"), ev.task_memcg.clone().into());
    }
    check("victim_pid", &f("victim_pid"), kill.map(|k| k.pid).into());
    check(
        "victim_comm",
        &f("victim_comm"),
        kill.and_then(|k| k.comm.clone()).into(),
    );
    check(
        "total_vm_kb",
        &f("total_vm_kb"),
        kill.and_then(|k| k.total_vm_kb).into(),
    );
    check(
        "anon_rss_kb",
        &f("anon_rss_kb"),
        kill.and_then(|k| k.anon_rss_kb).into(),
    );
    check(
        "file_rss_kb",
        &f("file_rss_kb"),
        kill.and_then(|k| k.file_rss_kb).into(),
    );
    check(
        "shmem_rss_kb",
        &f("shmem_rss_kb"),
        kill.and_then(|k| k.shmem_rss_kb).into(),
    );
    check("uid", &f("uid"), kill.and_then(|k| k.uid).into());
    check(
        "pgtables_kb",
        &f("pgtables_kb"),
        kill.and_then(|k| k.pgtables_kb).into(),
    );
    check(
        "victim_oom_score_adj",
        &f("victim_oom_score_adj"),
        kill.and_then(|k| k.oom_score_adj).into(),
    );
    let score = kill
        .and_then(|k| k.score)
        .or_else(|| ev.chosen.as_ref().and_then(|c| c.score));
    check("score", &f("score"), score.into());
    check(
        "tasks_listed",
        &f("tasks_listed"),
        ev.tasks.as_ref().map(|t| t.len()).into(),
    );
    // `reaped`: true when the victim's oom_reaper line is there, else null.
    let reaped = ev
        .reaped
        .as_ref()
        .is_some_and(|r| kill.is_some_and(|k| k.pid == r.pid));
    check("reaped", &f("reaped"), reaped.then_some(true).into());
    // `chosen_*` (of the invocation: checked with its first kill) are given only where the
    // chosen task is not the one killed (or nothing was killed); without them, the parser's
    // chosen task, if any, is the victim.
    let chosen = ev.chosen.as_ref();
    if !first {
        return;
    }
    if entry.get("chosen_pid").is_some() {
        check("chosen_pid", &f("chosen_pid"), chosen.map(|c| c.pid).into());
        check(
            "chosen_comm",
            &f("chosen_comm"),
            chosen.and_then(|c| c.comm.clone()).into(),
        );
    } else if let Some(c) = chosen
        && kill.is_none_or(|k| k.pid != c.pid)
    {
        out.push(format!(
            "chosen_pid: not in the corpus (the victim's), parsed {} with victim {:?}",
            c.pid,
            kill.map(|k| k.pid)
        ));
    }
}

/// All differences between a report's facts and the parsed events.
fn check_report(log: &Path, facts: &Value) -> Vec<String> {
    let file = std::fs::File::open(log).expect("open report log");
    let events = oomguard::report::parse(std::io::BufReader::new(file)).expect("read report log");
    let entries = facts["events"].as_array().expect("events array");
    let mut out = Vec::new();
    let invocations = entries
        .iter()
        .filter_map(|e| e["invocation"].as_u64())
        .max()
        .unwrap_or(0) as usize;
    if events.len() != invocations {
        out.push(format!(
            "{} invocations in the corpus, {} events parsed",
            invocations,
            events.len()
        ));
    }
    for n in 1..=invocations.min(events.len()) {
        let ev = &events[n - 1];
        let kills: Vec<&Value> = entries
            .iter()
            .filter(|e| e["invocation"].as_u64() == Some(n as u64))
            .collect();
        for (j, entry) in kills.iter().enumerate() {
            let kill = if j == 0 {
                ev.victim.as_ref()
            } else {
                ev.also_killed.get(j - 1)
            };
            let mut diffs = Vec::new();
            compare(entry, ev, kill, j == 0, &mut diffs);
            out.extend(
                diffs
                    .into_iter()
                    .map(|d| format!("invocation {n} kill {}: {d}", j + 1)),
            );
        }
        if ev.also_killed.len() + 1 > kills.len() && !kills.is_empty() {
            out.push(format!(
                "invocation {n}: {} kills in the corpus, parsed victim + {} also_killed",
                kills.len(),
                ev.also_killed.len()
            ));
        }
    }
    out
}

/// Checks every report of `logs` fact by fact: (reports, non-null facts, mismatches). The
/// null facts are checked too (they must be parsed as null), but not counted.
fn check_all(logs: &[PathBuf]) -> (usize, usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut facts_checked = 0usize;
    for log in logs {
        let facts = facts_of(log);
        facts_checked += facts["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.as_object().map_or(0, |o| {
                            o.iter()
                                .filter(|(k, v)| *k != "notes" && !v.is_null())
                                .count()
                        })
                    })
                    .sum::<usize>()
            })
            .unwrap_or(0);
        for d in check_report(log, &facts) {
            failures.push(format!(
                "{}: {d}",
                log.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    (logs.len(), facts_checked, failures)
}

#[test]
fn every_fixture_report_matches_its_facts() {
    let logs = report_logs(&fixtures_dir());
    assert!(
        logs.len() >= 8,
        "only {} reports in {} (scripts/make-oom-fixtures.sh makes them)",
        logs.len(),
        fixtures_dir().display()
    );
    // Both origins: the VM guest's kernel and this project's host cgroup v1 OOMs.
    let names: Vec<String> = logs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("-vm-")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("-host-")), "{names:?}");
    let (reports, facts, failures) = check_all(&logs);
    eprintln!("{reports} fixture reports, {facts} non-null facts");
    assert!(facts >= reports * 15, "{facts} facts in {reports} reports");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The command itself, not only the library: `oomguard explain --json FILE` on every fixture
/// names the same invocations, victims, invokers, memory cgroups and task dumps as the facts.
#[test]
fn explain_json_on_every_fixture_names_the_facts() {
    let logs = report_logs(&fixtures_dir());
    assert!(
        !logs.is_empty(),
        "no fixtures in {}",
        fixtures_dir().display()
    );
    for log in &logs {
        let name = log.file_name().unwrap().to_string_lossy().into_owned();
        let out = Command::new(bin())
            .args(["explain", "--json"])
            .arg(log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: explain failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: explain --json is not JSON: {e}"));
        let events = doc["events"].as_array().expect("events");
        let facts = facts_of(log);
        let entries = facts["events"].as_array().expect("facts events");
        let invocations = entries
            .iter()
            .filter_map(|e| e["invocation"].as_u64())
            .max()
            .unwrap_or(0) as usize;
        assert_eq!(events.len(), invocations, "{name}: events");
        for (i, ev) in events.iter().enumerate() {
            let kills: Vec<&Value> = entries
                .iter()
                .filter(|e| e["invocation"].as_u64() == Some(i as u64 + 1))
                .collect();
            let first = kills[0];
            let at = format!("{name} invocation {}", i + 1);
            assert_eq!(ev["kind"], first["kind"], "{at}: kind");
            assert_eq!(ev["victim"]["pid"], first["victim_pid"], "{at}: victim pid");
            assert_eq!(
                ev["victim"]["comm"], first["victim_comm"],
                "{at}: victim comm"
            );
            assert_eq!(
                ev["invoker"]["pid"], first["invoker_pid"],
                "{at}: invoker pid"
            );
            assert_eq!(
                ev["invoker"]["comm"], first["invoker_comm"],
                "{at}: invoker"
            );
            assert_eq!(ev["memcg"], first["memcg"], "{at}: memcg");
            let also: Vec<&Value> = ev["also_killed"]
                .as_array()
                .map(|a| a.iter().map(|k| &k["pid"]).collect())
                .unwrap_or_default();
            let want: Vec<&Value> = kills[1..].iter().map(|k| &k["victim_pid"]).collect();
            assert_eq!(also, want, "{at}: also killed");
            let listed = ev["tasks"].as_array().map(|t| t.len());
            assert_eq!(
                listed.map(|n| n as u64),
                first["tasks_listed"].as_u64(),
                "{at}: task dump rows"
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(shared_corpus),
    ignore = "the shared corpus ../shared/corpus/oom-reports is not here (or set OOMGUARD_CORPUS_DIR; touch build.rs after adding it); the project's own fixtures are checked"
)]
fn every_shared_corpus_report_matches_its_facts() {
    let logs = corpus_logs().unwrap_or_else(|| {
        panic!(
            "the shared OOM report corpus is missing: ../shared/corpus/oom-reports beside the \
             checkout, or OOMGUARD_CORPUS_DIR (CI checks it on top of tests/fixtures/oom-reports)"
        )
    });
    assert!(logs.len() >= 40, "corpus has only {} reports", logs.len());
    let (reports, facts, failures) = check_all(&logs);
    eprintln!("{reports} shared corpus reports, {facts} non-null facts");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
