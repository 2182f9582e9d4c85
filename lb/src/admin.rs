//! The admin listener (`server.admin`, default `127.0.0.1:9901`): an axum app served by a
//! pingora background service, apart from the proxy listeners.
//!
//! - `GET /ready`: 200 once every pool finished its first discovery, 503 before that and
//!   while shutting down. `lb healthcheck` asks this.
//! - `GET /health`: 200 while the process runs (liveness).
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//! - `GET /status`: JSON state ([`crate::status`]); `GET /status.html` shows it live.
//! - `POST /reload`: reload the config file ([`crate::reload`]); 200 when applied, 422
//!   with the errors when rejected. `lb reload` calls it.
//!
//! Loopback by default. With `server.admin_auth` configured, `/status`, `/reload` and
//! (by default) `/metrics` need its bearer token ([`crate::admin_auth`]); without one,
//! `lb -t` refuses an admin address that is not loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::reload::Reloader;

pub(crate) fn app(reloader: Arc<Reloader>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/status.html", get(status_html))
        .route("/reload", post(reload))
        .layer(axum::middleware::from_fn_with_state(
            reloader.clone(),
            crate::admin_auth::require,
        ))
        .with_state(reloader)
}

async fn ready(State(reloader): State<Arc<Reloader>>) -> impl IntoResponse {
    let state = &reloader.state;
    let snapshot = state.snapshot();
    let upstreams: serde_json::Map<String, serde_json::Value> = snapshot
        .pools
        .iter()
        .map(|(name, pool)| (name.clone(), pool.is_ready().into()))
        .collect();
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({
        "ready": ready,
        "draining": state.is_draining(),
    });
    // With a token configured, the open probe says up or not and nothing more: the pools'
    // names are the config's, behind the token in /status.
    if snapshot.admin_token.is_none() {
        body["upstreams"] = upstreams.into();
    }
    (status, Json(body))
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(reloader): State<Arc<Reloader>>) -> impl IntoResponse {
    let state = &reloader.state;
    let snapshot = state.snapshot();
    let counts: Vec<(&str, usize, usize)> = snapshot
        .pools
        .iter()
        .map(|(name, pool)| {
            let members = pool.members();
            let healthy = members.iter().filter(|(_, ready)| *ready).count();
            (name.as_str(), healthy, members.len() - healthy)
        })
        .collect();
    state.metrics.set_backends(counts.into_iter());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn status(State(reloader): State<Arc<Reloader>>) -> impl IntoResponse {
    Json(crate::status::status(&reloader.state))
}

async fn status_html() -> impl IntoResponse {
    axum::response::Html(include_str!("status.html"))
}

async fn reload(State(reloader): State<Arc<Reloader>>) -> impl IntoResponse {
    let record = reloader.reload("admin").await;
    let status = if record.applied {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = serde_json::json!({
        "result": if record.applied { "applied" } else { "rejected" },
        "errors": record.errors,
        "changes": record.changes,
    });
    (status, Json(body))
}

/// Serves [`app`] on a listener bound before startup (so a taken port fails `lb` at once,
/// with a clear error, instead of inside a background task).
pub(crate) struct AdminService {
    addr: SocketAddr,
    listener: Mutex<Option<std::net::TcpListener>>,
    reloader: Arc<Reloader>,
}

impl AdminService {
    /// Bind `addr` now. During an upgrade (`-u`) the old process still holds the port, so
    /// a busy port is not an error then: the service keeps trying until the old one exits.
    pub(crate) fn bind(
        addr: SocketAddr,
        reloader: Arc<Reloader>,
        upgrading: bool,
    ) -> std::io::Result<Self> {
        let listener = match bind_std(addr) {
            Ok(l) => Some(l),
            Err(e) if upgrading && e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::info!(%addr, "admin port still held by the old process; will take it over when it exits");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            addr,
            listener: Mutex::new(listener),
            reloader,
        })
    }

    async fn listener(&self) -> std::io::Result<tokio::net::TcpListener> {
        let bound = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let std_listener = match bound {
            Some(l) => l,
            None => loop {
                match bind_std(self.addr) {
                    Ok(l) => break l,
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e),
                }
            },
        };
        tokio::net::TcpListener::from_std(std_listener)
    }
}

fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[async_trait]
impl BackgroundService for AdminService {
    /// Keeps answering through the shutdown grace period, with `/ready` saying 503.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let state = self.reloader.state.clone();
        tokio::spawn(async move {
            while shutdown.changed().await.is_ok() {
                if *shutdown.borrow() {
                    state.set_draining();
                    tracing::info!("shutting down: /ready now answers 503");
                    break;
                }
            }
        });
        let listener = match self.listener().await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(addr = %self.addr, error = %e, "admin listener unusable");
                return;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            self.reloader.state.set_admin_addr(addr);
            tracing::info!(%addr, "admin listening on {addr}");
        }
        // The peer address is for the log line of a refused request (`admin_auth`).
        let app = app(self.reloader.clone()).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    }
}
