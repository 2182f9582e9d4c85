//! The proxy path against stub upstreams: routing, round robin, headers, lb-generated
//! errors, signals.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{client, spread, Lb, Stub};

fn static_pool(name: &str, stubs: &[&Stub], extra: &str) -> String {
    let addrs: Vec<String> = stubs.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    format!(
        "  {name}:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: 200ms, timeout: 200ms, unhealthy_after: 1 }}\n{extra}",
        addrs.join(", ")
    )
}

/// One stub ("app") behind a ready lb routing `/` to it.
async fn single_backend(pool_extra: &str) -> (Stub, Lb) {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n{}",
        static_pool("app", &[&app], pool_extra)
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    (app, lb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_longest_prefix() {
    let api = Stub::start("api", "127.0.0.1:0").await;
    let web = Stub::start("web", "127.0.0.1:0").await;
    let special = Stub::start("special", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\n  - {{ prefix: /api/special/, upstream: special, strip_prefix: true }}\n  - {{ prefix: /api/, upstream: api }}\nupstreams:\n{}{}{}",
        static_pool("api", &[&api], ""),
        static_pool("web", &[&web], ""),
        static_pool("special", &[&special], ""),
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let c = client();
    let get = |path: &str| {
        let c = c.clone();
        let url = lb.url(path);
        async move {
            c.get(url)
                .send()
                .await
                .expect("get")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(get("/api/hello").await["id"], "api");
    assert_eq!(get("/api/hello").await["path"], "/api/hello");
    assert_eq!(get("/").await["id"], "web");
    assert_eq!(get("/index.html").await["id"], "web");
    let s = get("/api/special/x?y=1").await;
    assert_eq!(s["id"], "special");
    assert_eq!(s["path"], "/x?y=1", "strip_prefix removes the route prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_json() {
    let api = Stub::start("api", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /api/, upstream: api }}\nupstreams:\n{}",
        static_pool("api", &[&api], "")
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let resp = client()
        .get(lb.url("/nowhere"))
        .header("x-request-id", "lost-1")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "lost-1");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 404);
    assert_eq!(v["request_id"], "lost-1");
    assert!(v["error"].is_string());
    assert_eq!(api.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let c = Stub::start("c", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n{}",
        static_pool("app", &[&a, &b, &c], "")
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let counts = spread(&client(), &lb.url("/x"), 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for id in ["a", "b", "c"] {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!((99..=101).contains(&n), "{id} got {n}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_and_request_id_headers() {
    let (_app, lb) = single_backend("").await;
    let c = client();

    // valid id: kept, forwarded, echoed; XFF appended; Host kept
    let resp = c
        .get(lb.url("/h"))
        .header("x-request-id", "abc-123.X:y_z")
        .header("x-forwarded-for", "203.0.113.7")
        .header("host", "example.test")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "abc-123.X:y_z");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["request_id"], "abc-123.X:y_z");
    assert_eq!(v["xff"], "203.0.113.7, 127.0.0.1");
    assert_eq!(v["host"], "example.test");
    assert_eq!(v["xfh"], "example.test");
    assert_eq!(v["xfp"], "http");
    assert_eq!(
        v["x_secret"], "",
        "headers nominated by Connection are hop-by-hop"
    );

    // invalid id: replaced by a fresh UUID, the same one upstream and to the client
    let resp = c
        .get(lb.url("/h"))
        .header("x-request-id", "not valid; <script>")
        .send()
        .await
        .expect("get");
    let echoed = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_ne!(echoed, "not valid; <script>");
    assert_eq!(echoed.len(), 36, "a UUID: {echoed}");
    assert_eq!(v["request_id"], echoed.as_str());
    assert_eq!(v["xff"], "127.0.0.1");

    // absent: generated
    let resp = c.get(lb.url("/h")).send().await.expect("get");
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_is_503_with_retry_after() {
    // Two addresses nothing listens on: the first health check fails, so neither is
    // ever admitted and the answer needs no connect attempt.
    let ((dead1, _held1), (dead2, _held2)) = (
        support::dead_addr("127.0.0.1"),
        support::dead_addr("127.0.0.1"),
    );
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{dead1}\", \"{dead2}\"] }}\n    \
         health_check: {{ path: /ready, interval: 200ms, timeout: 200ms }}\n    timeouts: {{ connect: 5s }}\n    queue_timeout: 0s\n"
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let started = Instant::now();
    let resp = client().get(lb.url("/x")).send().await.expect("get");
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 503);
    assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        elapsed < Duration::from_secs(5),
        "503 must not wait for a connect timeout ({elapsed:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let (_app, lb) = single_backend("    timeouts: { read: 300ms }\n").await;
    let resp = client()
        .get(lb.url("/slow?ms=3000"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 504);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], 504);
    assert!(
        !v.to_string().contains("127.0.0.1"),
        "no internals in the body: {v}"
    );
    // a fast request still works afterwards
    let ok = client().get(lb.url("/fast")).send().await.expect("get");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_request_and_exits_0() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n{}",
        static_pool("app", &[&app], "")
    );
    // access-log lines may wait 10 s in their buffer: only the flush at exit writes this
    // request's line before the process is gone
    let mut lb = Lb::start("  access_log_flush: 10s", &body);
    lb.wait_ready().await;
    let url = lb.url("/slow?ms=1200");
    let slow =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    support::eventually(
        Duration::from_secs(5),
        "slow request reaches the upstream",
        || {
            let n = app.in_flight();
            async move { n == 1 }
        },
    )
    .await;
    lb.signal(Signal::SIGTERM);
    // while draining, the admin listener still answers, and /ready says 503
    let http = client();
    let ready_url = lb.admin_url("/ready");
    support::eventually(
        Duration::from_secs(2),
        "/ready is 503 while draining",
        || {
            let (http, url) = (http.clone(), ready_url.clone());
            async move { matches!(http.get(url).send().await, Ok(r) if r.status() == 503) }
        },
    )
    .await;
    let status = slow.await.expect("join").expect("slow request completes");
    assert_eq!(status, 200);
    // grace_period 2s + shutdown_timeout 1s, plus a margin
    let exit = lb
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("exits within the grace time");
    assert_eq!(exit.code(), Some(0), "log:\n{}", lb.log());
    let log = lb.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"target\":\"access\"") && l.contains("\"path\":\"/slow\"")),
        "the in-flight request's access line is written at exit:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_does_not_kill() {
    let (_app, mut lb) = single_backend("").await;
    lb.signal(Signal::SIGHUP);
    support::eventually(Duration::from_secs(5), "SIGHUP reload logged", || {
        let logged = lb.log().contains("configuration reloaded");
        async move { logged }
    })
    .await;
    assert!(lb.is_running());
    let resp = client()
        .get(lb.url("/after-hup"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_structured_line_per_request() {
    let (app, lb) = single_backend("").await;
    client()
        .get(lb.url("/logged"))
        .header("x-request-id", "log-me-1")
        .send()
        .await
        .expect("get");
    let mut line = None;
    support::eventually(Duration::from_secs(5), "access log line", || {
        line = lb
            .log()
            .lines()
            .find(|l| l.contains("log-me-1"))
            .map(str::to_string);
        let found = line.is_some();
        async move { found }
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("JSON log line");
    assert_eq!(v["target"], "access");
    assert_eq!(v["request_id"], "log-me-1");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/logged");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "/");
    assert_eq!(v["upstream"], "app");
    assert_eq!(v["backend"], app.addr.to_string());
    assert_eq!(v["tries"], 1);
    assert_eq!(v["client_ip"], "127.0.0.1");
    assert!(
        v["duration_ms"].is_number() && v["bytes_out"].is_number() && v["bytes_in"].is_number()
    );
    assert!(v["timestamp"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_follows_readiness() {
    let (_app, lb) = single_backend("").await;
    let out = std::process::Command::new(support::lb::bin())
        .args(["healthcheck", "--url", &lb.admin_url("/ready")])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // without --url, the admin address comes from the config file (a copy naming the
    // bound admin port: the test config says `:0`)
    let conf = std::fs::read_to_string(lb.config_path()).expect("config");
    let pinned = lb.config_path().with_file_name("pinned.yaml");
    let admin = format!("admin: \"127.0.0.1:{}\"", lb.admin);
    std::fs::write(&pinned, conf.replace("admin: \"127.0.0.1:0\"", &admin)).expect("write");
    let out = std::process::Command::new(support::lb::bin())
        .arg("healthcheck")
        .arg("-c")
        .arg(&pinned)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
