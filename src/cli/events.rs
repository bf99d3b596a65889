//! `oomguard events`: reads the event log back as a table or JSON lines, optionally following
//! it. Follow-ups of an OOM event (`missing`, `restart`: they carry `after`, the event they
//! follow) are shown under the kill they belong to.
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::UsageError;
use crate::record::eventlog;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard events                          every event as a table\n  oomguard events --since 1h               the last hour\n  oomguard events --since 2026-11-30T08:00:00Z --json | jq .victim.comm\n  oomguard events --follow                 keep printing new events as they are written\n  oomguard events --action kill --action kernel_kill\n\nFollow-ups (missing, restart) are printed under the kill they belong to, marked with '↳'."
)]
pub struct EventsArgs {
    /// The event log to read (default: /var/lib/oomguard/events.jsonl for root, else
    /// $XDG_STATE_HOME/oomguard/events.jsonl).
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Print the records as JSON lines, as written.
    #[arg(long)]
    pub json: bool,
    /// Only events at or after TIME: RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30), a
    /// local date and time (2026-11-30 08:00), or a DURATION ago (90s, 15m, 2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only these actions (kill, dry_run, kernel_kill, warn, protect, missing, restart).
    #[arg(long, value_name = "ACTION")]
    pub action: Vec<String>,
    /// Keep running and print new events as they are appended.
    #[arg(short, long)]
    pub follow: bool,
}

/// Parses `--since`: an instant, a date or a duration before `now`.
pub fn parse_since(s: &str, now: jiff::Zoned) -> Result<jiff::Timestamp, UsageError> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let tz = now.time_zone().clone();
    if let Ok(dt) = t.replace(' ', "T").parse::<jiff::civil::DateTime>()
        && let Ok(z) = dt.to_zoned(tz.clone())
    {
        return Ok(z.timestamp());
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>()
        && let Ok(z) = d.to_zoned(tz)
    {
        return Ok(z.timestamp());
    }
    let dur = if let Some(days) = t.strip_suffix('d') {
        days.parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0 && *d < 1e6)
            .map(|d| Duration::from_secs_f64(d * 86400.0))
    } else {
        t.parse::<crate::values::Dur>().ok().map(|d| d.0)
    };
    match dur.and_then(|d| jiff::SignedDuration::try_from(d).ok()) {
        Some(d) => now
            .timestamp()
            .checked_sub(d)
            .map_err(|e| UsageError(format!("--since {s}: {e}"))),
        None => Err(UsageError(format!(
            "--since '{s}': not a time; give RFC 3339 (2026-11-30T08:00:00Z), a date \
             (2026-11-30), a local time (2026-11-30 08:00) or a duration ago (15m, 2h, 3d)"
        ))),
    }
}

fn record_ts(rec: &Value) -> Option<jiff::Timestamp> {
    rec.get("time")?.as_str()?.parse().ok()
}

/// The filter the flags ask for.
struct Filter {
    since: Option<jiff::Timestamp>,
    actions: Vec<String>,
}

