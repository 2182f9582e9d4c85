//! Test harness: the real `lb` binary, stub upstreams and a DNS server, all on loopback.
#![allow(dead_code)]

pub(crate) mod dns;
pub(crate) mod lb;
pub(crate) mod stub;
pub(crate) mod tls_client;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub(crate) use self::dns::DnsServer;
#[allow(unused_imports)]
pub(crate) use self::lb::Lb;
#[allow(unused_imports)]
pub(crate) use self::stub::{chunked_body, Stub};

/// An address on `ip` where connections are refused for as long as the returned socket
/// lives: it holds the port (bound, never listening), so no other test can take it.
pub(crate) fn dead_addr(ip: &str) -> (std::net::SocketAddr, tokio::net::TcpSocket) {
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .expect("socket");
    socket.bind((ip, 0).into()).expect("bind :0");
    (socket.local_addr().expect("local addr"), socket)
}

/// The address after `prefix` in a log line, text or JSON
/// (`... "message":"proxy listening on 127.0.0.1:4321" ...`).
pub(crate) fn logged_addr(line: &str, prefix: &str) -> Option<std::net::SocketAddr> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A client with keep-alive, no proxy, bounded timeouts.
/// The `n`th `tls listening on ADDR` address the lb logged (in `tls_listen` order).
pub(crate) async fn tls_addr(lb: &Lb, n: usize) -> std::net::SocketAddr {
    let mut found = None;
    eventually(Duration::from_secs(10), "tls listening line", || {
        found = lb
            .log()
            .lines()
            .filter_map(|l| logged_addr(l, "tls listening on "))
            .nth(n);
        let ok = found.is_some();
        async move { ok }
    })
    .await;
    found.expect("address")
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// GET `url` `n` times in sequence; counts the `id` field of each JSON answer.
/// Non-200 answers count under `"status:<code>"`.
pub(crate) async fn spread(
    client: &reqwest::Client,
    url: &str,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let key = match client.get(url).send().await {
            Ok(r) if r.status() == 200 => {
                let v: serde_json::Value = r.json().await.expect("json");
                v["id"].as_str().unwrap_or("?").to_string()
            }
            Ok(r) => format!("status:{}", r.status().as_u16()),
            Err(e) => format!("error:{e}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The JSON access-log line of request `id`, waited for (lines are written in batches).
pub(crate) async fn access_line(lb: &Lb, id: &str) -> serde_json::Value {
    let needle = format!("\"request_id\":\"{id}\"");
    let mut line = None;
    eventually(Duration::from_secs(5), &format!("access line {id}"), || {
        line = lb
            .log()
            .lines()
            .find(|l| l.contains(&needle) && l.contains("\"target\":\"access\""))
            .map(str::to_string);
        let found = line.is_some();
        async move { found }
    })
    .await;
    serde_json::from_str(&line.expect("line")).expect("JSON access line")
}

/// Poll `probe` until it returns true, failing the test after `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if probe().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until `id` is (`present = true`) or is not among the answers to a burst of 12
/// requests, failing after `limit`.
pub(crate) async fn until_serving(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    present: bool,
    limit: Duration,
) {
    let what = format!(
        "{id} {} the rotation",
        if present { "in" } else { "out of" }
    );
    eventually(limit, &what, || {
        let (http, url) = (http.clone(), url.to_string());
        async move { spread(&http, &url, 12).await.contains_key(id) == present }
    })
    .await;
}

/// A client that opens a new connection for every request (it keeps none idle).
pub(crate) fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// One load connection: a client that keeps one keep-alive connection.
pub(crate) fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Outcome of a bounded load run.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    pub(crate) ok: usize,
    pub(crate) failures: Vec<String>,
    pub(crate) by_id: BTreeMap<String, usize>,
}

impl LoadResult {
    pub(crate) fn assert_no_failures(&self, total: usize) {
        let shown = &self.failures[..self.failures.len().min(5)];
        assert!(
            self.failures.is_empty(),
            "{} of {total} failed, e.g. {shown:?}",
            self.failures.len()
        );
        assert_eq!(self.ok, total);
    }
}

/// A bounded load running in the background: `total` GETs over `connections` keep-alive
/// clients. Read `done` to act mid-run, then `finish().await`.
pub(crate) struct Load {
    pub(crate) done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<LoadResult>>,
}

impl Load {
    pub(crate) fn start(url: &str, total: usize, connections: usize) -> Load {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..connections)
            .map(|c| {
                let per = total / connections + usize::from(c < total % connections);
                let (url, done) = (url.to_string(), done.clone());
                tokio::spawn(async move {
                    let client = load_client();
                    let mut r = LoadResult::default();
                    for _ in 0..per {
                        match client.get(&url).send().await {
                            Ok(resp) if resp.status() == 200 => {
                                match resp.json::<serde_json::Value>().await {
                                    Ok(v) => {
                                        r.ok += 1;
                                        let id = v["id"].as_str().unwrap_or("?").to_string();
                                        *r.by_id.entry(id).or_insert(0) += 1;
                                    }
                                    Err(e) => r.failures.push(format!("body: {e}")),
                                }
                            }
                            Ok(resp) => r.failures.push(format!("status {}", resp.status())),
                            Err(e) => r.failures.push(format!("error: {e}")),
                        }
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        Load { done, tasks }
    }

    /// Wait until at least `n` requests completed.
    pub(crate) async fn reached(&self, n: usize) {
        let done = self.done.clone();
        eventually(Duration::from_secs(30), "load progress", move || {
            let d = done.load(std::sync::atomic::Ordering::Relaxed);
            async move { d >= n }
        })
        .await;
    }

    pub(crate) async fn finish(self) -> LoadResult {
        let mut total = LoadResult::default();
        for t in self.tasks {
            let r = t.await.expect("load task");
            total.ok += r.ok;
            total.failures.extend(r.failures);
            for (k, v) in r.by_id {
                *total.by_id.entry(k).or_insert(0) += v;
            }
        }
        total
    }
}

/// `/metrics` parsed with a real Prometheus text parser: (name, sorted labels) → value.
pub(crate) async fn scrape(lb: &Lb) -> HashMap<String, f64> {
    let resp = client()
        .get(lb.admin_url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"]
        .to_str()
        .expect("ctype")
        .to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.expect("body");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    out
}

pub(crate) fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Send raw bytes to the proxy port and read until the lb closes the connection (at most
/// 10 s): for answers the lb closes after, such as its refusals.
pub(crate) async fn exchange(lb: &Lb, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", lb.port))
        .await
        .expect("connect");
    conn.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}
