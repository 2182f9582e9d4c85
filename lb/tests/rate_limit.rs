//! `routes[].rate_limit` against the real binary: 429 with the lb's JSON and the
//! `RateLimit-*` headers before any backend is contacted, on both request paths; one count
//! per client IP (distinct loopback source addresses); `X-Forwarded-For` believed only from
//! `server.trusted_proxies`; a reload that changes the limit; `lb -t` on bad values.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use support::{access_line, metric, scrape, Lb, Stub};

/// `/limited/` allows `limit` requests per minute per client (a window long enough that
/// none ends during a test); `/` is not limited.
fn body(stub: &Stub, limit: &str) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\n  - {{ prefix: /limited/, upstream: web{limit} }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

const THREE_PER_MINUTE: &str = ", rate_limit: { requests: 3, per: 1m }";

/// A client whose connections come from `source` (any 127.0.0.0/8 address is local).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_string())
}

/// A header that must be there and hold a whole number.
fn number(resp: &reqwest::Response, name: &str) -> u64 {
    let text = header(resp, name).unwrap_or_else(|| panic!("no {name}"));
    text.parse().unwrap_or_else(|_| panic!("{name}: {text:?}"))
}

/// GET `path` with extra headers: (status, RateLimit-Remaining).
async fn get(
    client: &reqwest::Client,
    lb: &Lb,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>) {
    let mut req = client.get(lb.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    (resp.status().as_u16(), header(&resp, "ratelimit-remaining"))
}

/// The statuses of `n` GETs in a row.
async fn statuses(
    client: &reqwest::Client,
    lb: &Lb,
    path: &str,
    xff: Option<&str>,
    n: usize,
) -> Vec<u16> {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(client, lb, path, &headers).await.0);
    }
    out
}

#[tokio::test]
async fn over_the_limit_is_a_429_with_headers_before_any_backend() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub, THREE_PER_MINUTE));
    lb.wait_ready().await;
    let client = client_from("127.0.0.1");

    // Allowed: two GETs (the direct path: a route with `rate_limit` never takes the fast
    // path) and a POST (the engine path), each with the headers.
    for (i, remaining) in ["2", "1", "0"].into_iter().enumerate() {
        let id = format!("allowed-{i}");
        let req = if i < 2 {
            client.get(lb.url("/limited/x"))
        } else {
            client.post(lb.url("/limited/x")).body("hello")
        };
        let resp = req
            .header("x-request-id", &id)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&resp, "ratelimit-remaining").as_deref(),
            Some(remaining)
        );
        assert_eq!(header(&resp, "ratelimit-policy").as_deref(), Some("3;w=60"));
        let reset = number(&resp, "ratelimit-reset");
        assert!((61..=120).contains(&reset), "reset {reset}");
        assert_eq!(header(&resp, "retry-after"), None);
        let pipeline = if i < 2 { "direct" } else { "engine" };
        assert_eq!(access_line(&lb, &id).await["pipeline"], pipeline);
    }
    let hits = stub.hits();
    assert_eq!(hits, 3);

    // Over the limit: a body-less GET (which would take the direct path).
    let resp = client
        .get(lb.url("/limited/x"))
        .header("x-request-id", "limited-1")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(&resp, "server"), None, "no Server: Pingora");
    assert_eq!(header(&resp, "x-request-id").as_deref(), Some("limited-1"));
    assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(header(&resp, "ratelimit-remaining").as_deref(), Some("0"));
    let retry = number(&resp, "retry-after");
    assert!((1..=61).contains(&retry), "retry-after {retry}");
    let reset = number(&resp, "ratelimit-reset");
    assert!(reset >= retry, "reset {reset} < retry-after {retry}");
    let json: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        json,
        serde_json::json!({"error": "too many requests", "status": 429, "request_id": "limited-1"})
    );
    assert_eq!(access_line(&lb, "limited-1").await["status"], 429);

    // A request with a body (which would take the engine path): refused before the body
    // is read, and the connection closes after the answer.
    let resp = client
        .post(lb.url("/limited/upload"))
        .header("x-request-id", "limited-2")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "connection").as_deref(), Some("close"));
    assert!(header(&resp, "retry-after").is_some());
    let json: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(json["request_id"], "limited-2");
    assert_eq!(stub.hits(), hits, "no backend was contacted");

    // Other routes are not limited and carry no RateLimit headers.
    let resp = client.get(lb.url("/other")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "ratelimit-limit"), None);

    let m = scrape(&lb).await;
    assert_eq!(metric(&m, "lb_rate_limited_total{route=/limited/}"), 2.0);
    // Every client was tracked: the series exists, at 0.
    assert_eq!(
        m.get("lb_rate_limit_untracked_total{route=/limited/}"),
        Some(&0.0)
    );
    assert_eq!(
        metric(
            &m,
            "lb_requests_total{code_class=4xx,route=/limited/,upstream=web}"
        ),
        2.0
    );
}

