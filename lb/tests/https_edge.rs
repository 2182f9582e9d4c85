//! Moving clients to HTTPS and keeping them there, against the real binary with a real
//! client (curl): `local_ca` certificates verified against the lb's own CA, HSTS over TLS
//! only (server default, route override, route off), the plaintext → HTTPS 308 redirect
//! with its exclusions, and h2c with prior knowledge on the plaintext listener.

mod support;

use std::path::Path;

use support::{access_line, metric, scrape, tls_addr, Lb, Stub};

/// `curl ARGS URL`: the response head (lowercased names) and body, or the failure. Async:
/// the stub backend runs on this test's (single-threaded) runtime.
async fn curl(args: &[&str], url: &str) -> Result<(u16, Vec<(String, String)>, String), String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "/dev/stderr", "-o", "-"])
        .args(args)
        .arg(url)
        .output()
        .await
        .map_err(|e| format!("curl not runnable (deploy/bootstrap.sh installs it): {e}"))?;
    let head = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        return Err(head);
    }
    let mut lines = head.lines().filter(|l| !l.trim().is_empty());
    // The last response head (curl prints one per response it followed).
    let status_line = head
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .by_ref()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((
        status,
        headers,
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn routes(stub: &Stub, route_extra: &str) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\n  - {{ prefix: /api/, upstream: web{route_extra} }}\n  - {{ prefix: /open/, upstream: web, hsts: false }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

fn local_ca_listener(ip: &str, dir: &Path) -> String {
    format!(
        "  tls_listen:\n    - address: \"{ip}:0\"\n      certificates: [ {{ local_ca: {:?}, names: [localhost, {ip}], default: true }} ]\n",
        dir.display().to_string()
    )
}

#[tokio::test]
async fn local_ca_certificates_verify_against_the_stored_ca_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let ca_dir = dir.path().join("local-ca");
    let ca_pem = ca_dir.join("ca.pem");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(&local_ca_listener("127.0.0.4", &ca_dir), &routes(&stub, ""));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    let ca = ca_pem.to_str().expect("path").to_string();

    // By name (SNI localhost) and by IP (no SNI: the default certificate's IP SAN).
    let by_name = format!("https://localhost:{}/x", addr.port());
    let resolve = format!("localhost:{}:{}", addr.port(), addr.ip());
    let (status, _, body) = curl(&["--cacert", &ca, "--resolve", &resolve], &by_name)
        .await
        .expect("verified by name");
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = curl(&["--cacert", &ca], &format!("https://{addr}/x"))
        .await
        .expect("by IP");
    assert_eq!(status, 200);
    // Without the CA, a real client refuses it: it really is the lb's own CA.
    let err = curl(&["--resolve", &resolve], &by_name)
        .await
        .expect_err("untrusted without the CA");
    assert!(!err.is_empty());

    let status = lb.admin_json("/status").await;
    let cert = &status["tls"][0]["certificates"][0];
    assert_eq!(cert["names"], serde_json::json!(["localhost", "127.0.0.4"]));
    assert!(
        cert["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("ca.pem (local CA)"),
        "{cert}"
    );

    // A restart keeps the CA (clients trust it once) and issues a new leaf.
    let first = std::fs::read(&ca_pem).expect("ca.pem");
    drop(lb);
    let mut lb = Lb::start(&local_ca_listener("127.0.0.4", &ca_dir), &routes(&stub, ""));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    assert_eq!(
        std::fs::read(&ca_pem).expect("ca.pem"),
        first,
        "the CA is kept"
    );
    let (status, _, _) = curl(&["--cacert", &ca], &format!("https://{addr}/x"))
        .await
        .expect("after restart");
    assert_eq!(status, 200);
    let serial2 = lb.admin_json("/status").await["tls"][0]["certificates"][0]["serial"].clone();
    assert_ne!(serial2, cert["serial"], "a fresh leaf at each start");
}

#[tokio::test]
async fn hsts_is_sent_over_tls_only_with_route_overrides() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let server = format!(
        "{}  hsts: {{ max_age: 1d, include_subdomains: true }}\n",
        local_ca_listener("127.0.0.5", &dir.path().join("ca"))
    );
    let mut lb = Lb::start(&server, &routes(&stub, ", hsts: { max_age: 2h }"));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    let ca = dir.path().join("ca/ca.pem").display().to_string();
    let hsts_of = |path: &str, tls: bool| {
        let url = if tls {
            format!("https://{addr}{path}")
        } else {
            lb.url(path)
        };
        let ca = ca.clone();
        async move {
            let (status, headers, body) = curl(&["--cacert", &ca, "--http1.1"], &url)
                .await
                .expect("request");
            assert_eq!(status, 200, "{url}: {body}");
            header(&headers, "strict-transport-security").map(str::to_string)
        }
    };
    assert_eq!(
        hsts_of("/page", true).await.as_deref(),
        Some("max-age=86400; includeSubDomains"),
        "server default"
    );
    assert_eq!(
        hsts_of("/api/x", true).await.as_deref(),
        Some("max-age=7200"),
        "route's own"
    );
    assert_eq!(hsts_of("/open/x", true).await, None, "route off");
    assert_eq!(
        hsts_of("/page", false).await,
        None,
        "never over plaintext (RFC 6797 §7.2)"
    );
    // h2 gets it too (the engine path).
    let (status, headers, _) = curl(
        &["--cacert", &ca, "--http2"],
        &format!("https://{addr}/page"),
    )
    .await
    .expect("h2");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "strict-transport-security"),
        Some("max-age=86400; includeSubDomains")
    );
    let m = scrape(&lb).await;
    let by = |labels: &str| metric(&m, &format!("lb_requests_by_protocol_total{{{labels}}}"));
    assert_eq!(by("protocol=h1,tls=TLSv1.3"), 3.0, "{m:?}");
    assert_eq!(by("protocol=h2,tls=TLSv1.3"), 1.0);
    assert_eq!(by("protocol=h1,tls=none"), 1.0);
}

