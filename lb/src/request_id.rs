//! Request ids: keep a client's `X-Request-Id` when it is safe to log and forward, else mint
//! one. The rule is shared with the backend service so an id survives the whole hop chain:
//! 1 to 128 characters, each an ASCII letter or digit or one of `-_.:`. Two or more
//! `X-Request-Id` headers count as invalid too (there would be no single id to echo).

use http::HeaderValue;

pub const HEADER: &str = "x-request-id";
/// The same name, pre-parsed: lookups by `&str` parse the name on every call.
pub const HEADER_NAME: http::HeaderName = http::HeaderName::from_static(HEADER);
pub const MAX_LEN: usize = 128;

/// True when `id` may be forwarded and logged as is.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The incoming id if there is exactly one and it is valid, otherwise a fresh UUID v4.
pub fn keep_or_generate(headers: &http::HeaderMap) -> HeaderValue {
    let mut ids = headers.get_all(&HEADER_NAME).iter();
    match (ids.next(), ids.next()) {
        (Some(v), None) if is_valid(v.as_bytes()) => v.clone(),
        _ => generate(),
    }
}

/// A fresh UUID v4, hyphenated (36 chars, within the rule).
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule() {
        assert!(is_valid(b"abc-123_X.y:z"));
        assert!(is_valid(&[b'a'; 128]));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"semi;colon"));
        assert!(!is_valid("é".as_bytes()));
    }

    fn headers(ids: &[&'static str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for id in ids {
            h.append(HEADER, HeaderValue::from_static(id));
        }
        h
    }

    #[test]
    fn keeps_valid_and_replaces_invalid() {
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
