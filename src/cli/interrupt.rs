//! Ctrl-C and friends for the foreground subcommands (`drill`, `protect --watch`, `top`'s live
//! view): a flag set by the signal handler that the command's loop polls, so cleanup code (the
//! scratch group removed, the terminal restored) always runs.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static INTERRUPTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (signal-hook's flag: the handler only
/// stores to the atomic).
pub fn catch() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&INTERRUPTED)) {
            log::warn!("cannot catch signal {sig} ({e}); it ends the command without cleanup");
        }
    }
}

/// True once one of those signals arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
