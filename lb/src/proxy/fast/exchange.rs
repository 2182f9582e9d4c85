//! The fast path's tries: send the prepared head to a backend, read its response head, and
//! copy the body to the client as it comes, framed as the backend framed it.
//!
//! The policy is the direct path's, through the same functions: backend choice
//! (`upstream::choose`), retries (`failover`), per-try timeouts, a try given up when its
//! backend is marked down, idle connections per thread (`keepalive`). What differs is only
//! the bytes: the head goes out as one write, the response head is parsed once, and the
//! client's head goes out in the same write as the body's first bytes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chunked::Chunked;
use super::request_head::Prepared;
use super::response_head::{self, Framing, Ours, Parsed};
use crate::balance::BackendState;
use crate::pool::Pool;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::failover::{self, Decided};
use crate::proxy::{direct, keepalive, upstream};
use crate::state::LbState;

/// Largest response head accepted from a backend (pingora's own limit is the same).
const RESPONSE_HEAD_MAX: usize = 64 * 1024;
/// Room for each body read.
const BODY_READ: usize = 64 * 1024;
/// First room for the response head.
const HEAD_READ: usize = 4096;
/// A chunked body that breaks the framing rules (`super::chunked`).
const BAD_CHUNK: ErrorType = ErrorType::Custom("InvalidChunkedBody");

/// What the client got so far, for the access log and metrics.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The response's status once its head was written (0: none yet).
    pub(crate) status: u16,
    /// Body bytes written to the client.
    pub(crate) bytes_out: usize,
}

impl Progress {
    /// The response head went to the client (with the body's first bytes): from here on a
    /// failure can only cut the response, not replace it with the lb's 502.
    pub(crate) fn head_written(&self) -> bool {
        self.status != 0
    }
}

/// Proxy the request and write the whole response. `Ok(keepalive)`: whether the client's
/// connection may carry another request. An `Err` is a final failure: answered by the
/// caller (a JSON 502/503/504) if no response has started.
pub(crate) async fn proxy(
    client: &mut Stream,
    prepared: &Prepared,
    path: &str,
    ctx: &mut RequestCtx,
    pool: &Pool,
    state: &LbState,
    progress: &mut Progress,
) -> Result<bool> {
    pool.wait_ready_for_request().await;
    // GET and HEAD are idempotent: every try may be bounded by `per_try`.
    ctx.per_try = pool.spec.timeouts.per_try.is_some();
    loop {
        let addr = upstream::choose(ctx, None).await?;
        match try_backend(client, prepared, ctx, pool, addr, state, progress).await {
            Ok(keepalive) => return Ok(keepalive),
            Err(failed) if failed.retry() => continue,
            Err(failed) => {
                let e = failed.into_error();
                direct::report_final(pool, addr, &e, ctx, prepared.method(), path);
                return Err(e);
            }
        }
    }
}

/// One try against `addr`; every error comes back [`Decided`].
async fn try_backend(
    client: &mut Stream,
    prepared: &Prepared,
    ctx: &mut RequestCtx,
    pool: &Pool,
    addr: SocketAddr,
    state: &LbState,
    progress: &mut Progress,
) -> Result<bool, Decided> {
    let watched = ctx.down_watch();
    let down = watched.as_ref().map(|(s, n)| (&**s, *n));
    let date = pingora::protocols::http::date::get_cached_date();
    let request_id = ctx.request_id.clone();
    let hsts = ctx.route().and_then(|r| r.hsts.clone()).filter(|_| ctx.tls);
    let ours = Ours {
        request_id: request_id.as_bytes(),
        date: date.as_bytes(),
        // The client's wish; whether the lb is stopping is read when the head arrives
        // (`exchange_head`).
        keepalive: !prepared.close,
        hsts: hsts.as_ref().map(|h| h.as_bytes()),
    };
    let attempt = Attempt {
        prepared,
        pool,
        down,
        ours: &ours,
        state,
    };
    let mut out = Vec::with_capacity(1024);
    let (mut upstream, mut buf, parsed) = match keepalive::take(addr) {
        Some(stream) => match exchange_head(stream, &attempt, &mut out).await {
            Ok(answer) => answer,
            Err(e) if failover::reconnect_stale(ctx, true, &e) => {
                tracing::debug!(backend = %addr, error = %e, "reused connection was closed, reconnecting");
                out.clear();
                connect_and_exchange(ctx, addr, &attempt, &mut out).await?
            }
            Err(e) => return Err(failover::failed_after_send(ctx, true, e)),
        },
        None => connect_and_exchange(ctx, addr, &attempt, &mut out).await?,
    };

    // The backend answered: no retry from here on.
    ctx.response_started = true;
    buf.advance(parsed.head_len);
    let waits = Waits {
        read: pool.spec.timeouts.read,
        write: ctx.response_write_timeout(),
    };
    let copied = body(client, &mut upstream, buf, &parsed, out, waits, progress).await;
    // The answer counts for or against the backend once, by its status, unless it was
    // unusable from its first bytes (a bad chunk): then the client gets the lb's 502, and
    // it counts against the backend (not twice for a 5xx, nor a success and a failure).
    match &copied {
        Err(_) if !progress.head_written() => ctx.try_failed(),
        _ => ctx.try_answered(parsed.status),
    }
    let reusable = copied.map_err(Decided::final_error)?;
    if reusable {
        keepalive::put(
            addr,
            upstream,
            pool.spec.timeouts.idle,
            ctx.keepalive_capacity(),
        );
    }
    Ok(parsed.keepalive)
}

