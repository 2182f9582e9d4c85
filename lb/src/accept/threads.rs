//! The threads of the proxy's runtime, one handle each, so each can run an accept loop.
//!
//! With `work_stealing: false` pingora runs a service on one single-threaded tokio runtime
//! per thread and does not expose them: `pingora_runtime::current_handle` returns a random
//! one. So they are found by asking: a probe task spawned through a handle reports its
//! thread, until every thread has answered.

use std::thread::ThreadId;

use tokio::runtime::Handle;

/// Draws per thread before giving up on finding them all: the chance of missing one of
/// `n` threads after `64 n` uniform draws is below `n e^-64`.
const DRAWS_PER_THREAD: usize = 64;

/// One handle per thread of the current service's runtime (`threads` of them). With work
/// stealing there is one runtime for all threads: its handle, `threads` times.
pub(super) async fn each_thread(threads: usize, work_stealing: bool) -> Vec<Handle> {
    let threads = threads.max(1);
    if work_stealing {
        return vec![Handle::current(); threads];
    }
    let mut found: Vec<(ThreadId, Handle)> = Vec::with_capacity(threads);
    for _ in 0..threads * DRAWS_PER_THREAD {
        if found.len() == threads {
            break;
        }
        let handle = pingora_runtime::current_handle();
        let Ok(thread) = handle.spawn(async { std::thread::current().id() }).await else {
            continue;
        };
        if !found.iter().any(|(t, _)| *t == thread) {
            found.push((thread, handle));
        }
    }
    if found.len() < threads {
        tracing::warn!(
            threads,
            found = found.len(),
            "not every proxy thread answered; some run no accept loop"
        );
    }
    found.into_iter().map(|(_, handle)| handle).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    /// Under pingora's runtime (one single-threaded runtime per thread, as the proxy runs),
    /// every thread gets a handle, and each handle runs its tasks on its own thread.
    #[test]
    fn every_thread_is_found() {
        let rt = pingora_runtime::Runtime::new_no_steal(3, "probe");
        let (tx, rx) = std::sync::mpsc::channel();
        rt.get_handle().spawn(async move {
            let mut ran_on = Vec::new();
            for handle in each_thread(3, false).await {
                let thread = handle.spawn(async { std::thread::current().id() }).await;
                ran_on.push(thread.ok());
            }
            let _ = tx.send(ran_on);
        });
        let ran_on = rx.recv_timeout(Duration::from_secs(10)).expect("answer");
        rt.shutdown_timeout(Duration::from_secs(1));
        assert_eq!(ran_on.len(), 3);
        let distinct: HashSet<_> = ran_on.iter().flatten().collect();
        assert_eq!(distinct.len(), 3, "{ran_on:?}");
    }
}
