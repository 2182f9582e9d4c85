//! The router with its layers, and the server loop around it.

use std::{future::Future, io};

use axum::Router;
use service_kit::{server, shutdown};
use tokio::net::TcpListener;

use crate::{site_service::SiteService, state::AppState};

/// The site: `/health`, `/ready`, and the files under the root, with the custom
/// `404.html` (status 404) for anything missing. Layers, outermost first: request id,
/// request log, `Connection: close` while draining; then one service
/// ([`crate::site_service`]) sets the security headers, bounds the time of requests that
/// wait (503) and answers: files from memory (`file_response`: the path guard, content
/// coding, validators, ranges and caching headers, on values computed at load), the
/// probes, and files over the memory limit through ServeDir.
pub fn app(state: AppState) -> Router {
    let router = Router::new().fallback_service(SiteService::new(&state));
    server::layers(router, &state.draining)
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
