//! Handler tests: every behaviour of the API through `app(state).oneshot(request)`.

use std::time::Duration;

use axum::{body::Body, Router};
use backend::{app, cli::Cli, AppState};
use clap::Parser;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A state built from command-line flags, exactly as `main` builds it.
fn state(flags: &[&str]) -> AppState {
    let args = ["backend", "--replica-id", "test-replica"]
        .iter()
        .chain(flags);
    AppState::new(&Cli::parse_from(args).serve)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(router: &Router, uri: &str) -> Reply {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn hello_is_the_original_contract() {
    let router = app(state(&[]));
    let reply = get(&router, "/api/hello").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.body, "Hello, World!");
}

#[tokio::test]
async fn head_hello_has_headers_and_no_body() {
    let router = app(state(&[]));
    let request = Request::head("/api/hello").body(Body::empty()).unwrap();
    let reply = send(&router, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.body, "");
}

#[tokio::test]
async fn whoami_names_the_replica_and_counts_api_requests() {
    let router = app(state(&[]));
    get(&router, "/api/hello").await;
    get(&router, "/health").await; // probes are not counted
    let request = Request::get("/api/whoami").header("x-request-id", "who-1");
    let reply = send(&router, request.body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json = reply.json();
    assert_eq!(json["replica"], "test-replica");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["requests_served"], 2);
    assert_eq!(json["request_id"], "who-1");
    let started_at = json["started_at"].as_str().unwrap();
    assert!(
        started_at.ends_with('Z') && started_at.contains('T'),
        "{started_at}"
    );
}

#[tokio::test]
async fn whoami_defaults_to_the_hostname() {
    let state = AppState::new(&Cli::parse_from(["backend"]).serve);
    let expected = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(state.replica, expected);
}

#[tokio::test]
async fn health_always_ok_ready_turns_503_when_draining() {
    let state = state(&[]);
    let router = app(state.clone());
    assert_eq!(get(&router, "/health").await.status, StatusCode::OK);
    let ready = get(&router, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.header("connection"), None);

    state.draining.start();
    let ready = get(&router, "/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["status"], "draining");
    // Still serving, but asking keep-alive clients to go elsewhere.
    let health = get(&router, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.header("connection"), Some("close"));
    assert_eq!(get(&router, "/api/hello").await.body, "Hello, World!");
}

/// A probe answer must never come from a cache: it would hide a drain.
#[tokio::test]
async fn probes_are_never_cached() {
    let state = state(&[]);
    let router = app(state.clone());
    for path in ["/health", "/ready"] {
        let reply = get(&router, path).await;
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    }
    state.draining.start();
    let ready = get(&router, "/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn unknown_path_is_json_404() {
    let router = app(state(&[]));
    for uri in ["/", "/api", "/api/hello/extra", "/nope?x=1", "/API/HELLO"] {
        let reply = get(&router, uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.body, r#"{"error":"not found"}"#, "{uri}");
    }
}

/// The test-only fault (`BACKEND_FAULT_STATUS`): every `/api/*` path fails with the
/// usual JSON error body, whatever the path, while the probes keep passing.
#[tokio::test]
async fn fault_status_fails_the_api_and_keeps_the_probes_passing() {
    let router = app(state(&["--fault-status", "500"]));
    for path in [
        "/api/hello",
        "/api/whoami",
        "/api/slow?ms=0",
        "/api/missing",
    ] {
        let reply = get(&router, path).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "internal server error"})
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert!(reply.header("x-request-id").is_some(), "{path}");
    }
    let ready = get(&router, "/ready").await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (StatusCode::OK, "ready".into())
    );
    assert_eq!(get(&router, "/health").await.status, StatusCode::OK);
    // Outside /api/ nothing changes.
    assert_eq!(get(&router, "/missing").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn fault_status_answers_the_configured_code() {
    let router = app(state(&["--fault-status", "503"]));
    let reply = get(&router, "/api/hello").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "service unavailable");
    // A code with no standard reason still gets the JSON shape.
    let reply = get(&app(state(&["--fault-status", "599"])), "/api/hello").await;
    assert_eq!(reply.status.as_u16(), 599);
    assert_eq!(reply.json()["error"], "server error");
}

#[tokio::test]
async fn without_fault_status_the_api_answers() {
    let state = state(&[]);
    assert_eq!(state.fault_status, None);
    let reply = get(&app(state), "/api/hello").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "Hello, World!")
    );
}

