//! `Range: bytes=…` on a body held in memory, with ServeDir's rules: one range gives 206
//! with `Content-Range`; a malformed or unsatisfiable one 416 with `Content-Range:
//! bytes */SIZE`; several ranges 416 too (no multipart answers). The parser is the one
//! ServeDir uses (http-range-header), so the same header gets the same answer from
//! memory and from disk.

use std::ops::RangeInclusive;

use bytes::Bytes;
use http::HeaderValue;

/// What to answer a `Range` request for a body of `size` bytes with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 206 with these bytes (inclusive); `Content-Range: bytes START-END/SIZE`.
    Part(RangeInclusive<u64>),
    /// 416, with this body (ServeDir explains a multipart refusal in one).
    Unsatisfiable(&'static str),
}

/// The answer for `range` (the header's text) on a body of `size` bytes.
pub(crate) fn outcome(range: &str, size: u64) -> Outcome {
    let ranges =
        http_range_header::parse_range_header(range).and_then(|parsed| parsed.validate(size));
    match ranges.as_deref() {
        Ok([one]) => Outcome::Part(one.clone()),
        Ok([]) => Outcome::Unsatisfiable("No range found after parsing range header"),
        Ok(_) => Outcome::Unsatisfiable("Cannot serve multipart range requests"),
        Err(_) => Outcome::Unsatisfiable(""),
    }
}

/// The bytes of `part` in `body` (empty for an empty body, whose only "range" the parser
/// accepts is `0-0`); `None` if `part` does not fit, which the parser rules out.
pub(crate) fn slice(body: &Bytes, part: &RangeInclusive<u64>) -> Option<Bytes> {
    if body.is_empty() {
        return Some(Bytes::new());
    }
    let start = usize::try_from(*part.start()).ok()?;
    let end = usize::try_from(*part.end()).ok()?;
    (start <= end && end < body.len()).then(|| body.slice(start..=end))
}

/// `bytes START-END/SIZE`.
pub(crate) fn content_range(part: &RangeInclusive<u64>, size: u64) -> HeaderValue {
    header_value(format!("bytes {}-{}/{size}", part.start(), part.end()))
}

/// `bytes */SIZE`, for a 416.
pub(crate) fn unsatisfied_range(size: u64) -> HeaderValue {
    header_value(format!("bytes */{size}"))
}

/// Digits, spaces, `-`, `/` and `*` only: always a valid header value.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("digits and `bytes -/*` are header-safe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_of_every_form() {
        assert_eq!(outcome("bytes=0-9", 100), Outcome::Part(0..=9));
        assert_eq!(outcome("bytes=90-", 100), Outcome::Part(90..=99));
        assert_eq!(outcome("bytes=-10", 100), Outcome::Part(90..=99));
        // An end past the body is clipped.
        assert_eq!(outcome("bytes=95-200", 100), Outcome::Part(95..=99));
    }

    #[test]
    fn unsatisfiable_malformed_and_multipart() {
        for bad in [
            "bytes=100-",
            "bytes=9-0",
            "bytes=-200",
            "bytes=x-y",
            "lines=0-1",
            "",
        ] {
            assert_eq!(outcome(bad, 100), Outcome::Unsatisfiable(""), "{bad}");
        }
        assert_eq!(
            outcome("bytes=0-1,5-6", 100),
            Outcome::Unsatisfiable("Cannot serve multipart range requests")
        );
    }

    #[test]
    fn slices_never_panic() {
        let body = Bytes::from_static(b"0123456789");
        assert_eq!(slice(&body, &(2..=4)).unwrap(), "234");
        assert_eq!(slice(&body, &(9..=9)).unwrap(), "9");
        assert_eq!(slice(&body, &(5..=10)), None);
        #[allow(clippy::reversed_empty_ranges)] // what a parser bug could hand over
        let reversed = 6..=5;
        assert_eq!(slice(&body, &reversed), None);
        assert_eq!(slice(&Bytes::new(), &(0..=0)).unwrap(), "");
        assert_eq!(content_range(&(0..=9), 10), "bytes 0-9/10");
        assert_eq!(unsatisfied_range(10), "bytes */10");
    }
}
