//! Stage 3, when a try fails: decide whether another backend may take the request.
//!
//! - Connect failure or refusal: nothing was sent, so any method is retried (on another
//!   backend, see `upstream::choose_backend`) while the pool's `retries` budget lasts.
//! - Failure after sending: only idempotent methods, only if the request body is still
//!   buffered, never once the upstream response has started, and never after a timeout
//!   (a slow backend may still be working on it; the client gets a prompt 504 instead of
//!   waiting `read` once per backend).
//!
//! The engine path (pingora's `fail_to_connect` / `error_while_proxy` hooks) and the direct
//! path (`super::direct`) both decide here.

use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::ctx::RequestCtx;
use crate::metrics::RetryReason;

pub fn fail_to_connect(ctx: &RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let retry = ctx.retry_allowed();
    e.set_retry(retry);
    count_retry(ctx, retry, RetryReason::Connect);
    e
}

/// `lb_retries_total{reason}`, when another try follows.
fn count_retry(ctx: &RequestCtx, retry: bool, reason: RetryReason) {
    if let (true, true, Some(pool)) = (retry, ctx.metrics_on(), ctx.pool()) {
        pool.metrics.retry(reason);
    }
}

pub fn error_while_proxy(session: &Session, ctx: &RequestCtx, e: Box<Error>) -> Box<Error> {
    let resendable =
        session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
    after_send(ctx, resendable, e)
}

/// The direct path only takes body-less `GET`/`HEAD`, which can always be sent again.
pub fn error_while_proxy_direct(ctx: &RequestCtx, e: Box<Error>) -> Box<Error> {
    after_send(ctx, true, e)
}

fn after_send(ctx: &RequestCtx, resendable: bool, mut e: Box<Error>) -> Box<Error> {
    let retry = !ctx.response_started && !is_timeout(&e) && ctx.retry_allowed() && resendable;
    e.set_retry(retry);
    count_retry(ctx, retry, RetryReason::AfterSend);
    e
}

pub fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}
