//! A plaintext client connection's stream: tokio's socket, with what pingora's request path
//! asks of a stream (the peer in a socket digest, a peek for the h2c preface) and nothing
//! more.
//!
//! # Why not pingora's l4 stream
//! Two syscalls per connection that nginx does not make:
//! - pingora's stream asks the socket for `TCP_NODELAY` when it is dropped, only to log a
//!   socket that already failed;
//! - the lb set `TCP_NODELAY` at accept. Nagle's algorithm only holds back a small write
//!   while earlier bytes are unacknowledged, so a connection that gets one answer in one
//!   write and closes never needs it. As nginx does (`tcp_nodelay`), it is set when a
//!   connection is about to write a second time: a second write of one answer (a body
//!   copied in several reads), a keep-alive wait for the next request, or a hand-over to
//!   pingora's engine or h2, which write in pieces ([`no_delay`]). TLS connections keep
//!   pingora's stream and get it at accept: a TLS answer is several records.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
pub(crate) struct PlainStream {
    tcp: TcpStream,
    digest: Arc<SocketDigest>,
    /// Bytes a peek read, served again before the socket's.
    rewind: Vec<u8>,
    /// `TCP_NODELAY` is on.
    no_delay: AtomicBool,
    accepted: std::time::SystemTime,
}

impl PlainStream {
    /// `tcp`, accepted from `peer`.
    pub(crate) fn new(tcp: TcpStream, peer: std::net::SocketAddr) -> Self {
        use std::os::unix::io::AsRawFd;
        let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        // A fresh digest's cell is empty, so this cannot fail.
        let _ = digest.peer_addr.set(Some(peer.into()));
        PlainStream {
            tcp,
            digest: Arc::new(digest),
            rewind: Vec::new(),
            no_delay: AtomicBool::new(false),
            accepted: std::time::SystemTime::now(),
        }
    }

    fn set_no_delay(&self) {
        if self.no_delay.load(Ordering::Relaxed) {
            return;
        }
        // A failure means the client is gone; the next read or write says so.
        if self.tcp.set_nodelay(true).is_ok() {
            self.no_delay.store(true, Ordering::Relaxed);
        }
    }
}

/// Turn `TCP_NODELAY` on for `stream` if it is a [`PlainStream`] without it (others have it
/// from accept): before a connection's second write. Call it before the stream is wrapped
/// for pingora's engine (`downstream::write_deadline`): a wrapped stream is not looked into.
pub(crate) fn no_delay(stream: &Stream) {
    if let Some(plain) = stream.as_any().downcast_ref::<PlainStream>() {
        plain.set_no_delay();
    }
}

impl AsyncRead for PlainStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.rewind.is_empty() {
            let n = this.rewind.len().min(buf.remaining());
            buf.put_slice(&this.rewind[..n]);
            this.rewind.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for PlainStream {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!("client connection shutdown failed: {e}");
        }
    }
}

impl UniqueID for PlainStream {
    fn id(&self) -> UniqueIDType {
        use std::os::unix::io::AsRawFd;
        self.tcp.as_raw_fd() as UniqueIDType
    }
}

impl Ssl for PlainStream {}

impl GetTimingDigest for PlainStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![Some(TimingDigest {
            established_ts: self.accepted,
            establishment_duration: None,
            offload_wait_duration: None,
        })]
    }

    fn get_read_pending_time(&self) -> Duration {
        Duration::ZERO
    }

    fn get_write_pending_time(&self) -> Duration {
        Duration::ZERO
    }
}

impl GetProxyDigest for PlainStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for PlainStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.digest.clone())
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.digest = Arc::new(digest);
    }
}

#[async_trait]
impl Peek for PlainStream {
    /// Fill `buf` (waiting for that many bytes, as pingora's stream does) and keep them to
    /// be read again.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.read_exact(buf).await?;
        let mut kept = buf.to_vec();
        kept.append(&mut self.rewind);
        self.rewind = kept;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (Stream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (tcp, peer) = accepted.expect("accept");
        (
            Box::new(PlainStream::new(tcp, peer)),
            client.expect("connect"),
        )
    }

    #[tokio::test]
    async fn peeked_bytes_are_read_again_and_the_peer_is_recorded() {
        let (mut stream, mut client) = pair().await;
        client
            .write_all(b"PRI * HTTP/2.0 and more")
            .await
            .expect("write");
        let mut peeked = [0u8; 8];
        assert!(stream.try_peek(&mut peeked).await.expect("peek"));
        assert_eq!(&peeked, b"PRI * HT");
        let mut all = vec![0u8; 23];
        stream.read_exact(&mut all).await.expect("read");
        assert_eq!(all, b"PRI * HTTP/2.0 and more");
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        assert_eq!(peer, Some(client.local_addr().expect("local")));
    }

    #[tokio::test]
    async fn no_delay_is_off_until_asked_then_on() {
        let (stream, _client) = pair().await;
        let plain = stream
            .as_any()
            .downcast_ref::<PlainStream>()
            .expect("plain");
        assert!(!plain.tcp.nodelay().expect("read the option"));
        no_delay(&stream);
        assert!(plain.tcp.nodelay().expect("read the option"));
        assert!(plain.no_delay.load(Ordering::Relaxed));
    }
}
