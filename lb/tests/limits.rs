//! Request limits answered by the lb with its own JSON: a body over the route's
//! `max_body_size` (413 before any backend is contacted when `Content-Length` says so, and
//! cut when a chunked body passes it), and an HTTP/1.1 request without `Host` (400).

mod support;

use support::{access_line, exchange, Lb, Stub};

fn body(stub: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\n  - {{ prefix: /upload/, upstream: web, max_body_size: 1KiB }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

fn json_of(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_default()
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_the_backend() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub));
    lb.wait_ready().await;

    let answer = exchange(
        &lb,
        b"POST /upload/x HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: big-1\r\nContent-Length: 2000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let json = json_of(&answer);
    assert_eq!(json["error"], "request body too large", "{answer}");
    assert_eq!(json["request_id"], "big-1");
    assert_eq!(stub.hits(), 0, "no backend was contacted");
    assert_eq!(access_line(&lb, "big-1").await["status"], 413);
    let m = support::scrape(&lb).await;
    assert_eq!(
        support::metric(&m, "lb_client_errors_total{reason=body_too_large}"),
        1.0
    );

    // At the limit it passes; other routes keep the 10 MiB default.
    let mut ok = b"POST /upload/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n".to_vec();
    ok.extend(std::iter::repeat_n(b'x', 1024));
    assert!(exchange(&lb, &ok).await.starts_with("HTTP/1.1 200"));
    let mut other =
        b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n"
            .to_vec();
    other.extend(std::iter::repeat_n(b'x', 4096));
    assert!(exchange(&lb, &other).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_chunked_body_is_cut_where_it_passes_the_limit() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub));
    lb.wait_ready().await;
    // The backend answers only after 2 s, so the cut comes before any response.
    let mut req = b"POST /upload/slow?ms=2000 HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: chunked-1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend(std::iter::repeat_n(b'y', 0x200));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = exchange(&lb, &req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(json_of(&answer)["error"], "request body too large");
    assert_eq!(access_line(&lb, "chunked-1").await["status"], 413);
    // A client's oversized body is its own misbehaviour: counted, not an ERROR line.
    let m = support::scrape(&lb).await;
    assert_eq!(
        support::metric(&m, "lb_client_errors_total{reason=body_too_large}"),
        1.0
    );
    assert!(!lb.log().contains("\"level\":\"ERROR\""), "{}", lb.log());
}

#[tokio::test]
async fn http11_without_host_is_a_400_and_http10_is_served() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub));
    lb.wait_ready().await;

    let answer = exchange(&lb, b"GET /x HTTP/1.1\r\nX-Request-Id: nohost-1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(json_of(&answer)["error"], "bad request");
    assert_eq!(json_of(&answer)["request_id"], "nohost-1");
    assert_eq!(stub.hits(), 0);
    // The client's mistake: counted, not logged as the operator's.
    let m = support::scrape(&lb).await;
    assert_eq!(
        support::metric(&m, "lb_client_errors_total{reason=malformed}"),
        1.0
    );

    let answer = exchange(&lb, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "{answer}"
    );
}

#[test]
fn max_body_size_is_checked() {
    let (code, text) = support::lb::check_text(
        "version: 1\nroutes:\n  - { prefix: /, upstream: web, max_body_size: 10MB }\n  - { prefix: /a/, upstream: web, max_body_size: 0 }\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:1\"] } }\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("routes[0].max_body_size: \"10MB\" is not a size"),
        "{text}"
    );
    assert!(
        text.contains("routes[1].max_body_size: 0 is not a size"),
        "{text}"
    );
}

/// A client that writes its whole request before it reads (most do) gets the refusal, not
/// a reset: the lb reads and throws away what still arrives for a while after its answer
/// (a lingering close) instead of closing a socket with unread bytes. Each kind of
/// refusal: a declared body over `max_body_size` (413, pingora's engine closes), a chunked
/// one cut where it passes it (413, after pingora's `fail_to_proxy`) and a head over
/// `request_limits.head_size` (431, the lb's own head reader closes).
#[tokio::test]
async fn a_refused_client_still_sending_gets_its_answer_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub));
    lb.wait_ready().await;
    // More than loopback's socket buffers hold, so the client is still writing when the
    // lb answers.
    let plain = vec![b'z'; 8 << 20];
    let mut chunked = Vec::with_capacity((8 << 20) + 4096);
    for _ in 0..128 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend(std::iter::repeat_n(b'c', 0x10000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let cases: [(&[u8], &[u8], &str); 3] = [
        // Refused from its declared length, before any byte of it is read.
        (
            b"POST /upload/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 8388608\r\n\r\n",
            &plain,
            "HTTP/1.1 413",
        ),
        // Cut where it passes the limit, while the slow backend has not answered
        // (pingora's fail_to_proxy path).
        (
            b"POST /upload/slow?ms=2000 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n",
            &chunked,
            "HTTP/1.1 413",
        ),
        (
            b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-Big: ",
            &plain,
            "HTTP/1.1 431",
        ),
    ];
    for (head, rest, status) in cases {
        let hits = stub.hits();
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", lb.port))
            .await
            .expect("connect");
        conn.write_all(head).await.expect("write the head");
        let sent = tokio::time::timeout(std::time::Duration::from_secs(20), conn.write_all(rest))
            .await
            .expect("the lb reads what is sent after its answer");
        assert!(
            sent.is_ok(),
            "{status}: the send failed: {sent:?}\n{}",
            lb.log()
        );
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut answer),
        )
        .await
        .expect("the answer within 10 s");
        assert!(read.is_ok(), "{status}: {read:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(status), "{status}: {answer}");
        // Only the chunked body may reach the backend (it is cut on its way there).
        let chunked = head.windows(8).any(|w| w == b"chunked\r");
        assert!(stub.hits() - hits <= usize::from(chunked), "{status}");
    }
}
