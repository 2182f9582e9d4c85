//! Every request path held to one contract. A plain body-less `GET` takes the fast path;
//! on an lb started with `server.fast_path: false` the same request takes the direct path;
//! the same request with a header nominated by `Connection` goes through pingora's engine
//! (on either lb). Every test here sends the same requests down all three paths, checks
//! from the access log that each took the path it was meant to, and asserts the same
//! answer: the headers the backend and the client see, the lb's own error answers, the
//! access-log line and the metrics of one request, and `Connection: close` once the lb is
//! stopping.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{access_line, client, metric, scrape, Lb, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Pipeline {
    Fast,
    Direct,
    Engine,
}

use Pipeline::{Direct, Engine, Fast};

impl Pipeline {
    const ALL: [Pipeline; 3] = [Fast, Direct, Engine];

    /// The access log's `pipeline` value.
    fn name(self) -> &'static str {
        match self {
            Fast => "fast",
            Direct => "direct",
            Engine => "engine",
        }
    }

    /// The `Connection` header (and the header it nominates) that selects this path.
    fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Fast | Direct => &[("connection", "keep-alive")],
            Engine => &[
                ("connection", "keep-alive, x-engine-path"),
                ("x-engine-path", "1"),
            ],
        }
    }

    fn get(
        self,
        http: &reqwest::Client,
        lbs: &Lbs,
        path: &str,
        id: &str,
    ) -> reqwest::RequestBuilder {
        let mut req = http.get(lbs.of(self).url(path)).header("x-request-id", id);
        for (name, value) in self.headers() {
            req = req.header(*name, *value);
        }
        req
    }
}

/// Two lbs on the same config: the default one (fast path on) and one with
/// `server.fast_path: false`, where a simple `GET` takes the direct path.
struct Lbs {
    fast: Lb,
    direct: Lb,
}

impl Lbs {
    async fn start(body: &str) -> Lbs {
        let mut fast = Lb::start("", body);
        let mut direct = Lb::start("  fast_path: false\n", body);
        fast.wait_ready().await;
        direct.wait_ready().await;
        Lbs { fast, direct }
    }

    /// The lb that sends `pipeline`'s requests down it (the engine's: the default one).
    fn of(&self, pipeline: Pipeline) -> &Lb {
        match pipeline {
            Direct => &self.direct,
            Fast | Engine => &self.fast,
        }
    }
}

/// The access line of `id`, after checking it went down `pipeline`.
async fn took(lbs: &Lbs, id: &str, pipeline: Pipeline) -> Value {
    let line = access_line(lbs.of(pipeline), id).await;
    assert_eq!(line["pipeline"], pipeline.name(), "{id}: {line}");
    line
}

fn pool(name: &str, addrs: &[String], extra: &str) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "  {name}:\n    discovery: {{ static: [{}] }}\n{extra}",
        addrs.join(", ")
    )
}

const CHECKED: &str =
    "    health_check: { path: /ready, interval: 200ms, timeout: 200ms, unhealthy_after: 1 }\n";

