//! The config loader: whole files ([`config`]) and one value at one field ([`config_field`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_yaml::Value;

use crate::config::{defaults, Config, ConfigErrors, DiscoverySpec, LoadedConfig};
use crate::metrics::{Metrics, NO_ROUTE};
use crate::state::Snapshot;

/// A config file's bytes through what `lb -t` runs (but the certificate files, which
/// [`super::pem`] covers): errors, or a config that startup can build and serve. True
/// when the file is accepted.
pub fn config(data: &[u8]) -> bool {
    // `lb -t` reads the file as UTF-8 text; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match Config::from_yaml(text) {
        Ok(config) => accepted(&config),
        Err(errors) => {
            refused(&errors);
            false
        }
    }
}

/// The fields [`config_field`] places a value at: the field path its errors must name, and
/// the config around it (`$V` is the value).
pub const FIELDS: &[(&str, &str)] = &[
    ("server.listen[0]", "server: { listen: [$V] }"),
    ("server.admin", "server: { admin: $V }"),
    ("server.grace_period", "server: { grace_period: $V }"),
    ("server.shutdown_timeout", "server: { shutdown_timeout: $V }"),
    ("server.access_log_flush", "server: { access_log_flush: $V }"),
    ("server.threads", "server: { threads: $V }"),
    ("server.pid_file", "server: { pid_file: $V }"),
    ("server.hsts.max_age", "server: { hsts: { max_age: $V } }"),
    ("server.https_redirect.port", "server: { https_redirect: { port: $V } }"),
    ("server.https_redirect.exclude[0]", "server: { https_redirect: { exclude: [$V] } }"),
    ("server.tls_listen[0].address", "server: { tls_listen: [ { address: $V, certificates: [ { cert: c.pem, key: k.pem } ] } ] }"),
    ("server.tls_listen[0].protocols[0]", "server: { tls_listen: [ { address: \"127.0.0.1:8443\", protocols: [$V], certificates: [ { cert: c.pem, key: k.pem } ] } ] }"),
    ("server.tls_listen[0].certificates[0].names[0]", "server: { tls_listen: [ { address: \"127.0.0.1:8443\", certificates: [ { cert: c.pem, key: k.pem, names: [$V] } ] } ] }"),
    ("routes[0].prefix", "routes: [ { prefix: $V, upstream: web } ]"),
    ("routes[0].max_body_size", "routes: [ { prefix: /, upstream: web, max_body_size: $V } ]"),
    ("routes[0].hsts", "routes: [ { prefix: /, upstream: web, hsts: $V } ]"),
    ("upstreams.$V", "upstreams: { $V: { discovery: { static: [\"127.0.0.1:9000\"] } } }\nroutes: [ { prefix: /, upstream: $V } ]"),
    ("upstreams.web.discovery.static[0]", "upstreams: { web: { discovery: { static: [$V] } } }"),
    ("upstreams.web.discovery.dns", "upstreams: { web: { discovery: { dns: $V } } }"),
    ("upstreams.web.discovery.interval", "upstreams: { web: { discovery: { dns: \"backend:80\", interval: $V } } }"),
    ("upstreams.web.discovery.resolver", "upstreams: { web: { discovery: { dns: \"backend:80\", resolver: $V } } }"),
    ("upstreams.web.selection", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, selection: $V } }"),
    ("upstreams.web.retries", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, retries: $V } }"),
    ("upstreams.web.queue_timeout", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, queue_timeout: $V } }"),
    ("upstreams.web.timeouts.connect", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, timeouts: { connect: $V } } }"),
    ("upstreams.web.host", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, host: $V } }"),
    ("upstreams.web.health_check.path", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, health_check: { path: $V } } }"),
    ("upstreams.web.health_check.host", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, health_check: { host: $V } } }"),
    ("upstreams.web.tls.sni", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, tls: { verify: false, sni: $V } } }"),
    ("upstreams.web.timeouts.read", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, timeouts: { read: $V } } }"),
    ("upstreams.web.timeouts.idle", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, timeouts: { idle: $V } } }"),
    ("upstreams.web.health_check.interval", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, health_check: { interval: $V } } }"),
    ("upstreams.web.sticky.max_age", "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] }, sticky: { max_age: $V } } }"),
];

