//! The fast path's two parsers (`crate::proxy::fast`) on arbitrary bytes: the client's head
//! (what it forwards, and whether it declines), and a backend's head (its framing, and the
//! head the client gets). Neither may panic or read past its input; what they produce must
//! be what a strict HTTP/1.1 reader takes as they say.

use crate::downstream::head::{self, HeadLimits};
use crate::proxy::fast::request_head;
use crate::proxy::fast::response_head::{self, Framing, Ours};

/// Hop-by-hop headers, and those a simple request may not carry: none reaches a backend.
const NEVER_FORWARDED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
];

/// `data` as a client's bytes, through the lb's head check and then the fast path's request
/// stage, against each of the fuzz lbs (`super::request`'s config). When it takes the
/// request, the head it took is a complete HTTP/1.1 GET or HEAD within `data` (after any
/// empty lines), and the
/// upstream head is one complete request head, HTTP/1.1, same method, a target starting
/// with `/`, exactly one `Host`, `X-Request-Id` (the request's id), `X-Forwarded-Proto` and
/// `X-Forwarded-Host`, at most one `X-Forwarded-For` (ending in the peer), no hop-by-hop
/// header, and a `Content-Length` of `0` if any.
pub fn fast_request(data: &[u8]) {
    let limits = HeadLimits {
        head_size: 16 * 1024,
        headers: 100,
        uri_length: 8 * 1024,
    };
    let Ok(Some(len)) = head::check(data, &limits) else {
        return;
    };
    assert!(len <= data.len());
    for state in super::request::states() {
        let snapshot = state.snapshot();
        for tls in [false, true] {
            let peer = Some(std::net::IpAddr::from([192, 0, 2, 7]));
            let Some(p) = request_head::prepare(data, peer, tls, &snapshot) else {
                continue;
            };
            assert!(p.head_len <= data.len());
            assert!(p.path.end <= p.head_len);
            assert!(std::str::from_utf8(&data[p.path.clone()]).is_ok());
            assert!(service_kit::request_id::is_valid(p.request_id.as_bytes()));
            upstream_head(&p, data, tls);
        }
    }
}

fn upstream_head(p: &request_head::Prepared, client: &[u8], tls: bool) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(&p.upstream_head);
    assert_eq!(
        parsed.ok(),
        Some(httparse::Status::Complete(p.upstream_head.len())),
        "upstream head {:?}",
        String::from_utf8_lossy(&p.upstream_head)
    );
    assert_eq!(req.version, Some(1));
    let method = req.method.expect("method");
    assert_eq!(method, if p.is_head { "HEAD" } else { "GET" });
    // Empty lines before the request line are skipped (RFC 9112, 2.2), as httparse does.
    let request_line = &client[client
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(client.len())..];
    assert!(request_line.starts_with(method.as_bytes()));
    assert!(req.path.expect("target").starts_with('/'));
    let values = |name: &str| values(req.headers, name);
    assert_eq!(values("host").len(), 1);
    assert_eq!(values("x-request-id"), vec![p.request_id.as_bytes()]);
    let proto: &[u8] = if tls { b"https" } else { b"http" };
    assert_eq!(values("x-forwarded-proto"), vec![proto]);
    assert_eq!(values("x-forwarded-host").len(), 1);
    let xff = values("x-forwarded-for");
    assert_eq!(xff.len(), 1);
    assert!(xff[0].ends_with(b"192.0.2.7"));
    for name in NEVER_FORWARDED {
        assert!(values(name).is_empty(), "{name} forwarded");
    }
    assert!(values("content-length")
        .iter()
        .all(|v| v.trim_ascii() == b"0"));
}

/// `data`: the first byte chooses whether the request was a HEAD and whether the client's
/// connection may stay open; the rest is what a backend sent. A head the fast path accepts
/// lies within the bytes, and unless it is interim the client's head it wrote is one
/// complete response head with one `X-Request-Id` (ours), one `Date`, one `Connection`
/// (saying what `keepalive` says), none of `Keep-Alive`/`Proxy-Connection`, the
/// backend's status, and the framing it announced: `Content-Length` values (or lists of
/// them) of exactly the length it reads, or `Transfer-Encoding` ending in `chunked` and no `Content-Length`.
pub fn fast_response(data: &[u8]) {
    let Some((&flags, backend)) = data.split_first() else {
        return;
    };
    let ours = Ours {
        request_id: b"fuzz-id",
        date: b"Tue, 01 Dec 2026 00:00:00 GMT",
        keepalive: flags & 2 != 0,
        hsts: (flags & 4 != 0).then_some(b"max-age=60".as_slice()),
    };
    let mut out = Vec::new();
    let parsed = match response_head::parse(backend, flags & 1 != 0, &ours, &mut out) {
        Ok(Some(p)) => p,
        Ok(None) | Err(_) => {
            assert!(out.is_empty(), "a head written for an unusable answer");
            return;
        }
    };
    assert!(parsed.head_len <= backend.len());
    if (100..200).contains(&parsed.status) {
        assert!(out.is_empty());
        return;
    }
    // Room for every header the fast path accepts from a backend, and the four it adds.
    let mut headers = [httparse::EMPTY_HEADER; response_head::RESPONSE_HEADERS_MAX + 4];
    let mut resp = httparse::Response::new(&mut headers);
    assert_eq!(
        resp.parse(&out).ok(),
        Some(httparse::Status::Complete(out.len())),
        "client head {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(resp.code, Some(parsed.status));
    let values = |name: &str| values(resp.headers, name);
    assert_eq!(values("x-request-id"), vec![b"fuzz-id".as_slice()]);
    assert_eq!(values("date").len(), 1);
    let connection: &[u8] = if parsed.keepalive {
        b"keep-alive"
    } else {
        b"close"
    };
    assert_eq!(values("connection"), vec![connection]);
    assert!(ours.keepalive || !parsed.keepalive);
    assert!(values("keep-alive").is_empty() && values("proxy-connection").is_empty());
    if let Some(hsts) = ours.hsts {
        assert_eq!(values("strict-transport-security"), vec![hsts]);
    }
    match parsed.framing {
        Framing::Length(n) => {
            let lengths = values("content-length");
            assert!(!lengths.is_empty());
            // Each value may be a list of one repeated length (`5, 5`).
            for v in lengths.iter().flat_map(|v| v.split(|&b| b == b',')) {
                let v = std::str::from_utf8(v.trim_ascii()).ok();
                assert_eq!(v.and_then(|v| v.parse().ok()), Some(n));
            }
            assert!(values("transfer-encoding").is_empty());
        }
        Framing::Chunked => {
            assert!(values("content-length").is_empty());
            let te = values("transfer-encoding");
            let last = te.last().expect("a Transfer-Encoding");
            let token = last.rsplit(|&b| b == b',').next().unwrap_or(b"");
            assert!(token.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
        Framing::UntilClose => assert!(!parsed.keepalive && !parsed.reusable),
        Framing::Empty => {}
    }
}

/// Every value of the header `name` in a parsed head.
fn values<'b>(headers: &[httparse::Header<'b>], name: &str) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}
