//! CORS for direct cross-origin use of the API (a page on :9000 calling :5252).
//! Explicit origins and methods; `*` only when configured.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    Router,
};
use http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The `--cors-origins` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: any origin (and so no credentials).
    Any,
    /// Exactly these origins; empty disables CORS.
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// Parses `*`, an empty string, or comma-separated `http(s)://host[:port]` origins.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value == "*" {
            return Ok(Self::Any);
        }
        value
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                let host = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    .unwrap_or("");
                let plain = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
                if host.is_empty() || !host.chars().all(plain) {
                    return Err(format!(
                        "invalid origin {origin:?}: expected scheme://host[:port] (no path), or *"
                    ));
                }
                HeaderValue::from_str(origin).map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()
            .map(Self::List)
    }

    /// Whether a request from `origin` may read our responses.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.contains(origin),
        }
    }

    /// Applies CORS to `router`: GET/HEAD/OPTIONS, the `X-Request-Id` header both ways,
    /// preflight cached for 10 minutes. A request from any other origin gets no
    /// `Access-Control-*` header at all (tower-http would still send the methods).
    pub fn apply<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router
            .layer(self.cors_layer())
            .layer(middleware::from_fn_with_state(
                self.clone(),
                strip_unless_allowed,
            ))
    }

    fn cors_layer(&self) -> CorsLayer {
        let origins = match self {
            Self::Any => AllowOrigin::any(),
            Self::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, service_kit::request_id::HEADER])
            .expose_headers([service_kit::request_id::HEADER])
            .max_age(Duration::from_secs(600))
    }
}

async fn strip_unless_allowed(
    State(origins): State<CorsOrigins>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = request
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|origin| origins.allows(origin));
    let mut response = next.run(request).await;
    if !allowed {
        let names: Vec<_> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            response.headers_mut().remove(name);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_wildcard_and_empty() {
        assert_eq!(CorsOrigins::parse("*"), Ok(CorsOrigins::Any));
        assert_eq!(CorsOrigins::parse(""), Ok(CorsOrigins::List(vec![])));
        let list = CorsOrigins::parse("http://a:9000, https://[::1]:8443").unwrap();
        assert_eq!(
            list,
            CorsOrigins::List(vec![
                HeaderValue::from_static("http://a:9000"),
                HeaderValue::from_static("https://[::1]:8443")
            ])
        );
    }

    #[test]
    fn rejects_paths_schemes_and_mixed_wildcards() {
        for bad in [
            "a:9000",
            "ftp://a",
            "http://a/",
            "http://a/x",
            "http://a,*",
            "http://",
        ] {
            assert!(
                CorsOrigins::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
