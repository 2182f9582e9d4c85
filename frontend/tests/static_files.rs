//! Handler tests: every static-serving behaviour through `app(state).oneshot(request)`.

use std::{fs, path::Path};

use axum::{body::Body, Router};
use clap::Parser;
use frontend::{app, cli::Cli, AppState};
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/site");

fn state(flags: &[&str]) -> AppState {
    let args = ["frontend", "--root", SITE].iter().chain(flags);
    AppState::new(&Cli::parse_from(args).serve).unwrap()
}

fn site() -> Router {
    app(state(&[]))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

/// GET `uri` with extra request headers.
async fn get(router: &Router, uri: &str, headers: &[(header::HeaderName, &str)]) -> Reply {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

fn file(path: &str) -> Vec<u8> {
    fs::read(Path::new(SITE).join(path)).unwrap()
}

#[tokio::test]
async fn index_is_html_with_validators_and_no_cache() {
    let reply = get(&site(), "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-cache"));
    assert_eq!(reply.header(header::VARY), Some("accept-encoding"));
    assert!(reply.header(header::ETAG).is_some());
    assert!(reply.header(header::LAST_MODIFIED).is_some());
    assert_eq!(reply.body, file("index.html"));
    assert!(reply.text().contains(r#"<h1 id="dynamic-content""#));
}

#[tokio::test]
async fn content_types_are_correct() {
    let router = site();
    for (uri, expected) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/assets/site.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml; charset=utf-8"),
    ] {
        let reply = get(&router, uri, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert_eq!(reply.header(header::CONTENT_TYPE), Some(expected), "{uri}");
    }
}

#[tokio::test]
async fn cache_control_by_kind() {
    let router = site();
    for (uri, expected) in [
        ("/", "no-cache"),
        ("/index.html", "no-cache"),
        (
            "/assets/site.css?v=1",
            "public, max-age=31536000, immutable",
        ),
        ("/assets/app.js", "public, max-age=31536000, immutable"),
        ("/favicon.svg", "public, max-age=3600"),
        ("/assets/missing.css", "no-cache"),
        ("/health", "no-store"),
    ] {
        let reply = get(&router, uri, &[]).await;
        assert_eq!(reply.header(header::CACHE_CONTROL), Some(expected), "{uri}");
    }
}

#[tokio::test]
async fn if_none_match_gives_304() {
    let router = site();
    let first = get(&router, "/assets/site.css", &[]).await;
    let etag = first.header(header::ETAG).unwrap().to_owned();
    for candidate in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".into(),
    ] {
        let reply = get(
            &router,
            "/assets/site.css",
            &[(header::IF_NONE_MATCH, &candidate)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{candidate}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header(header::ETAG), Some(etag.as_str()));
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("public, max-age=31536000, immutable")
        );
    }
    let changed = get(
        &router,
        "/assets/site.css",
        &[(header::IF_NONE_MATCH, "\"other\"")],
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, file("assets/site.css"));
}

#[tokio::test]
async fn if_modified_since_gives_304_unless_if_none_match_disagrees() {
    let router = site();
    let first = get(&router, "/", &[]).await;
    let last_modified = first.header(header::LAST_MODIFIED).unwrap().to_owned();
    let reply = get(&router, "/", &[(header::IF_MODIFIED_SINCE, &last_modified)]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    let old = "Thu, 01 Jan 1998 00:00:00 GMT";
    let reply = get(&router, "/", &[(header::IF_MODIFIED_SINCE, old)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    // RFC 9110: If-None-Match takes precedence over If-Modified-Since.
    let both = [
        (header::IF_MODIFIED_SINCE, last_modified.as_str()),
        (header::IF_NONE_MATCH, "\"other\""),
    ];
    assert_eq!(get(&router, "/", &both).await.status, StatusCode::OK);
}

#[tokio::test]
async fn precompressed_gzip_when_accepted() {
    let router = site();
    let gzip = get(
        &router,
        "/assets/app.js",
        &[(header::ACCEPT_ENCODING, "gzip, deflate")],
    )
    .await;
    assert_eq!(gzip.status, StatusCode::OK);
    assert_eq!(gzip.header(header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(
        gzip.header(header::CONTENT_TYPE),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(gzip.body, file("assets/app.js.gz"));
    let identity = get(&router, "/assets/app.js", &[]).await;
    assert_eq!(identity.header(header::CONTENT_ENCODING), None);
    assert_eq!(identity.body, file("assets/app.js"));
    assert_ne!(gzip.header(header::ETAG), identity.header(header::ETAG));
    // No .br twin is shipped: a br-only client gets the plain file.
    let br = get(
        &router,
        "/assets/app.js",
        &[(header::ACCEPT_ENCODING, "br")],
    )
    .await;
    assert_eq!(br.body, file("assets/app.js"));
    // The directory index is precompressed too.
    let index = get(&router, "/", &[(header::ACCEPT_ENCODING, "gzip")]).await;
    assert_eq!(index.body, file("index.html.gz"));
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let request = Request::head("/assets/site.css")
        .body(Body::empty())
        .unwrap();
    let reply = send(&site(), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let length = file("assets/site.css").len().to_string();
    assert_eq!(reply.header(header::CONTENT_LENGTH), Some(length.as_str()));
    assert!(reply.header(header::ETAG).is_some());
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn range_requests() {
    let router = site();
    let whole = file("index.html");
    let full = get(&router, "/index.html", &[]).await;
    let part = get(&router, "/index.html", &[(header::RANGE, "bytes=0-9")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    let expected_range = format!("bytes 0-9/{}", whole.len());
    assert_eq!(
        part.header(header::CONTENT_RANGE),
        Some(expected_range.as_str())
    );
    assert_eq!(part.body, whole[..10]);
    assert_eq!(part.header(header::ETAG), full.header(header::ETAG));

    let beyond = format!("bytes={}-", whole.len() + 10);
    let unsatisfiable = get(&router, "/index.html", &[(header::RANGE, &beyond)]).await;
    assert_eq!(unsatisfiable.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // If-Range: we serve the whole file rather than risk a stale part.
    let if_range = [(header::RANGE, "bytes=0-9"), (header::IF_RANGE, "\"old\"")];
    let reply = get(&router, "/index.html", &if_range).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, whole);
}

#[tokio::test]
async fn custom_404_page_with_status_404() {
    let router = site();
    let page = file("404.html");
    for headers in [
        &[][..],
        // Neither validators nor ranges may turn the error page into a 304 or a part.
        &[(header::IF_MODIFIED_SINCE, "Fri, 01 Jan 2100 00:00:00 GMT")],
        &[(header::RANGE, "bytes=0-3")],
    ] {
        let reply = get(&router, "/no/such/page", headers).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{headers:?}");
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-cache"));
        assert_eq!(reply.header(header::ETAG), None);
        assert_eq!(reply.header(header::LAST_MODIFIED), None);
        assert_eq!(reply.body, page, "{headers:?}");
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let router = site();
    for (method, uri) in [
        (Method::POST, "/"),
        (Method::DELETE, "/assets/app.js"),
        (Method::PUT, "/health"),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let reply = send(&router, request).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert_eq!(
            reply.header(header::ALLOW),
            Some("GET,HEAD"),
            "{method} {uri}"
        );
    }
}

#[tokio::test]
async fn traversal_never_escapes_the_root() {
    // root/ is served; secret.txt sits right beside it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("assets")).unwrap();
    fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
    fs::write(root.join("404.html"), "<h1>lost</h1>").unwrap();
    fs::write(root.join("assets/a.txt"), "asset").unwrap();
    fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    let args = Cli::parse_from(["frontend", "--root", root.to_str().unwrap()]).serve;
    let router = app(AppState::new(&args).unwrap());
    assert_eq!(get(&router, "/assets/a.txt", &[]).await.text(), "asset");

    for uri in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/..%5csecret.txt",
        "/assets%5c..%5c..%5csecret.txt",
        "/%00",
        "/secret.txt%00.html",
        "/%c0%ae%c0%ae/secret.txt",
        "/./../secret.txt",
        "//../secret.txt",
    ] {
        let reply = get(&router, uri, &[]).await;
        assert!(
            matches!(
                reply.status,
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND
            ),
            "{uri}: {}",
            reply.status
        );
        assert!(
            !reply.text().contains("TOP SECRET"),
            "{uri} leaked the file"
        );
        assert!(
            reply.header(header::CONTENT_SECURITY_POLICY).is_some(),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let router = site();
    let etag = get(&router, "/", &[])
        .await
        .header(header::ETAG)
        .unwrap()
        .to_owned();
    let replies = [
        get(&router, "/", &[]).await,
        get(&router, "/", &[(header::IF_NONE_MATCH, &etag)]).await,
        get(&router, "/nope", &[]).await,
        get(&router, "/..%2f", &[]).await,
        get(&router, "/health", &[]).await,
        send(&router, Request::post("/").body(Body::empty()).unwrap()).await,
    ];
    for reply in replies {
        let status = reply.status;
        let csp = reply.header(header::CONTENT_SECURITY_POLICY).unwrap();
        assert!(csp.contains("script-src 'self'"), "{status}: {csp}");
        assert!(csp.contains("connect-src 'self';"), "{status}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{status}: {csp}");
        assert_eq!(
            reply.header(header::X_CONTENT_TYPE_OPTIONS),
            Some("nosniff"),
            "{status}"
        );
        assert_eq!(
            reply.header(header::REFERRER_POLICY),
            Some("no-referrer"),
            "{status}"
        );
        assert!(reply
            .header(header::HeaderName::from_static("x-request-id"))
            .is_some());
    }
}

#[tokio::test]
async fn connect_src_is_configurable() {
    let router = app(state(&["--connect-src", "'self' http://127.0.0.1:5252"]));
    let reply = get(&router, "/", &[]).await;
    let csp = reply.header(header::CONTENT_SECURITY_POLICY).unwrap();
    assert!(
        csp.contains("connect-src 'self' http://127.0.0.1:5252;"),
        "{csp}"
    );
}

#[tokio::test]
async fn request_id_kept_or_replaced() {
    let router = site();
    let id = header::HeaderName::from_static("x-request-id");
    let kept = get(&router, "/", &[(id.clone(), "page-1")]).await;
    assert_eq!(kept.header(id.clone()), Some("page-1"));
    let replaced = get(&router, "/", &[(id.clone(), "not valid!")]).await;
    assert_eq!(replaced.header(id).unwrap().len(), 36);
}

#[tokio::test]
async fn probes_and_draining() {
    let state = state(&[]);
    let router = app(state.clone());
    assert_eq!(get(&router, "/health", &[]).await.status, StatusCode::OK);
    assert_eq!(get(&router, "/ready", &[]).await.status, StatusCode::OK);
    state.draining.start();
    assert_eq!(
        get(&router, "/ready", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let page = get(&router, "/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header(header::CONNECTION), Some("close"));
}
