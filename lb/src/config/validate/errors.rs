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

    /// A duration greater than zero; `default` when the key is absent.
    pub(super) fn duration(
        &mut self,
        path: &str,
        value: Option<&Value>,
        default: Duration,
    ) -> Duration {
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
}
