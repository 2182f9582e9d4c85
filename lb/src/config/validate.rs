//! Raw config → validated [`Config`], collecting every error with its field path.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::Value;

use super::duration;
use super::raw::{RawConfig, RawDiscovery, RawHealthCheck, RawServer, RawTimeouts, RawUpstream};
use super::{
    defaults, Config, ConfigError, DiscoverySpec, HealthCheckSpec, RouteSpec, Selection,
    ServerSettings, StaticBackend, Timeouts, UpstreamSpec,
};

/// Collects errors while building values; every `check_*` returns a placeholder on error so
/// validation can go on and report the rest of the file.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    fn duration(&mut self, path: &str, value: Option<&Value>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        match duration::parse(value) {
            Ok(d) if d.is_zero() => {
                self.push(
                    path,
                    format!("{} must be greater than zero", duration::show(value)),
                );
                default
            }
            Ok(d) => d,
            Err(msg) => {
                self.push(path, msg);
                default
            }
        }
    }

    /// A duration from zero up to `max`.
    fn duration_up_to(
        &mut self,
        path: &str,
        value: Option<&Value>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match duration::parse(value) {
            Ok(d) if d > max => {
                self.push(
                    path,
                    format!(
                        "{} is longer than the maximum {max:?}",
                        duration::show(value)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(msg) => {
                self.push(path, msg);
                default
            }
        }
    }

    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(
                    path,
                    format!("{text:?} is not an IP:port address (names go through `dns:`)"),
                );
                None
            }
        }
    }

    /// An integer that must be at least `min` (and at most `max`, when given).
    fn count(
        &mut self,
        path: &str,
        value: Option<i64>,
        default: usize,
        min: i64,
        max: Option<i64>,
    ) -> usize {
        let Some(v) = value else { return default };
        if v < min {
            self.push(path, format!("{v} must be at least {min}"));
            return default;
        }
        if let Some(max) = max.filter(|&m| v > m) {
            self.push(path, format!("{v} must be at most {max}"));
            return default;
        }
        usize::try_from(v).unwrap_or(default)
    }
}

pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());

    match &raw.version {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(v) => errs.push(
            "version",
            format!("{} is not supported (expected 1)", duration::show(v)),
        ),
        None => errs.push("version", "missing (expected `version: 1`)"),
    }

    let server = server(&mut errs, &raw.server);

    let mut upstreams = BTreeMap::new();
    if raw.upstreams.is_empty() {
        errs.push("upstreams", "at least one upstream is required");
    }
    for (name, up) in &raw.upstreams {
        let path = format!("upstreams.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errs.push(
                &path,
                format!("{name:?} is not a valid upstream name (letters, digits, `-_.`)"),
            );
        }
        upstreams.insert(name.clone(), upstream(&mut errs, &path, up));
    }

    if raw.routes.is_empty() {
        errs.push("routes", "at least one route is required");
    }
    let mut seen = HashSet::new();
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !r.prefix.starts_with('/') {
            errs.push(
                format!("{path}.prefix"),
                format!("{:?} must start with `/`", r.prefix),
            );
        } else if !seen.insert(r.prefix.as_str()) {
            errs.push(
                format!("{path}.prefix"),
                format!("duplicate route {:?}", r.prefix),
            );
        }
        if !raw.upstreams.contains_key(&r.upstream) {
            errs.push(
                format!("{path}.upstream"),
                format!(
                    "unknown upstream {:?} (not defined under `upstreams:`)",
                    r.upstream
                ),
            );
        }
        routes.push(RouteSpec {
            prefix: r.prefix.clone(),
            upstream: r.upstream.clone(),
            strip_prefix: r.strip_prefix,
        });
    }

    if errs.0.is_empty() {
        Ok(Config {
            server,
            routes,
            upstreams,
        })
    } else {
        Err(errs.0)
    }
}

