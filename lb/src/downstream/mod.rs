//! The client side of every connection, before pingora's HTTP/1 parser: [`EdgeApp`] wraps
//! pingora's `HttpProxy` as the listening service's app.
//!
//! For HTTP/1 (plaintext or TLS) it reads each request head itself (`read`), within the
//! deadlines of `server.client_timeouts`, checks it against `server.request_limits` and
//! for ambiguous framing (`head`), and answers a refused head with the lb's JSON error
//! (`reject`) instead of pingora's bare 400. An accepted head is handed to pingora as the
//! session's already-read prefix (`set_pipelined_prefix`), so pingora parses the same
//! bytes and nothing is copied. HTTP/2 (ALPN `h2`, or the h2c preface) goes to pingora's
//! own connection handling unchanged.

pub(crate) mod head;
mod linger;
#[cfg(test)]
mod pingora_agrees;
mod read;
mod reject;
mod write_deadline;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use head::Refusal;

use crate::client_errors::{self, Reason};
use crate::errors::LbError;
use crate::proxy::fast::{self, Served};
use crate::proxy::LbProxy;
use crate::state::LbState;
use read::NoHead;
use write_deadline::WriteDeadline;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a TLS connection the fast path closes may take to send its close_notify (a
/// client that reads nothing must not hold the task).
const CLOSE_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct EdgeApp {
    proxy: Arc<HttpProxy<LbProxy>>,
    state: Arc<LbState>,
}

impl EdgeApp {
    pub(crate) fn new(proxy: HttpProxy<LbProxy>, state: Arc<LbState>) -> Self {
        EdgeApp {
            proxy: Arc::new(proxy),
            state,
        }
    }

    /// How the connection opens: HTTP/2 by ALPN (its preface read within `request_head`),
    /// or (with `server.h2c`) a plaintext connection opening with the preface; else
    /// HTTP/1 with what was read deciding it. `None`: closed (and counted if it had begun).
    async fn opening(&self, stream: &mut Stream) -> Option<Opening> {
        let client = self.state.client_limits();
        if stream.get_ssl_digest().is_some() {
            if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                return Some(Opening::Http1(BytesMut::new(), None));
            }
            // h2 by ALPN: pingora would wait for the client's preface with no deadline, so
            // a client silent after its handshake would hold its connection and its
            // connection_limits place for ever. It gets `request_head`, as an HTTP/1
            // client gets for its first head.
            return preface(stream, client.request_head_timeout)
                .await
                .map(Opening::H2);
        }
        if !self.proxy.server_options.as_ref().is_some_and(|o| o.h2c) {
            return Some(Opening::Http1(BytesMut::new(), None));
        }
        // h2c: read until the bytes stop matching the preface (an HTTP/1 request differs
        // by its first or second byte) or match it whole. One deadline from here, which the
        // first HTTP/1 head keeps: a request shorter than the preface is served at once,
        // and peeking never extends `request_head`.
        let deadline =
            crate::deadline::after(tokio::time::Instant::now(), client.request_head_timeout);
        let mut read = BytesMut::with_capacity(1024);
        loop {
            let n = read.len().min(H2_PREFACE.len());
            if read[..n] != H2_PREFACE[..n] {
                return Some(Opening::Http1(read, Some(deadline)));
            }
            if n == H2_PREFACE.len() {
                return Some(Opening::H2(read.freeze()));
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut read)).await {
                Ok(Ok(got)) if got > 0 => {}
                Ok(_) if read.is_empty() => return None, // gone before a byte: a normal end
                Ok(result) => {
                    client_errors::count(Reason::RequestHead);
                    tracing::debug!(error = ?result.err(), "closed during the h2c preface");
                    return None;
                }
                Err(_) if read.is_empty() => return None, // silent: closed, as an HTTP/1 one
                Err(_) => {
                    client_errors::count(Reason::HeadTimeout);
                    tracing::debug!("part of an h2c preface, then nothing within request_head");
                    return None;
                }
            }
        }
    }
}

/// How a connection opens ([`EdgeApp::opening`]).
enum Opening {
    /// HTTP/2, with the bytes already read of it (its preface).
    H2(bytes::Bytes),
    /// HTTP/1, with the bytes already read of its first head, and that head's deadline
    /// when reading them started it.
    Http1(BytesMut, Option<tokio::time::Instant>),
}

