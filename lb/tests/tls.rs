//! TLS listeners against the real binary, with certificates made here by `rcgen` and a real
//! rustls client (tokio-rustls; hyper for HTTP/1.1 and h2 on top): SNI choice (exact,
//! wildcard, default, the first certificate when none says `default`), ALPN h2 and
//! http/1.1 proxied to a stub backend, rotation by reload (a new serial for new handshakes,
//! an open connection carries on), bad rotations rejected with the old certificate still
//! served, an expired certificate served with a warning, `lb -t` naming the field, and bad
//! input on the TLS port closed cleanly.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use support::tls_client::http1;
use support::{access_line, metric, scrape, tls_addr, Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A self-signed certificate for `names` with `serial`, valid from `from` to `to` (Unix
/// seconds), written to `dir/stem.pem` and `dir/stem.key`.
struct TestCert {
    cert: PathBuf,
    key: PathBuf,
}

fn make_cert(dir: &Path, stem: &str, names: &[&str], serial: u64, from: i64, to: i64) -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.serial_number = Some(rcgen::SerialNumber::from(serial_bytes(serial)));
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).expect("time");
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).expect("time");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let t = TestCert {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    // Write then rename, as a certificate manager does, so a reload never reads half a file.
    for (path, text) in [(&t.cert, cert.pem()), (&t.key, key.serialize_pem())] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }
    t
}

fn valid_cert(dir: &Path, stem: &str, names: &[&str], serial: u64) -> TestCert {
    make_cert(dir, stem, names, serial, now() - DAY, now() + 30 * DAY)
}

/// One `certificates:` entry.
fn entry(c: &TestCert, names: Option<&[&str]>, default: bool) -> String {
    let names = names.map_or(String::new(), |n| format!(", names: {n:?}"));
    format!(
        "{{ cert: {:?}, key: {:?}{names}, default: {default} }}",
        c.cert.display().to_string(),
        c.key.display().to_string()
    )
}

/// A `tls_listen:` block (under `server:`) with one listener per `(ip, entries)`.
fn tls_listen(listeners: &[(&str, Vec<String>)]) -> String {
    let mut out = "  tls_listen:\n".to_string();
    for (ip, entries) in listeners {
        out.push_str(&format!(
            "    - address: \"{ip}:0\"\n      certificates: [ {} ]\n",
            entries.join(", ")
        ));
    }
    out
}

