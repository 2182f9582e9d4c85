//! Headers that tell clients and caches how to treat what we serve:
//!
//! - `Cache-Control`: `no-cache` for HTML (always revalidate, so a deploy shows at
//!   once), a year and `immutable` under `/assets/` (index.html names them with a
//!   `?v=<content hash>` that changes with their content), an hour for other files,
//!   `no-store` for probes and `no-cache` for errors;
//! - `charset=utf-8` on text types, which ServeDir leaves out;
//! - `Vary: Accept-Encoding` on files, since a `.gz` twin may be chosen.
//!
//! Files held in memory get these values once, at load ([`crate::site_cache`]); the
//! [`describe`] middleware gives them to the probes and to what ServeDir serves from disk.

use axum::{extract::Request, middleware::Next, response::Response};
use http::{header, HeaderValue, StatusCode};

pub const HTML: &str = "no-cache";
pub const ASSETS: &str = "public, max-age=31536000, immutable";
pub const OTHER_FILES: &str = "public, max-age=3600";
pub const PROBES: &str = "no-store";

/// Middleware around the probes and the files served from disk.
pub async fn describe(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let is_file = response.headers().contains_key(header::LAST_MODIFIED);
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let headers = response.headers_mut();
    if let Some(with_charset) = content_type.as_ref().and_then(add_charset) {
        headers.insert(header::CONTENT_TYPE, with_charset);
    }
    if is_file {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    let is_html = content_type.is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
        || path.ends_with('/')
        || path.ends_with(".html");
    let policy = cache_policy(&path, response.status(), is_html);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}

pub(crate) fn cache_policy(path: &str, status: StatusCode, is_html: bool) -> &'static str {
    let fresh = status.is_success() || status == StatusCode::NOT_MODIFIED;
    match path {
        "/health" | "/ready" => PROBES,
        _ if !fresh || is_html => HTML,
        _ if path.starts_with("/assets/") => ASSETS,
        _ => OTHER_FILES,
    }
}

pub(crate) fn add_charset(content_type: &HeaderValue) -> Option<HeaderValue> {
    let value = content_type.to_str().ok()?;
    let textual = value.starts_with("text/")
        || value == "application/javascript"
        || value == "application/json"
        || value == "image/svg+xml";
    if !textual || value.contains("charset") {
        return None;
    }
    HeaderValue::from_str(&format!("{value}; charset=utf-8")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_policies() {
        assert_eq!(cache_policy("/", StatusCode::OK, true), HTML);
        assert_eq!(
            cache_policy("/assets/site.css", StatusCode::OK, false),
            ASSETS
        );
        assert_eq!(
            cache_policy("/assets/site.css", StatusCode::NOT_MODIFIED, false),
            ASSETS
        );
        assert_eq!(
            cache_policy("/assets/gone.css", StatusCode::NOT_FOUND, true),
            HTML
        );
        assert_eq!(
            cache_policy("/favicon.svg", StatusCode::OK, false),
            OTHER_FILES
        );
        assert_eq!(
            cache_policy("/ready", StatusCode::SERVICE_UNAVAILABLE, false),
            PROBES
        );
    }

    #[test]
    fn charset_only_on_text_without_one() {
        let with = |s: &'static str| add_charset(&HeaderValue::from_static(s));
        assert_eq!(with("text/css").unwrap(), "text/css; charset=utf-8");
        assert_eq!(
            with("image/svg+xml").unwrap(),
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(with("text/html; charset=utf-8"), None);
        assert_eq!(with("image/png"), None);
    }
}
