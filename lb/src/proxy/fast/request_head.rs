//! The fast path's request stage: one parse of the client's head (httparse, header slots on
//! the stack), the strict test of whether the request is simple, its route, and the head
//! the backend gets, written from the client's own bytes in one buffer.
//!
//! A request is simple when nothing about it needs more than copying header lines:
//! - `GET` or `HEAD`, HTTP/1.1, an origin-form target of only the usual URI bytes (so the
//!   path is the target up to `?`, exactly as `http::Uri` would read it);
//! - exactly one `Host`; no body (no `Transfer-Encoding`, no `Content-Length` but `0`);
//!   no `Upgrade` or `Expect`; `Connection` naming only `keep-alive` or `close`;
//! - on a route whose upstream is plain HTTP, without `rate_limit`, `sticky` or
//!   `consistent_hash`, with no `https_redirect` configured and outside the ACME path.
//!
//! Anything else returns `None` before a byte is sent anywhere, and the request goes to
//! pingora with the bytes already read. The upstream head is the engine path's, header
//! order aside: hop-by-hop headers dropped, `X-Forwarded-For` extended with the peer,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Request-Id` replaced by ours, the route's
//! prefix strip and the upstream's `host` applied.

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::ops::Range;

use http::HeaderValue;
use httparse::Status;

use super::response_head::push_line;
use crate::config::defaults::{ACME_CHALLENGE_PREFIX, HEADERS_MAX};
use crate::config::Selection;
use crate::downstream::head::usual_origin_target;
use crate::proxy::direct::persistence;
use crate::state::Snapshot;
use service_kit::request_id;

/// A simple request, ready to send.
pub(crate) struct Prepared {
    /// Bytes of the client's head; what follows in the buffer is the next request.
    pub(crate) head_len: usize,
    pub(crate) is_head: bool,
    /// Where the path is in the client's buffer (for the access log).
    pub(crate) path: Range<usize>,
    /// The client asked to close after this response (`Connection: close`).
    pub(crate) close: bool,
    /// Index into the snapshot's routes.
    pub(crate) route: usize,
    pub(crate) request_id: HeaderValue,
    /// The whole head for the backend.
    pub(crate) upstream_head: Vec<u8>,
}

impl Prepared {
    pub(crate) fn method(&self) -> &'static str {
        if self.is_head {
            "HEAD"
        } else {
            "GET"
        }
    }
}

/// What one header line is to the fast path.
enum Kind {
    /// Copied as it is.
    Copy,
    /// Hop-by-hop, or replaced by the lb's own: not copied.
    Drop,
    Host,
    ForwardedFor,
    RequestId,
    Connection,
    ContentLength,
    /// Makes the request not simple.
    Refuse,
}

fn kind(name: &str) -> Kind {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    // Dispatch on length first: most names are compared once, if at all.
    match name.len() {
        2 if is("te") => Kind::Drop,
        4 if is("host") => Kind::Host,
        6 if is("expect") => Kind::Refuse,
        7 if is("upgrade") => Kind::Refuse,
        7 if is("trailer") => Kind::Drop,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::Drop,
        12 if is("x-request-id") => Kind::RequestId,
        14 if is("content-length") => Kind::ContentLength,
        14 if is("http2-settings") => Kind::Drop,
        15 if is("x-forwarded-for") => Kind::ForwardedFor,
        16 if is("proxy-connection") => Kind::Drop,
        16 if is("x-forwarded-host") => Kind::Drop,
        17 if is("transfer-encoding") => Kind::Refuse,
        17 if is("x-forwarded-proto") => Kind::Drop,
        18 if is("proxy-authenticate") => Kind::Drop,
        19 if is("proxy-authorization") => Kind::Drop,
        _ => Kind::Copy,
    }
}

