//! Stub upstream: a tiny hyper server that answers with its own id.
//!
//! - `GET /ready`, `/health`: 200, or 503 after `set_ready(false)`.
//! - `GET /slow?ms=N`: waits N ms, then answers like any other path.
//! - `GET /bytes?n=N`: N bytes of a repeating `0..=250` pattern (octet-stream).
//! - `GET /chunked?n=N`: N lines `chunk i` sent as N frames with no length, so chunked.
//! - anything else: JSON `{id, path, host, xff, xfh, xfp, request_id}`.
//!
//! `stop()` closes the listener *and* every open connection (like a killed process);
//! `start_again()` listens on the same address. `set_dropping(true)` makes it read each
//! (non-probe) request and then close the connection without answering; `set_truncating(true)`
//! makes it send a 200 head and half a body, then cut the connection.
//! `set_stalled(true)` makes it read each (non-probe) request and never answer, keeping the
//! connection open (a hung or blackholed backend whose health probe still passes).
//! `set_status(code)` answers every non-probe request with that status (and the usual
//! JSON), while probes keep passing (a replica that fails requests but not `/ready`);
//! `0` goes back to normal answers.
//! `set_idle_close(ms)` closes a kept-alive connection that sends no request for that long
//! (hyper's header-read timeout). `accepted()` / `open()` count TCP connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) struct Stub {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

/// State the connection tasks share with the test.
#[derive(Default)]
struct Shared {
    id: String,
    not_ready: AtomicBool,
    dropping: AtomicBool,
    truncating: AtomicBool,
    stalled: AtomicBool,
    /// Requests (other than probes) received / currently being answered.
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    /// TCP connections accepted / still open.
    accepted: AtomicUsize,
    open: AtomicUsize,
    /// Status of every non-probe answer; 0: the usual one.
    status: std::sync::atomic::AtomicU16,
    /// 0: keep idle connections open.
    idle_close_ms: std::sync::atomic::AtomicU64,
}

impl Stub {
    /// Listen on `addr` (port 0 picks one) right away.
    pub(crate) async fn start(id: &str, addr: &str) -> Stub {
        let mut stub = Stub::new(id, addr.parse().expect("addr"));
        stub.listen().await;
        stub
    }

    /// Not listening yet (for "slow to start" backends); call `start_again`.
    pub(crate) fn new(id: &str, addr: SocketAddr) -> Stub {
        Stub {
            id: id.to_string(),
            addr,
            shared: Arc::new(Shared {
                id: id.to_string(),
                ..Shared::default()
            }),
            task: None,
        }
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.shared.not_ready.store(!ready, Ordering::SeqCst);
    }

    pub(crate) fn set_dropping(&self, dropping: bool) {
        self.shared.dropping.store(dropping, Ordering::SeqCst);
    }

    pub(crate) fn set_truncating(&self, truncating: bool) {
        self.shared.truncating.store(truncating, Ordering::SeqCst);
    }

    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    pub(crate) fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    pub(crate) fn set_idle_close(&self, ms: u64) {
        self.shared.idle_close_ms.store(ms, Ordering::SeqCst);
    }

    /// TCP connections accepted so far (health checks included, if any).
    pub(crate) fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// TCP connections open right now.
    pub(crate) fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Non-probe requests received so far.
    pub(crate) fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Non-probe requests being answered right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub(crate) async fn start_again(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("stub bind");
        self.addr = listener.local_addr().expect("addr");
        let shared = self.shared.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task drops them all.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        shared.accepted.fetch_add(1, Ordering::SeqCst);
                        shared.open.fetch_add(1, Ordering::SeqCst);
                        let _open = OpenGuard(shared.clone());
                        conns.spawn(async move {
                            let _open = _open;
                            let mut builder = http1::Builder::new();
                            let idle_ms = shared.idle_close_ms.load(Ordering::SeqCst);
                            if idle_ms > 0 {
                                builder
                                    .timer(hyper_util::rt::TokioTimer::new())
                                    .header_read_timeout(Duration::from_millis(idle_ms));
                            }
                            let svc = service_fn(move |req| answer(req, shared.clone()));
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }));
    }
}

