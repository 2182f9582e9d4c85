//! Pingora's `ServerConf` from our [`Config`]: the one place pingora's server settings are
//! decided. `lb -t`, startup and every reload validate it through [`super::check`].

use pingora::server::configuration::ServerConf;

use super::Config;

impl Config {
    /// Pingora's server settings from ours. Durations round up to whole seconds (pingora's
    /// unit). `max_retries` stays pingora's default: our own per-upstream `retries` budget
    /// (at most [`super::defaults::MAX_RETRIES`]) stops every request well before it.
    pub(crate) fn server_conf(&self, daemon: bool) -> ServerConf {
        let s = &self.server;
        // saturating: `18446744073709551615s 999999999ns` is a valid duration
        let secs =
            |d: std::time::Duration| d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
        ServerConf {
            version: 1,
            daemon,
            threads: s.threads,
            work_stealing: s.work_stealing,
            grace_period_seconds: Some(secs(s.grace_period)),
            graceful_shutdown_timeout_seconds: Some(secs(s.shutdown_timeout)),
            upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
            pid_file: s.pid_file.clone(),
            upgrade_sock: s.upgrade_sock.clone(),
            working_directory: daemon.then(daemon_directory).flatten(),
            ..ServerConf::default()
        }
    }
}

/// Where the daemon runs: the directory `lb -d` was started in. Pingora's daemon would
/// otherwise `chdir("/")`, and every relative path of the config (`pid_file`, certificate
/// and key files, `local_ca`, `acme.storage`, `token_file`, `sticky.key_file`...) would
/// then name another file than the one `lb -t` and the start checked, from the first
/// reload on. So relative paths mean the same with and without `-d`. `None` (pingora's
/// `/`) only if the working directory is gone.
fn daemon_directory() -> Option<std::path::PathBuf> {
    std::env::current_dir().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_conf_from_config() {
        let config = Config::from_yaml(
            "version: 1\nserver: { threads: 3, grace_period: 2500ms, shutdown_timeout: 1s, pid_file: /run/x.pid }\n\
             routes: [ { prefix: /, upstream: a } ]\nupstreams: { a: { discovery: { static: [\"127.0.0.1:1\"] } } }\n",
        )
        .expect("valid");
        let conf = config.server_conf(false);
        assert_eq!(conf.threads, 3);
        assert_eq!(
            conf.grace_period_seconds,
            Some(3),
            "rounded up to whole seconds"
        );
        assert_eq!(conf.graceful_shutdown_timeout_seconds, Some(1));
        assert_eq!(conf.pid_file, "/run/x.pid");
        assert_eq!(conf.upgrade_sock, crate::config::defaults::UPGRADE_SOCK);
        assert!(!conf.daemon);
        assert_eq!(conf.working_directory, None);
    }

    #[test]
    fn the_daemon_stays_in_the_directory_it_was_started_in() {
        let config = Config::from_yaml(
            "version: 1\nroutes: [ { prefix: /, upstream: a } ]\nupstreams: { a: { discovery: { static: [\"127.0.0.1:1\"] } } }\n",
        )
        .expect("valid");
        let conf = config.server_conf(true);
        assert!(conf.daemon);
        // pingora's daemon would chdir to `/`, and relative paths would change meaning.
        assert_eq!(
            conf.working_directory,
            Some(std::env::current_dir().expect("cwd"))
        );
    }

    #[test]
    fn defaults_are_docker_friendly() {
        let config = Config::from_yaml(
            "version: 1\nroutes: [ { prefix: /, upstream: a } ]\nupstreams: { a: { discovery: { static: [\"127.0.0.1:1\"] } } }\n",
        )
        .expect("valid");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.server.threads, cpus);
        assert_eq!(
            config.server.listen,
            vec!["0.0.0.0:8080".parse().expect("addr")]
        );
        assert_eq!(config.server.admin, "127.0.0.1:9901".parse().expect("addr"));
        let conf = config.server_conf(false);
        assert_eq!(conf.grace_period_seconds, Some(3));
        assert_eq!(conf.graceful_shutdown_timeout_seconds, Some(3));
        assert!(conf.pid_file.starts_with("/tmp/") && conf.upgrade_sock.starts_with("/tmp/"));
        let a = &config.upstreams["a"];
        assert_eq!(a.retries, 2);
        assert!(a.timeouts.idle < std::time::Duration::from_secs(30));
    }
}
