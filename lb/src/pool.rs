//! An upstream pool: one pingora `LoadBalancer` (with the configured selection policy,
//! `crate::balance::Selector`) plus its settings and its backends' request-path state
//! (`crate::balance::BackendTable`), built at runtime from an [`UpstreamSpec`] and driven
//! by [`Pool::run`].
//!
//! Pools are plain `Arc`s inside the routing snapshot, not pingora startup services, so a
//! reload can build new ones, keep unchanged ones and drop removed ones (whose `run` task
//! the supervisor aborts).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;
use tokio::sync::Notify;

use crate::balance::{BackendState, BackendTable, Published, Selector, SelectorConfig};
use crate::config::{DiscoverySpec, Selection, UpstreamSpec};
use crate::discovery::{DnsDiscovery, StaticDiscovery};
use crate::health::{Admission, GatedHttpCheck};
use crate::metrics::{DiscoveryResult, Metrics, PoolMetrics};
use crate::observe::PoolObserver;
use crate::upstream_tls::PeerTls;

/// Iteration budget for `select_with`: it counts repeated picks too, so keep it generous.
const MAX_SELECT_ITERATIONS: usize = 256;

pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) spec: UpstreamSpec,
    lb: Arc<LoadBalancer<Selector>>,
    /// The selector pingora built last (see [`Pool::select`]).
    published: Arc<Published>,
    /// In-flight counts, outlier records, ramps and sticky tokens, per backend.
    pub(crate) table: Arc<BackendTable>,
    /// Set once the first discovery (and, with a health check, the first check pass after
    /// it) has finished.
    ready: AtomicBool,
    /// Wakes the health loop right after discovery changes the membership, so new backends
    /// are checked (and admitted) without waiting a full interval.
    membership_changed: Notify,
    /// Wakes requests waiting in [`Pool::wait_ready`] once the pool is ready.
    became_ready: Notify,
    /// Wakes requests held in [`Pool::select_or_wait`] after a discovery or health-check
    /// round that left a backend healthy.
    backend_available: Notify,
    /// Requests held in [`Pool::select_or_wait`] now (bounded by `queue_max`).
    waiting: AtomicUsize,
    /// Resolved metric handles (no label lookups on the hot path).
    pub(crate) metrics: PoolMetrics,
    /// Discovery and check history, per-backend try counts (for `/status`).
    pub(crate) observer: Arc<PoolObserver>,
    /// TLS settings for every peer (requests and health checks); `None`: plain HTTP.
    tls: Option<Arc<PeerTls>>,
}

