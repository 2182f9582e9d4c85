//! The real-browser test: headless Chromium loads the page from the frontend and the
//! page calls the backend on another origin (the CORS case), all on loopback.
//!
//! Both services run in-process on 127.0.0.1:0 through their `serve` functions.
//! Chromium must be installed (`deploy/bootstrap.sh` installs Debian's `chromium`);
//! without it these tests fail with a clear message rather than skip. `CHROMIUM`
//! overrides the binary.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use tokio::net::TcpListener;

/// Starts a backend that allows `cors_origins`, returns its origin.
async fn start_backend(cors_origins: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let args = backend::cli::Cli::parse_from([
        "backend",
        "--replica-id",
        "browser-replica",
        "--cors-origins",
        cors_origins,
    ]);
    let state = backend::AppState::new(&args.serve);
    tokio::spawn(backend::serve(listener, state, std::future::pending()));
    origin
}

/// Binds the frontend's port first, so the backend's CORS list can name it.
async fn bind_frontend() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

fn start_frontend(listener: TcpListener, connect_src: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/site");
    let args =
        frontend::cli::Cli::parse_from(["frontend", "--root", root, "--connect-src", connect_src]);
    let state = frontend::AppState::new(&args.serve).unwrap();
    tokio::spawn(frontend::serve(listener, state, std::future::pending()));
}

/// Loads `url` in headless Chromium and returns the DOM once the page has settled
/// (virtual time waits for pending fetches).
async fn dump_dom(url: &str) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", "--virtual-time-budget=5000", url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{chromium}` ({e}). The browser test needs Chromium: install \
                 Debian's `chromium` package (deploy/bootstrap.sh does) or set CHROMIUM."
            )
        });
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium finished within 90 s")
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// The attributes and text of the element with `id`, from serialised HTML.
fn element<'a>(dom: &'a str, id: &str) -> (&'a str, &'a str) {
    let marker = format!(r#"id="{id}""#);
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let open_end = at + dom[at..].find('>').unwrap();
    let text_end = open_end + dom[open_end..].find("</").unwrap();
    (&dom[start..open_end], &dom[open_end + 1..text_end])
}

fn unused_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_greets_from_a_cross_origin_api_and_draws_the_replicas() {
    let (listener, page_origin) = bind_frontend().await;
    let api = start_backend(&page_origin).await;
    start_frontend(listener, &format!("'self' {api}"));

    let dom = dump_dom(&format!("{page_origin}/?api={api}&burst")).await;
    let (attributes, text) = element(&dom, "dynamic-content");
    assert_eq!(text, "Hello, World!", "{attributes}");
    assert!(attributes.contains(r#"data-state="ok""#), "{attributes}");
    // The burst: 12 answers, all from our one replica, drawn as one bar.
    assert!(
        dom.contains(r#"data-replica="browser-replica" data-count="12""#),
        "no bar for the replica in:\n{dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_so_when_the_api_is_unreachable() {
    let (listener, page_origin) = bind_frontend().await;
    let api = format!("http://{}", unused_port());
    start_frontend(listener, &format!("'self' {api}"));

    let dom = dump_dom(&format!("{page_origin}/?api={api}")).await;
    let (attributes, text) = element(&dom, "dynamic-content");
    assert!(attributes.contains(r#"data-state="error""#), "{attributes}");
    assert!(text.contains("could not be reached"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_so_when_cors_refuses_its_origin() {
    let (listener, page_origin) = bind_frontend().await;
    let api = start_backend("http://somewhere-else.example").await;
    start_frontend(listener, &format!("'self' {api}"));

    let dom = dump_dom(&format!("{page_origin}/?api={api}")).await;
    let (attributes, text) = element(&dom, "dynamic-content");
    assert!(attributes.contains(r#"data-state="error""#), "{attributes}");
    assert!(!text.contains("Hello"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_base_the_page_calls_its_own_origin() {
    // No load balancer in front: the relative /api/hello reaches the frontend, which
    // has no API, and the page reports the 404 instead of going blank.
    let (listener, page_origin) = bind_frontend().await;
    start_frontend(listener, "'self'");

    let dom = dump_dom(&format!("{page_origin}/")).await;
    let (_, text) = element(&dom, "dynamic-content");
    assert!(text.contains("answered 404"), "{text}");
}
