//! Shared runtime state: the current routing snapshot behind an atomic swap, plus the
//! process-wide flags the admin listener reports.
//!
//! A [`Snapshot`] is immutable. Requests load it once (and keep the `Arc` for their whole
//! life), so swapping in a new one never disturbs a request in flight. Hot reload (next
//! issue) = build a new `Snapshot` from a new `Config`, reusing unchanged `Arc<Pool>`s, then
//! [`LbState::install`] it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::Config;
use crate::pool::Pool;
use crate::routes::{Route, RouteTable};

pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    /// By upstream name.
    pub pools: BTreeMap<String, Arc<Pool>>,
}

impl Snapshot {
    /// Build pools and routes for `config`. Pools start idle; the supervisor runs them.
    pub fn build(config: Config) -> anyhow::Result<Snapshot> {
        let mut pools = BTreeMap::new();
        for (name, spec) in &config.upstreams {
            pools.insert(name.clone(), Pool::build(name, spec)?);
        }
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.prefix.clone(),
                strip_prefix: r.strip_prefix,
                pool: pools[&r.upstream].clone(),
            })
            .collect();
        Ok(Snapshot {
            config: Arc::new(config),
            routes: RouteTable::new(routes),
            pools,
        })
    }

    /// Every pool has finished its first discovery.
    pub fn is_ready(&self) -> bool {
        self.pools.values().all(|p| p.is_ready())
    }
}

pub struct LbState {
    snapshot: ArcSwap<Snapshot>,
    /// Wakes the pool supervisor after [`LbState::install`].
    pub(crate) snapshot_changed: Notify,
    draining: AtomicBool,
}

impl LbState {
    pub fn new(snapshot: Snapshot) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            snapshot_changed: Notify::new(),
            draining: AtomicBool::new(false),
        })
    }

    /// The current snapshot (one atomic load; keep the `Arc` for the request's life).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swap in a new snapshot and let the supervisor start/stop pool tasks to match.
    pub fn install(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
        self.snapshot_changed.notify_one();
    }

    /// Ready to take traffic: every pool discovered, and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.snapshot.load().is_ready()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}
