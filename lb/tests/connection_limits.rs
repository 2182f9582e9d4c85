//! `server.connection_limits` against the real binary: a connection over the per-IP or the
//! total limit is closed at accept time (no answer) and counted in
//! `lb_connections_refused_total`; a closed connection frees its place; a reload changes the
//! limits; a TLS connection whose handshake fails frees its place at once; `lb -t` on bad
//! values.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use support::{eventually, metric, scrape, Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn body(stub: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    )
}

fn limits(total: usize, per_ip: usize) -> String {
    format!("  connection_limits: {{ total: {total}, per_ip: {per_ip} }}\n")
}

/// A TCP connection from `source` (any 127.0.0.0/8 address is local) to `to`.
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().expect("ip"), 0))
        .expect("bind");
    socket.connect(to).await.expect("connect")
}

fn proxy(lb: &Lb) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lb.port))
}

/// One keep-alive GET on `conn`: its status, or `None` when the lb closed the connection
/// without answering.
async fn get_on(conn: &mut TcpStream) -> Option<u16> {
    if conn
        .write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .is_err()
    {
        return None;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return head.get(9..12).and_then(|s| s.parse().ok());
                }
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.expect("an answer or a close within 10 s")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A new connection from `source` and one GET on it.
async fn fresh_get(source: &str, to: SocketAddr) -> (TcpStream, Option<u16>) {
    let mut conn = connect_from(source, to).await;
    let status = get_on(&mut conn).await;
    (conn, status)
}

/// Wait until `n` connections are counted. The harness's readiness probe connects to the
/// proxy port too: it is accepted before any later connection (one listening socket, taken
/// in order), and its close takes a moment to be seen.
async fn open_is(lb: &Lb, n: usize) {
    eventually(
        Duration::from_secs(5),
        &format!("{n} connections counted"),
        || async { metric(&scrape(lb).await, "lb_connections_open{}") == n as f64 },
    )
    .await;
}

async fn refused(lb: &Lb, reason: &str) -> f64 {
    metric(
        &scrape(lb).await,
        &format!("lb_connections_refused_total{{reason={reason}}}"),
    )
}

#[tokio::test]
async fn per_ip_limit_closes_the_next_connection_from_that_address() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(&limits(100, 2), &body(&stub));
    lb.wait_ready().await;
    let to = proxy(&lb);

    let (c1, s1) = fresh_get("127.0.0.51", to).await;
    let (mut c2, s2) = fresh_get("127.0.0.51", to).await;
    assert_eq!((s1, s2), (Some(200), Some(200)));
    let (_, s3) = fresh_get("127.0.0.51", to).await;
    assert_eq!(
        s3, None,
        "a third connection from one address is closed unanswered"
    );
    let (_other, s) = fresh_get("127.0.0.52", to).await;
    assert_eq!(s, Some(200), "another address has its own count");
    // The open connections keep being served.
    assert_eq!(get_on(&mut c2).await, Some(200));

    open_is(&lb, 3).await;
    assert_eq!(refused(&lb, "per_ip").await, 1.0);
    assert_eq!(refused(&lb, "total").await, 0.0);

    // A closed connection frees its place (once the lb has seen the close).
    drop(c1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let _kept = loop {
        let (conn, status) = fresh_get("127.0.0.51", to).await;
        if status == Some(200) {
            break conn;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the close never freed a place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // A reload raises the limit for the next connections.
    lb.write_config(&limits(100, 3), &body(&stub));
    let out = lb.run_command(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_c4, s4) = fresh_get("127.0.0.51", to).await;
    assert_eq!(s4, Some(200));
    let (_, s5) = fresh_get("127.0.0.51", to).await;
    assert_eq!(s5, None);
    assert!(!lb.log().contains("\"level\":\"ERROR\""), "{}", lb.log());
}

#[tokio::test]
async fn total_limit_counts_every_address() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start(&limits(3, 100), &body(&stub));
    lb.wait_ready().await;
    let to = proxy(&lb);
    let mut open = Vec::new();
    for (i, source) in ["127.0.0.61", "127.0.0.62", "127.0.0.63"]
        .into_iter()
        .enumerate()
    {
        let (conn, status) = fresh_get(source, to).await;
        assert_eq!(status, Some(200), "{source}");
        open.push(conn);
        // Once one is answered, the probe before it has been accepted: wait for its place
        // to be freed.
        open_is(&lb, i + 1).await;
    }
    let (_, status) = fresh_get("127.0.0.64", to).await;
    assert_eq!(status, None);
    assert_eq!(refused(&lb, "total").await, 1.0);
    assert_eq!(refused(&lb, "per_ip").await, 0.0);
}

fn local_ca_listener(ip: &str, dir: &Path) -> String {
    format!(
        "  tls_listen:\n    - address: \"{ip}:0\"\n      certificates: [ {{ local_ca: {:?}, names: [localhost], default: true }} ]\n",
        dir.display()
    )
}

#[tokio::test]
async fn a_failed_tls_handshake_frees_its_place_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    // One place per address: the harness's readiness probes (from 127.0.0.1) cannot take it.
    let server = limits(100, 1) + &local_ca_listener("127.0.0.71", &dir.path().join("ca"));
    let mut lb = Lb::start(&server, &body(&stub));
    lb.wait_ready().await;
    let tls = support::tls_addr(&lb, 0).await;
    open_is(&lb, 0).await;

    // A TLS connection is counted from accept, before its handshake: while one is open the
    // address's only place is taken.
    let held = connect_from("127.0.0.72", tls).await;
    open_is(&lb, 1).await;
    let mut second = connect_from("127.0.0.72", tls).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut rest)).await;
    assert_eq!(refused(&lb, "per_ip").await, 1.0, "the second is refused");
    drop(held);
    open_is(&lb, 0).await;

    // Plaintext on the TLS port, and a handshake cut at once. Each holds the address's only
    // place until its handshake fails; without the release at that moment, the place would
    // stay taken until the handshake's deadline.
    let inputs: [&[u8]; 2] = [b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", b""];
    for input in inputs {
        let mut conn = connect_from("127.0.0.72", tls).await;
        conn.write_all(input).await.expect("write");
        conn.shutdown().await.expect("half close");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
        open_is(&lb, 0).await;
    }
    let (_, status) = fresh_get("127.0.0.72", proxy(&lb)).await;
    assert_eq!(status, Some(200));
    assert_eq!(
        refused(&lb, "per_ip").await,
        1.0,
        "each was admitted, none refused but the one above"
    );
}

