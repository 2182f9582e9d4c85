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
//!   (run every second by the pool supervisor) closes those, so an idle lb does not hold
//!   backend sockets open;
//! - each thread keeps at most `server.upstream_keepalive_pool_size` connections, closing
//!   the oldest first.
//!
//! A connection is taken and put back on the same thread, so it stays with the runtime that
//! registered it (this matters with `work_stealing: false`, where each thread has its own).
//! The lock is per thread and only contended by the once-a-second sweep.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use std::future::Future;
use std::task::{Context, Waker};

use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

struct Idle {
    addr: SocketAddr,
    expires: Instant,
    stream: Stream,
}

type List = Arc<Mutex<Vec<Idle>>>;

thread_local! {
    static LIST: List = register();
}

/// Every thread's list, for [`sweep`]. Lists of exited threads are dropped on the next sweep.
static ALL: Mutex<Vec<Weak<Mutex<Vec<Idle>>>>> = Mutex::new(Vec::new());

fn register() -> List {
    let list = List::default();
    lock(&ALL).push(Arc::downgrade(&list));
    list
}

/// A poisoned lock only means another thread panicked mid-update of a plain `Vec`; the
/// entries are still valid connections.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The most recently released live connection to `addr` on this thread, if any.
pub fn take(addr: SocketAddr) -> Option<Stream> {
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
pub fn put(addr: SocketAddr, stream: Stream, idle_timeout: Duration, capacity: usize) {
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
            expires: now + idle_timeout,
            stream,
        });
        closed
    });
    drop(closed); // closed outside the lock
}

/// Close every connection past its idle timeout, on all threads.
pub fn sweep() {
    let now = Instant::now();
    let lists: Vec<List> = {
        let mut all = lock(&ALL);
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for list in lists {
        let expired: Vec<Idle> = {
            let mut list = lock(&list);
            let (keep, expired) = std::mem::take(&mut *list)
                .into_iter()
                .partition(|c| c.expires > now);
            *list = keep;
            expired
        };
        drop(expired);
    }
}

/// Idle connections held on all threads (for tests and `/status`).
pub fn idle_count() -> usize {
    lock(&ALL)
        .iter()
        .filter_map(Weak::upgrade)
        .map(|l| lock(&l).len())
        .sum()
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

/// The background service that runs [`sweep`] every second.
pub struct Sweeper;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Sweeper {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sweep();
        }
    }
}
