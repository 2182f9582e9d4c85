//! Real-socket tests: the `backend` binary on 127.0.0.1:0, driven like Docker drives it.

mod support;

use std::{process::Command, thread};

use nix::sys::signal::Signal;
use support::{get, wait_until, Service};

const BIN: &str = env!("CARGO_BIN_EXE_backend");

fn requests_served(backend: &Service) -> u64 {
    let (_, body) = get(&backend.url("/api/whoami")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["requests_served"].as_u64().unwrap()
}

fn healthcheck(url: &str) -> std::process::Output {
    support::healthcheck(BIN, &["--url", url], &[])
}

#[test]
fn sigterm_drains_finishes_in_flight_work_and_exits_0() {
    let backend = Service::start(BIN, &["--drain", "1s", "--replica-id", "proc"], &[]);
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
    let backend = Service::start(BIN, &[], &[]);
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
    let backend = Service::start(BIN, &[], &[]);
    let listen = format!("0.0.0.0:{}", backend.addr.port());
    let probe = support::healthcheck(BIN, &[], &[("BACKEND_LISTEN", &listen)]);
    let stdout = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(probe.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("http://127.0.0.1:{}/ready", backend.addr.port())));
}

#[test]
fn json_logs_one_line_per_request() {
    let backend = Service::start(BIN, &[], &[("LOG_FORMAT", "json")]);
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
    // The logging contract (README, "Logs"): the same flat names in every binary.
    assert_eq!(json["target"], "access");
    assert_eq!(json["request_id"], "json-1");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/api/hello");
    assert_eq!(json["status"], 200);
    assert!(json["duration_ms"].is_number());
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

/// `BACKEND_FAULT_STATUS` as Docker sets it: the API fails, the probes (and so the
/// Docker healthcheck) pass.
#[test]
fn fault_status_from_the_environment() {
    let backend = Service::start(BIN, &[], &[("BACKEND_FAULT_STATUS", "503")]);
    let (status, body) = get(&backend.url("/api/hello")).unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"error":"service unavailable"}"#)
    );
    assert_eq!(get(&backend.url("/ready")).unwrap().0, 200);
    assert_eq!(healthcheck(&backend.url("/ready")).status.code(), Some(0));
}

/// An invalid value refuses to start, with the variable named and no panic.
#[test]
fn invalid_fault_status_refuses_to_start() {
    for bad in ["abc", "200", "600"] {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .env("BACKEND_FAULT_STATUS", bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("BACKEND_FAULT_STATUS"), "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bad}: {stderr}");
    }
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
