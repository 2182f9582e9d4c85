//! A value per thread that a background task can reach too: the idle upstream connections
//! of `proxy::keepalive` and the access-log buffers of `access_log`. On the request path a
//! thread locks only its own value, so the lock is uncontended except for the moment the
//! background task visits it.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub(crate) struct Registry<T> {
    all: Mutex<Vec<Weak<Mutex<T>>>>,
}

impl<T: Default> Registry<T> {
    pub(crate) const fn new() -> Self {
        Self {
            all: Mutex::new(Vec::new()),
        }
    }

    /// A new value for the calling thread (keep it in a `thread_local!`), visible to
    /// [`Registry::for_each`] until the thread ends.
    pub(crate) fn register(&self) -> Arc<Mutex<T>> {
        let value = Arc::default();
        lock(&self.all).push(Arc::downgrade(&value));
        value
    }

    /// Visit the value of every thread still running.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&mut T)) {
        let live: Vec<Arc<Mutex<T>>> = {
            let mut all = lock(&self.all);
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        for value in live {
            f(&mut lock(&value));
        }
    }
}

impl<T: Default> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A background service that calls `run` every `every`: the visits of the registries
/// (idle-connection sweep, access-log flush).
pub(crate) struct Every {
    pub(crate) every: Duration,
    pub(crate) run: fn(),
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Every {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            (self.run)();
        }
    }
}

/// A poisoned lock only means a thread panicked while holding it; the values kept here
/// (lists, buffers of whole lines) stay usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
