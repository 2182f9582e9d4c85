//! `routes:`: prefixes and the upstream each one sends to.

use std::collections::HashSet;

use super::Errors;
use crate::config::raw::RawRoute;

use crate::config::{defaults, Hsts, RouteSpec};

/// `is_upstream` tells whether a name is defined under `upstreams:` (valid or not, so a bad
/// upstream is reported once, under its own path, and not again for each route to it).
pub(super) fn routes(
    errs: &mut Errors,
    raw: &[RawRoute],
    server_hsts: Option<&Hsts>,
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
        } else if !is_origin_path(&r.prefix) {
            errs.push(
                format!("{path}.prefix"),
                format!(
                    "{:?} can never match a request path (visible ASCII only, no `?` or `#`; \
                     percent-encode other bytes, e.g. `%20` for a space)",
                    r.prefix
                ),
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
            hsts: super::https::route_hsts(
                errs,
                &format!("{path}.hsts"),
                r.hsts.as_ref(),
                server_hsts,
            ),
            max_body_size: r
                .max_body_size
                .as_ref()
                .map_or(defaults::MAX_BODY_SIZE, |v| {
                    errs.byte_size(&format!("{path}.max_body_size"), v, defaults::MAX_BODY_SIZE)
                }),
            rate_limit: r.rate_limit.as_ref().and_then(|raw| {
                super::rate_limit::rate_limit(errs, &format!("{path}.rate_limit"), raw)
            }),
        });
    }
    routes
}

/// What the path of an origin-form request target can hold (RFC 9112 §3.2.1): visible
/// ASCII, and no `?` (it starts the query, which routing ignores) or `#` (never sent).
/// Requests are matched on their raw path bytes, so `/café/` or `/a b/` match nothing.
fn is_origin_path(prefix: &str) -> bool {
    prefix
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{collect, yaml};

    /// Routes checked against two defined upstreams, `api` and `web`.
    fn check(text: &str) -> (Vec<RouteSpec>, Vec<String>) {
        let raw: Vec<RawRoute> = yaml(text);
        collect(|errs| routes(errs, &raw, None, |name| ["api", "web"].contains(&name)))
    }

    fn route(prefix: &str, upstream: &str, strip_prefix: bool) -> RouteSpec {
        RouteSpec {
            prefix: prefix.to_string(),
            upstream: upstream.to_string(),
            strip_prefix,
            hsts: None,
            max_body_size: defaults::MAX_BODY_SIZE,
            rate_limit: None,
        }
    }

    #[test]
    fn routes_are_kept_in_file_order_and_strip_prefix_defaults_to_false() {
        let text = "
- { prefix: /, upstream: web }
- { prefix: /api/, upstream: api, strip_prefix: true }
- { prefix: /api, upstream: api }
";
        assert_eq!(
            check(text),
            (
                vec![
                    route("/", "web", false),
                    route("/api/", "api", true),
                    route("/api", "api", false),
                ],
                vec![]
            )
        );
    }

    #[test]
    fn at_least_one_route_is_required() {
        assert_eq!(
            check("[]").1,
            vec!["routes: at least one route is required"]
        );
    }

    #[test]
    fn a_prefix_starts_with_a_slash() {
        assert_eq!(
            check("[{ prefix: api/, upstream: api }]").1,
            vec!["routes[0].prefix: \"api/\" must start with `/`"]
        );
        assert_eq!(
            check("[{ prefix: \"\", upstream: api }]").1,
            vec!["routes[0].prefix: \"\" must start with `/`"]
        );
    }

    #[test]
    fn a_prefix_is_a_request_path_a_request_can_match() {
        let (routes, errs) = check("[{ prefix: \"/a%20b/~x-y_z.!$&'()*+,;=:@/\", upstream: api }]");
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(routes[0].prefix, "/a%20b/~x-y_z.!$&'()*+,;=:@/");
        for bad in [
            "/café/",
            "/a b/",
            "/api?v=1",
            "/x#y",
            "/tab\\t",
            "/del\\u007f",
        ] {
            let text = format!("[{{ prefix: \"{bad}\", upstream: api }}]");
            let errs = check(&text).1;
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(
                errs[0].starts_with("routes[0].prefix: ")
                    && errs[0].contains("can never match a request path"),
                "{bad}: {errs:?}"
            );
        }
    }

    #[test]
    fn a_prefix_is_unique() {
        let text = "
- { prefix: /api/, upstream: api }
- { prefix: /, upstream: web }
- { prefix: /api/, upstream: web }
";
        assert_eq!(
            check(text).1,
            vec!["routes[2].prefix: duplicate route \"/api/\""]
        );
    }

    #[test]
    fn a_prefix_without_a_slash_is_not_also_a_duplicate() {
        let text = "
- { prefix: api, upstream: api }
- { prefix: api, upstream: api }
";
        assert_eq!(
            check(text).1,
            vec![
                "routes[0].prefix: \"api\" must start with `/`",
                "routes[1].prefix: \"api\" must start with `/`",
            ]
        );
    }

    #[test]
    fn the_upstream_must_be_defined() {
        assert_eq!(
            check("[{ prefix: /, upstream: backend }]").1,
            vec![
                "routes[0].upstream: unknown upstream \"backend\" (not defined under `upstreams:`)"
            ]
        );
    }
}
