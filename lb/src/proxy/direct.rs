//! The direct path: plain `GET`/`HEAD` requests without a body are proxied here, inside
//! `request_filter`, in the request's own task; everything else (request bodies, upgrades,
//! `Expect`, connection-nominated headers) goes through pingora's full proxy engine.
//!
//! Why: pingora's engine runs the upstream and downstream halves as two futures joined by a
//! channel and keeps upstream connections in a pool that spawns a watcher task per released
//! connection. For a body-less request and its response that machinery is most of the lb's
//! CPU per request (see benches/README.md). Here the request goes out, the response comes
//! back and its body is copied in one straight line, with idle connections kept per thread
//! ([`super::keepalive`]). The routing, backend choice, request and response headers,
//! retry policy, error answers, metrics and access log are the same code as the engine path.

use std::net::SocketAddr;

use http::header::{self, HeaderName};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::l4::stream::Stream as TcpConn;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, OrErr, Result};

use super::ctx::RequestCtx;
use super::failover::{self, Decided};
use super::{keepalive, response, upstream};
use crate::balance::BackendState;
use crate::pool::Pool;
use crate::state::LbState;

/// Whether this request can take the direct path. HTTP/1.x only: an h2 request (TLS
/// listeners, by ALPN) always takes pingora's engine path, which speaks h2 to the client;
/// `tests/tls.rs` checks its access-log `pipeline`. Plain-TCP upstreams only: this path
/// opens its own connections without TLS, so a pool with `tls` goes through the engine
/// (`tests/upstream_tls.rs` checks the `pipeline`).
pub(crate) fn eligible(session: &Session, ctx: &RequestCtx) -> bool {
    if ctx.pool().is_some_and(|p| p.uses_tls()) {
        return false;
    }
    let req = session.req_header();
    let h = &req.headers;
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_10)
        && !h.contains_key(http::header::TRANSFER_ENCODING)
        && h.get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
        && !h.contains_key(http::header::UPGRADE)
        && !h.contains_key(http::header::EXPECT)
        && h.get_all(http::header::CONNECTION)
            .iter()
            .all(only_persistence_tokens)
}

/// `Connection: keep-alive` / `close` only; any other token nominates a header to strip,
/// which the engine path's request policy handles.
fn only_persistence_tokens(v: &http::HeaderValue) -> bool {
    persistence(v.as_bytes()).is_some()
}

/// A `Connection` value's tokens: `Some(close)` when they are only `keep-alive` and
/// `close` (`close`: one of them is `close`), `None` when another token is named. Both
/// the direct path and the fast path take only such requests.
pub(crate) fn persistence(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
            return None;
        }
    }
    Some(close)
}

/// Proxy the request and write the response. An `Err` is a final failure, answered by
/// `fail_to_proxy` (a JSON 502/503/504, unless the response had already started).
pub(crate) async fn proxy(
    session: &mut Session,
    ctx: &mut RequestCtx,
    state: &LbState,
) -> Result<()> {
    let pool = ctx
        .pool()
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route on direct path"))?;
    pool.wait_ready_for_request().await;
    // GET and HEAD are idempotent: every try here may be bounded by `per_try`.
    ctx.per_try = pool.spec.timeouts.per_try.is_some();
    loop {
        let addr = upstream::choose_backend(session, ctx).await?;
        match try_backend(session, ctx, &pool, addr, state).await {
            Ok(()) => return Ok(()),
            Err(failed) if failed.retry() => continue,
            Err(failed) => {
                let e = failed.into_error();
                let req = session.req_header();
                report_final(&pool, addr, &e, ctx, req.method.as_str(), req.uri.path());
                return Err(e);
            }
        }
    }
}

