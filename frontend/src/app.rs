//! The router with its layers, and the server loop around it.

use std::{future::Future, io};

use axum::{http::StatusCode, middleware, Router};
use service_kit::{logging, probes, request_id, shutdown};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::{file_headers, security_headers, site_service::SiteService, state::AppState};

/// The site: `/health`, `/ready`, and the files under the root, with the custom
/// `404.html` (status 404) for anything missing. Layers, outermost first: request id,
/// request log, `Connection: close` while draining, security headers, timeout (503).
///
/// Files come from memory ([`crate::site_service`]: the path guard, content coding,
/// validators, ranges and caching headers are all decided there, on values computed at
/// load); only files over the memory limit go through ServeDir and the header
/// middlewares. The probes get their caching headers from `file_headers::describe`.
pub fn app(state: AppState) -> Router {
    let site = SiteService::new(state.site.clone(), &state.root);
    let router = probes::router(state.draining.clone())
        // Before the fallback: the layer wraps the probes only.
        .layer(middleware::from_fn(file_headers::describe))
        .fallback_service(site)
        // Each `.layer` call wraps everything above it: the last one runs first.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.request_timeout,
        ));
    let router = security_headers::apply(router, &state.connect_src);
    let router = state.draining.layer(router);
    request_id::layer(logging::layer(router))
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then drains and stops as
/// `--help` describes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (draining, plan) = (state.draining.clone(), state.shutdown_plan);
    shutdown::serve(listener, app(state), draining, plan, shutdown).await
}
