//! Side threads (event-log writer, log writer, metrics, hooks, notifications, watch list,
//! protection, command-line reads, the reaper of killed processes) and what a bug in one of
//! them may do to the guard: nothing. Each runs under [`spawn`], which catches a panic (the
//! release profile unwinds for this), reports it once as an error log line and counts it
//! ([`Health::thread_panics`], `oomguard_thread_panics_total`); the thread's feature stops, the
//! guard loop goes on.
//!
//! The panic hook ([`install_panic_hook`]) sends the panic message through the log queue
//! instead of the default hook's blocking write to stderr: a stderr nobody reads must not stall
//! a thread that panics either.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Counters of what the record path dropped or survived, for the metrics and the log.
#[derive(Debug, Default)]
pub struct Health {
    /// Log lines dropped because the log sink (stderr, the journal) was not keeping up.
    pub log_lines_dropped: AtomicU64,
    /// Event records lost: the writer's queue was full, or the write failed.
    pub event_records_lost: AtomicU64,
    /// Side threads that panicked (and were contained).
    pub thread_panics: AtomicU64,
}

/// The process-wide counters.
pub static HEALTH: Health = Health {
    log_lines_dropped: AtomicU64::new(0),
    event_records_lost: AtomicU64::new(0),
    thread_panics: AtomicU64::new(0),
};

thread_local! {
    /// Set in contained threads: the panic hook leaves the message here for [`spawn`] to report.
    static CONTAINED: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Starts a named side thread whose panic is contained (see the module documentation).
pub fn spawn<F>(name: impl Into<String>, f: F) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let name = name.into();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            crate::act::harden::shed_iterator_capabilities();
            run_contained(&name, f);
        })
}

/// [`spawn`] for a thread whose work can wait: it runs at the base nice value (the daemon's
/// starting one, at least 0), not the guard loop's −20
/// ([`crate::act::harden::to_base_priority`]), and so do the processes it starts (hooks,
/// watch-list restarts).
pub fn spawn_background<F>(name: impl Into<String>, f: F) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    spawn(name, move || {
        crate::act::harden::to_base_priority();
        f()
    })
}

/// Runs `f` on this thread, containing a panic (see [`spawn`]). Returns whether `f` finished.
pub fn run_contained<F: FnOnce()>(name: &str, f: F) -> bool {
    CONTAINED.with(|c| *c.borrow_mut() = Some(None));
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        test_panic(name);
        f()
    }));
    let msg = CONTAINED.with(|c| c.borrow_mut().take()).flatten();
    match r {
        Ok(()) => true,
        Err(payload) => {
            HEALTH.thread_panics.fetch_add(1, Ordering::Relaxed);
            let msg = msg.unwrap_or_else(|| payload_text(payload.as_ref()).to_string());
            log::error!(
                "internal error: thread {name} panicked ({msg}); it has stopped and the guard goes \
                 on without it. Please report this bug."
            );
            false
        }
    }
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "no message"
    }
}

/// Routes panic messages through the log (non-blocking) instead of a blocking write to stderr;
/// in a contained thread the message is kept for the one report [`spawn`] makes.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!("{}{loc}", payload_text(info.payload()));
        let kept = CONTAINED
            .try_with(|c| match &mut *c.borrow_mut() {
                Some(slot) => {
                    *slot = Some(text.clone());
                    true
                }
                None => false,
            })
            .unwrap_or(false);
        if !kept {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            log::error!("internal error: thread {name} panicked: {text}");
            log::logger().flush();
        }
    }));
}

/// Test hook (debug builds, and builds with the `test-support` feature, which only `cargo test`
/// turns on): `OOMGUARD_TEST_PANIC=NAME[,NAME...]` makes the side threads of those names panic
/// when they start, once per name and process. The shipped binary (a release build without the
/// feature) ignores it.
#[cfg(any(debug_assertions, feature = "test-support"))]
fn test_panic(name: &str) {
    use std::sync::Mutex;
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let Some(list) = std::env::var_os("OOMGUARD_TEST_PANIC") else {
        return;
    };
    let list = list.to_string_lossy();
    if !list.split(',').any(|n| n == name) {
        return;
    }
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if done.iter().any(|n| n == name) {
        return;
    }
    done.push(name.to_string());
    drop(done);
    panic!("test panic requested by OOMGUARD_TEST_PANIC");
}

#[cfg(not(any(debug_assertions, feature = "test-support")))]
fn test_panic(_name: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_contained_and_counted() {
        let before = HEALTH.thread_panics.load(Ordering::Relaxed);
        let h = spawn("oomguard-test-side", || panic!("boom")).unwrap();
        assert!(h.join().is_ok(), "the panic escaped the thread");
        assert_eq!(HEALTH.thread_panics.load(Ordering::Relaxed), before + 1);
        assert!(run_contained("x", || {}));
    }
}
