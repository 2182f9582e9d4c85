//! The handlers. Each answers one path; none can panic or leak internals.

use std::time::Duration;

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;
use serde_json::json;
use tower_http::request_id::RequestId;

use crate::{errors::error, state::AppState};

/// Upper bound for `/api/slow`; larger values are clamped, not refused. A second under
/// the default `--request-timeout` (10 s): at 10 s the sleep and the timeout would end
/// together and the answer be 200 or 503 by timer rounding.
pub const MAX_SLOW_MS: u64 = 9_000;

/// `GET /api/hello`: the original contract, byte for byte.
pub async fn hello() -> &'static str {
    "Hello, World!"
}

/// `GET /api/whoami`: which replica answered, so round robin is visible. Also the
/// request id this replica saw, so a proxy's id propagation can be checked end to end.
pub async fn whoami(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
) -> Response {
    let request_id =
        request_id.and_then(|Extension(id)| id.header_value().to_str().ok().map(String::from));
    Json(json!({
        "replica": state.replica,
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": state.started_at,
        "requests_served": state.requests_served(),
        "request_id": request_id,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct SlowQuery {
    #[serde(default = "default_slow_ms")]
    ms: u64,
}

fn default_slow_ms() -> u64 {
    1_000
}

/// `GET /api/slow?ms=N` (default 1000, at most [`MAX_SLOW_MS`]): answers after N ms.
/// A slow in-flight request for drain, timeout and load-balancer tests.
pub async fn slow(
    State(state): State<AppState>,
    query: Result<Query<SlowQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(SlowQuery { ms })) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "ms must be a whole number of milliseconds",
        );
    };
    let ms = ms.min(MAX_SLOW_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "replica": state.replica, "slept_ms": ms })).into_response()
}

/// Any other path.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}
