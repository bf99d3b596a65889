//! `oomguard events`: reads the event log back as a table or JSON lines, optionally following
//! it. Follow-ups of an OOM event (`missing`, `restart`: they carry `after`, the event they
//! follow) are shown under the kill they belong to.
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::UsageError;
use crate::record::event::{ACTIONS, Record};
use crate::record::eventlog;
use crate::record::follow::Tail;
use anyhow::Context;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard events                          every event as a table\n  oomguard events --since 1h               the last hour\n  oomguard events --since 2026-11-30T08:00:00Z --json | jq .victim.comm\n  oomguard events --follow                 keep printing new events as they are written\n  oomguard events --action kill --action kernel_kill\n\nFollow-ups (missing, restart) are printed under the kill they belong to, marked with '↳'."
)]
pub struct EventsArgs {
    /// The event log to read (default: /var/lib/oomguard/events.jsonl for root, else
    /// oomguard/events.jsonl under $XDG_STATE_HOME, ~/.local/state or the user database's
    /// home, else /tmp/oomguard-UID/events.jsonl: where `run` writes it by default).
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Print the records as JSON lines: each record parsed and written back out, so fields and
    /// values are those of the log (unknown fields kept) but key order and spacing may differ.
    #[arg(long)]
    pub json: bool,
    /// Only events at or after TIME: RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30), a
    /// local date and time (2026-11-30 08:00), or a DURATION ago (90s, 15m, 2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only these actions (kill, dry_run, kill_failed, kill_backoff, kernel_kill, warn, protect,
    /// missing, restart).
    #[arg(long, value_name = "ACTION")]
    pub action: Vec<String>,
    /// Keep running and print new events as they are appended.
    #[arg(short, long)]
    pub follow: bool,
}

/// Parses `--since` (see [`crate::report::time::parse_since`], shared with `explain`).
pub fn parse_since(s: &str, now: jiff::Zoned) -> Result<jiff::Timestamp, UsageError> {
    crate::report::time::parse_since(s, &now).map_err(UsageError)
}

/// The filter the flags ask for.
struct Filter {
    since: Option<jiff::Timestamp>,
    actions: Vec<String>,
}

impl Filter {
    /// Checks `--action` against the kinds this version writes (a usage error otherwise).
    fn new(since: Option<jiff::Timestamp>, actions: Vec<String>) -> Result<Filter, UsageError> {
        if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
            return Err(UsageError(format!(
                "--action '{bad}': not an event action; the actions are {}",
                ACTIONS.join(", ")
            )));
        }
        Ok(Filter { since, actions })
    }

    fn keep(&self, rec: &Record) -> bool {
        if let Some(since) = self.since
            && rec.timestamp().is_none_or(|t| t < since)
        {
            return false;
        }
        self.actions.is_empty() || self.actions.iter().any(|x| x == rec.event.action())
    }
}

/// The local time of a record, `YYYY-MM-DD HH:MM:SS`.
fn short_time(time: &str) -> String {
    match time.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => time.to_string(),
    }
}

/// PID and COMM columns.
fn who(pid: Option<i32>, comm: Option<&str>) -> (String, String) {
    (
        pid.map_or_else(|| "-".into(), |p| p.to_string()),
        crate::values::escape_text(comm.unwrap_or("-")).into_owned(),
    )
}

const HEADER: &str = "TIME                 ACTION       PID      COMM             DETAIL";

/// One table row.
pub fn row(rec: &Record) -> String {
    let w = rec.event.who();
    let (pid, comm) = who(w.map(|w| w.0), w.map(|w| w.1));
    // The DETAIL names what the record holds (a rule's name, a cgroup from the kernel log, a
    // restart command, an error): control characters escaped as for the names, whoever wrote
    // the line.
    let detail = rec.event.summary();
    let detail = crate::values::escape_text(&detail);
    match rec.event.after() {
        Some(after) => {
            let (apid, acomm) = who(after.pid, after.comm.as_deref());
            format!(
                "  ↳ {:<17} {:<12} {:<8} {:<16} {} (after {} of {} {} at {})",
                short_time(&rec.time),
                rec.event.action(),
                pid,
                comm,
                detail,
                crate::values::escape_text(&after.action),
                apid,
                acomm,
                short_time(&after.time)
            )
        }
        None => format!(
            "{:<20} {:<12} {:<8} {:<16} {}",
            short_time(&rec.time),
            rec.event.action(),
            pid,
            comm,
            detail
        ),
    }
}

