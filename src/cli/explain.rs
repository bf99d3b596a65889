//! `oomguard explain`: find the kernel OOM reports in kernel logs and explain each one.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::UsageError;
use crate::report::explain::{Analysis, analyse, render, summary_line};
use crate::report::source::{self, Journal, KMSG, Kmsg};
use crate::report::{OomEvent, events};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  oomguard explain                          the kernel ring buffer (/dev/kmsg; needs root)
  oomguard explain /var/log/kern.log        every OOM report in a log
  oomguard explain --summary /var/log/kern.log.*.gz   one line per event over rotated logs
  dmesg -T | oomguard explain -             from standard input
  oomguard explain journal.json             a journal exported with journalctl -k -o json
  oomguard explain --journalctl --since 2h  the journal's kernel messages of the last two hours
  oomguard explain --kmsg --json            machine-readable, from the ring buffer
  oomguard explain --follow                 print each new OOM event as the kernel reports it

Reads dmesg (also -T, --time-format iso, -x), syslog, journalctl short formats and its JSON
(journalctl -o json), raw /dev/kmsg records and prefix-less text; .gz, .xz and .zst files are
decompressed. A log of several machines (a central syslog, journalctl -m) is read machine by
machine, by the host each line names: their reports may interleave, and each event names its host.
Exit codes: 0 success (also when no report was found), 1 a source cannot be read, 2 bad usage.")]
pub struct ExplainArgs {
    /// Kernel log files (plain, .gz, .xz, .zst), or - for standard input. None: the kernel
    /// ring buffer.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Read the kernel ring buffer (/dev/kmsg) to its end, without waiting.
    #[arg(long, conflicts_with_all = ["paths", "journalctl"])]
    pub kmsg: bool,
    /// Read the kernel messages of the systemd journal (journalctl -k).
    #[arg(long, conflicts_with = "paths")]
    pub journalctl: bool,
    /// Keep reading /dev/kmsg and print each new OOM event as it completes (JSON: one
    /// object per line).
    #[arg(long, conflicts_with_all = ["paths", "journalctl", "kmsg", "summary"])]
    pub follow: bool,
    /// One JSON document {"events": [...]} on stdout.
    #[arg(long)]
    pub json: bool,
    /// One line per event (time, kind, victim, size, who asked, cgroup).
    #[arg(long, conflicts_with = "json")]
    pub summary: bool,
    /// Only events at or after TIME: RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30), a
    /// local date and time (2026-11-30 08:00), or a DURATION ago (90s, 15m, 2h, 3d).
    /// Events whose time cannot be placed are left out (counted on stderr).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

/// One event of `--json`: the parsed facts plus the analysis.
#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(flatten)]
    event: &'a OomEvent,
    source: &'a str,
    analysis: JsonAnalysis<'a>,
}

#[derive(Serialize)]
struct JsonAnalysis<'a> {
    victim_rank: Option<usize>,
    eligible_tasks: usize,
    margin_pages: Option<i64>,
    total_pages: Option<u64>,
    approximate: bool,
    not_by_badness: Option<&'a str>,
    advice: &'a [String],
}

enum Src {
    Stdin,
    File(PathBuf),
    Kmsg,
    Journal,
}

impl Src {
    fn name(&self) -> String {
        match self {
            Src::Stdin => "-".into(),
            Src::File(p) => p.display().to_string(),
            Src::Kmsg => KMSG.into(),
            Src::Journal => "journalctl -k".into(),
        }
    }
}

/// Writes events as they come, in the chosen format.
struct Out<'a, W: Write> {
    w: W,
    json: bool,
    summary: bool,
    json_lines: bool,
    count: usize,
    since: Option<jiff::Timestamp>,
    boot: Option<jiff::Timestamp>,
    now: &'a jiff::Zoned,
    /// What places the current source's year-less dates (syslog, journal `short`): see
    /// [`crate::report::time::year_anchor`]. `--since` and the JSON times read them alike.
    anchor: jiff::Zoned,
    undated: usize,
}

