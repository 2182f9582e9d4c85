//! Shared runtime state: the current routing snapshot behind an atomic swap, plus the
//! process-wide flags the admin listener reports.
//!
//! A [`Snapshot`] is immutable. Requests load it once (and keep the `Arc` for their whole
//! life), so swapping in a new one never disturbs a request in flight. Hot reload
//! ([`crate::reload`]) builds a new `Snapshot` from a new `Config`, reusing the unchanged
//! `Arc<Pool>`s of the current one, then [`LbState::install`]s it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::certificates::ListenerCertificates;
use crate::config::{ClientLimits, Config, LoadedConfig};
use crate::metrics::{Metrics, RouteMetrics, NO_ROUTE};
use crate::pool::Pool;
use crate::rate_limit::RateLimiter;
use crate::routes::{Route, RouteTable};
use crate::tls::TlsListeners;

pub(crate) struct Snapshot {
    pub(crate) config: Arc<Config>,
    /// SHA-256 (hex) of the config file this snapshot was built from.
    pub(crate) hash: String,
    pub(crate) loaded_at: SystemTime,
    pub(crate) routes: RouteTable,
    /// By upstream name.
    pub(crate) pools: BTreeMap<String, Arc<Pool>>,
    /// `lb_requests_total{route="none"}`: requests that matched no route.
    pub(crate) no_route: RouteMetrics,
    /// The certificates of each TLS listener (what `/status` shows; the handshakes use
    /// the same keys through [`LbState::tls`]).
    pub(crate) tls: Vec<ListenerCertificates>,
    /// The admin API's token, read again at every reload (`None`: no token is needed).
    pub(crate) admin_token: Option<crate::config::admin_token::AdminToken>,
}

impl Snapshot {
    /// Build pools and routes for `loaded`. Pools start idle; the supervisor runs them.
    pub(crate) fn build(loaded: LoadedConfig, metrics: &Metrics) -> anyhow::Result<Snapshot> {
        Ok(Self::build_reusing(loaded, metrics, None)?.0)
    }

    /// Like [`Snapshot::build`], but every pool whose definition is unchanged in `previous`
    /// is carried over as the same `Arc` (keeping its backends, health state and connection
    /// pool). Also returns the pools built fresh, which need a warm-up.
    pub(crate) fn build_reusing(
        loaded: LoadedConfig,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> anyhow::Result<(Snapshot, Vec<Arc<Pool>>)> {
        let LoadedConfig {
            config,
            hash,
            tls,
            admin_token,
        } = loaded;
        let mut pools = BTreeMap::new();
        let mut fresh = Vec::new();
        for (name, spec) in &config.upstreams {
            let kept = previous
                .and_then(|p| p.pools.get(name))
                .filter(|p| p.spec == *spec);
            let pool = match kept {
                Some(p) => p.clone(),
                None => {
                    let p = Pool::build(name, spec, metrics)?;
                    // A changed pool: backends that were not in the old one ramp up.
                    if let Some(old) = previous.and_then(|p| p.pools.get(name)) {
                        p.table
                            .inherit(old.members().into_iter().map(|(addr, _)| addr));
                    }
                    fresh.push(p.clone());
                    p
                }
            };
            pools.insert(name.clone(), pool);
        }
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.prefix.clone(),
                strip_prefix: r.strip_prefix,
                max_body_size: r.max_body_size,
                rate_limit: r.rate_limit.map(|spec| {
                    let previous = previous
                        .and_then(|p| p.routes.by_prefix(&r.prefix))
                        .and_then(|route| route.rate_limit.as_ref());
                    RateLimiter::new(&r.prefix, &spec, previous, metrics.rate_limit(&r.prefix))
                }),
                hsts: r
                    .hsts
                    .as_ref()
                    .and_then(|h| http::HeaderValue::from_str(&h.value).ok()),
                pool: pools[&r.upstream].clone(),
                metrics: metrics.route(&r.prefix, &r.upstream),
            })
            .collect();
        let snapshot = Snapshot {
            config: Arc::new(config),
            hash,
            loaded_at: SystemTime::now(),
            routes: RouteTable::new(routes),
            pools,
            no_route: metrics.route(NO_ROUTE, NO_ROUTE),
            tls,
            admin_token,
        };
        Ok((snapshot, fresh))
    }

    /// Every pool has finished its first discovery.
    pub(crate) fn is_ready(&self) -> bool {
        self.pools.values().all(|p| p.is_ready())
    }
}