impl Pool {
    /// A new, idle pool (not ready until [`Pool::warm_up`] or [`Pool::run`]).
    pub(crate) fn build(
        name: &str,
        spec: &UpstreamSpec,
        metrics: &Metrics,
    ) -> anyhow::Result<Arc<Pool>> {
        let observer = Arc::new(PoolObserver::default());
        let pool_metrics = metrics.pool(name);
        let table = Arc::new(BackendTable::new(name, spec, pool_metrics.outlier()));
        let admission = Arc::new(Admission::new(
            spec.health_check.as_ref().map(|h| h.healthy_after),
            table.clone(),
        ));
        let (discovery, default_host): (
            Box<dyn pingora::lb::discovery::ServiceDiscovery + Send + Sync>,
            String,
        ) = match &spec.discovery {
            DiscoverySpec::Dns {
                name: dns_name,
                port,
                srv,
                interval,
                resolver,
            } => (
                Box::new(DnsDiscovery::new(
                    name,
                    dns_name,
                    (!*srv).then_some(*port),
                    *resolver,
                    *interval,
                    admission.clone(),
                    table.clone(),
                )?),
                if *srv {
                    dns_name.clone()
                } else {
                    format!("{dns_name}:{port}")
                },
            ),
            DiscoverySpec::Static { backends } => (
                Box::new(StaticDiscovery::new(backends, admission.clone(), &table)),
                "localhost".to_string(),
            ),
        };
        let tls = spec.tls.as_ref().map(|t| Arc::new(PeerTls::new(name, t)));
        let mut backends = Backends::new(discovery);
        if let Some(hc) = &spec.health_check {
            let host = spec.host.as_deref().unwrap_or(&default_host);
            backends.set_health_check(Box::new(GatedHttpCheck::new(
                name,
                hc,
                host,
                tls.as_deref(),
                admission.clone(),
                observer.clone(),
            )));
        }
        let config = SelectorConfig::new(spec.selection.clone());
        let published = config.published.clone();
        let lb = Arc::new(LoadBalancer::<Selector>::from_backends_with_config(
            backends,
            Some(config),
        ));
        admission.attach(Arc::downgrade(&lb));
        Ok(Arc::new(Pool {
            name: name.to_string(),
            spec: spec.clone(),
            lb,
            published,
            table,
            ready: AtomicBool::new(false),
            membership_changed: Notify::new(),
            became_ready: Notify::new(),
            backend_available: Notify::new(),
            waiting: AtomicUsize::new(0),
            metrics: pool_metrics,
            observer,
            tls,
        }))
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Wait until the pool is ready, at most `limit`; true if it is. Requests that arrive
    /// while a pool warms up (a process that just started or took the sockets over in an
    /// upgrade) wait for it instead of getting a 503.
    pub(crate) async fn wait_ready(&self, limit: Duration) -> bool {
        let became_ready = self.became_ready.notified();
        tokio::pin!(became_ready);
        // Register before checking, so a wake-up in between is not lost.
        became_ready.as_mut().enable();
        if self.is_ready() {
            return true;
        }
        let _ = tokio::time::timeout(limit, became_ready).await;
        self.is_ready()
    }

    /// For a request about to pick a backend: if the pool is still warming up, wait for its
    /// first discovery as long as a connect may take (both request paths use this).
    pub(crate) async fn wait_ready_for_request(&self) {
        if !self.is_ready() {
            self.wait_ready(self.spec.timeouts.connect).await;
        }
    }

    /// The policy's choice among healthy backends (`key`: the request's hash key, for
    /// `consistent_hash`), skipping addresses this request already tried and ejected
    /// backends, and admitting ramping ones by their share. Each step down widens the
    /// choice rather than fail while a backend is healthy: ramping ones at full share,
    /// then tried ones, then ejected ones.
    pub(crate) fn select(&self, tried: &[SocketAddr], key: &[u8]) -> Option<Chosen> {
        // No ramp for consistent hashing: a coin per request would move a key between its
        // owner and the next backend on the ring.
        let ramp = !matches!(self.spec.selection, Selection::ConsistentHash(_));
        let table = &self.table;
        let first = match self.first_pass(tried, key, ramp) {
            Some(Some(chosen)) => return Some(chosen),
            Some(None) => None,
            None => self.lb.select_with(key, MAX_SELECT_ITERATIONS, |b, ready| {
                ready && untried(b, tried) && table.usable(b, ramp)
            }),
        };
        first
            // (the same pass again, without the ramp's coin, when there was one)
            .or_else(|| {
                ramp.then(|| {
                    self.lb.select_with(key, MAX_SELECT_ITERATIONS, |b, ready| {
                        ready && untried(b, tried) && table.usable(b, false)
                    })
                })
                .flatten()
            })
            .or_else(|| {
                self.lb.select_with(key, MAX_SELECT_ITERATIONS, |b, ready| {
                    ready && table.usable(b, false)
                })
            })
            .or_else(|| self.lb.select(key, MAX_SELECT_ITERATIONS))
            .and_then(|b| Chosen::of(&b))
    }

    /// The first pass of [`Pool::select`] (a ready, untried, usable backend, in the
    /// policy's order, each candidate once, one ramp coin each) as pingora's `select_with`
    /// makes it, without its cost in the common case where the first candidate is taken:
    /// per candidate `select_with` SipHashes the backend twice (its readiness map, its
    /// repeat filter), fills a `HashSet` and clones the chosen `Backend` with its
    /// extensions (with a smaller change, 11 % of the lb's user-space instructions per
    /// keep-alive request: callgrind, `benches/README.md`). The first candidate's readiness
    /// is pingora's as copied into its state wherever it changes (`BackendTable::mirror`);
    /// when the copy says not ready, and for every later candidate, pingora is asked.
    /// `None`: pingora has not built a selector yet (then `select_with` makes the pass).
    fn first_pass(&self, tried: &[SocketAddr], key: &[u8], ramp: bool) -> Option<Option<Chosen>> {
        let published = self.published.load();
        let selector = published.as_ref()?;
        let backends = self.lb.backends();
        let accept =
            |b: &Backend, ready: bool| ready && untried(b, tried) && self.table.usable(b, ramp);
        let mut candidates = selector.iter(key);
        let Some(first) = candidates.next() else {
            return Some(None);
        };
        let ready = BackendState::of(first).is_some_and(|s| s.is_ready()) || backends.ready(first);
        if accept(first, ready) {
            return Some(Chosen::of(first));
        }
        // The rest as pingora's `UniqueIterator` walks it: repeats skipped, every step
        // counted.
        let mut seen = vec![crate::health::backend_key(first)];
        for _ in 1..MAX_SELECT_ITERATIONS {
            let Some(b) = candidates.next() else { break };
            let identity = crate::health::backend_key(b);
            if seen.contains(&identity) {
                continue;
            }
            seen.push(identity);
            if accept(b, backends.ready(b)) {
                return Some(Chosen::of(b));
            }
        }
        Some(None)
    }

    /// The backend a sticky cookie names, if it is still a member, healthy, not ejected
    /// and not already tried by this request.
    pub(crate) fn pinned(
        &self,
        token: &crate::balance::sticky::Token,
        tried: &[SocketAddr],
    ) -> Option<Chosen> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .find(|b| crate::balance::BackendState::of(b).is_some_and(|s| &s.token == token))
            .filter(|b| backends.ready(b) && self.table.usable(b, false) && untried(b, tried))
            .and_then(Chosen::of)
    }

