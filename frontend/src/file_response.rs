//! A request for a file, answered from the site in memory ([`crate::site_cache`]).
//!
//! The answers are those tower-http's ServeDir (with the `etag`, `file_headers`,
//! `path_guard` and `not_found` rules around it) gave before the site moved into memory:
//!
//! - paths: percent-decoded once, empty and `.` segments dropped; `/` and `/dir/` serve
//!   `index.html`; `/dir` redirects (307) to `/dir/`, query kept, the path with its
//!   empty and `.` segments dropped (so `//dir` goes to `/dir/`, never to the
//!   protocol-relative `//dir/`); a decoded path that is absolute or not UTF-8 is a
//!   miss. Suspicious paths get 400 first (`path_guard`);
//! - `GET` and `HEAD` only; anything else is 405 with `Allow: GET,HEAD`;
//! - the representation by `Accept-Encoding` (`content_coding`), `Vary: accept-encoding`;
//! - `If-Unmodified-Since` (412; ignored for a file without a usable modification
//!   time), then `If-None-Match` (its absence lets `If-Modified-Since` decide) give 304
//!   with ETag, Last-Modified and Vary;
//! - `Range` and `If-Range` as [`crate::byte_range`] decides. A part (and a 416) is
//!   always about the identity body: its ETag and offsets do not depend on the client's
//!   `Accept-Encoding` (ServeDir would cut it from the twin it picked);
//! - a miss: `404.html` (by `Accept-Encoding`, never partial or 304), status 404.
//!
//! Files over the memory limit are left to ServeDir with the old middlewares
//! ([`disk_files`]), which stream them from disk as before, after [`for_disk`] has
//! rewritten a `Range` to the same decision (ServeDir's own rules differ) and, for a part
//! or a 416, dropped `Accept-Encoding`, so that its part is cut from the identity file
//! as well.

use std::{
    borrow::Cow,
    fmt::Write,
    path::{Path, PathBuf},
};

use axum::{body::Body, extract::Request, middleware, response::Response, Router};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use tower_http::services::ServeDir;

use crate::{
    byte_range::{self, Outcome},
    content_coding, etag, file_headers, not_found, path_guard,
    site_cache::{self, File, Node, SiteCache},
};

/// ServeDir with the middlewares it had before, for files over the memory limit.
pub(crate) fn disk_files(root: &Path) -> Router {
    let files = ServeDir::new(root)
        .precompressed_br()
        .precompressed_gzip()
        .not_found_service(not_found::page(root));
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(etag::conditional))
        .layer(middleware::from_fn(file_headers::describe))
}

/// Who answers a request.
pub(crate) enum Answer {
    /// Memory, at once.
    Ready(Response),
    /// ServeDir, from disk: a file over the memory limit, at this path under the root
    /// (the identity file, not a twin).
    Disk(PathBuf),
}

/// The answer from memory, or the file to serve from disk.
pub(crate) fn answer(site: &SiteCache, request: &Request) -> Answer {
    let path = request.uri().path();
    if path_guard::is_suspicious(path) {
        return Answer::Ready(path_guard::refusal());
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Answer::Ready(method_not_allowed());
    }
    let Some(key) = site_key(path) else {
        return Answer::Ready(not_found(site, request));
    };
    let file = match site.node(&key) {
        Some(Node::File(file)) => file,
        Some(Node::Disk) => return Answer::Disk(PathBuf::from(&*key)),
        Some(Node::Dir(_)) if !path.ends_with('/') => {
            return Answer::Ready(redirect(request.uri()))
        }
        Some(Node::Dir(Some(index))) => match &**index {
            Node::File(file) => file,
            Node::Disk => return Answer::Disk(Path::new(&*key).join("index.html")),
            // `index.html` is a directory: nothing to serve.
            Node::Dir(_) => return Answer::Ready(not_found(site, request)),
        },
        Some(Node::Dir(None)) | None => return Answer::Ready(not_found(site, request)),
    };
    Answer::Ready(serve(file, request))
}

