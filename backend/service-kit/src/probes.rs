//! `/health` and `/ready`, identical in every service.

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use http::{header, HeaderValue};
use tower_http::set_header::SetResponseHeaderLayer;

use super::shutdown::Draining;

/// `GET /health`: 200 while the process is alive, draining or not.
/// `GET /ready`: 200 while accepting work, 503 once draining.
/// Bodies are small JSON objects: `{"status":"ok"|"ready"|"draining"}`.
/// Every answer (405s included) carries `Cache-Control: no-store`: a cached probe
/// answer would hide a drain.
pub fn router(draining: Draining) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(draining)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];

async fn health() -> impl IntoResponse {
    (JSON, r#"{"status":"ok"}"#)
}

async fn ready(State(draining): State<Draining>) -> impl IntoResponse {
    if draining.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            JSON,
            r#"{"status":"draining"}"#,
        )
    } else {
        (StatusCode::OK, JSON, r#"{"status":"ready"}"#)
    }
}
