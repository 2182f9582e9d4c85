//! Per-request state carried through the proxy stages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use crate::balance::{sticky, BackendState, InFlight};
use crate::config::defaults::MAX_RETRIES;
use crate::pool::Pool;
use crate::routes::Route;
use crate::state::Snapshot;

/// Most tries one request can make (first try + retries).
pub(crate) const MAX_TRIES: usize = MAX_RETRIES + 1;

pub(crate) struct RequestCtx {
    pub(crate) started: Instant,
    /// The routing snapshot this request uses from start to finish, loaded once.
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    /// Index into `snapshot.routes`.
    pub(crate) route: Option<usize>,
    pub(crate) request_id: HeaderValue,
    /// Backends tried so far, in order; the last one is the current/final backend.
    tried: [SocketAddr; MAX_TRIES],
    tries: usize,
    /// The upstream's response head has arrived: from here on nothing may be retried.
    pub(crate) response_started: bool,
    /// The request came over TLS (HSTS is sent on such responses only).
    pub(crate) tls: bool,
    /// Request body bytes read so far (held to the route's `max_body_size`).
    pub(crate) body_bytes: u64,
    /// The route's rate-limit verdict for this request, for its `RateLimit-*` headers.
    pub(crate) rate_limit: Option<crate::rate_limit::Verdict>,
    /// Proxied by the direct path (`super::direct`), which logs its own failures.
    pub(crate) direct: bool,
    /// Proxied by the fast path (`super::fast`), below pingora's HTTP session.
    pub(crate) fast: bool,
    /// A stale reused connection was already sent again (once per request, see
    /// `super::failover`).
    pub(crate) reconnected: bool,
    /// Engine path: the next `upstream_peer` reconnects to this backend (a stale reused
    /// connection), without choosing anew or counting a try.
    pub(crate) reconnect_to: Option<SocketAddr>,
    /// This request's tries wait at most the pool's `timeouts.per_try` for a response head
    /// (an idempotent request to a pool that sets it): a read timeout before the response
    /// is a try to give up and send elsewhere (`super::failover`).
    pub(crate) per_try: bool,
    /// The current try's backend, counted in flight until the next try or the end of the
    /// request.
    pub(crate) in_flight: Option<InFlight>,
    /// The backend the request's sticky cookie named (for pools with `sticky`).
    pub(crate) sticky: Option<sticky::Token>,
    /// Close the connection after the access log, lingering (a body cut at
    /// `max_body_size`, still arriving).
    pub(crate) close_lingering: bool,
}

impl RequestCtx {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            snapshot: None,
            route: None,
            request_id: HeaderValue::from_static("-"),
            tried: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_TRIES],
            tries: 0,
            response_started: false,
            tls: false,
            body_bytes: 0,
            rate_limit: None,
            direct: false,
            fast: false,
            reconnected: false,
            reconnect_to: None,
            per_try: false,
            in_flight: None,
            sticky: None,
            close_lingering: false,
        }
    }

    pub(crate) fn route(&self) -> Option<&Route> {
        Some(self.snapshot.as_ref()?.routes.get(self.route?))
    }

    pub(crate) fn pool(&self) -> Option<&Arc<Pool>> {
        self.route().map(|r| &r.pool)
    }

    pub(crate) fn tried(&self) -> &[SocketAddr] {
        &self.tried[..self.tries]
    }

    pub(crate) fn tries(&self) -> usize {
        self.tries
    }

    pub(crate) fn backend(&self) -> Option<SocketAddr> {
        self.tried().last().copied()
    }

    pub(crate) fn record_try(&mut self, addr: SocketAddr, state: Option<Arc<BackendState>>) {
        if self.tries < MAX_TRIES {
            self.tried[self.tries] = addr;
            self.tries += 1;
        }
        // The previous try's count ends here (its guard drops).
        self.in_flight = state.map(InFlight::start);
    }

    /// The current try's backend and how often it was marked down so far, when its pool
    /// marks backends down (health checks or outlier ejection): a try watches for a new mark
    /// while it waits for the response head (`super::direct`, `super::fast`).
    pub(crate) fn down_watch(&self) -> Option<(Arc<BackendState>, u64)> {
        let t = self.in_flight.as_ref()?;
        self.pool()
            .filter(|p| p.table.marks_down())
            .map(|_| (t.state().clone(), t.state().downs()))
    }

    /// The current try got a response head: it counts against the backend for outlier
    /// detection if the pool's `outlier.failures` says so (by default 502, 503, 504),
    /// anything else clears its streak. Every request path (fast, direct, engine) reports
    /// its answers here.
    pub(crate) fn try_answered(&self, status: u16) {
        if let (Some(pool), Some(t)) = (self.pool(), &self.in_flight) {
            pool.table.try_answered(t.state(), status);
        }
    }

    /// The current try failed on the backend's side (connect, reset, timeout).
    pub(crate) fn try_failed(&self) {
        if let (Some(pool), Some(t)) = (self.pool(), &self.in_flight) {
            pool.table.try_failed(t.state());
        }
    }

    /// The client: the socket's peer, or the address it forwarded when the peer is one of
    /// `server.trusted_proxies` (`crate::client_ip`). `None` for a non-IP peer.
    pub(crate) fn client_ip(&self, session: &pingora::proxy::Session) -> Option<IpAddr> {
        let peer = session.client_addr()?.as_inet()?.ip();
        let trusted = self
            .snapshot
            .as_ref()
            .map_or(&[][..], |s| &s.config.server.trusted_proxies);
        Some(crate::client_ip::client_ip(
            peer,
            &session.req_header().headers,
            trusted,
        ))
    }

    /// Which request path proxied this request, for the access log.
    pub(crate) fn pipeline(&self) -> &'static str {
        if self.fast {
            "fast"
        } else if self.direct {
            "direct"
        } else {
            "engine"
        }
    }

    /// Per-request metrics are on (`server.metrics`) for this request's snapshot.
    pub(crate) fn metrics_on(&self) -> bool {
        self.snapshot
            .as_ref()
            .is_some_and(|s| s.config.server.metrics)
    }

    /// Idle upstream connections each worker thread keeps (`server.upstream_keepalive_pool_size`).
    pub(crate) fn keepalive_capacity(&self) -> usize {
        self.snapshot
            .as_ref()
            .map_or(0, |s| s.config.server.upstream_keepalive_pool_size)
    }

    /// How long each write of the answer may wait for the client
    /// (`server.client_timeouts.response_write`) under this request's snapshot.
    pub(crate) fn response_write_timeout(&self) -> std::time::Duration {
        self.snapshot.as_ref().map_or_else(
            || crate::config::ClientLimits::default().response_write_timeout,
            |s| s.config.server.client.response_write_timeout,
        )
    }

    /// Whether the retry budget of this request's pool allows another try.
    pub(crate) fn retry_allowed(&self) -> bool {
        let retries = self.pool().map_or(0, |p| p.spec.retries);
        self.tries <= retries && self.tries < MAX_TRIES
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
