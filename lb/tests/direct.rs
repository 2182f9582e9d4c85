//! The body-less GET/HEAD paths, fast (the default) and direct (`server.fast_path: false`),
//! and their shared per-thread upstream keep-alive: connection reuse, connections the
//! backend closed while idle, the lb's own idle timeout, and responses of every shape
//! passing through intact. Every test runs once per path.

mod support;

use std::time::Duration;

use support::{access_line, client, Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The two paths a plain `GET` can take, by the lb's `server.fast_path`.
#[derive(Clone, Copy, Debug)]
enum Path {
    Fast,
    Direct,
}

impl Path {
    const BOTH: [Path; 2] = [Path::Fast, Path::Direct];

    /// The access log's `pipeline` value.
    fn name(self) -> &'static str {
        match self {
            Path::Fast => "fast",
            Path::Direct => "direct",
        }
    }

    fn server_extra(self) -> &'static str {
        match self {
            Path::Fast => "",
            Path::Direct => "  fast_path: false\n",
        }
    }
}

/// One stub behind an lb (2 threads, as every test lb) whose plain GETs take `path`, no
/// health check, so the stub only sees proxied connections.
async fn behind_lb(app: &Stub, upstream_extra: &str, path: Path) -> Lb {
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n    retries: 0\n{upstream_extra}",
        app.addr
    );
    let mut lb = Lb::start(path.server_extra(), &body);
    lb.wait_ready().await;
    lb
}

/// GET `url` with request id `id`, expecting a 200, and check it took `path`.
async fn get_on(http: &reqwest::Client, lb: &Lb, url: &str, id: &str, path: Path) {
    let resp = http
        .get(lb.url(url))
        .header("x-request-id", id)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200, "{path:?} {id}");
    resp.bytes().await.expect("body");
    let line = access_line(lb, id).await;
    assert_eq!(line["pipeline"], path.name(), "{line}");
}

/// Send `request` on a new connection and read until the lb closes it.
async fn until_closed(lb: &Lb, request: &[u8]) -> Vec<u8> {
    let mut raw = tokio::net::TcpStream::connect(lb.url("").trim_start_matches("http://"))
        .await
        .expect("connect");
    raw.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer))
        .await
        .expect("the lb closes the connection after the answer")
        .expect("read");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    for path in Path::BOTH {
        let app = Stub::start("app", "127.0.0.1:0").await;
        let lb = behind_lb(&app, "", path).await;
        let http = client();
        get_on(
            &http,
            &lb,
            "/reuse",
            &format!("reuse-{}", path.name()),
            path,
        )
        .await;
        for i in 1..20 {
            let resp = http.get(lb.url("/reuse")).send().await.expect("get");
            assert_eq!(resp.status(), 200, "{path:?} request {i}");
            resp.bytes().await.expect("body");
        }
        assert_eq!(app.hits(), 20, "{path:?}");
        // one idle list per lb thread: at most one connection each for sequential requests
        assert!(
            app.accepted() <= 2,
            "{path:?}: 20 sequential requests opened {} upstream connections",
            app.accepted()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_the_backend_closed_while_idle_is_not_used() {
    for path in Path::BOTH {
        let app = Stub::start("app", "127.0.0.1:0").await;
        app.set_idle_close(100);
        let lb = behind_lb(&app, "", path).await;
        let http = client();
        get_on(
            &http,
            &lb,
            "/one",
            &format!("idle-one-{}", path.name()),
            path,
        )
        .await;
        support::eventually(
            Duration::from_secs(5),
            "the stub closing the idle connection",
            || {
                let open = app.open();
                async move { open == 0 }
            },
        )
        .await;
        // retries: 0 and a single backend: only a fresh connection can answer this
        get_on(
            &http,
            &lb,
            "/two",
            &format!("idle-two-{}", path.name()),
            path,
        )
        .await;
        assert_eq!(app.accepted(), 2, "{path:?}");
        // Not used at all: found closed before the request was sent on it, not sent and
        // then sent again on a new connection (which would also give two accepts).
        let m = support::scrape(&lb).await;
        assert_eq!(
            support::metric(&m, "lb_retries_total{reason=stale_connection,upstream=app}"),
            0.0,
            "{path:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_close_after_the_idle_timeout() {
    for path in Path::BOTH {
        let app = Stub::start("app", "127.0.0.1:0").await;
        let lb = behind_lb(&app, "    timeouts: { idle: 300ms }\n", path).await;
        let resp = client().get(lb.url("/idle")).send().await.expect("get");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
        assert_eq!(
            app.open(),
            1,
            "{path:?}: kept for reuse right after the response"
        );
        support::eventually(
            Duration::from_secs(5),
            "the lb closing its idle connection",
            || {
                let open = app.open();
                async move { open == 0 }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_heads_and_http10_pass_through_intact() {
    for path in Path::BOTH {
        bodies_heads_and_http10_on(path).await;
    }
}

async fn bodies_heads_and_http10_on(path: Path) {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let lb = behind_lb(&app, "", path).await;
    let http = client();
    get_on(
        &http,
        &lb,
        "/bytes?n=3",
        &format!("bodies-{}", path.name()),
        path,
    )
    .await;

    let n = 1 << 20;
    let resp = http
        .get(lb.url(&format!("/bytes?n={n}")))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), n);
    assert!(
        body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
        "body intact"
    );

    let head = http
        .head(lb.url("/bytes?n=1000"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "1000");
    assert!(head.headers().contains_key("x-request-id"));
    assert!(head.bytes().await.expect("body").is_empty());

    // a chunked upstream body (no length) arrives whole, and the connection stays usable
    for _ in 0..2 {
        let resp = http
            .get(lb.url("/chunked?n=300"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), support::chunked_body(300));
    }

    // HTTP/1.0 without keep-alive: one answer, then the lb closes the connection. HTTP/1.0
    // is never simple: it takes the direct path from either lb.
    let id = format!("http10-{}", path.name());
    let request = format!("GET /bytes?n=10 HTTP/1.0\r\nHost: t\r\nX-Request-Id: {id}\r\n\r\n");
    let answer = until_closed(&lb, request.as_bytes()).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(answer.ends_with(&(0..10).collect::<Vec<u8>>()), "{text}");
    assert_eq!(access_line(&lb, &id).await["pipeline"], "direct");

    // HTTP/1.0 cannot take chunks: a chunked upstream body comes back close-delimited, on
    // the direct path and on pingora's engine (a `Connection`-nominated header sends it there)
    for request in [
        &b"GET /chunked?n=5 HTTP/1.0\r\nHost: t\r\n\r\n"[..],
        &b"GET /chunked?n=5 HTTP/1.0\r\nHost: t\r\nConnection: x-foo\r\nX-Foo: 1\r\n\r\n"[..],
    ] {
        let answer = until_closed(&lb, request).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains(" 200 "), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("transfer-encoding"),
            "{text}"
        );
        assert!(text.ends_with(&support::chunked_body(5)), "{text}");
    }
}
