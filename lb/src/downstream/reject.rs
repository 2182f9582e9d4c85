//! The lb's JSON error answer, written straight to a connection whose head pingora never
//! saw (so no pingora session exists to answer through).

use std::time::Duration;

use pingora::protocols::Stream;
use service_kit::request_id;
use tokio::io::AsyncWriteExt;

use crate::errors::{self, LbError};

/// A client that does not read its error answer is not waited for longer than this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answer `err` and close. With `linger`, the rest of what the client sent is read and
/// thrown away for a bounded time first ([`super::linger`]), so the client gets its
/// answer, not a reset.
pub(crate) async fn reject(mut stream: Stream, err: LbError, linger: bool) {
    let id = request_id::generate();
    let body = errors::json_body(err, &id);
    let status = http::StatusCode::from_u16(err.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: no-store\r\n{}: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        request_id::NAME,
        id.to_str().unwrap_or(""),
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let write = async {
        stream.write_all(&response).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            ))
        })
    {
        tracing::debug!(error = %e, status = err.status(), "could not answer a refused request head");
        return;
    }
    if linger {
        super::linger::linger(&mut stream).await;
    }
}
