//! `GET /status`: what the balancer thinks, as JSON, computed on request from the current
//! snapshot (nothing here runs on the request path).

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use crate::balance::BackendState;
use crate::config::{DiscoverySpec, HashKey, Selection};
use crate::pool::Pool;
use crate::state::LbState;

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn opt_time(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| time(t).into())
}

pub(crate) fn status(state: &LbState) -> Value {
    let snapshot = state.snapshot();
    let last_reload = state.last_reload().map(|r| {
        json!({
            "at": time(r.at),
            "trigger": r.trigger,
            "result": if r.applied { "applied" } else { "rejected" },
            "errors": r.errors,
            "changes": r.changes,
        })
    });
    let routes: Vec<Value> = snapshot
        .config
        .routes
        .iter()
        .map(|r| json!({ "prefix": r.prefix, "upstream": r.upstream, "strip_prefix": r.strip_prefix }))
        .collect();
    let upstreams: serde_json::Map<String, Value> = snapshot
        .pools
        .iter()
        .map(|(name, pool)| (name.clone(), pool_status(pool)))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": time(state.started_at),
        "uptime_seconds": (state.started.elapsed().as_millis() as f64 / 1000.0),
        "ready": state.is_ready(),
        "draining": state.is_draining(),
        "listening": {
            "proxy": state.listening().map(|a| a.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
            "tls": state.tls_listening().map(|a| a.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
            "admin": state.admin_addr().map(|a| a.to_string()),
        },
        "config": {
            "file": state.config_path.display().to_string(),
            "sha256": snapshot.hash,
            "loaded_at": time(snapshot.loaded_at),
            "metrics": snapshot.config.server.metrics,
            "access_log": snapshot.config.server.access_log,
        },
        "reloads": {
            "success": state.metrics.reload_count(true),
            "failure": state.metrics.reload_count(false),
            "last": last_reload,
        },
        "routes": routes,
        "upstreams": upstreams,
        "tls": tls_status(&snapshot, &state.tls.current()),
        "acme": crate::acme::status(),
    })
}

/// Each TLS listener as configured (address, protocols) with the certificates it serves
/// now: names, serial, validity (RFC 3339) and whether it is the default.
fn tls_status(
    snapshot: &crate::state::Snapshot,
    current: &[crate::config::certificates::ListenerCertificates],
) -> Value {
    let at = |secs: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        time(t)
    };
    snapshot
        .config
        .server
        .tls_listen
        .iter()
        .zip(current)
        .map(|(listener, certs)| {
            let certificates: Vec<Value> = certs
                .0
                .iter()
                .map(|c| {
                    json!({
                        "file": c.file,
                        "names": c.names,
                        "default": c.default,
                        "serial": c.serial,
                        "not_before": at(c.not_before),
                        "not_after": at(c.not_after),
                    })
                })
                .collect();
            json!({
                "address": listener.address.to_string(),
                "protocols": listener.protocols.names(),
                "certificates": certificates,
            })
        })
        .collect()
}

/// `round_robin`, `random`, `least_requests`, or `consistent_hash(<key>)`.
fn selection(s: &Selection) -> String {
    match s {
        Selection::RoundRobin => "round_robin".into(),
        Selection::Random => "random".into(),
        Selection::LeastRequests => "least_requests".into(),
        Selection::ConsistentHash(key) => format!(
            "consistent_hash({})",
            match key {
                HashKey::ClientIp => "client_ip".to_string(),
                HashKey::Path => "path".to_string(),
                HashKey::Header(h) => format!("header:{h}"),
                HashKey::Cookie(c) => format!("cookie:{c}"),
            }
        ),
    }
}

fn pool_status(pool: &Pool) -> Value {
    let source = match &pool.spec.discovery {
        DiscoverySpec::Dns {
            name,
            port,
            srv,
            interval,
            resolver,
        } => {
            let mut source = json!({
                "interval": humantime::format_duration(*interval).to_string(),
                "resolver": resolver.map(|r| r.to_string()),
            });
            if *srv {
                source["srv"] = name.clone().into();
            } else {
                source["dns"] = format!("{name}:{port}").into();
            }
            source
        }
        DiscoverySpec::Static { backends } => json!({
            "static": backends.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>(),
        }),
    };
    let d = pool.observer.discovery();
    let health_check = pool.spec.health_check.as_ref().map(|hc| {
        json!({
            "path": hc.path,
            "interval": humantime::format_duration(hc.interval).to_string(),
            "healthy_after": hc.healthy_after,
            "unhealthy_after": hc.unhealthy_after,
        })
    });
    // Upstream TLS, when on: the SNI and whether (and against which CA file) the
    // certificate is verified.
    let tls = pool.spec.tls.as_ref().map(|t| {
        json!({
            "sni": t.sni,
            "verify": t.verify,
            "ca_file": t.ca.as_ref().map(|c| c.file.as_str()),
        })
    });
    let backends: Vec<Value> = pool
        .member_details()
        .into_iter()
        .filter_map(|(backend, ready)| Some((*backend.addr.as_inet()?, ready, backend)))
        .map(|(addr, ready, backend)| {
            let check = pool.observer.check(&addr);
            let state = BackendState::of(&backend);
            let (ejections, until) = state.map_or((0, None), |s| s.outlier_record());
            let ejected = state.is_some_and(|s| s.is_ejected());
            json!({
                "address": addr.to_string(),
                "health": if ready { "healthy" } else { "unhealthy" },
                "weight": backend.weight,
                "in_flight": state.map(|s| s.in_flight()),
                "ejected": ejected,
                "ejections": ejections,
                "ejected_for_seconds": until
                    .filter(|_| ejected)
                    .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64()),
                "slow_start_share": state.map(|s| s.ramp_share()),
                "consecutive_ok": check.as_ref().map(|c| c.consecutive_ok),
                "consecutive_failed": check.as_ref().map(|c| c.consecutive_failed),
                "last_check_at": opt_time(check.as_ref().map(|c| c.at)),
                "last_check_ok": check.as_ref().map(|c| c.ok),
                "last_check_error": check.as_ref().and_then(|c| c.error.clone()),
                "requests": pool.observer.requests(&addr),
            })
        })
        .collect();
    json!({
        "ready": pool.is_ready(),
        "discovery": {
            "source": source,
            "last_at": opt_time(d.at),
            "last_result": d.result.map(|r| r.as_str()),
            "last_error": d.error,
        },
        "health_check": health_check,
        "selection": selection(&pool.spec.selection),
        "outlier": pool.spec.outlier.map(|o| json!({
            "failures": o.failures.as_str(),
            "consecutive_failures": o.consecutive_failures,
            "window": humantime::format_duration(o.window).to_string(),
            "base_ejection": humantime::format_duration(o.base_ejection).to_string(),
            "max_ejection": humantime::format_duration(o.max_ejection).to_string(),
            "max_ejected_percent": o.max_ejected_percent,
        })),
        "slow_start": humantime::format_duration(pool.spec.slow_start).to_string(),
        "sticky": pool.spec.sticky.as_ref().map(|s| s.cookie.as_str()),
        "tls": tls,
        "retries": pool.spec.retries,
        "backends": backends,
    })
}
