//! `ETag` for files, and `304 Not Modified` on a matching `If-None-Match` or an
//! unchanged `If-Modified-Since`.
//!
//! The tag is derived from the representation sent: total size, modification time and
//! content coding, e.g. `"1a2b-674a1c2e-gzip"`. Files held in memory get theirs once, at
//! load ([`crate::site_cache`]); [`conditional`] gives one to what ServeDir serves from
//! disk, from the headers it reports, so both carry the same tag for the same file.
//! Per RFC 9110, `If-None-Match` wins over `If-Modified-Since`. Either way a 304 repeats
//! ETag, Last-Modified and Vary, as the full response would have.

use std::time::SystemTime;

use axum::{extract::Request, http::StatusCode, middleware::Next, response::Response};
use http::{header, HeaderMap, HeaderValue, Method};

/// Middleware around ServeDir, for files served from disk.
pub async fn conditional(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let if_none_match = headers.remove(header::IF_NONE_MATCH);
    // Decided here, on the Last-Modified ServeDir reports, so that the 304 carries the
    // same headers as one for If-None-Match (ServeDir's own 304 has none of them).
    let if_modified_since = headers
        .remove(header::IF_MODIFIED_SINCE)
        .and_then(|since| http_date(&since));
    // `file_response::for_disk` has decided If-Range along with the Range it came with
    // (and removed both, or rewritten the Range). ServeDir ignores If-Range: should one
    // still come with a Range, the whole file is the answer that is always correct.
    if headers.remove(header::IF_RANGE).is_some() {
        headers.remove(header::RANGE);
    }
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = next.run(request).await;
    let Some(tag) = tag_for(response.status(), response.headers()) else {
        return response;
    };
    let unchanged = match (&if_none_match, if_modified_since) {
        (Some(list), _) => matches(list, &tag),
        (None, Some(since)) => response
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(http_date)
            .is_some_and(|modified| modified <= since),
        (None, None) => false,
    };
    if safe && unchanged {
        return not_modified(response, tag);
    }
    response.headers_mut().insert(header::ETAG, tag);
    response
}

/// The tag of a representation of `size` bytes modified at `modified_secs` (Unix time)
/// with content coding `coding` (`None` for identity).
pub(crate) fn tag(size: u64, modified_secs: u64, coding: Option<&str>) -> Option<HeaderValue> {
    let value = match coding {
        Some(coding) => format!("\"{size:x}-{modified_secs:x}-{coding}\""),
        None => format!("\"{size:x}-{modified_secs:x}\""),
    };
    HeaderValue::from_str(&value).ok()
}

/// An HTTP date header (Last-Modified, If-Modified-Since…); `None` if it is not one.
pub(crate) fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// The tag of a 200 or 206 file response, or `None` for anything else.
fn tag_for(status: StatusCode, headers: &HeaderMap) -> Option<HeaderValue> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let size = match status {
        StatusCode::OK => text(header::CONTENT_LENGTH)?,
        // "bytes 0-99/1234": the tag names the whole file, not the part.
        StatusCode::PARTIAL_CONTENT => text(header::CONTENT_RANGE)?.rsplit('/').next()?,
        _ => return None,
    };
    let size: u64 = size.parse().ok()?;
    let modified = http_date(headers.get(header::LAST_MODIFIED)?)?;
    let secs = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    tag(size, secs, text(header::CONTENT_ENCODING))
}

/// Weak comparison, as `If-None-Match` requires: `W/` prefixes are ignored, `*` matches.
pub(crate) fn matches(list: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let tag = tag.to_str().unwrap_or_default();
    list.split(',')
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == "*" || candidate == tag)
}

/// A 304 that keeps the headers a cache needs to refresh its copy. The outer
/// `file_headers::describe` adds `Vary` and `Cache-Control` (it sees Last-Modified).
fn not_modified(response: Response, tag: HeaderValue) -> Response {
    let mut fresh = Response::new(axum::body::Body::empty());
    *fresh.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [
        header::LAST_MODIFIED,
        header::VARY,
        header::CONTENT_LOCATION,
    ] {
        if let Some(value) = response.headers().get(&name) {
            fresh.headers_mut().insert(name, value.clone());
        }
    }
    fresh.headers_mut().insert(header::ETAG, tag);
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    const DATE: &str = "Sat, 28 Nov 2026 19:00:00 GMT";

    #[test]
    fn full_and_partial_responses_share_a_tag() {
        let full = headers(&[
            (header::CONTENT_LENGTH, "4660"),
            (header::LAST_MODIFIED, DATE),
        ]);
        let part = headers(&[
            (header::CONTENT_RANGE, "bytes 0-9/4660"),
            (header::LAST_MODIFIED, DATE),
        ]);
        let tag = tag_for(StatusCode::OK, &full).unwrap();
        assert!(tag.to_str().unwrap().starts_with("\"1234-"), "{tag:?}");
        assert_eq!(tag_for(StatusCode::PARTIAL_CONTENT, &part), Some(tag));
    }

    #[test]
    fn content_coding_changes_the_tag_and_errors_have_none() {
        let plain = headers(&[
            (header::CONTENT_LENGTH, "10"),
            (header::LAST_MODIFIED, DATE),
        ]);
        let mut gzip = plain.clone();
        gzip.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let gzip_tag = tag_for(StatusCode::OK, &gzip).unwrap();
        assert!(gzip_tag.to_str().unwrap().ends_with("-gzip\""));
        assert_ne!(tag_for(StatusCode::OK, &plain), Some(gzip_tag));
        assert_eq!(tag_for(StatusCode::NOT_FOUND, &plain), None);
        assert_eq!(
            tag_for(StatusCode::OK, &headers(&[(header::CONTENT_LENGTH, "1")])),
            None
        );
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let tag = HeaderValue::from_static("\"a-b\"");
        for list in ["\"a-b\"", "W/\"a-b\"", "\"x\", \"a-b\"", "*"] {
            assert!(matches(&HeaderValue::from_static(list), &tag), "{list}");
        }
        assert!(!matches(&HeaderValue::from_static("\"a-c\""), &tag));
    }
}
