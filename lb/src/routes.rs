//! Path-prefix routing: the longest matching prefix wins, whatever the order in the file.

use std::sync::Arc;

use crate::metrics::RouteMetrics;
use crate::pool::Pool;
use crate::rate_limit::RateLimiter;

pub(crate) struct Route {
    pub(crate) prefix: String,
    pub(crate) strip_prefix: bool,
    /// `Strict-Transport-Security` for responses over TLS, made once per snapshot.
    pub(crate) hsts: Option<http::HeaderValue>,
    /// Largest request body accepted (413 beyond it).
    pub(crate) max_body_size: u64,
    /// Requests per client (429 beyond it); `None`: not limited.
    pub(crate) rate_limit: Option<RateLimiter>,
    pub(crate) pool: Arc<Pool>,
    /// `lb_requests_total` handles for this route, resolved when the snapshot was built.
    pub(crate) metrics: RouteMetrics,
}

impl Route {
    /// The upstream path for `path` (which matched this route): the prefix removed when
    /// `strip_prefix` is set, always starting with `/`. `None` means "send it unchanged".
    pub(crate) fn rewrite(&self, path_and_query: &str) -> Option<String> {
        self.strip_prefix
            .then(|| strip_prefix(&self.prefix, path_and_query))
    }
}

/// `path_and_query` (which starts with `prefix`) without it, always starting with `/`.
pub(crate) fn strip_prefix(prefix: &str, path_and_query: &str) -> String {
    let rest = path_and_query.get(prefix.len()..).unwrap_or("");
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

/// Routes sorted by descending prefix length, so the first match is the longest.
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub(crate) fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    /// Index of the route for `path`; no allocation (a linear scan: route tables are short).
    pub(crate) fn lookup(&self, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| path.starts_with(r.prefix.as_str()))
    }

    pub(crate) fn get(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// The route with exactly this prefix (a reload carries its state over).
    pub(crate) fn by_prefix(&self, prefix: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.prefix == prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table() -> RouteTable {
        let config = Config::from_yaml(
            r#"
version: 1
routes:
  - { prefix: /, upstream: web }
  - { prefix: /api/, upstream: api, strip_prefix: true }
  - { prefix: /api/v2/, upstream: web }
upstreams:
  api: { discovery: { static: ["127.0.0.1:1"] } }
  web: { discovery: { static: ["127.0.0.1:2"] } }
"#,
        )
        .expect("valid");
        let loaded = crate::config::LoadedConfig {
            config,
            hash: String::new(),
            tls: Vec::new(),
            admin_token: None,
        };
        crate::state::Snapshot::build(loaded, &crate::metrics::Metrics::new())
            .expect("snapshot")
            .routes
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        let name = |p: &str| t.lookup(p).map(|i| t.get(i).pool.name.clone());
        assert_eq!(name("/api/hello").as_deref(), Some("api"));
        assert_eq!(name("/api/v2/x").as_deref(), Some("web"));
        assert_eq!(name("/index.html").as_deref(), Some("web"));
        assert_eq!(name("/").as_deref(), Some("web"));
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let t = table();
        let api = t.get(t.lookup("/api/x").expect("route"));
        assert_eq!(api.rewrite("/api/hello?x=1").as_deref(), Some("/hello?x=1"));
        assert_eq!(api.rewrite("/api/").as_deref(), Some("/"));
    }
}