    /// Like [`Pool::select`], but when no backend is healthy the request waits up to
    /// `queue_timeout` for one to become healthy (a restart of every replica, a deploy)
    /// instead of failing at once; at most `queue_max` requests wait, and the rest fail at
    /// once. `None`: still none (the caller answers 503).
    pub(crate) async fn select_or_wait(&self, tried: &[SocketAddr], key: &[u8]) -> Option<Chosen> {
        if let Some(b) = self.select(tried, key) {
            return Some(b);
        }
        let limit = self.spec.queue_timeout;
        if limit.is_zero() {
            return None;
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.spec.queue_max {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.metrics.queue_full.inc();
            return None;
        }
        self.metrics.queue_waiting.inc();
        let deadline = crate::deadline::after(tokio::time::Instant::now(), limit);
        let chosen = loop {
            let available = self.backend_available.notified();
            tokio::pin!(available);
            // Register before looking, so a wake-up in between is not lost.
            available.as_mut().enable();
            if let Some(b) = self.select(tried, key) {
                break Some(b);
            }
            if tokio::time::timeout_at(deadline, available).await.is_err() {
                break self.select(tried, key);
            }
        };
        self.metrics.queue_waiting.dec();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match &chosen {
            Some(_) => self.metrics.queue_served.inc(),
            None => self.metrics.queue_timeout.inc(),
        }
        chosen
    }

    /// After a discovery or health-check round: let held requests look again if a backend
    /// is healthy now.
    fn wake_held_requests(&self) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let backends = self.lb.backends();
        if backends.get_backend().iter().any(|b| backends.ready(b)) {
            self.backend_available.notify_waiters();
        }
    }

    /// After a check round: backends that went down wake their in-flight tries.
    fn note_readiness(&self) {
        let backends = self.lb.backends();
        self.table.mirror_all(backends);
        for b in backends.get_backend().iter() {
            self.table.readiness(b, backends.ready(b));
        }
    }

    /// Copy pingora's readiness of every member (after a discovery update, which can add
    /// members and change their enablement).
    fn mirror_readiness(&self) {
        self.table.mirror_all(self.lb.backends());
    }