#[tokio::test]
async fn each_client_ip_has_its_own_count() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub, THREE_PER_MINUTE));
    lb.wait_ready().await;

    let (a, b) = (client_from("127.0.0.21"), client_from("127.0.0.22"));
    assert_eq!(
        statuses(&a, &lb, "/limited/", None, 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        statuses(&b, &lb, "/limited/", None, 4).await,
        [200, 200, 200, 429]
    );
    // Without trusted proxies, X-Forwarded-For is the client's own word: ignored.
    assert_eq!(
        statuses(&a, &lb, "/limited/", Some("198.51.100.1"), 1).await,
        [429]
    );
    assert_eq!(stub.hits(), 6);
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_trusted_proxies() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        "  trusted_proxies: [127.0.0.31, 10.0.0.0/8]\n",
        &body(&stub, THREE_PER_MINUTE),
    );
    lb.wait_ready().await;
    let proxy = client_from("127.0.0.31");
    let stranger = client_from("127.0.0.32");

    // Through the trusted proxy, each forwarded client has its own count.
    let one = Some("198.51.100.1");
    assert_eq!(
        statuses(&proxy, &lb, "/limited/", one, 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        statuses(&proxy, &lb, "/limited/", Some("198.51.100.2"), 3).await,
        [200, 200, 200]
    );
    // The rightmost untrusted entry counts: a client cannot pose as another by writing
    // its own X-Forwarded-For in front, and trusted hops (10.x) are skipped.
    assert_eq!(
        statuses(
            &proxy,
            &lb,
            "/limited/",
            Some("203.0.113.9, 198.51.100.1, 10.1.2.3"),
            1
        )
        .await,
        [429]
    );
    // The proxy's own requests (no header) count under its own address.
    assert_eq!(
        statuses(&proxy, &lb, "/limited/", None, 3).await,
        [200, 200, 200]
    );

    // A peer that is not trusted cannot choose its key: one count whatever it sends.
    let mut got = Vec::new();
    for i in 0..4 {
        let xff = format!("198.51.100.{}", 100 + i);
        got.extend(statuses(&stranger, &lb, "/limited/", Some(&xff), 1).await);
    }
    assert_eq!(got, [200, 200, 200, 429]);
}

#[tokio::test]
async fn a_reload_changes_the_limit_and_keeps_the_counts() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&stub, ", rate_limit: { requests: 2, per: 1m }"));
    lb.wait_ready().await;
    let client = client_from("127.0.0.41");
    assert_eq!(
        statuses(&client, &lb, "/limited/", None, 3).await,
        [200, 200, 429]
    );

    let reload = |lb: &Lb| {
        let out = lb.run_command(&["reload"]);
        assert!(
            out.status.success(),
            "lb reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A higher number: the two already counted stay, two more fit.
    lb.write_config("", &body(&stub, ", rate_limit: { requests: 4, per: 1m }"));
    reload(&lb);
    let resp = client.get(lb.url("/limited/")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("4"));
    assert_eq!(header(&resp, "ratelimit-remaining").as_deref(), Some("1"));
    assert_eq!(
        statuses(&client, &lb, "/limited/", None, 2).await,
        [200, 429]
    );

    // No limit at all.
    lb.write_config("", &body(&stub, ""));
    reload(&lb);
    let (status, remaining) = get(&client, &lb, "/limited/", &[]).await;
    assert_eq!((status, remaining), (200, None));

    // A limit again, on a route that had none: a fresh count.
    lb.write_config("", &body(&stub, ", rate_limit: { requests: 1, per: 1m }"));
    reload(&lb);
    assert_eq!(
        statuses(&client, &lb, "/limited/", None, 2).await,
        [200, 429]
    );
}

#[test]
fn lb_t_names_bad_rate_limits_and_trusted_proxies() {
    let (code, out) = support::lb::check_text(
        "version: 1\nserver:\n  trusted_proxies: [10.0.0.0/8, 10.0.0.0/40, proxy]\nroutes:\n  - { prefix: /, upstream: web, rate_limit: { requests: 0, per: 500ms } }\n  - { prefix: /a/, upstream: web, rate_limit: { requests: 5 } }\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:1\"] } }\n",
    );
    assert_eq!(code, Some(2), "{out}");
    for expected in [
        "server.trusted_proxies[1]: \"10.0.0.0/40\" is not an IP address or CIDR",
        "server.trusted_proxies[2]: \"proxy\" is not an IP address or CIDR",
        "routes[0].rate_limit.requests: 0 must be from 1 to 1000000000",
        "routes[0].rate_limit.per: \"500ms\" must be a whole number of seconds from 1s to 1h",
        "routes[1].rate_limit.per: missing",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let (code, out) = support::lb::check_text(
        "version: 1\nroutes:\n  - { prefix: /, upstream: web, rate_limit: { requests: 5, per: 1s, burst: 10 } }\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:1\"] } }\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown field `burst`"), "{out}");
}
