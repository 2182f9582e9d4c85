//! What every axum service runs its router in: the outer layers they share, and the
//! HTTP/1.1 server loop (hyper's, with a timer) that [`crate::shutdown::serve`] drives.
//!
//! The loop is hyper's connection builder rather than `axum::serve`, which gives hyper
//! no timer, so that:
//!
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`] of when the connection
//!   starts waiting for it (accept, or the end of the previous response); otherwise the
//!   connection is closed. That also bounds an idle keep-alive connection: hyper times
//!   the wait for the next head with the same timer. 30 s is what the lb's
//!   `timeouts.idle` (15 s by default) is documented to stay under, so the lb drops a
//!   pooled connection before we do, never while it reuses it;
//! - a failed accept that is not the peer's doing (EMFILE, ENFILE, ENOBUFS…) pauses the
//!   loop for 100 ms rather than spinning, and is logged at WARN, at most once per 10 s
//!   with the count since (`axum::serve` logs each at ERROR and pauses a second);
//! - stopping works as with `axum::serve`'s graceful shutdown: the listener is closed,
//!   idle connections are closed, in-flight requests finish (their responses carry
//!   `Connection: close`), and the loop returns once every connection has ended.

use std::{future::Future, io, time::Duration};

use axum::{body::Body, extract::Request, Router};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch, time::Instant};
use tower::ServiceExt;

use crate::{logging, request_id, shutdown::Draining};

/// How long a connection may take to send a request head, counted from when it starts
/// waiting for one; so also how long a keep-alive connection may sit idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the loop waits after a failed accept before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// At most one WARN line per this long while accepts keep failing.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The layers every service puts around its router, outermost first: request id,
/// request log, `Connection: close` while draining.
pub fn layers(router: Router, draining: &Draining) -> Router {
    request_id::layer(logging::layer(draining.layer(router)))
}

/// Serves `router` on `listener` until `stop` resolves, then stops as the module doc
/// says and returns once every connection has ended.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // Sent once, at stop; every connection watches it.
    let (stopping, stop_watch) = watch::channel(());
    // Every connection holds a receiver: `closed()` resolves when the last one ends.
    let (all_ended, open) = watch::channel(());
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            // The peer gave up before we took the connection: nothing is wrong here.
            Err(error) if is_peer_error(&error) => continue,
            Err(error) => {
                accept_errors.failed(&error);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    () = &mut stop => break,
                }
            }
        };
        // Small responses should leave at once, not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(tcp), service(router.clone()));
        let (mut stop_watch, open) = (stop_watch.clone(), open.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                // Also when the loop is gone (`changed` fails then): it is stopping too.
                _ = stop_watch.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(open);
        });
    }
    // No new connections from here on.
    drop(listener);
    let _ = stopping.send(());
    drop(open);
    all_ended.closed().await;
    Ok(())
}

/// The router as a hyper service.
fn service(
    router: Router,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        router.clone().oneshot(request.map(Body::new))
    })
}

/// Accept failures that concern one connection only, as hyper and axum count them.
fn is_peer_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The WARN lines for accept failures: the first, then at most one per
/// [`ACCEPT_ERROR_LOG_EVERY`] with how many failed in between.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < ACCEPT_ERROR_LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            %error,
            failed_since_last_line = self.unlogged,
            pause = ?ACCEPT_ERROR_PAUSE,
            "accepting a connection failed (out of file descriptors?); pausing before the next accept"
        );
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::{future::pending, net::SocketAddr, sync::Arc};

    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::{oneshot, Notify},
        task::JoinHandle,
    };

    use super::*;

    /// Longer than any of these tests should take: the bound, not the expectation.
    const GENEROUS: Duration = Duration::from_secs(20);

    /// A server with `/` and `/slow` (which notifies `in_slow` on entry, then takes
    /// 300 ms).
    async fn start(
        header_read_timeout: Duration,
        stop: impl Future<Output = ()> + Send + 'static,
        in_slow: Arc<Notify>,
    ) -> (SocketAddr, JoinHandle<io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slow = || async move {
            in_slow.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            "slow"
        };
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/slow", get(slow));
        let server = tokio::spawn(run(listener, router, header_read_timeout, stop));
        (addr, server)
    }

    /// Reads until the server closes the connection (an error counts: a reset is a
    /// close too); `None` if it is still open after [`GENEROUS`].
    async fn until_closed(client: &mut TcpStream) -> Option<Vec<u8>> {
        let mut seen = Vec::new();
        let read = tokio::time::timeout(GENEROUS, async {
            let mut buffer = [0; 1024];
            loop {
                match client.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buffer[..n]),
                }
            }
        });
        read.await.ok().map(|()| seen)
    }

    /// Reads one whole `ok` response.
    async fn one_response(client: &mut TcpStream) -> String {
        let mut seen = Vec::new();
        let mut buffer = [0; 1024];
        while !seen.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(GENEROUS, client.read(&mut buffer))
                .await
                .expect("a response")
                .unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8(seen).unwrap()
    }

    #[tokio::test]
    async fn a_half_sent_head_is_closed_after_the_header_read_timeout() {
        let timeout = Duration::from_millis(300);
        let (addr, _server) = start(timeout, pending(), Arc::default()).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        let seen = until_closed(&mut client).await;
        assert!(seen.is_some(), "still open after {GENEROUS:?}");
        assert!(started.elapsed() >= timeout, "closed before the timeout");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
        let timeout = Duration::from_millis(300);
        let (addr, _server) = start(timeout, pending(), Arc::default()).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = one_response(&mut client).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let idle_since = Instant::now();
        assert_eq!(until_closed(&mut client).await, Some(vec![]));
        assert!(idle_since.elapsed() >= timeout, "closed before the timeout");
    }

    #[tokio::test]
    async fn stopping_closes_idle_connections_and_finishes_requests_in_flight() {
        let (trigger, stop) = oneshot::channel::<()>();
        let in_slow = Arc::new(Notify::new());
        let stop = async {
            let _ = stop.await;
        };
        let (addr, server) = start(HEADER_READ_TIMEOUT, stop, in_slow.clone()).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        one_response(&mut idle).await;
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(GENEROUS, in_slow.notified())
            .await
            .expect("the slow request reaches its handler");
        trigger.send(()).unwrap();
        assert_eq!(until_closed(&mut idle).await, Some(vec![]));
        let answer = String::from_utf8(until_closed(&mut busy).await.unwrap()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"),
            "{answer}"
        );
        tokio::time::timeout(GENEROUS, server)
            .await
            .expect("run returns once every connection has ended")
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_are_logged_once_per_period_with_a_count() {
        let mut errors = AcceptErrors::default();
        let emfile = io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        errors.failed(&emfile);
        assert!(errors.last_logged.is_some() && errors.unlogged == 0);
        for _ in 0..5 {
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            errors.failed(&emfile);
        }
        assert_eq!(errors.unlogged, 5, "held back within the period");
        tokio::time::sleep(ACCEPT_ERROR_LOG_EVERY).await;
        errors.failed(&emfile);
        assert_eq!(
            errors.unlogged, 0,
            "logged again, with the count, after the period"
        );
    }

    #[test]
    fn only_peer_errors_are_ignored() {
        assert!(is_peer_error(&io::ErrorKind::ConnectionAborted.into()));
        let emfile = io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        assert!(!is_peer_error(&emfile));
    }
}
