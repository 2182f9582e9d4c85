//! The one background service that runs discovery and health checks: it keeps exactly one
//! [`Pool::run`] task per pool of the *current* snapshot, starting tasks for new pools and
//! aborting those of pools that left it (after a reload).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinHandle;

use crate::pool::Pool;
use crate::state::LbState;

pub(crate) struct PoolSupervisor {
    state: Arc<LbState>,
}

impl PoolSupervisor {
    pub(crate) fn new(state: Arc<LbState>) -> Self {
        Self { state }
    }
}

/// A running pool task; holding the `Arc` keeps the pointer key unique.
struct Running {
    pool: Arc<Pool>,
    task: JoinHandle<()>,
}

#[async_trait]
impl BackgroundService for PoolSupervisor {
    /// Runs until the server's runtimes stop. It ignores the shutdown broadcast on purpose:
    /// during the grace period requests still in flight keep using healthy backends.
    async fn start(&self, _shutdown: ShutdownWatch) {
        let mut running: HashMap<usize, Running> = HashMap::new();
        loop {
            // Register interest before reading the snapshot so an install in between is seen.
            let changed = self.state.snapshot_changed.notified();
            let snapshot = self.state.snapshot();
            let wanted: HashMap<usize, &Arc<Pool>> = snapshot
                .pools
                .values()
                .map(|p| (Arc::as_ptr(p) as usize, p))
                .collect();
            running.retain(|key, r| {
                let keep = wanted.contains_key(key);
                if !keep {
                    tracing::info!(upstream = %r.pool.name, "stopping discovery and health checks");
                    r.task.abort();
                }
                keep
            });
            for (key, pool) in wanted {
                running.entry(key).or_insert_with(|| Running {
                    pool: pool.clone(),
                    task: tokio::spawn(pool.clone().run()),
                });
            }
            drop(snapshot);
            changed.await;
        }
    }
}
