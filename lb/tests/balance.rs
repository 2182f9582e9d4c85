//! Choosing a backend, against the real binary and stub backends: the share each policy
//! gives by weight, least requests avoiding a busy backend, consistent hashing keeping its
//! keys when a backend joins, the sticky cookie, passive outlier ejection and its return,
//! the slow-start ramp, and in-flight tries leaving a backend marked down.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{client, eventually, metric, scrape, until_serving, Lb, Stub};

/// One GET: (status, the answering stub's id, the `Set-Cookie` header).
async fn get(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().expect("ascii").to_string());
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, v["id"].as_str().unwrap_or("?").to_string(), cookie)
}

/// How many of `n` sequential GETs of `url` each stub answered.
async fn shares(http: &reqwest::Client, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut by_id = BTreeMap::new();
    for _ in 0..n {
        let (status, id, _) = get(http, url, &[]).await;
        assert_eq!(status, 200, "{url}");
        *by_id.entry(id).or_insert(0) += 1;
    }
    by_id
}

/// The `/status` entries of upstream `pool`'s backends.
async fn backends(lb: &Lb, pool: &str) -> Vec<serde_json::Value> {
    lb.admin_json("/status").await["upstreams"][pool]["backends"]
        .as_array()
        .expect("backends")
        .clone()
}

/// The `/status` entry of the backend of `pool` at `addr`.
async fn backend(lb: &Lb, pool: &str, addr: SocketAddr) -> serde_json::Value {
    backends(lb, pool)
        .await
        .into_iter()
        .find(|b| b["address"] == addr.to_string())
        .expect("the backend in /status")
}

/// After a reload: wait until upstream `app` has `n` backends.
async fn until_members(lb: &Lb, n: usize) {
    eventually(
        Duration::from_secs(10),
        &format!("{n} backends in the pool"),
        || async move { backends(lb, "app").await.len() == n },
    )
    .await;
}

fn addrs(stubs: &[&Stub]) -> String {
    stubs
        .iter()
        .map(|s| format!("\"{}\"", s.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_shares_by_weight_within_five_percent() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let weighted = format!(
        "[{{ addr: \"{}\", weight: 3 }}, {{ addr: \"{}\", weight: 1 }}]",
        a.addr, b.addr
    );
    let policies = ["round_robin", "random", "least_requests", "consistent_hash"];
    let mut body = String::from("routes:\n");
    for p in policies {
        body += &format!("  - {{ prefix: /{p}/, upstream: {p}, strip_prefix: true }}\n");
    }
    body += "upstreams:\n";
    for p in policies {
        let key = if p == "consistent_hash" {
            "\n    hash_key: path"
        } else {
            ""
        };
        body +=
            &format!("  {p}:\n    discovery: {{ static: {weighted} }}\n    selection: {p}{key}\n");
    }
    let mut lb = Lb::start("  access_log: false", &body);
    lb.wait_ready().await;
    let http = client();
    let n = 1000;
    for p in policies {
        let by_id = if p == "consistent_hash" {
            // a different path (the key) each time
            let mut by_id = BTreeMap::new();
            for i in 0..n {
                let (status, id, _) = get(&http, &lb.url(&format!("/{p}/k{i}")), &[]).await;
                assert_eq!(status, 200);
                *by_id.entry(id).or_insert(0) += 1;
            }
            by_id
        } else {
            shares(&http, &lb.url(&format!("/{p}/x")), n).await
        };
        let share = *by_id.get("a").unwrap_or(&0) as f64 / n as f64;
        // A Ketama ring gives each backend 160 points per unit of weight, so its share of
        // the ring itself varies with the addresses: up to 4.2 points off 75 % over 300
        // random pairs of ports (measured). Sampling 1,000 keys adds about 1.4 points.
        let tolerance = if p == "consistent_hash" { 0.07 } else { 0.05 };
        assert!(
            (0.75 - tolerance..=0.75 + tolerance).contains(&share),
            "{p}: a (weight 3 of 4) got {share:.3}: {by_id:?}"
        );
    }
    let status = lb.admin_json("/status").await;
    assert_eq!(
        status["upstreams"]["consistent_hash"]["selection"],
        "consistent_hash(path)"
    );
    assert_eq!(backend(&lb, "round_robin", a.addr).await["weight"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_avoids_the_backend_with_requests_in_flight() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    // `a` holds every request it gets: they stay in flight. `b` is not admitted yet.
    a.set_stalled(true);
    b.set_ready(false);
    let mut lb = Lb::start(
        "  access_log: false",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: 100ms }}\n    selection: least_requests\n    outlier: off\n    timeouts: {{ read: 60s }}\n",
            addrs(&[&a, &b])
        ),
    );
    lb.wait_ready().await;
    // Two requests held by `a`, the only backend in rotation.
    let parked: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (client(), lb.url("/hold"));
            tokio::spawn(async move { http.get(url).send().await })
        })
        .collect();
    eventually(Duration::from_secs(5), "two requests held by a", || {
        let held = a.hits() == 2;
        async move { held }
    })
    .await;
    b.set_ready(true);
    eventually(Duration::from_secs(5), "b admitted", || {
        let lb = &lb;
        async move {
            backends(lb, "app")
                .await
                .iter()
                .all(|b| b["health"] == "healthy")
        }
    })
    .await;
    // Round robin would send half of these to `a` (to hang there).
    let by_id = shares(&client(), &lb.url("/x"), 100).await;
    assert_eq!(by_id.get("b"), Some(&100), "{by_id:?}");
    assert_eq!(a.hits(), 2);
    let in_flight: Vec<_> = backends(&lb, "app")
        .await
        .iter()
        .map(|b| b["in_flight"].as_u64().unwrap_or(99))
        .collect();
    assert!(
        in_flight.contains(&2),
        "a's two held requests: {in_flight:?}"
    );
    for p in parked {
        p.abort();
    }
}

