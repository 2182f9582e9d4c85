//! Stage 2: pick a backend (upstream_peer) and shape the request sent to it
//! (upstream_request_filter).

use std::net::SocketAddr;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::balance::{self, sticky};
use crate::config::Selection;
use crate::errors::LbError;
use service_kit::request_id;

/// The backend for this request's next try, from what the request carries: its sticky
/// cookie (pools with `sticky`) and its hash key (`consistent_hash`). See [`choose`].
pub(crate) async fn choose_backend(session: &Session, ctx: &mut RequestCtx) -> Result<SocketAddr> {
    let pool = ctx
        .pool()
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in upstream_peer"))?;
    let req = session.req_header();
    if let Some(spec) = &pool.spec.sticky {
        if ctx.tries() == 0 {
            ctx.sticky = sticky::from_request(&req.headers, &spec.cookie);
        }
    }
    let key = match &pool.spec.selection {
        Selection::ConsistentHash(key) => {
            balance::request_key(key, || ctx.client_ip(session), req.uri.path(), &req.headers)
        }
        _ => None,
    };
    choose(ctx, key.as_ref().map(|k| &k[..])).await
}

/// The backend for this request's next try: the one its sticky cookie (`ctx.sticky`) names
/// if that is still usable, else the pool's policy among healthy backends (with `key` for
/// `consistent_hash`), avoiding ones this request already tried. No healthy backend → wait
/// up to the pool's `queue_timeout` for one, then 503 (not retryable). The choice is
/// recorded as this request's next try.
pub(crate) async fn choose(ctx: &mut RequestCtx, key: Option<&[u8]>) -> Result<SocketAddr> {
    let pool = ctx
        .pool()
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route to choose from"))?;
    let pinned = ctx.sticky.and_then(|t| pool.pinned(&t, ctx.tried()));
    let backend = match pinned {
        Some(b) => b,
        None => pool
            .select_or_wait(ctx.tried(), key.unwrap_or(&[]))
            .await
            .ok_or_else(|| LbError::NoHealthyBackend.into_error("no healthy backend"))?,
    };
    let addr = backend.addr;
    if ctx.metrics_on() {
        pool.count_try(&addr);
    }
    ctx.record_try(addr, backend.state);
    Ok(addr)
}

/// The engine path's peer: [`choose_backend`]'s choice, or the same backend again after a
/// stale reused connection (`super::failover`).
///
/// With the pool's `timeouts.per_try` and an idempotent method, the peer's read timeout is
/// `per_try`: pingora has one read timeout per peer, so on this path it also bounds each
/// wait for response body data (documented in lb/README.md).
pub(crate) async fn upstream_peer(
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<Box<HttpPeer>> {
    let addr = match ctx.reconnect_to.take() {
        Some(addr) => addr,
        None => choose_backend(session, ctx).await?,
    };
    let pool = ctx
        .pool()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in upstream_peer"))?;
    let mut peer = Box::new(pool.peer(addr));
    let per_try = pool
        .spec
        .timeouts
        .per_try
        .filter(|_| session.req_header().method.is_idempotent());
    if let Some(limit) = per_try {
        peer.options.read_timeout = Some(limit);
    }
    ctx.per_try = per_try.is_some();
    Ok(peer)
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// Pre-parsed for lookups (pingora's `insert_header` parses its name argument either way, and
/// a `&'static str` saves it a copy).
const X_FORWARDED_FOR_NAME: http::HeaderName = http::HeaderName::from_static(X_FORWARDED_FOR);
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// Forwarding headers, request id, optional prefix strip and Host override. Hop-by-hop
/// headers are already stripped by pingora's default upstream request policy.
pub(crate) fn upstream_request_filter(
    session: &Session,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    if let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    {
        let mut xff = String::with_capacity(64);
        for prev in req.headers.get_all(&X_FORWARDED_FOR_NAME) {
            if let Ok(prev) = prev.to_str() {
                xff.push_str(prev);
                xff.push_str(", ");
            }
        }
        use std::fmt::Write;
        let _ = write!(xff, "{ip}");
        req.insert_header(X_FORWARDED_FOR, xff)?;
    }
    // An h2 request names its host in `:authority` and may carry no Host header; the
    // backend speaks HTTP/1.1, which needs one (and a path rewrite below drops the URI's
    // authority).
    if !req.headers.contains_key(http::header::HOST) {
        if let Some(authority) = req.uri.authority().map(|a| a.as_str().to_owned()) {
            req.insert_header(http::header::HOST, authority)?;
        }
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    req.insert_header(X_FORWARDED_PROTO, if tls { "https" } else { "http" })?;
    if let Some(host) = req.headers.get(http::header::HOST).cloned() {
        req.insert_header(X_FORWARDED_HOST, host)?;
    }
    req.insert_header(request_id::NAME, ctx.request_id.clone())?;
    if let Some(route) = ctx.route() {
        let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Some(new) = route.rewrite(pq) {
            let uri = new.parse().map_err(|_| {
                Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "rewritten path is not a valid URI",
                )
            })?;
            req.set_uri(uri);
        }
        if let Some(host) = &route.pool.spec.host {
            req.insert_header(http::header::HOST, host.as_str())?;
        }
    }
    Ok(())
}