#[tokio::test]
async fn plaintext_is_redirected_to_https_except_excluded_and_acme_paths() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let server = format!(
        "{}  https_redirect: {{ port: 8443, exclude: [/health] }}\n",
        local_ca_listener("127.0.0.6", &dir.path().join("ca"))
    );
    let mut lb = Lb::start(&server, &routes(&stub, ""));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;

    let (status, headers, body) = curl(
        &[
            "-H",
            "Host: example.test:8080",
            "-H",
            "x-request-id: redir-1",
            "-X",
            "POST",
            "--data",
            "x=1",
        ],
        &lb.url("/a/b?q=1&r=%20"),
    )
    .await
    .expect("redirect");
    assert_eq!(status, 308, "{body}");
    assert_eq!(
        header(&headers, "location"),
        Some("https://example.test:8443/a/b?q=1&r=%20")
    );
    assert_eq!(header(&headers, "x-request-id"), Some("redir-1"));
    assert_eq!(body, "");
    let line = access_line(&lb, "redir-1").await;
    assert_eq!(line["status"], 308, "{line}");

    // No usable host: the lb's JSON 400, not a redirect to nowhere.
    let (status, _, body) = curl(&["-H", "Host:", "--http1.0"], &lb.url("/x"))
        .await
        .expect("no host");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"bad request\""), "{body}");

    // Excluded prefixes and the ACME http-01 path are proxied over plaintext.
    for path in ["/health/deep", "/.well-known/acme-challenge/token"] {
        let (status, _, body) = curl(&[], &lb.url(path)).await.expect("proxied");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("\"id\":\"web\""), "{path}: {body}");
    }
    // Over TLS nothing is redirected.
    let ca = dir.path().join("ca/ca.pem").display().to_string();
    let (status, _, _) = curl(&["--cacert", &ca], &format!("https://{addr}/a"))
        .await
        .expect("tls");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_beside_http1_on_the_plaintext_port() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("  h2c: true\n", &routes(&stub, ""));
    lb.wait_ready().await;

    let (status, _, body) = curl(
        &[
            "--http2-prior-knowledge",
            "-H",
            "x-request-id: h2c-1",
            "-w",
            "%{http_version}",
        ],
        &lb.url("/api/x"),
    )
    .await
    .expect("h2c");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with('2'), "curl negotiated HTTP/2: {body}");
    assert!(body.contains("\"request_id\":\"h2c-1\""), "{body}");
    assert!(body.contains("\"xfp\":\"http\""), "{body}");
    let line = access_line(&lb, "h2c-1").await;
    assert_eq!(line["protocol"], "h2", "{line}");
    assert_eq!(line["pipeline"], "engine", "{line}");
    assert!(line.get("tls_version").is_none(), "{line}");

    // HTTP/1.1 on the same port still takes the lb's own HTTP/1 path (the fast path).
    let (status, _, _) = curl(&["-H", "x-request-id: h1-1"], &lb.url("/api/y"))
        .await
        .expect("h1");
    assert_eq!(status, 200);
    let line = access_line(&lb, "h1-1").await;
    assert_eq!(line["protocol"], "h1", "{line}");
    assert_eq!(line["pipeline"], "fast", "{line}");

    // The metrics carry the protocol too.
    let m = scrape(&lb).await;
    let by = |labels: &str| metric(&m, &format!("lb_requests_by_protocol_total{{{labels}}}"));
    assert_eq!(by("protocol=h2,tls=none"), 1.0, "{m:?}");
    assert_eq!(by("protocol=h1,tls=none"), 1.0);
    assert_eq!(by("protocol=h2,tls=TLSv1.3"), 0.0);
}

