//! From a validated [`Config`] to a running pingora server: `ServerConf`, the proxy's
//! accept loops on every `listen` and `tls_listen` address, the pool supervisor and the admin listener.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use crate::accept::{AcceptService, Endpoint};
use crate::admin::AdminService;
use crate::config::LoadedConfig;
use crate::downstream::EdgeApp;
use crate::metrics::Metrics;
use crate::per_thread::Every;
use crate::proxy::LbProxy;
use crate::reload::{Reloader, Watcher};
use crate::signals::Signals;
use crate::state::{LbState, Snapshot};
use crate::supervisor::PoolSupervisor;

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
    let conf = config.server_conf(opts.daemon);
    let listen_addrs = config.server.listen.clone();
    let listen: Vec<String> = listen_addrs.iter().map(|a| a.to_string()).collect();
    let (threads, per_thread_accept, work_stealing) = (
        config.server.threads,
        config.server.per_thread_accept,
        config.server.work_stealing,
    );
    let admin_addr = config.server.admin;
    let tls_listen = config.server.tls_listen.clone();
    let h2c = config.server.h2c;
    let head_size = config.server.client.head_size;
    let keepalive = config.server.client.keepalive_timeout;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %opts.config_path.display(),
        config_sha256 = %loaded.hash,
        listen = ?listen,
        tls_listen = ?config.server.tls_listen.iter().map(|l| l.address.to_string()).collect::<Vec<_>>(),
        admin = %admin_addr,
        admin_token = %config.server.admin_auth.source(),
        threads = conf.threads,
        routes = ?config.routes.iter().map(|r| format!("{} -> {}", r.prefix, r.upstream)).collect::<Vec<_>>(),
        upstreams = ?config.upstreams.keys().collect::<Vec<_>>(),
        "lb starting"
    );

    crate::log_throttle::set_window(config.server.log_throttle);
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

    let mut http = pingora::proxy::http_proxy(&server.configuration, LbProxy::new(state.clone()));
    // An idle h2 connection (no open stream) is closed after the keep-alive timeout, as
    // an idle HTTP/1 one is (fixed at start for h2).
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(keepalive);
    // Pingora peeks each new plaintext connection for the h2 preface; TLS listeners ignore
    // this and go by ALPN.
    options.h2c = h2c;
    http.server_options = Some(options);
    // h2 bounds the decoded header list itself (fixed at start; HTTP/1 heads are checked
    // per request by `downstream`, with the reloadable limits).
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(u32::try_from(head_size).unwrap_or(u32::MAX));
    http.h2_options = Some(h2);
    // Every listener's connections counted against `server.connection_limits`, each
    // accepted on the thread that serves it (`crate::accept`).
    let app = EdgeApp::new(http, state.clone());
    let mut endpoints: Vec<Endpoint> = listen_addrs
        .iter()
        .map(|&addr| Endpoint { addr, tls: None })
        .collect();
    for (i, listener) in tls_listen.iter().enumerate() {
        let settings = state.tls.settings(i, listener)?;
        endpoints.push(Endpoint {
            addr: listener.address,
            tls: Some(Arc::new(settings.build())),
        });
    }
    server.add_service(AcceptService::new(
        "proxy",
        app,
        state.clone(),
        endpoints,
        threads,
        per_thread_accept,
        work_stealing,
    ));
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
            run: crate::line_buffer::flush_due,
        },
    ));
    server.add_service(background_service(
        "repeated log lines",
        Every {
            every: Duration::from_secs(1),
            run: crate::log_throttle::flush_due,
        },
    ));
    server.add_service(background_service("admin", admin));
    server.add_service(background_service(
        "acme",
        crate::acme::AcmeService::new(state.clone()),
    ));
    if opts.watch {
        server.add_service(background_service(
            "config watch",
            Watcher::new(reloader.clone()),
        ));
    }

    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(reloader)),
    });
    crate::line_buffer::flush_all();
    tracing::info!("lb stopped");
    Ok(())
}
