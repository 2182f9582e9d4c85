//! `server.client_timeouts` and `server.request_limits`: how long one client connection may
//! take over a request head, an idle keep-alive wait, a request body and each write of its
//! response, and how large a
//! request head may be. Checked by `crate::downstream` before pingora parses anything.

use std::time::Duration;

use super::defaults;

/// What one client may cost the lb. Reloadable: each request head reads the current values.
/// `Copy`, so a head's read copies a few words instead of holding the snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClientLimits {
    /// The whole request head, from the first byte (or from accept, for a connection's first
    /// request) to the blank line: 408, then close. Default 10 s, as HAProxy's usual
    /// `timeout http-request`; nginx's `client_header_timeout` is 60 s.
    pub(crate) request_head_timeout: Duration,
    /// An idle keep-alive connection waiting for its next request is closed, silently, after
    /// this long. Default 30 s (nginx 75 s, Apache 5 s).
    pub(crate) keepalive_timeout: Duration,
    /// The whole request body, from the end of the head: 408 if no response has started,
    /// then close. Default 60 s; raise it for routes that take large uploads on slow links.
    pub(crate) request_body_timeout: Duration,
    /// Each write of response bytes to the client (a head, or one read's worth of body:
    /// up to 64 KiB) must be taken within this, or the connection is closed: a client that
    /// stops reading cannot hold its connection, task and backend connection for ever.
    /// Default 60 s, as nginx's `send_timeout`.
    pub(crate) response_write_timeout: Duration,
    /// Request line plus headers, in bytes: 431. Default 32 KiB (nginx's
    /// `large_client_header_buffers` is 4 × 8 KiB).
    pub(crate) head_size: usize,
    /// Header lines: 431. Default 100 (HAProxy's `tune.http.maxhdr` is 101); at most 256,
    /// pingora's own limit.
    pub(crate) headers: usize,
    /// The request target (path and query, or an absolute URI): 414. Default 8 KiB.
    pub(crate) uri_length: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            request_head_timeout: defaults::REQUEST_HEAD_TIMEOUT,
            keepalive_timeout: defaults::KEEPALIVE_TIMEOUT,
            request_body_timeout: defaults::REQUEST_BODY_TIMEOUT,
            response_write_timeout: defaults::RESPONSE_WRITE_TIMEOUT,
            head_size: defaults::HEAD_SIZE,
            headers: defaults::HEADERS,
            uri_length: defaults::URI_LENGTH,
        }
    }
}
