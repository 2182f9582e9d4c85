//! The fast path's response stage: the backend's head parsed once (httparse), how its body
//! is framed, and the head the client gets, written in one buffer.
//!
//! The client's head is the engine path's: the backend's status line (its reason phrase
//! kept) and header lines, without the hop-by-hop `Connection`, `Keep-Alive` and
//! `Proxy-Connection`; `X-Request-Id` replaced by the request's id; `Date` and
//! `Connection: keep-alive|close` set by the lb, as pingora's HTTP/1 server sets them.
//!
//! Framing, strictly (RFC 9112 §6.3): no body for `HEAD`, 204 and 304; `Transfer-Encoding`
//! ending in `chunked` is chunked (a `Content-Length` beside it is dropped, and the upstream
//! connection is not reused); otherwise exactly one `Content-Length` (repeats must agree);
//! otherwise the body runs to the backend's close. A `Content-Length` that is not a number,
//! or disagreeing ones, make the response unusable (502).

use std::mem::MaybeUninit;

use httparse::Status;

/// How many header lines a backend's response may have (pingora's client takes as many).
pub(crate) const RESPONSE_HEADERS_MAX: usize = 256;

/// Where the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked: the end is found by `super::chunked`.
    Chunked,
    /// Until the backend closes: the client's connection closes after it too.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) status: u16,
    /// Bytes of the head in the buffer; the body's first bytes follow.
    pub(crate) head_len: usize,
    pub(crate) framing: Framing,
    /// The backend lets the connection be used again (HTTP/1.1, no `Connection: close`,
    /// unambiguous framing).
    pub(crate) reusable: bool,
    /// The client's connection stays open after this response.
    pub(crate) keepalive: bool,
}

/// Why a backend's head cannot be used (answered 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unusable(pub(crate) &'static str);

/// What the lb adds to the client's head.
#[derive(Clone, Copy)]
pub(crate) struct Ours<'a> {
    pub(crate) request_id: &'a [u8],
    pub(crate) date: &'a [u8],
    /// The client's connection may stay open after this response (the lb is not closing,
    /// the client did not ask to close); a body that runs to the backend's close ends it
    /// anyway.
    pub(crate) keepalive: bool,
    /// The route's `Strict-Transport-Security` (TLS only), replacing the backend's.
    pub(crate) hsts: Option<&'a [u8]>,
}

/// Parse the backend's head in `buf` and, unless it is an interim (1xx) one, append the
/// client's head to `out`. `Ok(None)`: incomplete, read more.
pub(crate) fn parse(
    buf: &[u8],
    request_is_head: bool,
    ours: &Ours<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<Parsed>, Unusable> {
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; RESPONSE_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut []);
    // httparse's defaults: stricter than pingora's client, which also takes a space before
    // a header's colon and folded (obs-fold) lines; a backend sending those gets a 502 here.
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut storage) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Unusable("too many response headers")),
        Err(_) => return Err(Unusable("malformed response head")),
    };
    let status = resp.code.ok_or(Unusable("no status"))?;
    if status < 100 {
        // Neither interim nor final: a client could read what follows as its body.
        return Err(Unusable("status below 100"));
    }
    let mut reusable = resp.version == Some(1);
    let (mut length, mut chunked, mut encoded) = (None::<u64>, false, false);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // A list of one repeated value (`5, 5`) is one length, as pingora reads it.
            for v in h.value.split(|&b| b == b',') {
                let n = content_length(v.trim_ascii())?;
                if length.is_some_and(|l| l != n) {
                    return Err(Unusable("Content-Lengths disagree"));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            reusable = false;
        }
    }
    let interim = (100..200).contains(&status);
    let framing = if request_is_head || status == 204 || status == 304 || interim {
        Framing::Empty
    } else if encoded {
        // Both framings named: the body is chunked, and the connection is not trusted after.
        reusable &= length.is_none() && chunked;
        if chunked {
            Framing::Chunked
        } else {
            reusable = false;
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        reusable = false;
        Framing::UntilClose
    };
    let keepalive = ours.keepalive && framing != Framing::UntilClose;
    if !interim {
        write_client_head(out, &resp, encoded, ours, keepalive);
    }
    Ok(Some(Parsed {
        status,
        head_len,
        framing,
        reusable,
        keepalive,
    }))
}

