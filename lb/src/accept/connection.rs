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
        Some(Handshake { acceptor, deadline }) => {
            let Some(l4) = l4_stream(tcp, peer) else {
                return; // the client is already gone (setting TCP_NODELAY failed)
            };
            match tokio::time::timeout(deadline, acceptor.tls_handshake(l4)).await {
                Ok(Ok(tls)) => Box::new(tls),
                failed => {
                    // A client's doing (plaintext on a TLS port, an unknown name, a
                    // handshake cut short): counted, logged at debug only.
                    super::HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                    match failed {
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        _ => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    return;
                }
            }
        }
    };
    // The app returns the stream while the connection may carry another request.
    let mut next = app.process_new(stream, &shutdown).await;
    while let Some(stream) = next {
        next = app.process_new(stream, &shutdown).await;
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
