//! Stage 1, request_filter: load the snapshot, settle the request id, answer ACME http-01
//! challenges, send plaintext requests to HTTPS when configured, pick the route, hold the client to its rate limit.

use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;
use super::redirect;
use crate::errors::{self, LbError};
use crate::state::LbState;
use service_kit::request_id;

/// `Ok(true)` when the lb answered itself (no route).
pub(crate) async fn request_filter(
    state: &LbState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let req = session.req_header();
    ctx.request_id = request_id::keep_or_generate(&req.headers);
    ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let snapshot = state.snapshot();
    // Every write of this request's answer (the lb's own included) must be taken by the
    // client in time: one that stops reading is cut off, not waited for.
    session.set_write_timeout(Some(snapshot.config.server.client.response_write_timeout));
    if session.is_http2() {
        // HTTP/1 heads were checked before pingora parsed them (`crate::downstream`); an h2
        // request's target and header count are checked here, with the same limits.
        if let Some(refusal) = h2_over_limits(session, &snapshot.config.server.client) {
            ctx.snapshot = Some(snapshot);
            crate::client_errors::count(refusal.0);
            errors::respond(session, refusal.1, &ctx.request_id, false).await?;
            return Ok(true);
        }
    }
    // ACME http-01 challenges: the lb's own, before the redirect and the routes.
    if !ctx.tls && crate::acme::answer(session, &snapshot.config).await? {
        ctx.snapshot = Some(snapshot);
        return Ok(true);
    }
    if !ctx.tls {
        if let Some(redirect) = &snapshot.config.server.https_redirect {
            if redirect::applies(redirect, session.req_header()) {
                ctx.snapshot = Some(snapshot.clone());
                let keepalive = !has_body(&session.req_header().headers);
                redirect::respond(session, redirect, &ctx.request_id, keepalive).await?;
                return Ok(true);
            }
        }
    }
    let req = session.req_header();
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400 (h2 has :authority,
    // HTTP/1.0 may go without).
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        crate::client_errors::count(crate::client_errors::Reason::Malformed);
        ctx.snapshot = Some(snapshot);
        errors::respond(session, LbError::BadRequest, &ctx.request_id, false).await?;
        return Ok(true);
    }
    ctx.route = snapshot.routes.lookup(req.uri.path());
    let too_large = ctx.route.is_some_and(|i| {
        declared_length(&req.headers).is_some_and(|n| n > snapshot.routes.get(i).max_body_size)
    });
    ctx.snapshot = Some(snapshot);
    if ctx.route.is_none() {
        let keepalive = !has_body(&session.req_header().headers);
        errors::respond(session, LbError::NoRoute, &ctx.request_id, keepalive).await?;
        return Ok(true);
    }
    let body = has_body(&session.req_header().headers);
    if super::limit::refused(session, ctx, !body).await? {
        return Ok(true);
    }
    if too_large {
        // Refused before any backend is contacted; the body is not read, so the
        // connection closes after the answer.
        crate::client_errors::count(crate::client_errors::Reason::BodyTooLarge);
        errors::respond(session, LbError::PayloadTooLarge, &ctx.request_id, false).await?;
        return Ok(true);
    }
    if body {
        // No single read of the body may wait past the whole body deadline;
        // `request_body_filter` ends a body still arriving after it.
        session.set_read_timeout(Some(body_deadline(ctx)));
    }
    Ok(false)
}

/// An h2 request over `server.request_limits.uri_length` (414) or `headers` (431).
fn h2_over_limits(
    session: &Session,
    client: &crate::config::ClientLimits,
) -> Option<(crate::client_errors::Reason, LbError)> {
    use crate::client_errors::Reason;
    let req = session.req_header();
    let target = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > client.uri_length {
        return Some((Reason::UriTooLong, LbError::UriTooLong));
    }
    if req.headers.len() > client.headers {
        return Some((Reason::HeadTooLarge, LbError::HeaderFieldsTooLarge));
    }
    None
}

/// `server.client_timeouts.request_body`, counted from the end of the request head.
fn body_deadline(ctx: &RequestCtx) -> std::time::Duration {
    ctx.snapshot
        .as_ref()
        .map_or(crate::config::defaults::REQUEST_BODY_TIMEOUT, |s| {
            s.config.server.client.request_body_timeout
        })
}

/// The body length a request declares (`Content-Length`); pingora has already refused
/// a malformed or conflicting one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Engine path, per body chunk: a body (chunked, or longer than declared) that passes the
/// route's `max_body_size` is cut there and answered 413 (if no response has started).
/// After a `101` (`upgraded`), pingora passes the upgraded protocol's bytes (a WebSocket's
/// frames) through this filter too: they are counted but not held to either limit, which
/// would end a WebSocket after 60 s or 10 MiB.
pub(crate) fn request_body_filter(
    body: Option<&bytes::Bytes>,
    upgraded: bool,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(chunk) = body else { return Ok(()) };
    ctx.body_bytes += chunk.len() as u64;
    if upgraded {
        return Ok(());
    }
    if ctx.started.elapsed() > body_deadline(ctx) {
        // A client trickling its body: the per-read timeout alone would never end it.
        return Err(LbError::RequestTimeout.into_error("request body over its deadline"));
    }
    match ctx.route() {
        Some(route) if ctx.body_bytes > route.max_body_size => {
            Err(LbError::PayloadTooLarge.into_error("request body over max_body_size"))
        }
        _ => Ok(()),
    }
}

/// Whether the request may carry a body we did not read (then the connection is closed
/// after an lb-generated answer instead of being reused).
fn has_body(h: &http::HeaderMap) -> bool {
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}
