//! The path of records that fleet features write themselves (`warn`, `missing`, `restart`):
//! into the event log, then to the sinks that want every record (metrics, notifications),
//! as the daemon does for its own records. The warning, which the guard loop writes, does not
//! wait for its write ([`Emitter::emit_queued`]).

use std::sync::{Arc, Mutex};

use super::event::{Event, Record};

use super::eventlog::{Append, EventLog};

/// What takes every record an [`Emitter`] writes (metrics, notifications, the journal).
pub trait Sink: Send + Sync {
    /// Takes one record, as written.
    fn take(&self, rec: &Record);
    /// Runs the code of [`Sink::take`] on this thread with no effect (nothing counted, sent or
    /// logged): the daemon's warm-up, for records that first come as memory runs short.
    fn warm(&self, rec: &Record);
}

/// The fleet's sinks as they are now, for records written on a thread of their own (the
/// protection thread's `protect` records): set when the fleet starts and at every reload, so
/// that such records reach the same metrics, notifications and journal as the daemon's own.
/// Empty until then (and for a one-shot command, which has no fleet).
#[derive(Clone, Default)]
pub struct SharedSinks(Arc<Mutex<Vec<Arc<dyn Sink>>>>);

impl std::fmt::Debug for SharedSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedSinks")
            .field(&self.now().len())
            .finish()
    }
}

impl SharedSinks {
    /// Replaces the sinks (the fleet's start and each reload).
    pub fn set(&self, sinks: Vec<Arc<dyn Sink>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = sinks;
    }

    /// Hands one written record to every sink there is now.
    pub fn take(&self, rec: &Record) {
        // Not under the lock: a sink's work (a journal write) does not hold up a reload.
        for s in self.now() {
            s.take(rec);
        }
    }

    fn now(&self) -> Vec<Arc<dyn Sink>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Appends records and hands each, as written, to the sinks. Cheap to clone; usable from any
/// thread.
#[derive(Clone)]
pub struct Emitter {
    log: EventLog,
    sinks: Vec<Arc<dyn Sink>>,
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
    pub fn add_sink(&mut self, sink: Arc<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// The sinks added so far (the fleet shares them with other writers: [`SharedSinks`]).
    pub fn sinks(&self) -> &[Arc<dyn Sink>] {
        &self.sinks
    }

    /// Writes one record (waiting for the write as [`EventLog::append`] does) and hands it to
    /// the sinks; a write failure is logged (the feature goes on without it).
    pub fn emit(&self, event: Event) -> Option<Record> {
        self.send(event, Append::Wait)
    }

    /// [`Emitter::emit`] without the wait for the write: for the guard loop's own records (the
    /// warning), which nothing it does next depends on (the next kill waits for them,
    /// [`EventLog::sync`]). The sinks may see the record before it is in the file.
    pub fn emit_queued(&self, event: Event) -> Option<Record> {
        self.send(event, Append::Queue)
    }

    /// Runs what [`Emitter::emit_queued`] does and writes or hands on nothing (each sink runs
    /// [`Sink::warm`]): the daemon's warm-up, for records that come as memory runs short (a
    /// warning).
    pub fn warm_up(&self, event: Event) {
        std::hint::black_box(self.send(event, Append::Dry));
    }

    #[inline(never)]
    fn send(&self, event: Event, how: Append) -> Option<Record> {
        let action = event.action().to_string();
        match self.log.append_as(event, how) {
            Ok(rec) => {
                for s in &self.sinks {
                    if how == Append::Dry {
                        s.warm(&rec);
                    } else {
                        s.take(&rec);
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
