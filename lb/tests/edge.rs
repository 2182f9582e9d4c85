//! The client side of a connection, held to `server.client_timeouts` and
//! `server.request_limits`, and smuggling-shaped heads refused before any backend sees a
//! byte: each answered with the lb's own JSON (no `Server: Pingora`), counted in
//! `lb_client_errors_total{reason}`, never logged at ERROR.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{exchange, metric, scrape, Lb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that records every byte it receives and answers each read with a tiny 200
/// (never, once a connection has asked for `/upload`), so the tests can tell whether
/// anything of a refused request got through.
struct Recorder {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let all = all.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut upload = false;
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        all.lock().unwrap().extend_from_slice(&buf[..n]);
                        upload |= String::from_utf8_lossy(&buf[..n]).contains("/upload");
                        if upload {
                            continue;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(ok).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Recorder { addr, seen }
    }

    fn saw(&self, needle: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        String::from_utf8_lossy(&seen).contains(needle)
    }
}

fn body(addr: std::net::SocketAddr) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{addr}\"] }}, health_check: {{ path: /probe }} }}\n"
    )
}

const LIMITS: &str = "  client_timeouts: { request_head: 1s, keepalive: 1s, request_body: 1s }\n  request_limits: { head_size: 4KiB, headers: 20, uri_length: 1KiB }\n";

async fn lb_with_recorder() -> (Lb, Recorder) {
    let recorder = Recorder::start().await;
    let mut lb = Lb::start(LIMITS, &body(recorder.addr));
    lb.wait_ready().await;
    (lb, recorder)
}

