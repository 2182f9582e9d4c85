//! Responses the lb generates itself: a small JSON body `{"error","status","request_id"}`
//! with no internals (no addresses, no error chains; those go to the log).

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};
use service_kit::request_id;

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LbError {
    BadRequest,
    /// The admin API without its bearer token (`crate::admin_auth`).
    Unauthorized,
    NoRoute,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    HeaderFieldsTooLarge,
    /// Over the route's `rate_limit` (`crate::rate_limit`).
    TooManyRequests,
    Internal,
    BadGateway,
    NoHealthyBackend,
    GatewayTimeout,
    /// Some other status carried by a pingora `HTTPStatus` error.
    Other(u16),
}

/// Seconds a client should wait before retrying a 503.
pub(crate) const RETRY_AFTER_SECS: &str = "1";

impl LbError {
    pub(crate) fn status(self) -> u16 {
        match self {
            LbError::BadRequest => 400,
            LbError::Unauthorized => 401,
            LbError::NoRoute => 404,
            LbError::MethodNotAllowed => 405,
            LbError::RequestTimeout => 408,
            LbError::PayloadTooLarge => 413,
            LbError::UriTooLong => 414,
            LbError::HeaderFieldsTooLarge => 431,
            LbError::TooManyRequests => 429,
            LbError::Internal => 500,
            LbError::BadGateway => 502,
            LbError::NoHealthyBackend => 503,
            LbError::GatewayTimeout => 504,
            LbError::Other(code) => code,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            LbError::BadRequest => "bad request",
            LbError::Unauthorized => "a valid admin token is required",
            LbError::NoRoute => "no route for this path",
            LbError::MethodNotAllowed => "method not allowed",
            LbError::RequestTimeout => "request took too long",
            LbError::PayloadTooLarge => "request body too large",
            LbError::UriTooLong => "request target too long",
            LbError::HeaderFieldsTooLarge => "request header fields too large",
            LbError::TooManyRequests => "too many requests",
            LbError::Internal => "internal error",
            LbError::BadGateway => "bad gateway",
            LbError::NoHealthyBackend => "no healthy backend available",
            LbError::GatewayTimeout => "upstream timed out",
            LbError::Other(_) => "error",
        }
    }

    /// Classify a final proxy error. `None` means the client connection is already dead
    /// and there is nobody to answer.
    pub(crate) fn from_proxy_error(e: &Error) -> Option<LbError> {
        use ErrorType::*;
        Some(match e.etype() {
            HTTPStatus(400) => LbError::BadRequest,
            HTTPStatus(404) => LbError::NoRoute,
            HTTPStatus(405) => LbError::MethodNotAllowed,
            HTTPStatus(408) => LbError::RequestTimeout,
            HTTPStatus(413) => LbError::PayloadTooLarge,
            HTTPStatus(414) => LbError::UriTooLong,
            HTTPStatus(431) => LbError::HeaderFieldsTooLarge,
            HTTPStatus(429) => LbError::TooManyRequests,
            HTTPStatus(500) => LbError::Internal,
            HTTPStatus(502) => LbError::BadGateway,
            HTTPStatus(503) => LbError::NoHealthyBackend,
            HTTPStatus(504) => LbError::GatewayTimeout,
            HTTPStatus(code) => LbError::Other(*code),
            _ => match e.esource() {
                ErrorSource::Upstream => match e.etype() {
                    ConnectTimedout | ReadTimedout | WriteTimedout => LbError::GatewayTimeout,
                    _ => LbError::BadGateway,
                },
                ErrorSource::Downstream => match e.etype() {
                    WriteError | WriteTimedout | ReadError | ConnectionClosed => return None,
                    ReadTimedout => LbError::RequestTimeout,
                    _ => LbError::BadRequest,
                },
                ErrorSource::Internal | ErrorSource::Unset => LbError::Internal,
            },
        })
    }

    /// A pingora error carrying this status, not retryable.
    pub(crate) fn into_error(self, context: &'static str) -> Box<Error> {
        Error::explain(ErrorType::HTTPStatus(self.status()), context)
    }
}

