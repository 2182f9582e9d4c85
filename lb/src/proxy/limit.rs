//! Stage 1, once the route is known: its `rate_limit`, per client (`crate::rate_limit`),
//! answered 429 before any backend is contacted, on both request paths.

use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;
use crate::client_ip::ClientKey;
use crate::errors::{self, LbError};

/// `Ok(true)` when the request was over the limit and has been answered. A request that
/// goes through keeps its [`crate::rate_limit::Verdict`] in `ctx` for the response headers.
/// A route without a limit costs one branch.
pub(crate) async fn refused(
    session: &mut Session,
    ctx: &mut RequestCtx,
    keepalive: bool,
) -> Result<bool> {
    let (verdict, ip) = {
        let Some(limiter) = ctx.route().and_then(|r| r.rate_limit.as_ref()) else {
            return Ok(false);
        };
        let Some(ip) = ctx.client_ip(session) else {
            return Ok(false);
        };
        (limiter.check(ClientKey::of(ip)), ip)
    };
    ctx.rate_limit = Some(verdict);
    if verdict.allowed {
        return Ok(false);
    }
    let Some(route) = ctx.route() else {
        return Ok(false);
    };
    tracing::debug!(client = %ip, route = %route.prefix, "rate limited");
    let Some(limiter) = route.rate_limit.as_ref() else {
        return Ok(false);
    };
    errors::respond_with(
        session,
        LbError::TooManyRequests,
        &ctx.request_id,
        keepalive,
        |resp| limiter.headers(verdict, resp),
    )
    .await?;
    Ok(true)
}
