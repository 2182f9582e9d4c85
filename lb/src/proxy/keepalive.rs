//! Idle upstream connections for the direct path ([`super::direct`]), one list per worker
//! thread.
//!
//! Why not pingora's connector pool: releasing a connection there spawns a watcher task (on
//! a random thread under the no-steal runtime), and taking the connection back waits for
//! that task to hand the stream over. That is a spawn and two task wake-ups per proxied
//! request, often across threads; profiles put most of the lb's extra context switches
//! there. Here an idle connection just sits in its thread's list:
//! - whether the backend closed it meanwhile is checked when it is taken, with one
//!   non-blocking read (the same test pingora makes);
//! - a connection past its upstream's `timeouts.idle` is never handed out, and [`sweep`]
//!   (run every second by a background service) closes those, so an idle lb does not hold
//!   backend sockets open;
//! - each thread keeps at most `server.upstream_keepalive_pool_size` connections, closing
//!   the oldest first.
//!
//! A connection is taken and put back on the same thread, so it stays with the runtime that
//! registered it (this matters with `work_stealing: false`, where each thread has its own).
//! The lock is per thread and only contended by the once-a-second sweep.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

use crate::per_thread::{lock, Registry};

struct Idle {
    addr: SocketAddr,
    expires: Instant,
    stream: Stream,
}

thread_local! {
    static LIST: Arc<Mutex<Vec<Idle>>> = ALL.register();
}

/// Every thread's list, for [`sweep`].
static ALL: Registry<Vec<Idle>> = Registry::new();

/// The most recently released live connection to `addr` on this thread, if any.
pub(crate) fn take(addr: SocketAddr) -> Option<Stream> {
    let now = Instant::now();
    loop {
        let idle = LIST.with(|list| {
            let mut list = lock(list);
            let i = list.iter().rposition(|c| c.addr == addr)?;
            Some(list.remove(i))
        })?;
        if idle.expires <= now {
            continue; // dropped: closes it
        }
        let mut stream = idle.stream;
        if still_open(&mut stream) {
            return Some(stream);
        }
    }
}

/// Keep `stream` for reuse for at most `idle_timeout`, within `capacity` per thread.
pub(crate) fn put(addr: SocketAddr, stream: Stream, idle_timeout: Duration, capacity: usize) {
    if capacity == 0 {
        return;
    }
    let now = Instant::now();
    let closed = LIST.with(|list| {
        let mut list = lock(list);
        let mut closed: Vec<Idle> = Vec::new();
        if list.len() >= capacity {
            let excess = list.len() + 1 - capacity;
            closed.extend(list.drain(..excess));
        }
        list.push(Idle {
            addr,
            expires: crate::deadline::after(now, idle_timeout),
            stream,
        });
        closed
    });
    drop(closed); // closed outside the lock
}

/// Close every connection past its idle timeout, on all threads.
pub(crate) fn sweep() {
    let now = Instant::now();
    ALL.for_each(|list| list.retain(|c| c.expires > now));
}

/// An idle HTTP/1 connection must have nothing to read: a pending EOF means the backend
/// closed it, pending bytes mean it is out of sync. Either way it cannot be reused.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // `unconstrained`: tokio's cooperative budget must not turn a ready read into "pending".
    let read = std::pin::pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    read.poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}
