//! The error collector and the value checks every section shares (durations, counts,
//! addresses), so a rule such as "a duration must be greater than zero" is worded once.

use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::Value;

use crate::config::{duration, ConfigError};

/// Collects errors while building values; every check returns a placeholder (the default, or
/// `None`) on error so validation can go on and report the rest of the file.
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    /// A duration greater than zero and at most `max`; `default` when the key is absent.
    /// Every duration key has a maximum: the request path adds them to `Instant::now()`,
    /// and a value such as `10000000000000000000s` parses but fits no deadline.
    pub(super) fn duration(
        &mut self,
        path: &str,
        value: Option<&Value>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        self.duration_within(path, value, default, (Duration::ZERO, max))
    }

    /// A duration greater than zero, from `min` to `max`; `default` when the key is absent.
    pub(super) fn duration_within(
        &mut self,
        path: &str,
        value: Option<&Value>,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Duration {
        let Some(value) = value else { return default };
        let problem = match duration::parse(value) {
            Ok(d) if d.is_zero() => "must be greater than zero".to_string(),
            Ok(d) if d < min => format!("is shorter than the minimum {min:?}"),
            Ok(d) if d > max => format!("is longer than the maximum {max:?}"),
            Ok(d) => return d,
            Err(msg) => {
                self.push(path, msg);
                return default;
            }
        };
        self.push(path, format!("{} {problem}", duration::show(value)));
        default
    }

    /// A duration from zero up to `max`.
    pub(super) fn duration_up_to(
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

    /// An `IP:port`; names are refused here because only `dns:` discovery re-resolves them.
    pub(super) fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
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
    pub(super) fn count(
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
    /// A size in bytes above zero: a whole number, or one followed by `KiB`, `MiB` or `GiB`.
    pub(super) fn byte_size(&mut self, path: &str, value: &Value, default: u64) -> u64 {
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => {
                let s = s.trim();
                let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
                    Some(i) => s.split_at(i),
                    None => (s, ""),
                };
                let shift = match unit.trim() {
                    "" => Some(0),
                    "KiB" => Some(10),
                    "MiB" => Some(20),
                    "GiB" => Some(30),
                    _ => None,
                };
                digits
                    .parse::<u64>()
                    .ok()
                    .zip(shift)
                    .and_then(|(n, shift)| n.checked_mul(1 << shift))
            }
            _ => None,
        };
        match parsed {
            Some(n) if n > 0 => n,
            _ => {
                self.push(
                    path,
                    format!(
                        "{} is not a size (bytes, or a number with KiB, MiB or GiB, above 0)",
                        duration::show(value)
                    ),
                );
                default
            }
        }
    }

    /// A byte size within `min..=max`.
    pub(super) fn byte_size_within(
        &mut self,
        path: &str,
        value: Option<&Value>,
        default: u64,
        (min, max): (u64, u64),
    ) -> u64 {
        let Some(value) = value else { return default };
        let n = self.byte_size(path, value, default);
        if n < min || n > max {
            self.push(
                path,
                format!(
                    "{} must be between {min} and {max} bytes",
                    duration::show(value)
                ),
            );
            return default;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::collect;

    const DEFAULT: Duration = Duration::from_secs(7);
    const MAX: Duration = Duration::from_secs(10);
    const HOUR: Duration = Duration::from_secs(3600);

    fn text(s: &str) -> Value {
        Value::String(s.into())
    }

    #[test]
    fn duration_absent_is_the_default_and_a_valid_one_is_kept() {
        assert_eq!(
            collect(|e| e.duration("p", None, DEFAULT, HOUR)),
            (DEFAULT, vec![])
        );
        assert_eq!(
            collect(|e| e.duration("p", Some(&text("1m30s")), DEFAULT, HOUR)),
            (Duration::from_secs(90), vec![])
        );
    }

    #[test]
    fn duration_zero_is_refused() {
        assert_eq!(
            collect(|e| e.duration("p", Some(&text("0s")), DEFAULT, HOUR)),
            (
                DEFAULT,
                vec!["p: \"0s\" must be greater than zero".to_string()]
            )
        );
    }

    #[test]
    fn duration_that_does_not_parse_reports_the_parse_error() {
        assert_eq!(
            collect(|e| e.duration("p", Some(&text("soon")), DEFAULT, HOUR)),
            (DEFAULT, vec!["p: \"soon\" is not a duration".to_string()])
        );
        assert_eq!(
            collect(|e| e.duration("p", Some(&Value::Number(2.into())), DEFAULT, HOUR)),
            (
                DEFAULT,
                vec!["p: 2 is not a duration (write a unit, e.g. \"2s\" or \"2ms\")".to_string()]
            )
        );
    }

    #[test]
    fn duration_longer_than_its_maximum_is_refused() {
        assert_eq!(
            collect(|e| e.duration("p", Some(&text("1h")), DEFAULT, HOUR)),
            (HOUR, vec![])
        );
        // Parses, but `Instant::now() + it` overflows: every request would panic.
        assert_eq!(
            collect(|e| e.duration("p", Some(&text("10000000000000000000s")), DEFAULT, HOUR)),
            (
                DEFAULT,
                vec!["p: \"10000000000000000000s\" is longer than the maximum 3600s".to_string()]
            )
        );
    }

    #[test]
    fn duration_within_keeps_both_bounds() {
        let bounds = (Duration::from_millis(100), MAX);
        assert_eq!(
            collect(|e| e.duration_within("p", Some(&text("100ms")), DEFAULT, bounds)),
            (Duration::from_millis(100), vec![])
        );
        assert_eq!(
            collect(|e| e.duration_within("p", Some(&text("1ms")), DEFAULT, bounds)),
            (
                DEFAULT,
                vec!["p: \"1ms\" is shorter than the minimum 100ms".to_string()]
            )
        );
        assert_eq!(
            collect(|e| e.duration_within("p", Some(&text("0s")), DEFAULT, bounds)),
            (
                DEFAULT,
                vec!["p: \"0s\" must be greater than zero".to_string()]
            )
        );
        assert_eq!(
            collect(|e| e.duration_within("p", Some(&text("11s")), DEFAULT, bounds)),
            (
                DEFAULT,
                vec!["p: \"11s\" is longer than the maximum 10s".to_string()]
            )
        );
    }

    #[test]
    fn duration_up_to_allows_zero_and_the_maximum_itself() {
        assert_eq!(
            collect(|e| e.duration_up_to("p", Some(&text("0s")), DEFAULT, MAX)),
            (Duration::ZERO, vec![])
        );
        assert_eq!(
            collect(|e| e.duration_up_to("p", Some(&text("10s")), DEFAULT, MAX)),
            (MAX, vec![])
        );
        assert_eq!(
            collect(|e| e.duration_up_to("p", None, DEFAULT, MAX)),
            (DEFAULT, vec![])
        );
    }

    #[test]
    fn duration_up_to_refuses_more_than_the_maximum() {
        assert_eq!(
            collect(|e| e.duration_up_to("p", Some(&text("10001ms")), DEFAULT, MAX)),
            (
                DEFAULT,
                vec!["p: \"10001ms\" is longer than the maximum 10s".to_string()]
            )
        );
    }

    #[test]
    fn duration_up_to_reports_the_parse_error() {
        assert_eq!(
            collect(|e| e.duration_up_to("p", Some(&Value::Bool(true)), DEFAULT, MAX)),
            (DEFAULT, vec!["p: true is not a duration".to_string()])
        );
    }

    #[test]
    fn socket_addr_takes_ipv4_and_ipv6_and_refuses_names() {
        assert_eq!(
            collect(|e| e.socket_addr("p", "10.0.0.1:80")),
            (Some("10.0.0.1:80".parse().unwrap()), vec![])
        );
        assert_eq!(
            collect(|e| e.socket_addr("p", "[::1]:80")),
            (Some("[::1]:80".parse().unwrap()), vec![])
        );
        assert_eq!(
            collect(|e| e.socket_addr("p", "backend:80")),
            (
                None,
                vec![
                    "p: \"backend:80\" is not an IP:port address (names go through `dns:`)"
                        .to_string()
                ]
            )
        );
    }

    #[test]
    fn count_absent_is_the_default_and_bounds_are_inclusive() {
        assert_eq!(collect(|e| e.count("p", None, 5, 1, Some(9))), (5, vec![]));
        assert_eq!(
            collect(|e| e.count("p", Some(1), 5, 1, Some(9))),
            (1, vec![])
        );
        assert_eq!(
            collect(|e| e.count("p", Some(9), 5, 1, Some(9))),
            (9, vec![])
        );
        assert_eq!(
            collect(|e| e.count("p", Some(i64::MAX), 5, 1, None)),
            (i64::MAX as usize, vec![])
        );
    }

    #[test]
    fn count_below_the_minimum_is_refused() {
        assert_eq!(
            collect(|e| e.count("p", Some(-1), 5, 0, None)),
            (5, vec!["p: -1 must be at least 0".to_string()])
        );
    }

    #[test]
    fn count_above_the_maximum_is_refused() {
        assert_eq!(
            collect(|e| e.count("p", Some(10), 5, 1, Some(9))),
            (5, vec!["p: 10 must be at most 9".to_string()])
        );
    }
}
