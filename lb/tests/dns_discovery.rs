//! Live DNS discovery against a real DNS server on loopback: the pool follows the A
//! records; failed lookups keep the last set; NXDOMAIN means scaled to zero; SRV records
//! give ports and weights, lowest priority first.

mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use support::dns::Answer;
use support::{client, spread, DnsServer, Lb, Stub};

/// The set of ids that answered `n` requests.
async fn responders(http: &reqwest::Client, url: &str, n: usize) -> BTreeSet<String> {
    spread(http, url, n).await.into_keys().collect()
}

/// Poll until a burst of `n` requests is answered by exactly `want`, within 5 s
/// (many discovery intervals: a margin for a busy machine).
async fn until_responders(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    want: BTreeSet<String>,
    what: &str,
) {
    support::eventually(Duration::from_secs(5), what, || {
        let (http, url, want) = (http.clone(), url.to_string(), want.clone());
        async move { responders(&http, &url, n).await == want }
    })
    .await;
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_follows_dns_records() {
    let ips: Vec<Ipv4Addr> = (2..=4).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    // A records carry no port: the first stub takes a free one, the others the same
    // port on their own IPs (free there while the first holds it on 127.0.0.2).
    let r2 = Stub::start("r2", &format!("{}:0", ips[0])).await;
    let port = r2.addr.port();
    let _stubs = [
        r2,
        Stub::start("r3", &format!("{}:{port}", ips[1])).await,
        Stub::start("r4", &format!("{}:{port}", ips[2])).await,
    ];
    let dns = DnsServer::start(Answer::Records(vec![ips[0]])).await;
    // interval 300ms; "within interval plus a margin" = the 5 s polls below
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ dns: \"app.test:{port}\", interval: 300ms, resolver: \"{}\" }}\n    \
         health_check: {{ path: /ready, interval: 200ms, timeout: 200ms }}\n",
        dns.addr
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let http = client();
    let url = lb.url("/who");

    // 1 record
    assert_eq!(responders(&http, &url, 9).await, set(&["r2"]));

    // 1 -> 3
    dns.set(Answer::Records(ips.clone()));
    until_responders(&http, &url, 12, set(&["r2", "r3", "r4"]), "pool grows to 3").await;

    // 3 -> 2: traffic reaches exactly the current set
    dns.set(Answer::Records(vec![ips[0], ips[2]]));
    until_responders(&http, &url, 12, set(&["r2", "r4"]), "pool shrinks to 2").await;
    assert_eq!(responders(&http, &url, 30).await, set(&["r2", "r4"]));

    // lookups fail (SERVFAIL): the last set stays, for several intervals
    dns.set(Answer::ServFail);
    // Wait until the lb has really seen a failed lookup, rather than sleeping and hoping.
    support::eventually(
        Duration::from_secs(5),
        "a failed DNS lookup in the log",
        || {
            let seen = lb
                .log()
                .contains("DNS lookup failed; keeping the last known backends");
            async move { seen }
        },
    )
    .await;
    assert_eq!(responders(&http, &url, 30).await, set(&["r2", "r4"]));
    // ...and the failed rounds show in /status and /metrics
    let status = lb.admin_json("/status").await;
    let discovery = &status["upstreams"]["app"]["discovery"];
    assert_eq!(discovery["last_result"], "error", "{discovery}");
    assert!(discovery["last_error"].is_string(), "{discovery}");
    assert_eq!(
        discovery["source"]["dns"],
        format!("app.test:{port}").as_str()
    );
    let metrics = http
        .get(lb.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let errors: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"lb_discovery_updates_total{result="error",upstream="app"} "#)
        })
        .and_then(|v| v.parse().ok())
        .expect("discovery error counter");
    assert!(errors >= 1.0, "{errors}");

    // recovery
    dns.set(Answer::Records(vec![ips[1]]));
    support::eventually(
        Duration::from_secs(5),
        "pool follows again after recovery",
        || {
            let (http, url) = (http.clone(), url.clone());
            async move { responders(&http, &url, 9).await == set(&["r3"]) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_means_scaled_to_zero() {
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let _stub = Stub::start("r2", &format!("{ip}:0")).await;
    let port = _stub.addr.port();
    let dns = DnsServer::start(Answer::Records(vec![ip])).await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ dns: \"app.test:{port}\", interval: 300ms, resolver: \"{}\" }}\n    queue_timeout: 0s\n",
        dns.addr
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let http = client();
    let url = lb.url("/who");
    assert_eq!(responders(&http, &url, 3).await, set(&["r2"]));

    dns.set(Answer::NxDomain);
    until_responders(
        &http,
        &url,
        1,
        set(&["status:503"]),
        "empty pool answers 503",
    )
    .await;

    dns.set(Answer::Records(vec![ip]));
    until_responders(&http, &url, 3, set(&["r2"]), "scaled back up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_first_discovery() {
    let dns = DnsServer::start(Answer::ServFail).await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ dns: \"app.test:80\", interval: 200ms, resolver: \"{}\" }}\n",
        dns.addr
    );
    let mut lb = Lb::start("", &body);
    let http = client();
    support::eventually(Duration::from_secs(10), "admin answers", || {
        let (http, url) = (http.clone(), lb.admin_url("/health"));
        async move { matches!(http.get(url).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    let r = http
        .get(lb.admin_url("/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(r.status(), 503, "not ready while the first lookup fails");
    dns.set(Answer::Records(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    lb.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let c = Stub::start("c", "127.0.0.1:0").await;
    // `c` has a worse priority: a fallback that a pool with a and b never uses.
    let dns = DnsServer::start(Answer::Srv(vec![
        (10, 3, a.addr.port()),
        (10, 1, b.addr.port()),
        (20, 5, c.addr.port()),
    ]))
    .await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ srv: _app._tcp.app.test, interval: 300ms, resolver: \"{}\" }}\n",
        dns.addr
    );
    let mut lb = Lb::start("  access_log: false", &body);
    lb.wait_ready().await;
    let http = client();
    let n = 400;
    let by_id = spread(&http, &lb.url("/x"), n).await;
    let share = *by_id.get("a").unwrap_or(&0) as f64 / n as f64;
    assert!(!by_id.contains_key("c"), "{by_id:?}");
    assert!(
        (0.70..=0.80).contains(&share),
        "a's SRV weight 3 of 4: {by_id:?}"
    );
    let status = lb.admin_json("/status").await;
    assert_eq!(
        status["upstreams"]["app"]["discovery"]["source"]["srv"],
        "_app._tcp.app.test"
    );

    // The priority-10 records go away: the fallback serves.
    dns.set(Answer::Srv(vec![(20, 5, c.addr.port())]));
    until_responders(&http, &lb.url("/x"), 6, set(&["c"]), "the fallback record").await;
}

/// One SRV target that no longer exists (NXDOMAIN) among targets that do: a failed round
/// that keeps the last set, never "the name is gone, scale to zero".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_srv_target_does_not_empty_the_pool() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let dns = DnsServer::start(Answer::Srv(vec![(10, 1, a.addr.port())])).await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ srv: _app._tcp.app.test, interval: 200ms, resolver: \"{}\" }}\n    queue_timeout: 0s\n",
        dns.addr
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let http = client();
    let url = lb.url("/who");
    assert_eq!(responders(&http, &url, 3).await, set(&["a"]));

    dns.set(Answer::SrvWithStaleTarget(vec![(10, 1, a.addr.port())]));
    // Three failed rounds: past the two NXDOMAIN answers in a row that empty a pool.
    support::eventually(Duration::from_secs(10), "three failed rounds", || {
        let lb = &lb;
        async move { discovery_errors(lb).await >= 3.0 }
    })
    .await;
    assert_eq!(responders(&http, &url, 3).await, set(&["a"]));
}

async fn discovery_errors(lb: &Lb) -> f64 {
    let m = support::scrape(lb).await;
    support::metric(&m, "lb_discovery_updates_total{result=error,upstream=app}")
}

/// A reload that changes a DNS pool's definition rebuilds the pool, whose first lookup
/// starts from nothing. While DNS is failing, that reload is refused as a whole (422 with
/// the reason), and the running pool keeps serving its backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_replace_a_serving_pool_while_dns_fails() {
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let stub = Stub::start("r2", &format!("{ip}:0")).await;
    let port = stub.addr.port();
    let dns = DnsServer::start(Answer::Records(vec![ip])).await;
    let body = |queue: &str| {
        format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ dns: \"app.test:{port}\", interval: 300ms, resolver: \"{}\" }}\n    queue_timeout: {queue}\n",
            dns.addr
        )
    };
    let mut lb = Lb::start("", &body("0s"));
    lb.wait_ready().await;
    let http = client();
    let url = lb.url("/who");
    assert_eq!(responders(&http, &url, 3).await, set(&["r2"]));

    dns.set(Answer::ServFail);
    lb.write_config("", &body("1s"));
    let resp = http
        .post(lb.admin_url("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.expect("body");
    assert!(text.contains("upstreams.app"), "{text}");
    assert_eq!(responders(&http, &url, 3).await, set(&["r2"]));

    // Once DNS answers again, the same reload applies.
    dns.set(Answer::Records(vec![ip]));
    let resp = http
        .post(lb.admin_url("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(resp.status(), 200);
    assert_eq!(responders(&http, &url, 3).await, set(&["r2"]));
}
