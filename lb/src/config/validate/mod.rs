//! Raw config → validated [`Config`], collecting every error with its field path.
//!
//! One file per section of the config file, each turning its raw serde struct into the
//! validated type; the shared value checks (durations, counts, addresses) live with the
//! [`Errors`] collector. Errors are reported in file order: `version`, `server`,
//! `upstreams`, `routes`.

mod admin_auth;
mod balance;
mod client;
mod connection_limits;
mod discovery;
mod errors;
mod https;
mod rate_limit;
mod routes;
mod server;
mod tls;
mod trusted_proxies;
mod upstream_tls;
mod upstreams;

use serde_yaml::Value;

use super::raw::RawConfig;
use super::{duration, Config, ConfigError};
use errors::Errors;

pub(super) fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());

    version(&mut errs, raw.version.as_ref());
    let server = server::server(&mut errs, &raw.server);
    let upstreams = upstreams::upstreams(&mut errs, &raw.upstreams);
    let routes = routes::routes(&mut errs, &raw.routes, server.hsts.as_ref(), |name| {
        raw.upstreams.contains_key(name)
    });

    if errs.0.is_empty() {
        Ok(Config {
            server,
            routes,
            upstreams,
        })
    } else {
        Err(errs.0)
    }
}

/// Required, so that a future format change can be told apart from today's files.
fn version(errs: &mut Errors, version: Option<&Value>) {
    match version {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(v) => errs.push(
            "version",
            format!("{} is not supported (expected 1)", duration::show(v)),
        ),
        None => errs.push("version", "missing (expected `version: 1`)"),
    }
}

/// Runs one check with a fresh collector and returns its value with the errors it reported,
/// each as `path: message` (the way `lb -t` prints them), so a test pins both.
#[cfg(test)]
fn collect<T>(check: impl FnOnce(&mut Errors) -> T) -> (T, Vec<String>) {
    let mut errs = Errors(Vec::new());
    let value = check(&mut errs);
    (value, errs.0.iter().map(ToString::to_string).collect())
}

/// One section of a config file, parsed into its raw serde struct.
#[cfg(test)]
fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        match validate(yaml(text)) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str = "
upstreams:
  web: { discovery: { static: [\"127.0.0.1:9000\"] } }
routes:
  - { prefix: /, upstream: web }
";

    #[test]
    fn a_valid_file_gives_its_config() {
        let config = validate(yaml(&format!("version: 1\n{MINIMAL}"))).unwrap();
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.routes[0].upstream, "web");
        assert_eq!(config.upstreams.keys().collect::<Vec<_>>(), vec!["web"]);
    }

    #[test]
    fn version_is_required() {
        assert_eq!(
            messages(MINIMAL),
            vec!["version: missing (expected `version: 1`)"]
        );
    }

    #[test]
    fn only_version_1_is_supported() {
        for (version, shown) in [("2", "2"), ("\"1\"", "\"1\""), ("1.0", "1.0"), ("-1", "-1")] {
            assert_eq!(
                messages(&format!("version: {version}\n{MINIMAL}")),
                vec![format!("version: {shown} is not supported (expected 1)")],
                "version: {version}"
            );
        }
    }

    #[test]
    fn every_error_is_reported_in_section_order() {
        let text = "
routes:
  - { prefix: api, upstream: api }
upstreams:
  web: { discovery: { static: [] } }
server:
  threads: 0
";
        assert_eq!(
            messages(text),
            vec![
                "version: missing (expected `version: 1`)",
                "server.threads: 0 must be at least 1",
                "upstreams.web.discovery.static: empty pool: list at least one IP:port",
                "routes[0].prefix: \"api\" must start with `/`",
                "routes[0].upstream: unknown upstream \"api\" (not defined under `upstreams:`)",
            ]
        );
    }

    #[test]
    fn an_empty_file_needs_version_upstreams_and_routes() {
        assert_eq!(
            messages("{}"),
            vec![
                "version: missing (expected `version: 1`)",
                "upstreams: at least one upstream is required",
                "routes: at least one route is required",
            ]
        );
    }
}