/// The outcome of the last reload attempt (for `/status`).
#[derive(Debug, Clone)]
pub(crate) struct ReloadRecord {
    pub(crate) at: SystemTime,
    /// `signal`, `admin` or `watch`.
    pub(crate) trigger: &'static str,
    pub(crate) applied: bool,
    /// Why it was rejected (every error, with its field path).
    pub(crate) errors: Vec<String>,
    /// What it changed when applied (e.g. `upstream api: rebuilt`).
    pub(crate) changes: Vec<String>,
    /// Rejected only because a changed pool did not warm up (its discovery failing): the
    /// same file may apply later, so `--watch` tries it again.
    pub(crate) retry_later: bool,
}

pub(crate) struct LbState {
    snapshot: ArcSwap<Snapshot>,
    /// Wakes the pool supervisor after [`LbState::install`].
    pub(crate) snapshot_changed: Notify,
    draining: AtomicBool,
    /// Set on SIGQUIT/SIGTERM: responses close their connection from then on.
    closing: AtomicBool,
    pub(crate) metrics: Arc<Metrics>,
    /// The config file given with `-c` (reloads read it again).
    pub(crate) config_path: std::path::PathBuf,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    last_reload: Mutex<Option<ReloadRecord>>,
    /// The proxy's bound addresses, once known (`crate::listeners`).
    listening: OnceLock<Vec<SocketAddr>>,
    /// The admin listener's bound address, once bound.
    admin_addr: OnceLock<SocketAddr>,
    /// The TLS listeners' bound addresses, once known (`crate::listeners`).
    tls_listening: OnceLock<Vec<SocketAddr>>,
    /// The certificate resolvers of the TLS listeners, fed by every [`LbState::install`].
    pub(crate) tls: TlsListeners,
}

impl LbState {
    pub(crate) fn new(
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
        config_path: std::path::PathBuf,
    ) -> Arc<Self> {
        metrics.config_loaded(&snapshot.hash);
        metrics.tls_certificates(&snapshot.tls);
        let tls = TlsListeners::new(&snapshot.tls);
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            snapshot_changed: Notify::new(),
            draining: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            metrics,
            config_path,
            started: Instant::now(),
            started_at: SystemTime::now(),
            last_reload: Mutex::new(None),
            listening: OnceLock::new(),
            admin_addr: OnceLock::new(),
            tls_listening: OnceLock::new(),
            tls,
        })
    }

    pub(crate) fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_last_reload(&self, record: ReloadRecord) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
    }

    pub(crate) fn listening(&self) -> Option<&[SocketAddr]> {
        self.listening.get().map(Vec::as_slice)
    }

    pub(crate) fn set_listening(&self, addrs: Vec<SocketAddr>) {
        let _ = self.listening.set(addrs);
    }

    pub(crate) fn tls_listening(&self) -> Option<&[SocketAddr]> {
        self.tls_listening.get().map(Vec::as_slice)
    }

    pub(crate) fn set_tls_listening(&self, addrs: Vec<SocketAddr>) {
        let _ = self.tls_listening.set(addrs);
    }

    pub(crate) fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr.get().copied()
    }

    pub(crate) fn set_admin_addr(&self, addr: SocketAddr) {
        let _ = self.admin_addr.set(addr);
    }

    /// The current snapshot (one atomic load; keep the `Arc` for the request's life).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The current client limits, read without taking a reference on the snapshot: every
    /// HTTP/1 request head asks, so this is on the hot path.
    pub(crate) fn client_limits(&self) -> ClientLimits {
        self.snapshot.load().config.server.client
    }

    /// Swap in a new snapshot and its certificates (new TLS handshakes get them; open
    /// connections keep theirs), and let the supervisor start/stop pool tasks to match.
    pub(crate) fn install(&self, snapshot: Snapshot) {
        let tls = snapshot.tls.clone();
        // The snapshot and the certificates' generation change under one lock: the ACME
        // task reads the generation, then the snapshot, and a certificate it places by
        // the slots of a snapshot older than the generation it read is refused.
        self.tls
            .install_with(&tls, || self.snapshot.store(Arc::new(snapshot)));
        self.metrics.tls_certificates(&tls);
        self.snapshot_changed.notify_one();
    }

    /// Ready to take traffic: every pool discovered, and not shutting down.
    pub(crate) fn is_ready(&self) -> bool {
        !self.is_draining() && self.snapshot.load().is_ready()
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// From now on every response says `Connection: close`. Set when SIGQUIT hands the
    /// sockets to a new process (or SIGTERM stops this one): clients then open their next
    /// connection to the new process, and no keep-alive connection is left idle for
    /// pingora's shutdown to close under a request the client is just sending.
    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// One relaxed load per response (hot path).
    #[inline]
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}