/// What one try sends and watches, the same on a reused and on a new connection.
struct Attempt<'a> {
    prepared: &'a Prepared,
    pool: &'a Pool,
    /// The backend's state and its down marks when the try began.
    down: Option<(&'a BackendState, u64)>,
    ours: &'a Ours<'a>,
    state: &'a LbState,
}

async fn connect_and_exchange(
    ctx: &RequestCtx,
    addr: SocketAddr,
    attempt: &Attempt<'_>,
    out: &mut Vec<u8>,
) -> Result<(Stream, BytesMut, Parsed), Decided> {
    let stream = direct::connect(addr, attempt.pool.spec.timeouts.connect)
        .await
        .map_err(|e| failover::connect_failed(ctx, e))?;
    exchange_head(stream, attempt, out)
        .await
        .map_err(|e| failover::failed_after_send(ctx, true, e))
}

/// Send the head and read the response head, skipping interim (1xx) ones; the client's
/// head goes into `out`. Until the head arrives each read waits at most `per_try` if the
/// pool sets it, else `read`. If `down` (the backend's state, and its down marks when
/// the try began) is marked down meanwhile, the try gives up with
/// [`failover::BACKEND_DOWN`]. Every error is the upstream's. Whether the client's
/// connection stays open is settled when the head arrives: the lb may have begun to stop
/// while the request waited.
async fn exchange_head(
    mut stream: Stream,
    attempt: &Attempt<'_>,
    out: &mut Vec<u8>,
) -> Result<(Stream, BytesMut, Parsed)> {
    let Attempt {
        prepared,
        pool,
        down,
        ours,
        state,
    } = *attempt;
    let timeouts = &pool.spec.timeouts;
    let went_down = down.map(|(s, _)| s.went_down());
    if down.is_some_and(|(s, seen)| s.downs() != seen) {
        return Err(Error::explain(
            failover::BACKEND_DOWN,
            "backend marked down while connecting to it",
        )
        .into_up());
    }
    write(
        &mut stream,
        &prepared.upstream_head,
        timeouts.write,
        "writing the request head",
    )
    .await
    .map_err(|e| e.into_up())?;
    let went_down = async {
        match went_down {
            Some(n) => n.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(went_down);
    // `per_try` bounds the whole response head, interim answers and a trickled head
    // included (a backend sending `102 Processing` now and then must not hold the try); without
    // it, `read` bounds each read, as nginx's `proxy_read_timeout` does.
    let whole_head = timeouts
        .per_try
        .map(|t| crate::deadline::after(tokio::time::Instant::now(), t));
    let mut buf = BytesMut::with_capacity(HEAD_READ);
    loop {
        let until = whole_head
            .unwrap_or_else(|| crate::deadline::after(tokio::time::Instant::now(), timeouts.read));
        let n = tokio::select! {
            biased;
            read = tokio::time::timeout_at(until, stream.read_buf(&mut buf)) => match read {
                Err(_) => return Error::e_explain(ErrorType::ReadTimedout, "waiting for the response head").map_err(|e: Box<Error>| e.into_up()),
                Ok(Err(e)) => return Err(Error::because(ErrorType::ReadError, "reading the response head", e).into_up()),
                Ok(Ok(n)) => n,
            },
            () = &mut went_down => {
                return Err(Error::explain(failover::BACKEND_DOWN, "backend marked down while the request waited for it").into_up());
            }
        };
        if n == 0 {
            return Err(Error::explain(
                ErrorType::ConnectionClosed,
                "backend closed before a response head",
            )
            .into_up());
        }
        // One read may hold an interim answer and the final head: parse until the buffer
        // needs more.
        loop {
            let now = Ours {
                keepalive: ours.keepalive && !state.is_closing(),
                ..*ours
            };
            let parsed = response_head::parse(&buf, prepared.is_head, &now, out)
                .map_err(|u| Error::explain(ErrorType::InvalidHTTPHeader, u.0).into_up())?;
            match parsed {
                None if buf.len() >= RESPONSE_HEAD_MAX => {
                    return Err(Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "response head too large",
                    )
                    .into_up())
                }
                None => break,
                Some(p) if p.status == 101 => {
                    return Err(Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "101 answer to a request that asked for no upgrade",
                    )
                    .into_up())
                }
                // Interim answers: a simple request has no use for them.
                Some(p) if (100..200).contains(&p.status) => buf.advance(p.head_len),
                Some(p) => return Ok((stream, buf, p)),
            }
        }
    }
}

