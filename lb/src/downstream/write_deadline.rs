//! `client_timeouts.response_write` under pingora's engine: a client stream whose writes
//! fail once the client has taken no bytes for that long.
//!
//! Pingora 0.9 times body writes (`set_write_timeout`, set per request by the proxy), but
//! not an HTTP/1 response head nor the flush at the end of a body. A client that stops
//! reading would hold its task, its `connection_limits` place and a backend connection there
//! for ever. Wrapping the stream bounds every write, whoever makes it. The fast path times
//! its own writes and never needs the wrapper, so the connections it serves alone pay
//! nothing for it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

/// What a write that timed out fails with; `crate::client_errors` counts it as
/// `write_timeout`.
pub(crate) const TIMED_OUT: &str =
    "the client took no response bytes for client_timeouts.response_write";

/// `inner`, whose writes, flushes and shutdown fail after `limit` without progress.
#[derive(Debug)]
pub(crate) struct WriteDeadline {
    inner: Stream,
    limit: Duration,
    /// Armed when a write first waits; cleared by any progress.
    waiting: Option<Pin<Box<Sleep>>>,
    /// Bytes the lb read before handing the stream over (an h2 preface it waited for),
    /// read again first.
    rewind: bytes::Bytes,
    /// After the write side is shut: the lingering close ([`super::linger`]) in progress,
    /// then `Some(None)` once done.
    closing: Option<Option<Box<super::linger::Linger>>>,
}

impl WriteDeadline {
    /// `stream` under `limit`, unless it already is under one (a keep-alive connection
    /// comes back to the engine for each request).
    pub(crate) fn wrap(stream: Stream, limit: Duration) -> Stream {
        if stream.as_any().is::<WriteDeadline>() {
            return stream;
        }
        Self::wrap_after(stream, limit, bytes::Bytes::new())
    }

    /// `stream` without this wrapper (it stays on a keep-alive connection after the
    /// engine's first request): for the lb's own closes, which decide themselves whether
    /// to linger, rather than the engine's close in `poll_shutdown`.
    pub(crate) fn unwrapped(stream: Stream) -> Stream {
        if !stream.as_any().is::<WriteDeadline>() {
            return stream;
        }
        match stream.into_any().downcast::<WriteDeadline>() {
            Ok(w) => w.inner,
            // Not reachable (checked just above); an empty stream rather than a panic.
            Err(_) => Box::new(std::io::Cursor::new(Vec::<u8>::new())),
        }
    }

    /// `stream` under `limit`, its reads starting with `read`: bytes already taken from
    /// it, so whoever reads next sees the stream whole.
    pub(crate) fn wrap_after(stream: Stream, limit: Duration, read: bytes::Bytes) -> Stream {
        Box::new(WriteDeadline {
            inner: stream,
            limit,
            waiting: None,
            rewind: read,
            closing: None,
        })
    }

