//! Health checks and failover with real sockets: a backend killed or added under load
//! costs no request.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::dns::Answer;
use support::{client, spread, DnsServer, Lb, Load, Stub};

const HEALTH: &str = "    health_check: { path: /ready, interval: 200ms, timeout: 200ms, healthy_after: 1, unhealthy_after: 2 }\n";

fn static_config(stubs: &[&Stub]) -> String {
    let addrs: Vec<String> = stubs.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n{HEALTH}    retries: 2\n",
        addrs.join(", ")
    )
}

fn ids(counts: &std::collections::BTreeMap<String, usize>) -> BTreeSet<String> {
    counts.keys().cloned().collect()
}

/// POST number `i` to `/submit`.
async fn post(http: &reqwest::Client, lb: &Lb, i: usize) -> reqwest::Response {
    let body = format!("n={i}");
    http.post(lb.url("/submit"))
        .body(body)
        .send()
        .await
        .expect("post")
}

/// A pool `app` of `addrs` with no health check.
fn unchecked_pool(addrs: &[String], retries: usize) -> String {
    let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    retries: {retries}\n",
        quoted.join(", ")
    )
}

/// An address that refuses connections while the returned socket lives.
fn dead_addr() -> (String, tokio::net::TcpSocket) {
    let (addr, socket) = support::dead_addr("127.0.0.1");
    (addr.to_string(), socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backend_leaves_rotation_and_returns() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let c = Stub::start("c", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &static_config(&[&a, &b, &c]));
    lb.wait_ready().await;
    let http = client();
    let url = lb.url("/x");

    // /ready says 503 (draining): out within interval x unhealthy_after (400 ms) + margin
    b.set_ready(false);
    support::until_serving(&http, &url, "b", false, Duration::from_secs(5)).await;
    let counts = spread(&http, &url, 30).await;
    assert_eq!(
        ids(&counts),
        ["a", "c"].map(String::from).into(),
        "{counts:?}"
    );

    b.set_ready(true);
    support::until_serving(&http, &url, "b", true, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_loses_nothing() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let mut b = Stub::start("b", "127.0.0.1:0").await;
    let c = Stub::start("c", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &static_config(&[&a, &b, &c]));
    lb.wait_ready().await;

    let load = Load::start(&lb.url("/x"), 2000, 8);
    load.reached(500).await;
    b.stop().await;
    let result = load.finish().await;
    result.assert_no_failures(2000);
    assert!(
        result.by_id.get("b").copied().unwrap_or(0) > 0,
        "b served before it died"
    );
    assert!(
        lb.log().contains("\"tries\":2"),
        "some requests failed over to a second backend"
    );

    // b was really taken out: later traffic reaches only a and c
    let counts = spread(&client(), &lb.url("/x"), 20).await;
    assert_eq!(
        ids(&counts),
        ["a", "c"].map(String::from).into(),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_added_slow_to_listen_under_load_loses_nothing() {
    // Same port on 127.0.0.2..=5: DNS A records carry no port.
    let a = Stub::start("a", "127.0.0.2:0").await;
    let port = a.addr.port();
    let b = Stub::start("b", &format!("127.0.0.3:{port}")).await;
    let c = Stub::start("c", &format!("127.0.0.4:{port}")).await;
    let mut d = Stub::new("d", format!("127.0.0.5:{port}").parse().expect("addr"));
    let ip = |s: &Stub| match s.addr.ip() {
        std::net::IpAddr::V4(v4) => v4,
        _ => unreachable!(),
    };
    let dns = DnsServer::start(Answer::Records(vec![ip(&a), ip(&b), ip(&c)])).await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ dns: \"app.test:{port}\", interval: 300ms, resolver: \"{}\" }}\n{HEALTH}    retries: 2\n",
        dns.addr
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;

    let load = Load::start(&lb.url("/x"), 2000, 8);
    load.reached(300).await;
    // publish d before it listens: connects to it are refused until it starts
    dns.set(Answer::Records(vec![ip(&a), ip(&b), ip(&c), ip(&d)]));
    load.reached(1000).await;
    d.start_again().await;
    let result = load.finish().await;
    result.assert_no_failures(2000);

    // once listening and healthy, d takes its share
    let http = client();
    let url = lb.url("/x");
    support::until_serving(&http, &url, "d", true, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_for_any_method() {
    // No health check: the dead address stays in rotation, so every other request first
    // hits a refused connect. Nothing was sent, so even POST moves on to the live one.
    let alive = Stub::start("alive", "127.0.0.1:0").await;
    let (dead, _held) = dead_addr();
    let mut lb = Lb::start("", &unchecked_pool(&[dead, alive.addr.to_string()], 1));
    lb.wait_ready().await;
    let http = client();
    for i in 0..6 {
        let resp = post(&http, &lb, i).await;
        assert_eq!(resp.status(), 200, "POST {i}");
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["id"], "alive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_502() {
    let ((dead1, _held1), (dead2, _held2)) = (dead_addr(), dead_addr());
    let mut lb = Lb::start("", &unchecked_pool(&[dead1.clone(), dead2.clone()], 2));
    lb.wait_ready().await;
    let resp = client().get(lb.url("/x")).send().await.expect("get");
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 502);
    // a request with a body goes through pingora's engine: same answer
    let posted = client()
        .post(lb.url("/x"))
        .body("payload")
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 502);
    // the direct path logs its own failure record; pingora's own `log` records reach our
    // JSON log through the tracing bridge (checked by their target, not their wording,
    // which is pingora's to change)
    support::eventually(
        Duration::from_secs(5),
        "our failure record and bridged pingora records in the log",
        || {
            let log = lb.log();
            let direct = log
                .lines()
                .any(|l| l.contains("\"fail to proxy\"") && l.contains("\"path\":\"/x\""));
            let bridged = log.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                    v["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("pingora"))
                })
            });
            async move { direct && bridged }
        },
    )
    .await;
    assert!(
        !v.to_string().contains(&dead1) && !v.to_string().contains(&dead2),
        "no internals: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sending_only_idempotent_requests_are_retried() {
    // `bad` reads each request, then closes the connection without answering; its health
    // check still passes, so it stays in rotation.
    let bad = Stub::start("bad", "127.0.0.1:0").await;
    let good = Stub::start("good", "127.0.0.1:0").await;
    bad.set_dropping(true);
    // Outlier ejection off: it would take `bad` out after five failures, before the POSTs
    // this test sends it (tests/balance.rs covers ejection).
    let config = format!("{}    outlier: off\n", static_config(&[&bad, &good]));
    let mut lb = Lb::start("", &config);
    lb.wait_ready().await;
    let http = client();

    for i in 0..6 {
        let resp = http.get(lb.url("/idempotent")).send().await.expect("get");
        assert_eq!(resp.status(), 200, "GET {i} is retried on the good backend");
    }
    assert!(bad.hits() > 0, "some GETs reached the bad backend first");

    let (bad_before, good_before) = (bad.hits(), good.hits());
    let mut failed = 0;
    for i in 0..6 {
        let resp = post(&http, &lb, i).await;
        match resp.status().as_u16() {
            200 => {}
            502 => failed += 1,
            other => panic!("POST {i}: unexpected {other}"),
        }
    }
    let (bad_posts, good_posts) = (bad.hits() - bad_before, good.hits() - good_before);
    assert!(failed > 0, "round robin sent some POSTs to the bad backend");
    assert_eq!(
        failed, bad_posts,
        "every POST the bad backend swallowed is a 502, never retried"
    );
    assert_eq!(bad_posts + good_posts, 6, "no POST was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_retried_once_the_response_started() {
    // `half` sends a 200 head and part of the body, then cuts the connection. The client
    // has started receiving that response, so the lb must not replay the GET elsewhere.
    let half = Stub::start("half", "127.0.0.1:0").await;
    let good = Stub::start("good", "127.0.0.1:0").await;
    half.set_truncating(true);
    let mut lb = Lb::start("", &static_config(&[&half, &good]));
    lb.wait_ready().await;
    let http = client();
    let mut broken = 0;
    for _ in 0..6 {
        let complete = match http.get(lb.url("/stream")).send().await {
            Ok(resp) => resp.json::<serde_json::Value>().await.is_ok(),
            Err(_) => false,
        };
        broken += usize::from(!complete);
    }
    assert!(
        half.hits() > 0,
        "round robin reached the truncating backend"
    );
    assert_eq!(
        broken,
        half.hits(),
        "each cut response reaches the client as cut"
    );
    assert_eq!(half.hits() + good.hits(), 6, "no request was sent twice");
}