/// The cache key of a request path, read as ServeDir reads it: percent-decoded once,
/// leading, trailing, doubled and `.` segments dropped. `None` when the decoded path is
/// not UTF-8, is absolute (`/%2fetc`) or has a `..` segment. Allocates only when it must.
fn site_key(path: &str) -> Option<Cow<'_, str>> {
    let trimmed = path.trim_start_matches('/');
    let decoded = match trimmed.contains('%') {
        true => Cow::Owned(path_guard::percent_decode(trimmed)?),
        false => Cow::Borrowed(trimmed),
    };
    if decoded.starts_with('/') {
        return None;
    }
    let plain = decoded.trim_end_matches('/');
    let is_plain = plain.is_empty()
        || plain
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."));
    if is_plain {
        return Some(match decoded {
            Cow::Borrowed(decoded) => Cow::Borrowed(decoded.trim_end_matches('/')),
            Cow::Owned(decoded) => Cow::Owned(decoded.trim_end_matches('/').to_owned()),
        });
    }
    let mut key = String::with_capacity(plain.len());
    for segment in plain.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            segment => {
                if !key.is_empty() {
                    key.push('/');
                }
                key.push_str(segment);
            }
        }
    }
    Some(Cow::Owned(key))
}

/// A file held in memory: 200, 206, 304, 412 or 416.
fn serve(file: &File, request: &Request) -> Response {
    let headers = request.headers();
    let identity = &file.identity;
    let range = byte_range::decide(
        headers,
        identity.body.len() as u64,
        identity.etag.as_ref(),
        identity.modified,
    );
    let variant = match range {
        Outcome::Whole => content_coding::choose(file, headers),
        Outcome::Part(_) | Outcome::Unsatisfiable => identity,
    };
    let path = request.uri().path();
    let is_html = file.is_html || path.ends_with('/') || path.ends_with(".html");
    let fresh = cache_control(file_headers::cache_policy(path, StatusCode::OK, is_html));

    if let Some(since) = headers
        .get(header::IF_UNMODIFIED_SINCE)
        .and_then(etag::http_date)
    {
        // Fails only for a file known to be newer than `since`: without a usable
        // modification time the header is ignored (RFC 9110 §13.1.4).
        if variant.modified.is_some_and(|modified| modified > since) {
            return status_only(StatusCode::PRECONDITION_FAILED, HeaderMap::new());
        }
    }
    let unchanged = match headers.get(header::IF_NONE_MATCH) {
        Some(list) => variant
            .etag
            .as_ref()
            .is_some_and(|tag| etag::matches(list, tag)),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(etag::http_date)
            .zip(variant.modified)
            .is_some_and(|(since, modified)| modified <= since),
    };
    if unchanged {
        let mut headers = variant.not_modified.clone();
        headers.insert(header::CACHE_CONTROL, fresh);
        return status_only(StatusCode::NOT_MODIFIED, headers);
    }

    let head = request.method() == Method::HEAD;
    let size = variant.body.len() as u64;
    let mut headers = variant.headers.clone();
    let (status, body) = match range {
        Outcome::Whole => (StatusCode::OK, variant.body.clone()),
        Outcome::Part(part) => match byte_range::slice(&variant.body, &part) {
            Some(bytes) => {
                headers.insert(
                    header::CONTENT_RANGE,
                    byte_range::content_range(&part, size),
                );
                (StatusCode::PARTIAL_CONTENT, bytes)
            }
            None => unsatisfiable(&mut headers, size),
        },
        Outcome::Unsatisfiable => unsatisfiable(&mut headers, size),
    };
    let policy = match status {
        // The body's length, as ServeDir's 416s (hyper counts it on the wire).
        StatusCode::RANGE_NOT_SATISFIABLE => {
            headers.remove(header::CONTENT_LENGTH);
            cache_control(file_headers::HTML)
        }
        _ => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            fresh
        }
    };
    headers.insert(header::CACHE_CONTROL, policy);
    let mut response = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A 416: the size in `Content-Range`, no validator (nothing was sent to validate), an
/// empty body (as ServeDir's).
fn unsatisfiable(headers: &mut HeaderMap, size: u64) -> (StatusCode, bytes::Bytes) {
    headers.remove(header::ETAG);
    headers.insert(header::CONTENT_RANGE, byte_range::unsatisfied_range(size));
    (StatusCode::RANGE_NOT_SATISFIABLE, bytes::Bytes::new())
}

/// `404.html` (or an empty body without one), never partial, never 304, no validators.
fn not_found(site: &SiteCache, request: &Request) -> Response {
    let mut headers = HeaderMap::with_capacity(6);
    let mut body = Body::empty();
    if let Some(page) = site.not_found() {
        let variant = content_coding::choose(page, request.headers());
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::CONTENT_LENGTH,
            header::VARY,
        ] {
            if let Some(value) = variant.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        if request.method() != Method::HEAD {
            body = Body::from(variant.body.clone());
        }
    }
    headers.insert(header::CACHE_CONTROL, cache_control(file_headers::HTML));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::NOT_FOUND;
    *response.headers_mut() = headers;
    response
}

