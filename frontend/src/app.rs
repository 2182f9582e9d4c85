//! The router with its layers, and the server loop around it.

use std::{future::Future, io};

use axum::{http::StatusCode, middleware, Router};
use service_kit::{logging, probes, request_id, shutdown};
use tokio::net::TcpListener;
use tower_http::{services::ServeDir, timeout::TimeoutLayer};

use crate::{etag, file_headers, not_found, path_guard, security_headers, state::AppState};

/// The site: `/health`, `/ready`, and the files under the root, with the custom
/// `404.html` (status 404) for anything missing. Layers, outermost first: request id,
/// request log, `Connection: close` while draining, security headers, timeout (503),
/// path guard (400), caching headers, ETag/304.
///
/// Files: ServeDir gives Content-Type, Last-Modified/If-Modified-Since, HEAD, single
/// Range requests, 405 with `Allow` for other methods, and the `.gz`/`.br` twin of a
/// file when the client accepts that coding.
pub fn app(state: AppState) -> Router {
    let files = ServeDir::new(&state.root)
        .precompressed_br()
        .precompressed_gzip()
        .not_found_service(not_found::page(&state.root));
    let router = probes::router(state.draining.clone())
        .fallback_service(files)
        // Each `.layer` call wraps everything above it: the last one runs first.
        .layer(middleware::from_fn(etag::conditional))
        .layer(middleware::from_fn(file_headers::describe))
        .layer(middleware::from_fn(path_guard::refuse_traversal))
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
