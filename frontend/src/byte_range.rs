//! `Range` requests (RFC 9110 §14), decided the same way for a file held in memory and
//! for one ServeDir streams from disk (`file_response::for_disk` rewrites the header to
//! this decision first):
//!
//! - one byte range that overlaps the file: 206 with `Content-Range: bytes START-END/SIZE`;
//!   the unit name is case-insensitive, an end past the file is clipped, and a suffix
//!   longer than the file (`bytes=-100000`) means the whole file, as a 206;
//! - valid byte ranges none of which overlaps the file (`bytes=SIZE-`, `bytes=-0`, any
//!   range of an empty file): 416 with `Content-Range: bytes */SIZE`;
//! - anything else is ignored and the whole file sent (200), as §14.2 allows: another
//!   unit (`items=0-5`, which §14.1 says to ignore), a syntactically invalid header
//!   (`bytes=9-1`, `bytes=x-`), several ranges (no multipart answers; 416 only when
//!   none of them overlaps), a satisfiable suffix of an empty file (no `Content-Range`
//!   can name zero bytes), and an `If-Range` that does not hold.
//!
//! `If-Range` (RFC 9110 §13.1.5) holds when it is the file's strong ETag, byte for byte
//! (a weak tag never matches), or its `Last-Modified` date exactly.

use std::{ops::RangeInclusive, time::SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};

use crate::etag;

/// What to answer a request for a representation of `size` bytes with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200 with the whole representation: no `Range`, or one to ignore.
    Whole,
    /// 206 with these bytes (inclusive); `Content-Range: bytes START-END/SIZE`.
    Part(RangeInclusive<u64>),
    /// 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// The answer to a request with `headers` for the identity representation of a file:
/// `size` bytes, with these validators (for `If-Range`).
pub(crate) fn decide(
    headers: &HeaderMap,
    size: u64,
    etag: Option<&HeaderValue>,
    modified: Option<SystemTime>,
) -> Outcome {
    let mut ranges = headers.get_all(header::RANGE).iter();
    // Range is a singleton field: two of them are as invalid as a malformed one.
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        return Outcome::Whole;
    };
    if let Some(condition) = headers.get(header::IF_RANGE) {
        if !if_range_holds(condition, etag, modified) {
            return Outcome::Whole;
        }
    }
    match range.to_str() {
        Ok(range) => outcome(range, size),
        Err(_) => Outcome::Whole,
    }
}

/// Whether `If-Range: condition` holds for a file with these validators.
fn if_range_holds(
    condition: &HeaderValue,
    etag: Option<&HeaderValue>,
    modified: Option<SystemTime>,
) -> bool {
    let text = condition.as_bytes();
    if text.starts_with(b"\"") || text.starts_with(b"W/") {
        // Strong comparison: our tags are strong, so a weak one never matches.
        return etag.is_some_and(|tag| tag.as_bytes() == text);
    }
    etag::http_date(condition)
        .zip(modified)
        .is_some_and(|(date, modified)| date == modified)
}

/// The answer for `range` (the `Range` header's text) on a body of `size` bytes.
pub(crate) fn outcome(range: &str, size: u64) -> Outcome {
    let Some((unit, set)) = range.split_once('=') else {
        return Outcome::Whole;
    };
    if !unit.eq_ignore_ascii_case("bytes") {
        return Outcome::Whole;
    }
    let (mut specs, mut parts, mut part) = (0usize, 0usize, None);
    let mut suffix_of_empty = false;
    // A list: empty elements and the whitespace around elements are allowed.
    for text in set.split(',').map(|s| s.trim_matches([' ', '\t'])) {
        if text.is_empty() {
            continue;
        }
        let Some(spec) = Spec::parse(text) else {
            return Outcome::Whole;
        };
        specs += 1;
        match spec.part(size) {
            Some(found) => {
                parts += 1;
                part = Some(found);
            }
            None => suffix_of_empty |= size == 0 && matches!(spec, Spec::Suffix(1..)),
        }
    }
    match (specs, parts, part) {
        (1, 1, Some(part)) => Outcome::Part(part),
        (1.., 0, _) if !suffix_of_empty => Outcome::Unsatisfiable,
        // No range at all (invalid), several ranges, or a suffix of an empty file.
        _ => Outcome::Whole,
    }
}