fn body(stub: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

/// A TLS handshake with `addr`, sending `sni` (none: no SNI extension) and offering `alpn`.
async fn handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&str],
) -> std::io::Result<TlsStream<TcpStream>> {
    // Any certificate: these tests look at which one is served, not at whether it is trusted.
    let mut config = support::tls_client::any_cert_config();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // An IP address as the server name sends no SNI.
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).expect("dns name"),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The serial (hex) of the certificate the server presented.
fn serial(tls: &TlsStream<TcpStream>) -> String {
    let certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).expect("x509");
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `serial` big-endian without leading zeros (the tests' serials stay below 0x80 in their
/// first byte, so DER needs no sign byte either).
fn serial_bytes(serial: u64) -> Vec<u8> {
    let bytes = serial.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    bytes[first..].to_vec()
}

/// The serial as the lb's `/status` and [`serial`] write it.
fn hex(serial: u64) -> String {
    serial_bytes(serial)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn served_serial(addr: SocketAddr, sni: Option<&str>) -> String {
    serial(
        &handshake(addr, sni, &["http/1.1"])
            .await
            .expect("handshake"),
    )
}

fn get(uri: &str, host: Option<&str>, id: &str) -> hyper::Request<Empty<Bytes>> {
    let mut req = hyper::Request::get(uri).header("x-request-id", id);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    req.body(Empty::new()).expect("request")
}

/// Status and JSON body of one response.
async fn answer(resp: hyper::Response<hyper::body::Incoming>) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default_and_the_first_without_one() {
    let dir = tempfile::tempdir().expect("dir");
    let exact = valid_cert(dir.path(), "exact", &["a.example.test"], 101);
    let wild = valid_cert(dir.path(), "wild", &["*.example.test"], 102);
    let fallback = valid_cert(dir.path(), "default", &["default.test"], 103);
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let tls = tls_listen(&[
        (
            "127.0.0.2",
            vec![
                entry(&exact, None, false),
                entry(&wild, None, false),
                entry(&fallback, None, true),
            ],
        ),
        // No `default: true`: the first certificate listed is the default (as in nginx).
        (
            "127.0.0.3",
            vec![
                entry(&exact, Some(&["A.Example.Test"][..]), false),
                entry(&fallback, None, false),
            ],
        ),
    ]);
    let mut lb = Lb::start(&tls, &body(&stub));
    lb.wait_ready().await;
    let (with_default, without) = (tls_addr(&lb, 0).await, tls_addr(&lb, 1).await);

    assert_eq!(
        served_serial(with_default, Some("a.example.test")).await,
        hex(101)
    );
    assert_eq!(
        served_serial(with_default, Some("b.example.test")).await,
        hex(102)
    );
    assert_eq!(
        served_serial(with_default, Some("x.b.example.test")).await,
        hex(103)
    );
    assert_eq!(
        served_serial(with_default, Some("unknown.test")).await,
        hex(103)
    );
    assert_eq!(served_serial(with_default, None).await, hex(103));

    assert_eq!(
        served_serial(without, Some("a.example.test")).await,
        hex(101)
    );
    assert_eq!(served_serial(without, Some("default.test")).await, hex(103));
    // A client that sends no SNI (an IP address as the server name), and an unknown name,
    // get the first certificate instead of a failed handshake.
    assert_eq!(served_serial(without, None).await, hex(101));
    assert_eq!(
        served_serial(without, Some("b.example.test")).await,
        hex(101)
    );

    let status = lb.admin_json("/status").await;
    assert_eq!(status["listening"]["tls"][0], with_default.to_string());
    let certs = &status["tls"][0]["certificates"];
    assert_eq!(certs[0]["names"][0], "a.example.test");
    assert_eq!(certs[0]["serial"], hex(101));
    assert_eq!(certs[2]["default"], true);
    assert_eq!(status["tls"][1]["certificates"][0]["default"], true);
    assert_eq!(status["tls"][1]["certificates"][1]["default"], false);
    assert_eq!(
        status["tls"][0]["protocols"],
        serde_json::json!(["h2", "http/1.1"])
    );
    let m = scrape(&lb).await;
    let expiry = metric(
        &m,
        "lb_tls_certificate_expiry_timestamp_seconds{name=*.example.test}",
    );
    assert!(
        (expiry - (now() + 30 * DAY) as f64).abs() < 120.0,
        "{expiry}"
    );
}

#[tokio::test]
async fn h2_and_http1_by_alpn_are_proxied_with_request_ids() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = valid_cert(dir.path(), "site", &["site.test"], 7);
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        &tls_listen(&[("127.0.0.2", vec![entry(&cert, None, true)])]),
        &body(&stub),
    );
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;

    // h2: no Host header, only `:authority`.
    let tls = handshake(addr, Some("site.test"), &["h2", "http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for id in ["tls-h2-1", "tls-h2-2"] {
        let mut req = get("https://site.test/api/x", None, id);
        *req.version_mut() = hyper::Version::HTTP_2;
        let (status, json) = answer(h2.send_request(req).await.expect("h2 request")).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["request_id"], id);
        assert_eq!(json["host"], "site.test");
        assert_eq!(json["xfp"], "https");
        assert_eq!(json["path"], "/api/x");
    }
    let line = access_line(&lb, "tls-h2-1").await;
    assert_eq!(line["protocol"], "h2", "{line}");
    assert_eq!(
        line["pipeline"], "engine",
        "h2 never takes the direct path: {line}"
    );
    assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
    assert_eq!(line["status"], 200);

    // http/1.1 by ALPN.
    let tls = handshake(addr, Some("site.test"), &["http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = http1(tls).await;
    let resp = h1
        .send_request(get("/api/y", Some("site.test"), "tls-h1-1"))
        .await
        .expect("h1 request");
    let (status, json) = answer(resp).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["request_id"], "tls-h1-1");
    let line = access_line(&lb, "tls-h1-1").await;
    assert_eq!(line["protocol"], "h1", "{line}");
    assert_eq!(line["tls_version"], "TLSv1.3", "{line}");

    // The plaintext listener is unchanged and has no tls_version.
    let resp = support::client()
        .get(lb.url("/plain"))
        .header("x-request-id", "plain-1")
        .send()
        .await
        .expect("plaintext GET");
    assert_eq!(resp.status(), 200);
    let line = access_line(&lb, "plain-1").await;
    assert_eq!(line["protocol"], "h1");
    assert!(line.get("tls_version").is_none(), "{line}");
}

#[tokio::test]
async fn reload_rotates_the_certificate_in_place_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let names = ["rot.test"];
    let first = valid_cert(dir.path(), "rot", &names, 0x1001);
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let server = tls_listen(&[("127.0.0.2", vec![entry(&first, None, false)])]);
    let mut lb = Lb::start(&server, &body(&stub));
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;
    assert_eq!(served_serial(addr, Some("rot.test")).await, hex(0x1001));

    // A connection opened before the rotation.
    let before = handshake(addr, Some("rot.test"), &["http/1.1"])
        .await
        .expect("handshake");
    let mut open = http1(before).await;
    let resp = open
        .send_request(get("/a", Some("rot.test"), "rot-1"))
        .await
        .expect("request");
    assert_eq!(answer(resp).await.0, 200);

    // Same paths, new files: a reload picks them up.
    valid_cert(dir.path(), "rot", &names, 0x1002);
    let out = lb.run_command(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(served_serial(addr, Some("rot.test")).await, hex(0x1002));
    let resp = open
        .send_request(get("/b", Some("rot.test"), "rot-2"))
        .await
        .expect("open connection after rotation");
    assert_eq!(answer(resp).await.0, 200);
    let status = lb.admin_json("/status").await;
    assert_eq!(status["tls"][0]["certificates"][0]["serial"], hex(0x1002));

    // An expired certificate: served (as nginx does), with a WARN line and its date in
    // the expiry metric; one stale certificate never blocks a reload.
    make_cert(
        dir.path(),
        "rot",
        &names,
        0x1003,
        now() - 30 * DAY,
        now() - DAY,
    );
    let out = lb.run_command(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(served_serial(addr, Some("rot.test")).await, hex(0x1003));
    let warned = lb.log().lines().any(|l| {
        l.contains("\"level\":\"WARN\"")
            && l.contains("server.tls_listen[0].certificates[0].cert")
            && l.contains("expired on")
    });
    assert!(warned, "{}", lb.log());
    let expiry = metric(
        &scrape(&lb).await,
        "lb_tls_certificate_expiry_timestamp_seconds{name=rot.test}",
    );
    assert!((expiry - (now() - DAY) as f64).abs() < 120.0, "{expiry}");

    // A key that is not the certificate's: rejected too.
    let valid = valid_cert(dir.path(), "rot", &names, 0x1004);
    let other = valid_cert(dir.path(), "other", &names, 0x1005);
    std::fs::copy(&other.key, &valid.key).expect("swap key");
    let out = lb.run_command(&["reload"]);
    assert!(!out.status.success());
    let status = lb.admin_json("/status").await;
    let errors = status["reloads"]["last"]["errors"].to_string();
    assert!(
        errors.contains("server.tls_listen[0].certificates[0].key")
            && errors.contains("is not the key"),
        "{errors}"
    );
    assert_eq!(served_serial(addr, Some("rot.test")).await, hex(0x1003));
    assert_eq!(
        metric(
            &scrape(&lb).await,
            "lb_config_reloads_total{result=failure}"
        ),
        1.0
    );
    assert!(lb.log().contains("configuration reload rejected"));

    // The connection from before every reload still works.
    let resp = open
        .send_request(get("/c", Some("rot.test"), "rot-3"))
        .await
        .expect("open connection");
    assert_eq!(answer(resp).await.0, 200);
}

#[test]
fn lb_t_checks_certificate_files_and_names_the_field() {
    let dir = tempfile::tempdir().expect("dir");
    let expired = make_cert(
        dir.path(),
        "old",
        &["a.test"],
        1,
        now() - 30 * DAY,
        now() - DAY,
    );
    let good = valid_cert(dir.path(), "good", &["a.test"], 2);
    let run = |server: &str| {
        let path = dir.path().join("lb.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nserver:\n  listen: [\"127.0.0.1:0\"]\n{server}routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"127.0.0.1:1\"] }} }}\n"
            ),
        )
        .expect("write");
        let out = std::process::Command::new(support::lb::bin())
            .args(["-t", "-c"])
            .arg(&path)
            .output()
            .expect("lb -t");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&tls_listen(&[(
        "127.0.0.2",
        vec![entry(&good, None, true)],
    )]));
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("warning"), "{stderr}");
    // Dates are a warning, not an error: the config is valid, and `-t` prints why the
    // certificates will not verify.
    let future = make_cert(
        dir.path(),
        "future",
        &["c.test"],
        3,
        now() + DAY,
        now() + 30 * DAY,
    );
    let (code, stderr) = run(&tls_listen(&[(
        "127.0.0.2",
        vec![
            entry(&expired, None, false),
            entry(&future, None, false),
            entry(&good, Some(&["b.test"][..]), false),
        ],
    )]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: server.tls_listen[0].certificates[0].cert: ")
            && stderr.contains("expired on"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: server.tls_listen[0].certificates[1].cert: ")
            && stderr.contains("not valid before"),
        "{stderr}"
    );
    let missing = TestCert {
        cert: good.cert.clone(),
        key: dir.path().join("missing.key"),
    };
    let (code, stderr) = run(&tls_listen(&[(
        "127.0.0.2",
        vec![
            entry(&expired, None, false),
            entry(&missing, Some(&["b.test"][..]), false),
        ],
    )]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls_listen[0].certificates[1].key: cannot read"),
        "{stderr}"
    );
    assert!(stderr.contains("1 error(s)"), "{stderr}");
}

/// Reads until the server closes (EOF or reset), failing after 10 s.
async fn closed_by_server(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the lb kept the connection open");
}

#[tokio::test]
async fn bad_input_on_the_tls_port_is_closed_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = valid_cert(dir.path(), "site", &["site.test"], 9);
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        &tls_listen(&[("127.0.0.2", vec![entry(&cert, None, false)])]),
        &body(&stub),
    );
    lb.wait_ready().await;
    let addr = tls_addr(&lb, 0).await;

    // Plaintext HTTP, garbage, and a handshake cut half-way.
    let inputs: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n",
        &[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0x04],
        // A TLS record header announcing a 512-byte ClientHello, then only its start.
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    ];
    for (i, input) in inputs.iter().enumerate() {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(input).await.expect("write");
        if i == 2 {
            conn.shutdown().await.expect("half close");
        }
        closed_by_server(conn).await;
    }
    // A TLS 1.0-only ClientHello (record and hello version 3.1, one TLS 1.0 suite).
    let mut hello = vec![0x03, 0x01];
    hello.extend([0u8; 32]); // random
    hello.extend([0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]); // no session id, 1 suite, null compression
    let mut handshake_msg = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake_msg.extend(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake_msg.len() as u8];
    record.extend(&handshake_msg);
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(&record).await.expect("write");
    closed_by_server(conn).await;

    // Still serving; nothing panicked, no ERROR line per bad connection, all counted.
    assert_eq!(served_serial(addr, Some("site.test")).await, hex(9));
    assert!(lb.is_running());
    let log = lb.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
    support::eventually(
        Duration::from_secs(5),
        "4 handshake failures counted",
        || {
            let lb = &lb;
            async move { metric(&scrape(lb).await, "lb_tls_handshake_failures_total{}") >= 4.0 }
        },
    )
    .await;
}
