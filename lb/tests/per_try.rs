//! `timeouts.per_try`: a backend that accepts requests and never answers (hung, or cut off
//! the network with no reset) costs idempotent requests one `per_try` wait, then they are
//! sent to another backend instead of waiting out `read` and failing with 504.

mod support;

use support::{client, metric, scrape, Lb, Load, Stub};

/// A pool `app` of `stubs`, round robin, no health check (a stalled backend's probe would
/// pass anyway), 2 retries, with `timeouts`.
fn pool(stubs: &[&Stub], timeouts: &str) -> String {
    let addrs: Vec<String> = stubs.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    retries: 2\n    timeouts: {timeouts}\n",
        addrs.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_leave_a_silent_backend_after_per_try() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    a.set_stalled(true);
    // `read` far beyond the test's own timeouts: only `per_try` can end a try on `a`.
    let mut lb = Lb::start(
        "",
        &pool(&[&a, &b], "{ per_try: 200ms, read: 60s, connect: 1s }"),
    );
    lb.wait_ready().await;

    // Body-less GETs (the fast path), over keep-alive connections.
    let load = Load::start(&lb.url("/x"), 60, 4);
    let result = load.finish().await;
    result.assert_no_failures(60);
    assert_eq!(result.by_id.keys().collect::<Vec<_>>(), ["b"], "{result:?}");
    assert!(a.hits() > 0, "a was tried (and stalled)");

    // Engine path: an idempotent PUT with a body, twice, so round robin offers `a` once.
    let http = client();
    for i in 0..2 {
        let resp = http
            .put(lb.url("/put"))
            .body(format!("n={i}"))
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["id"], "b");
    }

    let m = scrape(&lb).await;
    let per_try = metric(&m, "lb_retries_total{reason=per_try_timeout,upstream=app}");
    assert!(per_try >= 2.0, "per-try retries counted: {per_try}");
    assert!(
        lb.log().contains("\"tries\":2"),
        "requests were served on their second try"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_resent_after_per_try() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    a.set_stalled(true);
    // A POST may have been acted on: it waits `read` (1 s here) and gets 504, never a
    // second try.
    let mut lb = Lb::start("", &pool(&[&a, &b], "{ per_try: 100ms, read: 1s }"));
    lb.wait_ready().await;
    let http = client();
    let mut statuses = Vec::new();
    for i in 0..2 {
        let resp = http
            .post(lb.url("/submit"))
            .body(format!("n={i}"))
            .send()
            .await
            .expect("post");
        statuses.push(resp.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 504]);
    assert_eq!(a.hits(), 1, "the POST reached a once");
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_retries_total{reason=per_try_timeout,upstream=app}"),
        0.0
    );
}

#[test]
fn per_try_longer_than_read_is_refused() {
    let (code, out) = support::lb::check_text(
        "version: 1\nroutes:\n  - { prefix: /, upstream: app }\nupstreams:\n  app:\n    discovery: { static: [\"127.0.0.1:1\"] }\n    timeouts: { read: 2s, per_try: 5s }\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("upstreams.app.timeouts.per_try: \"5s\" is longer than timeouts.read"),
        "{out}"
    );
}

/// A backend that answers every request with `102 Processing`, again every 100 ms, and never
/// with a final head: a stand-in for a hung backend that keeps its connection busy.
async fn interim_forever() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(conn.read(&mut buf).await, Ok(0) | Err(_)) {
                    return;
                }
                while conn
                    .write_all(b"HTTP/1.1 102 Processing\r\n\r\n")
                    .await
                    .is_ok()
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            });
        }
    });
    addr
}

/// `per_try` bounds the whole response head: interim answers arriving more often than
/// `per_try` do not hold a try (they restarted a per-read timer, so the request waited for
/// ever), on the fast path and on the direct path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_do_not_hold_a_try_past_per_try() {
    let interim = interim_forever().await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    for fast_path in [true, false] {
        let body = format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{interim}\", \"{}\"] }}\n    retries: 2\n    timeouts: {{ per_try: 500ms, read: 60s, connect: 1s }}\n",
            b.addr
        );
        let mut lb = Lb::start(&format!("  fast_path: {fast_path}\n"), &body);
        lb.wait_ready().await;
        let http = client();
        // Four requests: round robin offers the interim backend at least once.
        for _ in 0..4 {
            let resp = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                http.get(lb.url("/x")).send(),
            )
            .await
            .unwrap_or_else(|_| panic!("fast_path {fast_path}: no answer within 20 s"))
            .expect("get");
            assert_eq!(resp.status(), 200, "fast_path {fast_path}");
            let v: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(v["id"], "b", "fast_path {fast_path}");
        }
        let m = scrape(&lb).await;
        let per_try = metric(&m, "lb_retries_total{reason=per_try_timeout,upstream=app}");
        assert!(per_try >= 1.0, "fast_path {fast_path}: {per_try}");
    }
}
