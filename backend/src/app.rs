//! The router with its layers, and the server loop around it.

use std::{future::Future, io};

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};
use http::{header, HeaderValue, StatusCode};
use tokio::net::TcpListener;
use tower_http::{
    limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer, timeout::TimeoutLayer,
};

use service_kit::{probes, server, shutdown};

use crate::{errors, fault, routes, state::AppState};

/// The whole API. Layers, outermost first: request id, request log,
/// `Connection: close` while draining, `nosniff`, CORS, JSON error bodies, timeout
/// (503), body limit (413), and only with `--fault-status` the test-only fault.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/hello", get(routes::hello))
        .route("/api/whoami", get(routes::whoami))
        .route("/api/slow", get(routes::slow))
        .route_layer(middleware::from_fn_with_state(state.clone(), count_request));
    let router = Router::new()
        .merge(api)
        .fallback(routes::not_found)
        .with_state(state.clone())
        .merge(probes::router(state.draining.clone()));
    let router = fault::layer(router, state.fault_status)
        // Each `.layer` call wraps everything above it: the last one runs first.
        .layer(RequestBodyLimitLayer::new(state.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.request_timeout,
        ))
        .layer(middleware::map_response(errors::json_errors));
    let router = state
        .cors_origins
        .apply(router)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    server::layers(router, &state.draining)
}

/// `requests_served` counts API calls, not the health probes around them.
async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state.count_request();
    next.run(request).await
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then drains and stops as
/// `--help` describes (see [`shutdown`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (draining, plan) = (state.draining.clone(), state.shutdown_plan);
    shutdown::serve(listener, app(state), draining, plan, shutdown).await
}
