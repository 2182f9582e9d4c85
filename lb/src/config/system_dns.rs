//! The system DNS configuration, for `dns:` and `srv:` pools without `resolver:`.
//!
//! Building such a pool reads `/etc/resolv.conf` through hickory (`crate::discovery`); a
//! host or container without a usable one would pass the checks and then fail to start
//! (or to reload). So [`super::check`] reads and parses it the same way first.

use std::path::Path;

use super::{Config, ConfigError, DiscoverySpec};

/// Where hickory reads the system configuration from on Unix.
pub(crate) const RESOLV_CONF: &str = "/etc/resolv.conf";

/// One error per pool that relies on the system resolver, when `resolv_conf` cannot be
/// read or parsed as hickory parses it; nothing is read when no pool needs it.
pub(crate) fn check(config: &Config, resolv_conf: &Path) -> Vec<ConfigError> {
    let mut problem: Option<Option<String>> = None;
    let mut errors = Vec::new();
    for (name, spec) in &config.upstreams {
        if !matches!(spec.discovery, DiscoverySpec::Dns { resolver: None, .. }) {
            continue;
        }
        let problem = problem.get_or_insert_with(|| unusable(resolv_conf));
        if let Some(why) = problem {
            errors.push(ConfigError::new(
                format!("upstreams.{name}.discovery"),
                format!(
                    "no `resolver:`, and the system DNS configuration cannot be used ({}: {why}); \
                     fix it or set `resolver: \"IP:port\"`",
                    resolv_conf.display()
                ),
            ));
        }
    }
    errors
}

/// Why the file cannot serve as hickory's system configuration (`None`: it can).
fn unusable(path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(e.to_string()),
    };
    hickory_resolver::system_conf::parse_resolv_conf(text)
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNS_POOL: &str = "version: 1\nroutes: [ { prefix: /, upstream: a } ]\nupstreams:\n  \
        a: { discovery: { dns: \"backend:80\" } }\n  \
        b: { discovery: { srv: _x._tcp.backend } }\n  \
        c: { discovery: { dns: \"backend:80\", resolver: \"127.0.0.1:53\" } }\n  \
        d: { discovery: { static: [\"127.0.0.1:1\"] } }\n";

    fn messages(config: &Config, path: &Path) -> Vec<String> {
        check(config, path)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn pools_on_the_system_resolver_need_a_readable_resolv_conf() {
        let config = Config::from_yaml(DNS_POOL).expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("resolv.conf");
        let errs = messages(&config, &missing);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("upstreams.a.discovery: no `resolver:`, and the system DNS configuration cannot be used"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("upstreams.b.discovery: "), "{errs:?}");
        assert!(errs[0].contains(&missing.display().to_string()), "{errs:?}");

        std::fs::write(&missing, "nameserver 127.0.0.11\noptions ndots:0\n").expect("write");
        assert_eq!(messages(&config, &missing), Vec::<String>::new());
    }

    #[test]
    fn nothing_is_read_without_such_a_pool() {
        let config = Config::from_yaml(
            "version: 1\nroutes: [ { prefix: /, upstream: c } ]\nupstreams:\n  \
             c: { discovery: { dns: \"backend:80\", resolver: \"127.0.0.1:53\" } }\n",
        )
        .expect("valid");
        assert!(check(&config, Path::new("/nonexistent/resolv.conf")).is_empty());
    }
}
