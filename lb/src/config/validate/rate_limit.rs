//! `routes[].rate_limit`: how many requests one client may send to a route per window.

use super::Errors;
use crate::config::raw::RawRateLimit;
use crate::config::{defaults, duration, RateLimitSpec};

/// Most requests per window: far above any useful per-client limit, and small enough that
/// the per-client `u32` counts and the response headers never get near an overflow.
const MAX_REQUESTS: i64 = 1_000_000_000;

/// `None` when the value is unusable (the error is reported).
pub(super) fn rate_limit(
    errs: &mut Errors,
    path: &str,
    raw: &RawRateLimit,
) -> Option<RateLimitSpec> {
    let requests = match raw.requests {
        None => {
            errs.push(
                format!("{path}.requests"),
                "missing (e.g. `requests: 100` with `per: 1s`)",
            );
            None
        }
        Some(n) if !(1..=MAX_REQUESTS).contains(&n) => {
            errs.push(
                format!("{path}.requests"),
                format!("{n} must be from 1 to {MAX_REQUESTS}"),
            );
            None
        }
        Some(n) => u32::try_from(n).ok(),
    };
    let per = match &raw.per {
        None => {
            errs.push(
                format!("{path}.per"),
                "missing (e.g. `per: 1s` or `per: 1m`)",
            );
            None
        }
        Some(value) => match duration::parse(value) {
            // Whole seconds: the window is announced in whole seconds (`RateLimit-Policy`,
            // `RateLimit-Reset`).
            Ok(d)
                if d.subsec_nanos() == 0
                    && d.as_secs() >= 1
                    && d <= defaults::RATE_LIMIT_PER_MAX =>
            {
                Some(d)
            }
            Ok(_) => {
                errs.push(
                    format!("{path}.per"),
                    format!(
                        "{} must be a whole number of seconds from 1s to 1h",
                        duration::show(value)
                    ),
                );
                None
            }
            Err(msg) => {
                errs.push(format!("{path}.per"), msg);
                None
            }
        },
    };
    Some(RateLimitSpec {
        requests: requests?,
        per: per?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::validate::{collect, yaml};

    fn check(text: &str) -> (Option<RateLimitSpec>, Vec<String>) {
        let raw: RawRateLimit = yaml(text);
        collect(|errs| rate_limit(errs, "routes[0].rate_limit", &raw))
    }

    #[test]
    fn requests_per_whole_seconds() {
        assert_eq!(
            check("{ requests: 100, per: 1s }"),
            (
                Some(RateLimitSpec {
                    requests: 100,
                    per: Duration::from_secs(1)
                }),
                vec![]
            )
        );
        assert_eq!(
            check("{ requests: 1, per: 1h }").0.map(|s| s.per),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn both_keys_are_required() {
        assert_eq!(
            check("{}").1,
            vec![
                "routes[0].rate_limit.requests: missing (e.g. `requests: 100` with `per: 1s`)",
                "routes[0].rate_limit.per: missing (e.g. `per: 1s` or `per: 1m`)",
            ]
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert_eq!(
            check("{ requests: 0, per: 500ms }"),
            (
                None,
                vec![
                    "routes[0].rate_limit.requests: 0 must be from 1 to 1000000000".to_string(),
                    "routes[0].rate_limit.per: \"500ms\" must be a whole number of seconds from 1s to 1h".to_string(),
                ]
            )
        );
        assert_eq!(
            check("{ requests: 5, per: 1500ms }").1,
            vec!["routes[0].rate_limit.per: \"1500ms\" must be a whole number of seconds from 1s to 1h"]
        );
        assert_eq!(
            check("{ requests: 5, per: 2h }").1,
            vec![
                "routes[0].rate_limit.per: \"2h\" must be a whole number of seconds from 1s to 1h"
            ]
        );
        assert_eq!(
            check("{ requests: 5, per: 1 }").1,
            vec!["routes[0].rate_limit.per: 1 is not a duration (write a unit, e.g. \"1s\" or \"1ms\")"]
        );
    }
}