fn server(errs: &mut Errors, raw: &RawServer) -> ServerSettings {
    let listen = match &raw.listen {
        None => vec![defaults::LISTEN.parse().expect("valid default")],
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
        None => defaults::ADMIN.parse().expect("valid default"),
        Some(a) => errs
            .socket_addr("server.admin", a)
            .unwrap_or_else(|| defaults::ADMIN.parse().expect("valid default")),
    };
    if listen.contains(&admin) {
        errs.push(
            "server.admin",
            format!("\"{admin}\" is also a proxy listen address"),
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let path_setting = |errs: &mut Errors, key: &str, v: &Option<String>, default: &str| match v {
        Some(p) if p.is_empty() => {
            errs.push(format!("server.{key}"), "must not be empty");
            default.to_string()
        }
        Some(p) => p.clone(),
        None => default.to_string(),
    };
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
        pid_file: path_setting(errs, "pid_file", &raw.pid_file, defaults::PID_FILE),
        upgrade_sock: path_setting(
            errs,
            "upgrade_sock",
            &raw.upgrade_sock,
            defaults::UPGRADE_SOCK,
        ),
    }
}

fn upstream(errs: &mut Errors, path: &str, raw: &RawUpstream) -> UpstreamSpec {
    let selection = match raw.selection.as_deref() {
        None | Some("round_robin") => Selection::RoundRobin,
        Some(other) => {
            errs.push(
                format!("{path}.selection"),
                format!("{other:?} is not supported (supported: round_robin)"),
            );
            Selection::RoundRobin
        }
    };
    UpstreamSpec {
        discovery: discovery(errs, &format!("{path}.discovery"), &raw.discovery),
        selection,
        health_check: raw
            .health_check
            .as_ref()
            .map(|hc| health_check(errs, &format!("{path}.health_check"), hc)),
        retries: errs.count(
            &format!("{path}.retries"),
            raw.retries,
            defaults::RETRIES,
            0,
            Some(defaults::MAX_RETRIES as i64),
        ),
        timeouts: timeouts(errs, &format!("{path}.timeouts"), &raw.timeouts),
        host: raw.host.clone(),
    }
}

fn discovery(errs: &mut Errors, path: &str, raw: &RawDiscovery) -> DiscoverySpec {
    let interval = errs.duration(
        &format!("{path}.interval"),
        raw.interval.as_ref(),
        defaults::DNS_INTERVAL,
    );
    match (&raw.dns, &raw.static_) {
        (Some(dns), None) => {
            let resolver = raw
                .resolver
                .as_ref()
                .and_then(|r| errs.socket_addr(&format!("{path}.resolver"), r));
            let (name, port) = match dns.rsplit_once(':') {
                Some((name, port)) if valid_dns_name(name) => match port.parse::<u16>() {
                    Ok(p) if p > 0 => (name.to_string(), p),
                    _ => {
                        errs.push(
                            format!("{path}.dns"),
                            format!("{dns:?} has no valid port (expected name:port)"),
                        );
                        (name.to_string(), 0)
                    }
                },
                _ => {
                    errs.push(
                        format!("{path}.dns"),
                        format!("{dns:?} is not a name:port (e.g. \"backend:5252\")"),
                    );
                    (String::new(), 0)
                }
            };
            DiscoverySpec::Dns {
                name,
                port,
                interval,
                resolver,
            }
        }
        (None, Some(list)) => {
            if raw.resolver.is_some() {
                errs.push(
                    format!("{path}.resolver"),
                    "only applies to `dns:` discovery",
                );
            }
            if list.is_empty() {
                errs.push(
                    format!("{path}.static"),
                    "empty pool: list at least one IP:port",
                );
            }
            let backends = list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| static_backend(errs, &format!("{path}.static[{i}]"), v))
                .collect();
            DiscoverySpec::Static { backends }
        }
        (Some(_), Some(_)) => {
            errs.push(path, "set exactly one of `dns` or `static`, not both");
            DiscoverySpec::Static { backends: vec![] }
        }
        (None, None) => {
            errs.push(
                path,
                "set one of `dns: \"name:port\"` or `static: [\"IP:port\", ...]`",
            );
            DiscoverySpec::Static { backends: vec![] }
        }
    }
}

