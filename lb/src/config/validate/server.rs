//! `server:`: listeners, threads, shutdown timing, logging and pingora's file paths.

use std::net::SocketAddr;

use super::Errors;
use crate::config::raw::RawServer;
use crate::config::{defaults, ServerSettings, TlsListener};

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
    // Port 0 asks the kernel for a free port, so two `:0` addresses never collide.
    if admin.port() != 0 && listen.contains(&admin) {
        errs.push(
            "server.admin",
            format!("\"{admin}\" is also a proxy listen address"),
        );
    }
    listen_addresses_are_distinct(errs, &listen);
    let tls_listen = super::tls::tls_listen(errs, raw.tls_listen.as_deref().unwrap_or_default());
    tls_addresses_are_distinct(errs, &tls_listen, &listen, admin);
    let addresses = listen.len() + tls_listen.len();
    if addresses > defaults::HANDED_OVER_MAX {
        errs.push(
            "server.listen",
            format!(
                "{addresses} proxy addresses (listen and tls_listen together); at most {} \
                 (an upgrade, `lb -u`, hands over at most that many listening sockets)",
                defaults::HANDED_OVER_MAX
            ),
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings = ServerSettings {
        listen,
        tls_listen,
        admin,
        threads: errs.count("server.threads", raw.threads, cpus, 1, Some(1024)),
        work_stealing: raw.work_stealing.unwrap_or(defaults::WORK_STEALING),
        per_thread_accept: raw.per_thread_accept.unwrap_or(true),
        grace_period: errs.duration(
            "server.grace_period",
            raw.grace_period.as_ref(),
            defaults::GRACE_PERIOD,
            defaults::GRACE_PERIOD_MAX,
        ),
        shutdown_timeout: errs.duration(
            "server.shutdown_timeout",
            raw.shutdown_timeout.as_ref(),
            defaults::SHUTDOWN_TIMEOUT,
            defaults::SHUTDOWN_TIMEOUT_MAX,
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
            Some(defaults::KEEPALIVE_POOL_SIZE_MAX as i64),
        ),
        h2c: raw.h2c.unwrap_or(false),
        fast_path: raw.fast_path.unwrap_or(true),
        client: super::client::client_limits(
            errs,
            raw.client_timeouts.as_ref(),
            raw.request_limits.as_ref(),
        ),
        https_redirect: super::https::https_redirect(errs, raw.https_redirect.as_ref()),
        hsts: raw
            .hsts
            .as_ref()
            .map(|h| super::https::hsts(errs, "server.hsts", h)),
        trusted_proxies: super::trusted_proxies::trusted_proxies(
            errs,
            raw.trusted_proxies.as_deref(),
        ),
        connection_limits: super::connection_limits::connection_limits(
            errs,
            raw.connection_limits.as_ref(),
        ),
        pid_file: file_path(errs, "pid_file", &raw.pid_file, defaults::PID_FILE),
        upgrade_sock: file_path(
            errs,
            "upgrade_sock",
            &raw.upgrade_sock,
            defaults::UPGRADE_SOCK,
        ),
        admin_auth: super::admin_auth::admin_auth(errs, raw.admin_auth.as_ref(), admin),
        log_throttle: errs.duration_up_to(
            "server.log_throttle",
            raw.log_throttle.as_ref(),
            defaults::LOG_THROTTLE,
            defaults::LOG_THROTTLE_MAX,
        ),
    };
    // Pingora sizes its shared connection pool's maps from the product, up front.
    let pooled = settings.upstream_keepalive_pool_size * settings.threads;
    if pooled > defaults::KEEPALIVE_POOL_TOTAL_MAX {
        errs.push(
            "server.upstream_keepalive_pool_size",
            format!(
                "{} per thread × {} threads = {pooled} idle upstream connections, more than the \
                 {} pingora can size its pool for at start; lower one of the two",
                settings.upstream_keepalive_pool_size,
                settings.threads,
                defaults::KEEPALIVE_POOL_TOTAL_MAX
            ),
        );
    }
    settings
}

/// One listener per `listen` entry: a repeated address would only fail at bind time, and
/// two `:0` entries on one IP share the key under which an upgrade hands their sockets over
/// (`crate::accept`), so the new process could not tell them apart.
fn listen_addresses_are_distinct(errs: &mut Errors, listen: &[SocketAddr]) {
    for (i, a) in listen.iter().enumerate() {
        if listen[..i].contains(a) {
            let why = if a.port() == 0 {
                "repeats port 0 on the same IP; an upgrade could not tell the two apart (use another IP or a fixed port)"
            } else {
                "is listed twice"
            };
            errs.push(format!("server.listen[{i}]"), format!("\"{a}\" {why}"));
        }
    }
}

/// A TLS address must not be bound twice. `:0` is fine, with one limit: the bound ports are
/// reported by matching the process's sockets to the configured IPs (`crate::listeners`),
/// so a TLS `:0` address needs an IP no other `:0` address uses, or the plaintext and TLS
/// ports could be reported the wrong way round.
fn tls_addresses_are_distinct(
    errs: &mut Errors,
    tls: &[TlsListener],
    listen: &[SocketAddr],
    admin: SocketAddr,
) {
    for (i, l) in tls.iter().enumerate() {
        let a = l.address;
        let earlier_tls = tls[..i].iter().map(|t| t.address);
        let others: Vec<SocketAddr> = listen
            .iter()
            .copied()
            .chain(std::iter::once(admin))
            .chain(earlier_tls)
            .collect();
        let clash = if a.port() == 0 {
            others.iter().any(|o| o.port() == 0 && o.ip() == a.ip())
        } else {
            others.contains(&a)
        };
        if clash {
            let why = if a.port() == 0 {
                "shares port 0 and its IP with another listener, so its bound port cannot be told apart (use another IP or a fixed port)"
            } else {
                "is already used by another listener"
            };
            errs.push(
                format!("server.tls_listen[{i}].address"),
                format!("\"{a}\" {why}"),
            );
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::validate::{collect, yaml};

    fn check(text: &str) -> (ServerSettings, Vec<String>) {
        collect(|errs| server(errs, &yaml(text)))
    }

    fn errors(text: &str) -> Vec<String> {
        check(text).1
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn at_most_what_an_upgrade_hands_over() {
        let list = |n: u16| {
            (0..n)
                .map(|i| format!("\"127.0.0.1:{}\"", 20000 + i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        assert_eq!(
            errors(&format!("listen: [{}]", list(32))),
            Vec::<String>::new()
        );
        let errs = errors(&format!("listen: [{}]", list(33)));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("server.listen: 33 proxy addresses"),
            "{errs:?}"
        );
    }

    #[test]
    fn an_empty_section_gets_every_default() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            check("{}"),
            (
                ServerSettings {
                    listen: vec![addr("0.0.0.0:8080")],
                    tls_listen: vec![],
                    admin: addr("127.0.0.1:9901"),
                    threads: cpus,
                    work_stealing: false,
                    per_thread_accept: true,
                    grace_period: Duration::from_secs(3),
                    shutdown_timeout: Duration::from_secs(3),
                    access_log: true,
                    access_log_flush: Duration::from_millis(100),
                    metrics: true,
                    upstream_keepalive_pool_size: 128,
                    pid_file: "/tmp/lb.pid".to_string(),
                    upgrade_sock: "/tmp/lb_upgrade.sock".to_string(),
                    h2c: false,
                    fast_path: true,
                    client: crate::config::ClientLimits::default(),
                    https_redirect: None,
                    hsts: None,
                    trusted_proxies: vec![],
                    connection_limits: Some(crate::config::ConnectionLimits::default()),
                    admin_auth: crate::config::AdminAuth {
                        metrics: true,
                        ..Default::default()
                    },
                    log_throttle: Duration::from_secs(10),
                },
                vec![]
            )
        );
    }

    #[test]
    fn every_setting_is_taken_as_written() {
        let text = r#"
listen: ["127.0.0.1:1", "[::1]:2"]
admin: "127.0.0.1:3"
threads: 4
work_stealing: true
grace_period: 5s
shutdown_timeout: 6s
access_log: false
access_log_flush: 0s
metrics: false
upstream_keepalive_pool_size: 7
pid_file: /run/lb.pid
upgrade_sock: /run/lb.sock
h2c: true
https_redirect: { port: 8443, exclude: [/health] }
hsts: { max_age: 1h }
trusted_proxies: [10.0.0.0/8]
connection_limits: { total: 50, per_ip: 5 }
admin_auth: { token_file: /run/secrets/admin, metrics: false }
log_throttle: 0s
"#;
        assert_eq!(
            check(text),
            (
                ServerSettings {
                    listen: vec![addr("127.0.0.1:1"), addr("[::1]:2")],
                    tls_listen: vec![],
                    admin: addr("127.0.0.1:3"),
                    threads: 4,
                    work_stealing: true,
                    per_thread_accept: true,
                    grace_period: Duration::from_secs(5),
                    shutdown_timeout: Duration::from_secs(6),
                    access_log: false,
                    access_log_flush: Duration::ZERO,
                    metrics: false,
                    upstream_keepalive_pool_size: 7,
                    pid_file: "/run/lb.pid".to_string(),
                    upgrade_sock: "/run/lb.sock".to_string(),
                    h2c: true,
                    fast_path: true,
                    client: crate::config::ClientLimits::default(),
                    https_redirect: Some(crate::config::HttpsRedirect {
                        port: 8443,
                        exclude: vec!["/health".into()],
                    }),
                    hsts: Some(crate::config::Hsts {
                        max_age: Duration::from_secs(3600),
                        include_subdomains: false,
                        preload: false,
                        value: "max-age=3600".into(),
                    }),
                    trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
                    connection_limits: Some(crate::config::ConnectionLimits {
                        total: 50,
                        per_ip: 5,
                    }),
                    admin_auth: crate::config::AdminAuth {
                        token_file: Some("/run/secrets/admin".into()),
                        metrics: false,
                        ..Default::default()
                    },
                    log_throttle: Duration::ZERO,
                },
                vec![]
            )
        );
    }

    #[test]
    fn listen_needs_at_least_one_address() {
        assert_eq!(
            errors("listen: []"),
            vec!["server.listen: at least one address is required"]
        );
    }

    #[test]
    fn listen_entries_are_ip_port_each_named_by_index() {
        let (settings, errs) = check(r#"listen: ["127.0.0.1:1", "lb:80", "nope"]"#);
        assert_eq!(
            errs,
            vec![
                "server.listen[1]: \"lb:80\" is not an IP:port address (names go through `dns:`)",
                "server.listen[2]: \"nope\" is not an IP:port address (names go through `dns:`)",
            ]
        );
        assert_eq!(settings.listen, vec![addr("127.0.0.1:1")]);
    }

    #[test]
    fn admin_is_an_ip_port() {
        assert_eq!(
            errors("admin: localhost:9901"),
            vec![
                "server.admin: \"localhost:9901\" is not an IP:port address (names go through `dns:`)"
            ]
        );
    }

    #[test]
    fn admin_must_differ_from_every_listen_address() {
        assert_eq!(
            errors(r#"{ listen: ["127.0.0.1:1", "127.0.0.1:2"], admin: "127.0.0.1:2" }"#),
            vec!["server.admin: \"127.0.0.1:2\" is also a proxy listen address"]
        );
        // The default admin address counts too.
        assert_eq!(
            errors(r#"listen: ["127.0.0.1:9901"]"#),
            vec!["server.admin: \"127.0.0.1:9901\" is also a proxy listen address"]
        );
        // Port 0 takes a free port for each: no clash (the test harness's set-up).
        assert!(errors(r#"{ listen: ["127.0.0.1:0"], admin: "127.0.0.1:0" }"#).is_empty());
    }

    #[test]
    fn tls_addresses_clash_with_no_other_listener() {
        let cert = "certificates: [ { cert: c, key: k } ]";
        assert_eq!(
            errors(&format!(
                r#"{{ listen: ["127.0.0.1:1", "127.0.0.1:0"], admin: "127.0.0.1:2",
                     tls_listen: [ {{ address: "127.0.0.1:1", {cert} }}, {{ address: "127.0.0.1:2", {cert} }},
                                   {{ address: "127.0.0.1:0", {cert} }}, {{ address: "127.0.0.2:0", {cert} }},
                                   {{ address: "127.0.0.2:0", {cert} }}, {{ address: "127.0.0.3:3", {cert} }} ] }}"#
            )),
            vec![
                "server.tls_listen[0].address: \"127.0.0.1:1\" is already used by another listener",
                "server.tls_listen[1].address: \"127.0.0.1:2\" is already used by another listener",
                "server.tls_listen[2].address: \"127.0.0.1:0\" shares port 0 and its IP with another listener, so its bound port cannot be told apart (use another IP or a fixed port)",
                "server.tls_listen[4].address: \"127.0.0.2:0\" shares port 0 and its IP with another listener, so its bound port cannot be told apart (use another IP or a fixed port)",
            ]
        );
    }

    #[test]
    fn the_keepalive_pool_is_bounded_over_all_threads() {
        assert!(errors("threads: 16\nupstream_keepalive_pool_size: 65536").is_empty());
        let errs = errors("threads: 1024\nupstream_keepalive_pool_size: 65536");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("server.upstream_keepalive_pool_size:")
                && errs[0].contains("67108864"),
            "{errs:?}"
        );
    }

    #[test]
    fn threads_are_between_1_and_1024() {
        assert_eq!(check("threads: 1024").0.threads, 1024);
        assert_eq!(
            errors("threads: 0"),
            vec!["server.threads: 0 must be at least 1"]
        );
        assert_eq!(
            errors("threads: 1025"),
            vec!["server.threads: 1025 must be at most 1024"]
        );
    }

    #[test]
    fn grace_period_and_shutdown_timeout_are_positive_durations() {
        assert_eq!(
            errors("{ grace_period: 0s, shutdown_timeout: 3 }"),
            vec![
                "server.grace_period: \"0s\" must be greater than zero",
                "server.shutdown_timeout: 3 is not a duration (write a unit, e.g. \"3s\" or \"3ms\")",
            ]
        );
    }

    #[test]
    fn grace_period_is_at_most_1h_and_shutdown_timeout_at_most_10m() {
        let (server, errs) = check("{ grace_period: 1h, shutdown_timeout: 10m }");
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(
            (server.grace_period, server.shutdown_timeout),
            (Duration::from_secs(3600), Duration::from_secs(600))
        );
        assert_eq!(
            errors("{ grace_period: 61m, shutdown_timeout: 10000000000000000000s }"),
            vec![
                "server.grace_period: \"61m\" is longer than the maximum 3600s",
                "server.shutdown_timeout: \"10000000000000000000s\" is longer than the maximum 600s",
            ]
        );
    }

    #[test]
    fn access_log_flush_is_at_most_10s() {
        assert_eq!(
            check("access_log_flush: 10s").0.access_log_flush,
            Duration::from_secs(10)
        );
        assert_eq!(
            errors("access_log_flush: 11s"),
            vec!["server.access_log_flush: \"11s\" is longer than the maximum 10s"]
        );
        assert_eq!(
            errors("access_log_flush: often"),
            vec!["server.access_log_flush: \"often\" is not a duration"]
        );
    }

    #[test]
    fn keepalive_pool_size_is_between_1_and_65536() {
        assert_eq!(
            check("upstream_keepalive_pool_size: 65536")
                .0
                .upstream_keepalive_pool_size,
            65536
        );
        assert_eq!(
            errors("upstream_keepalive_pool_size: 0"),
            vec!["server.upstream_keepalive_pool_size: 0 must be at least 1"]
        );
        // pingora sizes its pool's map from it up front: 1e12 aborted the start.
        assert_eq!(
            errors("upstream_keepalive_pool_size: 1000000000000"),
            vec!["server.upstream_keepalive_pool_size: 1000000000000 must be at most 65536"]
        );
    }

    #[test]
    fn log_throttle_is_at_most_an_hour() {
        assert_eq!(
            check("log_throttle: 1h").0.log_throttle,
            Duration::from_secs(3600)
        );
        assert_eq!(
            errors("log_throttle: 2h"),
            vec!["server.log_throttle: \"2h\" is longer than the maximum 3600s"]
        );
    }

    #[test]
    fn pid_file_and_upgrade_sock_must_not_be_empty() {
        assert_eq!(
            errors(r#"{ pid_file: "", upgrade_sock: "" }"#),
            vec![
                "server.pid_file: must not be empty",
                "server.upgrade_sock: must not be empty",
            ]
        );
    }

    #[test]
    fn a_listen_address_is_listed_once() {
        assert_eq!(
            errors(r#"{ listen: ["127.0.0.1:80", "127.0.0.1:80", "127.0.0.1:0", "127.0.0.2:0", "127.0.0.1:0"] }"#),
            vec![
                "server.listen[1]: \"127.0.0.1:80\" is listed twice",
                "server.listen[4]: \"127.0.0.1:0\" repeats port 0 on the same IP; an upgrade could not tell the two apart (use another IP or a fixed port)",
            ]
        );
    }
}
