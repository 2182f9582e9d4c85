//! Stage 3, when a try fails: decide whether the request is sent again.
//!
//! - Connect failure or refusal: nothing was sent, so any method is retried (on another
//!   backend, see `upstream::choose_backend`) while the pool's `retries` budget lasts.
//! - Failure after sending: only idempotent methods, only if the request body is still
//!   buffered, never once the upstream response has started, and never after a `read`
//!   timeout (a slow backend may still be working on it; the client gets a prompt 504
//!   instead of waiting `read` once per backend).
//! - The pool's `timeouts.per_try` passed with no response head (idempotent requests
//!   only): the backend is silent (blackholed, hung), so the request goes to another
//!   backend while the retry budget lasts, instead of waiting out `read`. The operator
//!   who sets `per_try` says that a slower answer is not coming.
//! - A reused idle connection that fails before any response (the backend closed it while
//!   it sat idle): once per request, the same backend again on a new connection. That is
//!   connection upkeep, not the backend failing the request: it is not a try, spends no
//!   retry, and is counted as `lb_retries_total{reason="stale_connection"}`.
//!
//! Both request paths decide here: pingora's `fail_to_connect` / `error_while_proxy`
//! hooks for the engine path, `super::direct` for the direct path. pingora panics when
//! `Error::retry` is asked of an error whose decision is still open (`ReusedOnly`), so
//! the direct path only ever asks a [`Decided`], which only this module's policy (or
//! [`Decided::final_error`]: never retried) can make.

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use crate::metrics::RetryReason;

/// A failed try whose retry decision has been made.
pub(crate) struct Decided(Box<Error>);

impl Decided {
    /// Whether the request may be sent again.
    pub(crate) fn retry(&self) -> bool {
        self.0.retry()
    }

    pub(crate) fn into_error(self) -> Box<Error> {
        self.0
    }

    /// An error outside the retry policy (the response already started, the client went
    /// away, an internal error): never retried.
    pub(crate) fn final_error(mut e: Box<Error>) -> Self {
        e.set_retry(false);
        Decided(e)
    }
}

/// `?` on a plain pingora error inside a try makes it final: only the policy functions
/// below can allow another try.
impl From<Box<Error>> for Decided {
    fn from(e: Box<Error>) -> Self {
        Decided::final_error(e)
    }
}

/// The error a direct-path try gives up with when its backend is marked down while it
/// waits for the response head (see `super::direct`).
pub(crate) const BACKEND_DOWN: ErrorType = ErrorType::Custom("BackendMarkedDown");

/// The connection to the backend could not be made.
pub(crate) fn connect_failed(ctx: &RequestCtx, mut e: Box<Error>) -> Decided {
    ctx.try_failed();
    let retry = ctx.retry_allowed();
    e.set_retry(retry);
    count_retry(ctx, retry, RetryReason::Connect);
    Decided(e)
}

/// The try failed after (some of) the request was sent. `resendable`: the method is
/// idempotent and the whole request body can be sent again.
pub(crate) fn failed_after_send(ctx: &RequestCtx, resendable: bool, mut e: Box<Error>) -> Decided {
    let per_try = is_per_try_timeout(ctx, &e);
    let down = e.etype() == &BACKEND_DOWN;
    // Outlier detection counts what the backend did; a try given up because the backend
    // was already marked down is not another failure of it.
    if !down && e.esource() == &ErrorSource::Upstream {
        ctx.try_failed();
    }
    let retry =
        !ctx.response_started && (per_try || !is_timeout(&e)) && ctx.retry_allowed() && resendable;
    e.set_retry(retry);
    let reason = if per_try {
        RetryReason::PerTryTimeout
    } else if down {
        RetryReason::BackendDown
    } else {
        RetryReason::AfterSend
    };
    count_retry(ctx, retry, reason);
    Decided(e)
}

/// A read that timed out before the response head on a try bounded by `per_try` (its
/// read timeout is `per_try` until the head arrives; see `super::upstream` and
/// `super::direct`).
fn is_per_try_timeout(ctx: &RequestCtx, e: &Error) -> bool {
    ctx.per_try && !ctx.response_started && matches!(e.etype(), ErrorType::ReadTimedout)
}

/// Whether a failure on a reused connection is a stale connection to try again on a new
/// one (see the module doc); at most once per request, counted when it is.
pub(crate) fn reconnect_stale(ctx: &mut RequestCtx, resendable: bool, e: &Error) -> bool {
    // A try given up because its backend went down is not upkeep: it goes elsewhere.
    // Nor is an answer the lb could not use (a malformed head): the backend did answer.
    let stale = resendable
        && !ctx.response_started
        && !ctx.reconnected
        && !is_timeout(e)
        && e.etype() != &BACKEND_DOWN
        && e.etype() != &ErrorType::InvalidHTTPHeader;
    if stale {
        ctx.reconnected = true;
        count_retry(ctx, true, RetryReason::StaleConnection);
    }
    stale
}

/// pingora's `fail_to_connect` hook (engine path).
pub(crate) fn fail_to_connect(ctx: &RequestCtx, e: Box<Error>) -> Box<Error> {
    connect_failed(ctx, e).into_error()
}

/// pingora's `error_while_proxy` hook (engine path). A stale pooled connection is sent
/// again to the same backend: `upstream_peer` sees `ctx.reconnect_to`.
pub(crate) fn error_while_proxy(
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    let resendable =
        session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
    if client_reused && reconnect_stale(ctx, resendable, &e) {
        ctx.reconnect_to = ctx.backend();
        e.set_retry(true);
        return e;
    }
    failed_after_send(ctx, resendable, e).into_error()
}

/// `lb_retries_total{reason}`, when the request is sent again.
fn count_retry(ctx: &RequestCtx, retry: bool, reason: RetryReason) {
    if let (true, true, Some(pool)) = (retry, ctx.metrics_on(), ctx.pool()) {
        pool.metrics.retry(reason);
    }
}

pub(crate) fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}
