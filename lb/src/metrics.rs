//! Prometheus metrics, served as text on the admin `GET /metrics`.
//!
//! One private [`Registry`] per process (never the global default), so tests and reloads
//! start clean. Label values come from the config only (route prefix, upstream name) or
//! from small fixed sets (code class, retry reason, result): never a path or an address.
//!
//! Hot-path cost: label lookups (hashing the label values) happen once, when a snapshot
//! builds its routes and pools, which keep the resolved handles ([`RouteMetrics`],
//! [`PoolMetrics`]). A request then does a few relaxed atomic adds: no hashing, no
//! allocation, no lock. Gauges that describe state (`lb_backends`, `lb_config_info`) are
//! computed at scrape time from the current snapshot, so they never lag and never keep a
//! removed pool around.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::certificates::ListenerCertificates;

/// Label value for requests that matched no route.
pub(crate) const NO_ROUTE: &str = "none";

/// `code_class` label values, indexed by `status / 100`; index 0 is a request that got no
/// response (the client went away first).
const CODE_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Seconds; from sub-millisecond proxying up to the default 30 s read timeout.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Why a request was sent again (`lb_retries_total{reason}`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RetryReason {
    /// The connection to the backend failed or was refused: nothing was sent. Another
    /// backend gets the next try.
    Connect,
    /// The try failed after the request was sent (idempotent requests only). Another
    /// backend gets the next try.
    AfterSend,
    /// A reused idle connection turned out closed before any response: the same backend,
    /// on a new connection, once per request. Not a try; spends no retry.
    StaleConnection,
    /// No response head within the pool's `timeouts.per_try` (idempotent requests only).
    /// Another backend gets the next try.
    PerTryTimeout,
    /// The backend was marked down (health check or outlier ejection) while this try
    /// waited for its response head (idempotent requests, direct path). Another backend
    /// gets the next try.
    BackendDown,
}

pub(crate) struct Metrics {
    registry: Registry,
    outlier_ejections: IntCounterVec,
    outlier_ejected: IntGaugeVec,
    queue_waiting: IntGaugeVec,
    queue: IntCounterVec,
    requests: IntCounterVec,
    duration: HistogramVec,
    tries: IntCounterVec,
    retries: IntCounterVec,
    backends: IntGaugeVec,
    discovery: IntCounterVec,
    reloads: IntCounterVec,
    /// `lb_acme_orders_total{result}` (`crate::acme`).
    acme_orders: IntCounterVec,
    last_reload_success: Gauge,
    config_info: IntGaugeVec,
    tls_expiry: IntGaugeVec,
    /// Mirrors [`crate::accept::handshake_failures`] at scrape time.
    tls_handshake_failures: IntCounter,
    /// Mirrors [`crate::accept::accept_errors`] at scrape time.
    accept_errors: IntCounter,
    /// Mirrors [`crate::client_errors::counts`] at scrape time.
    client_errors: IntCounterVec,
    /// `lb_requests_by_protocol_total`, resolved: `[h1, h2][plaintext, TLS 1.2, TLS 1.3]`.
    by_protocol: [[IntCounter; 3]; 2],
    /// `lb_rate_limited_total{route}`.
    rate_limited: IntCounterVec,
    /// `lb_rate_limit_untracked_total{route}`.
    rate_limit_untracked: IntCounterVec,
    /// Mirror [`crate::connection_limits::connections`] at scrape time.
    connections_open: IntGauge,
    connections_refused: IntCounterVec,
    /// `lb_admin_auth_failures_total{reason}` ([`crate::admin_auth`]).
    admin_auth_failures: IntCounterVec,
    /// `lb_admin_connections_refused_total` ([`crate::admin`]).
    admin_connections_refused: IntCounter,
}

/// Resolved handles for one route (`lb_requests_total` by code class).
pub(crate) struct RouteMetrics {
    requests: [IntCounter; 6],
}

/// Resolved handles for one pool.
pub(crate) struct PoolMetrics {
    /// Requests waiting for a healthy backend now (`lb_queue_waiting`).
    pub(crate) queue_waiting: IntGauge,
    /// How waits ended (`lb_queue_total{result}`): served, timeout, full.
    pub(crate) queue_served: IntCounter,
    pub(crate) queue_timeout: IntCounter,
    pub(crate) queue_full: IntCounter,
    duration: Histogram,
    tries: IntCounter,
    retries_connect: IntCounter,
    retries_after_send: IntCounter,
    retries_per_try: IntCounter,
    retries_stale: IntCounter,
    retries_down: IntCounter,
    outlier_ejections: IntCounter,
    outlier_ejected: IntGauge,
    discovery_changed: IntCounter,
    discovery_unchanged: IntCounter,
    discovery_error: IntCounter,
}

/// Result of one discovery round (`lb_discovery_updates_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiscoveryResult {
    Changed,
    Unchanged,
    Error,
}