/// A TLS client that never finishes its handshake is closed after `request_head`, not
/// pingora's 60 s, and its place freed: one address cannot park connections in handshakes.
#[tokio::test]
async fn a_silent_tls_client_is_closed_after_request_head() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let server = limits(100, 1)
        + "  client_timeouts: { request_head: 1s }\n"
        + &local_ca_listener("127.0.0.73", &dir.path().join("ca"));
    let mut lb = Lb::start(&server, &body(&stub));
    lb.wait_ready().await;
    let tls = support::tls_addr(&lb, 0).await;
    let failures = || async { metric(&scrape(&lb).await, "lb_tls_handshake_failures_total{}") };
    let before = failures().await;
    // Connected, and silent: no ClientHello, no close.
    let mut conn = connect_from("127.0.0.74", tls).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open after 20 s");
    assert!(rest.is_empty(), "nothing is answered: {rest:?}");
    assert_eq!(failures().await, before + 1.0);
    open_is(&lb, 0).await;
}

#[tokio::test]
async fn limits_off_refuse_nothing() {
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let mut lb = Lb::start("  connection_limits: off\n", &body(&stub));
    lb.wait_ready().await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let (conn, status) = fresh_get("127.0.0.81", proxy(&lb)).await;
        assert_eq!(status, Some(200));
        open.push(conn);
    }
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_connections_open{}"),
        0.0,
        "not counted while off"
    );
}

#[test]
fn lb_t_names_bad_connection_limits() {
    let text = |limits: &str| {
        format!("version: 1\nserver:\n  connection_limits: {limits}\nroutes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"127.0.0.1:1\"] }} }}\n")
    };
    for (limits, expected) in [
        (
            "{ total: 0, per_ip: -5 }",
            vec![
                "server.connection_limits.total: 0 must be at least 1",
                "server.connection_limits.per_ip: -5 must be at least 1",
            ],
        ),
        (
            "{ per_ip: lots }",
            vec!["server.connection_limits.per_ip: \"lots\" is not a whole number"],
        ),
        (
            "{ per_host: 3 }",
            vec!["server.connection_limits: unknown field \"per_host\", expected `total` or `per_ip`"],
        ),
        (
            "10",
            vec!["server.connection_limits: 10 is neither `off` nor a mapping such as `{ total: 10000, per_ip: 1000 }`"],
        ),
    ] {
        let (code, out) = support::lb::check_text(&text(limits));
        assert_eq!(code, Some(2), "{limits}: {out}");
        for e in expected {
            assert!(out.contains(e), "{limits}: missing {e:?} in:\n{out}");
        }
    }
    let (code, out) = support::lb::check_text(&text("{ total: 50000, per_ip: 2 }"));
    assert_eq!(code, Some(0), "{out}");
}
