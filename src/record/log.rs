//! Log lines on stderr (plain `oomguard: LEVEL: message`), through the `log` facade so a journald
//! logger with native fields can take its place under systemd.
//!
//! No thread that logs ever waits for the sink: a log call formats the line and puts it on a
//! bounded queue ([`QUEUE`] lines); one writer thread hands the lines to the sink (stderr, the
//! journal), where a write may block as long as it likes. When the queue is full the line is
//! dropped and counted ([`super::side::HEALTH`], `oomguard_log_lines_dropped_total`); once the
//! sink takes lines again the writer says how many were lost. A stderr pipe nobody reads or a
//! journald that stalls therefore costs log lines, never the guard loop's time.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::side::HEALTH;

/// Lines the queue holds before new ones are dropped.
pub const QUEUE: usize = 1024;

/// How long [`log::Log::flush`] (at exit) waits for queued lines to reach the sink.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// The plain stderr sink (blocking writes; used only on the writer thread).
pub struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let lvl = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let _ = writeln!(std::io::stderr().lock(), "oomguard: {lvl}: {}", r.args());
    }
    fn flush(&self) {}
}

/// One log line, owned, on its way to the writer thread.
struct Line {
    level: log::Level,
    target: String,
    msg: String,
    module: Option<&'static str>,
    file: Option<&'static str>,
    line: Option<u32>,
    kv: Vec<(String, String)>,
}

impl Line {
    /// What a log call hands to the writer thread.
    fn of(r: &log::Record) -> Box<Line> {
        let mut kv = Vec::new();
        let _ = r.key_values().visit(&mut Collect(&mut kv));
        Box::new(Line {
            level: r.level(),
            target: r.target().to_string(),
            // Names in messages come from any user: control characters escaped once, here,
            // for every sink.
            msg: crate::values::escape_text(&r.args().to_string()).into_owned(),
            module: r.module_path_static(),
            file: r.file_static(),
            line: r.line(),
            kv,
        })
    }
}

/// Runs what a log call of `r` does on the calling thread, without logging it: the daemon's
/// warm-up, for lines that first come when memory is short (a page of this code, or of the
/// call's strings, that the warm-up leaves out is read from storage then). `r` should carry
/// the call's target (`module_path!()`), which the line copies.
pub fn warm(r: &log::Record) {
    std::hint::black_box(Line::of(r));
}

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Collect<'_> {
    fn visit_pair(
        &mut self,
        k: log::kv::Key<'kvs>,
        v: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push((k.to_string(), v.to_string()));
        Ok(())
    }
}

/// The logger every thread calls: a non-blocking front for a blocking sink.
struct Queued {
    // Boxed: the channel preallocates and touches every slot, so a slot holds a pointer.
    tx: SyncSender<Box<Line>>,
    /// Lines queued and not yet handed to the sink.
    pending: &'static AtomicUsize,
}

static PENDING: AtomicUsize = AtomicUsize::new(0);

impl log::Log for Queued {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = Line::of(r);
        self.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                HEALTH.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    /// Waits (at most [`FLUSH_WAIT`]) for the queued lines to reach the sink.
    fn flush(&self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The writer thread: hands each line to the sink; after drops, says how many were lost.
fn writer(rx: Receiver<Box<Line>>, sink: Box<dyn log::Log>, pending: &AtomicUsize) {
    let mut reported = 0;
    while let Ok(l) = rx.recv() {
        let dropped = HEALTH.log_lines_dropped.load(Ordering::Relaxed);
        if dropped > reported {
            sink.log(
                &log::Record::builder()
                    .level(log::Level::Warn)
                    .target("oomguard")
                    .args(format_args!(
                        "{} log line(s) were dropped: the log output (stderr or the journal) was \
                         not taking lines fast enough",
                        dropped - reported
                    ))
                    .build(),
            );
            reported = dropped;
        }
        let kv: Vec<(&str, &str)> = l.kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sink.log(
            &log::Record::builder()
                .level(l.level)
                .target(&l.target)
                .module_path_static(l.module)
                .file_static(l.file)
                .line(l.line)
                .key_values(&kv)
                .args(format_args!("{}", l.msg))
                .build(),
        );
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Installs `sink` behind the queue and starts its writer thread (once per process; later
/// calls only change the level). Also installs the panic hook that logs through the queue.
pub fn install(sink: Box<dyn log::Log>, verbose: bool) -> bool {
    let level = if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let (tx, rx) = sync_channel(QUEUE);
    let logger = Queued {
        tx,
        pending: &PENDING,
    };
    let installed = log::set_boxed_logger(Box::new(logger)).is_ok();
    log::set_max_level(level);
    if installed {
        super::side::install_panic_hook();
        let started = std::thread::Builder::new()
            .name("oomguard-log".into())
            .spawn(move || {
                crate::act::harden::shed_iterator_capabilities();
                writer(rx, sink, &PENDING)
            });
        if started.is_err() {
            // No writer: the queue fills and lines are dropped (and counted); nothing blocks.
            let _ = writeln!(
                std::io::stderr(),
                "oomguard: error: cannot start the log thread"
            );
        }
    }
    installed
}

/// Installs the stderr logger (once; later calls only change the level).
pub fn init(verbose: bool) {
    install(Box::new(Stderr), verbose);
}

/// The error chain as one line, `context: cause: cause`, each cause said once. The library's
/// errors are complete sentences that already name their cause (`cannot read FILE: No such
/// file or directory`) and also return it from `source()` for callers that walk the chain;
/// printing every link (anyhow's `{:#}`) would then say the cause twice. A link whose text the
/// link before it already contains is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !prev.is_empty() && prev.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        prev = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that blocks while the test holds its gate, and keeps what it was given.
    struct Gated(Arc<Mutex<Vec<String>>>, Arc<Mutex<()>>);

    impl log::Log for Gated {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            let _g = self.1.lock().unwrap();
            self.0.lock().unwrap().push(r.args().to_string());
        }
        fn flush(&self) {}
    }

    #[test]
    fn a_blocked_sink_costs_lines_not_time_and_the_loss_is_told() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let (tx, rx) = sync_channel(8);
        let pending: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let q = Queued { tx, pending };
        let sink = Gated(got.clone(), gate.clone());
        std::thread::spawn(move || writer(rx, Box::new(sink), pending));
        let before = HEALTH.log_lines_dropped.load(Ordering::Relaxed);
        log::set_max_level(log::LevelFilter::Info);
        // The sink blocks on its first line; 1000 log calls still return.
        for i in 0..1000 {
            log::Log::log(
                &q,
                &log::Record::builder()
                    .level(log::Level::Info)
                    .args(format_args!("line {i}"))
                    .build(),
            );
        }
        let dropped = HEALTH.log_lines_dropped.load(Ordering::Relaxed) - before;
        assert!(dropped >= 1000 - 9 - 1, "{dropped}");
        drop(held);
        log::Log::flush(&q);
        log::Log::log(
            &q,
            &log::Record::builder()
                .level(log::Level::Info)
                .args(format_args!("after"))
                .build(),
        );
        log::Log::flush(&q);
        let got = got.lock().unwrap();
        assert_eq!(got.last().map(String::as_str), Some("after"), "{got:?}");
        assert!(
            got.iter().any(|l| l.contains("log line(s) were dropped")),
            "{got:?}"
        );
    }
}