/// One `range-spec` of the `bytes` unit.
#[derive(Clone, Copy, Debug)]
enum Spec {
    /// `FIRST-` or `FIRST-LAST`.
    From(u64, Option<u64>),
    /// `-LENGTH`: the last LENGTH bytes.
    Suffix(u64),
}

impl Spec {
    /// `None` when `text` is not a valid range-spec (a last before the first included).
    fn parse(text: &str) -> Option<Spec> {
        let (first, last) = text.split_once('-')?;
        if first.is_empty() {
            return Some(Spec::Suffix(number(last)?));
        }
        let first = number(first)?;
        let last = match last {
            "" => None,
            last => Some(number(last)?),
        };
        match last {
            Some(last) if last < first => None,
            _ => Some(Spec::From(first, last)),
        }
    }

    /// The bytes of a `size`-byte body it selects; `None` if it overlaps none.
    fn part(self, size: u64) -> Option<RangeInclusive<u64>> {
        let last_byte = size.checked_sub(1)?;
        match self {
            Spec::From(first, last) => (first <= last_byte)
                .then(|| first..=last.map_or(last_byte, |last| last.min(last_byte))),
            Spec::Suffix(length) => (length > 0).then(|| size - length.min(size)..=last_byte),
        }
    }
}

/// `1*DIGIT`; a value past `u64::MAX` saturates (it is past any file's end all the same).
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |n, digit| {
        n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    }))
}

