//! The event log (`docs/cli-contract.md`): one JSON object per line, appended and fsynced before
//! the daemon's next action, never rewritten. Every record has `time`, `action`, `scope`,
//! `host`; the rest depends on the action. Readers skip a torn last line with a warning.
//!
//! Wire format of the records this module writes (sizes in kB, `_kb`):
//! - `kill` / `dry_run`: `trigger` {`reason`, `severity`, `available_kb`, `total_kb`,
//!   `swap_free_kb`, `swap_total_kb`, `mem_term_kb`, `mem_kill_kb`, `psi`?}, `victim`
//!   {`pid`, `comm`, `cmdline`, `uid`, `rss_kb`, `swap_kb`, `pgtables_kb`, `oom_score_adj`,
//!   `score`, `cgroup`, `rule`?}, `candidates` [{`pid`, `comm`, `score`, `rss_kb`,
//!   `oom_score_adj`, `rule`?}] (the top five), and for `kill` `signals` [{`signal`, `ms`,
//!   `pid`, `ok`, `error`?}] and `outcome` {`exited`, `exit_ms`, `freed_kb`, `released`}.
//! - `kernel_kill`: `oom_kills` (the counter's increase), `counter` (its source file).
//! - Other actions (`warn`, `protect`, `missing`, `restart`) add their own fields.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};

/// The default path: `/var/lib/oomguard/events.jsonl` for root, else
/// `$XDG_STATE_HOME/oomguard/events.jsonl` (`~/.local/state/...`).
pub fn default_path() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/oomguard/events.jsonl");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state.join("oomguard/events.jsonl")
}

/// The event log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("event log {path}: {source}")]
pub struct EventLogError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An append-only, fsynced JSON-lines log, shareable between threads.
#[derive(Clone, Debug)]
pub struct EventLog {
    inner: Arc<Mutex<File>>,
    path: PathBuf,
    scope: String,
    host: String,
}

/// The time as RFC 3339 with milliseconds and the local offset.
pub fn now_rfc3339() -> String {
    let z = jiff::Zoned::now();
    z.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// This machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

impl EventLog {
    /// Opens (creating directories and the file) for appending.
    pub fn open(path: &Path, scope: &str) -> Result<EventLog, EventLogError> {
        let err = |source| EventLogError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(EventLog {
            inner: Arc::new(Mutex::new(f)),
            path: path.to_path_buf(),
            scope: scope.to_string(),
            host: hostname(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record: `time`, `action`, `scope`, `host`, then the fields of `body` (a
    /// serializable struct or map). Written in one `write` and fsynced before returning.
    /// Returns the full record as written.
    pub fn append(&self, action: &str, body: &impl Serialize) -> Result<Value, EventLogError> {
        let mut obj = Map::new();
        obj.insert("time".into(), Value::String(now_rfc3339()));
        obj.insert("action".into(), Value::String(action.into()));
        obj.insert("scope".into(), Value::String(self.scope.clone()));
        obj.insert("host".into(), Value::String(self.host.clone()));
        if let Ok(Value::Object(m)) = serde_json::to_value(body) {
            for (k, v) in m {
                obj.insert(k, v);
            }
        }
        let rec = Value::Object(obj);
        let mut line = serde_json::to_vec(&rec).unwrap_or_default();
        line.push(b'\n');
        let err = |source| EventLogError {
            path: self.path.clone(),
            source,
        };
        let f = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (&*f).write_all(&line).map_err(err)?;
        f.sync_data().map_err(err)?;
        Ok(rec)
    }
}

/// Reads an event log: every complete JSON line. A torn or unparsable line is skipped and
/// reported in the returned warnings (with its line number).
pub fn read_all(path: &Path) -> std::io::Result<(Vec<Value>, Vec<String>)> {
    let text = std::fs::read(path)?;
    Ok(parse_lines(&text, path))
}

/// Parses JSON lines read from `path` (named in the warnings about bad lines).
pub fn parse_lines(text: &[u8], path: &Path) -> (Vec<Value>, Vec<String>) {
    let mut recs = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => recs.push(v),
            Err(e) => warnings.push(format!(
                "{}:{}: skipped a torn or bad record ({e})",
                path.display(),
                i + 1
            )),
        }
    }
    (recs, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_with_the_common_fields_and_readers_skip_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/dir/events.jsonl");
        let log = EventLog::open(&p, "system").unwrap();
        #[derive(Serialize)]
        struct B {
            victim_kb: u64,
        }
        log.append("dry_run", &B { victim_kb: 5 }).unwrap();
        log.append("kill", &B { victim_kb: 6 }).unwrap();
        // A torn tail, as after a crash mid-write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"time\":\"x")
            .unwrap();
        let (recs, warns) = read_all(&p).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(warns.len(), 1);
        assert_eq!(recs[0]["action"], "dry_run");
        assert_eq!(recs[1]["victim_kb"], 6);
        assert_eq!(recs[0]["scope"], "system");
        let t = recs[0]["time"].as_str().unwrap();
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", t).is_ok(),
            "{t}"
        );
        assert!(t.len() == "2026-11-30T17:45:19.123+00:00".len(), "{t}");
    }
}
