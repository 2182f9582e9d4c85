//! Entry points for the fuzz targets (`lb/fuzz`) and the property tests: each takes raw
//! input, runs one of service-kit's parsers on it, and panics only when a property of the
//! result does not hold (a parser that panics by itself fails the same way). Built with the
//! `fuzzing` feature, and in this crate's own tests; not an API.

use http::{HeaderMap, HeaderValue};

use crate::healthcheck::{self, Target};
use crate::request_id;

/// The healthcheck client reading what a server answered: `None`, or the three-digit
/// status after `HTTP/1.x ` and the text after the blank line.
pub fn healthcheck_answer(data: &[u8]) {
    let Some(answer) = healthcheck::parse(data) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    assert!(text.starts_with("HTTP/1."), "{text:?}");
    assert!(answer.status <= 999, "{answer:?}");
    assert_eq!(
        text.get(9..12),
        Some(format!("{:03}", answer.status).as_str())
    );
    assert!(text.ends_with(&answer.body), "{answer:?}");
}

/// The healthcheck client's URL: refused, or split into parts whose request head holds
/// exactly the six lines it means to send.
pub fn healthcheck_url(url: &str) {
    let Ok(target) = Target::parse(url) else {
        return;
    };
    assert!(target.path.starts_with('/'), "{target:?}");
    assert!(!target.authority.is_empty() && !target.authority.contains(['@', '/']));
    assert!(target.addr.starts_with(target.authority), "{target:?}");
    assert!(
        url.ends_with(target.path) || target.path == "/",
        "{target:?}"
    );
    let head = target.head_with("GET", "");
    assert_eq!(head.matches("\r\n").count(), 6, "{head:?}");
    assert!(!head.contains(|c: char| c.is_control() && c != '\r' && c != '\n'));
    let request_line = head.split("\r\n").next().unwrap_or_default();
    assert_eq!(request_line.matches(' ').count(), 2, "{request_line:?}");
}

/// The request-id rule on the `X-Request-Id` values of one request (each one a header
/// value if it can be one): the id kept or made is always valid, and it is the incoming
/// one exactly when there is one valid incoming id.
pub fn request_id(values: &[&[u8]]) {
    let mut headers = HeaderMap::new();
    for v in values {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append(request_id::HEADER, v);
        }
    }
    let id = request_id::keep_or_generate(&headers);
    assert!(request_id::is_valid(id.as_bytes()), "{id:?}");
    let incoming: Vec<&HeaderValue> = headers.get_all(request_id::HEADER).iter().collect();
    match incoming.as_slice() {
        [one] if request_id::is_valid(one.as_bytes()) => assert_eq!(&id, *one),
        _ => assert!(
            incoming.iter().all(|v| **v != id),
            "{id:?} was not made fresh"
        ),
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    /// Strings near the shapes each parser expects, and anything at all.
    fn answer() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<Vec<u8>>(),
            ("HTTP/1\\.[0-9] [0-9]{0,4}[ -~]{0,20}(\r\n[ -~]{0,20}){0,3}(\r\n\r\n)?\\PC{0,40}")
                .prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #[test]
        fn healthcheck_answers_parse_or_are_refused(data in answer()) {
            super::healthcheck_answer(&data);
        }

        #[test]
        fn healthcheck_urls_parse_or_are_refused(
            url in prop_oneof![
                any::<String>(),
                "http://[a-z0-9.:\\[\\]@ \t\r\n-]{0,20}(/[ -~\r\n\t]{0,20})?",
            ]
        ) {
            super::healthcheck_url(&url);
        }

        #[test]
        fn request_ids_are_kept_or_replaced(
            values in proptest::collection::vec(
                prop_oneof![any::<Vec<u8>>(), "[A-Za-z0-9._:-]{0,130}".prop_map(String::into_bytes)],
                0..3,
            )
        ) {
            let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            super::request_id(&values);
        }
    }
}
