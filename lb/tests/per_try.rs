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

    // Direct path (body-less GETs), over keep-alive connections.
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