/// A TLS client that chooses h2 by ALPN and then sends nothing is held to `request_head`
/// (pingora alone would wait for its preface for ever, holding the connection and its
/// `connection_limits` place), then closed and counted; one that sends its preface is
/// served as before.
#[tokio::test]
async fn a_silent_client_after_alpn_h2_is_held_to_request_head() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        &(local_ca_listener("127.0.0.7", &dir.path().join("ca"))
            + "  client_timeouts: { request_head: 1s }\n"),
        &routes(&stub, ""),
    );
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    let mut config = support::tls_client::any_cert_config();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tls.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "still open 20 s after a 1 s request_head");
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_client_errors_total{reason=head_timeout}"),
        1.0
    );
    // A real h2 client is served through the same path.
    let (status, headers, _) = curl(
        &["--http2", "-k", "-H", "x-request-id: h2-after-silent"],
        &format!("https://{addr}/x"),
    )
    .await
    .unwrap_or_else(|head| panic!("curl over h2: {head}"));
    assert_eq!(status, 200, "{headers:?}");
    let line = access_line(&lb, "h2-after-silent").await;
    assert_eq!(line["protocol"], "h2", "{line}");
}

/// With h2c on, a plaintext connection that sends fewer bytes than the preface is held to
/// `request_head` while the lb peeks for it, then closed and counted, not kept for ever.
#[tokio::test]
async fn the_h2c_peek_is_held_to_request_head() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        "  h2c: true\n  client_timeouts: { request_head: 1s }\n",
        &routes(&stub, ""),
    );
    lb.wait_ready().await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    conn.write_all(b"PRI * HTTP").await.expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        conn.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "still open after 20 s");
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_client_errors_total{reason=head_timeout}"),
        1.0
    );
}

/// With h2c on, an HTTP/1 request shorter than the 24-byte preface (HAProxy's default
/// check is `OPTIONS / HTTP/1.0` and a blank line: 22 bytes) is served at once: the peek
/// decides at the first byte that differs from the preface. Before, it waited for 24 bytes
/// until `request_head` and was closed unanswered.
#[tokio::test]
async fn with_h2c_a_request_shorter_than_the_preface_is_served() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        "  h2c: true\n  client_timeouts: { request_head: 60s }\n",
        &routes(&stub, ""),
    );
    lb.wait_ready().await;
    for request in [&b"GET /x HTTP/1.0\r\n\r\n"[..], b"PUT /x HTTP/1.0\r\n\r\n"] {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            support::exchange(&lb, request),
        )
        .await
        .expect("answered within 20 s (request_head is 60 s)");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_client_errors_total{reason=head_timeout}"),
        0.0
    );
}

#[tokio::test]
async fn without_h2c_prior_knowledge_is_not_spoken() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &routes(&stub, ""));
    lb.wait_ready().await;
    // The h2 preface is not an HTTP/1 request: refused, not proxied.
    match curl(&["--http2-prior-knowledge"], &lb.url("/x")).await {
        Ok((status, _, body)) => assert_eq!(status, 400, "{body}"),
        Err(head) => assert!(!head.contains("HTTP/2 200"), "{head}"),
    }
}

#[test]
fn lb_t_checks_the_https_settings() {
    let (code, text) = support::lb::check_text(
        "version: 1\nserver:\n  https_redirect: { port: 0 }\n  hsts: { max_age: 1d, preload: true }\n  tls_listen:\n    - address: \"127.0.0.1:0\"\n      certificates: [ { local_ca: /tmp/x } ]\nroutes:\n  - { prefix: /, upstream: web, hsts: maybe }\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:1\"] } }\n",
    );
    assert_eq!(code, Some(2), "{text}");
    for field in [
        "server.https_redirect.port:",
        "server.hsts.preload:",
        "server.tls_listen[0].certificates[0].names: required with `local_ca`",
        "routes[0].hsts: expected",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
}

#[tokio::test]
async fn a_client_leaving_after_alpn_h2_is_counted_not_logged_as_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        &local_ca_listener("127.0.0.7", &dir.path().join("ca")),
        &routes(&stub, ""),
    );
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    // A real TLS client that picks h2 by ALPN, then quits without the h2 preface.
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-alpn", "h2"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl (deploy/bootstrap.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    support::eventually(
        std::time::Duration::from_secs(10),
        "a protocol error counted",
        || {
            let lb = &lb;
            async move {
                metric(&scrape(lb).await, "lb_client_errors_total{reason=protocol}") >= 1.0
            }
        },
    )
    .await;
    let errors: Vec<String> = lb
        .log()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .map(str::to_string)
        .collect();
    assert_eq!(errors, Vec::<String>::new());
}
