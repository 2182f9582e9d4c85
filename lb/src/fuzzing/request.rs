//! The request path up to the backend: the bytes a client sends, read by pingora's HTTP/1
//! parser from an in-memory stream, then the lb's request stage and upstream request.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Config, LoadedConfig};
use crate::metrics::Metrics;
use crate::proxy::{direct, request, upstream, RequestCtx};
use crate::state::{LbState, Snapshot};
use service_kit::request_id;

/// Routes with and without `strip_prefix`, a small `max_body_size`, an upstream `host`, and
/// paths no route serves (404). Every request goes through this lb and through the same
/// lb with `https_redirect` (excluding `/api/`).
const CONFIG: &str = r#"
version: 1
server: { listen: ["127.0.0.1:0"], admin: "127.0.0.1:0" }
routes:
  - { prefix: /api/, upstream: api, strip_prefix: true, max_body_size: 64 }
  - { prefix: /static, upstream: web }
upstreams:
  api: { discovery: { static: ["127.0.0.1:1"] }, host: api.internal }
  web: { discovery: { static: ["127.0.0.1:2"] } }
"#;
const REDIRECT: &str = "\n  https_redirect: { port: 8443, exclude: [/api/] }";

/// The lb's answers to a request it does not proxy.
const ANSWERS: [u16; 4] = [308, 400, 404, 413];

pub(super) fn states() -> &'static [Arc<LbState>] {
    static STATES: OnceLock<Vec<Arc<LbState>>> = OnceLock::new();
    STATES.get_or_init(|| {
        let redirect = CONFIG.replace(
            "admin: \"127.0.0.1:0\" }",
            &format!("admin: \"127.0.0.1:0\",{REDIRECT} }}"),
        );
        [CONFIG.to_string(), redirect]
            .iter()
            .map(|text| {
                let config = Config::from_yaml(text).expect("valid fuzz config");
                let loaded = LoadedConfig {
                    config,
                    hash: String::new(),
                    tls: Vec::new(),
                    admin_token: None,
                };
                let metrics = Metrics::new();
                let snapshot = Snapshot::build(loaded, &metrics).expect("snapshot");
                LbState::new(snapshot, Arc::new(metrics), PathBuf::new())
            })
            .collect()
    })
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
}

/// `data` as one client connection's bytes, through both lbs.
/// The same bytes also go through the fast path's request stage (`super::fast_request`).
pub fn request(data: &[u8]) {
    for state in states() {
        RUNTIME.with(|rt| rt.block_on(one(state, data)));
    }
    super::fast_request(data);
}

async fn one(state: &LbState, data: &[u8]) {
    let (mut client, server) = tokio::io::duplex(data.len() + 64 * 1024);
    client.write_all(data).await.expect("fits the buffer");
    client.shutdown().await.expect("shutdown");
    let mut session = Session::new_h1(Box::new(server));
    // pingora refuses what it cannot parse (and answers 400 itself)
    if !matches!(session.read_request().await, Ok(true)) {
        return;
    }
    let head = session.req_header().method == http::Method::HEAD;
    let mut ctx = RequestCtx::new();
    let answered = request::request_filter(state, &mut session, &mut ctx).await;
    assert!(request_id::is_valid(ctx.request_id.as_bytes()));
    match answered {
        Ok(true) => {
            drop(session);
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.expect("read");
            check_answer(&answer, &ctx, head);
        }
        Ok(false) => proxied(&mut session, &mut ctx).await,
        Err(e) => panic!("the request stage failed: {e}"),
    }
}

/// What the lb wrote itself: one whole HTTP/1.1 response, with the request id, and for an
/// error the JSON body naming the same id and status.
fn check_answer(answer: &[u8], ctx: &RequestCtx, head: bool) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(answer) else {
        panic!(
            "not a whole response: {:?}",
            String::from_utf8_lossy(answer)
        );
    };
    let status = response.code.expect("status");
    assert!(ANSWERS.contains(&status), "status {status}");
    let header = |name: &str| -> Vec<&[u8]> {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    assert_eq!(header("x-request-id"), vec![ctx.request_id.as_bytes()]);
    let body = &answer[head_len..];
    if status == 308 {
        let location = header("location");
        let location = std::str::from_utf8(location[0]).expect("ascii");
        let uri: http::Uri = location.parse().expect("a URI");
        assert_eq!(uri.scheme_str(), Some("https"), "{location}");
        assert!(uri
            .host()
            .is_some_and(|h| !h.is_empty() && !h.contains('@')));
        assert!(body.is_empty());
        return;
    }
    assert_eq!(header("content-type"), vec![b"application/json".as_slice()]);
    if head {
        assert!(body.is_empty());
        return;
    }
    let length: usize = std::str::from_utf8(header("content-length")[0])
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("content-length");
    assert_eq!(length, body.len());
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    assert_eq!(json["status"], status);
    assert_eq!(json["request_id"], ctx.request_id.to_str().expect("ascii"));
}

/// A request the lb would proxy: it has a route, its declared body fits, its upstream
/// request carries the id (and a Host when the client named one), a direct-path request
/// loses every hop-by-hop header, and a body is cut at the route's limit.
async fn proxied(session: &mut Session, ctx: &mut RequestCtx) {
    let route = ctx.route().expect("a proxied request has a route");
    let (prefix, strip, max_body) = (
        route.prefix.clone(),
        route.strip_prefix,
        route.max_body_size,
    );
    let req = session.req_header();
    if let Some(n) = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        assert!(n <= max_body, "{n} bytes declared, {max_body} allowed");
    }
    let named_host = req.headers.contains_key(http::header::HOST) || req.uri.authority().is_some();
    let mut up = req.clone();
    let filtered = upstream::upstream_request_filter(session, &mut up, ctx);
    assert!(filtered.is_ok(), "{:?}", filtered.err());
    {
        assert_eq!(up.headers.get(request_id::NAME), Some(&ctx.request_id));
        assert!(!named_host || up.headers.contains_key(http::header::HOST));
        if strip {
            let original = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let sent = up.uri.path_and_query().map_or("/", |pq| pq.as_str());
            assert!(sent.starts_with('/'), "{sent:?}");
            let rest = original.strip_prefix(prefix.as_str()).expect("matched");
            assert_eq!(sent.trim_start_matches('/'), rest.trim_start_matches('/'));
        }
    }
    if direct::eligible(session, ctx) {
        if let Ok(up) = direct::upstream_request(session, ctx) {
            assert_eq!(up.version, http::Version::HTTP_11);
            for name in &direct::HOP_BY_HOP {
                assert!(!up.headers.contains_key(name), "{name} sent upstream");
            }
        }
    }
    // The body, as the engine path reads it: refused once past the limit.
    for _ in 0..256 {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if request::request_body_filter(Some(&chunk), false, ctx).is_err() {
                    assert!(ctx.body_bytes > max_body);
                    return;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert!(ctx.body_bytes <= max_body);
}
