//! The request-head check: is this HTTP/1 head complete, within the limits, and framed
//! unambiguously? A pure function over the bytes read so far, so it is fuzzed and
//! property-tested on its own.
//!
//! Stricter than pingora's parser on purpose. Pingora tolerates some shapes that front-end
//! and back-end parsers may read differently (request smuggling): it drops Content-Length
//! when Transfer-Encoding is present, and merges identical duplicate Content-Lengths. Here
//! every such shape is refused with a 400 before any byte reaches a backend. What passes is
//! handed to pingora unchanged, which parses it again.

use std::mem::MaybeUninit;

use httparse::Status;

use crate::config::defaults::HEADERS_MAX;

/// The limits a head is held to (from `server.request_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadLimits {
    pub(crate) head_size: usize,
    pub(crate) headers: usize,
    pub(crate) uri_length: usize,
}

/// Why a head is refused; each maps to one status and one `lb_client_errors_total` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not an HTTP/1 request head (400).
    Malformed,
    /// Framing or authority that two parsers could read differently (400).
    Ambiguous(&'static str),
    /// The request target is longer than `uri_length` (414).
    UriTooLong,
    /// The head is larger than `head_size` (431).
    HeadTooLarge,
    /// More header lines than `headers` (431).
    TooManyHeaders,
    /// CONNECT: this is not a forward proxy (405).
    Connect,
}

/// Room for a method, two spaces, `HTTP/1.1` and CRLF around a request target, when
/// judging a request line that has not ended yet.
const REQUEST_LINE_OVERHEAD: usize = 64;

/// `Ok(Some(n))`: a complete, acceptable head of `n` bytes (what follows is body or the
/// next request). `Ok(None)`: incomplete so far, read more.
pub(crate) fn check(buf: &[u8], limits: &HeadLimits) -> Result<Option<usize>, Refusal> {
    parse(buf, limits).unwrap_or_else(|| escaped(buf, limits))
}

/// Parse and judge `buf`; `None` when httparse refuses the request line's bytes (a token
/// or the version), which pingora may still accept after escaping the target.
fn parse(buf: &[u8], limits: &HeadLimits) -> Option<Result<Option<usize>, Refusal>> {
    // Uninitialised room for the headers: filling 256 empty ones first would cost more
    // than parsing a typical head.
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; HEADERS_MAX];
    let headers = &mut storage[..limits.headers.clamp(1, HEADERS_MAX)];
    let mut req = httparse::Request::new(&mut []);
    Some(match req.parse_with_uninit_headers(buf, headers) {
        Ok(Status::Complete(n)) => complete(&req, n, limits).map(Some),
        Ok(Status::Partial) => partial(buf, req.path, limits).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::TooManyHeaders),
        Err(httparse::Error::Token | httparse::Error::Version) => return None,
        Err(_) => Err(Refusal::Malformed),
    })
}

/// An incomplete head: refuse early once it can no longer fit.
fn partial(buf: &[u8], path: Option<&str>, limits: &HeadLimits) -> Result<(), Refusal> {
    if path.is_some_and(|p| p.len() > limits.uri_length) {
        return Err(Refusal::UriTooLong);
    }
    check_length(buf.len(), path.is_some() || buf.contains(&b'\n'), limits)
}

/// The checks an incomplete head needs by its length alone: `len` bytes so far, and whether
/// the request line has ended. Cheap, for every read of a client trickling bytes.
pub(crate) fn check_length(
    len: usize,
    request_line_ended: bool,
    limits: &HeadLimits,
) -> Result<(), Refusal> {
    if !request_line_ended && len > limits.uri_length + REQUEST_LINE_OVERHEAD {
        return Err(Refusal::UriTooLong);
    }
    if len > limits.head_size {
        return Err(Refusal::HeadTooLarge);
    }
    Ok(())
}

fn complete(req: &httparse::Request, n: usize, limits: &HeadLimits) -> Result<usize, Refusal> {
    let target = req.path.unwrap_or("");
    if target.len() > limits.uri_length {
        return Err(Refusal::UriTooLong);
    }
    if n > limits.head_size {
        return Err(Refusal::HeadTooLarge);
    }
    if req.method == Some("CONNECT") {
        return Err(Refusal::Connect);
    }
    let fields = fields(req)?;
    framing(&fields, req.version)?;
    authority(&fields, target)?;
    target_parses(req, target)?;
    Ok(n)
}