/// `/dir` → 307 to `/dir/`, the query kept (scheme and host too, for an absolute-form
/// request target). The path loses its empty and `.` segments, as the file was found
/// without them: `//dir` must not send the browser to the protocol-relative `//dir/`,
/// another host. What is left starts with exactly one `/` and stays percent-encoded.
fn redirect(uri: &Uri) -> Response {
    let mut location = String::new();
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        let _ = write!(location, "{scheme}://{authority}");
    }
    for segment in uri.path().split('/') {
        if !matches!(segment, "" | ".") {
            location.push('/');
            location.push_str(segment);
        }
    }
    location.push('/');
    if let Some(query) = uri.query() {
        let _ = write!(location, "?{query}");
    }
    // A path and query taken from a parsed URI are always header-safe; 500 otherwise.
    let Ok(location) = HeaderValue::try_from(location) else {
        return status_only(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new());
    };
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(header::LOCATION, location);
    status_only(StatusCode::TEMPORARY_REDIRECT, headers)
}

fn method_not_allowed() -> Response {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    status_only(StatusCode::METHOD_NOT_ALLOWED, headers)
}

/// An empty response; `no-cache` unless `headers` says otherwise (errors, redirects).
fn status_only(status: StatusCode, mut headers: HeaderMap) -> Response {
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, cache_control(file_headers::HTML));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn cache_control(policy: &'static str) -> HeaderValue {
    HeaderValue::from_static(policy)
}

/// A request for `file` (under `root`), over the memory limit, made ready for ServeDir.
///
/// A `Range` gets the decision a file in memory gets ([`byte_range::decide`]), on the
/// identity file's size and validators: one `stat`, only for a request with a `Range`.
/// The header is then rewritten to one ServeDir reads the same way, or removed for the
/// whole file, and `If-Range` (decided now) removed. A part or a 416 goes without
/// `Accept-Encoding`, so that ServeDir picks no twin and cuts it from the identity file.
pub(crate) async fn for_disk(mut request: Request, root: &Path, file: &Path) -> Request {
    if !request.headers().contains_key(header::RANGE) {
        return request;
    }
    let meta = tokio::fs::metadata(root.join(file)).await;
    let (outcome, size) = match meta {
        Ok(meta) if meta.is_file() => {
            let size = meta.len();
            let (modified, tag) = site_cache::validators(size, meta.modified().ok(), None);
            let outcome = byte_range::decide(request.headers(), size, tag.as_ref(), modified);
            (outcome, size)
        }
        // Gone since the load: ServeDir answers for the path, as for any request.
        _ => (Outcome::Whole, 0),
    };
    let headers = request.headers_mut();
    headers.remove(header::IF_RANGE);
    match byte_range::for_serve_dir(&outcome, size) {
        Some(range) => {
            headers.insert(header::RANGE, range);
            headers.remove(header::ACCEPT_ENCODING);
        }
        None => {
            headers.remove(header::RANGE);
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_paths_as_serve_dir_does() {
        for (path, key) in [
            ("/", Some("")),
            ("/index.html", Some("index.html")),
            ("/assets/app.js", Some("assets/app.js")),
            ("/assets/", Some("assets")),
            ("/index.html/", Some("index.html")),
            ("//index.html", Some("index.html")),
            ("/./assets//app.js", Some("assets/app.js")),
            ("/assets/./", Some("assets")),
            ("/a%20b.txt", Some("a b.txt")),
            ("/assets%2fapp.js", Some("assets/app.js")),
            ("/100%", Some("100%")),
            ("/%2fetc/passwd", None),
            ("/%ff", None),
            ("/a/../b", None),
        ] {
            assert_eq!(site_key(path).as_deref(), key, "{path}");
        }
        assert!(matches!(site_key("/assets/app.js"), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn redirects_keep_the_query_and_an_absolute_target() {
        let location = |uri: &str| {
            let response = redirect(&uri.parse().unwrap());
            assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
            response.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(location("/assets"), "/assets/");
        assert_eq!(location("/assets?x=1"), "/assets/?x=1");
        assert_eq!(location("/a%20b"), "/a%20b/");
        // Never protocol-relative: `//assets/` would be the host `assets`.
        assert_eq!(location("//assets"), "/assets/");
        assert_eq!(location("///assets//css?x=1"), "/assets/css/?x=1");
        assert_eq!(location("/./assets"), "/assets/");
        assert_eq!(location("/."), "/");
        assert_eq!(
            location("http://example.com//assets"),
            "http://example.com/assets/"
        );
        assert_eq!(
            location("http://example.com/assets"),
            "http://example.com/assets/"
        );
    }
}
