//! `lb -d`: a daemon started with relative paths keeps reading the same files.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::{client, Stub};

/// Kills the daemon (the pid is in its pid file) when the test ends, passed or failed.
struct Daemon {
    pid_file: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn config(dir: &Path, app: &Stub, routes: &str) -> String {
    let d = dir.display();
    format!(
        "version: 1\nserver:\n  listen: [\"127.0.0.1:0\"]\n  admin: \"127.0.0.1:0\"\n  threads: 1\n  \
         grace_period: 1s\n  shutdown_timeout: 1s\n  pid_file: {d}/lb.pid\n  upgrade_sock: {d}/upgrade.sock\n\
         routes:\n{routes}upstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n    \
         sticky: {{ key_file: sticky.key }}\n",
        app.addr
    )
}

/// Pingora's daemon moves to `/`: `lb -d -c lb.yaml` then read `/lb.yaml` at every reload
/// (each one failed, and `--watch` never fired), and `sticky.key_file: sticky.key` named
/// `/sticky.key`. The config path is now made absolute at start, and the daemon stays in
/// the directory it was started in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_with_relative_paths_reloads_them() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path();
    std::fs::write(path.join("sticky.key"), "k".repeat(32)).expect("key");
    std::fs::write(
        path.join("lb.yaml"),
        config(path, &app, "  - { prefix: /, upstream: app }\n"),
    )
    .expect("config");
    let log = std::fs::File::create(path.join("lb.log")).expect("log");
    let _daemon = Daemon {
        pid_file: path.join("lb.pid"),
    };
    let status = Command::new(support::lb::bin())
        .args(["-d", "-c", "lb.yaml", "--log-format", "json"])
        .current_dir(path)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .expect("lb -d");
    assert!(status.success(), "lb -d: {status}");

    // The daemon keeps the parent's stdout: its log says where the admin listener is.
    let deadline = Instant::now() + Duration::from_secs(20);
    let admin = loop {
        let text = std::fs::read_to_string(path.join("lb.log")).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| support::logged_addr(l, "admin listening on "))
        {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never said where it listens:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let routes = "  - { prefix: /, upstream: app }\n  - { prefix: /two/, upstream: app }\n";
    std::fs::write(path.join("lb.yaml"), config(path, &app, routes)).expect("config");
    let resp = client()
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .expect("POST /reload");
    let code = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(code, 200, "{text}");
}
