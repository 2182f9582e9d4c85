//! The admin API's bearer token (`server.admin_auth`, loaded by
//! `config::admin_token`): an axum middleware in front of every admin route.
//!
//! - `/status` and `POST /reload` need `Authorization: Bearer <token>`; so does `/metrics`
//!   unless `server.admin_auth.metrics: false`.
//! - `/ready` and `/health` never do: they are what probes (Docker, Kubernetes, a load
//!   balancer in front) call, and they tell nothing but up or not. Neither does
//!   `/status.html`: the page holds no data, and asks for the token to fetch `/status`.
//! - Every other path does, including one no route serves (401, not 404): the open paths
//!   are listed, so a route added later is guarded until it is named.
//! - Without a token configured (an admin listener on loopback, or
//!   `allow_unauthenticated: true`), everything is open.
//!
//! A refusal is a 401 with `WWW-Authenticate: Bearer` (RFC 6750) and the lb's JSON error
//! body, counted in `lb_admin_auth_failures_total{reason}` and logged at WARN, one line
//! per client and reason per `server.log_throttle` ([`crate::log_throttle`]): on an
//! internal listener a refusal is a misconfigured scraper or someone probing, both worth
//! an operator's look. The token itself is never logged. The token in use is the current
//! snapshot's, so a reload that changes it applies to the next request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use service_kit::request_id;

use crate::errors::{json_body, LbError};
use crate::reload::Reloader;

/// Why a request was refused (`lb_admin_auth_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header (or another scheme, or several headers).
    Missing,
    /// A bearer token that is not the one configured.
    Invalid,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 2] = [Refusal::Missing, Refusal::Invalid];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid => "invalid",
        }
    }

    /// The challenge: RFC 6750 §3 adds `error="invalid_token"` when a token was sent.
    fn challenge(self) -> &'static str {
        match self {
            Refusal::Missing => r#"Bearer realm="lb admin""#,
            Refusal::Invalid => r#"Bearer realm="lb admin", error="invalid_token""#,
        }
    }
}

/// Whether `path` needs the token (`metrics`: `server.admin_auth.metrics`). An open list,
/// not a guarded one: a route added to the admin app later, or a path no route serves, is
/// behind the token until it is named here.
fn guarded(path: &str, metrics: bool) -> bool {
    match path {
        "/ready" | "/health" | "/status.html" => false,
        "/metrics" => metrics,
        _ => true,
    }
}

/// The middleware: passes the request on, or answers 401.
pub(crate) async fn require(
    State(reloader): State<Arc<Reloader>>,
    req: Request,
    next: Next,
) -> Response {
    let verdict = {
        let snapshot = reloader.state.snapshot();
        match &snapshot.admin_token {
            Some(token) if guarded(req.uri().path(), snapshot.config.server.admin_auth.metrics) => {
                match bearer(req.headers()) {
                    Some(presented) if token.matches(presented) => Ok(()),
                    Some(_) => Err(Refusal::Invalid),
                    None => Err(Refusal::Missing),
                }
            }
            _ => Ok(()),
        }
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => refuse(&reloader, &req, refusal),
    }
}

/// The token of the one `Authorization: Bearer` header (the scheme is case-insensitive,
/// RFC 7235 §2.1); `None` when there is no such header, or more than one.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn refuse(reloader: &Reloader, req: &Request, refusal: Refusal) -> Response {
    reloader.state.metrics.admin_auth_failure(refusal);
    let id = request_id::keep_or_generate(req.headers());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "-".into());
    let site = "admin request refused: no valid bearer token";
    if crate::log_throttle::admit(
        site,
        format!("{peer} {}", refusal.label()),
        tracing::Level::WARN,
    ) {
        tracing::warn!(
            %peer, method = %req.method(), path = req.uri().path(), reason = refusal.label(),
            request_id = id.to_str().unwrap_or("-"), "{site}"
        );
    }
    let body = json_body(LbError::Unauthorized, &id);
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(refusal.challenge()),
            ),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (request_id::HEADER, id),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn takes_the_token_of_one_bearer_header() {
        let token = |values: &[&str]| bearer(&headers(values)).map(|t| t.to_vec());
        assert_eq!(token(&["Bearer abc"]), Some(b"abc".to_vec()));
        assert_eq!(token(&["bearer   abc "]), Some(b"abc".to_vec()));
        assert_eq!(token(&["BEARER abc"]), Some(b"abc".to_vec()));
        assert_eq!(token(&[]), None);
        assert_eq!(token(&["Basic YTpi"]), None);
        assert_eq!(token(&["Bearer"]), None);
        assert_eq!(token(&["Bearer  "]), None);
        assert_eq!(token(&["Bearerabc"]), None);
        assert_eq!(token(&["Bearer abc", "Bearer abc"]), None);
    }

    #[test]
    fn probes_stay_open_metrics_as_configured() {
        for open in ["/ready", "/health", "/status.html"] {
            assert!(!guarded(open, true), "{open}");
        }
        assert!(guarded("/status", false) && guarded("/reload", false));
        // Not listed as open: guarded, whether a route serves it or not.
        for other in ["/nope", "/status/", "//status", "/ready/", ""] {
            assert!(guarded(other, false), "{other}");
        }
        assert!(guarded("/metrics", true));
        assert!(!guarded("/metrics", false));
    }
}
