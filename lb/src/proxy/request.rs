//! Stage 1, request_filter: load the snapshot, settle the request id, send plaintext
//! requests to HTTPS when configured, pick the route.

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
    if !ctx.tls {
        if let Some(redirect) = &snapshot.config.server.https_redirect {
            if redirect::applies(redirect, session.req_header()) {
                ctx.snapshot = Some(snapshot.clone());
                let keepalive = !has_body(session);
                redirect::respond(session, redirect, &ctx.request_id, keepalive).await?;
                return Ok(true);
            }
        }
    }
    let req = session.req_header();
    ctx.route = snapshot.routes.lookup(req.uri.path());
    ctx.snapshot = Some(snapshot);
    if ctx.route.is_none() {
        let keepalive = !has_body(session);
        errors::respond(session, LbError::NoRoute, &ctx.request_id, keepalive).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether the request may carry a body we did not read (then the connection is closed
/// after an lb-generated answer instead of being reused).
fn has_body(session: &Session) -> bool {
    let h = &session.req_header().headers;
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}
