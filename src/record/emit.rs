//! The path of records that fleet features write themselves (`warn`, `missing`, `restart`):
//! into the event log, then to the sinks that want every record (metrics, notifications),
//! as the daemon does for its own records.

use std::sync::Arc;

use super::event::{Event, Record};

use super::eventlog::EventLog;

type Sink = Arc<dyn Fn(&Record) + Send + Sync>;

/// Appends records and hands each, as written, to the sinks. Cheap to clone; usable from any
/// thread.
#[derive(Clone)]
pub struct Emitter {
    log: EventLog,
    sinks: Vec<Sink>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("log", &self.log.path())
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Emitter {
    pub fn new(log: EventLog) -> Emitter {
        Emitter {
            log,
            sinks: Vec::new(),
        }
    }

    /// Adds a sink that sees every record this emitter writes.
    pub fn add_sink(&mut self, f: impl Fn(&Record) + Send + Sync + 'static) {
        self.sinks.push(Arc::new(f));
    }

    /// Writes one record without waiting for the write (see [`EventLog::queue`]) and hands
    /// it to the sinks; a write failure is logged (the feature goes on without it).
    pub fn emit(&self, event: Event) -> Option<Record> {
        self.send(event, false)
    }

    /// Runs what [`Emitter::emit`] does and writes or hands on nothing: the daemon's warm-up,
    /// for records that come as memory runs short (a warning).
    pub fn warm_up(&self, event: Event) {
        std::hint::black_box(self.send(event, true));
    }

    #[inline(never)]
    fn send(&self, event: Event, dry: bool) -> Option<Record> {
        let action = event.action().to_string();
        match self.log.queue(event, dry) {
            Ok(rec) => {
                for s in &self.sinks {
                    if dry {
                        // The sink's vtable (a page of relocated read-only data).
                        std::hint::black_box(std::mem::size_of_val(&**s));
                    } else {
                        s(&rec);
                    }
                }
                Some(rec)
            }
            Err(e) => {
                log::error!("cannot record '{action}': {e}");
                None
            }
        }
    }
}
