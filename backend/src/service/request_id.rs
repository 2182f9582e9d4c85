//! `X-Request-Id`: a valid incoming id is kept and echoed; a missing or invalid one is
//! replaced by a fresh UUID v4.
//!
//! The rule (the load balancer applies the same one): 1 to 128 bytes, each of
//! `A-Z a-z 0-9 . _ : -`. It is deliberately narrow: ids end up in logs and headers,
//! so nothing that could forge a log line or smuggle a header survives.

use axum::{extract::Request, middleware, Router};
use http::HeaderName;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// The header name, lower-case as HTTP/2 wants it.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id we keep.
pub const MAX_LEN: usize = 128;

/// Whether `id` follows the rule in the module doc.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Wraps `router` so every request carries a valid id (in the header and the request
/// extensions, where the request log finds it) and every response echoes it.
/// Layers added to `router` before this call sit inside and see the final id.
pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::map_request(drop_invalid))
            .layer(SetRequestIdLayer::new(HEADER.clone(), MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(HEADER.clone())),
    )
}

/// tower-http keeps any id it finds; removing the invalid ones first makes it mint a
/// new one instead.
async fn drop_invalid(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let all_valid = headers
        .get_all(&HEADER)
        .iter()
        .all(|value| is_valid(value.as_bytes()));
    // Two ids are as bad as a malformed one: we could not echo "the" id.
    if !all_valid || headers.get_all(&HEADER).iter().count() > 1 {
        headers.remove(&HEADER);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(is_valid(b"a"));
        assert!(is_valid(b"Req-1_2.3:4"));
        assert!(is_valid(b"0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_valid(&[b'x'; MAX_LEN]));
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert!(!is_valid(b""));
        assert!(!is_valid(&[b'x'; MAX_LEN + 1]));
        for bad in ["a b", "a/b", "a\"b", "a\tb", "é", "a;b", "a,b", "a=b"] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?} should be invalid");
        }
    }
}