pub(crate) fn json_body(err: LbError, request_id: &HeaderValue) -> Bytes {
    let body = serde_json::json!({
        "error": err.message(),
        "status": err.status(),
        "request_id": request_id.to_str().unwrap_or(""),
    });
    Bytes::from(body.to_string())
}

/// Write the error response. `keepalive: false` closes the client connection afterwards
/// (used when the request body may not have been consumed).
pub(crate) async fn respond(
    session: &mut Session,
    err: LbError,
    request_id: &HeaderValue,
    keepalive: bool,
) -> Result<()> {
    respond_with(session, err, request_id, keepalive, |_| Ok(())).await
}

/// [`respond`], with `extra` headers added to the response head (e.g. a 429's
/// `RateLimit-*`).
pub(crate) async fn respond_with(
    session: &mut Session,
    err: LbError,
    request_id: &HeaderValue,
    keepalive: bool,
    extra: impl FnOnce(&mut ResponseHeader) -> Result<()>,
) -> Result<()> {
    let body = json_body(err, request_id);
    let mut resp = ResponseHeader::build(err.status(), Some(6))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(request_id::NAME, request_id.clone())?;
    if err == LbError::NoHealthyBackend {
        resp.insert_header(http::header::RETRY_AFTER, RETRY_AFTER_SECS)?;
    }
    extra(&mut resp)?;
    if !keepalive {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    // A client that fails to take the answer is the client's (`crate::client_errors`).
    session
        .write_response_header(Box::new(resp), head_only)
        .await
        .map_err(|e| e.into_down())?;
    if !head_only {
        session
            .write_response_body(Some(body), true)
            .await
            .map_err(|e| e.into_down())?;
    }
    Ok(())
}

/// The same answer as [`respond`], as the bytes of a whole response, for the fast path
/// (`crate::proxy::fast`), which owns the client's connection. As after pingora's
/// `fail_to_proxy`, the connection closes after it; `Date` and `Connection` are the ones
/// pingora's HTTP/1 server adds.
pub(crate) fn raw_response(err: LbError, request_id: &HeaderValue, head_only: bool) -> Vec<u8> {
    let body = json_body(err, request_id);
    let status =
        http::StatusCode::from_u16(err.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\ncache-control: no-store\r\n");
    out.extend_from_slice(request_id::NAME.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(request_id.as_bytes());
    if err == LbError::NoHealthyBackend {
        out.extend_from_slice(b"\r\nretry-after: ");
        out.extend_from_slice(RETRY_AFTER_SECS.as_bytes());
    }
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(pingora::protocols::http::date::get_cached_date().as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_proxy_errors() {
        let upstream = |t: ErrorType| LbError::from_proxy_error(&Error::new_up(t));
        assert_eq!(
            upstream(ErrorType::ConnectRefused),
            Some(LbError::BadGateway)
        );
        assert_eq!(
            upstream(ErrorType::ReadTimedout),
            Some(LbError::GatewayTimeout)
        );
        assert_eq!(
            LbError::from_proxy_error(&LbError::NoHealthyBackend.into_error("x")),
            Some(LbError::NoHealthyBackend)
        );
        let dead_client = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(LbError::from_proxy_error(&dead_client), None);
        let garbled = Error::new_down(ErrorType::InvalidHTTPHeader);
        assert_eq!(
            LbError::from_proxy_error(&garbled),
            Some(LbError::BadRequest)
        );
    }

    #[test]
    fn raw_response_is_the_json_answer() {
        let id = HeaderValue::from_static("rid-2");
        let raw = raw_response(LbError::NoHealthyBackend, &id, false);
        let text = String::from_utf8(raw).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nretry-after: 1"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["request_id"], "rid-2");
        let head_only = raw_response(LbError::BadGateway, &id, true);
        assert!(head_only.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn body_is_small_json_without_internals() {
        let body = json_body(
            LbError::NoHealthyBackend,
            &HeaderValue::from_static("rid-1"),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["status"], 503);
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v.as_object().map(|o| o.len()), Some(3));
    }
}