/// Counts a connection as closed when its task ends (or is aborted).
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Dropping a request: hyper closes the connection when the service fails.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

type Body = http_body_util::combinators::BoxBody<Bytes, Dropped>;

fn full(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `N` from a `?n=N` query (0 without one).
fn query_n(req: &Request<Incoming>) -> usize {
    req.uri()
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `n` data frames of unknown total length: hyper sends them chunked.
struct Chunks {
    next: usize,
    n: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Dropped;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Dropped>>> {
        if self.next == self.n {
            return std::task::Poll::Ready(None);
        }
        let line = format!("chunk {}\n", self.next);
        self.next += 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(line)))))
    }
}

/// The body `/chunked?n=N` sends.
pub(crate) fn chunked_body(n: usize) -> String {
    (0..n).map(|i| format!("chunk {i}\n")).collect()
}

/// One data frame, a pause (so hyper flushes the head and that frame), then an error:
/// hyper aborts the connection mid-body.
struct HalfBody {
    sent: bool,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl HalfBody {
    fn new() -> Self {
        Self {
            sent: false,
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        }
    }
}

impl hyper::body::Body for HalfBody {
    type Data = Bytes;
    type Error = Dropped;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Dropped>>> {
        use std::task::Poll;
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                b"{\"id\":\"half",
            )))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Dropped))),
            Poll::Pending => Poll::Pending,
        }
    }
}

async fn answer(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_string();
    if path == "/ready" || path == "/health" {
        let ok = !shared.not_ready.load(Ordering::SeqCst);
        let mut resp = Response::new(full(if ok { "ok" } else { "draining" }));
        *resp.status_mut() = if ok {
            hyper::StatusCode::OK
        } else {
            hyper::StatusCode::SERVICE_UNAVAILABLE
        };
        return Ok(resp);
    }
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if shared.dropping.load(Ordering::SeqCst) {
        return Err(Dropped);
    }
    if shared.stalled.load(Ordering::SeqCst) {
        // Until the lb gives up and closes the connection (hyper then drops this future).
        std::future::pending::<()>().await;
    }
    if shared.truncating.load(Ordering::SeqCst) {
        use http_body_util::BodyExt;
        return Ok(Response::new(HalfBody::new().boxed()));
    }
    if path == "/chunked" {
        use http_body_util::BodyExt;
        let n = query_n(&req);
        return Ok(Response::new(Chunks { next: 0, n }.boxed()));
    }
    if path == "/bytes" {
        let n = query_n(&req);
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut resp = Response::new(full(body));
        resp.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    }
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    if path == "/slow" {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let h = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = serde_json::json!({
        "id": shared.id,
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "host": h("host"),
        "xff": h("x-forwarded-for"),
        "xfh": h("x-forwarded-host"),
        "xfp": h("x-forwarded-proto"),
        "request_id": h("x-request-id"),
        "connection": h("connection"),
        "x_secret": h("x-secret"),
        // every header as received, for the header-contract tests
        "headers": req.headers().keys().map(|k| (k.as_str().to_string(), h(k.as_str()).into())).collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut resp = Response::new(full(body.to_string()));
    let status = shared.status.load(Ordering::SeqCst);
    if let Ok(status) = hyper::StatusCode::from_u16(status) {
        *resp.status_mut() = status;
    }
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if path == "/hop" {
        // hop-by-hop response headers the lb must not pass on
        headers.insert(
            "keep-alive",
            hyper::header::HeaderValue::from_static("timeout=5"),
        );
        headers.insert(
            "proxy-connection",
            hyper::header::HeaderValue::from_static("keep-alive"),
        );
    }
    Ok(resp)
}
