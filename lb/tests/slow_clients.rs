//! Thousands of slow clients against one lb, alone in its test binary so that no other
//! test competes for the two cores while connections are timed.

mod support;

use std::time::{Duration, Instant};

use support::{Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Thousands of connections trickle header bytes; every one is closed within the head
/// deadline plus two seconds, while a normal client beside them sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_all_cut_off_while_others_are_served() {
    const SLOW: usize = 3000;
    let stub = Stub::start("web", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{}\"] }} }}\n",
        stub.addr
    );
    // One address opening 3,000 connections is over the default `per_ip` (1,000).
    let mut lb = Lb::start(
        "  client_timeouts: { request_head: 1s }\n  connection_limits: { total: 10000, per_ip: 5000 }\n",
        &body,
    );
    lb.wait_ready().await;
    let started = Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let port = lb.port;
        slow.push(tokio::spawn(async move {
            // Opened in waves of 300 every 100 ms, as an attack ramps up; a burst of
            // thousands would time the listen backlog instead of the deadline.
            tokio::time::sleep(Duration::from_millis((i / 300) as u64 * 100)).await;
            let mut conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let opened = Instant::now();
            let head = format!("GET /slow-{i} HTTP/1.1\r\nHost: a.test\r\nX-Trickle: ");
            conn.write_all(head.as_bytes()).await.ok()?;
            let mut buf = [0u8; 512];
            loop {
                tokio::select! {
                    read = conn.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(opened.elapsed()),
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if conn.write_all(b"a").await.is_err() {
                            return Some(opened.elapsed());
                        }
                    }
                }
                if opened.elapsed() > Duration::from_secs(15) {
                    return None;
                }
            }
        }));
    }
    // A normal client alongside.
    let http = support::client();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let resp = http
            .get(lb.url("/normal"))
            .send()
            .await
            .expect("normal request");
        assert_eq!(resp.status(), 200);
        served += 1;
    }
    assert!(served > 0);
    let mut held = Vec::with_capacity(SLOW);
    for task in slow {
        if let Some(t) = task.await.expect("task") {
            held.push(t);
        }
    }
    let cut = held.len();
    held.sort();
    let longest = held.last().copied().unwrap_or_default();
    eprintln!(
        "slow connections held: median {:?}, p99 {:?}, max {longest:?}",
        held.get(cut / 2),
        held.get(cut * 99 / 100)
    );
    assert_eq!(cut, SLOW, "some slow connections were never closed");
    // The deadline is 1 s; without it they stay until the test gives up (15 s). The margin
    // is for a loaded 2-core machine (2.03 s seen with a build beside it).
    assert!(longest < Duration::from_secs(3), "held for {longest:?}");
    assert!(!lb.log().contains("\"level\":\"ERROR\""), "{}", lb.log());
}
