//! `upstreams:`: each pool's name, selection, retries, health check and timeouts
//! (its discovery is checked in [`super::discovery`], its TLS in [`super::upstream_tls`]).

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::balance;
use super::discovery::discovery;
use super::upstream_tls::upstream_tls;
use super::Errors;
use crate::config::raw::{RawHealthCheck, RawTimeouts, RawUpstream};
use crate::config::{defaults, HealthCheckSpec, Timeouts, UpstreamSpec};

pub(super) fn upstreams(
    errs: &mut Errors,
    raw: &BTreeMap<String, RawUpstream>,
) -> BTreeMap<String, UpstreamSpec> {
    if raw.is_empty() {
        errs.push("upstreams", "at least one upstream is required");
    }
    let mut upstreams = BTreeMap::new();
    for (name, up) in raw {
        let path = format!("upstreams.{name}");
        // The name goes into field paths, logs and metric labels, so keep it plain.
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
        upstreams.insert(name.clone(), upstream(errs, &path, up));
    }
    upstreams
}

fn upstream(errs: &mut Errors, path: &str, raw: &RawUpstream) -> UpstreamSpec {
    let selection = balance::selection(
        errs,
        path,
        raw.selection.as_deref(),
        raw.hash_key.as_deref(),
    );
    let discovery = discovery(errs, &format!("{path}.discovery"), &raw.discovery);
    UpstreamSpec {
        selection,
        outlier: balance::outlier(errs, &format!("{path}.outlier"), raw.outlier.as_ref()),
        slow_start: balance::slow_start(
            errs,
            &format!("{path}.slow_start"),
            raw.slow_start.as_ref(),
        ),
        sticky: balance::sticky(errs, &format!("{path}.sticky"), raw.sticky.as_ref()),
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
        queue_timeout: errs.duration_up_to(
            &format!("{path}.queue_timeout"),
            raw.queue_timeout.as_ref(),
            defaults::QUEUE_TIMEOUT,
            defaults::QUEUE_TIMEOUT_MAX,
        ),
        queue_max: errs.count(
            &format!("{path}.queue_max"),
            raw.queue_max,
            defaults::QUEUE_MAX,
            1,
            Some(1_000_000),
        ),
        timeouts: timeouts(errs, &format!("{path}.timeouts"), &raw.timeouts),
        host: host(errs, &format!("{path}.host"), raw.host.as_deref()),
        tls: raw
            .tls
            .as_ref()
            .map(|tls| upstream_tls(errs, &format!("{path}.tls"), tls, &discovery)),
        discovery,
    }
}

fn health_check(errs: &mut Errors, path: &str, raw: &RawHealthCheck) -> HealthCheckSpec {
    let hc_path = raw
        .path
        .clone()
        .unwrap_or_else(|| defaults::HC_PATH.to_string());
    // The probe sends this path as its request target.
    if !hc_path.starts_with('/') || hc_path.parse::<http::Uri>().is_err() {
        errs.push(
            format!("{path}.path"),
            format!("{hc_path:?} is not an absolute path"),
        );
    }
    HealthCheckSpec {
        path: hc_path,
        interval: errs.duration_within(
            &format!("{path}.interval"),
            raw.interval.as_ref(),
            defaults::HC_INTERVAL,
            (defaults::INTERVAL_MIN, defaults::INTERVAL_MAX),
        ),
        timeout: errs.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_ref(),
            defaults::HC_TIMEOUT,
            defaults::UPSTREAM_TIMEOUT_MAX,
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
        host: host(errs, &format!("{path}.host"), raw.host.as_deref()),
    }
}

/// A `Host` header the lb sends (upstream requests, health checks): `host` or `host:port`,
/// an authority without userinfo. Anything else would fail every request, or panic
/// pingora's health check, which builds its request with `unwrap`.
fn host(errs: &mut Errors, path: &str, value: Option<&str>) -> Option<String> {
    let value = value?;
    let authority = value.parse::<http::uri::Authority>().ok();
    let valid = authority.is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'))
        && http::HeaderValue::from_str(value).is_ok();
    if !valid {
        errs.push(
            path,
            format!("{value:?} is not a host or host:port (it is sent as the Host header)"),
        );
    }
    Some(value.to_string())
}