    /// Whether the backends are reached over TLS (then only the engine path can reach them:
    /// the direct path speaks plain TCP).
    pub(crate) fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A peer for `addr` with this pool's timeouts and TLS settings.
    pub(crate) fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let t = &self.spec.timeouts;
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read);
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(t.idle);
        if let Some(tls) = &self.tls {
            tls.apply(&mut peer);
        }
        peer
    }

    /// Current members with their readiness (for logs now, `/status` later).
    pub(crate) fn members(&self) -> Vec<(SocketAddr, bool)> {
        self.member_details()
            .into_iter()
            .filter_map(|(b, ready)| Some((*b.addr.as_inet()?, ready)))
            .collect()
    }

    /// Current members with their readiness, weight and request-path state (`/status`).
    pub(crate) fn member_details(&self) -> Vec<(Backend, bool)> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .map(|b| (b.clone(), backends.ready(b)))
            .collect()
    }

    fn discovery_every(&self) -> Option<Duration> {
        match &self.spec.discovery {
            DiscoverySpec::Dns { interval, .. } => Some(*interval),
            DiscoverySpec::Static { .. } => None,
        }
    }

    /// First discovery (retried until it succeeds) and, with a health check, the first
    /// check round; then the pool is ready. Does nothing on a ready pool. A reload awaits
    /// this for new pools *before* it installs them, so no request meets an empty pool.
    pub(crate) async fn warm_up(&self) {
        if self.is_ready() {
            return;
        }
        while self.discover().await.is_err() {
            tokio::time::sleep(self.discovery_every().unwrap_or(Duration::from_secs(1))).await;
        }
        if self.spec.health_check.is_some() {
            self.lb.backends().run_health_check(true).await;
            self.note_readiness();
        }
        self.table.warmed_up();
        self.ready.store(true, Ordering::Release);
        self.became_ready.notify_waiters();
        tracing::info!(upstream = %self.name, backends = ?self.members(), "upstream ready");
    }

    /// One try is going to `addr` (for the per-backend count in `/status`).
    #[inline]
    pub(crate) fn count_try(&self, addr: &SocketAddr) {
        self.observer.count_request(addr);
    }

    /// Drive discovery and health checks forever; the supervisor aborts the task when the
    /// pool leaves the snapshot or the server shuts down.
    pub(crate) async fn run(self: Arc<Self>) {
        let discovery_every = self.discovery_every();
        self.warm_up().await;

        let discovery_loop = async {
            let Some(every) = discovery_every else { return };
            loop {
                tokio::time::sleep(every).await;
                if let Ok(true) = self.discover().await {
                    self.membership_changed.notify_one();
                    self.wake_held_requests();
                }
            }
        };
        let health_loop = async {
            let Some(hc) = &self.spec.health_check else {
                return;
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(hc.interval) => {}
                    _ = self.membership_changed.notified() => {}
                }
                self.lb.backends().run_health_check(true).await;
                self.note_readiness();
                self.wake_held_requests();
            }
        };
        tokio::join!(discovery_loop, health_loop);
    }

    /// One discovery round. `Ok(changed)`; on error the previous set stays in place.
    async fn discover(&self) -> pingora::Result<bool> {
        let before = self.lb.backends().get_backend();
        if let Err(e) = self.lb.update().await {
            self.metrics.discovery(DiscoveryResult::Error);
            self.observer
                .record_discovery(DiscoveryResult::Error, Some(e.to_string()));
            return Err(e);
        }
        self.mirror_readiness();
        let after = self.lb.backends().get_backend();
        let result = if Arc::ptr_eq(&before, &after) {
            DiscoveryResult::Unchanged
        } else {
            DiscoveryResult::Changed
        };
        self.metrics.discovery(result);
        self.observer.record_discovery(result, None);
        if result == DiscoveryResult::Unchanged {
            return Ok(false);
        }
        self.table.membership(&after);
        let members: Vec<SocketAddr> = after
            .iter()
            .filter_map(|b| b.addr.as_inet().copied())
            .collect();
        self.observer.membership(&members);
        let addrs =
            |set: &BTreeSet<Backend>| set.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>();
        let added: Vec<_> = after
            .difference(&before)
            .map(|b| b.addr.to_string())
            .collect();
        let removed: Vec<_> = before
            .difference(&after)
            .map(|b| b.addr.to_string())
            .collect();
        tracing::info!(
            upstream = %self.name, ?added, ?removed, backends = ?addrs(&after),
            "upstream membership changed"
        );
        Ok(true)
    }
}