/// The backend of each of 300 users (header `x-user`).
async fn owners(lb: &Lb) -> Vec<String> {
    let http = client();
    let mut out = Vec::new();
    for u in 0..300 {
        let user = format!("user-{u}");
        let (status, id, _) = get(&http, &lb.url("/x"), &[("x-user", &user)]).await;
        assert_eq!(status, 200);
        out.push(id);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_most_keys_when_a_fourth_backend_joins() {
    let stubs = [
        Stub::start("a", "127.0.0.1:0").await,
        Stub::start("b", "127.0.0.1:0").await,
        Stub::start("c", "127.0.0.1:0").await,
        Stub::start("d", "127.0.0.1:0").await,
    ];
    let config = |n: usize| {
        let list: Vec<&Stub> = stubs[..n].iter().collect();
        format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    selection: consistent_hash\n    hash_key: header:x-user\n",
            addrs(&list)
        )
    };
    let mut lb = Lb::start("  access_log: false", &config(3));
    lb.wait_ready().await;
    let before = owners(&lb).await;
    assert_eq!(
        before,
        owners(&lb).await,
        "a key always lands on the same backend"
    );
    assert!(!before.contains(&"d".to_string()));

    lb.write_config("  access_log: false", &config(4));
    lb.signal(Signal::SIGHUP);
    until_members(&lb, 4).await;
    let after = owners(&lb).await;
    let kept = before.iter().zip(&after).filter(|(x, y)| x == y).count();
    let moved_to_d = after.iter().filter(|id| *id == "d").count();
    // About 75 % stay; the new backend's share of the ring moves by several points with
    // the stubs' random ports (207 of 300 was seen), and plain modulo hashing would keep
    // about 25 %. The strict property is the next one: keys move only to the new backend.
    assert!(
        kept * 100 >= 60 * before.len(),
        "only {kept} of 300 keys stayed"
    );
    assert_eq!(kept + moved_to_d, 300, "keys only move to the new backend");
    assert!(moved_to_d > 0, "the new backend takes a share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sticky_cookie_pins_and_repins_when_its_backend_dies() {
    let mut stubs = [
        Stub::start("a", "127.0.0.1:0").await,
        Stub::start("b", "127.0.0.1:0").await,
        Stub::start("c", "127.0.0.1:0").await,
    ];
    let list: Vec<&Stub> = stubs.iter().collect();
    let mut lb = Lb::start(
        "  access_log: false",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: 100ms, unhealthy_after: 1 }}\n    sticky: {{ cookie: pin, max_age: 1h }}\n",
            addrs(&list)
        ),
    );
    lb.wait_ready().await;
    let http = client();
    let (_, first, set) = get(&http, &lb.url("/x"), &[]).await;
    let set = set.expect("the first answer pins the client");
    assert!(
        set.starts_with("pin=") && set.contains("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"),
        "{set}"
    );
    assert!(
        !set.contains("127.0.0.1"),
        "the cookie does not reveal the address"
    );
    let cookie = set.split(';').next().expect("name=value").to_string();
    for _ in 0..20 {
        let (status, id, again) = get(&http, &lb.url("/x"), &[("cookie", &cookie)]).await;
        assert_eq!((status, id.as_str(), again), (200, first.as_str(), None));
    }
    // A forged or stale value is ignored (and replaced).
    let (_, _, replaced) = get(
        &http,
        &lb.url("/x"),
        &[("cookie", "pin=00000000000000000000000000000000")],
    )
    .await;
    assert!(replaced.is_some());

    // The pinned backend dies: the client goes elsewhere and is re-pinned there.
    let idx = ["a", "b", "c"]
        .iter()
        .position(|id| *id == first)
        .expect("known id");
    stubs[idx].stop().await;
    let (status, moved, repin) = get(&http, &lb.url("/x"), &[("cookie", &cookie)]).await;
    assert_eq!(status, 200);
    assert_ne!(moved, first);
    let repin = repin.expect("re-pinned");
    let new_cookie = repin.split(';').next().expect("name=value").to_string();
    assert_ne!(new_cookie, cookie);
    for _ in 0..10 {
        let (_, id, again) = get(&http, &lb.url("/x"), &[("cookie", &new_cookie)]).await;
        assert_eq!((id.as_str(), again), (moved.as_str(), None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_503s_is_ejected_then_returns_and_ramps_up() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let c = Stub::start("c", "127.0.0.1:0").await;
    a.set_status(503);
    let mut lb = Lb::start(
        "  access_log: false",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: 100ms }}\n    outlier: {{ consecutive_failures: 3, base_ejection: 1s }}\n    slow_start: 60s\n",
            addrs(&[&a, &b, &c])
        ),
    );
    lb.wait_ready().await;
    let http = client();
    // Round robin: every third request reaches `a` until its third 503 ejects it.
    let mut errors = 0;
    for _ in 0..30 {
        let (status, _, _) = get(&http, &lb.url("/x"), &[]).await;
        if status == 503 {
            errors += 1;
        }
    }
    assert_eq!(errors, 3, "exactly consecutive_failures 503s reach clients");
    let m = scrape(&lb).await;
    assert_eq!(metric(&m, "lb_outlier_ejections_total{upstream=app}"), 1.0);
    let all = backends(&lb, "app").await;
    let ejected: Vec<_> = all.iter().filter(|b| b["ejected"] == true).collect();
    assert_eq!(ejected.len(), 1, "{all:?}");
    assert_eq!(ejected[0]["address"], a.addr.to_string());
    let by_id = shares(&http, &lb.url("/x"), 30).await;
    assert!(
        !by_id.contains_key("a"),
        "no traffic while ejected: {by_id:?}"
    );

    // Recovered: after the 1 s ejection its next passing check brings it back, ramping
    // up from 10 % of its share over `slow_start` (60 s).
    a.set_status(0);
    until_serving(&http, &lb.url("/x"), "a", true, Duration::from_secs(10)).await;
    let by_id = shares(&http, &lb.url("/x"), 300).await;
    let to_a = *by_id.get("a").unwrap_or(&0);
    // A full share would be 100 of 300; early in the ramp it is about a tenth of that.
    assert!(to_a < 50, "a ramps up, not a full share at once: {by_id:?}");
    let share = backend(&lb, "app", a.addr).await["slow_start_share"]
        .as_f64()
        .expect("a's share");
    assert!((0.1..0.5).contains(&share), "ramp share {share}");
    assert_eq!(
        metric(&scrape(&lb).await, "lb_outlier_ejected{upstream=app}"),
        0.0
    );
}

