//! A lingering close, as nginx's `lingering_close`: after the lb's last answer on a
//! connection, the client may still be sending (the rest of a body over `max_body_size`,
//! a head over its limits). Closing a socket with unread bytes makes the kernel answer
//! them with a reset, and a client that writes its whole request before reading (most
//! do) then sees "connection reset" or "broken pipe" instead of the 413 or 431 it was
//! sent. So once the write side is shut, what still arrives is read and thrown away, for a
//! bounded time, before the socket is closed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The longest a close lingers in all (nginx's `lingering_time` is 30 s; the client has its
/// answer already, so this only has to outlast a request being sent at loopback or LAN
/// speed, and a client trickling bytes cannot hold its place for longer).
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);

/// The longest a lingering close waits for the client's next bytes (nginx's
/// `lingering_timeout` is 5 s): a client that has stopped sending is not waited for.
pub(crate) const LINGER_IDLE: Duration = Duration::from_secs(1);

/// One lingering close in progress: polled by [`linger`], and by the engine's stream
/// wrapper from its `poll_shutdown` (pingora closes a connection through tokio's shutdown).
pub(crate) struct Linger {
    until: Instant,
    idle: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for Linger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linger")
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

impl Linger {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            until: now + LINGER_TIME,
            idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE.min(LINGER_TIME))),
        }
    }

    /// Read and discard from `stream`; ready once the client closes, pauses for
    /// [`LINGER_IDLE`], fails, or [`LINGER_TIME`] has passed.
    pub(crate) fn poll<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
    ) -> Poll<()> {
        // What is read is thrown away within this call: a buffer on the stack, nothing kept.
        let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
        loop {
            if self.idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::uninit(&mut raw);
            match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    // More came: wait for the next bytes, within the whole time.
                    let next = (Instant::now() + LINGER_IDLE).min(self.until);
                    self.idle.as_mut().reset(next);
                }
                Poll::Ready(_) => return Poll::Ready(()), // closed, or failed
                Poll::Pending => return Poll::Pending,    // the timer is registered above
            }
        }
    }
}

/// A lingering close of `stream`, whose write side is shut already.
pub(crate) async fn linger<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) {
    let mut linger = Linger::new();
    std::future::poll_fn(|cx| linger.poll(cx, stream)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn reads_until_the_client_closes_or_pauses() {
        // The client sends 3 chunks, then closes: all read, then done.
        let (mut lb, mut client) = tokio::io::duplex(64);
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                client.write_all(&[7u8; 100]).await.expect("write");
            }
        });
        linger(&mut lb).await;
        sender.await.expect("sender");

        // A client that stops sending (and keeps the connection) is left after LINGER_IDLE.
        let (mut lb, mut client) = tokio::io::duplex(64);
        client.write_all(b"x").await.expect("write");
        let started = Instant::now();
        linger(&mut lb).await;
        assert_eq!(started.elapsed(), LINGER_IDLE);
        drop(client);

        // One that keeps trickling is left after LINGER_TIME.
        let (mut lb, mut client) = tokio::io::duplex(64);
        let trickle = tokio::spawn(async move {
            while client.write_all(b"y").await.is_ok() {
                tokio::time::sleep(LINGER_IDLE / 2).await;
            }
        });
        let started = Instant::now();
        linger(&mut lb).await;
        let took = started.elapsed();
        assert!(
            took >= LINGER_TIME && took < LINGER_TIME + LINGER_IDLE,
            "{took:?}"
        );
        drop(lb);
        trickle.await.expect("trickle");
    }
}