/// `backend` is not among the addresses this request already tried.
fn untried(backend: &Backend, tried: &[SocketAddr]) -> bool {
    backend.addr.as_inet().is_none_or(|a| !tried.contains(a))
}

/// The backend chosen for a try: its address and its request-path state.
pub(crate) struct Chosen {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Option<Arc<BackendState>>,
}

impl Chosen {
    /// `None` for a non-inet backend (discovery makes none).
    fn of(backend: &Backend) -> Option<Chosen> {
        Some(Chosen {
            addr: *backend.addr.as_inet()?,
            state: BackendState::of(backend).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::upstream_spec;
    use crate::config::StaticBackend;

    fn port(chosen: Option<Chosen>) -> u16 {
        chosen.expect("a backend").addr.port()
    }

    fn static_pool(ports: &[u16], selection: Selection) -> Arc<Pool> {
        let mut spec = upstream_spec();
        spec.selection = selection;
        spec.discovery = DiscoverySpec::Static {
            backends: ports
                .iter()
                .map(|&p| StaticBackend {
                    addr: SocketAddr::from(([127, 0, 0, 1], p)),
                    weight: 1,
                })
                .collect(),
        };
        Pool::build("api", &spec, &Metrics::new()).expect("pool")
    }

    /// A backend that is down leaves its share to the others evenly, on the first pass and
    /// on `select_with`'s alike: with [1, 2, 3] and 2 down, not 1/3 to 1 and 2/3 to 3.
    #[tokio::test]
    async fn a_down_backends_share_spreads_over_the_others() {
        for selection in [Selection::RoundRobin, Selection::LeastRequests] {
            let pool = static_pool(&[1, 2, 3], selection.clone());
            pool.warm_up().await;
            let (two, _) = pool
                .member_details()
                .into_iter()
                .find(|(b, _)| b.addr.as_inet().map(|a| a.port()) == Some(2))
                .expect("member");
            pool.lb.backends().set_enable(&two, false);
            pool.mirror_readiness();
            let n = 3000;
            let mut to_1 = 0;
            for _ in 0..n {
                let p = port(pool.select(&[], &[]));
                assert_ne!(p, 2);
                to_1 += usize::from(p == 1);
            }
            let share = to_1 as f64 / n as f64;
            assert!((0.4..0.6).contains(&share), "{selection:?}: {share}");
        }
    }

    /// The first pass reads pingora's readiness as copied into each backend's state: set
    /// once the pool is warm, and followed when pingora's changes (as a health flip copies
    /// it), so a backend pingora takes out is not chosen.
    #[tokio::test]
    async fn the_first_pass_follows_pingoras_readiness() {
        let mut spec = upstream_spec();
        spec.discovery = DiscoverySpec::Static {
            backends: [1, 2]
                .map(|p| StaticBackend {
                    addr: SocketAddr::from(([127, 0, 0, 1], p)),
                    weight: 1,
                })
                .to_vec(),
        };
        let pool = Pool::build("api", &spec, &Metrics::new()).expect("pool");
        pool.warm_up().await;
        let members = pool.member_details();
        assert_eq!(members.len(), 2);
        for (b, ready) in &members {
            assert!(ready);
            assert!(BackendState::of(b).expect("state").is_ready(), "{b:?}");
        }
        let mut ports: Vec<u16> = (0..4).map(|_| port(pool.select(&[], &[]))).collect();
        ports.sort();
        assert_eq!(ports, [1, 1, 2, 2]);

        let (one, _) = members
            .iter()
            .find(|(b, _)| b.addr.as_inet().map(|a| a.port()) == Some(1))
            .expect("member");
        pool.lb.backends().set_enable(one, false);
        assert!(!pool.table.mirror(one, pool.lb.backends()));
        assert!(!BackendState::of(one).expect("state").is_ready());
        for _ in 0..6 {
            assert_eq!(port(pool.select(&[], &[])), 2);
        }
        // A tried backend is passed over while another is ready.
        pool.lb.backends().set_enable(one, true);
        pool.mirror_readiness();
        let tried = [SocketAddr::from(([127, 0, 0, 1], 2))];
        for _ in 0..4 {
            assert_eq!(port(pool.select(&tried, &[])), 1);
        }
    }
}
