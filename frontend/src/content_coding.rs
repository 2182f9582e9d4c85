//! Which representation of a file to send: the identity body or its `.gz`/`.br` twin,
//! by the request's `Accept-Encoding`, with the rules tower-http's ServeDir applies to
//! the same twins on disk (so a file answers alike from memory and from disk):
//!
//! - codings are `gzip` (or `x-gzip`), `br` and `identity`, case-insensitive; others,
//!   and entries whose `q` is malformed, are ignored;
//! - the highest `q` wins, and on equal `q` br before gzip before identity; `q=0`
//!   refuses a coding;
//! - a preferred coding the file has no twin for gives way to the next one; when none
//!   is left the identity body is sent (even if `identity;q=0` was asked: better than
//!   nothing, as ServeDir does).

use http::{header, HeaderMap};

use crate::site_cache::{File, Variant};

/// The codings we have twins for, least preferred first (the order breaks ties).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Coding {
    Identity = 0,
    Gzip = 1,
    Br = 2,
}

/// The variant of `file` to send for a request with `headers`.
pub(crate) fn choose<'a>(file: &'a File, headers: &HeaderMap) -> &'a Variant {
    // The common cases cost nothing: no header, or a file without twins.
    if (file.gzip.is_none() && file.br.is_none()) || !headers.contains_key(header::ACCEPT_ENCODING)
    {
        return &file.identity;
    }
    let mut q = accepted(headers);
    // Highest q first, ties to the preferred coding; give way when there is no twin.
    while let Some((coding, _)) = q
        .iter()
        .enumerate()
        .filter_map(|(i, q)| Some((coding_at(i), (*q)?)))
        .filter(|(_, q)| *q > 0)
        .max_by_key(|&(coding, q)| (q, coding))
    {
        let twin = match coding {
            Coding::Identity => return &file.identity,
            Coding::Gzip => &file.gzip,
            Coding::Br => &file.br,
        };
        match twin {
            Some(variant) => return variant,
            None => q[coding as usize] = None,
        }
    }
    &file.identity
}

fn coding_at(index: usize) -> Coding {
    [Coding::Identity, Coding::Gzip, Coding::Br][index]
}

/// The highest `q` (in thousandths) each coding is accepted with, by coding index.
fn accepted(headers: &HeaderMap) -> [Option<u16>; 3] {
    let mut best = [None; 3];
    let entries = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for entry in entries {
        let mut parts = entry.splitn(2, ';');
        let name = parts.next().unwrap_or_default().trim();
        let coding = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            Coding::Gzip
        } else if name.eq_ignore_ascii_case("br") {
            Coding::Br
        } else if name.eq_ignore_ascii_case("identity") {
            Coding::Identity
        } else {
            continue;
        };
        let q = match parts.next() {
            Some(param) => match parse_q(param.trim()) {
                Some(q) => q,
                None => continue,
            },
            None => 1000,
        };
        let slot = &mut best[coding as usize];
        *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
    }
    best
}

/// `q=0.5` → 500: RFC 9110's qvalue, at most three decimals, 0 to 1.
fn parse_q(param: &str) -> Option<u16> {
    let value = param
        .strip_prefix("q=")
        .or_else(|| param.strip_prefix("Q="))?;
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction = fraction
        .bytes()
        .zip([100, 10, 1])
        .map(|(digit, scale)| u16::from(digit - b'0') * scale)
        .sum::<u16>();
    let q = whole + fraction;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderValue;

    use super::*;

    fn variant(name: &'static str) -> Variant {
        Variant {
            body: Bytes::from_static(name.as_bytes()),
            headers: HeaderMap::new(),
            not_modified: HeaderMap::new(),
            etag: None,
            modified: None,
        }
    }

    fn file(gzip: bool, br: bool) -> File {
        File {
            identity: variant("identity"),
            gzip: gzip.then(|| variant("gzip")),
            br: br.then(|| variant("br")),
            is_html: false,
        }
    }

    fn pick(file: &File, accept: &[&'static str]) -> Bytes {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        }
        choose(file, &headers).body.clone()
    }

    #[test]
    fn preference_order_and_q_values() {
        let both = file(true, true);
        for (accept, expected) in [
            (&[][..], "identity"),
            (&["gzip"], "gzip"),
            (&["x-gzip"], "gzip"),
            (&["GZIP"], "gzip"),
            (&["gzip, br"], "br"),
            (&["gzip, deflate, br, zstd"], "br"),
            (&["br;q=0.5, gzip"], "gzip"),
            (&["gzip;q=0.5", "br;q=0.4"], "gzip"),
            (&["gzip;q=0, br;q=0"], "identity"),
            (&["identity, gzip;q=0.9"], "identity"),
            (&["identity;q=0.5, gzip;q=0.5"], "gzip"),
            (&["deflate, zstd"], "identity"),
            (&["*"], "identity"),
            (&["gzip;q=2, br;q=0.1"], "br"),
            (&["gzip;q=0.1234, br;q=0.1"], "br"),
            (&["gzip;level=1"], "identity"),
            (&["gzip;q=0.5, gzip;q=0.9, br;q=0.8"], "gzip"),
        ] {
            assert_eq!(pick(&both, accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn a_missing_twin_gives_way() {
        assert_eq!(pick(&file(true, false), &["br, gzip;q=0.5"]), "gzip");
        assert_eq!(pick(&file(false, false), &["br, gzip"]), "identity");
        assert_eq!(pick(&file(false, true), &["gzip"]), "identity");
        assert_eq!(pick(&file(false, true), &["identity;q=0, br;q=0.1"]), "br");
        // Nothing acceptable is left: the identity body rather than nothing.
        assert_eq!(pick(&file(true, false), &["br, identity;q=0"]), "identity");
    }

    #[test]
    fn q_values() {
        for (text, q) in [
            ("q=1", Some(1000)),
            ("q=1.000", Some(1000)),
            ("Q=0.5", Some(500)),
            ("q=0.05", Some(50)),
            ("q=0", Some(0)),
            ("q=1.5", None),
            ("q=0.1234", None),
            ("q=.5", None),
            ("q=-1", None),
            ("level=1", None),
        ] {
            assert_eq!(parse_q(text), q, "{text}");
        }
    }
}
