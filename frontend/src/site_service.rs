//! The one service behind the router: the probes, the files, the security headers and
//! the request timeout, in a single tower service rather than a stack of router layers.
//!
//! Why not layers: axum boxes each `Router::layer` level and clones the whole stack
//! below it on every request (an allocation and reference-count traffic per level), and
//! tower-http's timeout registers a timer per request. A file held in memory is
//! answered synchronously, so here it costs one `Arc` clone, the answer itself and the
//! security headers: no timer (it cannot be slow), no boxed future. Only the probes and
//! files served from disk, which do wait, go through a boxed future under the timeout.

use std::{
    convert::Infallible,
    future::{ready, Future, Ready},
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, extract::Request, middleware, response::Response, Router};
use http::StatusCode;
use service_kit::probes;
use tower::{Service, ServiceExt};

use crate::{
    file_headers,
    file_response::{self, Answer},
    security_headers::SecurityHeaders,
    site_cache::Site,
    state::AppState,
};

/// The router's fallback: everything but the service-kit layers around it.
#[derive(Clone)]
pub(crate) struct SiteService(Arc<Inner>);

struct Inner {
    site: Site,
    /// `/health` and `/ready` (`no-store` from service-kit), with the charset the
    /// site gives JSON.
    probes: Router,
    /// ServeDir, for files over the memory limit.
    disk: Router,
    /// The site root, where those are.
    root: PathBuf,
    security: SecurityHeaders,
    /// Longest a request may take; 503 after.
    timeout: Duration,
}

impl SiteService {
    pub(crate) fn new(state: &AppState) -> Self {
        let probes = probes::router(state.draining.clone())
            .layer(middleware::from_fn(file_headers::describe));
        Self(Arc::new(Inner {
            site: state.site.clone(),
            probes,
            disk: file_response::disk_files(&state.root),
            root: state.root.clone(),
            security: SecurityHeaders::new(&state.connect_src),
            timeout: state.request_timeout,
        }))
    }
}

impl Service<Request> for SiteService {
    type Response = Response;
    type Error = Infallible;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Reply {
        let inner = &self.0;
        if matches!(request.uri().path(), "/health" | "/ready") {
            let probes = inner.probes.clone();
            return Reply::Waiting(waiting(inner.clone(), probes, ready(request)));
        }
        let answer = file_response::answer(&inner.site.current(), &request);
        match answer {
            Answer::Ready(mut response) => {
                inner.security.apply(response.headers_mut());
                Reply::Ready(ready(Ok(response)))
            }
            // A file over the memory limit.
            Answer::Disk(file) => {
                let shared = inner.clone();
                let request =
                    async move { file_response::for_disk(request, &shared.root, &file).await };
                Reply::Waiting(waiting(inner.clone(), inner.disk.clone(), request))
            }
        }
    }
}

/// `router`'s answer to `request` (which may have to be prepared first), or an empty
/// 503 when both take longer than the timeout; with the security headers either way.
fn waiting(
    inner: Arc<Inner>,
    router: Router,
    request: impl Future<Output = Request> + Send + 'static,
) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> {
    Box::pin(async move {
        let answer = async move { router.oneshot(request.await).await };
        let mut response = match tokio::time::timeout(inner.timeout, answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_elapsed) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
        };
        inner.security.apply(response.headers_mut());
        Ok(response)
    })
}

/// The response future: ready at once from memory, or the probes' or ServeDir's work.
pub(crate) enum Reply {
    Ready(Ready<Result<Response, Infallible>>),
    Waiting(Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>),
}

impl Future for Reply {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Reply::Ready(reply) => Pin::new(reply).poll(cx),
            Reply::Waiting(reply) => reply.as_mut().poll(cx),
        }
    }
}
