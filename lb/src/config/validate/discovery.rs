//! `upstreams.<name>.discovery`: where a pool's backends come from, a DNS name re-resolved
//! every `interval` or a static list of `IP:port`s.

use std::net::SocketAddr;

use serde_yaml::Value;

use super::Errors;
use crate::config::raw::RawDiscovery;
use crate::config::{defaults, duration, DiscoverySpec, StaticBackend};

pub(super) fn discovery(errs: &mut Errors, path: &str, raw: &RawDiscovery) -> DiscoverySpec {
    // Checked whichever kind is set, so a bad value is reported even where it is unused.
    let interval = errs.duration_within(
        &format!("{path}.interval"),
        raw.interval.as_ref(),
        defaults::DNS_INTERVAL,
        (defaults::INTERVAL_MIN, defaults::INTERVAL_MAX),
    );
    if let Some(srv) = &raw.srv {
        if raw.dns.is_some() || raw.static_.is_some() {
            errs.push(path, "set exactly one of `dns`, `srv` or `static`");
        }
        let resolver = raw
            .resolver
            .as_ref()
            .and_then(|r| errs.socket_addr(&format!("{path}.resolver"), r));
        if !valid_dns_name(srv) {
            errs.push(
                format!("{path}.srv"),
                format!("{srv:?} is not a DNS name (e.g. \"_http._tcp.backend.svc\")"),
            );
        }
        return DiscoverySpec::Dns {
            name: srv.clone(),
            port: 0,
            srv: true,
            interval,
            resolver,
        };
    }
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
                srv: false,
                interval,
                resolver,
            }
        }
        (None, Some(list)) => {
            if raw.resolver.is_some() {
                errs.push(
                    format!("{path}.resolver"),
                    "only applies to `dns:` and `srv:` discovery",
                );
            }
            if list.is_empty() {
                errs.push(
                    format!("{path}.static"),
                    "empty pool: list at least one IP:port",
                );
            }
            let backends: Vec<StaticBackend> = list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| static_backend(errs, &format!("{path}.static[{i}]"), v))
                .collect();
            // One address is one backend: listed twice (with two weights, say) it would be
            // two backends to pingora sharing one in-flight count, outlier record and
            // readiness copy in the lb.
            for (i, b) in backends.iter().enumerate() {
                if backends[..i].iter().any(|earlier| earlier.addr == b.addr) {
                    errs.push(
                        format!("{path}.static"),
                        format!(
                            "{} is listed twice: list each address once, with its weight",
                            b.addr
                        ),
                    );
                }
            }
            DiscoverySpec::Static { backends }
        }
        (Some(_), Some(_)) => {
            errs.push(path, "set exactly one of `dns` or `static`, not both");
            DiscoverySpec::Static { backends: vec![] }
        }
        (None, None) => {
            errs.push(
                path,
                "set one of `dns: \"name:port\"`, `srv: \"_service._tcp.name\"` or `static: [\"IP:port\", ...]`",
            );
            DiscoverySpec::Static { backends: vec![] }
        }
    }
}

