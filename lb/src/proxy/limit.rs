//! Stage 1, once the route is known: its `rate_limit`, per client (`crate::rate_limit`),
//! answered 429 before any backend is contacted, on both request paths.

use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;
use crate::client_ip::{self, ClientKey};
use crate::errors::{self, LbError};

/// `Ok(true)` when the request was over the limit and has been answered. A request that
/// goes through keeps its [`crate::rate_limit::Verdict`] in `ctx` for the response headers.
pub(crate) async fn refused(
    session: &mut Session,
    ctx: &mut RequestCtx,
    keepalive: bool,
) -> Result<bool> {
    let Some(snapshot) = ctx.snapshot.clone() else {
        return Ok(false);
    };
    let Some(route) = ctx.route.map(|i| snapshot.routes.get(i)) else {
        return Ok(false);
    };
    let Some(limiter) = route.rate_limit.as_ref() else {
        return Ok(false);
    };
    let Some(peer) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    else {
        return Ok(false);
    };
    let ip = client_ip::client_ip(
        peer,
        &session.req_header().headers,
        &snapshot.config.server.trusted_proxies,
    );
    let verdict = limiter.check(ClientKey::of(ip));
    ctx.rate_limit = Some(verdict);
    if verdict.allowed {
        return Ok(false);
    }
    tracing::debug!(client = %ip, route = %route.prefix, "rate limited");
    let request_id = ctx.request_id.clone();
    errors::respond_with(
        session,
        LbError::TooManyRequests,
        &request_id,
        keepalive,
        |resp| limiter.headers(verdict, resp),
    )
    .await?;
    Ok(true)
}
