//! Graceful shutdown, in three steps:
//!
//! 1. a signal (SIGTERM or SIGINT) flips [`Draining`]: `/ready` answers 503 at once, and
//!    every response carries `Connection: close` so pooled client connections move away;
//! 2. the server keeps serving for the drain window, so load balancers notice;
//! 3. it stops accepting, closes idle keep-alive connections, lets in-flight requests
//!    finish within the shutdown timeout, and returns.
//!
//! The trigger is any future, so tests drive shutdown without signals.

use std::{
    future::Future,
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    Router,
};
use http::{header, HeaderValue};
use tokio::{net::TcpListener, signal::unix, sync::oneshot};

use crate::server;

/// Shared "we are going away" flag. Cheap to clone; starts false.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts the drain. Idempotent.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Adds `Connection: close` to every response of `router` once draining.
    pub fn layer<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(middleware::from_fn_with_state(
            self.clone(),
            close_while_draining,
        ))
    }
}

async fn close_while_draining(
    State(draining): State<Draining>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if draining.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// How long each shutdown step may take.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Step 2: how long to keep serving after the signal.
    pub drain: Duration,
    /// Step 3: how long in-flight requests get once accepting has stopped.
    pub timeout: Duration,
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed now, so a signal
/// that arrives before the future is polled is not lost.
pub fn signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = unix::signal(unix::SignalKind::terminate())?;
    let mut int = unix::signal(unix::SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

/// Serves `router` on `listener` until `shutdown` resolves, then runs the three steps
/// of the module doc. Returns `Ok` also when the timeout cuts in-flight requests short
/// (that is logged as a warning).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    draining: Draining,
    plan: Plan,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let stop_accepting = async move {
        shutdown.await;
        draining.start();
        tracing::info!(drain = ?plan.drain, "draining: /ready is 503, still serving");
        tokio::time::sleep(plan.drain).await;
        tracing::info!(timeout = ?plan.timeout, "drain over: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(());
    };
    // Stops accepting and closes idle connections once `stop_accepting` resolves, then
    // returns when the last in-flight request is answered; header-read and idle
    // timeouts throughout (see `server`).
    let server = server::run(
        listener,
        router,
        server::HEADER_READ_TIMEOUT,
        stop_accepting,
    );
    let deadline = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(plan.timeout).await,
            // The server ended on its own; let its result win.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("shutdown timeout elapsed; abandoning requests still in flight");
            Ok(())
        }
    }
}
