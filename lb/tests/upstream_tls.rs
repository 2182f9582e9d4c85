//! TLS to the backends (`upstreams.<name>.tls`), against the real binary and real TLS
//! backends started here (tokio-rustls + hyper, certificates from a test CA made by
//! rcgen): a verified request with the configured SNI, a wrong CA and a wrong name each
//! refused with the lb's JSON 502 and marked unhealthy by the health check, a handshake
//! failure retried on another backend, a reload that swaps the CA, and `lb -t` naming the
//! field of every bad `tls` setting.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{access_line, metric, scrape, Lb};

/// A test CA: signs backend certificates; its PEM is what `ca_file` points at.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    /// Write the CA certificate (PEM) to `path`, atomically (write, then rename).
    fn write_pem(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.cert.pem()).expect("write ca");
        std::fs::rename(&tmp, path).expect("rename ca");
    }

    /// A server certificate for `names`, signed by this CA, with its key.
    fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }
}

/// An HTTPS backend on loopback: it records the SNI of every handshake (before it
/// completes, so a handshake the lb then refuses is seen too) and the `Host` of every
/// request it answers. Answers `{"id": ID}` with 200 to any request.
struct TlsBackend {
    addr: SocketAddr,
    snis: Arc<Mutex<Vec<Option<String>>>>,
    hosts: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsBackend {
    async fn start(id: &'static str, ca: &Ca, names: &[&str]) -> TlsBackend {
        let (chain, key) = ca.issue(names);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let config = Arc::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let snis = Arc::new(Mutex::new(Vec::new()));
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, h, r) = (snis.clone(), hosts.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (config, snis, hosts, requests) =
                    (config.clone(), s.clone(), h.clone(), r.clone());
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                        rustls::server::Acceptor::default(),
                        tcp,
                    );
                    let Ok(start) = acceptor.await else { return };
                    let sni = start.client_hello().server_name().map(str::to_string);
                    snis.lock().unwrap().push(sni);
                    // Fails when the lb refuses our certificate: nothing more to do.
                    let Ok(tls) = start.into_stream(config).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let (hosts, requests) = (hosts.clone(), requests.clone());
                        async move {
                            let host = req
                                .headers()
                                .get(http::header::HOST)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            hosts.lock().unwrap().push(host);
                            requests.fetch_add(1, Ordering::SeqCst);
                            let body = serde_json::json!({ "id": id }).to_string();
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsBackend {
            addr,
            snis,
            hosts,
            requests,
            task,
        }
    }

    fn snis(&self) -> Vec<Option<String>> {
        self.snis.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A temporary directory holding CA files.
fn ca_file(dir: &Path, name: &str, ca: &Ca) -> PathBuf {
    let path = dir.join(name);
    ca.write_pem(&path);
    path
}

/// One upstream `name` on `backends`, with `extra` keys (e.g. a health check) and `tls`.
fn upstream(name: &str, backends: &[&TlsBackend], extra: &str, tls: &str) -> String {
    let addrs: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "  {name}:\n    discovery: {{ static: [{}] }}\n{extra}    tls: {tls}\n",
        addrs.join(", ")
    )
}

const FAST_CHECK: &str =
    "    health_check: { interval: 200ms, timeout: 500ms, unhealthy_after: 1 }\n    queue_timeout: 0s\n";

/// GET `url` with `x-request-id: id`: (status, JSON body or Null).
async fn get(url: &str, id: &str) -> (u16, serde_json::Value) {
    let resp = support::client()
        .get(url)
        .header("x-request-id", id)
        .send()
        .await
        .expect("GET through the lb");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// The lb's own 502: its JSON shape, and no TLS or address internals in it.
fn assert_lb_502(status: u16, body: &serde_json::Value, id: &str) {
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad gateway", "{body}");
    assert_eq!(body["status"], 502, "{body}");
    assert_eq!(body["request_id"], id, "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{body}");
}

/// The `/status` entry of `upstream`'s only backend, once its last check matches `ok`
/// (polled, failing after 10 s).
async fn checked_backend(lb: &Lb, upstream: &str, ok: bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = lb.admin_json("/status").await;
        let backend = status["upstreams"][upstream]["backends"][0].clone();
        if backend["last_check_ok"] == ok {
            return backend;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{upstream}: no check with ok={ok}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_to_the_backend_sends_the_sni_and_takes_the_engine_path() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("test ca");
    let backend = TlsBackend::start("tls-a", &ca, &["api.internal"]).await;
    let ca_path = ca_file(dir.path(), "ca.pem", &ca);
    let tls = format!("{{ sni: api.internal, ca_file: {:?} }}", ca_path.display());
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: api }}\nupstreams:\n{}",
        upstream("api", &[&backend], FAST_CHECK, &tls)
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;

    let (status, json) = get(&lb.url("/hello"), "utls-ok-1").await;
    assert_eq!(status, 200, "{json}\n{}", lb.log());
    assert_eq!(json["id"], "tls-a");
    // Every handshake (the health check's and the request's) sent the configured name.
    let snis = backend.snis();
    assert!(!snis.is_empty());
    assert!(
        snis.iter().all(|s| s.as_deref() == Some("api.internal")),
        "{snis:?}"
    );
    // The Host header is the client's, as without TLS; the SNI does not replace it.
    let hosts = backend.hosts.lock().unwrap().clone();
    assert!(
        hosts.contains(&format!("127.0.0.1:{}", lb.port)),
        "{hosts:?}"
    );
    // A body-less GET would take the direct path, which has no TLS: this one must not.
    let line = access_line(&lb, "utls-ok-1").await;
    assert_eq!(line["pipeline"], "engine", "{line}");
    assert_eq!(line["status"], 200, "{line}");

    // The health check speaks the same TLS: it passes, and /status shows the settings.
    let checked = checked_backend(&lb, "api", true).await;
    assert_eq!(checked["health"], "healthy", "{checked}");
    let status = lb.admin_json("/status").await;
    let shown = &status["upstreams"]["api"]["tls"];
    assert_eq!(shown["sni"], "api.internal", "{shown}");
    assert_eq!(shown["verify"], true, "{shown}");
    assert_eq!(shown["ca_file"], ca_path.display().to_string(), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_gets_the_lbs_502_and_the_check_marks_the_backend_unhealthy() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("real ca");
    let other = Ca::new("other ca");
    let backend = TlsBackend::start("tls-a", &ca, &["api.internal"]).await;
    let wrong = ca_file(dir.path(), "other.pem", &other);
    let tls = format!("{{ sni: api.internal, ca_file: {:?} }}", wrong.display());
    // `direct` has no health check, so the request reaches the backend (and fails);
    // `checked` has one, which must take the backend out.
    let body = format!(
        "routes:\n  - {{ prefix: /direct, upstream: direct }}\n  - {{ prefix: /checked, upstream: checked }}\nupstreams:\n{}{}",
        upstream("direct", &[&backend], "", &tls),
        upstream("checked", &[&backend], FAST_CHECK, &tls),
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;

    let (status, json) = get(&lb.url("/direct/x"), "utls-ca-1").await;
    assert_lb_502(status, &json, "utls-ca-1");
    assert_eq!(
        backend.requests(),
        0,
        "no request may pass a refused handshake"
    );
    let line = access_line(&lb, "utls-ca-1").await;
    assert_eq!(line["pipeline"], "engine", "{line}");
    // The default 2 retries: three handshakes, all refused.
    assert_eq!(line["tries"], 3, "{line}");

    let checked = checked_backend(&lb, "checked", false).await;
    assert_eq!(checked["health"], "unhealthy", "{checked}");
    let error = checked["last_check_error"].as_str().unwrap_or_default();
    assert!(error.contains("UnknownIssuer"), "{checked}");
    let (status, json) = get(&lb.url("/checked/x"), "utls-ca-2").await;
    assert_eq!(status, 503, "{json}");
    let log = lb.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_the_certificate_does_not_cover_fails_verification() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("test ca");
    let backend = TlsBackend::start("tls-a", &ca, &["api.internal"]).await;
    let ca_path = ca_file(dir.path(), "ca.pem", &ca);
    // The right CA: only the name differs from the passing test above.
    let tls = format!(
        "{{ sni: other.internal, ca_file: {:?} }}",
        ca_path.display()
    );
    let body = format!(
        "routes:\n  - {{ prefix: /direct, upstream: direct }}\n  - {{ prefix: /checked, upstream: checked }}\nupstreams:\n{}{}",
        upstream("direct", &[&backend], "", &tls),
        upstream("checked", &[&backend], FAST_CHECK, &tls),
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;

    let (status, json) = get(&lb.url("/direct/x"), "utls-sni-1").await;
    assert_lb_502(status, &json, "utls-sni-1");
    assert_eq!(backend.requests(), 0);
    let snis = backend.snis();
    assert!(
        snis.iter().all(|s| s.as_deref() == Some("other.internal")),
        "{snis:?}"
    );
    let checked = checked_backend(&lb, "checked", false).await;
    assert_eq!(checked["health"], "unhealthy", "{checked}");
    let error = checked["last_check_error"].as_str().unwrap_or_default();
    assert!(error.contains("not valid for name"), "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_is_retried_on_another_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("real ca");
    let rogue_ca = Ca::new("rogue ca");
    let good = TlsBackend::start("good", &ca, &["api.internal"]).await;
    let rogue = TlsBackend::start("rogue", &rogue_ca, &["api.internal"]).await;
    let ca_path = ca_file(dir.path(), "ca.pem", &ca);
    let tls = format!("{{ sni: api.internal, ca_file: {:?} }}", ca_path.display());
    // No health check: the rogue backend stays in rotation, so failover must cover it.
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: api }}\nupstreams:\n{}",
        upstream("api", &[&good, &rogue], "    retries: 1\n", &tls)
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;

    for i in 0..8 {
        let (status, json) = get(&lb.url("/x"), &format!("utls-retry-{i}")).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["id"], "good", "{json}");
    }
    assert_eq!(rogue.requests(), 0);
    assert!(
        !rogue.snis().is_empty(),
        "round robin never tried the rogue backend"
    );
    let m = scrape(&lb).await;
    assert!(
        metric(&m, "lb_retries_total{reason=connect,upstream=api}") >= 1.0,
        "{m:?}"
    );
}

/// `lb reload` after a CA file changed: the pool must be rebuilt, and a connection that
/// was verified against the old CA (idle in pingora's pool) must not be reused.
fn reload_rebuilds(lb: &Lb) {
    let out = lb.run_command(&["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("upstream api: rebuilt"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_ca_in_the_same_file_rebuilds_the_pool() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("real ca");
    let other = Ca::new("other ca");
    let backend = TlsBackend::start("tls-a", &ca, &["api.internal"]).await;
    // Same path throughout: only the file's content changes.
    let ca_path = ca_file(dir.path(), "ca.pem", &ca);
    let tls = format!("{{ sni: api.internal, ca_file: {:?} }}", ca_path.display());
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: api }}\nupstreams:\n{}",
        upstream("api", &[&backend], "", &tls)
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let (status, json) = get(&lb.url("/x"), "utls-reload-1").await;
    assert_eq!(status, 200, "{json}");

    // The backend's certificate is no longer trusted: the connection the first request
    // left idle (verified under the old CA) must not carry the next one.
    other.write_pem(&ca_path);
    reload_rebuilds(&lb);
    let (status, json) = get(&lb.url("/x"), "utls-reload-2").await;
    assert_lb_502(status, &json, "utls-reload-2");
    assert_eq!(backend.requests(), 1);

    ca.write_pem(&ca_path);
    reload_rebuilds(&lb);
    let (status, json) = get(&lb.url("/x"), "utls-reload-3").await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_false_accepts_any_certificate_and_is_logged_as_a_warning() {
    let untrusted = Ca::new("nobody trusts this ca");
    let backend = TlsBackend::start("tls-a", &untrusted, &["api.internal"]).await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: api }}\nupstreams:\n{}",
        upstream(
            "api",
            &[&backend],
            "",
            "{ sni: api.internal, verify: false }"
        )
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let (status, json) = get(&lb.url("/x"), "utls-noverify-1").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(backend.snis(), vec![Some("api.internal".to_string())]);
    let log = lb.log();
    let warning = log
        .lines()
        .find(|l| l.contains("certificate verification is off"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(warning.contains("\"upstream\":\"api\""), "{warning}");
}

#[test]
fn lb_t_names_the_field_of_every_bad_tls_setting() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").expect("write");
    let good_ca = dir.path().join("ca.pem");
    Ca::new("test ca").write_pem(&good_ca);
    let missing = dir.path().join("missing.pem");
    let config = format!(
        "version: 1\nroutes:\n  - {{ prefix: /, upstream: ok }}\nupstreams:\n\
         \x20 ok: {{ discovery: {{ static: [\"127.0.0.1:1\"] }}, tls: {{ sni: ok.internal, ca_file: {good:?} }} }}\n\
         \x20 no_sni: {{ discovery: {{ static: [\"127.0.0.1:1\"] }}, tls: {{ ca_file: {good:?} }} }}\n\
         \x20 empty_sni: {{ discovery: {{ dns: \"backend:8443\" }}, tls: {{ sni: \"\", ca_file: {good:?} }} }}\n\
         \x20 unreadable: {{ discovery: {{ dns: \"backend:8443\" }}, tls: {{ ca_file: {missing:?} }} }}\n\
         \x20 garbage: {{ discovery: {{ dns: \"backend:8443\" }}, tls: {{ ca_file: {garbage:?} }} }}\n\
         \x20 no_ca: {{ discovery: {{ dns: \"backend:8443\" }}, tls: {{}} }}\n",
        good = good_ca.display().to_string(),
        missing = missing.display().to_string(),
        garbage = garbage.display().to_string(),
    );
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, &config).expect("write");
    let out = std::process::Command::new(support::lb::bin())
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .expect("run lb -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    for expected in [
        "upstreams.no_sni.tls.sni: required with `static` discovery".to_string(),
        "upstreams.empty_sni.tls.sni: must not be empty".to_string(),
        format!(
            "upstreams.unreadable.tls.ca_file: cannot read {:?}",
            missing.display().to_string()
        ),
        format!(
            "upstreams.garbage.tls.ca_file: no PEM certificate in {:?}",
            garbage.display().to_string()
        ),
        "upstreams.no_ca.tls.ca_file: required while `verify` is true".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("upstreams.ok."), "{text}");

    // The same file with only the good upstream passes.
    let good_only: String = config
        .lines()
        .filter(|l| !l.starts_with("  ") || l.starts_with("  ok:") || l.starts_with("  - "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, good_only).expect("write");
    let out = std::process::Command::new(support::lb::bin())
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .expect("run lb -t");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