/// The sections a field's template leaves out.
const BASE_SERVER: &str = "server: { listen: [\"127.0.0.1:8080\"] }";
const BASE_ROUTES: &str = "routes: [ { prefix: /, upstream: web } ]";
const BASE_UPSTREAMS: &str = "upstreams: { web: { discovery: { static: [\"127.0.0.1:9000\"] } } }";

/// Stands for the value while the template is parsed.
const PLACEHOLDER: &str = "__value__";

/// `data[0]` picks a field of [`FIELDS`]; the rest is the value, as a string (even
/// `data[0]`) or as YAML (odd: a number, a list, a mapping...). The file is accepted with
/// the value as written, or refused with errors that name that field. True when accepted.
pub fn config_field(data: &[u8]) -> bool {
    let Some((&selector, rest)) = data.split_first() else {
        return false;
    };
    let (path, template) = FIELDS[usize::from(selector / 2) % FIELDS.len()];
    let text = String::from_utf8_lossy(rest);
    let value = if selector % 2 == 0 {
        Value::String(text.to_string())
    } else {
        match serde_yaml::from_str::<Value>(&text) {
            Ok(v) => v,
            Err(_) => return false,
        }
    };
    let Some(file) = place(template, &value) else {
        return false;
    };
    let field = match &value {
        Value::String(s) => path.replace("$V", s),
        _ => path.to_string(),
    };
    match Config::from_yaml(&file) {
        Ok(config) => {
            if let Value::String(s) = &value {
                taken_as_written(path, s, &config);
            }
            accepted(&config)
        }
        Err(errors) => {
            refused(&errors);
            // at the field or inside it; serde reports a value of the wrong type at the field
            // or at a section above it
            let strict = matches!(value, Value::String(_));
            for e in &errors.0 {
                let inside = |sep: &str| e.path.starts_with(&format!("{field}{sep}"));
                let named = e.path == field
                    || inside(".")
                    || inside("[")
                    || (!strict && field.starts_with(&e.path))
                    || also_named(path, &e.path);
                assert!(named, "{field}: the error names another field: {e}\n{file}");
            }
            false
        }
    }
}

/// Fields whose value can clash with another one, reported there.
fn also_named(path: &str, error_path: &str) -> bool {
    match path {
        "server.listen[0]" | "server.tls_listen[0].address" => {
            error_path == "server.admin" || error_path.starts_with("server.tls_listen")
        }
        // a route to an upstream with a bad name is reported at the route too
        "upstreams.$V" => error_path.starts_with("routes[0]") || error_path == "upstreams",
        "routes[0].prefix" => error_path == "routes",
        _ => false,
    }
}

/// The config file: `template` with the value in place of `$V`, completed with the
/// base sections it leaves out. `None` when YAML cannot carry the value through a
/// write and a read unchanged (not the lb's concern).
fn place(template: &str, value: &Value) -> Option<String> {
    let mut text = format!("version: 1\n{}\n", template.replace("$V", PLACEHOLDER));
    for (key, base) in [
        ("server:", BASE_SERVER),
        ("routes:", BASE_ROUTES),
        ("upstreams:", BASE_UPSTREAMS),
    ] {
        if !template.contains(key) {
            text.push_str(base);
            text.push('\n');
        }
    }
    let mut doc: Value = serde_yaml::from_str(&text).expect("valid template");
    substitute(&mut doc, value);
    let file = serde_yaml::to_string(&doc).ok()?;
    (serde_yaml::from_str::<Value>(&file).ok()? == doc).then_some(file)
}

/// Every placeholder in `doc` (a value, or a mapping key) replaced by `value`.
fn substitute(doc: &mut Value, value: &Value) {
    match doc {
        Value::String(s) if s == PLACEHOLDER => *doc = value.clone(),
        Value::Sequence(items) => items.iter_mut().for_each(|v| substitute(v, value)),
        Value::Mapping(map) => {
            let entries: Vec<(Value, Value)> = std::mem::take(map).into_iter().collect();
            for (mut k, mut v) in entries {
                substitute(&mut k, value);
                substitute(&mut v, value);
                map.insert(k, v);
            }
        }
        _ => {}
    }
}

