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
//!
//! The token is checked only once a whole request has arrived, so the listener bounds what
//! a client can hold before that: [`HEADER_READ_TIMEOUT`] for each request head (an idle
//! keep-alive connection included), [`MAX_CONNECTION_AGE`] per connection, and at most
//! [`MAX_CONNECTIONS`] at once; the file descriptors are the proxy's too.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Semaphore;

use crate::reload::Reloader;

/// How long a client has to send a whole request head, from the moment its connection is
/// accepted or its previous response was written: a half-sent head and an idle keep-alive
/// connection are both closed after it. The admin clients (`lb healthcheck`, `lb reload`,
/// a Prometheus scrape, `/status.html` polling every second) send theirs at once.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Concurrent admin connections; one more is answered 503 and closed at accept time
/// (`lb_admin_connections_refused_total`). Far above what the admin clients use.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Places kept for loopback clients once the [`MAX_CONNECTIONS`] are taken: the container's
/// own `lb healthcheck` and `lb reload` connect from inside, so whoever fills the shared
/// places from the network cannot make the lb look unhealthy (and be restarted).
pub(crate) const LOOPBACK_RESERVE: usize = 8;

/// A connection's longest life: then it finishes the request in hand and closes, and
/// [`CLOSE_GRACE`] later it is closed anyway (a client that stops reading its answer).
pub(crate) const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The answer to a connection over [`MAX_CONNECTIONS`].
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
    content-length: 52\r\nconnection: close\r\n\r\n\
    {\"error\":\"too many admin connections\",\"status\":503}\n";

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
    // In its own task: hyper drops this handler when the client disconnects, and a reload
    // dropped half-way would be neither finished nor logged, counted or shown in /status.
    let record = match tokio::spawn(async move { reloader.reload("admin").await }).await {
        Ok(record) => record,
        Err(e) => {
            tracing::error!(error = %e, "admin reload task failed");
            let body = serde_json::json!({ "result": "failed", "errors": [e.to_string()] });
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body));
        }
    };
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
        serve(listener, app(self.reloader.clone()), &self.reloader).await;
    }
}

/// Accept and serve admin connections for the life of the process (through the shutdown
/// grace period, as `/ready` must answer 503 then), within the limits above.
async fn serve(listener: tokio::net::TcpListener, app: Router, reloader: &Reloader) {
    let places = Places {
        shared: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        loopback: Arc::new(Semaphore::new(LOOPBACK_RESERVE)),
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // A connection reset while it waited in the queue: the next one is fine.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                continue
            }
            Err(e) => {
                // Out of file descriptors: accepting again at once would fail the same way.
                tracing::warn!(error = %e, "admin accept failed; pausing the admin listener for 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(place) = places.take(peer.ip()) else {
            reloader.state.metrics.admin_connection_refused();
            tracing::debug!(%peer, "admin connection refused: {MAX_CONNECTIONS} already open");
            refuse(stream);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app).await;
            drop(place);
        });
    }
}

/// The admin listener's connection places: [`MAX_CONNECTIONS`] for anyone, then
/// [`LOOPBACK_RESERVE`] more for loopback clients only.
struct Places {
    shared: Arc<Semaphore>,
    loopback: Arc<Semaphore>,
}

impl Places {
    /// A place for a connection from `ip`, held until dropped; `None`: refuse it.
    fn take(&self, ip: std::net::IpAddr) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.shared.clone().try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) if ip.to_canonical().is_loopback() => {
                self.loopback.clone().try_acquire_owned().ok()
            }
            Err(_) => None,
        }
    }
}

/// One connection, HTTP/1.1, with the header-read timeout and the age limit.
async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, app: Router) {
    let app = TowerToHyperService::new(app);
    // The peer address is for the log line of a refused request (`admin_auth`).
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.call(req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = match tokio::time::timeout(MAX_CONNECTION_AGE, conn.as_mut()).await {
        Ok(result) => result,
        Err(_) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        // A client gone, a bad or slow request head: the client's doing, not the lb's.
        tracing::debug!(%peer, error = %e, "admin connection ended");
    }
}

/// Answer 503 and close without waiting: the answer fits in a new socket's send buffer,
/// and a client that does not read it gets the close alone.
fn refuse(stream: tokio::net::TcpStream) {
    if let Ok(stream) = stream.into_std() {
        let _ = (&stream).write(REFUSAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once the shared places are taken, only loopback clients get one, from their reserve.
    #[test]
    fn the_loopback_reserve_is_for_loopback_clients_only() {
        let places = Places {
            shared: Arc::new(Semaphore::new(2)),
            loopback: Arc::new(Semaphore::new(1)),
        };
        let remote: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let held: Vec<_> = (0..2)
            .map(|_| places.take(remote).expect("shared"))
            .collect();
        assert!(
            places.take(remote).is_none(),
            "a remote client past the shared places"
        );
        let reserved = places.take(mapped).expect("the loopback reserve");
        assert!(
            places.take("127.0.0.1".parse().expect("ip")).is_none(),
            "reserve used up"
        );
        drop(reserved);
        assert!(places.take("::1".parse().expect("ip")).is_some());
        drop(held);
        assert!(places.take(remote).is_some(), "shared places come back");
    }

    #[test]
    fn the_refusal_is_one_whole_http_answer() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut answer = httparse::Response::new(&mut headers);
        let head = match answer.parse(REFUSAL) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(answer.code, Some(503));
        let length = answer
            .headers
            .iter()
            .find(|h| h.name == "content-length")
            .map(|h| std::str::from_utf8(h.value).expect("ascii"));
        assert_eq!(length, Some((REFUSAL.len() - head).to_string().as_str()));
        let body: serde_json::Value = serde_json::from_slice(&REFUSAL[head..]).expect("JSON");
        assert_eq!(body["status"], 503);
    }
}
