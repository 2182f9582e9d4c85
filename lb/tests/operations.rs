//! Operations with the real binary: hot reload (SIGHUP, `lb reload`, `--watch`), the
//! in-place rule, Prometheus `/metrics` and the `/status` JSON.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{client, metric, scrape, spread, until_serving, Lb, Load, Stub};

const HEALTH: &str = "    health_check: { path: /ready, interval: 200ms, timeout: 200ms, healthy_after: 1, unhealthy_after: 1 }\n";

fn pool(name: &str, stubs: &[&Stub]) -> String {
    let addrs: Vec<String> = stubs.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    format!(
        "  {name}:\n    discovery: {{ static: [{}] }}\n{HEALTH}",
        addrs.join(", ")
    )
}

/// One stub ("app") behind a ready lb routing `/` to it.
async fn one_pool() -> (Stub, Lb) {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let mut lb = Lb::start("", &app_body(&app));
    lb.wait_ready().await;
    (app, lb)
}

fn app_body(app: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n{}",
        pool("app", &[app])
    )
}

/// The `/status` entry of backend `addr` in pool `app`.
fn backend(s: &Value, addr: &str) -> Option<Value> {
    s["upstreams"]["app"]["backends"]
        .as_array()?
        .iter()
        .find(|x| x["address"] == addr)
        .cloned()
}

async fn status(lb: &Lb) -> Value {
    lb.admin_json("/status").await
}

/// Wait until `/status` counts `n` reloads with `result` (`success` or `failure`).
async fn until_reloads(lb: &Lb, result: &str, n: u64) -> Value {
    support::eventually(
        Duration::from_secs(10),
        "reload counted in /status",
        || async { status(lb).await["reloads"][result].as_u64() == Some(n) },
    )
    .await;
    status(lb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_a_route_to_a_new_pool_under_load() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let before = format!(
        "routes:\n  - {{ prefix: /api/, upstream: pool_a }}\nupstreams:\n{}",
        pool("pool_a", &[&a])
    );
    let after = format!(
        "routes:\n  - {{ prefix: /api/, upstream: pool_b }}\nupstreams:\n{}",
        pool("pool_b", &[&b])
    );
    let mut lb = Lb::start("  access_log: false", &before);
    lb.wait_ready().await;

    let total = 4000;
    let load = Load::start(&lb.url("/api/x"), total, 8);
    load.reached(800).await;
    lb.write_config("  access_log: false", &after);
    lb.signal(Signal::SIGHUP);
    let s = until_reloads(&lb, "success", 1).await;
    let result = load.finish().await;
    result.assert_no_failures(total);
    assert_eq!(s["reloads"]["last"]["result"], "applied");
    assert!(
        result.by_id.contains_key("a") && result.by_id.contains_key("b"),
        "the reload happened mid-load: {:?}",
        result.by_id
    );
    // After the reload every request reaches pool B, and pool A is gone.
    let counts = spread(&client(), &lb.url("/api/x"), 40).await;
    assert_eq!(counts.get("b"), Some(&40), "{counts:?}");
    let s = status(&lb).await;
    assert!(s["upstreams"]["pool_a"].is_null());
    assert_eq!(s["routes"][0]["upstream"], "pool_b");
    assert!(lb.log().contains("stopping discovery and health checks"));
}

/// A pool changed in place (same name, new backends and check settings) is rebuilt,
/// warmed up and swapped in under load without a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rebuilds_a_changed_pool_under_load() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let config = |stubs: &[&Stub], interval: &str| {
        let addrs: Vec<String> = stubs.iter().map(|s| format!("\"{}\"", s.addr)).collect();
        format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [{}] }}\n    health_check: {{ path: /ready, interval: {interval}, timeout: 200ms }}\n",
            addrs.join(", ")
        )
    };
    let mut lb = Lb::start("  access_log: false", &config(&[&a], "200ms"));
    lb.wait_ready().await;
    let total = 3000;
    let load = Load::start(&lb.url("/x"), total, 8);
    load.reached(600).await;
    lb.write_config("  access_log: false", &config(&[&a, &b], "300ms"));
    let out = lb.run_command(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("upstream app: rebuilt"));
    let result = load.finish().await;
    result.assert_no_failures(total);
    let counts = spread(&client(), &lb.url("/x"), 20).await;
    // both backends in rotation now (round robin: about half each)
    let (ca, cb) = (
        counts.get("a").copied().unwrap_or(0),
        counts.get("b").copied().unwrap_or(0),
    );
    assert!(ca >= 8 && cb >= 8 && ca + cb == 20, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_old_config_then_a_fixed_one_applies() {
    let (app, lb) = one_pool().await;

    let broken = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\n  - {{ prefix: /x/, upstream: nope }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n    health_check: {{ path: /ready, interval: 5x }}\n",
        app.addr
    );
    lb.write_config("", &broken);
    lb.signal(Signal::SIGHUP);
    let s = until_reloads(&lb, "failure", 1).await;
    let last = &s["reloads"]["last"];
    assert_eq!(last["result"], "rejected");
    assert_eq!(last["trigger"], "signal");
    let errors: Vec<&str> = last["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("upstreams.app.health_check.interval: \"5x\"")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("routes[1].upstream")),
        "{errors:?}"
    );
    assert_eq!(s["reloads"]["success"], 0);
    // Still serving the old config; the failure is counted and logged.
    let counts = spread(&client(), &lb.url("/x/y"), 5).await;
    assert_eq!(counts.get("app"), Some(&5), "{counts:?}");
    let m = scrape(&lb).await;
    assert_eq!(metric(&m, "lb_config_reloads_total{result=failure}"), 1.0);
    assert_eq!(metric(&m, "lb_config_reloads_total{result=success}"), 0.0);
    assert!(lb.log().contains("configuration reload rejected"));

    // Fixed: a new route with strip_prefix, as the compose e2e test adds it.
    let fixed = format!(
        "routes:\n  - {{ prefix: /e2e/, upstream: app, strip_prefix: true }}\n  - {{ prefix: /, upstream: app }}\nupstreams:\n{}",
        pool("app", &[&app])
    );
    lb.write_config("", &fixed);
    lb.signal(Signal::SIGHUP);
    let s = until_reloads(&lb, "success", 1).await;
    assert_eq!(s["reloads"]["last"]["result"], "applied");
    assert_eq!(s["routes"][0]["prefix"], "/e2e/");
    let v: Value = client()
        .get(lb.url("/e2e/api/hello?x=1"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["path"], "/api/hello?x=1");
    let m = scrape(&lb).await;
    assert_eq!(metric(&m, "lb_config_reloads_total{result=success}"), 1.0);
    let hash = s["config"]["sha256"].as_str().expect("hash");
    assert_eq!(hash.len(), 64);
    assert_eq!(metric(&m, &format!("lb_config_info{{hash={hash}}}")), 1.0);
    assert!(metric(&m, "lb_config_last_reload_success_timestamp_seconds{}") > 1.7e9);
}