/// Log a request's final failure at `addr`, as ERROR: not a 503 (that is in the access
/// log), not a client's own failure (counted where it reaches pingora, or by the fast
/// path). One line per backend and error kind per `server.log_throttle`: a dead backend
/// would otherwise write one for every request.
pub(crate) fn report_final(
    pool: &Pool,
    addr: SocketAddr,
    e: &Error,
    ctx: &RequestCtx,
    method: &str,
    path: &str,
) {
    if !matches!(e.etype(), ErrorType::HTTPStatus(503))
        && crate::client_errors::Reason::of(e).is_none()
        && crate::log_throttle::admit(
            "fail to proxy",
            format!("{} {addr} {}", pool.name, e.etype().as_str()),
            tracing::Level::ERROR,
        )
    {
        tracing::error!(
            error = %e,
            request_id = ctx.request_id.to_str().unwrap_or("-"),
            method,
            path,
            backend = %addr,
            tries = ctx.tries(),
            "fail to proxy"
        );
    }
}

/// The request as the backend gets it: HTTP/1.1, hop-by-hop headers dropped (the request
/// had only persistence tokens in `Connection`, see [`eligible`]), then the same forwarding
/// headers and rewrites as the engine path.
pub(crate) fn upstream_request(session: &Session, ctx: &RequestCtx) -> Result<Box<RequestHeader>> {
    let mut req = Box::new(session.req_header().clone());
    req.set_version(http::Version::HTTP_11);
    for name in &HOP_BY_HOP {
        req.remove_header(name);
    }
    upstream::upstream_request_filter(session, &mut req, ctx)?;
    Ok(req)
}

/// The engine path's list (`strip_standard_hop_by_hop_headers` in pingora-proxy's
/// `proxy_common.rs`, private there), copied by hand and pre-parsed: removing by `&str`
/// would parse each name on every request. Recheck it on every pingora upgrade (see the
/// note at the pingora pin in the workspace `Cargo.toml`); the header-contract test in
/// `tests/contract.rs` sends each of these down both paths.
pub(crate) const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    response::KEEP_ALIVE,
    response::PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// One try against `addr`. Every error comes back [`Decided`], by the same policy as the
/// engine path ([`failover`]).
async fn try_backend(
    session: &mut Session,
    ctx: &mut RequestCtx,
    pool: &Pool,
    addr: SocketAddr,
    state: &LbState,
) -> Result<(), Decided> {
    let timeouts = &pool.spec.timeouts;
    let request = upstream_request(session, ctx)?;
    // The backend's down marks so far: one that comes while connecting is seen in `send`.
    let watched = ctx.down_watch();
    let down = watched.as_ref().map(|(s, n)| (&**s, *n));
    let mut upstream = match keepalive::take(addr) {
        Some(stream) => match send(stream, request, pool, down).await {
            Ok(upstream) => upstream,
            Err(e) if failover::reconnect_stale(ctx, true, &e) => {
                tracing::debug!(backend = %addr, error = %e, "reused connection was closed, reconnecting");
                let request = upstream_request(session, ctx)?;
                connect_and_send(ctx, addr, request, pool, down).await?
            }
            Err(e) => return Err(failover::failed_after_send(ctx, true, e.into_up())),
        },
        None => connect_and_send(ctx, addr, request, pool, down).await?,
    };

    let mut resp = Box::new(
        upstream
            .resp_header()
            .cloned()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "response head missing"))?,
    );
    response::upstream_response_filter(&mut resp, ctx);
    // `closing` read now, per response: it may have turned on while this request waited.
    response::response_filter(session, &mut resp, ctx, state.is_closing())?;
    let no_body = upstream.is_body_done();
    // Client-side failures are the client's (`crate::client_errors`), as on the engine path.
    session
        .write_response_header(resp, no_body)
        .await
        .map_err(|e| e.into_down())?;
    if !no_body {
        loop {
            let chunk = upstream.read_body_bytes().await.map_err(|e| e.into_up())?;
            let done = chunk.is_none() || upstream.is_body_done();
            session
                .write_response_body(chunk, done)
                .await
                .map_err(|e| e.into_down())?;
            if done {
                break;
            }
        }
    }

    upstream.respect_keepalive();
    if let Some(stream) = upstream.reuse().await {
        let capacity = ctx.keepalive_capacity();
        keepalive::put(addr, stream, timeouts.idle, capacity);
    }
    Ok(())
}

