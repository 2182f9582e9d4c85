//! The pingora `ProxyHttp` implementation, one module per pipeline stage:
//! `request` (snapshot, request id, route) → `upstream` (backend choice, request headers)
//! → `failover` (retry policy) → `response` (response headers) → `crate::access_log`.
//!
//! Body-less `GET`/`HEAD` requests leave pingora's engine after `request` and are proxied
//! by `direct` (with idle upstream connections kept by `keepalive`) through the same
//! stages; every other request goes through pingora's engine and its hooks below.

pub(crate) mod access_log;
mod ctx;
pub(crate) mod direct;
mod failover;
pub(crate) mod fast;
pub(crate) mod keepalive;
mod limit;
mod redirect;
pub(crate) mod request;
mod response;
pub(crate) mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

pub(crate) use ctx::RequestCtx;

use crate::client_errors;
use crate::errors::{self, LbError};
use crate::state::LbState;

pub(crate) struct LbProxy {
    state: Arc<LbState>,
}

impl LbProxy {
    pub(crate) fn new(state: Arc<LbState>) -> Self {
        Self { state }
    }
}

#[async_trait]
impl ProxyHttp for LbProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if request::request_filter(&self.state, session, ctx).await? {
            return Ok(true);
        }
        if !direct::eligible(session, ctx) {
            return Ok(false);
        }
        ctx.direct = true;
        direct::proxy(session, ctx, &self.state).await?;
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        request::request_body_filter(body.as_ref(), session.was_upgraded(), ctx)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if let Some(pool) = ctx.pool().filter(|p| !p.is_ready()).cloned() {
            pool.wait_ready_for_request().await;
        }
        upstream::upstream_peer(session, ctx).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::upstream_request_filter(session, upstream_request, ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        failover::fail_to_connect(ctx, e)
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        failover::error_while_proxy(session, ctx, e, client_reused)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response::upstream_response_filter(upstream_response, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response::response_filter(session, upstream_response, ctx, self.state.is_closing())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(err) = LbError::from_proxy_error(e) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if session.response_written().is_none() {
            if ctx.request_id.as_bytes() == b"-" {
                // failed before request_filter ran (e.g. an unparsable request)
                ctx.request_id = service_kit::request_id::generate();
            }
            if let Err(write_err) = errors::respond(session, err, &ctx.request_id, false).await {
                tracing::debug!(error = %write_err, "could not send error response");
            } else if !session.is_http2() && !session.is_body_done() {
                // An answer before the request's body was all read (a body cut at
                // max_body_size, a 502 or 504 during an upload): the client is still
                // sending it. Pingora drops the connection without a shutdown here, so
                // `logging` closes it through the engine's wrapper, which lingers
                // (`downstream::linger`) and so lets the client read its answer instead of a
                // reset.
                ctx.close_lingering = true;
            }
        }
        FailToProxy {
            error_code: err.status(),
            can_reuse_downstream: false,
        }
    }

    /// The 503 for "no healthy backend" is an expected answer, logged by the access log.
    /// pingora would report a direct-path failure as "Fail to filter request", so the
    /// direct path logs its own. What a client got wrong is counted, at DEBUG
    /// (`crate::client_errors`).
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        if let Some(reason) = client_errors::Reason::of(e) {
            client_errors::count(reason);
            tracing::debug!(error = %e, reason = reason.label(), request_id = ?ctx.request_id, "client error");
            return true;
        }
        matches!(e.etype(), ErrorType::HTTPStatus(503)) || ctx.direct
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        access_log::finish(&self.state, ctx, &access_log::Exchange::of(session), e);
        // The request is over for its backend: a close that lingers after it (pingora's
        // shutdown of a connection it will not reuse comes after this) is not its load.
        ctx.in_flight = None;
        if std::mem::take(&mut ctx.close_lingering) {
            session.shutdown().await;
        }
    }
}