/// A pool whose definition did not change is the same pool after a reload: its down
/// backend stays down (no traffic), and its counters and check history carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_pool_keeps_its_health_state_across_a_reload() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let body = |extra_route: &str| {
        format!(
            "routes:\n  - {{ prefix: /, upstream: app }}\n{extra_route}upstreams:\n{}",
            pool("app", &[&a, &b])
        )
    };
    let mut lb = Lb::start("", &body(""));
    lb.wait_ready().await;
    let http = client();
    b.set_ready(false);
    until_serving(&http, &lb.url("/"), "b", false, Duration::from_secs(5)).await;
    let before = status(&lb).await;
    let backend = |s: &Value, addr: &str| backend(s, addr).expect("backend listed");
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    assert_eq!(backend(&before, &b_addr)["health"], "unhealthy");

    // Reload through the subcommand: a new route, the pool unchanged.
    lb.write_config("", &body("  - { prefix: /other/, upstream: app }\n"));
    let out = lb.run_command(&["reload"]);
    assert!(
        out.status.success(),
        "lb reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("configuration reloaded"), "{printed}");
    assert!(
        !printed.contains("upstream app"),
        "pool not rebuilt: {printed}"
    );

    // Right after the reload: still no traffic to b.
    let counts = spread(&http, &lb.url("/other/x"), 30).await;
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    let after = status(&lb).await;
    assert_eq!(after["reloads"]["last"]["trigger"], "admin");
    assert_eq!(backend(&after, &b_addr)["health"], "unhealthy");
    let failed = |s: &Value| {
        backend(s, &b_addr)["consecutive_failed"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(failed(&after) >= failed(&before), "check history kept");
    let requests = |s: &Value| backend(s, &a_addr)["requests"].as_u64().unwrap_or(0);
    assert!(
        requests(&after) >= requests(&before) + 30,
        "request counts kept: {} then {}",
        requests(&before),
        requests(&after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_change_needs_an_upgrade_or_restart() {
    let (_app, lb) = one_pool().await;
    let conf = std::fs::read_to_string(lb.config_path()).expect("read");
    // `lb reload` prints a broken file's errors (finding the admin address in a broken
    // file is `config::admin_address`'s unit test: here the config's admin says `:0`).
    std::fs::write(
        lb.config_path(),
        conf.replace("interval: 200ms", "interval: 2x"),
    )
    .expect("write");
    let out = lb.run_command(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("configuration rejected") && err.contains("health_check.interval: \"2x\""),
        "{err}"
    );

    let changed = conf.replace("listen: [\"127.0.0.1:0\"]", "listen: [\"127.0.0.2:0\"]");
    assert_ne!(conf, changed);
    // Also a valid in-place change, which must not be applied either.
    let changed = changed.replace("upstreams:", "  # edited\nupstreams:");
    std::fs::write(lb.config_path(), changed).expect("write");
    let out = lb.run_command(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listen: changed") && err.contains("needs an upgrade or restart"),
        "{err}"
    );
    let s = status(&lb).await;
    assert_eq!(s["reloads"]["failure"], 2);
    assert_eq!(s["reloads"]["last"]["result"], "rejected");
    let resp = client().get(lb.url("/still")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_file_changes() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let body = |prefix: &str| {
        format!(
            "routes:\n  - {{ prefix: {prefix}, upstream: app }}\nupstreams:\n{}",
            pool("app", &[&app])
        )
    };
    let mut lb = Lb::start_with_args("", &body("/one/"), &["--watch"]);
    lb.wait_ready().await;
    let http = client();
    let status_of = |path: &'static str| {
        let (http, url) = (http.clone(), lb.url(path));
        async move { http.get(url).send().await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(status_of("/two/x").await, Some(404));
    lb.write_config("", &body("/two/"));
    support::eventually(
        Duration::from_secs(10),
        "watched change applied",
        || async { status_of("/two/x").await == Some(200) },
    )
    .await;
    assert_eq!(status(&lb).await["reloads"]["last"]["trigger"], "watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_follow_backends() {
    let mut a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /api/, upstream: app }}\nupstreams:\n{}",
        pool("app", &[&a, &b])
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let http = client();
    let m0 = scrape(&lb).await;
    let ok_key = "lb_requests_total{code_class=2xx,route=/api/,upstream=app}";
    let n = 25;
    let counts = spread(&http, &lb.url("/api/hello"), n).await;
    assert_eq!(counts.values().sum::<usize>(), n);
    let _ = spread(&http, &lb.url("/nowhere"), 2).await;
    // Counted in pingora's logging stage, which runs just after the response is sent.
    let base = metric(&m0, ok_key);
    support::eventually(Duration::from_secs(5), "requests counted", || async {
        let m = scrape(&lb).await;
        metric(&m, ok_key) - base >= n as f64
            && metric(
                &m,
                "lb_requests_total{code_class=4xx,route=none,upstream=none}",
            ) >= 2.0
    })
    .await;
    let m1 = scrape(&lb).await;
    assert_eq!(metric(&m1, ok_key) - metric(&m0, ok_key), n as f64);
    assert_eq!(
        metric(
            &m1,
            "lb_requests_total{code_class=4xx,route=none,upstream=none}"
        ),
        2.0
    );
    assert!(metric(&m1, "lb_upstream_tries_total{upstream=app}") >= n as f64);
    assert!(metric(&m1, "lb_request_duration_seconds_count{upstream=app}") >= n as f64);
    assert_eq!(metric(&m1, "lb_backends{state=healthy,upstream=app}"), 2.0);
    assert!(
        metric(
            &m1,
            "lb_discovery_updates_total{result=changed,upstream=app}"
        ) >= 1.0
    );
    assert!(metric(&m1, "process_resident_memory_bytes{}") > 0.0);
    assert!(metric(&m1, "process_open_fds{}") > 0.0);
    // whole seconds in the prometheus crate, so 0 is a fine value for a young process
    assert!(m1.contains_key("process_cpu_seconds_total{}"));

    // A backend killed, then restarted: lb_backends and /status follow it.
    let a_addr = a.addr.to_string();
    let a_health = |s: Value| backend(&s, &a_addr).map(|x| x["health"].clone());
    a.stop().await;
    support::eventually(Duration::from_secs(5), "a reported unhealthy", || async {
        let m = scrape(&lb).await;
        metric(&m, "lb_backends{state=healthy,upstream=app}") == 1.0
            && metric(&m, "lb_backends{state=unhealthy,upstream=app}") == 1.0
            && a_health(status(&lb).await) == Some("unhealthy".into())
    })
    .await;
    let s = status(&lb).await;
    let a_status = backend(&s, &a_addr).expect("a listed");
    assert_eq!(a_status["last_check_ok"], false);
    assert!(a_status["consecutive_failed"].as_u64() >= Some(1));
    assert!(a_status["last_check_error"].is_string());
    a.start_again().await;
    support::eventually(
        Duration::from_secs(5),
        "a reported healthy again",
        || async {
            let m = scrape(&lb).await;
            metric(&m, "lb_backends{state=healthy,upstream=app}") == 2.0
                && a_health(status(&lb).await) == Some("healthy".into())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_describes_config_routes_and_pools() {
    let (app, lb) = one_pool().await;
    let s = status(&lb).await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_seconds"].as_f64().is_some());
    assert_eq!(s["ready"], true);
    assert_eq!(
        s["config"]["file"],
        lb.config_path().display().to_string().as_str()
    );
    assert!(s["config"]["loaded_at"].is_string());
    assert!(s["reloads"]["last"].is_null());
    assert_eq!(s["routes"][0]["prefix"], "/");
    let p = &s["upstreams"]["app"];
    assert_eq!(
        p["discovery"]["source"]["static"][0],
        app.addr.to_string().as_str()
    );
    assert_eq!(p["discovery"]["last_result"], "changed");
    assert!(p["discovery"]["last_at"].is_string());
    let backend = &p["backends"][0];
    assert_eq!(backend["address"], app.addr.to_string().as_str());
    assert_eq!(backend["health"], "healthy");
    assert!(backend["last_check_at"].is_string());
    let html = client()
        .get(lb.admin_url("/status.html"))
        .send()
        .await
        .expect("get");
    assert_eq!(html.status(), 200);
    assert!(html
        .text()
        .await
        .expect("body")
        .contains("fetch(\"/status\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_counted_by_reason() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let (dead, _held) = support::dead_addr("127.0.0.1");
    // No health check: the dead backend stays in rotation, so every other request fails to
    // connect once and is retried on the live one.
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{dead}\", \"{}\"] }}\n    retries: 1\n",
        app.addr
    );
    let mut lb = Lb::start("", &body);
    lb.wait_ready().await;
    let counts = spread(&client(), &lb.url("/r"), 10).await;
    assert_eq!(counts.get("app"), Some(&10), "{counts:?}");
    support::eventually(Duration::from_secs(5), "retries counted", || async {
        let m = scrape(&lb).await;
        metric(&m, "lb_retries_total{reason=connect,upstream=app}") >= 4.0
            && metric(&m, "lb_upstream_tries_total{upstream=app}") >= 14.0
    })
    .await;
    let m = scrape(&lb).await;
    assert_eq!(
        metric(&m, "lb_retries_total{reason=after_send,upstream=app}"),
        0.0
    );
    let s = status(&lb).await;
    let dead_status = backend(&s, &dead.to_string()).expect("dead backend listed");
    assert!(dead_status["requests"].as_u64() >= Some(4), "{dead_status}");
}

/// A request in flight finishes on the snapshot it started with, even when the reload
/// removes its route's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_its_snapshot() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let only = |name: &str, stub: &Stub| {
        format!(
            "routes:\n  - {{ prefix: /, upstream: {name} }}\nupstreams:\n{}",
            pool(name, &[stub])
        )
    };
    let mut lb = Lb::start("", &only("pool_a", &a));
    lb.wait_ready().await;
    let slow = tokio::spawn(client().get(lb.url("/slow?ms=1500")).send());
    support::eventually(Duration::from_secs(5), "slow request at a", || async {
        a.in_flight() == 1
    })
    .await;
    lb.write_config("", &only("pool_b", &b));
    lb.signal(Signal::SIGHUP);
    until_reloads(&lb, "success", 1).await;
    let counts = spread(&client(), &lb.url("/now"), 3).await;
    assert_eq!(counts.get("b"), Some(&3), "{counts:?}");
    let resp = slow.await.expect("task").expect("slow request");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["id"], "a");
}
