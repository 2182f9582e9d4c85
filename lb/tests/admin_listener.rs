//! The admin listener's own limits, with the real binary: a `POST /reload` whose client
//! leaves at once still runs to its end and is recorded; a half-sent request head and an
//! idle keep-alive connection are closed after the header-read timeout (5 s); a connection
//! past the cap (64, and 8 more kept for loopback clients) is refused with a 503 and counted.

mod support;

use std::time::{Duration, Instant};

use support::{eventually, Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The admin listener's header-read timeout (`admin::HEADER_READ_TIMEOUT`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Its connection cap (`admin::MAX_CONNECTIONS`), and the places kept beyond it for
/// loopback clients, as these tests are (`admin::LOOPBACK_RESERVE`).
const MAX_CONNECTIONS: usize = 64 + 8;
/// A generous outer bound for a close the lb owes within [`HEADER_READ_TIMEOUT`].
const CLOSE_BOUND: Duration = Duration::from_secs(20);

fn body(app: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n",
        app.addr
    )
}

async fn connect(lb: &Lb) -> TcpStream {
    TcpStream::connect(("127.0.0.1", lb.admin))
        .await
        .expect("connect to the admin listener")
}

/// Read until the server closes the connection (EOF or reset), or `limit` passes:
/// everything read, and whether it closed.
async fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// One `GET /health` on a kept-alive connection, read to the end of its (small) body.
async fn health_on(conn: &mut TcpStream) {
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&got).contains(r#"{"status":"ok"}"#) {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("GET /health answered");
    assert!(got.starts_with(b"HTTP/1.1 200"));
}

/// A reload that waits for a new pool to warm up, asked for by a client that disconnects
/// right after sending it: the reload still finishes, and `/status`, the metric and the
/// log record it. Hyper drops a handler whose client left, so the reload must not live
/// inside one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_client_left_still_finishes_and_is_recorded() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&app));
    lb.wait_ready().await;

    // A resolver that never answers: the new pool's first discovery does not finish, so
    // the reload waits its whole warm-up limit (5 s), then installs the pool anyway.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    lb.write_config(
        "",
        &format!(
            "{}  slow:\n    discovery: {{ dns: \"slow.test:80\", resolver: \"{}\" }}\n",
            body(&app),
            silent.local_addr().expect("addr")
        ),
    );
    let mut conn = connect(&lb).await;
    conn.write_all(b"POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    // The new pool's first lookup arriving here says the reload is under way: leave now.
    let mut query = [0u8; 512];
    tokio::time::timeout(Duration::from_secs(10), silent.recv_from(&mut query))
        .await
        .expect("the reload's DNS query within 10 s")
        .expect("recv");
    drop(conn);

    eventually(
        Duration::from_secs(20),
        "the reload recorded in /status",
        || async { lb.admin_json("/status").await["reloads"]["success"].as_u64() == Some(1) },
    )
    .await;
    let status = lb.admin_json("/status").await;
    assert_eq!(status["reloads"]["last"]["trigger"], "admin", "{status}");
    assert!(status["upstreams"]["slow"].is_object(), "{status}");
    let m = support::scrape(&lb).await;
    assert_eq!(
        support::metric(&m, "lb_config_reloads_total{result=success}"),
        1.0
    );
    assert!(lb.log().contains("configuration reloaded"));
}

/// A client that sends half a request head, and one that stays idle after a request, are
/// both closed once the header-read timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_and_an_idle_keep_alive_connection_are_closed() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &body(&app));
    lb.wait_ready().await;

    let start = Instant::now();
    let mut half = connect(&lb).await;
    half.write_all(b"GET /health HTTP/1.1\r\nHost: adm")
        .await
        .expect("write");
    let mut idle = connect(&lb).await;
    health_on(&mut idle).await;

    let (_, half_closed) = read_until_closed(&mut half, CLOSE_BOUND).await;
    assert!(half_closed, "a half-sent head kept its connection open");
    let (extra, idle_closed) = read_until_closed(&mut idle, CLOSE_BOUND).await;
    assert!(idle_closed, "an idle keep-alive connection stayed open");
    // Nothing was answered on the idle one after its request.
    assert!(
        extra.is_empty() || extra.starts_with("HTTP/1.1 408"),
        "{extra}"
    );
    // Closed by the timeout, not at once.
    let waited = start.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "{waited:?}"
    );
    assert!(lb.is_running());
}

/// 64 connections held open fill the admin listener's shared places and 8 more its loopback
/// reserve (these clients are loopback ones; `admin::tests` covers a remote client); the 73rd
/// gets a 503 and is closed, counted in `lb_admin_connections_refused_total`; the 72 are still
/// served, and once they are gone the listener answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_connection_past_the_cap_is_refused_and_counted() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    // No `wait_ready`: its client would hold an admin connection of its own. `start` has
    // seen `admin listening on`, so the listener is up.
    let lb = Lb::start("", &body(&app));

    // Opened together: a held connection idle for the header-read timeout (5 s) is closed,
    // and its place freed, so all of this must fit well within that even on a busy machine.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..MAX_CONNECTIONS {
        let admin = lb.admin;
        opening.spawn(async move {
            let mut conn = TcpStream::connect(("127.0.0.1", admin))
                .await
                .expect("connect to the admin listener");
            // Served: each holds a place (the answer proves it was accepted and kept).
            health_on(&mut conn).await;
            conn
        });
    }
    let mut held = Vec::with_capacity(MAX_CONNECTIONS);
    while let Some(conn) = opening.join_next().await {
        held.push(conn.expect("an opening task"));
    }
    let mut refused = connect(&lb).await;
    let (answer, closed) = read_until_closed(&mut refused, CLOSE_BOUND).await;
    assert!(closed, "the connection past the cap was kept open");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    // The held ones are still served.
    health_on(&mut held[0]).await;
    health_on(&mut held[MAX_CONNECTIONS - 1]).await;
    drop(held);

    // Their places are freed as the lb sees them close.
    let client = support::client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        match client.get(lb.admin_url("/metrics")).send().await {
            Ok(r) if r.status() == 200 => break r.text().await.expect("body"),
            _ => {
                assert!(Instant::now() < deadline, "/metrics not answered again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        text.lines()
            .any(|l| l == "lb_admin_connections_refused_total 1"),
        "{text}"
    );
}
