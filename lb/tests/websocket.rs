//! A WebSocket upgrade goes through pingora's engine, and after the `101` its bytes are
//! the WebSocket's frames, not a request body: neither the route's `max_body_size` nor
//! `client_timeouts.request_body` may cut the connection (they did: pingora hands the
//! upgraded bytes to the same body filter).

mod support;

use std::time::Duration;

use support::Lb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that switches every connection to "websocket" and echoes what it gets.
async fn echo_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if conn.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
            .await
            .expect("the answer's head within 10 s")
            .expect("read");
        assert_eq!(n, 1, "closed before the head's end: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `data` and reads back as many bytes: the echo through the upgraded connection.
async fn echo(conn: &mut TcpStream, data: &[u8]) {
    conn.write_all(data)
        .await
        .expect("write to the upgraded connection");
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut back))
        .await
        .expect("the echo within 10 s")
        .expect("the upgraded connection stays open");
    assert_eq!(back, data);
}

#[tokio::test]
async fn an_upgraded_connection_is_not_held_to_the_request_body_limits() {
    let backend = echo_backend().await;
    let mut lb = Lb::start(
        "  client_timeouts: { request_body: 1s }\n",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: ws, max_body_size: 1KiB }}\nupstreams:\n  ws: {{ discovery: {{ static: [\"{backend}\"] }} }}\n"
        ),
    );
    lb.wait_ready().await;

    let mut conn = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // More than max_body_size (1 KiB) in all, in frames of 512 bytes.
    for i in 0..8u8 {
        echo(&mut conn, &[b'a' + i; 512]).await;
    }
    // And a frame after request_body (1 s) has passed since the head: the time under test.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    echo(&mut conn, b"still open").await;

    let m = support::scrape(&lb).await;
    for reason in ["body_too_large", "body_timeout"] {
        assert_eq!(
            support::metric(&m, &format!("lb_client_errors_total{{reason={reason}}}")),
            0.0,
            "{reason}"
        );
    }
}
