//! Clients that misbehave are counted in `lb_client_errors_total{reason}`, not logged at
//! ERROR: a head cut short, a body cut short (engine path), a client gone before its
//! answer (direct path). A backend failure is still an ERROR.

mod support;

use std::time::Duration;

use support::{metric, scrape, Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn body(stub: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

fn errors_logged(lb: &Lb) -> Vec<String> {
    lb.log()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .map(str::to_string)
        .collect()
}

async fn client_errors(lb: &Lb, reason: &str) -> f64 {
    metric(
        &scrape(lb).await,
        &format!("lb_client_errors_total{{reason={reason}}}"),
    )
}

/// Send `bytes`, then close the connection without reading an answer; `reset`: with an
/// RST (linger 0), so the lb's next write fails instead of landing in a socket buffer.
async fn send_and_close(lb: &Lb, bytes: &[u8], reset: bool) {
    let mut conn = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    if reset {
        #[allow(deprecated)] // set_linger's blocking-close caveat does not apply to linger 0
        conn.set_linger(Some(Duration::ZERO)).expect("linger");
    }
    conn.write_all(bytes).await.expect("write");
    conn.flush().await.expect("flush");
    drop(conn);
}

#[tokio::test]
async fn misbehaving_clients_are_counted_not_logged_as_errors() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub));
    lb.wait_ready().await;

    // A head cut short: pingora cannot read the request.
    const HEADS: usize = 20;
    for _ in 0..HEADS {
        send_and_close(
            &lb,
            b"GET /x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: half",
            false,
        )
        .await;
    }
    support::eventually(Duration::from_secs(10), "request_head counted", || {
        let lb = &lb;
        async move { client_errors(lb, "request_head").await >= HEADS as f64 }
    })
    .await;

    // A body cut short on the engine path (a POST streams its body upstream).
    send_and_close(
        &lb,
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\n\r\n0123456789",
        false,
    )
    .await;
    // A client gone before its answer on the direct path.
    send_and_close(
        &lb,
        b"GET /slow?ms=300 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        true,
    )
    .await;
    // One each: the cut body (closed or read) and the reset client (write or closed).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&lb).await;
        let counted: Vec<(&str, f64)> = ["closed", "read", "write", "protocol"]
            .into_iter()
            .map(|r| {
                (
                    r,
                    metric(&m, &format!("lb_client_errors_total{{reason={r}}}")),
                )
            })
            .collect();
        if counted.iter().map(|(_, n)| n).sum::<f64>() >= 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counted {counted:?}; log:\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Still serving, and not one ERROR line for any of it.
    let resp = support::client()
        .get(lb.url("/after"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(errors_logged(&lb), Vec::<String>::new());
    // The series exist from the start, so a dashboard sees an increase, not a new series.
    let m = scrape(&lb).await;
    assert!(
        m.contains_key("lb_client_errors_total{reason=protocol}"),
        "{:?}",
        m.keys()
            .filter(|k| k.starts_with("lb_client"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_backend_failure_is_still_an_error() {
    let (dead, _hold) = support::dead_addr("127.0.0.1");
    let mut lb = Lb::start(
        "",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{dead}\"] }}, retries: 0 }}\n"
        ),
    );
    lb.wait_ready().await;
    let mut conn = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    support::eventually(Duration::from_secs(10), "an ERROR line", || {
        let found = !errors_logged(&lb).is_empty();
        async move { found }
    })
    .await;
    assert_eq!(client_errors(&lb, "closed").await, 0.0);
}

/// A client that asks for a large answer and stops reading is cut off after
/// `client_timeouts.response_write`, on the fast path (a GET) and on pingora's engine path
/// (a POST), counted as `write_timeout`, and not logged at ERROR; others are still served.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    // Far more than the socket buffers between the lb and the client can hold.
    const BODY: usize = 16 << 20;
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("  client_timeouts: { response_write: 1s }\n", &body(&stub));
    lb.wait_ready().await;
    let requests = [
        format!("GET /bytes?n={BODY} HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        format!("POST /bytes?n={BODY} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi"),
    ];
    for (i, request) in requests.iter().enumerate() {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        // A small window, so that the lb's writes stall soon.
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut conn = socket
            .connect(([127, 0, 0, 1], lb.port).into())
            .await
            .expect("connect");
        conn.write_all(request.as_bytes()).await.expect("request");
        let expected = (i + 1) as f64;
        support::eventually(Duration::from_secs(15), "a write_timeout counted", || {
            let lb = &lb;
            async move { client_errors(lb, "write_timeout").await >= expected }
        })
        .await;
        // What the buffers held arrives, then the end: the answer was cut short.
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "request {i}: the lb did not close the connection"
        );
        assert!(
            got < BODY,
            "request {i}: the whole answer arrived ({got} bytes)"
        );
    }
    let ok = support::client()
        .get(lb.url("/api/hello"))
        .send()
        .await
        .expect("served");
    assert_eq!(ok.status(), 200);
    assert_eq!(errors_logged(&lb), Vec::<String>::new());
}