#[test]
fn invalid_fault_status_is_an_error_naming_the_variable() {
    for bad in ["abc", "404", "600", ""] {
        let error = Cli::try_parse_from(["backend", "--fault-status", bad]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("BACKEND_FAULT_STATUS"),
            "{bad:?}: {message}"
        );
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let router = app(state(&[]));
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/api/hello")
            .body(Body::empty())
            .unwrap();
        let reply = send(&router, request).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("GET,HEAD"));
        assert_eq!(reply.json()["error"], "method not allowed");
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let router = app(state(&["--body-limit", "16"]));
    let request = Request::post("/api/hello")
        .header(header::CONTENT_LENGTH, "17")
        .body(Body::from(vec![b'x'; 17]))
        .unwrap();
    let reply = send(&router, request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "payload too large");
}

#[tokio::test]
async fn slow_request_past_the_timeout_is_503() {
    let router = app(state(&["--request-timeout", "50ms"]));
    let reply = get(&router, "/api/slow?ms=5000").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "service unavailable");
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn slow_answers_after_the_delay_and_refuses_bad_input() {
    let router = app(state(&[]));
    let reply = get(&router, "/api/slow?ms=20").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["slept_ms"], 20);
    assert_eq!(reply.json()["replica"], "test-replica");
    for uri in ["/api/slow?ms=soon", "/api/slow?ms=-1", "/api/slow?ms=1.5"] {
        let reply = get(&router, uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.json()["error"].as_str().unwrap().contains("ms"));
    }
}

#[tokio::test(start_paused = true)]
async fn slow_is_clamped() {
    let router = app(state(&["--request-timeout", "1h"]));
    let reply = get(&router, "/api/slow?ms=99999999").await;
    assert_eq!(reply.json()["slept_ms"], backend::routes::MAX_SLOW_MS);
}

/// The clamp leaves room under the default `--request-timeout`: at the same 10 s, the
/// answer was 200 or 503 by timer rounding.
#[tokio::test(start_paused = true)]
async fn the_slowest_slow_request_answers_within_the_default_timeout() {
    let state = state(&[]);
    let timeout = state.request_timeout;
    let router = app(state);
    for uri in ["/api/slow?ms=10000", "/api/slow?ms=99999999"] {
        let reply = get(&router, uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        let slept = Duration::from_millis(reply.json()["slept_ms"].as_u64().unwrap());
        assert!(
            slept + Duration::from_millis(500) <= timeout,
            "{uri}: slept {slept:?}, too close to the {timeout:?} timeout"
        );
    }
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/api/hello")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-request-id")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin() {
    let router = app(state(&[]));
    let reply = send(&router, preflight("http://localhost:9000")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:9000")
    );
    assert_eq!(
        reply.header("access-control-allow-methods"),
        Some("GET,HEAD,OPTIONS")
    );
    let allowed_headers = reply.header("access-control-allow-headers").unwrap();
    assert!(
        allowed_headers.contains("x-request-id"),
        "{allowed_headers}"
    );
    assert_eq!(reply.header("access-control-max-age"), Some("600"));
}

#[tokio::test]
async fn cors_simple_request_from_an_allowed_origin() {
    let router = app(state(&["--cors-origins", "http://127.0.0.1:9000"]));
    let request = Request::get("/api/hello")
        .header(header::ORIGIN, "http://127.0.0.1:9000")
        .body(Body::empty())
        .unwrap();
    let reply = send(&router, request).await;
    assert_eq!(reply.body, "Hello, World!");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://127.0.0.1:9000")
    );
    assert_eq!(
        reply.header("access-control-expose-headers"),
        Some("x-request-id")
    );
}

