//! Automatic HTTPS against a real ACME server: Pebble (the Let's Encrypt project's test
//! CA) and pebble-challtestsrv (its mock DNS, answering every name with 127.0.0.1) on
//! loopback, both installed by deploy/bootstrap.sh. Pebble validates the http-01
//! challenges for real, against the lb's plaintext listener (`PEBBLE_VA_NOSLEEP=1`, never
//! `PEBBLE_VA_ALWAYS_VALID`). Pebble's own HTTPS certificate is made here (rcgen).
//!
//! The handshakes are checked with rustls against Pebble's root, fetched from its
//! management API: a certificate that verifies was issued by Pebble's CA.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use support::tls_client::{http1, H1};
use support::{eventually, metric, scrape, tls_addr, Lb, Stub};

const WAIT: Duration = Duration::from_secs(60);

/// A port free right now (Pebble must be told the lb's plaintext port before either
/// starts; the lb binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Pebble {
    dir: tempfile::TempDir,
    pebble: Child,
    dns: Child,
    acme: u16,
    management: u16,
    /// The CA of Pebble's own HTTPS certificate (the lb's `ca_file`).
    tls_ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn require(bin: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{bin} is not installed: deploy/bootstrap.sh installs it (apt-get install pebble)"
    );
}

impl Pebble {
    /// Pebble validating http-01 on `http_port`, issuing certificates valid `validity`.
    async fn start(http_port: u16, validity: Duration) -> Pebble {
        require("pebble");
        require("pebble-challtestsrv");
        let dir = tempfile::tempdir().expect("dir");
        let tls_ca = make_tls_cert(dir.path());
        let (acme, management, dns, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("pebble.pem"),
                "privateKey": dir.path().join("pebble.key"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity.as_secs(),
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log");
        let dns_child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Nonce rejection is on by default (5 %); the failure test stops Pebble instead.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble");
        let p = Pebble {
            dir,
            pebble,
            dns: dns_child,
            acme,
            management,
            tls_ca,
        };
        let url = p.directory();
        let ca = p.tls_ca.clone();
        eventually(Duration::from_secs(20), "pebble's directory", || {
            let (url, ca) = (url.clone(), ca.clone());
            async move { curl(&ca, &url).await.is_some() }
        })
        .await;
        p
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme)
    }

    /// Pebble's issuing root (made fresh at each Pebble start).
    async fn root(&self) -> Vec<u8> {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        curl(&self.tls_ca, &url).await.expect("pebble root")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// `curl --cacert CA URL`'s body, or `None` on failure.
async fn curl(ca: &Path, url: &str) -> Option<Vec<u8>> {
    let out = tokio::process::Command::new("curl")
        .args(["-sSf", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .await
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// A CA and, signed by it, Pebble's HTTPS certificate for 127.0.0.1 and localhost; the
/// path of the CA's PEM.
fn make_tls_cert(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "acme test: Pebble's TLS CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("leaf");
    std::fs::write(dir.join("pebble.pem"), leaf.pem()).expect("write");
    std::fs::write(dir.join("pebble.key"), key.serialize_pem()).expect("write");
    let path = dir.join("tls-ca.pem");
    std::fs::write(&path, ca_cert.pem()).expect("write");
    path
}

/// The lb's `server:` lines: plaintext on `http_port`, one TLS listener with an ACME
/// certificate per name (the first is the default), stored under `storage`. The TLS
/// listener's port 0 needs an IP of its own (the admin listener has 127.0.0.1:0).
fn server(
    http_port: u16,
    tls_ip: &str,
    pebble: &Pebble,
    storage: &Path,
    names: &[&str],
    extra: &str,
) -> String {
    let certs: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "        - names: [{n}]\n          default: {}\n          acme: {{ directory: \"{}\", email: ops@example.test, agree_terms: true, storage: \"{}\", ca_file: \"{}\"{extra} }}\n",
                i == 0,
                pebble.directory(),
                storage.display(),
                pebble.tls_ca.display(),
            )
        })
        .collect();
    format!(
        "  listen: [\"127.0.0.1:{http_port}\"]\n  tls_listen:\n    - address: \"{tls_ip}:0\"\n      certificates:\n{}",
        certs.concat()
    )
}

fn routes(stub: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

/// A TLS connection for `sni`, verified against `root` only.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    root: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root) {
        roots.add(c.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).expect("name"), tcp)
        .await
}

/// Serial (hex) and DNS names of the certificate a verified handshake got.
fn peer(tls: &TlsStream<TcpStream>) -> (String, Vec<String>) {
    let certs = tls.get_ref().1.peer_certificates().expect("certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).expect("x509");
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (serial, names)
}

async fn get_status(h1: &mut H1, host: &str) -> u16 {
    let req = hyper::Request::get("/x")
        .header("host", host)
        .body(Empty::new())
        .expect("request");
    let resp = h1.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

async fn orders(lb: &Lb, result: &str) -> f64 {
    metric(
        &scrape(lb).await,
        &format!("lb_acme_orders_total{{result={result}}}"),
    )
}

async fn acme_status(lb: &Lb) -> Vec<serde_json::Value> {
    lb.admin_json("/status").await["acme"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Wait until every ACME entry is `valid` with a serial not in `old`; their serials.
async fn until_issued(lb: &Lb, pebble: &Pebble, count: usize, old: &[String]) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let entries = acme_status(lb).await;
        let fresh: Vec<String> = entries
            .iter()
            .filter(|e| e["state"] == "valid")
            .filter_map(|e| e["serial"].as_str().map(str::to_string))
            .filter(|s| !s.is_empty() && !old.contains(s))
            .collect();
        if entries.len() == count && fresh.len() == count {
            return fresh;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {count} new certificates: {entries:?}\nlb log:\n{}\npebble log:\n{}",
            lb.log(),
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn two_names_are_issued_by_pebble_stored_privately_and_a_restart_orders_nothing() {
    let http_port = free_port();
    let pebble = Pebble::start(http_port, Duration::from_secs(3600)).await;
    let storage = tempfile::tempdir().expect("dir");
    let store = storage.path().join("acme");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let server = server(
        http_port,
        "127.0.0.10",
        &pebble,
        &store,
        &["a.test", "b.test"],
        "",
    );
    // Everything else on plain HTTP is redirected: Pebble's validations must not be.
    let server = format!("{server}  https_redirect: {{ port: 443 }}\n");

    // `lb -t` accepts it before anything is issued (the placeholder stands in).
    let (code, out) =
        support::lb::check_text(&format!("version: 1\nserver:\n{server}\n{}", routes(&stub)));
    assert_eq!(code, Some(0), "{out}");

    let mut lb = Lb::start(&server, &routes(&stub));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    let serials = until_issued(&lb, &pebble, 2, &[]).await;
    let root = pebble.root().await;

    // Each name gets its own certificate, which verifies against Pebble's root only.
    let mut seen = Vec::new();
    for name in ["a.test", "b.test"] {
        let tls = connect(addr, name, &root)
            .await
            .unwrap_or_else(|e| panic!("{name}: not a Pebble certificate: {e}"));
        let (serial, names) = peer(&tls);
        assert_eq!(names, vec![name.to_string()]);
        assert!(serials.contains(&serial), "{serial} not in {serials:?}");
        let mut h1 = http1(tls).await;
        assert_eq!(get_status(&mut h1, name).await, 200);
        seen.push(serial);
    }
    assert_ne!(seen[0], seen[1]);
    assert_eq!(orders(&lb, "success").await, 2.0);
    assert_eq!(orders(&lb, "failure").await, 0.0);
    let m = scrape(&lb).await;
    let expiry = metric(
        &m,
        "lb_tls_certificate_expiry_timestamp_seconds{name=a.test}",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs_f64();
    assert!(expiry > now + 3000.0 && expiry < now + 3700.0, "{expiry}");

    // Storage: the keys and the account are private, the directories too.
    for name in ["a.test", "b.test"] {
        let d = store.join(name);
        assert_eq!(mode(&d.join("key.pem")), 0o600);
        assert_eq!(mode(&d), 0o700);
        assert!(d.join("cert.pem").exists());
        assert!(!d.join("lock").exists(), "the lock is released");
    }
    let accounts: Vec<PathBuf> = std::fs::read_dir(&store)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".json"))
        .collect();
    assert_eq!(accounts.len(), 1, "one account: {accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);

    // The challenge path is the lb's own (never routed nor redirected): an unknown token
    // is a 404 from the lb, not the backend's 200 or the redirect's 308; anything else is
    // redirected.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let resp = plain.get(lb.url("/x")).send().await.expect("plain request");
    assert_eq!(resp.status(), 308);
    let resp = plain
        .get(lb.url("/.well-known/acme-challenge/AAAAAAAAAAAAAAAAAAAAAAAA"))
        .send()
        .await
        .expect("challenge path");
    assert_eq!(resp.status(), 404);

    // A restart serves the stored certificates and orders nothing.
    drop(lb);
    let mut lb = Lb::start(&server, &routes(&stub));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    let l = &lb;
    eventually(WAIT, "stored certificates in use", move || async move {
        let lb = l;
        let e = acme_status(lb).await;
        e.len() == 2 && e.iter().all(|e| e["state"] == "valid")
    })
    .await;
    for (name, serial) in ["a.test", "b.test"].iter().zip(&seen) {
        let tls = connect(addr, name, &root).await.expect("verified");
        assert_eq!(&peer(&tls).0, serial, "{name}: the stored certificate");
    }
    assert_eq!(orders(&lb, "success").await, 0.0);
    assert_eq!(orders(&lb, "failure").await, 0.0);
}

#[tokio::test]
async fn renewal_serves_new_connections_a_new_certificate_and_a_failed_order_keeps_it() {
    let http_port = free_port();
    // 60 s certificates renewed a fifth of the way through: a renewal every ~12 s.
    let pebble = Pebble::start(http_port, Duration::from_secs(60)).await;
    let storage = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let server = server(
        http_port,
        "127.0.0.11",
        &pebble,
        &storage.path().join("acme"),
        &["r.test"],
        ", renew_at: 0.2",
    );
    let mut lb = Lb::start(&server, &routes(&stub));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    let first = until_issued(&lb, &pebble, 1, &[]).await;
    let root = pebble.root().await;

    // A connection opened on the first certificate.
    let old = connect(addr, "r.test", &root).await.expect("verified");
    assert_eq!(peer(&old).0, first[0]);
    let mut old = http1(old).await;
    assert_eq!(get_status(&mut old, "r.test").await, 200);

    // Renewed with no restart: new connections get the new certificate...
    let second = until_issued(&lb, &pebble, 1, &first).await;
    let tls = connect(addr, "r.test", &root).await.expect("verified");
    assert_eq!(peer(&tls).0, second[0]);
    assert!(orders(&lb, "success").await >= 2.0);
    // ...and the connection opened before keeps working.
    assert_eq!(get_status(&mut old, "r.test").await, 200);

    // The CA goes away: the next renewal fails, is visible, and the lb keeps serving the
    // certificate it has.
    drop(pebble);
    let l = &lb;
    eventually(WAIT, "a failed order", move || async move {
        orders(l, "failure").await >= 1.0
    })
    .await;
    let entry = acme_status(&lb).await.remove(0);
    assert_eq!(entry["state"], "backoff", "{entry}");
    assert!(
        entry["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{entry}"
    );
    assert!(entry["next_attempt"].is_string(), "{entry}");
    assert_eq!(entry["consecutive_failures"], 1, "{entry}");
    let served = entry["serial"].as_str().expect("serial").to_string();
    // Served as before: a certificate the CA issued (it verifies against the CA's root,
    // which a placeholder would not), the one `/status` names.
    let tls = connect(addr, "r.test", &root)
        .await
        .expect("still a certificate the CA issued");
    assert_eq!(peer(&tls).0, served);
    assert_ne!(served, first[0], "not the first, renewed one");
    let mut h1 = http1(tls).await;
    for _ in 0..5 {
        assert_eq!(get_status(&mut h1, "r.test").await, 200);
    }
    assert_eq!(get_status(&mut old, "r.test").await, 200);
}