/// The request in `buf` (a complete head the head check accepted) if it is simple, with
/// its route and upstream head; `None` sends it to pingora.
pub(crate) fn prepare(
    buf: &[u8],
    peer: Option<IpAddr>,
    tls: bool,
    snapshot: &Snapshot,
) -> Option<Prepared> {
    let server = &snapshot.config.server;
    if !server.fast_path || (!tls && server.https_redirect.is_some()) {
        return None;
    }
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut []);
    let Ok(Status::Complete(head_len)) = req.parse_with_uninit_headers(buf, &mut storage) else {
        return None;
    };
    let is_head = match req.method? {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    let target = req.path?;
    if req.version != Some(1)
        || !usual_origin_target(target)
        || target.starts_with(ACME_CHALLENGE_PREFIX)
    {
        return None;
    }
    let path = &target[..target.find('?').unwrap_or(target.len())];
    let route_index = snapshot.routes.lookup(path)?;
    let route = snapshot.routes.get(route_index);
    let pool = &route.pool;
    if route.rate_limit.is_some()
        || pool.uses_tls()
        || pool.spec.sticky.is_some()
        || matches!(pool.spec.selection, Selection::ConsistentHash(_))
    {
        return None;
    }

    // One pass over the headers: refuse, copy, and note what the lb replaces. The head is
    // written as it goes; a refusal (rare) only wastes the buffer.
    let mut out = Vec::with_capacity(head_len + 192);
    out.extend_from_slice(if is_head { b"HEAD " } else { b"GET " });
    match route.rewrite(target) {
        Some(rewritten) => out.extend_from_slice(rewritten.as_bytes()),
        None => out.extend_from_slice(target.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut host, mut close, mut ids, mut id) = (None, false, 0, None);
    let (mut xff, mut forwarded_for) = (Vec::new(), 0);
    for h in req.headers.iter() {
        match kind(h.name) {
            Kind::Refuse => return None,
            Kind::Host if host.is_some() => return None,
            Kind::Host => {
                host = Some(h.value);
                let value = pool.spec.host.as_deref().map_or(h.value, str::as_bytes);
                push_line(&mut out, h.name.as_bytes(), value);
            }
            Kind::Connection => close |= persistence(h.value)?,
            Kind::ContentLength if h.value.trim_ascii() != b"0" => return None,
            Kind::Copy | Kind::ContentLength => push_line(&mut out, h.name.as_bytes(), h.value),
            Kind::RequestId => {
                ids += 1;
                id = Some(h.value);
            }
            Kind::ForwardedFor => {
                forwarded_for += 1;
                xff.extend_from_slice(h.value);
                xff.extend_from_slice(b", ");
            }
            Kind::Drop => {}
        }
    }
    let host = host?;
    let request_id = match id {
        Some(v) if ids == 1 && request_id::is_valid(v) => {
            HeaderValue::from_bytes(v).unwrap_or_else(|_| request_id::generate())
        }
        _ => request_id::generate(),
    };
    if let Some(ip) = peer {
        // (not `write!`: std's formatting machinery costs more than the rest of the line)
        crate::json_line::push_ip(&mut xff, ip);
        push_line(&mut out, b"x-forwarded-for", &xff);
    } else if forwarded_for > 0 {
        // No peer address to add (not an IP socket): keep what the client sent, joined.
        xff.truncate(xff.len() - 2);
        push_line(&mut out, b"x-forwarded-for", &xff);
    }
    push_line(
        &mut out,
        b"x-forwarded-proto",
        if tls { b"https" } else { b"http" },
    );
    push_line(&mut out, b"x-forwarded-host", host);
    push_line(&mut out, request_id::NAME.as_bytes(), request_id.as_bytes());
    out.extend_from_slice(b"\r\n");

    let path_start = target.as_ptr() as usize - buf.as_ptr() as usize;
    Some(Prepared {
        head_len,
        is_head,
        path: path_start..path_start + path.len(),
        close,
        route: route_index,
        request_id,
        upstream_head: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens() {
        assert_eq!(persistence(b"keep-alive"), Some(false));
        assert_eq!(persistence(b"Keep-Alive, close"), Some(true));
        assert_eq!(persistence(b" CLOSE "), Some(true));
        assert_eq!(persistence(b"close, x-secret"), None);
        assert_eq!(persistence(b"upgrade"), None);
    }

    #[test]
    fn usual_targets_only() {
        assert!(usual_origin_target("/api/hello?x=1&y=%20"));
        assert!(!usual_origin_target("http://a/b"));
        assert!(!usual_origin_target("*"));
        assert!(!usual_origin_target("/a\"b"));
        assert!(!usual_origin_target("/a#frag"));
        assert!(!usual_origin_target("/a b"));
    }

    /// Every header the direct path drops as hop-by-hop is never copied here either.
    #[test]
    fn hop_by_hop_headers_are_never_copied() {
        for name in &crate::proxy::direct::HOP_BY_HOP {
            assert!(
                !matches!(kind(name.as_str()), Kind::Copy | Kind::ContentLength),
                "{name}"
            );
        }
    }
}