/// The status, and the JSON body checked for the lb's shape.
fn lb_answer(answer: &str) -> u16 {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let head = head.to_ascii_lowercase();
    assert!(
        !head.to_ascii_lowercase().contains("server: pingora"),
        "{answer}"
    );
    assert!(head.contains("content-type: application/json"), "{answer}");
    assert!(head.contains("x-request-id: "), "{answer}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let status = json["status"].as_u64().unwrap_or(0) as u16;
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{answer}"
    );
    assert!(json["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    status
}

fn client_errors(m: &std::collections::HashMap<String, f64>, reason: &str) -> f64 {
    metric(m, &format!("lb_client_errors_total{{reason={reason}}}"))
}

#[tokio::test]
async fn smuggling_shapes_are_refused_before_any_backend_on_both_paths() {
    let (lb, recorder) = lb_with_recorder().await;
    let shapes: &[&str] = &[
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Content-Length: 5\r\nContent-Length: 6",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked\r\nContent-Length: 5",
        "X-Fold: a\r\n b",
        "Host: other.test",
    ];
    for (i, shape) in shapes.iter().enumerate() {
        // GET takes the direct path when well formed, POST pingora's engine.
        for method in ["GET", "POST"] {
            let request = format!(
                "{method} /smuggle-{i} HTTP/1.1\r\nHost: a.test\r\n{shape}\r\n\r\n0\r\n\r\nGET /smuggled-{i} HTTP/1.1\r\nHost: a.test\r\n\r\n"
            );
            let answer = exchange(&lb, request.as_bytes()).await;
            assert_eq!(lb_answer(&answer), 400, "{method} {shape:?}: {answer}");
        }
    }
    // An invalid chunk size is found in the body, after the head went upstream: the
    // request fails, and nothing from the bad chunk on (here a smuggled request) is sent.
    let answer = exchange(
        &lb,
        b"POST /bad-chunk HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nGET /smuggle-in-chunk HTTP/1.1\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(lb_answer(&answer), 400, "{answer}");
    // The recorder would have seen these paths had anything been forwarded: a well-formed
    // request proves it records.
    let answer = exchange(
        &lb,
        b"POST /control HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(recorder.saw("/control"));
    let seen = String::from_utf8_lossy(&recorder.seen.lock().unwrap()).into_owned();
    assert!(
        !seen.contains("smuggle"),
        "a refused request reached the backend: {seen}"
    );
    let m = scrape(&lb).await;
    assert!(client_errors(&m, "ambiguous") >= 10.0, "{m:?}");
    assert!(client_errors(&m, "malformed") >= 4.0, "{m:?}");
    assert!(!lb.log().contains("\"level\":\"ERROR\""), "{}", lb.log());
}

#[tokio::test]
async fn limits_answer_414_431_and_405_with_the_lbs_json() {
    let (lb, recorder) = lb_with_recorder().await;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n", "a".repeat(1100));
    assert_eq!(lb_answer(&exchange(&lb, long_target.as_bytes()).await), 414);
    // A target that never ends is refused as soon as it is too long, not at the deadline.
    let endless = format!("GET /{}", "a".repeat(2000));
    assert_eq!(lb_answer(&exchange(&lb, endless.as_bytes()).await), 414);
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: {}\r\n\r\n",
        "c".repeat(5000)
    );
    assert_eq!(lb_answer(&exchange(&lb, big_head.as_bytes()).await), 431);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\n{}\r\n",
        "X-A: b\r\n".repeat(20)
    );
    assert_eq!(lb_answer(&exchange(&lb, many.as_bytes()).await), 431);
    let connect = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
    assert_eq!(lb_answer(&exchange(&lb, connect).await), 405);
    let garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
    assert_eq!(lb_answer(&exchange(&lb, garbage).await), 400);

    // Just inside every limit, a request is served (absolute form, and a target pingora
    // escapes, too).
    let at_limits = format!(
        "GET /{} HTTP/1.1\r\nHost: a.test\r\n{}Connection: close\r\n\r\n",
        "a".repeat(1000),
        "X-A: b\r\n".repeat(18)
    );
    assert!(exchange(&lb, at_limits.as_bytes())
        .await
        .starts_with("HTTP/1.1 200"));
    let absolute = b"GET http://a.test/abs HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    assert!(exchange(&lb, absolute).await.starts_with("HTTP/1.1 200"));
    let escaped = b"GET /q?a=b c HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let answer = exchange(&lb, escaped).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(recorder.saw("GET /q?a=b%20c "));
    // What pingora's URI builder would refuse gets the lb's 400, not pingora's.
    let quotes = b"GET /q?a=\"b\" HTTP/1.1\r\nHost: a.test\r\n\r\n";
    assert_eq!(lb_answer(&exchange(&lb, quotes).await), 400);

    let m = scrape(&lb).await;
    assert_eq!(client_errors(&m, "uri_too_long"), 2.0);
    assert_eq!(client_errors(&m, "head_too_large"), 2.0);
    assert_eq!(client_errors(&m, "connect"), 1.0);
    assert_eq!(client_errors(&m, "malformed"), 2.0);
}

#[tokio::test]
async fn a_head_deadline_is_not_extended_by_trickling_bytes() {
    let (lb, _recorder) = lb_with_recorder().await;
    let mut conn = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    let started = Instant::now();
    // One byte every 100 ms: each read is quick, the whole head never completes.
    let request =
        b"GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut answer = Vec::new();
    for byte in request.iter() {
        if conn.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut peek = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), conn.peek(&mut peek)).await
        {
            if n > 0 {
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(lb_answer(&answer), 408, "{answer}");
    // The deadline is 1 s from accept; bytes kept arriving every 100 ms for 6 s.
    assert!(elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
    assert_eq!(client_errors(&scrape(&lb).await, "head_timeout"), 1.0);
}

/// A connection that has had one request answered 200, now idle.
async fn after_one_request(lb: &Lb) -> TcpStream {
    let mut kept = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    kept.write_all(b"GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    kept
}

/// Whether the lb closes `conn` within `limit`, sending nothing first.
async fn closed_silently(conn: &mut TcpStream, limit: Duration) -> bool {
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(limit, conn.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "an idle close sends nothing: {rest:?}");
    closed.is_ok()
}

#[tokio::test]
async fn idle_connections_are_closed_silently() {
    let (lb, _recorder) = lb_with_recorder().await;
    // A connection that never sends a byte, and one idle after a first request.
    let mut silent = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    let mut kept = after_one_request(&lb).await;
    for conn in [&mut silent, &mut kept] {
        assert!(
            closed_silently(conn, Duration::from_secs(5)).await,
            "an idle connection was kept past its deadline"
        );
    }
    assert_eq!(client_errors(&scrape(&lb).await, "head_timeout"), 0.0);
}

#[tokio::test]
async fn a_stopping_lb_closes_idle_keepalive_connections_at_once() {
    let recorder = Recorder::start().await;
    // A keep-alive wait far longer than the test, and a grace period the lb is still in
    // when the connection must be closed: only the shutdown signal can close it in time.
    let server =
        "  client_timeouts: { keepalive: 120s }\n  grace_period: 30s\n  shutdown_timeout: 1s\n";
    let mut lb = Lb::start(server, &body(recorder.addr));
    lb.wait_ready().await;
    let mut kept = after_one_request(&lb).await;
    lb.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        closed_silently(&mut kept, Duration::from_secs(15)).await,
        "an idle keep-alive connection was kept open by a stopping lb"
    );
    assert!(
        lb.is_running(),
        "closed only because the lb exited, not by the shutdown signal"
    );
}

#[tokio::test]
async fn a_body_slower_than_its_deadline_gets_408() {
    let (lb, _recorder) = lb_with_recorder().await;
    let mut conn = TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    // Ten bytes every 300 ms would take 3 s; the deadline is 1 s.
    for _ in 0..10 {
        if conn.write_all(&[b'x'; 10]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(lb_answer(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(client_errors(&scrape(&lb).await, "body_timeout") >= 1.0);
    assert!(!lb.log().contains("\"level\":\"ERROR\""), "{}", lb.log());
}

/// curl over h2c: (status, body).
async fn h2c_get(url: &str, headers: &[String]) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "--http2-prior-knowledge",
        "-o",
        "-",
    ]);
    cmd.args(["-w", "\n%{http_code} %{http_version}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .await
        .expect("curl (deploy/bootstrap.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut tail = tail.split(' ');
    let status = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert_eq!(tail.next(), Some("2"), "curl spoke h2: {text}");
    (status, body.to_string())
}

#[tokio::test]
async fn h2_requests_are_held_to_the_same_limits() {
    let recorder = Recorder::start().await;
    let mut lb = Lb::start(&format!("{LIMITS}  h2c: true\n"), &body(recorder.addr));
    lb.wait_ready().await;
    let (status, _) = h2c_get(&lb.url("/fine"), &[]).await;
    assert_eq!(status, 200);
    let long = lb.url(&format!("/{}", "a".repeat(1100)));
    let (status, body) = h2c_get(&long, &[]).await;
    assert_eq!(status, 414, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["error"], "request target too long");
    let many: Vec<String> = (0..25).map(|i| format!("x-h{i}: v")).collect();
    let (status, _) = h2c_get(&lb.url("/many"), &many).await;
    assert_eq!(status, 431);
    assert!(!recorder.saw("/aaaa") && !recorder.saw("/many"));
    let m = scrape(&lb).await;
    assert_eq!(client_errors(&m, "uri_too_long"), 1.0);
    assert_eq!(client_errors(&m, "head_too_large"), 1.0);
}