/// By default a backend's 500s do not eject it (a client that can provoke them would eject
/// healthy backends), on the direct/fast path (GET) and the engine path (POST with a body)
/// alike; with `failures: 5xx` they do, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_gateway_errors_eject_unless_failures_is_5xx() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    a.set_status(500);
    let pool = |name: &str, failures: &str| {
        format!(
            "  {name}:\n    discovery: {{ static: [{}] }}\n    outlier: {{ {failures}consecutive_failures: 2, base_ejection: 60s, max_ejected_percent: 50 }}\n",
            addrs(&[&a, &b])
        )
    };
    let mut lb = Lb::start(
        "  access_log: false",
        &format!(
            "routes:\n  - {{ prefix: /gw, upstream: gw }}\n  - {{ prefix: /get, upstream: get5xx }}\n  - {{ prefix: /post, upstream: post5xx }}\nupstreams:\n{}{}{}",
            pool("gw", ""),
            pool("get5xx", "failures: 5xx, "),
            pool("post5xx", "failures: 5xx, ")
        ),
    );
    lb.wait_ready().await;
    let http = client();
    let post = |path: &'static str| {
        let (http, url) = (http.clone(), lb.url(path));
        async move {
            let resp = http
                .post(url)
                .body("{\"x\":1}")
                .send()
                .await
                .expect("request");
            resp.status().as_u16()
        }
    };
    // Round robin over two: `a` gets every other request, ten of each kind in a row.
    let mut fives = 0;
    for _ in 0..20 {
        fives += usize::from(get(&http, &lb.url("/gw"), &[]).await.0 == 500);
    }
    for _ in 0..20 {
        fives += usize::from(post("/gw").await == 500);
    }
    assert_eq!(
        fives, 20,
        "a is never ejected: it answers half of them with its 500"
    );
    let m = scrape(&lb).await;
    assert_eq!(metric(&m, "lb_outlier_ejections_total{upstream=gw}"), 0.0);
    assert_eq!(
        lb.admin_json("/status").await["upstreams"]["gw"]["outlier"]["failures"],
        "gateway"
    );

    for (path, pool) in [("/get", "get5xx"), ("/post", "post5xx")] {
        for _ in 0..6 {
            if path == "/get" {
                get(&http, &lb.url(path), &[]).await;
            } else {
                post(path).await;
            }
        }
        let m = scrape(&lb).await;
        assert_eq!(
            metric(
                &m,
                &format!("lb_outlier_ejections_total{{upstream={pool}}}")
            ),
            1.0,
            "{path}: two 500s in a row eject with `failures: 5xx`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_backend_marked_down_go_elsewhere_at_once() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    // `read: 60s`, no per_try: only the down mark can end a try on `a` within the test.
    let mut lb = Lb::start(
        "  access_log: false",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: 100ms, unhealthy_after: 1 }}\n    timeouts: {{ read: 60s }}\n",
            addrs(&[&a, &b])
        ),
    );
    lb.wait_ready().await;
    // Keep-alive connections to `a` first: the held tries below reuse them, and a try
    // given up on a reused connection must not count as a stale one and go back to `a`.
    shares(&client(), &lb.url("/warm"), 8).await;
    let (a_before, before) = (a.hits(), a.hits() + b.hits());
    a.set_stalled(true);
    let mut held = Vec::new();
    while a.hits() - a_before < 3 {
        // Round robin alternates: about every other request lands on `a`.
        assert!(held.len() < 20, "round robin never reached a");
        let (http, url) = (client(), lb.url("/x"));
        held.push(tokio::spawn(async move { get(&http, &url, &[]).await }));
        eventually(Duration::from_secs(5), "the request to land", || {
            let n = held.len();
            let landed = a.hits() + b.hits() - before >= n;
            async move { landed }
        })
        .await;
    }
    // `a`'s check fails: the next round marks it down and its held requests move to `b`.
    a.set_ready(false);
    for h in held {
        let (status, id, _) = tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("answered long before `read`")
            .expect("task");
        assert_eq!((status, id.as_str()), (200, "b"));
    }
    let m = scrape(&lb).await;
    assert!(
        metric(&m, "lb_retries_total{reason=backend_down,upstream=app}") >= 3.0,
        "counted as backend_down retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_by_a_reload_ramps_up_and_the_others_keep_their_share() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let c = Stub::start("c", "127.0.0.1:0").await;
    let config = |stubs: &[&Stub]| {
        format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: 100ms }}\n    slow_start: 60s\n",
            addrs(stubs)
        )
    };
    let mut lb = Lb::start("  access_log: false", &config(&[&a, &b]));
    lb.wait_ready().await;
    let http = client();
    let by_id = shares(&http, &lb.url("/x"), 40).await;
    assert_eq!(
        (by_id.get("a"), by_id.get("b")),
        (Some(&20), Some(&20)),
        "no ramp at startup"
    );

    // The reload rebuilds the pool (its list changed); only `c` is new to it.
    lb.write_config("  access_log: false", &config(&[&a, &b, &c]));
    lb.signal(Signal::SIGHUP);
    until_members(&lb, 3).await;
    let by_id = shares(&http, &lb.url("/x"), 300).await;
    let to_c = *by_id.get("c").unwrap_or(&0);
    assert!(to_c < 50, "c ramps up (a full share is 100): {by_id:?}");
    for backend in backends(&lb, "app").await {
        let share = backend["slow_start_share"].as_f64().expect("share");
        if backend["address"] == c.addr.to_string() {
            assert!(share < 0.5, "c: {share}");
        } else {
            assert_eq!(share, 1.0, "{backend}");
        }
    }
}

