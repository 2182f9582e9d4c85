//! Reading one request head off a client connection, within the deadlines.
//!
//! Two phases: idle (no byte of the next request yet) and head (from the first byte to the
//! blank line). A connection's first request gets one deadline for both, counted from
//! accept, so a connection that sends nothing is bounded too; a keep-alive connection
//! waits up to `keepalive` idle, then gets the head deadline from its first byte. A deadline
//! is a point in time, not a per-read timeout, so trickling bytes does not extend it.

use std::time::Duration;

use bytes::BytesMut;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;
use tokio::time::{timeout_at, Instant};

use super::head::{self, HeadLimits, Refusal};
use crate::config::ClientLimits;

/// Pingora's own first allocation for a request head.
const INITIAL_BUFFER: usize = 4096;

/// How long a keep-alive connection may idle before it also watches for shutdown: at most
/// this long after a stop begins, an idle connection is closed.
const SHUTDOWN_CHECK: Duration = Duration::from_secs(1);

/// Why no head was read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoHead {
    /// The client closed, or the idle wait ended, before the first byte: a normal end.
    Idle,
    /// The service is shutting down and the connection was idle.
    Shutdown,
    /// The head deadline passed with part of a head read (408).
    Timeout,
    /// The client closed or reset the connection with part of a head read.
    Broken,
    /// The head breaks a limit or is not well framed.
    Refused(Refusal),
}

/// Read until a complete, acceptable head is in the buffer; what was read past it (body
/// bytes) stays in the buffer for pingora. `carry`: bytes of this request already read
/// (what a client pipelined behind the previous one, which the fast path hands back, or
/// what the h2c peek read); `deadline`: the head's deadline when reading `carry` started it
/// (the h2c peek), so it is not counted again.
pub(crate) async fn head(
    stream: &mut Stream,
    client: &ClientLimits,
    first: bool,
    shutdown: &mut ShutdownWatch,
    carry: Option<BytesMut>,
    deadline: Option<Instant>,
) -> Result<BytesMut, NoHead> {
    let limits = HeadLimits {
        head_size: client.head_size,
        headers: client.headers,
        uri_length: client.uri_length,
    };
    // One clock read per request: the idle deadline. The head deadline of a keep-alive
    // request is only needed (and the clock read again) when its head takes more than one
    // read, which a well-behaved client's seldom does.
    let now = Instant::now();
    let (idle, head_deadline) = if first {
        let deadline = crate::deadline::after(now, client.request_head_timeout);
        (deadline, Some(deadline))
    } else {
        (crate::deadline::after(now, client.keepalive_timeout), None)
    };
    let mut buf = match carry {
        Some(carry) if !carry.is_empty() => {
            return rest_of_head(stream, client, carry, &limits, deadline).await
        }
        // The buffer of the previous head, emptied: its room is reused.
        Some(mut empty) => {
            empty.clear();
            if empty.capacity() < INITIAL_BUFFER {
                empty.reserve(INITIAL_BUFFER);
            }
            empty
        }
        None => BytesMut::with_capacity(INITIAL_BUFFER),
    };
    // The idle wait, in two parts. A busy keep-alive client sends its next request within
    // `SHUTDOWN_CHECK`: for that wait a timer alone. Only a connection idle longer also
    // waits on the shutdown signal, so that a stopping lb closes it within about that
    // time, while the signal's cost (registering and removing a waiter, per request) stays
    // off the busy path.
    let quick = if first {
        idle
    } else {
        idle.min(now + SHUTDOWN_CHECK)
    };
    let n = match timeout_at(quick, stream.read_buf(&mut buf)).await {
        Ok(read) => read.unwrap_or(0),
        Err(_) if quick == idle => 0,
        Err(_) if *shutdown.borrow() => return Err(NoHead::Shutdown),
        Err(_) => tokio::select! {
            biased;
            read = timeout_at(idle, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(n)) => n,
                Ok(Err(_)) | Err(_) => 0,
            },
            _ = shutdown.wait_for(|&closing| closing) => return Err(NoHead::Shutdown),
        },
    };
    if n == 0 {
        return Err(NoHead::Idle);
    }
    rest_of_head(stream, client, buf, &limits, head_deadline).await
}

/// From the first bytes of a head in `buf` to its end, by the head deadline (counted from
/// now unless `head_deadline` is already set).
async fn rest_of_head(
    stream: &mut Stream,
    client: &ClientLimits,
    mut buf: BytesMut,
    limits: &HeadLimits,
    mut head_deadline: Option<Instant>,
) -> Result<BytesMut, NoHead> {
    let limits = *limits;
    let (mut scanned, mut line_ended) = (0, false);
    loop {
        // httparse cannot finish a head without a new line end, so a client trickling bytes
        // within one line costs a length check per read, not a parse of the whole buffer.
        let new_line = buf[scanned..].contains(&b'\n');
        scanned = buf.len();
        line_ended |= new_line;
        let verdict = if new_line {
            head::check(&buf, &limits)
        } else {
            head::check_length(buf.len(), line_ended, &limits).map(|()| None)
        };
        match verdict {
            Ok(Some(_)) => return Ok(buf),
            Ok(None) => {}
            Err(refusal) => return Err(NoHead::Refused(refusal)),
        }
        // Counted from the end of the first read, a few microseconds after the first byte.
        let deadline = *head_deadline.get_or_insert_with(|| {
            crate::deadline::after(Instant::now(), client.request_head_timeout)
        });
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => return Err(NoHead::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(NoHead::Broken),
            Ok(Ok(_)) => {}
        }
    }
}
