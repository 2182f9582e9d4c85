//! Stage 4: the response head on its way back.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;
use crate::balance::sticky;
use service_kit::request_id;

/// Pre-parsed: removing by `&str` parses the name on every call.
pub(crate) const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
pub(crate) const PROXY_CONNECTION: http::HeaderName =
    http::HeaderName::from_static("proxy-connection");

/// The upstream answered: no retry from here on (the answer counts for or against the
/// backend in outlier detection); drop its hop-by-hop headers.
pub(crate) fn upstream_response_filter(resp: &mut ResponseHeader, ctx: &mut RequestCtx) {
    ctx.response_started = true;
    ctx.try_answered(resp.status.as_u16());
    resp.remove_header(&KEEP_ALIVE);
    resp.remove_header(&PROXY_CONNECTION);
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.remove_header(&http::header::CONNECTION);
    }
}

/// An HTTP/1.0 client cannot read chunked encoding (RFC 9112 §6.1: a server must not send
/// `Transfer-Encoding` unless the request is HTTP/1.1 or later), yet pingora passes a chunked
/// upstream response through, and even adds chunking to a close-delimited one. For such a
/// client the body goes out close-delimited instead: no `Transfer-Encoding`, and the
/// connection closes after it.
fn http10_framing(session: &mut Session, resp: &mut ResponseHeader) {
    if session.req_header().version < http::Version::HTTP_11
        && resp
            .remove_header(&http::header::TRANSFER_ENCODING)
            .is_some()
    {
        session.set_keepalive(None);
    }
}

/// A pool with `sticky`: pin the client to the backend that answered, unless its cookie
/// already names that backend.
fn sticky_cookie(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    let (Some(spec), Some(t)) = (
        ctx.pool().and_then(|p| p.spec.sticky.as_ref()),
        &ctx.in_flight,
    ) else {
        return Ok(());
    };
    let token = &t.state().token;
    if ctx.sticky.as_ref() != Some(token) {
        resp.append_header(http::header::SET_COOKIE, sticky::set_cookie(spec, token))?;
    }
    Ok(())
}

/// The response head's last changes on both paths, just before it is written: echo the
/// request id; the route's `RateLimit-*` headers; the route's HSTS over TLS (replacing the backend's: the lb owns the policy); once the lb is `closing` (read per response: it turns on while
/// connections are open), end the connection after this response; HTTP/1.0 framing.
pub(crate) fn response_filter(
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
    closing: bool,
) -> Result<()> {
    resp.insert_header(request_id::NAME, ctx.request_id.clone())?;
    if ctx.tls {
        if let Some(hsts) = ctx.route().and_then(|r| r.hsts.as_ref()) {
            resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
    }
    sticky_cookie(resp, ctx)?;
    if let Some(verdict) = ctx.rate_limit {
        if let Some(limiter) = ctx.route().and_then(|r| r.rate_limit.as_ref()) {
            limiter.headers(verdict, resp)?;
        }
    }
    if closing {
        // handing over or stopping: clients open their next connection elsewhere
        session.set_keepalive(None);
    }
    http10_framing(session, resp);
    Ok(())
}