/// The bytes of `part` in `body`; `None` if `part` does not fit, which [`outcome`] rules
/// out.
pub(crate) fn slice(body: &Bytes, part: &RangeInclusive<u64>) -> Option<Bytes> {
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

/// The `Range` that makes ServeDir give `outcome` for a file of `size` bytes (which its
/// own parser reads as this module does), or `None` for the whole file (no `Range`).
pub(crate) fn for_serve_dir(outcome: &Outcome, size: u64) -> Option<HeaderValue> {
    match outcome {
        Outcome::Whole => None,
        Outcome::Part(part) => Some(header_value(format!(
            "bytes={}-{}",
            part.start(),
            part.end()
        ))),
        // Starts past the end, so ServeDir finds it reversed: 416 `bytes */SIZE`.
        Outcome::Unsatisfiable => Some(header_value(format!("bytes={}-", size.saturating_add(1)))),
    }
}

/// Digits, spaces, `-`, `=`, `/` and `*` only: always a valid header value.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("digits and `bytes -=/*` are header-safe")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn single_ranges_of_every_form() {
        assert_eq!(outcome("bytes=0-9", 100), Outcome::Part(0..=9));
        assert_eq!(outcome("bytes=90-", 100), Outcome::Part(90..=99));
        assert_eq!(outcome("bytes=-10", 100), Outcome::Part(90..=99));
        // An end past the body is clipped.
        assert_eq!(outcome("bytes=95-200", 100), Outcome::Part(95..=99));
        // The unit is case-insensitive; whitespace around list elements and empty
        // elements are allowed; leading zeros are digits like any other.
        assert_eq!(outcome("Bytes=0-9", 100), Outcome::Part(0..=9));
        assert_eq!(outcome("BYTES= 0-9 ,", 100), Outcome::Part(0..=9));
        assert_eq!(outcome("bytes=007-008", 100), Outcome::Part(7..=8));
    }

    #[test]
    fn a_suffix_longer_than_the_file_is_the_whole_file() {
        assert_eq!(outcome("bytes=-100000", 100), Outcome::Part(0..=99));
        assert_eq!(outcome("bytes=-100", 100), Outcome::Part(0..=99));
        assert_eq!(
            outcome("bytes=-99999999999999999999999", 100),
            Outcome::Part(0..=99)
        );
    }

    #[test]
    fn invalid_ranges_other_units_and_several_ranges_are_ignored() {
        for ignored in [
            "bytes=9-0",
            "bytes=x-y",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes 0-9",
            "bytes =0-9",
            "lines=0-1",
            "items=0-5",
            "",
            "bytes=0-1,5-6",
            "bytes=0-1,200-300",
            "bytes=0-1,x",
            "bytes=200-300,x",
        ] {
            assert_eq!(outcome(ignored, 100), Outcome::Whole, "{ignored}");
        }
    }

    #[test]
    fn valid_ranges_outside_the_file_are_unsatisfiable() {
        for (range, size) in [
            ("bytes=100-", 100),
            ("bytes=100-200", 100),
            ("bytes=-0", 100),
            ("bytes=200-300,100-", 100),
            ("bytes=99999999999999999999999-", 100),
            ("bytes=0-", 0),
            ("bytes=0-0", 0),
            ("bytes=-0", 0),
        ] {
            assert_eq!(
                outcome(range, size),
                Outcome::Unsatisfiable,
                "{range} {size}"
            );
        }
        // A suffix of an empty file is satisfiable (RFC 9110 §14.1.1), but no
        // Content-Range can name zero bytes: the whole, empty, body.
        assert_eq!(outcome("bytes=-5", 0), Outcome::Whole);
    }

    #[test]
    fn if_range_needs_the_strong_tag_or_the_exact_date() {
        let tag = HeaderValue::from_static("\"a-b\"");
        let modified = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let date = httpdate::fmt_http_date(modified);
        let decide_with = |if_range: Option<&str>, tag: Option<&HeaderValue>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-9"));
            if let Some(if_range) = if_range {
                headers.insert(header::IF_RANGE, HeaderValue::from_str(if_range).unwrap());
            }
            decide(&headers, 100, tag, Some(modified))
        };
        let part = Outcome::Part(0..=9);
        assert_eq!(decide_with(None, Some(&tag)), part);
        assert_eq!(decide_with(Some("\"a-b\""), Some(&tag)), part);
        assert_eq!(decide_with(Some(&date), Some(&tag)), part);
        for stale in [
            "\"a-c\"",
            "W/\"a-b\"",
            "\"a-b\", \"x\"",
            "*",
            "Thu, 01 Jan 1998 00:00:00 GMT",
            "soon",
        ] {
            assert_eq!(
                decide_with(Some(stale), Some(&tag)),
                Outcome::Whole,
                "{stale}"
            );
        }
        assert_eq!(decide_with(Some("\"a-b\""), None), Outcome::Whole);

        let mut two = HeaderMap::new();
        two.append(header::RANGE, HeaderValue::from_static("bytes=0-9"));
        two.append(header::RANGE, HeaderValue::from_static("bytes=0-9"));
        assert_eq!(decide(&two, 100, None, None), Outcome::Whole);
        assert_eq!(decide(&HeaderMap::new(), 100, None, None), Outcome::Whole);
    }

    #[test]
    fn serve_dir_gets_a_range_it_reads_the_same_way() {
        for (outcome, size) in [
            (Outcome::Part(0..=9), 100),
            (Outcome::Part(0..=99), 100),
            (Outcome::Unsatisfiable, 100),
            (Outcome::Unsatisfiable, 0),
        ] {
            let range = for_serve_dir(&outcome, size).unwrap();
            // ServeDir's parser, as it reads the header.
            let parsed = http_range_header::parse_range_header(range.to_str().unwrap())
                .and_then(|ranges| ranges.validate(size));
            match outcome {
                Outcome::Part(part) => assert_eq!(parsed, Ok(vec![part])),
                _ => assert!(parsed.is_err(), "{range:?}: {parsed:?}"),
            }
        }
        assert_eq!(for_serve_dir(&Outcome::Whole, 100), None);
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
        assert_eq!(slice(&Bytes::new(), &(0..=0)), None);
        assert_eq!(content_range(&(0..=9), 10), "bytes 0-9/10");
        assert_eq!(unsatisfied_range(10), "bytes */10");
    }
}
