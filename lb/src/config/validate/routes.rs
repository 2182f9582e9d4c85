//! `routes:`: prefixes and the upstream each one sends to.

use std::collections::HashSet;

use super::Errors;
use crate::config::raw::RawRoute;
use crate::config::RouteSpec;

/// `is_upstream` tells whether a name is defined under `upstreams:` (valid or not, so a bad
/// upstream is reported once, under its own path, and not again for each route to it).
pub(super) fn routes(
    errs: &mut Errors,
    raw: &[RawRoute],
    is_upstream: impl Fn(&str) -> bool,
) -> Vec<RouteSpec> {
    if raw.is_empty() {
        errs.push("routes", "at least one route is required");
    }
    let mut seen = HashSet::new();
    let mut routes = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !r.prefix.starts_with('/') {
            errs.push(
                format!("{path}.prefix"),
                format!("{:?} must start with `/`", r.prefix),
            );
        } else if !seen.insert(r.prefix.as_str()) {
            // Longest prefix wins, so of two equal prefixes one could never be reached.
            errs.push(
                format!("{path}.prefix"),
                format!("duplicate route {:?}", r.prefix),
            );
        }
        if !is_upstream(&r.upstream) {
            errs.push(
                format!("{path}.upstream"),
                format!(
                    "unknown upstream {:?} (not defined under `upstreams:`)",
                    r.upstream
                ),
            );
        }
        routes.push(RouteSpec {
            prefix: r.prefix.clone(),
            upstream: r.upstream.clone(),
            strip_prefix: r.strip_prefix,
        });
    }
    routes
}