/// The key that ties a follow-up to its event: the event's time and action.
fn event_key(rec: &Record) -> (String, String) {
    (rec.time.clone(), rec.event.action().to_string())
}

/// Orders records for the table: each follow-up right after the event it follows (when that
/// event is among `recs`), everything else in log order.
pub fn group(recs: Vec<Record>) -> Vec<Record> {
    let mut follow: HashMap<(String, String), Vec<Record>> = HashMap::new();
    let mut present: std::collections::HashSet<(String, String)> = recs
        .iter()
        .filter(|r| r.event.after().is_none())
        .map(event_key)
        .collect();
    let mut main = Vec::new();
    for r in recs {
        if let Some(a) = r.event.after() {
            let k = (a.time.clone(), a.action.clone());
            if present.contains(&k) {
                follow.entry(k).or_default().push(r);
                continue;
            }
        }
        main.push(r);
    }
    let mut out = Vec::new();
    for r in main {
        let k = event_key(&r);
        out.push(r);
        if present.remove(&k)
            && let Some(f) = follow.remove(&k)
        {
            out.extend(f);
        }
    }
    out
}

fn print(out: &mut impl Write, rec: &Record, json: bool) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, rec)?;
        writeln!(out)
    } else {
        writeln!(out, "{}", row(rec))
    }
}