#[tokio::test]
async fn cors_disallowed_origin_gets_no_allow_headers() {
    let router = app(state(&[]));
    let preflight = send(&router, preflight("http://evil.example")).await;
    let simple = send(
        &router,
        Request::get("/api/hello")
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    for reply in [preflight, simple] {
        assert_eq!(reply.header("access-control-allow-origin"), None);
        assert_eq!(reply.header("access-control-allow-methods"), None);
    }
}

#[tokio::test]
async fn cors_wildcard_only_when_configured() {
    let default = send(&app(state(&[])), preflight("http://anything.example")).await;
    assert_eq!(default.header("access-control-allow-origin"), None);
    let wildcard = app(state(&["--cors-origins", "*"]));
    let reply = send(&wildcard, preflight("http://anything.example")).await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let none = app(state(&["--cors-origins", ""]));
    let reply = send(&none, preflight("http://localhost:9000")).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

async fn request_id_for(router: &Router, incoming: Option<&str>) -> String {
    let mut request = Request::get("/api/hello");
    if let Some(id) = incoming {
        request = request.header("x-request-id", id);
    }
    let reply = send(router, request.body(Body::empty()).unwrap()).await;
    reply
        .header("x-request-id")
        .expect("an x-request-id")
        .into()
}

fn is_uuid_v4(id: &str) -> bool {
    id.len() == 36 && id.as_bytes()[14] == b'4' && id.split('-').count() == 5
}

#[tokio::test]
async fn a_valid_request_id_is_kept() {
    let router = app(state(&[]));
    for id in ["abc-123", "trace:01.span_02", &"x".repeat(128)] {
        assert_eq!(request_id_for(&router, Some(id)).await, id);
    }
}

#[tokio::test]
async fn a_missing_or_invalid_request_id_is_replaced() {
    let router = app(state(&[]));
    let generated = request_id_for(&router, None).await;
    assert!(is_uuid_v4(&generated), "{generated}");
    let too_long = "x".repeat(129);
    for bad in [
        too_long.as_str(),
        "has space",
        "semi;colon",
        "quote\"",
        "slash/",
    ] {
        let id = request_id_for(&router, Some(bad)).await;
        assert!(is_uuid_v4(&id), "{bad:?} was replaced by {id:?}");
    }
    // Two ids are ambiguous: replaced too.
    let request = Request::get("/api/hello")
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .body(Body::empty())
        .unwrap();
    let id = send(&router, request).await;
    assert!(is_uuid_v4(id.header("x-request-id").unwrap()));
}

#[tokio::test]
async fn error_responses_carry_request_id_and_nosniff() {
    let router = app(state(&[]));
    let reply = send(
        &router,
        Request::get("/nope")
            .header("x-request-id", "err-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.header("x-request-id"), Some("err-1"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test(start_paused = true)]
async fn drain_sequence_runs_in_order() {
    // serve() with an injected shutdown future: no signals, no real sleeping.
    let state = state(&["--drain", "3s", "--shutdown-timeout", "5s"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (trigger, shutdown) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(backend::serve(listener, state.clone(), async {
        let _ = shutdown.await;
    }));
    assert!(!state.draining.is_draining());
    trigger.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(state.draining.is_draining(), "draining starts at once");
    assert!(
        !server.is_finished(),
        "still serving during the drain window"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(server.is_finished(), "stopped after the drain window");
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_timeout_bounds_in_flight_requests() {
    use tokio::io::AsyncWriteExt;
    let state = state(&["--drain", "0s", "--shutdown-timeout", "200ms"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(backend::serve(listener, state.clone(), async {
        let _ = shutdown.await;
    }));
    // A request that would take far longer than the shutdown timeout.
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /api/slow?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    while state.requests_served() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    trigger.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    stopped
        .expect("serve returns once the shutdown timeout elapses")
        .unwrap()
        .unwrap();
}

/// A client that sends half a request head is disconnected after the header-read
/// timeout (30 s, on the paused clock), instead of holding its connection for ever.
#[tokio::test(start_paused = true)]
async fn a_half_sent_head_is_closed_after_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(backend::serve(listener, state(&[]), std::future::pending()));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    client
        .write_all(b"GET /api/hello HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let timeout = service_kit::server::HEADER_READ_TIMEOUT;
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(timeout * 3, client.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "still open after {:?}", timeout * 3);
    assert!(started.elapsed() >= timeout, "closed before the timeout");
}
