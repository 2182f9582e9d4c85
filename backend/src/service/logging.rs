//! Logs: human-readable text by default, one JSON object per line with `json`.
//! `RUST_LOG` refines the filter (default `info`).
//!
//! Every request produces exactly one line, at INFO, once the response head is
//! ready: request id, method, path, status and latency in milliseconds.

use std::{io::IsTerminal, time::Duration};

use axum::{body::Body, extract::Request, response::Response, Router};
use tower_http::{request_id::RequestId, trace::TraceLayer};
use tracing::Span;
use tracing_subscriber::EnvFilter;

/// The `--log-format` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Adds the per-request log line to `router`. Apply it inside
/// [`request_id::layer`](super::request_id::layer) so the id is known.
pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(request_span as fn(&Request) -> Span)
            .on_request(())
            .on_response(log_response as fn(&Response<Body>, Duration, &Span))
            // A 5xx is already in the response line; a second "failure" line would
            // break "one line per request".
            .on_failure(()),
    )
}

fn request_span(request: &Request) -> Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

fn log_response(response: &Response<Body>, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_micros() as f64 / 1000.0,
        "served"
    );
}
