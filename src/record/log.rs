//! Log lines on stderr (plain `oomguard: LEVEL: message`), through the `log` facade so a journald
//! logger with native fields can take its place under systemd.

use std::io::Write;

struct Stderr {
    level: log::LevelFilter,
}

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let lvl = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            let _ = writeln!(
                std::io::stderr().lock(),
                "oomguard: {lvl}: {}",
                crate::values::escape_text(&r.args().to_string())
            );
        }
    }
    fn flush(&self) {}
}

/// Installs the stderr logger (once; later calls only change the level).
pub fn init(verbose: bool) {
    let level = if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let _ = log::set_boxed_logger(Box::new(Stderr { level }));
    log::set_max_level(level);
}