    /// After the inner stream made no progress: pending until `limit` has passed since the
    /// first such wait, then the error.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = None;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, TIMED_OUT)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, ready: io::Result<T>) -> Poll<io::Result<T>> {
        self.waiting = None;
        Poll::Ready(ready)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }

    /// Pingora's engine closes a connection it will not reuse (an error answer such as a
    /// 413 for a declared body, `Connection: close`) through this: the write side is shut,
    /// then the close lingers, since the client may still be sending and should get the
    /// answer, not a reset.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_none() {
            match Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {
                    this.waiting = None;
                    this.closing = Some(Some(Box::new(super::linger::Linger::new())));
                }
                Poll::Ready(Err(e)) => return this.progressed(Err(e)),
                Poll::Pending => return this.stalled(cx),
            }
        }
        if let Some(Some(linger)) = &mut this.closing {
            if linger.poll(cx, &mut this.inner).is_pending() {
                return Poll::Pending;
            }
            this.closing = Some(None);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.rewind.is_empty() {
            let n = this.rewind.len().min(buf.remaining());
            buf.put_slice(&this.rewind.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

// Everything else is the inner stream's.

#[async_trait]
impl Shutdown for WriteDeadline {
    async fn shutdown(&mut self) {
        // Pingora's own close of a connection: bounded too (a TLS close_notify is a write).
        // Through tokio's shutdown (this wrapper's, so it lingers too), not the inner
        // stream's `Shutdown`: pingora's TLS stream logs a client that has already reset as
        // a WARN, and a client's reset is not an operator's concern.
        match tokio::time::timeout(self.limit, AsyncWriteExt::shutdown(self)).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(e)) => tracing::debug!("client connection shutdown failed: {e}"),
        }
    }
}

impl UniqueID for WriteDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for WriteDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for WriteDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for WriteDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for WriteDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for WriteDeadline {
    /// Pingora peeks a plaintext connection for the h2c preface, which the lb may have read
    /// already (then it is in `rewind`): the peek sees the stream whole, as reads do.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.rewind.is_empty() {
            return self.inner.try_peek(buf).await;
        }
        if self.rewind.len() < buf.len() {
            let mut more = bytes::BytesMut::from(&self.rewind[..]);
            while more.len() < buf.len() {
                if tokio::io::AsyncReadExt::read_buf(&mut self.inner, &mut more).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            self.rewind = more.freeze();
        }
        buf.copy_from_slice(&self.rewind[..buf.len()]);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that reads nothing: writes stall once the socket buffers are full, and the
    /// wrapper fails them after its limit; a peer that reads lets them all through.
    #[tokio::test]
    async fn a_stalled_write_fails_after_the_limit_and_progress_rearms_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let mut peer = client.expect("connect");
        let server: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(
            accepted.expect("accept").0,
        ));
        let mut stream = WriteDeadline::wrap(server, Duration::from_millis(200));
        let chunk = vec![7u8; 64 * 1024];

        // The peer drains as it goes: 8 MiB pass, however long that takes.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0usize;
            while got < 8 << 20 {
                match peer.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            (peer, got)
        });
        for _ in 0..128 {
            stream
                .write_all(&chunk)
                .await
                .expect("a reading peer's write");
        }
        let (_peer, got) = reader.await.expect("reader");
        assert_eq!(got, 8 << 20);

        // Now it reads nothing: some write must fail, with the timeout.
        let stalled = async {
            for _ in 0..1024 {
                if let Err(e) = stream.write_all(&chunk).await {
                    return Some(e);
                }
            }
            None
        };
        let e = tokio::time::timeout(Duration::from_secs(30), stalled)
            .await
            .expect("still waiting after 30 s")
            .expect("a write to a peer that reads nothing failed");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), TIMED_OUT);
    }

    #[test]
    fn a_wrapped_stream_is_not_wrapped_again() {
        let plain: Stream = Box::new(std::io::Cursor::new(Vec::<u8>::new()));
        let once = WriteDeadline::wrap(plain, Duration::from_secs(1));
        let twice = WriteDeadline::wrap(once, Duration::from_secs(2));
        let outer = twice
            .into_any()
            .downcast::<WriteDeadline>()
            .expect("wrapped");
        assert_eq!(
            outer.limit,
            Duration::from_secs(1),
            "the first wrapper, kept"
        );
        assert!(outer.inner.as_any().is::<std::io::Cursor<Vec<u8>>>());
    }

    #[test]
    fn unwrapped_gives_the_inner_stream_back() {
        let plain: Stream = Box::new(std::io::Cursor::new(Vec::<u8>::new()));
        let wrapped = WriteDeadline::wrap(plain, Duration::from_secs(1));
        assert!(wrapped.as_any().is::<WriteDeadline>());
        let inner = WriteDeadline::unwrapped(wrapped);
        assert!(inner.as_any().is::<std::io::Cursor<Vec<u8>>>());
        // A stream that is not wrapped comes back as it is.
        let again = WriteDeadline::unwrapped(inner);
        assert!(again.as_any().is::<std::io::Cursor<Vec<u8>>>());
    }

    /// Bytes the lb read before the hand-over come first, to reads and to a peek (pingora
    /// peeks for the h2c preface the lb already read), and a peek consumes nothing.
    #[tokio::test]
    async fn what_was_read_before_comes_first_to_reads_and_peeks() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (lb_side, mut client) = tokio::io::duplex(1024);
        let inner: Stream = Box::new(lb_side);
        let mut stream =
            WriteDeadline::wrap_after(inner, Duration::from_secs(1), bytes::Bytes::from("0123"));
        client.write_all(b"456789").await.expect("write");
        let mut peeked = [0u8; 6];
        assert!(stream.try_peek(&mut peeked).await.expect("peek"));
        assert_eq!(&peeked, b"012345");
        let mut again = [0u8; 2];
        assert!(stream.try_peek(&mut again).await.expect("peek"));
        assert_eq!(&again, b"01");
        drop(client);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"0123456789");
    }
}
