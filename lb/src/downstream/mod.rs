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
use tokio::io::AsyncWriteExt;

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

    /// HTTP/2 by ALPN, or (with `server.h2c`) a plaintext connection opening with the
    /// preface. `None`: the connection failed while peeking.
    async fn is_h2(&self, stream: &mut Stream) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.proxy.server_options.as_ref().is_some_and(|o| o.h2c) {
            return Some(false);
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        // The peek waits for as many bytes as the preface has: a client that sends fewer is
        // held to `request_head`, as if it were reading a head.
        let limit = self.state.client_limits().request_head_timeout;
        match tokio::time::timeout(limit, stream.try_peek(&mut buf)).await {
            Ok(Ok(peeked)) => Some(peeked && buf == H2_PREFACE),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read error while peeking for the h2c preface");
                None
            }
            Err(_) => {
                client_errors::count(Reason::HeadTimeout);
                tracing::debug!(
                    "no 24 bytes within request_head while peeking for the h2c preface"
                );
                None
            }
        }
    }
}

#[async_trait]
impl ServerApp for EdgeApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.is_h2(&mut stream).await? {
            let limit = self.state.client_limits().response_write_timeout;
            crate::accept::no_delay(&stream);
            let stream = WriteDeadline::wrap(stream, limit);
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
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
        let mut carry: Option<BytesMut> = None;
        // One receiver for the connection's life: the idle waits between requests watch it.
        let mut closing = shutdown.clone();
        loop {
            let client = self.state.client_limits();
            let read = read::head(&mut stream, &client, first, &mut closing, carry.take()).await;
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

/// Count and answer (or just close) a connection that gave no acceptable head.
async fn refused(stream: Stream, no_head: NoHead) {
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
        reject::reject(stream, err).await;
    }
}
