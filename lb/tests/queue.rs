//! Hold instead of failing: with no healthy backend, a request waits up to the pool's
//! `queue_timeout` for one (served when a check passes again), at most `queue_max` wait at
//! once, and the rest get the 503 at once. Counted in `lb_queue_total{result}`.

mod support;

use std::time::{Duration, Instant};

use support::{client, metric, scrape, Lb, Stub};

fn body(app: &Stub, queue: &str) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n    \
         health_check: {{ path: /ready, interval: 100ms, timeout: 200ms, unhealthy_after: 1 }}\n{queue}",
        app.addr
    )
}

/// Take the only backend out of rotation (its /ready fails) and wait until the lb sees it.
async fn all_unhealthy(app: &Stub, lb: &Lb) {
    app.set_ready(false);
    support::eventually(Duration::from_secs(10), "no healthy backend", || async {
        metric(&scrape(lb).await, "lb_backends{state=healthy,upstream=app}") == 0.0
    })
    .await;
}

async fn queue(lb: &Lb, result: &str) -> f64 {
    metric(
        &scrape(lb).await,
        &format!("lb_queue_total{{result={result},upstream=app}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_backend_to_become_healthy() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&app, ""));
    lb.wait_ready().await;
    all_unhealthy(&app, &lb).await;

    let url = lb.url("/held");
    let started = Instant::now();
    let request = tokio::spawn(async move { client().get(url).send().await });
    support::eventually(Duration::from_secs(5), "the request is held", || async {
        metric(&scrape(&lb).await, "lb_queue_waiting{upstream=app}") == 1.0
    })
    .await;
    app.set_ready(true);
    let resp = request.await.expect("task").expect("response");
    assert_eq!(resp.status(), 200, "held, then served");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queue(&lb, "served").await, 1.0);
    assert_eq!(queue(&lb, "timeout").await, 0.0);
    assert_eq!(
        metric(&scrape(&lb).await, "lb_queue_waiting{upstream=app}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_ends_in_a_503_after_queue_timeout() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&app, "    queue_timeout: 400ms\n"));
    lb.wait_ready().await;
    all_unhealthy(&app, &lb).await;

    let started = Instant::now();
    let resp = client().get(lb.url("/x")).send().await.expect("response");
    let waited = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert_eq!(queue(&lb, "timeout").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_queue_max_the_503_comes_at_once() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&app, "    queue_timeout: 3s\n    queue_max: 1\n"));
    lb.wait_ready().await;
    all_unhealthy(&app, &lb).await;

    let url = lb.url("/first");
    let first = tokio::spawn(async move { client().get(url).send().await });
    support::eventually(
        Duration::from_secs(5),
        "the first request is held",
        || async { metric(&scrape(&lb).await, "lb_queue_waiting{upstream=app}") == 1.0 },
    )
    .await;
    let started = Instant::now();
    let second = client()
        .get(lb.url("/second"))
        .send()
        .await
        .expect("response");
    assert_eq!(second.status(), 503, "the queue is full");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queue(&lb, "full").await, 1.0);
    app.set_ready(true);
    let first = first.await.expect("task").expect("response");
    assert_eq!(first.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_settings_are_checked() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let (code, text) = support::lb::check_text(&format!(
        "version: 1\n{}",
        body(&app, "    queue_timeout: 2m\n    queue_max: 0\n")
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("upstreams.app.queue_timeout: "), "{text}");
    assert!(
        text.contains("upstreams.app.queue_max: 0 must be at least 1"),
        "{text}"
    );
}
