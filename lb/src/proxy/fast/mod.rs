//! The fast path: a simple HTTP/1.1 `GET`/`HEAD` (plaintext or TLS) proxied on the client's own bytes, below
//! pingora's HTTP/1 session, by the connection's own task (`crate::downstream` calls
//! [`serve`] with each request head it has read and checked).
//!
//! Why: for such a request pingora parses the head into `http` header maps, clones them
//! into the upstream request, serialises that, parses the response into maps again and
//! serialises it for the client, inside a per-request frame of large futures. Profiles put
//! most of the lb's user-space CPU per request there (benches/README.md). Here the head is
//! parsed once with httparse into stack slots, the upstream head is the client's header
//! lines with the lb's edits, the response head is parsed once, and the client's head
//! leaves in the same write as the body's first bytes.
//!
//! What stays the same code as on the other paths: the snapshot, routes, pools, backend
//! choice, health and outlier state, the retry policy (`super::failover`), idle upstream
//! connections (`super::keepalive`), the lb's JSON errors, metrics and the access log
//! (`pipeline: "fast"`).
//!
//! Anything not provably simple (`request_head` names the test) goes to pingora, with the
//! bytes already read, before anything is sent: request bodies, upgrades, `Expect`, other
//! `Connection` tokens, HTTP/1.0, absolute-form or unusual targets, h2, TLS upstreams, routes with `rate_limit`, upstreams with `sticky` or `consistent_hash`, the
//! HTTPS redirect and the ACME path. `server.fast_path: false` sends everything there.

pub(crate) mod chunked;
mod exchange;
pub(crate) mod request_head;
pub(crate) mod response_head;

use std::net::IpAddr;

use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;

use super::access_log::{self, Exchange, Spoken};
use super::ctx::RequestCtx;
use crate::client_errors;
use crate::errors::{self, LbError};
use crate::state::LbState;

/// What became of the connection after [`serve`].
pub(crate) enum Served {
    /// Answered; the connection carries on, with these bytes already read (the start of
    /// the next request, if the client pipelines).
    Next(BytesMut),
    /// Answered (or failed); close the connection.
    Close,
    /// Not simple: pingora takes the request, from these bytes (untouched).
    Engine(BytesMut),
}

/// What the fast path knows of the client's connection.
pub(crate) struct Link<'a> {
    pub(crate) peer: Option<IpAddr>,
    /// `TLSv1.2`/`TLSv1.3` on a TLS listener, `None` on plaintext.
    pub(crate) tls_version: Option<&'a str>,
}

/// Serve the request whose complete head starts `buf`, if it is simple.
pub(crate) async fn serve(
    state: &LbState,
    stream: &mut Stream,
    mut buf: BytesMut,
    link: &Link<'_>,
) -> Served {
    let snapshot = state.snapshot();
    let tls = link.tls_version.is_some();
    let Some(prepared) = request_head::prepare(&buf, link.peer, tls, &snapshot) else {
        return Served::Engine(buf);
    };
    let mut ctx = RequestCtx::new();
    ctx.fast = true;
    ctx.request_id = prepared.request_id.clone();
    ctx.route = Some(prepared.route);
    ctx.tls = tls;
    let pool = snapshot.routes.get(prepared.route).pool.clone();
    ctx.snapshot = Some(snapshot);

    // The path is the target's usual URI bytes (checked), so it is ASCII.
    let path = std::str::from_utf8(&buf[prepared.path.clone()]).unwrap_or("-");
    let mut progress = exchange::Progress::default();
    let result = exchange::proxy(
        stream,
        &prepared,
        path,
        &mut ctx,
        &pool,
        state,
        &mut progress,
    )
    .await;
    let keepalive = match &result {
        Ok(keepalive) => *keepalive,
        Err(e) => {
            if let Some(reason) = client_errors::Reason::of(e) {
                client_errors::count(reason);
                tracing::debug!(error = %e, reason = reason.label(), request_id = ?ctx.request_id, "client error");
            } else if !progress.head_written() {
                // Nothing reached the client yet (a backend's bad first bytes included):
                // it gets the lb's answer.
                if let Some(err) = LbError::from_proxy_error(e) {
                    let answer = errors::raw_response(err, &ctx.request_id, prepared.is_head);
                    let limit = ctx.response_write_timeout();
                    if exchange::write_client(stream, &answer, limit).await.is_ok() {
                        progress.status = err.status();
                    }
                }
            }
            false
        }
    };
    let exchange = Exchange {
        client_ip: link.peer,
        method: prepared.method(),
        path,
        status: progress.status,
        bytes_in: 0,
        bytes_out: progress.bytes_out,
        spoken: Spoken {
            h2: false,
            tls_version: link.tls_version,
        },
    };
    access_log::finish(state, &ctx, &exchange, result.as_ref().err().map(|e| &**e));
    drop((exchange, ctx));
    if keepalive {
        buf.advance(prepared.head_len);
        Served::Next(buf)
    } else {
        Served::Close
    }
}
