//! The proxy's listeners (`lb/src/accept/`): one `SO_REUSEPORT` socket per thread and
//! address, every connection answered through them, and no quiet sharing of a port with
//! another process.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Lb, Stub};

fn body(stub: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n",
        stub.addr
    )
}

/// `n` GETs, each on a new connection: the ids of the stubs that answered, or a failure.
async fn new_connections(url: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let client = support::fresh_connection_client();
        let resp = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} on a new connection: {e}"));
        assert_eq!(resp.status(), 200, "request {i}");
        let v: serde_json::Value = resp.json().await.expect("json");
        ids.push(v["id"].as_str().unwrap_or("?").to_string());
    }
    ids
}

#[tokio::test]
async fn each_thread_has_its_own_socket_and_every_connection_is_served() {
    let stub = Stub::start("a", "127.0.0.1:0").await;
    // The support config runs 2 threads.
    let mut lb = Lb::start("", &body(&stub));
    lb.wait_ready().await;
    let sockets = lb.listening_sockets();
    assert_eq!(
        sockets.len(),
        2,
        "one listening socket per thread: {sockets:?}"
    );

    let ids = new_connections(&lb.url("/x"), 200).await;
    assert!(ids.iter().all(|id| id == "a"), "{ids:?}");
    let m = support::scrape(&lb).await;
    assert_eq!(support::metric(&m, "lb_accept_errors_total"), 0.0);
}

#[tokio::test]
async fn one_socket_without_per_thread_accept() {
    let stub = Stub::start("a", "127.0.0.1:0").await;
    let mut lb = Lb::start("  per_thread_accept: false", &body(&stub));
    lb.wait_ready().await;
    assert_eq!(lb.listening_sockets().len(), 1);
    let ids = new_connections(&lb.url("/x"), 50).await;
    assert_eq!(ids.len(), 50);
}

/// With `SO_REUSEPORT` a second process on the same port could silently take a share of
/// the connections. The lb checks first that no one listens there, and keeps trying (a
/// restart may overlap the old process) without binding: every connection still reaches
/// the first lb.
#[tokio::test]
async fn a_second_lb_on_a_port_in_use_takes_no_connections() {
    let first_stub = Stub::start("first", "127.0.0.1:0").await;
    let second_stub = Stub::start("second", "127.0.0.1:0").await;
    let mut first = Lb::start("", &body(&first_stub));
    first.wait_ready().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lb.yaml");
    let d = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "version: 1\nserver:\n  listen: [\"127.0.0.1:{}\"]\n  admin: \"127.0.0.1:0\"\n  threads: 2\n  \
             pid_file: {d}/lb.pid\n  upgrade_sock: {d}/upgrade.sock\n{}\n",
            first.port,
            body(&second_stub)
        ),
    )
    .expect("config");
    let log = dir.path().join("second.log");
    let mut second = Command::new(support::lb::bin())
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("second.err")).expect("err"),
        ))
        .spawn()
        .expect("second lb");
    let err = dir.path().join("second.err");
    let read_log = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(&err).unwrap_or_default()
    };
    support::eventually(
        Duration::from_secs(20),
        "the second lb finds the port in use",
        || {
            let seen = read_log().contains("address in use");
            async move { seen }
        },
    )
    .await;

    let ids = new_connections(&first.url("/x"), 100).await;
    assert!(
        ids.iter().all(|id| id == "first"),
        "connections reached the second lb: {ids:?}\n{}",
        read_log()
    );
    assert_eq!(first.listening_sockets().len(), 2);
    assert!(
        support::lb::listening_sockets(second.id(), first.port).is_empty(),
        "the second lb holds no socket on the port"
    );
    second.kill().expect("kill");
    second.wait().expect("wait");
}