fn warn_unparsed(bad: &eventlog::Unparsed, path: &Path) {
    if let Some(w) = bad.warning(path) {
        eprintln!("oomguard: warning: {w}");
    }
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .event_log
        .clone()
        .unwrap_or_else(eventlog::default_path);
    let since = match &args.since {
        Some(s) => Some(parse_since(s, jiff::Zoned::now())?),
        None => None,
    };
    let filter = Filter::new(since, args.action.clone())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !path.exists() && !args.follow {
        anyhow::bail!(
            "no event log at {} (the daemon writes it when something happens; --event-log FILE \
             reads another)",
            path.display()
        );
    }
    let mut tail = Tail::new(&path);
    // Only complete lines now; a partial tail is picked up by --follow or reported. Read in
    // parts: JSON lines go out as they are read, the table keeps only the records that pass
    // the filter (it puts follow-ups under their kill).
    let (mut total, mut shown) = (0, 0);
    let mut recs: Vec<Record> = Vec::new();
    let mut bad = eventlog::Unparsed::default();
    loop {
        let b = tail
            .read()
            .with_context(|| format!("cannot read event log {}", path.display()))?;
        total += b.records.len();
        bad.absorb(b.unparsed);
        for r in b.records.into_iter().filter(|r| filter.keep(r)) {
            shown += 1;
            if args.json {
                print(&mut out, &r, true)?;
            } else {
                recs.push(r);
            }
        }
        if !b.more {
            break;
        }
    }
    out.flush()?;
    warn_unparsed(&bad, &path);
    if tail.has_partial_line() && !args.follow {
        eprintln!(
            "oomguard: warning: {}: skipped a torn last line",
            path.display()
        );
    }
    if shown == 0 && path.exists() {
        if total == 0 {
            eprintln!(
                "oomguard: {}: no events recorded yet{}",
                path.display(),
                if args.follow {
                    "; waiting for new ones"
                } else {
                    ""
                }
            );
        } else {
            eprintln!(
                "oomguard: {}: none of its {total} event(s) match{}",
                path.display(),
                if args.follow {
                    "; waiting for new ones"
                } else {
                    ""
                }
            );
        }
    }
    if !args.json && !recs.is_empty() {
        writeln!(out, "{HEADER}")?;
        for r in &group(recs) {
            print(&mut out, r, false)?;
        }
    }
    out.flush()?;
    if args.follow {
        loop {
            let b = tail
                .read()
                .with_context(|| format!("cannot read event log {}", path.display()))?;
            warn_unparsed(&b.unparsed, &path);
            for r in b.records.iter().filter(|r| filter.keep(r)) {
                print(&mut out, r, args.json)?;
            }
            out.flush()?;
            if !b.more {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn since_accepts_instants_dates_and_durations() {
        let now: jiff::Zoned = "2026-11-30T18:00:00+00:00[UTC]".parse().unwrap();
        let t = |s: &str| parse_since(s, now.clone()).unwrap().to_string();
        assert_eq!(t("2026-11-30T08:00:00Z"), "2026-11-30T08:00:00Z");
        assert_eq!(t("2026-11-29"), "2026-11-29T00:00:00Z");
        assert_eq!(t("2026-11-30 17:30"), "2026-11-30T17:30:00Z");
        assert_eq!(t("15m"), "2026-11-30T17:45:00Z");
        assert_eq!(t("2d"), "2026-11-28T18:00:00Z");
        assert!(parse_since("yesterday", now.clone()).is_err());
        assert!(parse_since("15", now).is_err());
    }

    #[test]
    fn follow_ups_go_under_their_kill() {
        let k1 = json!({"time": "2026-11-30T18:00:00.000+00:00", "action": "kill",
            "victim": {"pid": 7, "comm": "hog", "rss_kb": 1024}, "trigger": {"reason": "low_memory_kill"}});
        let k2 = json!({"time": "2026-11-30T18:00:05.000+00:00", "action": "kernel_kill", "oom_kills": 1});
        let miss = json!({"time": "2026-11-30T18:00:06.000+00:00", "action": "missing", "watch": "nginx",
            "after": {"time": "2026-11-30T18:00:00.000+00:00", "action": "kill", "pid": 7, "comm": "hog"}});
        let orphan = json!({"time": "2026-11-30T18:00:07.000+00:00", "action": "restart", "watch": "db",
            "after": {"time": "2026-11-29T00:00:00.000+00:00", "action": "kill"}, "ok": true,
            "argv": ["true"], "attempt": 1, "max_restarts": 3});
        let g = group(
            [k1, k2, miss, orphan]
                .into_iter()
                .map(|v| Record::from_value(v).unwrap())
                .collect(),
        );
        let actions: Vec<&str> = g.iter().map(|r| r.event.action()).collect();
        assert_eq!(actions, ["kill", "missing", "kernel_kill", "restart"]);
        let r = row(&g[1]);
        assert!(
            r.starts_with("  ↳ ") && r.contains("after kill of 7 hog"),
            "{r}"
        );
        assert!(row(&g[0]).contains("reason low_memory_kill, rss 1.0 MiB"));
        assert!(row(&g[3]).contains("'db' attempt 1/3: true → ok"));
    }

    /// Text from the record in the DETAIL column is escaped like the names: no raw control
    /// character reaches the terminal.
    #[test]
    fn the_detail_column_escapes_control_characters() {
        let kk = json!({"time": "2026-11-30T18:00:00.000+00:00", "action": "kernel_kill",
            "oom_kills": 1, "counter": "c", "constraint": "memcg", "oom_memcg": "/a\x1b]2;x\x07\nb"});
        let r = row(&Record::from_value(kk).unwrap());
        assert!(!r.chars().any(|c| c.is_control()), "{r:?}");
        assert!(
            r.contains("at the limit of cgroup /a\\x1b]2;x\\x07\\nb"),
            "{r}"
        );
        let miss = json!({"time": "2026-11-30T18:00:06.000+00:00", "action": "missing",
            "watch": "w\rx", "after": {"time": "t", "action": "ki\x1bll"}});
        let r = row(&Record::from_value(miss).unwrap());
        assert!(!r.chars().any(|c| c.is_control()), "{r:?}");
        assert!(
            r.contains("'w\\rx'") && r.contains("after ki\\x1bll"),
            "{r}"
        );
    }

    #[test]
    fn an_unknown_action_is_a_usage_error_listing_the_actions() {
        let e = Filter::new(None, vec!["kill".into(), "bogus".into()])
            .err()
            .unwrap();
        assert!(e.0.contains("--action 'bogus'"), "{}", e.0);
        for a in ACTIONS {
            assert!(e.0.contains(a), "{}", e.0);
        }
        assert!(Filter::new(None, ACTIONS.iter().map(|a| a.to_string()).collect()).is_ok());
    }
}