fn write_client_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    encoded: bool,
    ours: &Ours<'_>,
    keepalive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, resp.code.unwrap_or(502));
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name;
        let dropped = match name.len() {
            4 => name.eq_ignore_ascii_case("date"),
            10 => {
                name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive")
            }
            12 => name.eq_ignore_ascii_case("x-request-id"),
            // Beside Transfer-Encoding, Content-Length is not the framing (RFC 9112 §6.3).
            14 => encoded && name.eq_ignore_ascii_case("content-length"),
            16 => name.eq_ignore_ascii_case("proxy-connection"),
            25 => ours.hsts.is_some() && name.eq_ignore_ascii_case("strict-transport-security"),
            _ => false,
        };
        if !dropped {
            push_line(out, name.as_bytes(), h.value);
        }
    }
    push_line(out, request_id_name(), ours.request_id);
    if let Some(hsts) = ours.hsts {
        push_line(out, b"strict-transport-security", hsts);
    }
    push_line(out, b"date", ours.date);
    push_line(
        out,
        b"connection",
        if keepalive { b"keep-alive" } else { b"close" },
    );
    out.extend_from_slice(b"\r\n");
}

/// A `Content-Length` value: 1 to 19 digits, nothing else.
fn content_length(v: &[u8]) -> Result<u64, Unusable> {
    (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        .flatten()
        .ok_or(Unusable("Content-Length is not a number"))
}

fn request_id_name() -> &'static [u8] {
    service_kit::request_id::NAME.as_bytes()
}

fn push_status(out: &mut Vec<u8>, code: u16) {
    let digits = [
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ];
    out.extend_from_slice(&digits);
}

pub(crate) fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ours<'static> = Ours {
        request_id: b"rid",
        date: b"now",
        keepalive: true,
        hsts: None,
    };

    fn framing(head: &str, is_head: bool) -> Result<(Framing, bool), Unusable> {
        parse(head.as_bytes(), is_head, &OURS, &mut Vec::new()).map(|p| {
            let p = p.expect("complete");
            (p.framing, p.reusable)
        })
    }

    #[test]
    fn frames_bodies_strictly() {
        let ok = |h| framing(h, false);
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok((Framing::Chunked, true))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            Ok((Framing::Chunked, false))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\n\r\n"),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            ok("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            Ok((Framing::Empty, true))
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"),
            Ok((Framing::Length(5), false))
        );
        assert_eq!(
            ok("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Ok((Framing::Length(5), false))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Ok((Framing::Empty, true))
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n",
            "HTTP/1.1 099 Below\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nConte", false, &OURS, &mut Vec::new()),
            Ok(None)
        ));
    }

    #[test]
    fn client_head_replaces_hop_by_hop_and_ours() {
        let upstream = b"HTTP/1.1 404 Not Here\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nDate: old\r\nX-A: b\r\n\r\nok";
        let mut out = Vec::new();
        let parsed = parse(upstream, false, &OURS, &mut out).unwrap().unwrap();
        assert_eq!(parsed.head_len, upstream.len() - 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Here\r\nContent-Length: 2\r\nX-A: b\r\nx-request-id: rid\r\ndate: now\r\nconnection: keep-alive\r\n\r\n"
        );
        // A body to the backend's close ends the client's connection too; 1xx writes nothing.
        let mut out = Vec::new();
        let p = parse(b"HTTP/1.1 200 OK\r\n\r\n", false, &OURS, &mut out)
            .unwrap()
            .unwrap();
        assert!(!p.keepalive);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("connection: close\r\n\r\n"));
        let mut out = Vec::new();
        parse(b"HTTP/1.1 100 Continue\r\n\r\n", false, &OURS, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