impl DiscoveryResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DiscoveryResult::Changed => "changed",
            DiscoveryResult::Unchanged => "unchanged",
            DiscoveryResult::Error => "error",
        }
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(registry, c.clone());
    c
}

fn register(registry: &Registry, c: impl Collector + 'static) {
    // Names are constants and registered once per registry, so this cannot collide.
    registry
        .register(Box::new(c))
        .expect("metric registered once");
}

impl Metrics {
    /// A fresh registry with every lb metric, plus the process collector (resident memory,
    /// CPU seconds, open fds, read from `/proc`).
    pub(crate) fn new() -> Metrics {
        let registry = Registry::new();
        let requests = counter_vec(
            &registry,
            "lb_requests_total",
            "Requests answered, by route prefix, upstream pool and status class.",
            &["route", "upstream", "code_class"],
        );
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "lb_request_duration_seconds",
                "Time from the request head to the end of the response, by upstream pool.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["upstream"],
        )
        .expect("valid metric definition");
        register(&registry, duration.clone());
        let tries = counter_vec(
            &registry,
            "lb_upstream_tries_total",
            "Connection attempts to backends (first tries and retries), by upstream pool.",
            &["upstream"],
        );
        let retries = counter_vec(
            &registry,
            "lb_retries_total",
            "Requests sent again, by upstream pool and reason: connect, after_send, per_try_timeout and backend_down (to another backend, spending a retry), stale_connection (a reused connection was found closed: the same backend on a new connection, not a try).",
            &["upstream", "reason"],
        );
        let backends = IntGaugeVec::new(
            Opts::new(
                "lb_backends",
                "Backends of each pool by state (healthy = receives traffic).",
            ),
            &["upstream", "state"],
        )
        .expect("valid metric definition");
        register(&registry, backends.clone());
        let discovery = counter_vec(
            &registry,
            "lb_discovery_updates_total",
            "Discovery rounds by upstream pool and result (changed, unchanged, error).",
            &["upstream", "result"],
        );
        let reloads = counter_vec(
            &registry,
            "lb_config_reloads_total",
            "Configuration reloads by result (success, failure).",
            &["result"],
        );
        let acme_orders = counter_vec(
            &registry,
            "lb_acme_orders_total",
            "ACME certificate orders (automatic HTTPS) by result: success (issued, stored and served), failure (retried with backoff; the old certificate keeps serving).",
            &["result"],
        );
        let last_reload_success = Gauge::new(
            "lb_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (startup or reload).",
        )
        .expect("valid metric definition");
        register(&registry, last_reload_success.clone());
        let config_info = IntGaugeVec::new(
            Opts::new(
                "lb_config_info",
                "Always 1; the hash label is the SHA-256 of the config file in use.",
            ),
            &["hash"],
        )
        .expect("valid metric definition");
        register(&registry, config_info.clone());
        let tls_expiry = IntGaugeVec::new(
            Opts::new(
                "lb_tls_certificate_expiry_timestamp_seconds",
                "Unix time at which the certificate served for each SNI name (as configured, `*.` wildcards included) expires.",
            ),
            &["name"],
        )
        .expect("valid metric definition");
        register(&registry, tls_expiry.clone());
        let tls_handshake_failures = IntCounter::new(
            "lb_tls_handshake_failures_total",
            "TLS handshakes that failed (plaintext or garbage on a TLS port, a handshake cut short, an old TLS version). Not logged one by one.",
        )
        .expect("valid metric definition");
        register(&registry, tls_handshake_failures.clone());
        let accept_errors = IntCounter::new(
            "lb_accept_errors_total",
            "accept() calls on a proxy listener that failed: out of file descriptors (the listener then pauses for a second, with a WARN line), or a connection reset while it waited in the queue.",
        )
        .expect("valid metric definition");
        register(&registry, accept_errors.clone());
        let queue_waiting = IntGaugeVec::new(
            Opts::new(
                "lb_queue_waiting",
                "Requests waiting for a healthy backend of a pool that has none (upstreams.X.queue_timeout).",
            ),
            &["upstream"],
        )
        .expect("valid metric definition");
        register(&registry, queue_waiting.clone());
        let outlier_ejections = counter_vec(
            &registry,
            "lb_outlier_ejections_total",
            "Backends taken out of rotation by passive outlier detection (consecutive failed tries), by upstream pool.",
            &["upstream"],
        );
        let outlier_ejected = IntGaugeVec::new(
            Opts::new(
                "lb_outlier_ejected",
                "Backends ejected by outlier detection now, by upstream pool.",
            ),
            &["upstream"],
        )
        .expect("valid metric definition");
        register(&registry, outlier_ejected.clone());
        let queue = IntCounterVec::new(
            Opts::new(
                "lb_queue_total",
                "Requests that waited for a healthy backend, by how the wait ended: served (one became healthy), timeout (503 after queue_timeout), full (503 at once: queue_max were waiting).",
            ),
            &["upstream", "result"],
        )
        .expect("valid metric definition");
        register(&registry, queue.clone());
        let client_errors = IntCounterVec::new(
            Opts::new(
                "lb_client_errors_total",
                "Requests a client ended badly: request_head (closed or reset before the head was complete), closed, read, write, protocol. Logged at DEBUG, not one ERROR line each.",
            ),
            &["reason"],
        )
        .expect("valid metric definition");
        register(&registry, client_errors.clone());
        for reason in crate::client_errors::Reason::ALL {
            client_errors.with_label_values(&[reason.label()]);
        }
        let by_protocol_vec = IntCounterVec::new(
            Opts::new(
                "lb_requests_by_protocol_total",
                "Requests by the protocol the client spoke (h1, h2) and its TLS version (none on plaintext).",
            ),
            &["protocol", "tls"],
        )
        .expect("valid metric definition");
        register(&registry, by_protocol_vec.clone());
        let by_protocol = ["h1", "h2"].map(|p| {
            ["none", "TLSv1.2", "TLSv1.3"].map(|t| by_protocol_vec.with_label_values(&[p, t]))
        });
        let rate_limited = counter_vec(
            &registry,
            "lb_rate_limited_total",
            "Requests answered 429 by a route's rate_limit, by route prefix (before any backend was contacted).",
            &["route"],
        );
        let rate_limit_untracked = counter_vec(
            &registry,
            "lb_rate_limit_untracked_total",
            "Requests let through unlimited because the route's rate_limit table was full (a client new in the window when its shard already tracks the most clients it may), by route prefix; above 0 the limit is not enforced for everyone.",
            &["route"],
        );
        let connections_open = IntGauge::new(
            "lb_connections_open",
            "Client connections open now, as counted against server.connection_limits (accepted, TLS handshakes included); connections accepted while the limits are off are not counted.",
        )
        .expect("valid metric definition");
        register(&registry, connections_open.clone());
        let connections_refused = counter_vec(
            &registry,
            "lb_connections_refused_total",
            "Client connections closed at accept time by server.connection_limits, by the limit they hit: total or per_ip.",
            &["reason"],
        );
        for r in crate::connection_limits::Refusal::ALL {
            connections_refused.with_label_values(&[r.label()]);
        }
        let admin_auth_failures = counter_vec(
            &registry,
            "lb_admin_auth_failures_total",
            "Admin requests refused with 401, by reason: missing (no bearer token), invalid (a wrong token).",
            &["reason"],
        );
        for reason in crate::admin_auth::Refusal::ALL {
            admin_auth_failures.with_label_values(&[reason.label()]);
        }
        let admin_connections_refused = IntCounter::new(
            "lb_admin_connections_refused_total",
            "Connections to the admin listener closed at accept time (with a 503) because it already held its maximum of concurrent connections.",
        )
        .expect("valid metric definition");
        register(&registry, admin_connections_refused.clone());
        // Both results exist from the start, so a first failure is an increase, not a new series.
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
            acme_orders.with_label_values(&[result]);
        }
        #[cfg(target_os = "linux")]
        register(
            &registry,
            prometheus::process_collector::ProcessCollector::for_self(),
        );
        Metrics {
            registry,
            outlier_ejections,
            outlier_ejected,
            queue_waiting,
            queue,
            requests,
            duration,
            tries,
            retries,
            backends,
            discovery,
            reloads,
            acme_orders,
            last_reload_success,
            config_info,
            tls_expiry,
            tls_handshake_failures,
            accept_errors,
            client_errors,
            by_protocol,
            rate_limited,
            rate_limit_untracked,
            connections_open,
            connections_refused,
            admin_auth_failures,
            admin_connections_refused,
        }
    }

    /// `lb_rate_limited_total` and `lb_rate_limit_untracked_total` of the route with this
    /// prefix (resolved once per snapshot).
    pub(crate) fn rate_limit(&self, route: &str) -> crate::rate_limit::Counters {
        crate::rate_limit::Counters {
            refused: self.rate_limited.with_label_values(&[route]),
            untracked: self.rate_limit_untracked.with_label_values(&[route]),
        }
    }

    /// One admin request refused for want of the token.
    pub(crate) fn admin_auth_failure(&self, reason: crate::admin_auth::Refusal) {
        self.admin_auth_failures
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// One admin connection refused: the admin listener was full.
    pub(crate) fn admin_connection_refused(&self) {
        self.admin_connections_refused.inc();
    }

    /// Count one request by protocol; `tls`: the TLS version as the access log writes it
    /// (`TLSv1.2`, `TLSv1.3`), `None` on plaintext.
    pub(crate) fn request_protocol(&self, h2: bool, tls: Option<&str>) {
        let version = match tls {
            None => 0,
            Some("TLSv1.2") => 1,
            Some(_) => 2,
        };
        self.by_protocol[usize::from(h2)][version].inc();
    }

    pub(crate) fn route(&self, prefix: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            requests: CODE_CLASSES
                .map(|class| self.requests.with_label_values(&[prefix, upstream, class])),
        }
    }

    pub(crate) fn pool(&self, upstream: &str) -> PoolMetrics {
        let discovery = |result: DiscoveryResult| {
            self.discovery
                .with_label_values(&[upstream, result.as_str()])
        };
        PoolMetrics {
            queue_waiting: self.queue_waiting.with_label_values(&[upstream]),
            queue_served: self.queue.with_label_values(&[upstream, "served"]),
            queue_timeout: self.queue.with_label_values(&[upstream, "timeout"]),
            queue_full: self.queue.with_label_values(&[upstream, "full"]),
            duration: self.duration.with_label_values(&[upstream]),
            tries: self.tries.with_label_values(&[upstream]),
            retries_connect: self.retries.with_label_values(&[upstream, "connect"]),
            retries_after_send: self.retries.with_label_values(&[upstream, "after_send"]),
            retries_per_try: self
                .retries
                .with_label_values(&[upstream, "per_try_timeout"]),
            retries_stale: self
                .retries
                .with_label_values(&[upstream, "stale_connection"]),
            retries_down: self.retries.with_label_values(&[upstream, "backend_down"]),
            outlier_ejections: self.outlier_ejections.with_label_values(&[upstream]),
            outlier_ejected: self.outlier_ejected.with_label_values(&[upstream]),
            discovery_changed: discovery(DiscoveryResult::Changed),
            discovery_unchanged: discovery(DiscoveryResult::Unchanged),
            discovery_error: discovery(DiscoveryResult::Error),
        }
    }

    /// Count one finished ACME order.
    pub(crate) fn acme_order(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.acme_orders.with_label_values(&[result]).inc();
    }

    /// Count a reload; a success also moves the "last success" time and the config hash.
    pub(crate) fn reload(&self, success: bool, hash: &str) {
        let result = if success { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        if success {
            self.config_loaded(hash);
        }
    }

    /// The config with `hash` is now in use (at startup or after a reload).
    pub(crate) fn config_loaded(&self, hash: &str) {
        self.last_reload_success.set(unix_now());
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// The certificates now served: one expiry series per SNI name (names no longer served
    /// are dropped). A name on several listeners shows the earliest expiry.
    pub(crate) fn tls_certificates(&self, listeners: &[ListenerCertificates]) {
        let mut earliest: std::collections::BTreeMap<&str, i64> = Default::default();
        for cert in listeners.iter().flat_map(|l| &l.0) {
            for name in &cert.names {
                let t = earliest.entry(name).or_insert(cert.not_after);
                *t = (*t).min(cert.not_after);
            }
        }
        self.tls_expiry.reset();
        for (name, t) in earliest {
            self.tls_expiry.with_label_values(&[name]).set(t);
        }
    }

    pub(crate) fn reload_count(&self, success: bool) -> u64 {
        let result = if success { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).get()
    }

    /// Set the backend gauges from `pools` (name, healthy, unhealthy), dropping pools gone
    /// since the last scrape.
    pub(crate) fn set_backends<'a>(&self, pools: impl Iterator<Item = (&'a str, usize, usize)>) {
        self.backends.reset();
        for (name, healthy, unhealthy) in pools {
            let gauge =
                |state: &str| -> IntGauge { self.backends.with_label_values(&[name, state]) };
            gauge("healthy").set(healthy as i64);
            gauge("unhealthy").set(unhealthy as i64);
        }
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub(crate) fn encode(&self) -> String {
        for (counter, n) in [
            (
                &self.tls_handshake_failures,
                crate::accept::handshake_failures(),
            ),
            (&self.accept_errors, crate::accept::accept_errors()),
        ] {
            if n > counter.get() {
                counter.inc_by(n - counter.get());
            }
        }
        for (reason, n) in crate::client_errors::counts() {
            let counter = self.client_errors.with_label_values(&[reason.label()]);
            if n > counter.get() {
                counter.inc_by(n - counter.get());
            }
        }
        let conns = crate::connection_limits::connections();
        self.connections_open.set(conns.open() as i64);
        for (reason, n) in conns.refused() {
            let counter = self
                .connections_refused
                .with_label_values(&[reason.label()]);
            if n > counter.get() {
                counter.inc_by(n - counter.get());
            }
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteMetrics {
    /// One answered request with HTTP `status` (0 = no response was sent).
    #[inline]
    pub(crate) fn request(&self, status: u16) {
        let class = usize::from(status / 100).min(CODE_CLASSES.len() - 1);
        self.requests[class].inc();
    }
}

impl PoolMetrics {
    /// A finished request that went through this pool: its duration and tries.
    #[inline]
    pub(crate) fn finished(&self, seconds: f64, tries: usize) {
        self.duration.observe(seconds);
        if tries > 0 {
            self.tries.inc_by(tries as u64);
        }
    }

    #[inline]
    /// The ejection counter and gauge, for the pool's `BackendTable`.
    pub(crate) fn outlier(&self) -> crate::balance::OutlierMetrics {
        crate::balance::OutlierMetrics {
            ejections: self.outlier_ejections.clone(),
            ejected: self.outlier_ejected.clone(),
        }
    }

    pub(crate) fn retry(&self, reason: RetryReason) {
        match reason {
            RetryReason::Connect => self.retries_connect.inc(),
            RetryReason::AfterSend => self.retries_after_send.inc(),
            RetryReason::StaleConnection => self.retries_stale.inc(),
            RetryReason::PerTryTimeout => self.retries_per_try.inc(),
            RetryReason::BackendDown => self.retries_down.inc(),
        }
    }

    pub(crate) fn discovery(&self, result: DiscoveryResult) {
        match result {
            DiscoveryResult::Changed => self.discovery_changed.inc(),
            DiscoveryResult::Unchanged => self.discovery_unchanged.inc(),
            DiscoveryResult::Error => self.discovery_error.inc(),
        }
    }
}

/// Seconds since the Unix epoch, as Prometheus timestamps are.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_series_and_classes() {
        let m = Metrics::new();
        let a = m.route("/api/", "api");
        let b = m.route("/api/", "api");
        a.request(200);
        b.request(204);
        a.request(503);
        a.request(0);
        let text = m.encode();
        assert!(
            text.contains(r#"lb_requests_total{code_class="2xx",route="/api/",upstream="api"} 2"#)
        );
        assert!(
            text.contains(r#"lb_requests_total{code_class="5xx",route="/api/",upstream="api"} 1"#)
        );
        assert!(
            text.contains(r#"lb_requests_total{code_class="none",route="/api/",upstream="api"} 1"#)
        );
        m.reload(false, "x");
        assert_eq!(m.reload_count(false), 1);
        assert_eq!(m.reload_count(true), 0);
    }

    #[test]
    fn backends_gauge_drops_removed_pools() {
        let m = Metrics::new();
        m.set_backends([("a", 2, 1), ("b", 1, 0)].into_iter());
        m.set_backends([("a", 3, 0)].into_iter());
        let text = m.encode();
        assert!(text.contains(r#"lb_backends{state="healthy",upstream="a"} 3"#));
        assert!(!text.contains(r#"upstream="b""#));
    }
}
