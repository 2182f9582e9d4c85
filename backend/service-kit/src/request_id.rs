//! `X-Request-Id`: a valid incoming id is kept and echoed; a missing or invalid one is
//! replaced by a fresh UUID v4. The lb and both services apply this one rule, so an id
//! survives the whole hop chain.
//!
//! The rule: 1 to 128 bytes, each of `A-Z a-z 0-9 . _ : -`. It is deliberately narrow:
//! ids end up in logs and headers, so nothing that could forge a log line or smuggle a
//! header survives. Two or more `X-Request-Id` headers count as invalid too: there would
//! be no single id to echo.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header name, lower-case as HTTP/2 wants it. As a `&'static str` for APIs that
/// copy a name they are given (pingora's `insert_header` does not copy a static one).
pub const NAME: &str = "x-request-id";

/// The same name pre-parsed, for lookups (by `&str` they parse the name on every call).
pub const HEADER: HeaderName = HeaderName::from_static(NAME);

/// Longest id we keep.
pub const MAX_LEN: usize = 128;

/// Whether `id` follows the rule in the module doc.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The incoming id when there is exactly one and it is valid.
pub fn incoming(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut ids = headers.get_all(&HEADER).iter();
    match (ids.next(), ids.next()) {
        (Some(id), None) if is_valid(id.as_bytes()) => Some(id),
        _ => None,
    }
}

/// The incoming id if it may be kept, otherwise a fresh one.
pub fn keep_or_generate(headers: &HeaderMap) -> HeaderValue {
    incoming(headers).cloned().unwrap_or_else(generate)
}

/// A fresh UUID v4, hyphenated (36 characters, within the rule).
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a hyphenated UUID is a valid header value")
}

#[cfg(feature = "axum")]
pub use self::layer::layer;

#[cfg(feature = "axum")]
mod layer {
    use axum::{extract::Request, middleware, Router};
    use tower::ServiceBuilder;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

    use super::{incoming, HEADER};

    /// Wraps `router` so every request carries a valid id (in the header and the request
    /// extensions, where the request log finds it) and every response echoes it.
    /// Layers added to `router` before this call sit inside and see the final id.
    pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
        router.layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_invalid))
                .layer(SetRequestIdLayer::new(HEADER, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(HEADER)),
        )
    }

    /// tower-http keeps any id it finds; removing the ones the rule rejects first makes
    /// it mint a new one instead.
    async fn drop_invalid(mut request: Request) -> Request {
        if incoming(request.headers()).is_none() {
            request.headers_mut().remove(&HEADER);
        }
        request
    }
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

    fn headers(ids: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for id in ids {
            h.append(HEADER, HeaderValue::from_static(id));
        }
        h
    }

    #[test]
    fn keeps_one_valid_id_and_replaces_anything_else() {
        assert_eq!(keep_or_generate(&headers(&["req-1"])), "req-1");
        let replaced = keep_or_generate(&headers(&["bad id"]));
        assert_ne!(replaced, "bad id");
        assert!(is_valid(replaced.as_bytes()));
        assert_eq!(keep_or_generate(&headers(&[])).len(), 36);
        let two = keep_or_generate(&headers(&["a", "b"]));
        assert!(
            two != "a" && two != "b" && two.len() == 36,
            "two ids are one too many"
        );
    }
}
