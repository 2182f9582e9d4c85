//! The real `lb` binary, started with a temporary config that listens on port 0 (proxy
//! and admin); the ports it got are read from its `proxy listening on ADDR` and
//! `admin listening on ADDR` log lines. No port is picked in advance, so parallel tests
//! cannot race for one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lb")
}

/// `lb -t` on a config file holding `text`: the exit code and what it printed.
pub(crate) fn check_text(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(bin())
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .expect("lb -t");
    let printed =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), printed)
}

pub(crate) struct Lb {
    child: Child,
    /// The proxy's bound port.
    pub(crate) port: u16,
    /// The admin listener's bound port.
    pub(crate) admin: u16,
    /// `server.admin` as written in the config file (`127.0.0.1:0` until an upgrade pins
    /// it, see [`Lb::start_upgrade`]).
    admin_conf: String,
    /// Shared with the process an upgrade starts (same config, sockets and pid file).
    dir: Arc<tempfile::TempDir>,
    log_name: &'static str,
    /// Environment variables of the process (and of [`Lb::run_command`]).
    env: Vec<(String, String)>,
}

impl Lb {
    /// Start `lb` with `body` (routes + upstreams YAML) and a server section on free ports.
    /// `server_extra` lines are added under `server:` (indent them by two spaces).
    pub(crate) fn start(server_extra: &str, body: &str) -> Lb {
        Self::start_with_args(server_extra, body, &[])
    }

    /// Like [`Lb::start`], with extra command-line arguments (e.g. `--watch`).
    pub(crate) fn start_with_args(server_extra: &str, body: &str, args: &[&str]) -> Lb {
        Self::start_with_env(server_extra, body, args, &[])
    }

    /// Like [`Lb::start_with_args`], with environment variables for the process.
    pub(crate) fn start_with_env(
        server_extra: &str,
        body: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Lb {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let admin_conf = "127.0.0.1:0".to_string();
        write_config(dir.path(), &admin_conf, server_extra, body);
        let mut child = spawn(dir.path(), "lb.log", args, &env);
        let log = dir.path().join("lb.log");
        let (port, admin) = bound_ports(&mut child, &log);
        Lb {
            child,
            port,
            admin,
            admin_conf,
            dir,
            log_name: "lb.log",
            env,
        }
    }

    /// Rewrite the config file: the same server section plus `server_extra`, and `body`.
    pub(crate) fn write_config(&self, server_extra: &str, body: &str) {
        write_config(self.dir.path(), &self.admin_conf, server_extra, body);
    }

    /// Start a second process with `-u` on the same config: it waits for this one's
    /// listening sockets, which this one hands over on SIGQUIT. The proxy sockets pass as
    /// they are (keyed by the configured `127.0.0.1:0`); the admin listener is not handed
    /// over, so the config first pins it to this process's admin port, which the new
    /// process binds once this one has exited.
    pub(crate) fn start_upgrade(&mut self, server_extra: &str, body: &str) -> Lb {
        self.admin_conf = format!("127.0.0.1:{}", self.admin);
        self.write_config(server_extra, body);
        let log_name = "lb-upgraded.log";
        Lb {
            child: spawn(self.dir.path(), log_name, &["-u"], &self.env),
            port: self.port,
            admin: self.admin,
            admin_conf: self.admin_conf.clone(),
            dir: self.dir.clone(),
            log_name,
            env: self.env.clone(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run `lb <args> -c <this config>` to completion (e.g. `reload`). `reload` and
    /// `healthcheck` get `--url` for the bound admin port: the config says `:0`.
    pub(crate) fn run_command(&self, args: &[&str]) -> std::process::Output {
        let url = match args.first() {
            Some(&"reload") => Some(self.admin_url("/reload")),
            Some(&"healthcheck") => Some(self.admin_url("/ready")),
            _ => None,
        };
        Command::new(bin())
            .args(args)
            .args(url.iter().flat_map(|u| ["--url", u.as_str()]))
            .args(["-c", self.config_path().to_str().expect("path")])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run lb")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// GET an admin endpoint and parse its JSON body (e.g. `/status`).
    pub(crate) async fn admin_json(&self, path: &str) -> serde_json::Value {
        super::client()
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin GET")
            .json()
            .await
            .expect("admin JSON")
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("lb.yaml")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join(self.log_name)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Poll the admin `/ready` until 200 (and the proxy port accepts), or fail after 20 s.
    pub(crate) async fn wait_ready(&mut self) {
        let client = super::client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lb exited early ({status}):\n{}", self.log());
            }
            let ready = matches!(client.get(self.admin_url("/ready")).send().await, Ok(r) if r.status() == 200);
            if ready && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lb not ready in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The inodes of the listening TCP sockets this process holds on its proxy port (one
    /// per proxy thread with `per_thread_accept`), sorted.
    pub(crate) fn listening_sockets(&self) -> Vec<u64> {
        listening_sockets(self.child.id(), self.port)
    }

    pub(crate) fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("kill");
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the process to exit, up to `limit`.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

fn write_config(dir: &Path, admin: &str, server_extra: &str, body: &str) {
    let d = dir.display();
    // A test that must know the plaintext port in advance (an ACME CA is told where to
    // validate) writes its own `listen:`.
    let listen = if server_extra.starts_with("  listen:") {
        ""
    } else {
        "  listen: [\"127.0.0.1:0\"]\n"
    };
    // Short stops by default; a test that needs a long grace period sets both itself.
    let stop = if server_extra.contains("grace_period") {
        ""
    } else {
        "  grace_period: 2s\n  shutdown_timeout: 1s\n"
    };
    let config = format!(
        "version: 1\nserver:\n{listen}  admin: \"{admin}\"\n  threads: 2\n\
         {stop}  pid_file: {d}/lb.pid\n  upgrade_sock: {d}/upgrade.sock\n\
         {server_extra}\n{body}\n"
    );
    // Write then rename, as editors and config managers do, so a reload never reads a
    // half-written file.
    let tmp = dir.join("lb.yaml.tmp");
    std::fs::write(&tmp, config).expect("write config");
    std::fs::rename(&tmp, dir.join("lb.yaml")).expect("rename config");
}

/// The proxy and admin ports from the lb's `... listening on ADDR` log lines, polled for
/// up to 20 s (or until the process exits).
fn bound_ports(child: &mut Child, log: &Path) -> (u16, u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = |what: &str| {
            text.lines()
                .find_map(|l| super::logged_addr(l, &format!("{what} listening on ")))
                .map(|a| a.port())
        };
        if let (Some(proxy), Some(admin)) = (port("proxy"), port("admin")) {
            return (proxy, admin);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("lb exited before listening ({status}):\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "lb never said where it listens:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(dir: &Path, log_name: &str, args: &[&str], env: &[(String, String)]) -> Child {
    let log = std::fs::File::create(dir.join(log_name)).expect("log file");
    let conf = dir.join("lb.yaml");
    Command::new(bin())
        .args(["-c", conf.to_str().expect("path"), "--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn lb")
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The inodes of the listening TCP sockets process `pid` holds on `port`, sorted: its
/// `/proc/PID/fd` links to `socket:[INODE]`, matched against `/proc/PID/net/tcp{,6}`
/// (state `0A` is LISTEN).
pub(crate) fn listening_sockets(pid: u32, port: u16) -> Vec<u64> {
    let held: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|t| {
                    let t = t.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                if let Ok(inode) = inode.parse() {
                    if held.contains(&inode) {
                        found.push(inode);
                    }
                }
            }
        }
    }
    found.sort_unstable();
    found
}
