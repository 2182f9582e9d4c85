//! From a validated [`Config`] to a running pingora server: `ServerConf`, the proxy service
//! on every `listen` address, the pool supervisor and the admin listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use crate::admin::AdminService;
use crate::config::{self, Config, ConfigError, ConfigErrors, LoadedConfig};
use crate::metrics::Metrics;
use crate::per_thread::Every;
use crate::proxy::LbProxy;
use crate::reload::{Reloader, Watcher};
use crate::signals::Signals;
use crate::state::{LbState, Snapshot};
use crate::supervisor::PoolSupervisor;

/// Pingora's server settings from ours. Durations round up to whole seconds (pingora's unit).
pub fn server_conf(config: &Config, daemon: bool) -> ServerConf {
    let s = &config.server;
    let secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    ServerConf {
        version: 1,
        daemon,
        threads: s.threads,
        work_stealing: s.work_stealing,
        grace_period_seconds: Some(secs(s.grace_period)),
        graceful_shutdown_timeout_seconds: Some(secs(s.shutdown_timeout)),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        ..ServerConf::default()
    }
}

/// Everything `lb -t` checks: our config, then pingora's own validation of the server part.
/// Startup and every reload go through here too, so they accept exactly the same files.
pub fn check(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let text = config::read(path)?;
    let config = Config::from_yaml(&text)?;
    if let Err(e) = server_conf(&config, false).validate() {
        return Err(ConfigErrors(vec![ConfigError::new(
            "server",
            e.to_string(),
        )]));
    }
    Ok(LoadedConfig {
        config,
        hash: config::sha256_hex(text.as_bytes()),
    })
}

pub struct RunOptions {
    pub upgrade: bool,
    pub daemon: bool,
    pub config_path: PathBuf,
    /// Reload when the config file changes (polled every second).
    pub watch: bool,
}

/// Build and run the server until it is told to stop (SIGTERM/SIGINT/SIGQUIT).
pub fn run(loaded: LoadedConfig, opts: RunOptions) -> anyhow::Result<()> {
    let config = &loaded.config;
    let conf = server_conf(config, opts.daemon);
    let listen: Vec<String> = config.server.listen.iter().map(|a| a.to_string()).collect();
    let admin_addr = config.server.admin;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %opts.config_path.display(),
        config_sha256 = %loaded.hash,
        listen = ?listen,
        admin = %admin_addr,
        threads = conf.threads,
        routes = ?config.routes.iter().map(|r| format!("{} -> {}", r.prefix, r.upstream)).collect::<Vec<_>>(),
        upstreams = ?config.upstreams.keys().collect::<Vec<_>>(),
        "lb starting"
    );

    let metrics = Arc::new(Metrics::new());
    let snapshot = Snapshot::build(loaded, &metrics).context("building upstream pools")?;
    let state = LbState::new(snapshot, metrics, opts.config_path.clone());
    let reloader = Arc::new(Reloader::new(state.clone()));
    let admin = AdminService::bind(admin_addr, reloader.clone(), opts.upgrade)
        .with_context(|| format!("cannot listen on admin address {admin_addr}"))?;

    let pingora_opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(pingora_opt, conf);
    server.bootstrap();

    let mut proxy =
        http_proxy_service_with_name(&server.configuration, LbProxy::new(state.clone()), "proxy");
    for addr in &listen {
        proxy.add_tcp(addr);
    }
    server.add_service(proxy);
    server.add_service(background_service(
        "pools",
        PoolSupervisor::new(state.clone()),
    ));
    server.add_service(background_service(
        "idle upstream connections",
        Every {
            every: Duration::from_secs(1),
            run: crate::proxy::keepalive::sweep,
        },
    ));
    server.add_service(background_service(
        "access log flush",
        Every {
            every: Duration::from_millis(20),
            run: crate::access_log::flush_due,
        },
    ));
    server.add_service(background_service("admin", admin));
    if opts.watch {
        server.add_service(background_service(
            "config watch",
            Watcher::new(reloader.clone()),
        ));
    }

    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(reloader)),
    });
    crate::access_log::flush_all();
    tracing::info!("lb stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_conf_from_config() {
        let config = Config::from_yaml(
            "version: 1\nserver: { threads: 3, grace_period: 2500ms, shutdown_timeout: 1s, pid_file: /run/x.pid }\n\
             routes: [ { prefix: /, upstream: a } ]\nupstreams: { a: { discovery: { static: [\"127.0.0.1:1\"] } } }\n",
        )
        .expect("valid");
        let conf = server_conf(&config, false);
        assert_eq!(conf.threads, 3);
        assert_eq!(
            conf.grace_period_seconds,
            Some(3),
            "rounded up to whole seconds"
        );
        assert_eq!(conf.graceful_shutdown_timeout_seconds, Some(1));
        assert_eq!(conf.pid_file, "/run/x.pid");
        assert_eq!(conf.upgrade_sock, crate::config::defaults::UPGRADE_SOCK);
        assert!(!conf.daemon);
    }

    #[test]
    fn defaults_are_docker_friendly() {
        let config = Config::from_yaml(
            "version: 1\nroutes: [ { prefix: /, upstream: a } ]\nupstreams: { a: { discovery: { static: [\"127.0.0.1:1\"] } } }\n",
        )
        .expect("valid");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.server.threads, cpus);
        assert_eq!(
            config.server.listen,
            vec!["0.0.0.0:8080".parse().expect("addr")]
        );
        assert_eq!(config.server.admin, "127.0.0.1:9901".parse().expect("addr"));
        let conf = server_conf(&config, false);
        assert_eq!(conf.grace_period_seconds, Some(3));
        assert_eq!(conf.graceful_shutdown_timeout_seconds, Some(3));
        assert!(conf.pid_file.starts_with("/tmp/") && conf.upgrade_sock.starts_with("/tmp/"));
        let a = &config.upstreams["a"];
        assert_eq!(a.retries, 2);
        assert!(a.timeouts.idle < std::time::Duration::from_secs(30));
    }
}
