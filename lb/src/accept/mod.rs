//! The proxy's listeners: accept each client connection on the thread that will serve it.
//!
//! # Why not pingora's listener
//! Pingora 0.9's listening service accepts on one task and spawns every accepted connection
//! onto a randomly chosen thread (`pingora_runtime::current_handle`). With one
//! single-threaded runtime per thread (`work_stealing: false`, the default), about half of
//! the new connections wake a second thread, and a connection per request then cost 2.5
//! context switches and 17 syscalls per request against nginx's 1.0 and 12.2
//! (`benches/profile.py --scenario api-newconn`).
//!
//! # What runs instead (`server.per_thread_accept`, default `true`)
//! Every thread of the proxy's runtime runs its own accept loop on its own listening socket
//! per address, all bound with `SO_REUSEPORT`: the kernel spreads new connections over the
//! sockets, as nginx's `reuseport` does, and each connection is served by the thread that
//! accepted it ([`threads`], [`sockets`]). With `per_thread_accept: false` there is one
//! socket per address and one accept loop, each connection going to a random thread, as in
//! pingora. With `work_stealing: true` the loops still each own a socket, and tokio moves
//! tasks between threads as it sees fit.
//!
//! Around the loop, what pingora's listener did is done here, once per connection
//! ([`connection`]): `server.connection_limits` is asked before anything else, `TCP_NODELAY`
//! is set, the peer address is recorded for the request path, a TLS listener's handshake
//! runs within [`connection::HANDSHAKE_MAX`], and the proxy app then serves the connection.
//!
//! # Binary upgrade
//! Every listening socket is kept in pingora's fd table under [`sockets::key`], so `lb -u`
//! hands all of them to the new process, which takes them over without a moment when the
//! port is closed. Pingora closes inherited sockets no service claims (a per-thread socket
//! left over when `threads` shrank would otherwise hold connections no one accepts).

mod connection;
mod sockets;
mod threads;

pub(crate) use connection::HANDSHAKE_MAX;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;

use crate::connection_limits::AcceptFilter;

/// How long an accept loop rests after `EMFILE`/`ENFILE` (out of file descriptors), as
/// pingora does: `accept` would fail again at once and spin.
const REST_AFTER_FD_EXHAUSTION: Duration = Duration::from_secs(1);

static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);
static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// TLS handshakes that failed or timed out since the start (`lb_tls_handshake_failures_total`).
pub(crate) fn handshake_failures() -> u64 {
    HANDSHAKE_FAILURES.load(Ordering::Relaxed)
}

/// `accept` calls that failed since the start (`lb_accept_errors_total`).
pub(crate) fn accept_errors() -> u64 {
    ACCEPT_ERRORS.load(Ordering::Relaxed)
}

/// One configured listening address; `tls`: a TLS listener's handshake.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<Arc<Acceptor>>,
}

/// The proxy's listeners as a pingora service (it runs on the proxy's runtime and threads).
pub(crate) struct AcceptService<A> {
    name: String,
    app: Option<Arc<A>>,
    filter: Arc<AcceptFilter>,
    endpoints: Vec<Endpoint>,
    /// The runtime's threads (`server.threads`).
    threads: usize,
    per_thread: bool,
    work_stealing: bool,
}

impl<A> AcceptService<A> {
    /// `app` serves each admitted connection; `filter` admits it. `per_thread`: one socket
    /// and accept loop per thread and address (else one per address).
    pub(crate) fn new(
        name: &str,
        app: A,
        filter: AcceptFilter,
        endpoints: Vec<Endpoint>,
        threads: usize,
        per_thread: bool,
        work_stealing: bool,
    ) -> Self {
        Self {
            name: name.to_string(),
            app: Some(Arc::new(app)),
            filter: Arc::new(filter),
            endpoints,
            threads,
            per_thread,
            work_stealing,
        }
    }

    /// Sockets per address.
    fn sockets_per_address(&self) -> usize {
        if self.per_thread {
            self.threads.max(1)
        } else {
            1
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for AcceptService<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            tracing::error!(service = %self.name, "started twice; the second start does nothing");
            return;
        };
        let handles = if self.per_thread {
            threads::each_thread(self.threads, self.work_stealing).await
        } else {
            vec![tokio::runtime::Handle::current()]
        };
        let mut loops = Vec::new();
        for endpoint in &self.endpoints {
            let sockets = match sockets::bind(
                endpoint.addr,
                self.sockets_per_address(),
                fds.as_ref(),
            )
            .await
            {
                Ok(sockets) => sockets,
                Err(e) => {
                    // Nothing is in flight yet; a proxy that cannot listen must not
                    // look healthy.
                    tracing::error!(address = %endpoint.addr, "cannot listen: {e:#}");
                    eprintln!("lb: cannot listen on {}: {e:#}", endpoint.addr);
                    std::process::exit(1);
                }
            };
            for (socket, handle) in sockets.into_iter().zip(handles.iter().cycle()) {
                let accept = Loop {
                    app: app.clone(),
                    filter: self.filter.clone(),
                    tls: endpoint.tls.clone(),
                    shutdown: shutdown.clone(),
                    local: self.per_thread,
                };
                loops.push(handle.spawn(accept.run(socket)));
            }
        }
        for accept in loops {
            let _ = accept.await; // each returns when the server stops
        }
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Every key this service takes from the fd table, so pingora closes the others.
    fn listen_addresses(&self) -> Option<Vec<String>> {
        let per = self.sockets_per_address();
        Some(
            self.endpoints
                .iter()
                .flat_map(|e| (0..per).map(move |i| sockets::key(e.addr, i)))
                .collect(),
        )
    }
}

/// One accept loop: one listening socket, on one thread.
struct Loop<A> {
    app: Arc<A>,
    filter: Arc<AcceptFilter>,
    tls: Option<Arc<Acceptor>>,
    shutdown: ShutdownWatch,
    /// Serve each connection on this thread (else on a random one).
    local: bool,
}

impl<A: ServerApp + Send + Sync + 'static> Loop<A> {
    /// Accept until the server stops; the socket closes when this returns.
    async fn run(mut self, socket: std::net::TcpListener) {
        let listener = match tokio::net::TcpListener::from_std(socket) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!("cannot register a listening socket: {e}");
                return;
            }
        };
        loop {
            let accepted = tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    if !self.filter.admits(peer) {
                        continue; // dropped: closed at once
                    }
                    let serve = connection::serve(
                        tcp,
                        peer,
                        self.tls.clone(),
                        self.app.clone(),
                        self.shutdown.clone(),
                    );
                    if self.local {
                        tokio::spawn(serve);
                    } else {
                        pingora_runtime::current_handle().spawn(serve);
                    }
                }
                Err(e) => {
                    ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed);
                    if out_of_descriptors(&e) {
                        tracing::warn!("accept failed: {e}; pausing this listener for a second");
                        tokio::time::sleep(REST_AFTER_FD_EXHAUSTION).await;
                    } else {
                        // A connection reset while it waited in the queue, and the like.
                        tracing::debug!("accept failed: {e}");
                    }
                }
            }
        }
        tracing::info!(address = ?listener.local_addr().ok(), "stopped accepting");
    }
}

/// `EMFILE` (this process) or `ENFILE` (the system) is out of file descriptors; Linux's
/// numbers, which std names no `ErrorKind` for.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}
