//! Real-socket tests: the `backend` binary on 127.0.0.1:0, driven like Docker drives it.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

const BIN: &str = env!("CARGO_BIN_EXE_backend");

/// A running backend; killed if a test fails half-way.
struct Backend {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Backend {
    /// Starts the binary and waits (bounded) for its "listening on ADDR" line and a 200
    /// from /health.
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("backend starts");
        let (tx, log) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = log
            .recv_timeout(Duration::from_secs(20))
            .expect("a first log line");
        let addr = listening_addr(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
        let backend = Self { child, addr, log };
        wait_until(|| get(&backend.url("/health")).is_some_and(|(s, _)| s == 200));
        backend
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (bounded) for the process to exit and returns its status and remaining log.
    fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "backend did not exit");
            thread::sleep(Duration::from_millis(20));
        };
        let log: Vec<String> = self.log.try_iter().collect();
        (status, log.join("\n"))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a `listening on ADDR` log line, text or JSON.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// GET on a fresh connection: (status, body), or None if nothing answered.
fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let response = client.get(url).send().ok()?;
    Some((response.status().as_u16(), response.text().ok()?))
}

/// Polls `condition` every 20 ms for at most 10 s.
fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        thread::sleep(Duration::from_millis(20));
    }
}

fn requests_served(backend: &Backend) -> u64 {
    let (_, body) = get(&backend.url("/api/whoami")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["requests_served"].as_u64().unwrap()
}

fn healthcheck(url: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["healthcheck", "--url", url])
        .output()
        .unwrap()
}

#[test]
fn sigterm_drains_finishes_in_flight_work_and_exits_0() {
    let backend = Backend::start(&["--drain", "1s", "--replica-id", "proc"], &[]);
    assert_eq!(
        get(&backend.url("/api/hello")).unwrap(),
        (200, "Hello, World!".into())
    );

    // A slow request, in flight when the signal arrives: wait until the counter shows
    // one more request than our own /api/whoami calls.
    let before = requests_served(&backend);
    let slow_url = backend.url("/api/slow?ms=2500");
    let slow = thread::spawn(move || get(&slow_url));
    let mut whoami_calls = 1;
    wait_until(|| {
        whoami_calls += 1;
        requests_served(&backend) >= before + whoami_calls
    });

    backend.signal(Signal::SIGTERM);
    wait_until(|| get(&backend.url("/ready")).is_some_and(|(status, _)| status == 503));
    // The Docker healthcheck sees the drain too.
    let probe = healthcheck(&backend.url("/ready"));
    assert_eq!(probe.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&probe.stderr).contains("503"));
    // Still serving during the drain window.
    assert_eq!(get(&backend.url("/health")).unwrap().0, 200);

    let (status, body) = slow
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(status, 200);
    assert!(body.contains(r#""slept_ms":2500"#), "{body}");

    let (exit, log) = backend.wait();
    assert_eq!(exit.code(), Some(0), "log:\n{log}");
    assert!(
        log.contains("SIGTERM") && log.contains("stopped"),
        "log:\n{log}"
    );
}

#[test]
fn healthcheck_subcommand_exit_codes() {
    let backend = Backend::start(&[], &[]);
    let up = healthcheck(&backend.url("/ready"));
    assert_eq!(up.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&up.stdout).contains("200"));

    let missing = healthcheck(&backend.url("/missing"));
    assert_eq!(missing.status.code(), Some(1));

    let port = backend.addr.port();
    drop(backend);
    let down = healthcheck(&format!("http://127.0.0.1:{port}/ready"));
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

#[test]
fn healthcheck_defaults_to_the_listen_port() {
    let backend = Backend::start(&[], &[]);
    let probe = Command::new(BIN)
        .arg("healthcheck")
        .env("BACKEND_LISTEN", format!("0.0.0.0:{}", backend.addr.port()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(probe.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("http://127.0.0.1:{}/ready", backend.addr.port())));
}

#[test]
fn json_logs_one_line_per_request() {
    let backend = Backend::start(&[], &[("LOG_FORMAT", "json")]);
    let url = backend.url("/api/hello");
    let client = reqwest::blocking::Client::new();
    let response = client
        .get(&url)
        .header("x-request-id", "json-1")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    backend.signal(Signal::SIGINT);
    let (exit, log) = backend.wait();
    assert_eq!(exit.code(), Some(0));
    let line = log
        .lines()
        .find(|line| line.contains("json-1"))
        .unwrap_or_else(|| panic!("no request line in:\n{log}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["span"]["id"], "json-1");
    assert_eq!(json["span"]["method"], "GET");
    assert_eq!(json["span"]["path"], "/api/hello");
    assert_eq!(json["status"], 200);
    assert!(json["latency_ms"].is_number());
}

#[test]
fn help_documents_env_vars_and_shutdown() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "BACKEND_LISTEN",
        "BACKEND_CORS_ORIGINS",
        "BACKEND_DRAIN",
        "LOG_FORMAT",
        "SIGTERM",
        "healthcheck",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("backend {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_flags_and_busy_ports_fail_clearly() {
    let bad = Command::new(BIN)
        .args(["--drain", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--drain"));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("cannot listen on {addr}")),
        "{stdout}"
    );
}
