//! One accepted connection, from the socket to the proxy app: what pingora's listener did
//! between `accept` and the app.

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::server::ShutdownWatch;
use tokio::net::TcpStream;

use super::plain::PlainStream;
use crate::connection_limits::Guard;

/// A TLS listener's handshake for one connection: `deadline` is the connection's
/// `client_timeouts.request_head` when it was accepted (pingora's own is a fixed 60 s).
pub(super) struct Handshake {
    pub(super) acceptor: Arc<Acceptor>,
    pub(super) deadline: Duration,
}

/// Serve `tcp` (from `peer`): the TLS handshake when `tls`, then every request on it. `_counted`
/// holds the connection's place in `server.connection_limits` until this returns, however
/// it ends.
pub(super) async fn serve<A: ServerApp + Send + Sync + 'static>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Handshake>,
    app: Arc<A>,
    shutdown: ShutdownWatch,
    _counted: Option<Guard>,
) {
    let stream: Stream = match tls {
        // `TCP_NODELAY` comes when the connection first needs it (`super::plain`).
        None => Box::new(PlainStream::new(tcp, peer)),
        // Boxed: the handshake's future (TLS state, the deadline's timer) is several times
        // the size of the rest, and a task holds its future whole: tokio copies it when the
        // task is spawned and again when it completes, for every connection, plaintext
        // ones too (`size_of_serve` below).
        Some(handshake) => match Box::pin(handshake.run(tcp, peer)).await {
            Some(tls) => tls,
            None => return,
        },
    };
    // The app returns the stream while the connection may carry another request.
    let mut next = app.process_new(stream, &shutdown).await;
    while let Some(stream) = next {
        next = app.process_new(stream, &shutdown).await;
    }
}

impl Handshake {
    /// The TLS stream, or `None` when the handshake failed or timed out (counted).
    async fn run(self, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
        // The client is already gone if setting TCP_NODELAY failed.
        let l4 = l4_stream(tcp, peer)?;
        match tokio::time::timeout(self.deadline, self.acceptor.tls_handshake(l4)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            failed => {
                // A client's doing (plaintext on a TLS port, an unknown name, a handshake
                // cut short): counted, logged at debug only.
                super::HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                match failed {
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    _ => tracing::debug!(%peer, "TLS handshake timed out"),
                }
                None
            }
        }
    }
}

/// Pingora's stream over `tcp`, as its listener makes it: no delay on small writes, and the
/// peer recorded for the request path (client address, access log, limits).
fn l4_stream(tcp: TcpStream, peer: SocketAddr) -> Option<L4Stream> {
    let mut stream = L4Stream::from(tcp);
    stream.set_nodelay().ok()?;
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    // A fresh digest's cell is empty, so this cannot fail.
    let _ = digest.peer_addr.set(Some(peer.into()));
    stream.set_socket_digest(digest);
    Some(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait::async_trait]
    impl ServerApp for Nothing {
        async fn process_new(
            self: &Arc<Self>,
            _stream: Stream,
            _shutdown: &ShutdownWatch,
        ) -> Option<Stream> {
            None
        }
    }

    /// A connection's task holds this future whole, and tokio copies it when the task is
    /// spawned and when it completes: it stays small (the TLS handshake's large future is
    /// boxed, only TLS connections pay for it). Unboxed, it was 7,744 bytes (a test build).
    #[tokio::test]
    async fn size_of_serve() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (tcp, peer) = accepted.unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let serve = serve(tcp, peer, None, Arc::new(Nothing), shutdown, None);
        let size = std::mem::size_of_val(&serve);
        assert!(size <= 512, "the serve future is {size} bytes");
        drop((serve, client));
    }
}
