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
//! is set on TLS connections (plaintext ones get it before their second write: [`plain`]),
//! the peer address is recorded for the request path, a TLS listener's handshake
//! runs within `client_timeouts.request_head` (pingora's listener allows a fixed 60 s), and the
//! proxy app then serves the connection.
//!
//! # Binary upgrade
//! Every listening socket is kept in pingora's fd table under [`sockets::key`], so `lb -u`
//! hands them to the new process, which takes them over: the same sockets, their queues
//! included. Pingora's new process takes at most 32 descriptors, so the sockets per
//! address are capped to fit ([`sockets::HANDED_OVER_MAX`]; threads beyond share one).
//! Pingora closes inherited sockets no service claims; connections still queued on such a
//! socket (when the new process has fewer threads) are reset unless the kernel moves them
//! (`net.ipv4.tcp_migrate_req = 1`, Linux 5.14+). A first socket handed over by an lb that
//! set no `SO_REUSEPORT` (an older one) cannot be joined: it is served by one loop that hands
//! connections out, until a restart.
//!
//! # What pingora's listener did that is not done here
//! Pingora gives each accepted stream a 64 KiB read buffer and a 1,460-byte write buffer
//! (`set_buffer`, private to pingora-core); the streams here are unbuffered. The fast path
//! and the direct path read into their own buffers and write whole heads, so only TLS
//! records and pingora's engine path see the difference (measured in `benches/README.md`).

mod connection;
mod plain;
mod sockets;
mod threads;

pub(crate) use plain::no_delay;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::runtime::Handle;

use crate::connection_limits::AcceptFilter;
use crate::state::LbState;

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
    state: Arc<LbState>,
    endpoints: Vec<Endpoint>,
    /// The runtime's threads (`server.threads`).
    threads: usize,
    per_thread: bool,
    work_stealing: bool,
}

impl<A> AcceptService<A> {
    /// `app` serves each connection `state`'s `connection_limits` admit. `per_thread`: one socket
    /// and accept loop per thread and address (else one per address).
    pub(crate) fn new(
        name: &str,
        app: A,
        state: Arc<LbState>,
        endpoints: Vec<Endpoint>,
        threads: usize,
        per_thread: bool,
        work_stealing: bool,
    ) -> Self {
        Self {
            name: name.to_string(),
            app: Some(Arc::new(app)),
            filter: Arc::new(AcceptFilter::new(state.clone())),
            state,
            endpoints,
            threads,
            per_thread,
            work_stealing,
        }
    }

    /// Log and record the address each endpoint got (`listen: ["127.0.0.1:0"]` gets a port
    /// from the kernel): `proxy listening on ADDR` (plaintext) or `tls listening on ADDR`, in
    /// configuration order, shown in `/status` under `listening`.
    fn report(&self, bound: &[sockets::Bound]) {
        let mut plain = Vec::new();
        let mut tls = Vec::new();
        for (endpoint, b) in self.endpoints.iter().zip(bound) {
            let Some(addr) = b.sockets.first().and_then(|(_, s)| s.local_addr().ok()) else {
                tracing::warn!(address = %endpoint.addr, "cannot read the bound address back");
                continue;
            };
            if endpoint.tls.is_some() {
                tracing::info!(%addr, "tls listening on {addr}");
                tls.push(addr);
            } else {
                tracing::info!(%addr, "proxy listening on {addr}");
                plain.push(addr);
            }
        }
        self.state.set_listening(plain);
        self.state.set_tls_listening(tls);
    }

    /// Sockets per address: one per thread, within what an upgrade can hand over
    /// ([`sockets::HANDED_OVER_MAX`] for all addresses together).
    fn sockets_per_address(&self) -> usize {
        if !self.per_thread {
            return 1;
        }
        let budget = sockets::HANDED_OVER_MAX / self.endpoints.len().max(1);
        self.threads.min(budget).max(1)
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
        // Every address is bound (or taken over) before any is served: a failure stops the
        // lb before it answers anything, also in the middle of an upgrade.
        let mut inherited = sockets::Inherited::from_table(fds.as_ref());
        let per_address = self.sockets_per_address();
        let mut bound = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            match sockets::bind(endpoint.addr, per_address, &mut inherited).await {
                Ok(b) => bound.push(b),
                Err(e) => {
                    // A proxy that cannot listen must not look healthy.
                    tracing::error!(address = %endpoint.addr, "cannot listen: {e:#}");
                    eprintln!("lb: cannot listen on {}: {e:#}", endpoint.addr);
                    std::process::exit(1);
                }
            }
        }
        if let Some(table) = &fds {
            for b in &bound {
                sockets::record(table, b);
            }
        }
        self.report(&bound);
        let mut handles = if self.per_thread {
            threads::each_thread(self.threads, self.work_stealing).await
        } else {
            Vec::new()
        };
        if handles.is_empty() {
            handles.push(Handle::current());
        }
        let mut loops = Vec::new();
        for (endpoint, b) in self.endpoints.iter().zip(bound) {
            let sockets: Vec<_> = b.sockets.into_iter().map(|(_, s)| s).collect();
            for (socket, handle, local) in assign(sockets, &handles, self.per_thread) {
                let accept = Loop {
                    app: app.clone(),
                    filter: self.filter.clone(),
                    state: self.state.clone(),
                    tls: endpoint.tls.clone(),
                    shutdown: shutdown.clone(),
                    local,
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

/// Which thread runs an accept loop on which socket, and whether it serves what it accepts
/// itself (`true`) or hands each connection to a random thread. One socket for several
/// threads: one loop, handing out (as pingora's listener). A socket per thread: a loop on
/// each, serving locally. Fewer sockets than threads (the hand-over budget): the threads
/// beyond them share one (both wake for its connections; one gets each).
fn assign(
    sockets: Vec<std::net::TcpListener>,
    handles: &[Handle],
    per_thread: bool,
) -> Vec<(std::net::TcpListener, Handle, bool)> {
    let n = sockets.len();
    if n == 1 && (handles.len() > 1 || !per_thread) {
        return sockets
            .into_iter()
            .map(|socket| (socket, Handle::current(), false))
            .collect();
    }
    let mut shared = Vec::new();
    for (t, handle) in handles.iter().enumerate().skip(n) {
        let Some(socket) = sockets.get(t % n.max(1)) else {
            break; // no socket at all
        };
        match socket.try_clone() {
            Ok(socket) => shared.push((socket, handle.clone(), true)),
            Err(e) => tracing::warn!("thread {t} runs no accept loop: {e}"),
        }
    }
    sockets
        .into_iter()
        .zip(handles.iter().cycle())
        .map(|(socket, handle)| (socket, handle.clone(), true))
        .chain(shared)
        .collect()
}

/// One accept loop: one listening socket, on one thread.
struct Loop<A> {
    app: Arc<A>,
    filter: Arc<AcceptFilter>,
    state: Arc<LbState>,
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
                    let Ok(counted) = self.filter.admit(peer) else {
                        continue; // refused: dropped, so closed at once
                    };
                    // The handshake gets `request_head` as a head does (read now, so that
                    // reloads apply); the first head's own deadline starts after it.
                    let tls = self.tls.as_ref().map(|acceptor| connection::Handshake {
                        acceptor: acceptor.clone(),
                        deadline: self.state.client_limits().request_head_timeout,
                    });
                    let serve = connection::serve(
                        tcp,
                        peer,
                        tls,
                        self.app.clone(),
                        self.shutdown.clone(),
                        counted,
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