impl Filter {
    fn keep(&self, rec: &Value) -> bool {
        if let Some(since) = self.since
            && record_ts(rec).is_none_or(|t| t < since)
        {
            return false;
        }
        self.actions.is_empty()
            || rec
                .get("action")
                .and_then(Value::as_str)
                .is_some_and(|a| self.actions.iter().any(|x| x == a))
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn kb(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_u64)
        .map(|n| crate::values::Size(n * 1024).to_string())
}

/// Whether the record is a follow-up of an OOM event.
fn is_follow_up(rec: &Value) -> bool {
    rec.get("after").is_some_and(Value::is_object)
}

/// The key that ties a follow-up to its event: the event's time and action.
fn event_key(rec: &Value) -> (String, String) {
    (s(rec, "time").to_string(), s(rec, "action").to_string())
}

/// The local time of a record, `YYYY-MM-DD HH:MM:SS`.
fn short_time(rec: &Value) -> String {
    match record_ts(rec) {
        Some(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => s(rec, "time").to_string(),
    }
}

/// What a record says, in a few words (the DETAIL column).
pub fn detail(rec: &Value) -> String {
    let victim = rec.get("victim").unwrap_or(&Value::Null);
    let trig = rec.get("trigger").unwrap_or(&Value::Null);
    match s(rec, "action") {
        "kill" | "dry_run" => {
            let mut d = format!("reason {}", s(trig, "reason"));
            if let Some(r) = kb(victim, "rss_kb") {
                d += &format!(", rss {r}");
            }
            if let Some(rule) = victim.get("rule").and_then(Value::as_str) {
                d += &format!(", rule {rule}");
            }
            if let Some(sigs) = rec.get("signals").and_then(Value::as_array) {
                let names: Vec<&str> = sigs.iter().map(|x| s(x, "signal")).collect();
                if !names.is_empty() {
                    d += &format!(", sent {}", names.join("+"));
                }
            }
            if let Some(o) = rec.get("outcome") {
                if o.get("exited").and_then(Value::as_bool) == Some(true) {
                    d += ", exited";
                    if let Some(ms) = o.get("exit_ms").and_then(Value::as_u64) {
                        d += &format!(" after {ms}ms");
                    }
                } else if o.get("exited").is_some() {
                    d += ", did not exit";
                }
                if let Some(f) = kb(o, "freed_kb") {
                    d += &format!(", freed {f}");
                }
            }
            d
        }
        "kernel_kill" => format!(
            "kernel OOM killer acted {} time(s) ({})",
            rec.get("oom_kills").and_then(Value::as_u64).unwrap_or(0),
            s(rec, "counter")
        ),
        "warn" => {
            let mut d = format!("memory use {}", s(rec, "state"));
            if let Some(u) = rec.get("used_pct").and_then(Value::as_f64) {
                d += &format!(" {u:.1}%");
            }
            if let Some(w) = rec.get("level_pct").and_then(Value::as_f64) {
                d += &format!(" (warning level {w}%)");
            }
            if let Some(a) = kb(rec, "available_kb") {
                d += &format!(", {a} available");
            }
            d
        }
        "protect" => {
            let adj = rec
                .get("oom_score_adj")
                .map(|v| v.to_string())
                .unwrap_or_default();
            match rec.get("error").and_then(Value::as_str) {
                Some(e) => format!("oom_score_adj {adj} refused: {e}"),
                None => format!("oom_score_adj {adj} written"),
            }
        }
        "missing" => format!("watched '{}' is not running", s(rec, "watch")),
        "restart" => {
            let argv: Vec<&str> = rec
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let res = if rec.get("ok").and_then(Value::as_bool) == Some(true) {
                "ok".to_string()
            } else {
                match rec.get("error").and_then(Value::as_str) {
                    Some(e) => format!("failed: {e}"),
                    None => "failed".into(),
                }
            };
            format!(
                "'{}' attempt {}/{}: {} → {res}",
                s(rec, "watch"),
                rec.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                rec.get("max_restarts").and_then(Value::as_u64).unwrap_or(0),
                argv.join(" ")
            )
        }
        _ => String::new(),
    }
}

/// PID and COMM columns: the victim's, or the record's own.
fn who(rec: &Value) -> (String, String) {
    let src = rec.get("victim").unwrap_or(rec);
    let pid = src
        .get("pid")
        .and_then(Value::as_i64)
        .map(|p| p.to_string())
        .unwrap_or_else(|| "-".into());
    let comm = crate::values::escape_text(src.get("comm").and_then(Value::as_str).unwrap_or("-"))
        .into_owned();
    (pid, comm)
}

const HEADER: &str = "TIME                 ACTION       PID      COMM             DETAIL";

/// One table row.
pub fn row(rec: &Value) -> String {
    let (pid, comm) = who(rec);
    if is_follow_up(rec) {
        let after = &rec["after"];
        let (apid, acomm) = who(after);
        format!(
            "  ↳ {:<17} {:<12} {:<8} {:<16} {} (after {} of {} {} at {})",
            short_time(rec),
            s(rec, "action"),
            pid,
            comm,
            detail(rec),
            s(after, "action"),
            apid,
            acomm,
            short_time(after)
        )
    } else {
        format!(
            "{:<20} {:<12} {:<8} {:<16} {}",
            short_time(rec),
            s(rec, "action"),
            pid,
            comm,
            detail(rec)
        )
    }
}

/// Orders records for the table: each follow-up right after the event it follows (when that
/// event is among `recs`), everything else in log order.
pub fn group(recs: Vec<Value>) -> Vec<Value> {
    let mut follow: HashMap<(String, String), Vec<Value>> = HashMap::new();
    let mut present: std::collections::HashSet<(String, String)> = recs
        .iter()
        .filter(|r| !is_follow_up(r))
        .map(event_key)
        .collect();
    let mut main = Vec::new();
    for r in recs {
        if is_follow_up(&r) {
            let k = event_key(&r["after"]);
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

fn print(out: &mut impl Write, rec: &Value, json: bool) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, rec)?;
        writeln!(out)
    } else {
        writeln!(out, "{}", row(rec))
    }
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .event_log
        .clone()
        .unwrap_or_else(eventlog::default_path);
    let filter = Filter {
        since: match &args.since {
            Some(s) => Some(parse_since(s, jiff::Zoned::now())?),
            None => None,
        },
        actions: args.action.clone(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !path.exists() && !args.follow {
        anyhow::bail!(
            "no event log at {} (the daemon writes it when something happens; --event-log FILE \
             reads another)",
            path.display()
        );
    }
    let mut offset = 0u64;
    let mut lines_read = 0;
    if path.exists() {
        let text = std::fs::read(&path)
            .with_context(|| format!("cannot read event log {}", path.display()))?;
        // Only complete lines now; a partial tail is picked up by --follow or reported.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        offset = complete as u64;
        let (recs, bad) = eventlog::parse(&text[..complete], 1);
        if let Some(w) = bad.warning(&path) {
            eprintln!("oomguard: warning: {w}");
        }
        lines_read = text[..complete].iter().filter(|&&b| b == b'\n').count();
        if complete < text.len() && !args.follow {
            eprintln!(
                "oomguard: warning: {}: skipped a torn last line",
                path.display()
            );
        }
        let recs: Vec<Value> = recs.into_iter().filter(|r| filter.keep(r)).collect();
        if !args.json && !recs.is_empty() {
            writeln!(out, "{HEADER}")?;
        }
        let recs = if args.json { recs } else { group(recs) };
        for r in &recs {
            print(&mut out, r, args.json)?;
        }
        out.flush()?;
    }
    if args.follow {
        follow(&path, offset, lines_read, &filter, args.json, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints records appended after `offset`, forever (until killed). Survives the file being
/// created later, truncated or replaced.
fn follow(
    path: &Path,
    mut offset: u64,
    mut lines_read: usize,
    filter: &Filter,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut ino = std::fs::metadata(path).ok().map(|m| ino_of(&m));
    loop {
        if let Ok(meta) = std::fs::metadata(path) {
            let now_ino = ino_of(&meta);
            if ino != Some(now_ino) || meta.len() < offset {
                // Replaced or truncated: start over at its beginning.
                ino = Some(now_ino);
                offset = 0;
                lines_read = 0;
                pending.clear();
            }
            if meta.len() > offset {
                let mut f = std::fs::File::open(path)
                    .with_context(|| format!("cannot read event log {}", path.display()))?;
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                offset += buf.len() as u64;
                pending.extend_from_slice(&buf);
                if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                    let complete: Vec<u8> = pending.drain(..=end).collect();
                    let (recs, bad) = eventlog::parse(&complete, lines_read + 1);
                    lines_read += complete.iter().filter(|&&b| b == b'\n').count();
                    if let Some(w) = bad.warning(path) {
                        eprintln!("oomguard: warning: {w}");
                    }
                    for r in recs.iter().filter(|r| filter.keep(r)) {
                        print(out, r, json)?;
                    }
                    out.flush()?;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ino_of(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
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
        let g = group(vec![k1, k2, miss, orphan]);
        let actions: Vec<&str> = g.iter().map(|r| s(r, "action")).collect();
        assert_eq!(actions, ["kill", "missing", "kernel_kill", "restart"]);
        let r = row(&g[1]);
        assert!(
            r.starts_with("  ↳ ") && r.contains("after kill of 7 hog"),
            "{r}"
        );
        assert!(row(&g[0]).contains("reason low_memory_kill, rss 1M"));
        assert!(row(&g[3]).contains("'db' attempt 1/3: true → ok"));
    }
}
