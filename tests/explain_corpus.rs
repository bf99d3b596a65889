//! Every report of the shared corpus (`../shared/corpus/oom-reports`, read in place): every
//! non-null fact of its JSON must match what the parser reads. The corpus lists one entry per
//! kill, grouped by `invocation`; the parser prints one event per invocation: the first kill
//! of an invocation is its victim, the others are `also_killed`.

use std::path::Path;

use oomguard::report::{Kill, OomEvent};
use serde_json::Value;

use crate::util::{corpus_dir, require};

/// `OOMGUARD_CORPUS_DIR` when the corpus is not beside the checkout (git worktrees).
pub fn corpus_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os("OOMGUARD_CORPUS_DIR")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_dir())
}

/// The corpus's report logs, sorted; None when the corpus is not there.
pub fn corpus_logs() -> Option<Vec<std::path::PathBuf>> {
    let dir = corpus_dir().or_else(corpus_from_env)?;
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    Some(logs)
}

/// Compares one corpus entry with the event of its invocation; pushes each difference.
fn compare(entry: &Value, ev: &OomEvent, kill: Option<&Kill>, first: bool, out: &mut Vec<String>) {
    let mut check = |name: &str, want: &Value, got: Value| {
        if !want.is_null() && *want != got {
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
    if f("reaped") == Value::Bool(true) {
        let ok = ev
            .reaped
            .as_ref()
            .is_some_and(|r| kill.is_some_and(|k| k.pid == r.pid));
        check("reaped", &Value::Bool(true), Value::Bool(ok));
    }
    check(
        "chosen_pid",
        &f("chosen_pid"),
        ev.chosen.as_ref().map(|c| c.pid).into(),
    );
    check(
        "chosen_comm",
        &f("chosen_comm"),
        ev.chosen.as_ref().and_then(|c| c.comm.clone()).into(),
    );
}

/// All differences between a report's facts and the parsed events.
fn check_report(log: &Path, facts: &Value) -> Vec<String> {
    let file = std::fs::File::open(log).expect("open corpus log");
    let events = oomguard::report::parse(std::io::BufReader::new(file)).expect("read corpus log");
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

#[test]
fn every_corpus_report_matches_its_facts() {
    let logs = corpus_logs();
    if !require(
        logs.is_some(),
        "the OOM report corpus ../shared/corpus/oom-reports",
    ) {
        return;
    }
    let logs = logs.unwrap();
    assert!(logs.len() >= 40, "corpus has only {} reports", logs.len());
    let mut failures = Vec::new();
    let mut facts_checked = 0usize;
    for log in &logs {
        let json = log.with_extension("json");
        let facts: Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("facts json")).unwrap();
        facts_checked += facts["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.as_object()
                            .map_or(0, |o| o.values().filter(|v| !v.is_null()).count())
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
    eprintln!("{} reports, {facts_checked} non-null facts", logs.len());
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
