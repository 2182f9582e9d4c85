//! Repeated ERROR lines are rate-limited (`server.log_throttle`): a dead backend under
//! requests writes one line per window and then a "suppressed N" summary, both for the
//! lb's own line (fast path, GET; the direct path writes the same one) and for pingora's
//! (engine path, POST: through the log filter). Every failure is accounted for: written,
//! or counted in a summary.

mod support;

use std::time::Duration;

use support::{client, Lb};

const REQUESTS: usize = 30;

/// (lines written, lines reported as suppressed) for the lines `is_line` picks and the
/// summaries `is_summary` picks.
fn accounted(
    log: &str,
    is_line: impl Fn(&serde_json::Value) -> bool,
    is_summary: impl Fn(&serde_json::Value) -> bool,
) -> (usize, u64) {
    let mut written = 0;
    let mut suppressed = 0;
    for line in log.lines() {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if is_summary(&json) {
            assert_eq!(json["level"], "ERROR", "a summary keeps the level: {line}");
            suppressed += json["suppressed"].as_u64().expect("a count");
        } else if is_line(&json) {
            written += 1;
        }
    }
    (written, suppressed)
}

fn message(json: &serde_json::Value) -> &str {
    json["message"].as_str().unwrap_or("")
}

/// A ready lb with `log_throttle` whose only backend refuses connections (while the
/// returned socket holds its address), with no retry.
async fn dead_backend(throttle: &str) -> (Lb, std::net::SocketAddr, tokio::net::TcpSocket) {
    let (dead, hold) = support::dead_addr("127.0.0.1");
    let mut lb = Lb::start(
        &format!("  log_throttle: {throttle}"),
        &format!(
            "routes:\n  - {{ prefix: /, upstream: web }}\nupstreams:\n  web: {{ discovery: {{ static: [\"{dead}\"] }}, retries: 0 }}\n"
        ),
    );
    lb.wait_ready().await;
    (lb, dead, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_writes_one_line_per_window_and_a_count() {
    let (lb, dead, _hold) = dead_backend("2s").await;
    let http = client();
    for _ in 0..REQUESTS {
        let resp = http.get(lb.url("/x")).send().await.expect("GET");
        assert_eq!(resp.status(), 502);
        let resp = http
            .post(lb.url("/x"))
            .body("a")
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), 502);
    }

    let direct = |log: &str| {
        accounted(
            log,
            |j| message(j) == "fail to proxy",
            |j| j["site"] == "fail to proxy",
        )
    };
    let engine = |log: &str| {
        accounted(
            log,
            |j| message(j).starts_with("Fail to proxy: "),
            |j| {
                j["site"] == "library line"
                    && j["key"]
                        .as_str()
                        .is_some_and(|k| k.contains("Fail to proxy: "))
            },
        )
    };
    // The summaries come once each window has ended (flushed every second).
    support::eventually(
        Duration::from_secs(15),
        "every failure accounted for",
        || {
            let log = lb.log();
            let (d, e) = (direct(&log), engine(&log));
            let done = d.0 + d.1 as usize == REQUESTS && e.0 + e.1 as usize == REQUESTS;
            async move { done }
        },
    )
    .await;
    let log = lb.log();
    for (path, (written, suppressed)) in [("fast", direct(&log)), ("engine", engine(&log))] {
        assert!(
            written <= REQUESTS / 5 && suppressed > 0,
            "{path}: {written} lines written, {suppressed} suppressed:\n{log}"
        );
    }
    let summary = log
        .lines()
        .find(|l| l.contains("\"site\":\"fail to proxy\""))
        .expect("a summary line");
    assert!(
        summary.contains(&format!(
            "fail to proxy [web {dead} ConnectRefused] (suppressed "
        )),
        "{summary}"
    );
    assert!(
        summary.contains("similar lines in the last 2s)"),
        "{summary}"
    );
}

/// `0s` writes every line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_writes_every_line() {
    let (lb, _, _hold) = dead_backend("0s").await;
    let http = client();
    for _ in 0..5 {
        let resp = http.get(lb.url("/x")).send().await.expect("GET");
        assert_eq!(resp.status(), 502);
    }
    support::eventually(Duration::from_secs(10), "5 lines", || {
        let n = lb
            .log()
            .lines()
            .filter(|l| l.contains("\"message\":\"fail to proxy\""))
            .count();
        async move { n == 5 }
    })
    .await;
    assert!(!lb.log().contains("suppressed"));
}
