//! Log lines buffered per thread and written to stdout in batches: one `write` per 32 KiB
//! or per `flush_after`, instead of one per line. The lines are built by the caller; this
//! module knows nothing of their content (the access log is its one user today).
//!
//! Why: writing each access line was a syscall per request, about a tenth of the lb's CPU
//! per request. A buffer is written when it holds [`FLUSH_BYTES`] or its oldest line is
//! `flush_after` old: checked at each line, and by [`flush_due`] (every 20 ms from a
//! background service) so an idle thread's lines still go out. [`flush_all`] writes every
//! buffer when the server stops, and a thread's buffer is written when the thread ends; a
//! `SIGKILL` loses at most `flush_after` of lines. Every write goes through the process's
//! stdout lock, so lines never interleave.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::per_thread::{lock, Registry};

/// A buffer is written once it holds this much.
pub(crate) const FLUSH_BYTES: usize = 32 * 1024;

/// Append one line, built by `build` into the buffer, and write the buffer out if it is
/// due. A zero `flush_after` writes the line at once, on its own.
pub(crate) fn write_line(flush_after: Duration, build: impl FnOnce(&mut Vec<u8>)) {
    if flush_after.is_zero() {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            build(buf);
            let _ = std::io::stdout().lock().write_all(buf);
        });
        return;
    }
    PENDING.with(|pending| {
        let mut p = lock(&pending.0);
        build(&mut p.buf);
        let now = Instant::now();
        let deadline = *p
            .deadline
            .get_or_insert(crate::deadline::after(now, flush_after));
        if p.buf.len() >= FLUSH_BYTES || deadline <= now {
            p.write_out();
        }
    });
}

/// Write every buffered line now (the server is stopping; threads that already ended wrote
/// theirs as they ended).
pub(crate) fn flush_all() {
    ALL.for_each(Pending::write_out);
}

/// Write out the buffers whose oldest line is due.
pub(crate) fn flush_due() {
    let now = Instant::now();
    ALL.for_each(|p| {
        if p.deadline.is_some_and(|d| d <= now) {
            p.write_out();
        }
    });
}

/// One thread's lines waiting to be written.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// When the oldest line in `buf` must be out.
    deadline: Option<Instant>,
}

impl Pending {
    fn write_out(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stdout().lock().write_all(&self.buf);
            self.buf.clear();
        }
        self.deadline = None;
    }
}

thread_local! {
    static PENDING: Local = Local(ALL.register());
    /// The unbuffered line being built; keeps its capacity between lines.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// A thread's own handle on its buffer: when the thread ends (its runtime shut down), the
/// lines still waiting are written.
struct Local(Arc<Mutex<Pending>>);

impl Drop for Local {
    fn drop(&mut self) {
        lock(&self.0).write_out();
    }
}

/// Every thread's buffer, for [`flush_due`] and [`flush_all`].
static ALL: Registry<Pending> = Registry::new();