fn timeouts(errs: &mut Errors, path: &str, raw: &RawTimeouts) -> Timeouts {
    let mut timeout = |key: &str, value: &Option<Value>, default| {
        errs.duration(
            &format!("{path}.{key}"),
            value.as_ref(),
            default,
            defaults::UPSTREAM_TIMEOUT_MAX,
        )
    };
    let connect = timeout("connect", &raw.connect, defaults::CONNECT_TIMEOUT);
    let read = timeout("read", &raw.read, defaults::READ_TIMEOUT);
    let write = timeout("write", &raw.write, defaults::WRITE_TIMEOUT);
    let idle = timeout("idle", &raw.idle, defaults::IDLE_TIMEOUT);
    // Off unless set: a per-try limit turns a slow answer into a retry elsewhere, which
    // only the operator can say is right for the upstream's slowest endpoint.
    let per_try = raw.per_try.as_ref().map(|v| {
        let key = format!("{path}.per_try");
        let per_try = errs.duration(&key, Some(v), read, defaults::UPSTREAM_TIMEOUT_MAX);
        // Longer than `read` would never fire: `read` ends the try first.
        if per_try > read {
            errs.push(
                &key,
                format!(
                    "{} is longer than timeouts.read; it would never take effect",
                    crate::config::duration::show(v)
                ),
            );
        }
        per_try
    });
    Timeouts {
        connect,
        read,
        write,
        idle,
        per_try,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::validate::{collect, yaml};
    use crate::config::{DiscoverySpec, OutlierSpec, Selection, StaticBackend};

    /// The upstreams of a config file, from the text under `upstreams:`.
    fn check(text: &str) -> (BTreeMap<String, UpstreamSpec>, Vec<String>) {
        collect(|errs| upstreams(errs, &yaml(text)))
    }

    /// One upstream `api` whose discovery is fine, with `extra` keys added.
    fn api(extra: &str) -> (UpstreamSpec, Vec<String>) {
        let (mut specs, errs) = check(&format!(
            "api: {{ discovery: {{ static: [\"127.0.0.1:1\"] }}, {extra} }}"
        ));
        (specs.remove("api").unwrap(), errs)
    }

    fn errors(extra: &str) -> Vec<String> {
        api(extra).1
    }

    #[test]
    fn host_values_are_a_host_or_host_port() {
        for ok in ["api.internal", "api.internal:8080", "[::1]:80", "10.0.0.1"] {
            let (spec, errs) = api(&format!(
                "host: \"{ok}\", health_check: {{ host: \"{ok}\" }}"
            ));
            assert_eq!(errs, Vec::<String>::new(), "{ok}");
            assert_eq!(spec.host.as_deref(), Some(ok));
        }
        for bad in ["\\0", "a\\nb", "a b", "user@host", "", ":80", "\\u00e9"] {
            assert_eq!(
                errors(&format!(
                    "host: \"{bad}\", health_check: {{ host: \"{bad}\" }}"
                ))
                .len(),
                2,
                "{bad}"
            );
        }
        assert_eq!(
            errors("host: \"a\\r\\nX-Injected: 1\""),
            vec!["upstreams.api.host: \"a\\r\\nX-Injected: 1\" is not a host or host:port (it is sent as the Host header)"]
        );
    }

    #[test]
    fn an_upstream_with_only_discovery_gets_every_default() {
        assert_eq!(
            api(""),
            (
                UpstreamSpec {
                    discovery: DiscoverySpec::Static {
                        backends: vec![StaticBackend {
                            addr: "127.0.0.1:1".parse().unwrap(),
                            weight: 1
                        }]
                    },
                    selection: Selection::RoundRobin,
                    outlier: Some(OutlierSpec {
                        failures: crate::config::OutlierFailures::Gateway,
                        consecutive_failures: 5,
                        window: Duration::from_secs(10),
                        base_ejection: Duration::from_secs(30),
                        max_ejection: Duration::from_secs(300),
                        max_ejected_percent: 50,
                    }),
                    slow_start: Duration::ZERO,
                    sticky: None,
                    health_check: None,
                    retries: 2,
                    queue_timeout: Duration::from_secs(10),
                    queue_max: 1024,
                    timeouts: Timeouts {
                        connect: Duration::from_secs(1),
                        read: Duration::from_secs(30),
                        write: Duration::from_secs(30),
                        idle: Duration::from_secs(15),
                        per_try: None,
                    },
                    host: None,
                    tls: None,
                },
                vec![]
            )
        );
    }

    #[test]
    fn at_least_one_upstream_is_required() {
        assert_eq!(
            check("{}").1,
            vec!["upstreams: at least one upstream is required"]
        );
    }

    #[test]
    fn names_use_letters_digits_and_dash_underscore_dot() {
        let ok = "{ discovery: { static: [\"127.0.0.1:1\"] } }";
        assert_eq!(check(&format!("a-Z_0.9: {ok}")).1, Vec::<String>::new());
        assert_eq!(
            check(&format!("\"api v2\": {ok}\n\"\": {ok}")).1,
            vec![
                "upstreams.: \"\" is not a valid upstream name (letters, digits, `-_.`)",
                "upstreams.api v2: \"api v2\" is not a valid upstream name (letters, digits, `-_.`)",
            ]
        );
    }

    #[test]
    fn a_bad_name_comes_before_the_errors_inside_that_upstream() {
        assert_eq!(
            check("\"a/b\": { discovery: { static: [] } }").1,
            vec![
                "upstreams.a/b: \"a/b\" is not a valid upstream name (letters, digits, `-_.`)",
                "upstreams.a/b.discovery.static: empty pool: list at least one IP:port",
            ]
        );
    }

    #[test]
    fn selection_defaults_to_round_robin_and_names_the_supported_ones() {
        assert_eq!(api("selection: round_robin"), (api("").0, vec![]));
        assert_eq!(api("selection: random").0.selection, Selection::Random);
        assert_eq!(
            errors("selection: least_conn"),
            vec!["upstreams.api.selection: \"least_conn\" is not supported (supported: round_robin, random, least_requests, consistent_hash)"]
        );
    }

    #[test]
    fn retries_are_between_0_and_8() {
        assert_eq!(api("retries: 0").0.retries, 0);
        assert_eq!(api("retries: 8").0.retries, 8);
        assert_eq!(
            errors("retries: -1"),
            vec!["upstreams.api.retries: -1 must be at least 0"]
        );
        assert_eq!(
            errors("retries: 9"),
            vec!["upstreams.api.retries: 9 must be at most 8"]
        );
    }

    #[test]
    fn host_is_taken_as_written() {
        assert_eq!(
            api("host: api.internal").0.host.as_deref(),
            Some("api.internal")
        );
    }

    #[test]
    fn timeouts_are_positive_durations_each_named_by_field() {
        assert_eq!(
            api("timeouts: { connect: 2s, read: 3s, write: 4s, idle: 5s }")
                .0
                .timeouts,
            Timeouts {
                connect: Duration::from_secs(2),
                read: Duration::from_secs(3),
                write: Duration::from_secs(4),
                idle: Duration::from_secs(5),
                per_try: None,
            }
        );
        assert_eq!(
            errors("timeouts: { connect: 0s, read: 1, write: x, idle: 0ms }"),
            vec![
                "upstreams.api.timeouts.connect: \"0s\" must be greater than zero",
                "upstreams.api.timeouts.read: 1 is not a duration (write a unit, e.g. \"1s\" or \"1ms\")",
                "upstreams.api.timeouts.write: \"x\" is not a duration",
                "upstreams.api.timeouts.idle: \"0ms\" must be greater than zero",
            ]
        );
    }

    #[test]
    fn timeouts_are_at_most_an_hour() {
        assert_eq!(
            api("timeouts: { connect: 1h, read: 1h, write: 1h, idle: 1h, per_try: 1h }")
                .0
                .timeouts,
            Timeouts {
                connect: Duration::from_secs(3600),
                read: Duration::from_secs(3600),
                write: Duration::from_secs(3600),
                idle: Duration::from_secs(3600),
                per_try: Some(Duration::from_secs(3600)),
            }
        );
        // Each parses, but `Instant::now() + it` overflowed on every request.
        let huge = "10000000000000000000s";
        assert_eq!(
            errors(&format!(
                "timeouts: {{ connect: {huge}, read: {huge}, write: 61m, idle: {huge}, per_try: {huge} }}"
            )),
            vec![
                format!("upstreams.api.timeouts.connect: \"{huge}\" is longer than the maximum 3600s"),
                format!("upstreams.api.timeouts.read: \"{huge}\" is longer than the maximum 3600s"),
                "upstreams.api.timeouts.write: \"61m\" is longer than the maximum 3600s".to_string(),
                format!("upstreams.api.timeouts.idle: \"{huge}\" is longer than the maximum 3600s"),
                format!("upstreams.api.timeouts.per_try: \"{huge}\" is longer than the maximum 3600s"),
            ]
        );
    }

    #[test]
    fn per_try_is_off_by_default_and_at_most_read() {
        assert_eq!(api("retries: 1").0.timeouts.per_try, None);
        assert_eq!(
            api("timeouts: { per_try: 250ms }").0.timeouts.per_try,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            errors("timeouts: { read: 2s, per_try: 3s }"),
            vec!["upstreams.api.timeouts.per_try: \"3s\" is longer than timeouts.read; it would never take effect"]
        );
        assert_eq!(
            errors("timeouts: { per_try: 0s }"),
            vec!["upstreams.api.timeouts.per_try: \"0s\" must be greater than zero"]
        );
    }

    #[test]
    fn an_empty_health_check_gets_every_default() {
        assert_eq!(
            api("health_check: {}").0.health_check,
            Some(HealthCheckSpec {
                path: "/".to_string(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                healthy_after: 1,
                unhealthy_after: 2,
                host: None,
            })
        );
    }

    #[test]
    fn a_health_check_is_taken_as_written() {
        let text = "health_check: { path: \"/ready?deep=1\", interval: 2s, timeout: 1s, \
                    healthy_after: 100, unhealthy_after: 1, host: probe.local }";
        assert_eq!(
            api(text).0.health_check,
            Some(HealthCheckSpec {
                path: "/ready?deep=1".to_string(),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                healthy_after: 100,
                unhealthy_after: 1,
                host: Some("probe.local".to_string()),
            })
        );
    }

    #[test]
    fn the_health_check_path_is_an_absolute_path() {
        assert_eq!(
            errors("health_check: { path: ready }"),
            vec!["upstreams.api.health_check.path: \"ready\" is not an absolute path"]
        );
        // Starts with `/` but is no valid request target.
        assert_eq!(
            errors("health_check: { path: \"/a b\" }"),
            vec!["upstreams.api.health_check.path: \"/a b\" is not an absolute path"]
        );
    }

    #[test]
    fn health_check_interval_and_timeout_are_positive_durations() {
        assert_eq!(
            errors("health_check: { interval: 0s, timeout: 5 }"),
            vec![
                "upstreams.api.health_check.interval: \"0s\" must be greater than zero",
                "upstreams.api.health_check.timeout: 5 is not a duration (write a unit, e.g. \"5s\" or \"5ms\")",
            ]
        );
    }

    #[test]
    fn health_check_interval_is_100ms_to_1h_and_timeout_at_most_1h() {
        let (spec, errs) = api("health_check: { interval: 100ms, timeout: 1h }");
        assert_eq!(errs, Vec::<String>::new());
        let hc = spec.health_check.expect("check");
        assert_eq!(
            (hc.interval, hc.timeout),
            (Duration::from_millis(100), Duration::from_secs(3600))
        );
        assert_eq!(
            errors("health_check: { interval: 1ms, timeout: 61m }"),
            vec![
                "upstreams.api.health_check.interval: \"1ms\" is shorter than the minimum 100ms",
                "upstreams.api.health_check.timeout: \"61m\" is longer than the maximum 3600s",
            ]
        );
        assert_eq!(
            errors("health_check: { interval: 2h }"),
            vec!["upstreams.api.health_check.interval: \"2h\" is longer than the maximum 3600s"]
        );
    }

    #[test]
    fn health_check_thresholds_are_between_1_and_100() {
        assert_eq!(
            errors("health_check: { healthy_after: 0, unhealthy_after: 101 }"),
            vec![
                "upstreams.api.health_check.healthy_after: 0 must be at least 1",
                "upstreams.api.health_check.unhealthy_after: 101 must be at most 100",
            ]
        );
        assert_eq!(
            errors("health_check: { healthy_after: 101, unhealthy_after: 0 }"),
            vec![
                "upstreams.api.health_check.healthy_after: 101 must be at most 100",
                "upstreams.api.health_check.unhealthy_after: 0 must be at least 1",
            ]
        );
    }
}
