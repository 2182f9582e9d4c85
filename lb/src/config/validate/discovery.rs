//! `upstreams.<name>.discovery`: where a pool's backends come from, a DNS name re-resolved
//! every `interval` or a static list of `IP:port`s.

use serde_yaml::Value;

use super::Errors;
use crate::config::raw::RawDiscovery;
use crate::config::{defaults, duration, DiscoverySpec, StaticBackend};

pub(super) fn discovery(errs: &mut Errors, path: &str, raw: &RawDiscovery) -> DiscoverySpec {
    // Checked whichever kind is set, so a bad value is reported even where it is unused.
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

/// `"IP:port"` or `{ addr: "IP:port", weight: N }`. Entries stay YAML values in the raw
/// struct so that each bad one is reported here with its own index.
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
            // A present but invalid `addr` has been reported already.
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