impl<W: Write> Out<'_, W> {
    fn begin(&mut self) -> io::Result<()> {
        if self.json && !self.json_lines {
            self.w.write_all(b"{\"events\": [")?;
        } else if self.summary {
            writeln!(self.w, "TIME  KIND  VICTIM  RSS  INVOKER  CGROUP  HOST")?;
        }
        Ok(())
    }

    fn event(&mut self, mut ev: OomEvent, src: &str, live: bool) -> io::Result<()> {
        // Live sources of this boot: place seconds-since-boot on the wall clock.
        if live
            && ev.time.wallclock.is_none()
            && let (Some(m), Some(boot)) = (ev.time.monotonic_s, self.boot)
            && let Ok(t) = boot.checked_add(jiff::SignedDuration::from_secs_f64(m))
        {
            ev.time.wallclock = Some(
                t.to_zoned(self.now.time_zone().clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
                    .to_string(),
            );
        }
        // `--since` and JSON times read a log's wall-clock text alike: the year of a syslog
        // date from the source's anchor (one year per source, in file order).
        let at = if let Some(since) = self.since {
            let boot = if live { self.boot } else { None };
            Some((
                since,
                crate::report::time::instant(&ev.time, boot, &self.anchor),
            ))
        } else {
            None
        };
        // JSON times are RFC 3339 (the contract): a log's own wall-clock text (`dmesg -T`,
        // syslog, journal) as an instant in this machine's zone; `raw` keeps the text as the
        // log printed it. Text that is no known time: no wallclock.
        if self.json
            && let Some(w) = &ev.time.wallclock
        {
            ev.time.wallclock = crate::report::time::wallclock_rfc3339(w, &self.anchor);
        }
        let ev = &ev;
        if let Some((since, at)) = at {
            match at {
                Some(t) if t >= since => {}
                Some(_) => return Ok(()),
                None => {
                    self.undated += 1;
                    return Ok(());
                }
            }
        }
        self.count += 1;
        if self.json {
            let a: Analysis = analyse(ev);
            let j = JsonEvent {
                event: ev,
                source: src,
                analysis: JsonAnalysis {
                    victim_rank: a.victim_rank,
                    eligible_tasks: a.ranking.iter().filter(|r| r.eligible).count(),
                    margin_pages: a.margin_pages,
                    total_pages: a.total_pages,
                    approximate: a.approximate,
                    not_by_badness: a.not_by_badness.as_deref(),
                    advice: &a.advice,
                },
            };
            if self.json_lines {
                serde_json::to_writer(&mut self.w, &j)?;
                self.w.write_all(b"\n")?;
                self.w.flush()?;
            } else {
                if self.count > 1 {
                    self.w.write_all(b",")?;
                }
                self.w.write_all(b"\n  ")?;
                serde_json::to_writer(&mut self.w, &j)?;
            }
        } else if self.summary {
            writeln!(self.w, "{}", crate::values::escape_lines(&summary_line(ev)))?;
        } else {
            if self.count > 1 {
                writeln!(self.w)?;
            }
            write!(
                self.w,
                "[{}] {}: {}",
                self.count,
                crate::values::escape_lines(src),
                crate::values::escape_lines(&render(ev))
            )?;
            self.w.flush()?;
        }
        Ok(())
    }

    /// A source failed after the output began: the JSON document is closed with the error
    /// in it (`"error"`), so that stdout stays one document (the exit status is 1), and what
    /// was written is flushed. Returns the error.
    fn cut_short(&mut self, e: anyhow::Error) -> anyhow::Error {
        if self.json && !self.json_lines {
            let msg = serde_json::to_string(&format!("{e:#}")).unwrap_or_default();
            let _ = write!(self.w, "\n], \"error\": {msg}}}\n");
        }
        let _ = self.w.flush();
        e
    }

    fn end(&mut self, sources: &str) -> io::Result<()> {
        if self.json && !self.json_lines {
            self.w.write_all(b"\n]}\n")?;
        } else if self.count == 0 && !self.summary {
            writeln!(self.w, "No kernel OOM report found in {sources}.")?;
        }
        self.w.flush()?;
        if self.undated > 0 {
            eprintln!(
                "oomguard: {} event(s) left out by --since: their time is not in the log",
                self.undated
            );
        }
        Ok(())
    }
}

/// The anchor of a source's year-less dates ([`crate::report::time::year_anchor`]): for a
/// file (or standard input redirected from one), its last stamped line, placed by its mtime;
/// for a stream, now.
fn year_anchor(src: &Src, now: &jiff::Zoned) -> jiff::Zoned {
    let file = match src {
        Src::File(p) => std::fs::File::open(p).ok(),
        Src::Stdin => {
            use std::os::fd::AsFd;
            io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::fs::File::from)
        }
        Src::Kmsg | Src::Journal => None,
    };
    let Some((written, last)) = file.as_ref().and_then(source::written_and_last_stamp) else {
        return now.clone();
    };
    let written = jiff::Timestamp::try_from(written)
        .map(|t| t.to_zoned(now.time_zone().clone()))
        .unwrap_or_else(|_| now.clone());
    crate::report::time::year_anchor(last.as_deref(), &written)
}

