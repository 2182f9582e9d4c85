//! Refuses, with 400, any request path that tries to leave the site root, however it
//! is spelled: `..` segments plain or percent-encoded (once, twice, three times),
//! encoded slashes that form one, backslashes, NUL and other control characters.
//!
//! Only files loaded from under the root can be served (`crate::site_cache`), and
//! ServeDir, for the large ones, refuses `..` after one decoding too; this guard answers
//! such attempts with a clear 400 and also catches the spellings that only become
//! dangerous after a second decoding somewhere else.

use std::borrow::Cow;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// The answer to a suspicious path (the site service asks [`is_suspicious`] first).
pub(crate) fn refusal() -> Response {
    (StatusCode::BAD_REQUEST, "bad request\n").into_response()
}

/// Whether `path` (still percent-encoded, as on the wire) could name something
/// outside the root after any number of decodings.
pub fn is_suspicious(path: &str) -> bool {
    let mut current = Cow::Borrowed(path);
    // Four rounds cover triple encoding; anything still changing after that is hostile.
    for _ in 0..4 {
        let bad_char = current.chars().any(|c| c == '\\' || c.is_control());
        if bad_char || current.split('/').any(|segment| segment == "..") {
            return true;
        }
        // Nothing left to decode: the common case costs no allocation.
        if !current.contains('%') {
            return false;
        }
        match percent_decode(&current) {
            Some(decoded) if decoded == current => return false,
            Some(decoded) => current = Cow::Owned(decoded),
            None => return true,
        }
    }
    true
}

/// One round of percent-decoding. A `%` without two hex digits stays as it is;
/// bytes that are not UTF-8 once decoded give `None`.
pub(crate) fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/",
            "/index.html",
            "/assets/site.css",
            "/a%20b.txt",
            "/100%",
            "/..a/b..",
            "/.well-known/x",
            "/%+e%+e/x",
        ] {
            assert!(!is_suspicious(path), "{path}");
        }
    }

    #[test]
    fn every_spelling_of_dot_dot_is_caught() {
        for path in [
            "/../etc/passwd",
            "/assets/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/..%2fetc/passwd",
            "/%2e%2e%2fetc",
            "/%252e%252e/etc/passwd",
            "/%25252e%25252e/etc",
            "/..\\etc\\passwd",
            "/..%5cetc",
            "/%00",
            "/index.html%00.png",
            "/a%0d%0aSet-Cookie:x",
            "/%ff%fe",
            "/..",
        ] {
            assert!(is_suspicious(path), "{path}");
        }
    }
}