/// `"IP:port"` or `{ addr: "IP:port", weight: N }`. Entries stay YAML values in the raw
/// struct so that each bad one is reported here with its own index.
fn static_backend(errs: &mut Errors, path: &str, v: &Value) -> Option<StaticBackend> {
    match v {
        Value::String(s) => {
            backend_addr(errs, path, s).map(|addr| StaticBackend { addr, weight: 1 })
        }
        Value::Mapping(m) => {
            let mut addr = None;
            let mut weight = 1;
            for (k, val) in m {
                match (k.as_str(), val) {
                    (Some("addr"), Value::String(s)) => {
                        addr = backend_addr(errs, &format!("{path}.addr"), s)
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

/// A backend's `IP:port`. Port 0 is refused (as in `dns:`): nothing can be reached there,
/// so every try would fail.
fn backend_addr(errs: &mut Errors, path: &str, text: &str) -> Option<SocketAddr> {
    let addr = errs.socket_addr(path, text)?;
    if addr.port() == 0 {
        errs.push(
            path,
            format!("{text:?} has port 0 (a backend needs a port from 1 to 65535)"),
        );
        return None;
    }
    Some(addr)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::validate::{collect, yaml};

    fn check(text: &str) -> (DiscoverySpec, Vec<String>) {
        collect(|errs| discovery(errs, "d", &yaml(text)))
    }

    fn errors(text: &str) -> Vec<String> {
        check(text).1
    }

    fn backend(addr: &str, weight: usize) -> StaticBackend {
        StaticBackend {
            addr: addr.parse().unwrap(),
            weight,
        }
    }

    fn dns(name: &str, port: u16, interval: Duration) -> DiscoverySpec {
        DiscoverySpec::Dns {
            name: name.to_string(),
            port,
            srv: false,
            interval,
            resolver: None,
        }
    }

    #[test]
    fn an_address_listed_twice_is_refused() {
        assert_eq!(
            errors(
                "static: [\"10.0.0.1:80\", { addr: \"10.0.0.1:80\", weight: 2 }, \"10.0.0.2:80\"]"
            ),
            vec!["d.static: 10.0.0.1:80 is listed twice: list each address once, with its weight"]
        );
        assert_eq!(
            check("static: [\"10.0.0.1:80\", { addr: \"10.0.0.2:80\", weight: 2 }]"),
            (
                DiscoverySpec::Static {
                    backends: vec![backend("10.0.0.1:80", 1), backend("10.0.0.2:80", 2)]
                },
                vec![]
            )
        );
    }

    #[test]
    fn srv_takes_a_name_and_no_port() {
        assert_eq!(
            check("{ srv: _api._tcp.backend.svc, resolver: \"127.0.0.1:53\" }"),
            (
                DiscoverySpec::Dns {
                    name: "_api._tcp.backend.svc".to_string(),
                    port: 0,
                    srv: true,
                    interval: Duration::from_secs(2),
                    resolver: Some("127.0.0.1:53".parse().unwrap()),
                },
                vec![]
            )
        );
        assert_eq!(
            errors("{ srv: \"bad name\" }"),
            vec!["d.srv: \"bad name\" is not a DNS name (e.g. \"_http._tcp.backend.svc\")"]
        );
        assert_eq!(
            errors("{ srv: a.b, dns: \"a:1\" }"),
            vec!["d: set exactly one of `dns`, `srv` or `static`"]
        );
    }

    #[test]
    fn dns_takes_a_name_and_port_every_2s_by_default() {
        assert_eq!(
            check("dns: backend:5252"),
            (dns("backend", 5252, Duration::from_secs(2)), vec![])
        );
        assert_eq!(
            check("{ dns: \"api.svc.local.:80\", interval: 500ms, resolver: \"127.0.0.11:53\" }"),
            (
                DiscoverySpec::Dns {
                    name: "api.svc.local.".to_string(),
                    port: 80,
                    srv: false,
                    interval: Duration::from_millis(500),
                    resolver: Some("127.0.0.11:53".parse().unwrap()),
                },
                vec![]
            )
        );
    }

    #[test]
    fn dns_without_a_name_and_port_is_refused() {
        for dns in ["backend", ":80", "bad name:80", "-backend:80", "a..b:80"] {
            assert_eq!(
                errors(&format!("dns: \"{dns}\"")),
                vec![format!(
                    "d.dns: {dns:?} is not a name:port (e.g. \"backend:5252\")"
                )],
                "{dns}"
            );
        }
    }

    #[test]
    fn dns_port_is_1_to_65535() {
        assert_eq!(
            check("dns: backend:65535").0,
            dns("backend", 65535, Duration::from_secs(2))
        );
        for dns in ["backend:0", "backend:65536", "backend:http", "backend:"] {
            assert_eq!(
                errors(&format!("dns: \"{dns}\"")),
                vec![format!(
                    "d.dns: {dns:?} has no valid port (expected name:port)"
                )],
                "{dns}"
            );
        }
    }

    #[test]
    fn the_resolver_is_an_ip_port() {
        assert_eq!(
            errors("{ dns: backend:80, resolver: dns.local:53 }"),
            vec![
                "d.resolver: \"dns.local:53\" is not an IP:port address (names go through `dns:`)"
            ]
        );
    }

    #[test]
    fn the_resolver_only_applies_to_dns() {
        assert_eq!(
            errors("{ static: [\"127.0.0.1:1\"], resolver: \"127.0.0.11:53\" }"),
            vec!["d.resolver: only applies to `dns:` and `srv:` discovery"]
        );
    }

    #[test]
    fn the_interval_is_a_positive_duration_even_for_static() {
        assert_eq!(
            errors("{ dns: backend:80, interval: 0s }"),
            vec!["d.interval: \"0s\" must be greater than zero"]
        );
        assert_eq!(
            errors("{ static: [\"127.0.0.1:1\"], interval: 2 }"),
            vec!["d.interval: 2 is not a duration (write a unit, e.g. \"2s\" or \"2ms\")"]
        );
    }

    #[test]
    fn the_interval_is_100ms_to_1h() {
        assert_eq!(
            check("{ dns: backend:80, interval: 100ms }").0,
            dns("backend", 80, Duration::from_millis(100))
        );
        assert_eq!(
            check("{ dns: backend:80, interval: 1h }").0,
            dns("backend", 80, Duration::from_secs(3600))
        );
        assert_eq!(
            errors("{ srv: _a._tcp.b, interval: 1ms }"),
            vec!["d.interval: \"1ms\" is shorter than the minimum 100ms"]
        );
        assert_eq!(
            errors("{ dns: backend:80, interval: 10000000000000000000s }"),
            vec!["d.interval: \"10000000000000000000s\" is longer than the maximum 3600s"]
        );
    }

    #[test]
    fn a_static_backend_on_port_0_is_refused() {
        assert_eq!(
            errors("static: [\"127.0.0.1:0\", { addr: \"[::1]:0\" }]"),
            vec![
                "d.static[0]: \"127.0.0.1:0\" has port 0 (a backend needs a port from 1 to 65535)",
                "d.static[1].addr: \"[::1]:0\" has port 0 (a backend needs a port from 1 to 65535)",
            ]
        );
    }

    #[test]
    fn exactly_one_of_dns_and_static() {
        assert_eq!(
            check("{ dns: backend:80, static: [\"127.0.0.1:1\"] }"),
            (
                DiscoverySpec::Static { backends: vec![] },
                vec!["d: set exactly one of `dns` or `static`, not both".to_string()]
            )
        );
        assert_eq!(
            check("{}"),
            (
                DiscoverySpec::Static { backends: vec![] },
                vec![
                    "d: set one of `dns: \"name:port\"`, `srv: \"_service._tcp.name\"` or `static: [\"IP:port\", ...]`"
                        .to_string()
                ]
            )
        );
    }

    #[test]
    fn static_takes_addresses_and_weighted_addresses() {
        assert_eq!(
            check("static: [\"127.0.0.1:1\", { addr: \"[::1]:2\", weight: 1000 }, { weight: 1, addr: \"127.0.0.1:3\" }]"),
            (
                DiscoverySpec::Static {
                    backends: vec![
                        backend("127.0.0.1:1", 1),
                        backend("[::1]:2", 1000),
                        backend("127.0.0.1:3", 1),
                    ]
                },
                vec![]
            )
        );
    }

    #[test]
    fn a_static_pool_is_not_empty() {
        assert_eq!(
            errors("static: []"),
            vec!["d.static: empty pool: list at least one IP:port"]
        );
    }

    #[test]
    fn static_entries_are_ip_ports_each_named_by_index() {
        let (spec, errs) =
            check("static: [\"127.0.0.1:1\", \"backend:80\", 5, [], { addr: \"x\" }]");
        assert_eq!(
            errs,
            vec![
                "d.static[1]: \"backend:80\" is not an IP:port address (names go through `dns:`)",
                "d.static[2]: 5 is not an IP:port address",
                "d.static[3]: a list is not an IP:port address",
                "d.static[4].addr: \"x\" is not an IP:port address (names go through `dns:`)",
            ]
        );
        assert_eq!(
            spec,
            DiscoverySpec::Static {
                backends: vec![backend("127.0.0.1:1", 1)]
            }
        );
    }

    #[test]
    fn a_weight_is_a_whole_number_from_1_to_1000() {
        for weight in ["0", "1001", "-1", "1.5"] {
            assert_eq!(
                errors(&format!(
                    "static: [{{ addr: \"127.0.0.1:1\", weight: {weight} }}]"
                )),
                vec![format!(
                    "d.static[0].weight: {weight} must be between 1 and 1000"
                )],
                "{weight}"
            );
        }
    }

    #[test]
    fn addr_and_weight_of_the_wrong_type_are_refused() {
        assert_eq!(
            errors("static: [{ addr: 80, weight: \"2\" }]"),
            vec![
                "d.static[0].addr: 80 has the wrong type",
                "d.static[0].weight: \"2\" has the wrong type",
            ]
        );
    }

    #[test]
    fn a_weighted_entry_needs_addr_and_no_other_field() {
        assert_eq!(
            errors("static: [{ address: \"127.0.0.1:1\", 7: x }]"),
            vec![
                "d.static[0]: unknown field \"address\", expected `addr` or `weight`",
                "d.static[0]: unknown field 7, expected `addr` or `weight`",
                "d.static[0]: missing field `addr`",
            ]
        );
    }

    #[test]
    fn dns_names_follow_the_label_rules() {
        for ok in ["backend", "a.b.c", "svc_1", "host.", "x-y", &"a".repeat(63)] {
            assert!(valid_dns_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "-a",
            "a.-b",
            "a b",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_dns_name_is_at_most_253_characters_besides_the_trailing_dot() {
        let four_labels = vec!["a".repeat(63); 4].join("."); // 255 characters
        assert!(valid_dns_name(&four_labels[..253]));
        assert!(valid_dns_name(&format!("{}.", &four_labels[..253])));
        assert!(!valid_dns_name(&four_labels[..254]));
    }
}