/// How long the body's copy waits on each side.
#[derive(Clone, Copy)]
struct Waits {
    /// Each read from the backend (the pool's `timeouts.read`).
    read: Duration,
    /// Each write to the client (`client_timeouts.response_write`).
    write: Duration,
}

/// Copy the body (its first bytes are in `buf`) behind the client's head (`out`), as the
/// backend framed it. `Ok(true)`: the message ended exactly where its framing says and the
/// backend lets the connection be reused.
async fn body(
    client: &mut Stream,
    upstream: &mut Stream,
    mut buf: BytesMut,
    parsed: &Parsed,
    mut out: Vec<u8>,
    waits: Waits,
    progress: &mut Progress,
) -> Result<bool> {
    let mut rest = Rest::new(parsed.framing);
    // Framing is checked before the head leaves: a body bad from its first bytes still
    // gets the lb's 502.
    let take = rest.take(&buf)?;
    let mut reusable = parsed.reusable && take == buf.len();
    out.extend_from_slice(&buf[..take]);
    progress.status = parsed.status;
    write_client(client, &out, waits.write).await?;
    progress.bytes_out += take;
    if !rest.is_done() {
        // More writes follow: none may wait for the previous one's acknowledgement.
        crate::accept::no_delay(client);
    }
    while !rest.is_done() {
        buf.clear();
        buf.reserve(BODY_READ);
        match read_body(upstream, &mut buf, waits.read).await {
            Err(e) if rest.to_close() && e.etype() == &ErrorType::ConnectionClosed => break,
            read => read?,
        }
        let take = rest.take(&buf)?;
        reusable &= take == buf.len();
        write_client(client, &buf[..take], waits.write).await?;
        progress.bytes_out += take;
    }
    Ok(reusable)
}

/// What is left of the body, by its framing.
enum Rest {
    /// This many bytes (none for an empty body).
    Length(u64),
    Chunked(Chunked),
    /// Everything until the backend closes.
    ToClose,
}

impl Rest {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => Rest::Length(0),
            Framing::Length(n) => Rest::Length(n),
            Framing::Chunked => Rest::Chunked(Chunked::new()),
            Framing::UntilClose => Rest::ToClose,
        }
    }

    /// How many of `input`'s bytes are body: all of them, or up to its end.
    fn take(&mut self, input: &[u8]) -> Result<usize> {
        match self {
            Rest::Length(left) => {
                let take = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                Ok(take)
            }
            Rest::Chunked(chunked) => match chunked.feed(input) {
                Ok(Some(end)) => Ok(end),
                Ok(None) => Ok(input.len()),
                Err(invalid) => Err(Error::explain(BAD_CHUNK, invalid.0).into_up()),
            },
            Rest::ToClose => Ok(input.len()),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Rest::Length(left) => *left == 0,
            Rest::Chunked(chunked) => chunked.is_done(),
            Rest::ToClose => false,
        }
    }

    fn to_close(&self) -> bool {
        matches!(self, Rest::ToClose)
    }
}

/// One read of body bytes; the backend closing is `ConnectionClosed`.
async fn read_body(upstream: &mut Stream, buf: &mut BytesMut, limit: Duration) -> Result<()> {
    match tokio::time::timeout(limit, upstream.read_buf(buf)).await {
        Err(_) => Error::e_explain(ErrorType::ReadTimedout, "reading the response body")
            .map_err(|e: Box<Error>| e.into_up()),
        Ok(Err(e)) => {
            Err(Error::because(ErrorType::ReadError, "reading the response body", e).into_up())
        }
        Ok(Ok(0)) => Err(Error::explain(
            ErrorType::ConnectionClosed,
            "backend closed during the response body",
        )
        .into_up()),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Write to the client within `limit`: its failure, or a client that stops reading, is the
/// client's.
pub(super) async fn write_client(client: &mut Stream, bytes: &[u8], limit: Duration) -> Result<()> {
    write(client, bytes, limit, "writing the response")
        .await
        .map_err(|e| e.into_down())
}

/// Write all of `bytes` within `limit` (`what`: the error's context; the caller says whose
/// side failed).
async fn write(
    stream: &mut Stream,
    bytes: &[u8],
    limit: Duration,
    what: &'static str,
) -> Result<()> {
    let sent = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(limit, sent).await {
        Err(_) => Error::e_explain(ErrorType::WriteTimedout, what),
        Ok(Err(e)) => Error::e_because(ErrorType::WriteError, what, e),
        Ok(Ok(())) => Ok(()),
    }
}