/// One health-checked stub ("app") behind both ready lbs routing `/` to it.
async fn one_app() -> (Stub, Lbs) {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n{}",
        pool("app", &[app.addr.to_string()], CHECKED)
    );
    let lbs = Lbs::start(&body).await;
    (app, lbs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_the_same_on_every_path() {
    let (_app, lbs) = one_app().await;
    let http = client();

    let mut seen_upstream = BTreeMap::new();
    for pipeline in Pipeline::ALL {
        let id = format!("headers-{}", pipeline.name());
        let resp = pipeline
            .get(&http, &lbs, "/hop?q=1", &id)
            .header("host", "example.test")
            .header("x-forwarded-for", "203.0.113.7")
            // hop-by-hop: for this connection only, never forwarded
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("trailer", "x-checksum")
            .header("proxy-connection", "keep-alive")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("http2-settings", "AAMAAABkAAQAAP__")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{pipeline:?}");
        let h = resp.headers();
        assert_eq!(h["x-request-id"], id.as_str(), "{pipeline:?}: id echoed");
        for name in ["keep-alive", "proxy-connection"] {
            assert!(
                !h.contains_key(name),
                "{pipeline:?}: the backend's {name} reached the client"
            );
        }
        // Via/Server policy: the lb adds neither; the backend's own answer passes as is.
        assert!(!h.contains_key("via"), "{pipeline:?}");
        assert!(!h.contains_key("server"), "{pipeline:?}");

        let v: Value = resp.json().await.expect("json");
        let mut upstream = v["headers"].as_object().expect("headers").clone();
        assert_eq!(upstream["host"], "example.test", "{pipeline:?}");
        assert_eq!(upstream["x-forwarded-host"], "example.test", "{pipeline:?}");
        assert_eq!(upstream["x-forwarded-proto"], "http", "{pipeline:?}");
        assert_eq!(
            upstream["x-forwarded-for"], "203.0.113.7, 127.0.0.1",
            "{pipeline:?}"
        );
        assert_eq!(upstream["x-request-id"], id.as_str(), "{pipeline:?}");
        assert_eq!(v["path"], "/hop?q=1", "{pipeline:?}");
        for name in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "proxy-connection",
            "proxy-authorization",
            "http2-settings",
            "x-engine-path",
        ] {
            assert!(
                !upstream.contains_key(name),
                "{pipeline:?}: {name} was forwarded: {upstream:?}"
            );
        }
        took(&lbs, &id, pipeline).await;
        upstream.remove("x-request-id");
        seen_upstream.insert(pipeline.name(), upstream);
    }
    for pipeline in [Direct, Engine] {
        assert_eq!(
            seen_upstream["fast"],
            seen_upstream[pipeline.name()],
            "the backend sees the same headers from the fast and the {pipeline:?} path"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_are_the_same_on_every_path() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let ((down1, _held1), (down2, _held2)) = (
        support::dead_addr("127.0.0.1"),
        support::dead_addr("127.0.0.1"),
    );
    let (refused, _held3) = support::dead_addr("127.0.0.1");
    let body = format!(
        "routes:\n  - {{ prefix: /down/, upstream: down }}\n  - {{ prefix: /refused/, upstream: refused }}\n  \
         - {{ prefix: /slow/, upstream: slow, strip_prefix: true }}\nupstreams:\n{}{}{}",
        pool(
            "down",
            &[down1.to_string(), down2.to_string()],
            &format!("{CHECKED}    queue_timeout: 0s\n"),
        ),
        pool("refused", &[refused.to_string()], "    retries: 1\n"),
        pool(
            "slow",
            &[app.addr.to_string()],
            "    timeouts: { read: 300ms }\n"
        ),
    );
    let lbs = Lbs::start(&body).await;
    let http = client();

    for (path, status, error) in [
        ("/down/x", 503, "no healthy backend available"),
        ("/refused/x", 502, "bad gateway"),
        ("/slow/slow?ms=3000", 504, "upstream timed out"),
    ] {
        let mut answers = Vec::new();
        for pipeline in Pipeline::ALL {
            let id = format!("err-{status}-{}", pipeline.name());
            let resp = pipeline
                .get(&http, &lbs, path, &id)
                .send()
                .await
                .expect("get");
            assert_eq!(resp.status(), status, "{pipeline:?} {path}");
            let h = resp.headers().clone();
            assert_eq!(h["content-type"], "application/json", "{pipeline:?}");
            assert_eq!(h["cache-control"], "no-store", "{pipeline:?}");
            assert_eq!(h["x-request-id"], id.as_str(), "{pipeline:?}");
            assert_eq!(
                h.get("retry-after").map(|v| v.to_str().expect("ascii")),
                (status == 503).then_some("1"),
                "{pipeline:?} {path}"
            );
            let v: Value = resp.json().await.expect("json body");
            assert_eq!(
                v,
                serde_json::json!({ "error": error, "status": status, "request_id": id }),
                "{pipeline:?} {path}"
            );
            let line = took(&lbs, &id, pipeline).await;
            assert_eq!(line["status"], status, "{pipeline:?} {path}");
            answers.push((pipeline, line["tries"].clone(), line["error"].is_string()));
        }
        for other in &answers[1..] {
            assert_eq!(
                (&answers[0].1, answers[0].2),
                (&other.1, other.2),
                "{path}: the same tries and error field on the fast and the {:?} path",
                other.0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_logged_and_counted_the_same_on_every_path() {
    let (app, lbs) = one_app().await;
    let http = client();

    let mut lines = Vec::new();
    for pipeline in Pipeline::ALL {
        let lb = lbs.of(pipeline);
        let before = scrape(lb).await;
        // Ids of one length: the stub's body echoes it, and `bytes_out` is compared.
        let id = format!("record-{}", pipeline as u8);
        let resp = pipeline
            .get(&http, &lbs, "/record", &id)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        let body_len = resp.bytes().await.expect("body").len();
        let keys = [
            "lb_requests_total{code_class=2xx,route=/,upstream=app}",
            "lb_upstream_tries_total{upstream=app}",
            "lb_request_duration_seconds{upstream=app}",
        ];
        // Counted when the request is logged, just after the client has its answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let after = loop {
            let after = scrape(lb).await;
            if keys.iter().all(|k| metric(&after, k) > metric(&before, k)) {
                break after;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pipeline:?}: the request was never counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for key in keys {
            assert_eq!(
                metric(&after, key) - metric(&before, key),
                1.0,
                "{pipeline:?}: {key} counts one request"
            );
        }
        let mut line = took(&lbs, &id, pipeline).await;
        assert_eq!(line["bytes_out"], body_len, "{pipeline:?}");
        assert_eq!(line["backend"], app.addr.to_string(), "{pipeline:?}");
        assert!(line["duration_ms"].is_number(), "{pipeline:?}");
        let fields = line.as_object_mut().expect("object");
        for varying in ["timestamp", "request_id", "duration_ms", "pipeline"] {
            fields.remove(varying);
        }
        lines.push((pipeline, line));
    }
    for (pipeline, line) in &lines[1..] {
        assert_eq!(
            lines[0].1, *line,
            "the same access-log fields on the fast and the {pipeline:?} path"
        );
    }
}

/// A keep-alive request in flight on `pipeline`'s lb, sent by hand so the answer's headers
/// are read as they come.
async fn in_flight(lbs: &Lbs, pipeline: Pipeline) -> tokio::task::JoinHandle<String> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", lbs.of(pipeline).port))
        .await
        .expect("connect");
    let extra: String = pipeline
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let request = format!(
        "GET /slow?ms=1500 HTTP/1.1\r\nhost: x\r\nx-request-id: closing-{}\r\n{extra}\r\n",
        pipeline.name()
    );
    conn.write_all(request.as_bytes()).await.expect("send");
    tokio::spawn(async move {
        let mut answer = Vec::new();
        // The lb closes the connection after the answer: read to the end, bounded.
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer));
        read.await.expect("answer within 10 s").expect("read");
        String::from_utf8_lossy(&answer).to_lowercase()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_connections_after_the_answer_in_flight_on_every_path() {
    let (app, mut lbs) = one_app().await;
    let mut answers = Vec::new();
    for pipeline in Pipeline::ALL {
        answers.push((pipeline, in_flight(&lbs, pipeline).await));
    }
    support::eventually(
        Duration::from_secs(5),
        "every request reaches the backend",
        || {
            let n = app.in_flight();
            async move { n == Pipeline::ALL.len() }
        },
    )
    .await;
    // Every request started before its lb began closing; the answers come after.
    lbs.fast.signal(Signal::SIGTERM);
    lbs.direct.signal(Signal::SIGTERM);
    for (pipeline, answer) in answers {
        let answer = answer.await.expect("join");
        assert!(answer.starts_with("http/1.1 200"), "{pipeline:?}: {answer}");
        let head = answer.split("\r\n\r\n").next().unwrap_or("");
        assert!(
            head.lines().any(|l| l == "connection: close"),
            "{pipeline:?}: the answer in flight ends its connection:\n{head}"
        );
    }
    for lb in [&mut lbs.fast, &mut lbs.direct] {
        lb.wait_exit(Duration::from_secs(8))
            .await
            .expect("exits within the grace time");
    }
    for pipeline in Pipeline::ALL {
        took(&lbs, &format!("closing-{}", pipeline.name()), pipeline).await;
    }
}
