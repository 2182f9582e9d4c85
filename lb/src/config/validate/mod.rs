//! Raw config → validated [`Config`], collecting every error with its field path.
//!
//! One file per section of the config file, each turning its raw serde struct into the
//! validated type; the shared value checks (durations, counts, addresses) live with the
//! [`Errors`] collector. Errors are reported in file order: `version`, `server`,
//! `upstreams`, `routes`.

mod discovery;
mod errors;
mod routes;
mod server;
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
    let routes = routes::routes(&mut errs, &raw.routes, |name| {
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
