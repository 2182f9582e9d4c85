//! Real-socket tests: the `frontend` binary on 127.0.0.1:0, raw HTTP on the wire.

#[path = "../../backend/tests/support/mod.rs"]
mod support;

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use support::{get, Service};

const BIN: &str = env!("CARGO_BIN_EXE_frontend");
const SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/site");

fn start(extra: &[&str]) -> Service {
    let args = [&["--root", SITE][..], extra].concat();
    Service::start(BIN, &args, &[])
}

/// Sends `target` byte for byte (no client-side normalisation) and returns the status
/// code and the whole response.
fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn serves_the_site_and_stops_cleanly_on_sigterm() {
    let frontend = start(&["--drain", "200ms"]);
    let (status, body) = get(&frontend.url("/")).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(r#"id="dynamic-content""#));
    let (status, body) = get(&frontend.url("/missing")).unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("went soft on us"));

    frontend.signal(Signal::SIGTERM);
    let (exit, log) = frontend.wait();
    assert_eq!(exit.code(), Some(0), "log:\n{log}");
    assert!(
        log.contains("SIGTERM") && log.contains("stopped"),
        "log:\n{log}"
    );
}

#[test]
fn traversal_on_the_wire_never_leaves_the_root() {
    // The root is frontend/site; frontend/Cargo.toml sits just above it.
    let frontend = start(&[]);
    for target in [
        "/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/%252e%252e/Cargo.toml",
        "/..\\Cargo.toml",
        "/%5c..%5cCargo.toml",
        "/%00/../Cargo.toml",
        "/site/../../Cargo.toml",
    ] {
        let (status, response) = raw_get(frontend.addr, target);
        assert!(matches!(status, 400 | 404), "{target}: {status}");
        assert!(
            !response.contains("[package]"),
            "{target} leaked Cargo.toml"
        );
    }
}

#[test]
fn healthcheck_subcommand() {
    let frontend = start(&[]);
    let listen = format!("0.0.0.0:{}", frontend.addr.port());
    let up = support::healthcheck(BIN, &[], &[("FRONTEND_LISTEN", &listen)]);
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    let port = frontend.addr.port();
    drop(frontend);
    let down = support::healthcheck(
        BIN,
        &["--url", &format!("http://127.0.0.1:{port}/ready")],
        &[],
    );
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

#[test]
fn a_bad_root_is_a_clear_startup_error() {
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--root", "/nonexistent/site"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/nonexistent/site is not a directory"),
        "{stdout}"
    );
}

#[test]
fn an_unreadable_file_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("index.html"), "home").unwrap();
    std::os::unix::fs::symlink("/nonexistent/file", dir.path().join("dangling")).unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("loading the site into memory: cannot read")
            && stdout.contains("dangling: No such file"),
        "{stdout}"
    );
}

#[test]
fn help_documents_env_vars_root_and_shutdown() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "FRONTEND_LISTEN",
        "FRONTEND_ROOT",
        "FRONTEND_CONNECT_SRC",
        "LOG_FORMAT",
        "./frontend/site",
        "SIGTERM",
        "SIGHUP",
        "FRONTEND_CACHE_FILE_LIMIT",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

/// The frontend with its log lines readable while it runs; killed when dropped.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watched {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// The next log line containing `needle`, waiting at most 20 s for it.
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?}"),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reloads_the_site_and_keeps_it_when_the_reload_fails() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["index.html", "404.html"] {
        fs::copy(Path::new(SITE).join(name), dir.path().join(name)).unwrap();
    }
    let frontend = Watched::start(&["--root", dir.path().to_str().unwrap()]);
    let addr = support::listening_addr(&frontend.line_with("listening on")).unwrap();
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(get(&url("/new.txt")).unwrap().0, 404);

    // Not seen until the site is read again.
    fs::write(dir.path().join("new.txt"), "new").unwrap();
    assert_eq!(get(&url("/new.txt")).unwrap().0, 404);
    frontend.signal(Signal::SIGHUP);
    let reloaded = frontend.line_with("site reloaded");
    assert!(reloaded.contains("3 files"), "{reloaded}");
    assert_eq!(get(&url("/new.txt")), Some((200, "new".into())));

    // An unreadable entry: the reload fails, loudly, and the previous copy stays.
    std::os::unix::fs::symlink("/nonexistent/file", dir.path().join("dangling")).unwrap();
    fs::write(dir.path().join("later.txt"), "later").unwrap();
    frontend.signal(Signal::SIGHUP);
    let failed = frontend.line_with("site reload failed");
    assert!(
        failed.contains("WARN") && failed.contains("dangling"),
        "{failed}"
    );
    assert_eq!(get(&url("/new.txt")), Some((200, "new".into())));
    assert_eq!(get(&url("/later.txt")).unwrap().0, 404);
}
