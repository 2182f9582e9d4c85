//! `upstreams:`: each pool's name, selection, retries, health check and timeouts
//! (its discovery is checked in [`super::discovery`]).

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::discovery::discovery;
use super::Errors;
use crate::config::raw::{RawHealthCheck, RawTimeouts, RawUpstream};
use crate::config::{defaults, HealthCheckSpec, Selection, Timeouts, UpstreamSpec};

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
    let mut timeout = |key: &str, value: &Option<Value>, default| {
        errs.duration(&format!("{path}.{key}"), value.as_ref(), default)
    };
    Timeouts {
        connect: timeout("connect", &raw.connect, defaults::CONNECT_TIMEOUT),
        read: timeout("read", &raw.read, defaults::READ_TIMEOUT),
        write: timeout("write", &raw.write, defaults::WRITE_TIMEOUT),
        idle: timeout("idle", &raw.idle, defaults::IDLE_TIMEOUT),
    }
}
