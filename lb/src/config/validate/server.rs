//! `server:`: listeners, threads, shutdown timing, logging and pingora's file paths.

use std::net::SocketAddr;

use super::Errors;
use crate::config::raw::RawServer;
use crate::config::{defaults, ServerSettings};

pub(super) fn server(errs: &mut Errors, raw: &RawServer) -> ServerSettings {
    let listen = match &raw.listen {
        None => vec![default_addr(defaults::LISTEN)],
        Some(list) if list.is_empty() => {
            errs.push("server.listen", "at least one address is required");
            vec![]
        }
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, a)| errs.socket_addr(&format!("server.listen[{i}]"), a))
            .collect(),
    };
    let admin = match &raw.admin {
        None => default_addr(defaults::ADMIN),
        Some(a) => errs
            .socket_addr("server.admin", a)
            .unwrap_or_else(|| default_addr(defaults::ADMIN)),
    };
    // Two listeners on one address would only fail when binding; `lb -t` should say so.
    if listen.contains(&admin) {
        errs.push(
            "server.admin",
            format!("\"{admin}\" is also a proxy listen address"),
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    ServerSettings {
        listen,
        admin,
        threads: errs.count("server.threads", raw.threads, cpus, 1, Some(1024)),
        work_stealing: raw.work_stealing.unwrap_or(defaults::WORK_STEALING),
        grace_period: errs.duration(
            "server.grace_period",
            raw.grace_period.as_ref(),
            defaults::GRACE_PERIOD,
        ),
        shutdown_timeout: errs.duration(
            "server.shutdown_timeout",
            raw.shutdown_timeout.as_ref(),
            defaults::SHUTDOWN_TIMEOUT,
        ),
        access_log: raw.access_log.unwrap_or(true),
        access_log_flush: errs.duration_up_to(
            "server.access_log_flush",
            raw.access_log_flush.as_ref(),
            defaults::ACCESS_LOG_FLUSH,
            defaults::ACCESS_LOG_FLUSH_MAX,
        ),
        metrics: raw.metrics.unwrap_or(true),
        upstream_keepalive_pool_size: errs.count(
            "server.upstream_keepalive_pool_size",
            raw.upstream_keepalive_pool_size,
            defaults::KEEPALIVE_POOL_SIZE,
            1,
            None,
        ),
        pid_file: file_path(errs, "pid_file", &raw.pid_file, defaults::PID_FILE),
        upgrade_sock: file_path(
            errs,
            "upgrade_sock",
            &raw.upgrade_sock,
            defaults::UPGRADE_SOCK,
        ),
    }
}

fn default_addr(text: &str) -> SocketAddr {
    text.parse().expect("valid default")
}

/// A file path handed to pingora; an empty one is a mistake, never a way to turn it off.
fn file_path(errs: &mut Errors, key: &str, value: &Option<String>, default: &str) -> String {
    match value {
        Some(p) if p.is_empty() => {
            errs.push(format!("server.{key}"), "must not be empty");
            default.to_string()
        }
        Some(p) => p.clone(),
        None => default.to_string(),
    }
}
