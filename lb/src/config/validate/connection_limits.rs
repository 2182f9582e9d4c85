//! `server.connection_limits`: concurrent client connections, in all and per client IP.

use serde_yaml::Value;

use super::Errors;
use crate::config::{duration, ConnectionLimits};

const PATH: &str = "server.connection_limits";

/// Absent: the defaults. `off`: no limit (the operator's explicit choice, e.g. behind
/// another proxy that limits connections already).
pub(super) fn connection_limits(
    errs: &mut Errors,
    raw: Option<&Value>,
) -> Option<ConnectionLimits> {
    let defaults = ConnectionLimits::default();
    let map = match raw {
        None => return Some(defaults),
        Some(Value::String(s)) if s == "off" => return None,
        Some(Value::Mapping(map)) => map,
        Some(other) => {
            errs.push(
                PATH,
                format!(
                    "{} is neither `off` nor a mapping such as `{{ total: 10000, per_ip: 1000 }}`",
                    duration::show(other)
                ),
            );
            return Some(defaults);
        }
    };
    let (mut total, mut per_ip) = (None, None);
    for (key, value) in map {
        let name = key.as_str().unwrap_or_default();
        let slot = match name {
            "total" => &mut total,
            "per_ip" => &mut per_ip,
            _ => {
                errs.push(
                    PATH,
                    format!(
                        "unknown field {}, expected `total` or `per_ip`",
                        duration::show(key)
                    ),
                );
                continue;
            }
        };
        match value.as_i64() {
            Some(n) => *slot = Some(n),
            None => errs.push(
                format!("{PATH}.{name}"),
                format!("{} is not a whole number", duration::show(value)),
            ),
        }
    }
    Some(ConnectionLimits {
        total: errs.count(&format!("{PATH}.total"), total, defaults.total, 1, None),
        per_ip: errs.count(&format!("{PATH}.per_ip"), per_ip, defaults.per_ip, 1, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{collect, yaml};

    fn check(text: Option<&str>) -> (Option<ConnectionLimits>, Vec<String>) {
        let raw: Option<Value> = text.map(yaml);
        collect(|errs| connection_limits(errs, raw.as_ref()))
    }

    #[test]
    fn absent_is_the_defaults_and_off_is_none() {
        assert_eq!(
            check(None),
            (
                Some(ConnectionLimits {
                    total: 10_000,
                    per_ip: 1_000
                }),
                vec![]
            )
        );
        assert_eq!(check(Some("off")), (None, vec![]));
    }

    #[test]
    fn each_key_is_optional_and_at_least_1() {
        assert_eq!(
            check(Some("{ per_ip: 4 }")).0,
            Some(ConnectionLimits {
                total: 10_000,
                per_ip: 4
            })
        );
        assert_eq!(
            check(Some("{ total: 0, per_ip: -1 }")).1,
            vec![
                "server.connection_limits.total: 0 must be at least 1",
                "server.connection_limits.per_ip: -1 must be at least 1",
            ]
        );
    }

    #[test]
    fn other_values_and_unknown_keys_are_errors() {
        assert_eq!(
            check(Some("false")).1,
            vec!["server.connection_limits: false is neither `off` nor a mapping such as `{ total: 10000, per_ip: 1000 }`"]
        );
        assert_eq!(
            check(Some("{ per_host: 3, per_ip: lots }")).1,
            vec![
                "server.connection_limits: unknown field \"per_host\", expected `total` or `per_ip`",
                "server.connection_limits.per_ip: \"lots\" is not a whole number",
            ]
        );
    }
}