/// A backend that answers every request with a 500 whose chunked body is malformed from its
/// first bytes; counts the requests it got.
async fn bad_chunked_500() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n";
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

/// A 5xx whose body is unusable from its first bytes counts once against the backend for
/// outlier detection, not twice (once for its status, once for the unusable body): with
/// `consecutive_failures: 2`, one such answer does not eject it, two do. (`failures: 5xx`,
/// so that its 500 would count too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_5xx_counts_once_against_its_backend() {
    use std::sync::atomic::Ordering;
    let (bad, hits) = bad_chunked_500().await;
    let good = Stub::start("good", "127.0.0.1:0").await;
    let mut lb = Lb::start(
        "",
        &format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{bad}\", \"{}\"] }}\n    outlier: {{ failures: 5xx, consecutive_failures: 2, base_ejection: 60s }}\n",
            good.addr
        ),
    );
    lb.wait_ready().await;
    let http = client();
    let until_bad_answered = |n: usize| {
        let (http, url, hits) = (http.clone(), lb.url("/x"), hits.clone());
        async move {
            for _ in 0..20 {
                if hits.load(Ordering::SeqCst) >= n {
                    return;
                }
                let _ = http.get(&url).send().await;
            }
            panic!("the bad backend never got request {n}");
        }
    };
    until_bad_answered(1).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_outlier_ejections_total{upstream=app}"),
        0.0,
        "one unusable answer is one failure of two"
    );
    until_bad_answered(2).await;
    let l = &lb;
    eventually(Duration::from_secs(5), "ejected after two", || async move {
        metric(&scrape(l).await, "lb_outlier_ejections_total{upstream=app}") == 1.0
    })
    .await;
}