async fn connect_and_send(
    ctx: &RequestCtx,
    addr: SocketAddr,
    request: Box<RequestHeader>,
    pool: &Pool,
    down: Option<(&BackendState, u64)>,
) -> Result<UpstreamSession, Decided> {
    let stream = connect(addr, pool.spec.timeouts.connect)
        .await
        .map_err(|e| failover::connect_failed(ctx, e))?;
    send(stream, request, pool, down)
        .await
        .map_err(|e| failover::failed_after_send(ctx, true, e.into_up()))
}

/// Send the request head and read the response head, skipping interim (1xx) responses: a
/// request without `Expect`/`Upgrade` has no use for them, and a `101` is not a valid
/// answer to it. Until the head arrives each read waits at most `per_try` if the pool sets
/// it (a timeout then is a try to give up, see `super::failover`); the body gets `read`.
/// If `down` (the backend's state, and its down marks when the try began) is marked down
/// meanwhile (health check, outlier
/// ejection), the try gives up at once with [`failover::BACKEND_DOWN`].
async fn send(
    stream: Stream,
    request: Box<RequestHeader>,
    pool: &Pool,
    down: Option<(&BackendState, u64)>,
) -> Result<UpstreamSession> {
    let timeouts = &pool.spec.timeouts;
    let mut upstream = UpstreamSession::new(stream);
    upstream.read_timeout = Some(timeouts.per_try.unwrap_or(timeouts.read));
    upstream.write_timeout = Some(timeouts.write);
    let went_down = down.map(|(s, _)| s.went_down());
    if down.is_some_and(|(s, seen)| s.downs() != seen) {
        return Error::e_explain(
            failover::BACKEND_DOWN,
            "backend marked down while connecting to it",
        );
    }
    upstream.write_request_header(request).await?;
    let went_down = async {
        match went_down {
            Some(n) => n.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(went_down);
    // `per_try` bounds the whole response head, interim answers included (pingora's read
    // timeout is per read): a backend sending `102 Processing` now and then must not hold
    // the try. Without it, `read` bounds each read.
    let whole_head = timeouts
        .per_try
        .map(|t| crate::deadline::after(tokio::time::Instant::now(), t));
    let head = async {
        loop {
            tokio::select! {
                biased;
                read = upstream.read_response() => read?,
                () = &mut went_down => {
                    return Error::e_explain(failover::BACKEND_DOWN, "backend marked down while the request waited for it");
                }
            };
            match upstream.get_status().map(|s| s.as_u16()) {
                Some(101) => {
                    return Error::e_explain(
                        ErrorType::InvalidHTTPHeader,
                        "101 answer to a request that asked for no upgrade",
                    )
                }
                Some(100..=199) => continue,
                _ => return Ok(()),
            }
        }
    };
    match whole_head {
        Some(until) => match tokio::time::timeout_at(until, head).await {
            Ok(done) => done?,
            Err(_) => {
                return Error::e_explain(ErrorType::ReadTimedout, "waiting for the response head")
            }
        },
        None => head.await?,
    }
    upstream.read_timeout = Some(timeouts.read);
    Ok(upstream)
}

/// A new TCP connection (no delay: heads and bodies go out as whole writes already).
pub(crate) async fn connect(addr: SocketAddr, limit: std::time::Duration) -> Result<Stream> {
    let tcp = match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ErrorType::ConnectRefused
            } else {
                ErrorType::ConnectError
            };
            return Err(Error::because(etype, "connecting to backend", e).into_up());
        }
        Err(_) => {
            return Err(Error::explain(
                ErrorType::ConnectTimedout,
                "timed out connecting to backend",
            )
            .into_up())
        }
    };
    tcp.set_nodelay(true)
        .or_err(ErrorType::ConnectError, "setting TCP_NODELAY")?;
    Ok(Box::new(TcpConn::from(tcp)))
}
