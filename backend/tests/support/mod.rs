//! Helpers for real-process tests, shared by the backend and frontend test suites
//! (the frontend includes this file with `#[path]`).
//!
//! A service binary is started on 127.0.0.1:0; its `listening on ADDR` log line says
//! which port it got; readiness is polled, never slept for.

#![allow(dead_code)] // each test crate uses a different subset

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// A running service binary; killed if a test fails half-way.
pub(crate) struct Service {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Service {
    /// Starts `bin --listen 127.0.0.1:0 ARGS` and waits (bounded) for its
    /// `listening on ADDR` line and a 200 from `/health`.
    pub(crate) fn start(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let (tx, log) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{bin} logged no `listening on ADDR` line"));
            if let Some(addr) = listening_addr(&line) {
                break addr;
            }
        };
        let service = Self { child, addr, log };
        wait_until(|| get(&service.url("/health")).is_some_and(|(s, _)| s == 200));
        service
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (bounded) for the process to exit; returns its status and its log since
    /// the `listening on` line.
    pub(crate) fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the service did not exit");
            thread::sleep(Duration::from_millis(20));
        };
        let log: Vec<String> = self.log.try_iter().collect();
        (status, log.join("\n"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a `listening on ADDR` log line, text or JSON.
pub(crate) fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// GET on a fresh connection: (status, body), or None if nothing answered.
pub(crate) fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let response = client.get(url).send().ok()?;
    Some((response.status().as_u16(), response.text().ok()?))
}

/// Polls `condition` every 20 ms for at most 10 s.
pub(crate) fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `bin healthcheck ARGS`.
pub(crate) fn healthcheck(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(bin)
        .arg("healthcheck")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}