/// When this machine booted (now minus /proc/uptime), for monotonic stamps of live sources.
fn boot_time(now: &jiff::Zoned) -> Option<jiff::Timestamp> {
    let up = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = up.split_whitespace().next()?.parse().ok()?;
    now.timestamp()
        .checked_sub(jiff::SignedDuration::from_secs_f64(secs))
        .ok()
}

pub fn run(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let now = jiff::Zoned::now();
    let since = match &a.since {
        Some(s) => Some(crate::report::time::parse_since(s, &now).map_err(UsageError)?),
        None => None,
    };
    let stdout = io::stdout();
    let mut out = Out {
        w: io::BufWriter::new(stdout.lock()),
        json: a.json,
        summary: a.summary,
        json_lines: a.follow,
        count: 0,
        since,
        boot: boot_time(&now),
        now: &now,
        anchor: now.clone(),
        undated: 0,
    };
    if a.follow {
        out.begin()?;
        source::follow_kmsg(Path::new(KMSG), std::time::Duration::from_secs(3), |ev| {
            out.event(ev, KMSG, true)
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let sources: Vec<Src> = if a.kmsg || (a.paths.is_empty() && !a.journalctl) {
        vec![Src::Kmsg]
    } else if a.journalctl {
        vec![Src::Journal]
    } else {
        a.paths
            .iter()
            .map(|p| {
                if p.as_os_str() == "-" {
                    Src::Stdin
                } else {
                    Src::File(p.clone())
                }
            })
            .collect()
    };
    if sources.iter().filter(|s| matches!(s, Src::Stdin)).count() > 1 {
        return Err(UsageError("'-' (standard input) can be given only once".into()).into());
    }
    // The output begins once the first source is open, and every file was opened once
    // before (each is read only when its turn comes: a glob of rotated logs holds one file
    // and its buffers at a time): a missing file or an unreadable /dev/kmsg leaves stdout
    // empty, not a JSON document cut short.
    for src in &sources {
        if let Src::File(p) = src {
            drop(source::open_file(p)?);
        }
    }
    let names: Vec<String> = sources.iter().map(Src::name).collect();
    let mut begun = false;
    for src in &sources {
        let name = src.name();
        let mut journal = None;
        let opened = (|| -> anyhow::Result<(Box<dyn BufRead>, bool)> {
            Ok(match src {
                Src::Stdin => (
                    source::decompress(BufReader::with_capacity(64 * 1024, io::stdin()))
                        .context("reading standard input")?,
                    false,
                ),
                Src::File(p) => (source::open_file(p)?, false),
                Src::Kmsg => (
                    Box::new(BufReader::with_capacity(
                        256 * 1024,
                        Kmsg::open(Path::new(KMSG), true)?,
                    )),
                    true,
                ),
                Src::Journal => {
                    let mut j = Journal::spawn()?;
                    let stdout = j.child.stdout.take().context("journalctl stdout")?;
                    journal = Some(j);
                    (Box::new(BufReader::with_capacity(256 * 1024, stdout)), true)
                }
            })
        })();
        let (reader, live) = match opened {
            Ok(r) => r,
            Err(e) if !begun => return Err(e),
            Err(e) => return Err(out.cut_short(e)),
        };
        out.anchor = year_anchor(src, &now);
        if !begun {
            out.begin()?;
            begun = true;
        }
        // --summary shows no task row: none is kept (a dump of 50 000 tasks costs no memory).
        let evs = if a.summary {
            events(reader).without_task_rows()
        } else {
            events(reader)
        };
        for ev in evs {
            match ev {
                Ok(ev) => out.event(ev, &name, live)?,
                Err(e) => {
                    let e = anyhow::Error::new(e).context(format!("reading {name}"));
                    return Err(out.cut_short(e));
                }
            }
        }
        if let Some(j) = journal
            && let Err(e) = j.finish()
        {
            return Err(out.cut_short(e.into()));
        }
    }
    out.end(&names.join(", "))?;
    Ok(ExitCode::SUCCESS)
}
