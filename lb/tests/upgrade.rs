//! Zero-downtime binary upgrade with real processes: `lb -u` takes over the listening
//! sockets of the running lb on SIGQUIT, the old one drains and exits, no request fails.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{Lb, Stub};

/// Most requests each load connection sends; with the pause below the load spans the
/// whole hand-over (the old process waits 5 s, then drains for `grace_period`).
const PER_CONNECTION: usize = 500;
const CONNECTIONS: usize = 8;
const PAUSE: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_under_load_loses_nothing() {
    let a = Stub::start("a", "127.0.0.1:0").await;
    let b = Stub::start("b", "127.0.0.1:0").await;
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\", \"{}\"] }}\n    health_check: {{ path: /ready, interval: 200ms, timeout: 200ms }}\n",
        a.addr, b.addr
    );
    let mut old = Lb::start("  access_log: false", &body);
    old.wait_ready().await;

    // A paced, bounded load on keep-alive connections, running until the old process is
    // gone (or each connection reached its cap).
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let url = old.url("/work");
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (stop, served, url) = (stop.clone(), served.clone(), url.clone());
            tokio::spawn(async move {
                let client = support::load_client();
                let (mut ok, mut failures) = (0usize, Vec::new());
                for _ in 0..PER_CONNECTION {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(_) => {
                                ok += 1;
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.push(format!("body: {e}")),
                        },
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(format!("error: {e}")),
                    }
                    tokio::time::sleep(PAUSE).await;
                }
                (ok, failures)
            })
        })
        .collect();
    // Some answers before the hand-over, some after it: counted, not slept for.
    let answered_at_least = |n: usize| {
        let served = served.clone();
        move || {
            let done = served.load(Ordering::Relaxed) >= n;
            async move { done }
        }
    };
    support::eventually(
        Duration::from_secs(10),
        "load running",
        answered_at_least(100),
    )
    .await;

    // Beside it, a new connection per request: each lands on one of the per-thread
    // listening sockets, which must all be handed over (a socket left behind would be
    // closed with the old process, and the connections queued on it reset).
    let fresh = {
        let (stop, url) = (stop.clone(), url.clone());
        tokio::spawn(async move {
            let (mut ok, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) && ok + failures.len() < 2000 {
                let client = support::fresh_connection_client();
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.bytes().await {
                        Ok(_) => ok += 1,
                        Err(e) => failures.push(format!("new connection: body: {e}")),
                    },
                    Ok(r) => failures.push(format!("new connection: status {}", r.status())),
                    Err(e) => failures.push(format!("new connection: {e}")),
                }
                tokio::time::sleep(PAUSE).await;
            }
            (ok, failures)
        })
    };
    let sockets = old.listening_sockets();
    assert_eq!(sockets.len(), 2, "a listening socket per thread");

    let mut new = hand_over(&mut old, "  access_log: false", &body).await;
    let exit = old.wait_exit(Duration::from_secs(20)).await;
    let at_exit = served.load(Ordering::Relaxed);
    support::eventually(
        Duration::from_secs(10),
        "load answered by the new process",
        answered_at_least(at_exit + 100),
    )
    .await;
    stop.store(true, Ordering::Relaxed);

    let (fresh_ok, mut failures) = fresh.await.expect("new-connection task");
    assert!(
        fresh_ok > 50,
        "new connections ran through the hand-over ({fresh_ok})"
    );
    let mut ok = 0;
    for t in tasks {
        let (o, f) = t.await.expect("load task");
        ok += o;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failed of {}, e.g. {:?}\nold log:\n{}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)],
        old.log()
    );
    let exit = exit.expect("old process exits after draining");
    assert!(exit.success(), "old process: {exit}");
    assert!(
        ok > 1000,
        "the load ran through the hand-over ({ok} requests)"
    );
    assert!(
        old.log()
            .contains("SIGQUIT received: handing the listening sockets over"),
        "{}",
        old.log()
    );

    serves_on_the_same_sockets(&mut new, &sockets).await;
}

/// Start `lb -u` beside `old` and, once it waits on the upgrade socket, tell `old` to hand
/// its listening sockets over (SIGQUIT).
async fn hand_over(old: &mut Lb, server_extra: &str, body: &str) -> Lb {
    let new = old.start_upgrade(server_extra, body);
    let sock = old.config_path().with_file_name("upgrade.sock");
    support::eventually(
        Duration::from_secs(10),
        "new process waiting on upgrade_sock",
        || {
            let exists = sock.exists();
            async move { exists }
        },
    )
    .await;
    old.signal(Signal::SIGQUIT);
    new
}

/// The new process serves on the same ports, admin included, with the very sockets the old
/// one listened on (`sockets`, their inodes).
async fn serves_on_the_same_sockets(new: &mut Lb, sockets: &[u64]) {
    assert!(new.is_running(), "the new process runs:\n{}", new.log());
    new.wait_ready().await;
    assert_eq!(
        new.listening_sockets(),
        sockets,
        "every listening socket handed over"
    );
    let resp = support::client()
        .get(new.url("/after"))
        .send()
        .await
        .expect("get via the new process");
    assert_eq!(resp.status(), 200);
}

/// Pingora's new process takes at most 32 descriptors from the old one (more and it fails
/// to start while the old one stops): 20 addresses × 2 threads would be 40 sockets, so the
/// lb binds one per address here, and the upgrade goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_over_within_pingoras_descriptor_limit() {
    let stub = Stub::start("a", "127.0.0.1:0").await;
    let listen: Vec<String> = (1..=20).map(|i| format!("\"127.0.0.{i}:0\"")).collect();
    let server = format!("  listen: [{}]\n  access_log: false", listen.join(", "));
    let body = format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n",
        stub.addr
    );
    let mut old = Lb::start(&server, &body);
    old.wait_ready().await;
    let sockets = old.listening_sockets();
    assert_eq!(sockets.len(), 1, "one socket per address within the budget");

    let mut new = hand_over(&mut old, &server, &body).await;
    let exit = old.wait_exit(Duration::from_secs(20)).await;
    assert!(
        exit.is_some_and(|e| e.success()),
        "old: {exit:?}\n{}",
        old.log()
    );
    serves_on_the_same_sockets(&mut new, &sockets).await;
}