/// The bytes of an origin-form target that every URI parser takes as they are: letters,
/// digits and `-._~!$&'()*+,;=:@/?%`. A table, as this is looked up once per target byte.
const USUAL_URI_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// An origin-form target of only [`USUAL_URI_BYTES`]: every URI parser reads it as it is,
/// and its path is the target up to `?` (the fast path relies on that too).
pub(crate) fn usual_origin_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| USUAL_URI_BYTES[usize::from(b)])
}

/// Pingora builds an `http::Uri` from the target and checks the target's authority against
/// `Host`, refusing the request (with its bare 400) when either fails: for a `"` in a query,
/// say, or an absolute-form target it finds ambiguous. An origin-form target of only the
/// usual URI bytes always passes; any other goes through pingora's own two steps here, so
/// that what it would refuse gets the lb's answer instead.
fn target_parses(req: &httparse::Request, target: &str) -> Result<(), Refusal> {
    if usual_origin_target(target) {
        return Ok(());
    }
    let method = req.method.unwrap_or("");
    let mut header = pingora::http::RequestHeader::build(method, target.as_bytes(), Some(1))
        .map_err(|_| Refusal::Malformed)?;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
    {
        let value = http::HeaderValue::from_bytes(h.value).map_err(|_| Refusal::Malformed)?;
        header
            .append_header(http::header::HOST, value)
            .map_err(|_| Refusal::Malformed)?;
    }
    pingora::protocols::http::authority::validate_request_authority(&header)
        .map_err(|_| Refusal::Ambiguous("a request target or Host pingora refuses"))
}

/// What the framing and authority checks need from the header lines, gathered in one pass
/// (this runs for every request).
struct Fields<'a> {
    content_lengths: usize,
    transfer_encodings: usize,
    hosts: usize,
    host: Option<&'a [u8]>,
}