/// `"IP:port"` or `{ addr: "IP:port", weight: N }`.
fn static_backend(errs: &mut Errors, path: &str, v: &Value) -> Option<StaticBackend> {
    match v {
        Value::String(s) => errs
            .socket_addr(path, s)
            .map(|addr| StaticBackend { addr, weight: 1 }),
        Value::Mapping(m) => {
            let mut addr = None;
            let mut weight = 1;
            for (k, val) in m {
                match (k.as_str(), val) {
                    (Some("addr"), Value::String(s)) => {
                        addr = errs.socket_addr(&format!("{path}.addr"), s)
                    }
                    (Some("weight"), Value::Number(n)) => match n.as_u64() {
                        Some(w) if (1..=1000).contains(&w) => weight = w as usize,
                        _ => errs.push(
                            format!("{path}.weight"),
                            format!("{n} must be between 1 and 1000"),
                        ),
                    },
                    (Some(key @ ("addr" | "weight")), other) => errs.push(
                        format!("{path}.{key}"),
                        format!("{} has the wrong type", duration::show(other)),
                    ),
                    (key, _) => errs.push(
                        path,
                        format!(
                            "unknown field {}, expected `addr` or `weight`",
                            duration::show(&key.map_or(k.clone(), |s| Value::String(s.into())))
                        ),
                    ),
                }
            }
            if addr.is_none() && !m.contains_key("addr") {
                errs.push(path, "missing field `addr`");
            }
            addr.map(|addr| StaticBackend { addr, weight })
        }
        other => {
            errs.push(
                path,
                format!("{} is not an IP:port address", duration::show(other)),
            );
            None
        }
    }
}

fn health_check(errs: &mut Errors, path: &str, raw: &RawHealthCheck) -> HealthCheckSpec {
    let hc_path = raw
        .path
        .clone()
        .unwrap_or_else(|| defaults::HC_PATH.to_string());
    if !hc_path.starts_with('/') || hc_path.parse::<http::Uri>().is_err() {
        errs.push(
            format!("{path}.path"),
            format!("{hc_path:?} is not an absolute path"),
        );
    }
    HealthCheckSpec {
        path: hc_path,
        interval: errs.duration(
            &format!("{path}.interval"),
            raw.interval.as_ref(),
            defaults::HC_INTERVAL,
        ),
        timeout: errs.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_ref(),
            defaults::HC_TIMEOUT,
        ),
        healthy_after: errs.count(
            &format!("{path}.healthy_after"),
            raw.healthy_after,
            defaults::HC_HEALTHY_AFTER,
            1,
            Some(100),
        ),
        unhealthy_after: errs.count(
            &format!("{path}.unhealthy_after"),
            raw.unhealthy_after,
            defaults::HC_UNHEALTHY_AFTER,
            1,
            Some(100),
        ),
        host: raw.host.clone(),
    }
}

fn timeouts(errs: &mut Errors, path: &str, raw: &RawTimeouts) -> Timeouts {
    Timeouts {
        connect: errs.duration(
            &format!("{path}.connect"),
            raw.connect.as_ref(),
            defaults::CONNECT_TIMEOUT,
        ),
        read: errs.duration(
            &format!("{path}.read"),
            raw.read.as_ref(),
            defaults::READ_TIMEOUT,
        ),
        write: errs.duration(
            &format!("{path}.write"),
            raw.write.as_ref(),
            defaults::WRITE_TIMEOUT,
        ),
        idle: errs.duration(
            &format!("{path}.idle"),
            raw.idle.as_ref(),
            defaults::IDLE_TIMEOUT,
        ),
    }
}

/// A DNS name: dot-separated labels of letters, digits and `-`, optionally ending in `.`.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
        })
}