/// An accepted string value is the one the config holds, in the form its field promises.
fn taken_as_written(path: &str, s: &str, config: &Config) {
    let server = &config.server;
    let web = config.upstreams.get("web");
    let addr = || s.parse::<SocketAddr>().ok();
    match path {
        "server.listen[0]" => assert_eq!(server.listen.first().copied(), addr()),
        "server.admin" => assert_eq!(Some(server.admin), addr()),
        "server.grace_period" | "server.shutdown_timeout" => {
            let d = humantime::parse_duration(s.trim()).expect("accepted duration");
            assert!(!d.is_zero() && d <= defaults::GRACE_PERIOD_MAX);
            assert!(d == server.grace_period || d == server.shutdown_timeout);
        }
        "server.access_log_flush" => {
            assert_eq!(
                humantime::parse_duration(s.trim()).ok(),
                Some(server.access_log_flush)
            );
        }
        "server.pid_file" => assert!(!s.is_empty() && server.pid_file == s),
        "server.hsts.max_age" => {
            let hsts = server.hsts.as_ref().expect("hsts");
            assert_eq!(hsts.value, format!("max-age={}", hsts.max_age.as_secs()));
            assert_eq!(humantime::parse_duration(s.trim()).ok(), Some(hsts.max_age));
        }
        "server.https_redirect.exclude[0]" => assert!(s.starts_with('/')),
        "server.tls_listen[0].address" => {
            assert_eq!(server.tls_listen.first().map(|l| l.address), addr());
        }
        "server.tls_listen[0].protocols[0]" => assert!(s == "h2" || s == "http/1.1"),
        "server.tls_listen[0].certificates[0].names[0]" => {
            let names = server.tls_listen[0].certificates[0].names.as_ref();
            let name = names.and_then(|n| n.first()).expect("a name");
            assert_eq!(*name, s.to_ascii_lowercase());
            assert!(name.len() <= 255 && name.is_ascii());
        }
        "routes[0].prefix" => {
            assert!(s.starts_with('/') && config.routes[0].prefix == s);
            // a request path could hold it
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#'));
        }
        "routes[0].max_body_size" => {
            assert_eq!(Some(config.routes[0].max_body_size), byte_size(s));
        }
        "upstreams.$V" => {
            assert!(config.upstreams.contains_key(s));
            assert!(s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        }
        "upstreams.web.discovery.static[0]" => match &web.expect("web").discovery {
            DiscoverySpec::Static { backends } => assert_eq!(Some(backends[0].addr), addr()),
            other => panic!("{other:?}"),
        },
        "upstreams.web.discovery.dns" => match &web.expect("web").discovery {
            DiscoverySpec::Dns { name, port, .. } => {
                let (n, p) = s.rsplit_once(':').expect("name:port");
                assert!(*port > 0 && p.parse() == Ok(*port) && n == name, "{s:?}");
            }
            other => panic!("{other:?}"),
        },
        "upstreams.web.discovery.interval" => match &web.expect("web").discovery {
            DiscoverySpec::Dns { interval, .. } => {
                assert_eq!(humantime::parse_duration(s.trim()).ok(), Some(*interval));
                assert!((defaults::INTERVAL_MIN..=defaults::INTERVAL_MAX).contains(interval));
            }
            other => panic!("{other:?}"),
        },
        "upstreams.web.discovery.resolver" => match &web.expect("web").discovery {
            DiscoverySpec::Dns { resolver, .. } => assert_eq!(*resolver, addr()),
            other => panic!("{other:?}"),
        },
        "upstreams.web.selection" => assert!(
            ["round_robin", "random", "least_requests", "consistent_hash"].contains(&s),
            "{s:?}"
        ),
        "upstreams.web.queue_timeout" => {
            let t = web.expect("web").queue_timeout;
            assert!(t <= crate::config::defaults::QUEUE_TIMEOUT_MAX);
        }
        "upstreams.web.host" | "upstreams.web.health_check.host" => {
            // sent as a Host header: it must be one
            assert!(http::HeaderValue::from_str(s).is_ok(), "{s:?}");
        }
        "upstreams.web.health_check.path" => {
            let hc = web.and_then(|w| w.health_check.as_ref()).expect("check");
            assert_eq!(hc.path, s);
            assert!(s.starts_with('/') && s.parse::<http::Uri>().is_ok());
        }
        "upstreams.web.timeouts.read" | "upstreams.web.timeouts.idle" => {
            let t = &web.expect("web").timeouts;
            let d = humantime::parse_duration(s.trim()).ok();
            assert!(d == Some(t.read) || d == Some(t.idle), "{s:?}");
            assert!(d.is_some_and(|d| !d.is_zero() && d <= defaults::UPSTREAM_TIMEOUT_MAX));
        }
        "upstreams.web.health_check.interval" => {
            let hc = web.and_then(|w| w.health_check.as_ref()).expect("check");
            assert_eq!(humantime::parse_duration(s.trim()).ok(), Some(hc.interval));
            assert!((defaults::INTERVAL_MIN..=defaults::INTERVAL_MAX).contains(&hc.interval));
        }
        "upstreams.web.sticky.max_age" => {
            let sticky = web.and_then(|w| w.sticky.as_ref()).expect("sticky");
            let age = sticky.max_age.expect("max_age");
            assert_eq!(humantime::parse_duration(s.trim()).ok(), Some(age));
            // written as `Max-Age` in whole seconds: never 0, never rounded
            assert!(age.subsec_nanos() == 0 && age.as_secs() >= 1);
            assert!(age <= defaults::STICKY_MAX_AGE_MAX);
        }
        "upstreams.web.tls.sni" => {
            assert!(rustls::pki_types::ServerName::try_from(s).is_ok(), "{s:?}");
        }
        _ => {}
    }
}

/// `routes[].max_body_size` as the README states it: a whole number of bytes, or one
/// followed by `KiB`, `MiB` or `GiB`, above 0 (surrounding spaces allowed).
fn byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(digits_end);
    let factor: u64 = match unit.trim() {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(factor)
        .filter(|n| *n > 0)
}

/// A refused file: at least one error, each with something to say.
fn refused(errors: &ConfigErrors) {
    assert!(!errors.0.is_empty());
    for e in &errors.0 {
        assert!(!e.message.is_empty(), "{e:?}");
    }
    let _ = errors.to_string();
}

/// A file `lb -t` accepts: pingora's own check, then what startup does with it (the
/// routing snapshot: pools, health checks, routes, metric series), then a scrape. False
/// when pingora's check refuses it.
fn accepted(config: &Config) -> bool {
    if config.server_conf(false).validate().is_err() {
        return false; // `lb -t` refuses it there
    }
    // The request path adds these to `Instant::now()`: each has a maximum.
    for spec in config.upstreams.values() {
        let t = &spec.timeouts;
        for d in [t.connect, t.read, t.write, t.idle]
            .into_iter()
            .chain(t.per_try)
        {
            assert!(d <= defaults::UPSTREAM_TIMEOUT_MAX, "{d:?}");
        }
    }
    let metrics = Metrics::new();
    let loaded = LoadedConfig {
        config: config.clone(),
        hash: String::new(),
        tls: Vec::new(),
        admin_token: None,
    };
    let snapshot = Snapshot::build(loaded, &metrics)
        .unwrap_or_else(|e| panic!("lb -t accepts a config startup cannot build: {e:#}"));
    for route in &config.routes {
        let i = snapshot
            .routes
            .lookup(&route.prefix)
            .expect("its own route");
        assert!(snapshot.routes.get(i).prefix.len() >= route.prefix.len());
    }
    // Route prefixes and upstream names are label values: escaped on the way out, they
    // must read back as they are.
    let scrape = metrics.encode();
    let labels = |name| label_values(&scrape, "lb_requests_total", name);
    let expected = |f: fn(&crate::config::RouteSpec) -> &str| -> BTreeSet<String> {
        config
            .routes
            .iter()
            .map(|r| f(r).to_string())
            .chain([NO_ROUTE.to_string()])
            .collect()
    };
    assert_eq!(labels("route"), expected(|r| &r.prefix));
    assert_eq!(labels("upstream"), expected(|r| &r.upstream));
    true
}

/// The values of label `label` on the series of `metric` in a Prometheus text scrape,
/// unescaped (`\\`, `\"`, `\n`).
fn label_values(scrape: &str, metric: &str, label: &str) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    let open = format!("{metric}{{");
    for line in scrape.lines() {
        let Some(mut rest) = line.strip_prefix(open.as_str()) else {
            continue;
        };
        while let Some((name, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => panic!("{line}"),
                    },
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            };
            if name == label {
                values.insert(value);
            }
            rest = after[end + 1..].trim_start_matches(',');
        }
    }
    values
}