#[async_trait]
impl ServerApp for EdgeApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (mut carry, mut first_deadline) = match self.opening(&mut stream).await? {
            Opening::H2(read) => {
                let limit = self.state.client_limits().response_write_timeout;
                crate::accept::no_delay(&stream);
                let stream = WriteDeadline::wrap_after(stream, limit, read);
                return ServerApp::process_new(&self.proxy, stream, shutdown).await;
            }
            Opening::Http1(read, deadline) => ((!read.is_empty()).then_some(read), deadline),
        };
        let mut persistent: Option<HttpPersistentSettings> = None;
        let mut first = true;
        // What the fast path needs of the connection, read once: the client's address and
        // the TLS version (`None`: plaintext).
        let tls = stream.get_ssl_digest();
        let link = fast::Link {
            peer: stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip())),
            tls_version: tls
                .as_deref()
                .map(|d| crate::proxy::access_log::tls_version(&d.version)),
        };
        // One receiver for the connection's life: the idle waits between requests watch it.
        let mut closing = shutdown.clone();
        loop {
            let client = self.state.client_limits();
            let read = read::head(
                &mut stream,
                &client,
                first,
                &mut closing,
                carry.take(),
                first_deadline.take(),
            )
            .await;
            let head = match read {
                Ok(head) => head,
                Err(no_head) => {
                    refused(stream, no_head).await;
                    return None;
                }
            };
            let head = match fast::serve(&self.state, &mut stream, head, &link).await {
                Served::Next(rest) => {
                    // Kept for another request: from here small writes must not wait on
                    // acknowledgements (a pipelined answer's, the next one's).
                    crate::accept::no_delay(&stream);
                    carry = Some(rest);
                    first = false;
                    continue;
                }
                Served::Close => {
                    // The lb's own close, not the engine's: no lingering (a GET's client is
                    // not sending a body).
                    let mut stream = WriteDeadline::unwrapped(stream);
                    if link.tls_version.is_some() {
                        // As pingora's engine ends a connection it will not reuse: over TLS
                        // the close_notify tells a whole answer from a cut one.
                        let _ = tokio::time::timeout(CLOSE_NOTIFY_WAIT, stream.shutdown()).await;
                    }
                    return None;
                }
                Served::Engine(untouched) => untouched,
            };
            // Pingora's engine writes to the client itself: its writes are bounded by the
            // wrapper (the fast path's own are timed where they are made).
            crate::accept::no_delay(&stream);
            stream = WriteDeadline::wrap(stream, client.response_write_timeout);
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                // Pingora reuses the connection only while keep-alive is on; the idle wait
                // itself is ours (`read`), so any non-zero value serves.
                None if !*shutdown.borrow() => {
                    session.set_keepalive(Some(client.keepalive_timeout.as_secs().max(1)))
                }
                None => session.set_keepalive(None),
            }
            session.set_pipelined_prefix(head);
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            (stream, persistent) = reused.consume();
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// The h2 client preface of a TLS connection that chose h2, read within `limit`: the
/// bytes read (handed on to pingora's h2 engine, which reads them again), or `None` when
/// the client sent no preface in time (`head_timeout`), sent something else or left
/// (`protocol`, as pingora counts a failed h2 handshake): closed, and counted.
async fn preface(stream: &mut Stream, limit: std::time::Duration) -> Option<bytes::Bytes> {
    let mut buf = [0u8; H2_PREFACE.len()];
    match tokio::time::timeout(limit, stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) if buf == H2_PREFACE => Some(bytes::Bytes::copy_from_slice(&buf)),
        Ok(Ok(_)) => {
            client_errors::count(Reason::Protocol);
            tracing::debug!("an h2 connection (ALPN) opened without the h2 preface");
            None
        }
        Ok(Err(e)) => {
            client_errors::count(Reason::Protocol);
            tracing::debug!(error = %e, "an h2 connection (ALPN) ended before its preface");
            None
        }
        Err(_) => {
            client_errors::count(Reason::HeadTimeout);
            tracing::debug!("no h2 preface within request_head after ALPN h2");
            None
        }
    }
}

/// Count and answer (or just close) a connection that gave no acceptable head.
async fn refused(stream: Stream, no_head: NoHead) {
    // The lb's own close: `reject` decides whether it lingers, not the engine's wrapper
    // (which stays on a keep-alive connection after an engine request).
    let stream = WriteDeadline::unwrapped(stream);
    let (reason, answer) = match no_head {
        NoHead::Idle | NoHead::Shutdown => return,
        NoHead::Broken => (Reason::RequestHead, None),
        NoHead::Timeout => (Reason::HeadTimeout, Some(LbError::RequestTimeout)),
        NoHead::Refused(refusal) => match refusal {
            Refusal::Malformed => (Reason::Malformed, Some(LbError::BadRequest)),
            Refusal::Ambiguous(why) => {
                tracing::debug!(why, "refused an ambiguously framed request head");
                (Reason::Ambiguous, Some(LbError::BadRequest))
            }
            Refusal::UriTooLong => (Reason::UriTooLong, Some(LbError::UriTooLong)),
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => {
                (Reason::HeadTooLarge, Some(LbError::HeaderFieldsTooLarge))
            }
            Refusal::Connect => (Reason::Connect, Some(LbError::MethodNotAllowed)),
        },
    };
    client_errors::count(reason);
    tracing::debug!(reason = reason.label(), "request head refused");
    if let Some(err) = answer {
        // No lingering after a head that ran out of time: that client is slow, not still
        // sending a body, and lingering would add to the time it holds its place.
        let linger = reason != Reason::HeadTimeout;
        reject::reject(stream, err, linger).await;
    }
}