fn fields<'a>(req: &httparse::Request<'_, 'a>) -> Result<Fields<'a>, Refusal> {
    let mut f = Fields {
        content_lengths: 0,
        transfer_encodings: 0,
        hosts: 0,
        host: None,
    };
    for h in req.headers.iter() {
        // By length first: most header names are none of the three.
        match h.name.len() {
            4 if h.name.eq_ignore_ascii_case("host") => {
                f.hosts += 1;
                f.host.get_or_insert(trim(h.value));
            }
            14 if h.name.eq_ignore_ascii_case("content-length") => {
                f.content_lengths += 1;
                let v = trim(h.value);
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                    return Err(Refusal::Ambiguous("Content-Length is not a number"));
                }
            }
            17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                f.transfer_encodings += 1;
                if !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                    return Err(Refusal::Ambiguous("Transfer-Encoding other than chunked"));
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

/// One way to find where the body ends (RFC 9112 §6): one Content-Length of digits, or one
/// Transfer-Encoding of exactly `chunked` on HTTP/1.1, never both.
fn framing(f: &Fields, version: Option<u8>) -> Result<(), Refusal> {
    if f.content_lengths > 1 {
        return Err(Refusal::Ambiguous("more than one Content-Length"));
    }
    if f.transfer_encodings > 1 {
        return Err(Refusal::Ambiguous("more than one Transfer-Encoding"));
    }
    if f.transfer_encodings == 1 && f.content_lengths == 1 {
        return Err(Refusal::Ambiguous(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if f.transfer_encodings == 1 && version == Some(0) {
        return Err(Refusal::Ambiguous("Transfer-Encoding on HTTP/1.0"));
    }
    Ok(())
}

/// One Host, without userinfo, agreeing with an absolute-form target's authority.
fn authority(f: &Fields, target: &str) -> Result<(), Refusal> {
    if f.hosts > 1 {
        return Err(Refusal::Ambiguous("more than one Host"));
    }
    let host = f.host;
    if host.is_some_and(|h| h.contains(&b'@')) {
        return Err(Refusal::Ambiguous("userinfo in Host"));
    }
    let scheme = |s: &str| {
        target
            .get(..s.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(s))
    };
    let rest = if scheme("http://") {
        &target[7..]
    } else if scheme("https://") {
        &target[8..]
    } else {
        return Ok(());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let target_authority = &rest[..end];
    if target_authority.contains('@') {
        return Err(Refusal::Ambiguous("userinfo in the request target"));
    }
    if host.is_some_and(|h| h != target_authority.as_bytes()) {
        return Err(Refusal::Ambiguous("Host differs from the request target"));
    }
    Ok(())
}

/// Pingora percent-escapes a request target with spaces, quotes, `<`, `>` or control
/// bytes instead of refusing it (browsers send some of these). Check such a head as pingora
/// will see it: escape the target of the first line and parse again.
fn escaped(buf: &[u8], limits: &HeadLimits) -> Result<Option<usize>, Refusal> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return Err(Refusal::Malformed);
    };
    let method_ok = sp > 0
        && line[..sp]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let version_at = find_last(line, b" HTTP/").filter(|&v| v > sp + 1);
    let (true, Some(v)) = (method_ok, version_at) else {
        return match line_end {
            // An unfinished line may still become valid; judge it by its length so far.
            None => partial(buf, None, limits).map(|()| None),
            Some(_) => Err(Refusal::Malformed),
        };
    };
    // Pingora finds the target with a UTF-8 regex: invalid UTF-8 there is refused.
    if std::str::from_utf8(&line[sp + 1..v]).is_err() {
        return Err(Refusal::Malformed);
    }
    let mut fixed = Vec::with_capacity(buf.len() + 32);
    fixed.extend_from_slice(&line[..=sp]);
    for &b in &line[sp + 1..v] {
        if b.is_ascii_control() || matches!(b, b' ' | b'<' | b'>' | b'"') || !b.is_ascii() {
            fixed.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            fixed.push(b);
        }
    }
    let grown = fixed.len() - v;
    fixed.extend_from_slice(&buf[v..]);
    // Still refused after escaping: not a request line pingora takes either.
    parse(&fixed, limits)
        .unwrap_or(Err(Refusal::Malformed))
        .map(|n| n.map(|n| n - grown))
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Optional whitespace around a field value (httparse leaves trailing whitespace).
fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        head_size: 1024,
        headers: 8,
        uri_length: 64,
    };

    fn verdict(head: &str) -> Result<Option<usize>, Refusal> {
        check(head.as_bytes(), &LIMITS)
    }

    fn ambiguous(head: &str) -> bool {
        matches!(verdict(head), Err(Refusal::Ambiguous(_)))
    }

    #[test]
    fn a_plain_request_is_accepted_with_its_head_length() {
        let head = "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdict(head), Ok(Some(head.len())));
        let with_body = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(verdict(with_body), Ok(Some(with_body.len() - 3)));
        let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tChunked \r\n\r\n";
        assert_eq!(verdict(chunked), Ok(Some(chunked.len())));
    }

    #[test]
    fn an_unfinished_head_asks_for_more() {
        assert_eq!(verdict("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(verdict("GE"), Ok(None));
        assert_eq!(verdict(""), Ok(None));
    }

    #[test]
    fn limits_give_414_and_431() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64));
        assert_eq!(verdict(&long_target), Err(Refusal::UriTooLong));
        let exact = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(63));
        assert!(matches!(verdict(&exact), Ok(Some(_))));
        // A request line that has not ended is judged by its length so far.
        let unfinished = format!("GET /{}", "a".repeat(200));
        assert_eq!(verdict(&unfinished), Err(Refusal::UriTooLong));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(9));
        assert_eq!(verdict(&many), Err(Refusal::TooManyHeaders));
        let big = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "b".repeat(1100));
        assert_eq!(verdict(&big), Err(Refusal::HeadTooLarge));
        let big_unfinished = format!("GET / HTTP/1.1\r\nA: {}", "b".repeat(1100));
        assert_eq!(verdict(&big_unfinished), Err(Refusal::HeadTooLarge));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for head in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: y\r\n\r\n",
            "GET http://u@x/ HTTP/1.1\r\nHost: u@x\r\n\r\n",
        ] {
            assert!(ambiguous(head), "{head:?} gave {:?}", verdict(head));
        }
        for head in [
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n",
            "GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
            "\u{1}GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n",
        ] {
            assert_eq!(verdict(head), Err(Refusal::Malformed), "{head:?}");
        }
    }

    #[test]
    fn absolute_form_agreeing_with_host_is_accepted() {
        assert!(matches!(
            verdict("GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(
            verdict("GET HTTP://x?q HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(
            verdict("GET http://x/a HTTP/1.0\r\n\r\n"),
            Ok(Some(_))
        ));
    }

    #[test]
    fn connect_is_not_served() {
        assert_eq!(
            verdict("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"),
            Err(Refusal::Connect)
        );
    }

    #[test]
    fn targets_pingora_would_escape_are_checked_as_escaped() {
        let head = "GET /a b<c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdict(head), Ok(Some(head.len())));
        // What pingora's URI builder refuses is refused here, with the lb's answer.
        assert_eq!(
            verdict("GET /a?b=\"c\" HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(Refusal::Malformed)
        );
        let smuggled = "GET /a b HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n";
        assert!(ambiguous(smuggled));
        assert_eq!(verdict("GET /a b HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(
            verdict("GET /a b HTTPS/1.1\r\nHost: x\r\n\r\n"),
            Err(Refusal::Malformed)
        );
    }
}
