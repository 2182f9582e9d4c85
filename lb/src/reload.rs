//! Hot config reload, in place: the process, its listeners and its unchanged pools stay.
//!
//! A reload (SIGHUP, `POST /reload` on the admin listener, or `--watch`):
//! 1. reads and checks the file exactly as `lb -t` does ([`config::check`]);
//! 2. refuses the whole file if a setting that cannot change in place differs (see
//!    [`not_in_place`]); nothing is applied then;
//!    The TLS certificate and key files are read again as part of the check: changed
//!    files, or added or removed names, take effect at the swap below (new handshakes get
//!    them; established connections keep theirs); a bad one rejects the reload.
//! 3. builds a new snapshot that carries every unchanged pool over as the same `Arc`
//!    (backends, health state, connection pool kept), warms up the new or changed pools
//!    (first discovery + first health round, bounded by [`WARM_UP_LIMIT`]) so no request
//!    meets an empty pool, then swaps the snapshot atomically. A changed pool whose first
//!    discovery fails within that time refuses the whole reload instead of replacing a
//!    serving pool with an empty one.
//!
//! A rejected reload logs every error, leaves the running snapshot untouched and is counted
//! in `lb_config_reloads_total{result="failure"}` and `/status`. Requests in flight finish
//! on the snapshot they started with. Reloads are serialised.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{self, ServerSettings};
use crate::state::{LbState, ReloadRecord, Snapshot};

/// How long a reload waits for new pools' first discovery and health round. A new pool
/// still not ready then (e.g. its name does not resolve yet) is installed anyway and keeps
/// trying; until it is ready its routes answer 503 and `/ready` says 503. A changed pool
/// that would replace a ready one is not: the reload is refused, and the running pool keeps
/// serving.
pub(crate) const WARM_UP_LIMIT: Duration = Duration::from_secs(5);

/// How long `--watch` waits before it tries again a file whose reload was refused only
/// because a changed pool did not warm up.
const WATCH_RETRY: Duration = Duration::from_secs(10);

/// How often `--watch` looks at the config file.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Reloader {
    pub(crate) state: Arc<LbState>,
    /// One reload at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(state: Arc<LbState>) -> Self {
        Self {
            state,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Reload the config file now; `trigger` (`signal`, `admin`, `watch`) is logged and
    /// shown in `/status`.
    pub(crate) async fn reload(&self, trigger: &'static str) -> ReloadRecord {
        let _one_at_a_time = self.lock.lock().await;
        let path = self.state.config_path.display().to_string();
        let (applied, hash, errors, changes, retry_later) = match self.try_reload().await {
            Ok((hash, changes)) => (true, hash, Vec::new(), changes, false),
            Err(Rejected {
                errors,
                retry_later,
            }) => (false, String::new(), errors, Vec::new(), retry_later),
        };
        if applied {
            tracing::info!(config = %path, trigger, sha256 = %hash, ?changes, "configuration reloaded");
        } else {
            tracing::error!(
                config = %path, trigger, errors = errors.len(),
                "configuration reload rejected; still running with the previous configuration"
            );
            for e in &errors {
                tracing::error!(config = %path, "  {e}");
            }
        }
        let record = ReloadRecord {
            at: SystemTime::now(),
            trigger,
            applied,
            errors,
            changes,
            retry_later,
        };
        // The record first: `/status` readers that see the counter move also see it.
        self.state.set_last_reload(record.clone());
        self.state.metrics.reload(applied, &hash);
        record
    }

    /// `Ok((hash, changes))` once installed, `Err` when nothing was applied.
    async fn try_reload(&self) -> Result<(String, Vec<String>), Rejected> {
        let loaded = config::check(&self.state.config_path)
            .map_err(|e| Rejected::for_good(e.0.iter().map(|e| e.to_string()).collect()))?;
        let current = self.state.snapshot();
        let fixed = not_in_place(&current.config.server, &loaded.config.server);
        if !fixed.is_empty() {
            return Err(Rejected::for_good(fixed));
        }
        let hash = loaded.hash.clone();
        let changes = describe_changes(
            &current,
            &loaded.config,
            &loaded.tls,
            loaded.admin_token.as_ref(),
        );
        let (snapshot, fresh) =
            Snapshot::build_reusing(loaded, &self.state.metrics, Some(&current))
                .map_err(|e| Rejected::for_good(vec![format!("{e:#}")]))?;
        // The pools a changed definition rebuilds while the running one serves: those must
        // warm up, or the reload is refused (a new pool has nothing to lose).
        let replacing: Vec<bool> = fresh
            .iter()
            .map(|p| current.pools.get(&p.name).is_some_and(|old| old.is_ready()))
            .collect();
        drop(current);
        // Warm up new pools concurrently, before anything can route to them.
        let mut warm_ups = tokio::task::JoinSet::new();
        for (pool, replacing) in fresh.into_iter().zip(replacing) {
            warm_ups.spawn(async move {
                if tokio::time::timeout(WARM_UP_LIMIT, pool.warm_up())
                    .await
                    .is_ok()
                {
                    return None;
                }
                if replacing {
                    // A rebuilt pool starts from nothing: installing it now would swap a
                    // serving pool for an empty one until its discovery recovers.
                    return Some(format!(
                        "upstreams.{}: the changed pool's first discovery and health round did not \
                         finish within {:?} (see the WARN lines: a failing lookup, or a slow check); \
                         the running pool keeps serving and nothing was applied: reload again once \
                         it resolves (--watch tries again by itself)",
                        pool.name, WARM_UP_LIMIT
                    ));
                }
                tracing::warn!(upstream = %pool.name, limit = ?WARM_UP_LIMIT,
                    "new pool not ready yet (first discovery pending); installing it anyway");
                None
            });
        }
        let mut refused = Vec::new();
        while let Some(done) = warm_ups.join_next().await {
            if let Ok(Some(why)) = done {
                refused.push(why);
            }
        }
        if !refused.is_empty() {
            refused.sort();
            return Err(Rejected {
                errors: refused,
                retry_later: true,
            });
        }
        crate::log_throttle::set_window(snapshot.config.server.log_throttle);
        self.state.install(snapshot);
        Ok((hash, changes))
    }
}

/// Why a reload applied nothing.
struct Rejected {
    errors: Vec<String>,
    /// Only a changed pool's warm-up failed: the same file may apply later.
    retry_later: bool,
}

impl Rejected {
    /// The file itself is refused: the same file never applies.
    fn for_good(errors: Vec<String>) -> Self {
        Self {
            errors,
            retry_later: false,
        }
    }
}

/// The settings baked into pingora's `ServerConf` and listeners at startup. A reload that
/// changes any of them is rejected as a whole: one error per changed key, naming it.
pub(crate) fn not_in_place(old: &ServerSettings, new: &ServerSettings) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |key: &str, same: bool, old: String, new: String| {
        if !same {
            errors.push(format!(
                "server.{key}: changed from {old} to {new}: needs an upgrade or restart (lb -u), not a reload; nothing was applied"
            ));
        }
    };
    check(
        "listen",
        old.listen == new.listen,
        format!("{:?}", addrs(&old.listen)),
        format!("{:?}", addrs(&new.listen)),
    );
    // The listeners' sockets and rustls configs (ALPN) are built once; their certificates
    // are not, and change in place.
    let tls = |s: &ServerSettings| -> Vec<String> {
        s.tls_listen
            .iter()
            .map(|l| format!("{} {:?}", l.address, l.protocols.names()))
            .collect()
    };
    check(
        "tls_listen",
        tls(old) == tls(new),
        format!("{:?}", tls(old)),
        format!("{:?}", tls(new)),
    );
    check(
        "h2c",
        old.h2c == new.h2c,
        old.h2c.to_string(),
        new.h2c.to_string(),
    );
    check(
        "admin",
        old.admin == new.admin,
        old.admin.to_string(),
        new.admin.to_string(),
    );
    check(
        "threads",
        old.threads == new.threads,
        old.threads.to_string(),
        new.threads.to_string(),
    );
    check(
        "work_stealing",
        old.work_stealing == new.work_stealing,
        old.work_stealing.to_string(),
        new.work_stealing.to_string(),
    );
    check(
        "per_thread_accept",
        old.per_thread_accept == new.per_thread_accept,
        old.per_thread_accept.to_string(),
        new.per_thread_accept.to_string(),
    );
    check(
        "grace_period",
        old.grace_period == new.grace_period,
        format!("{:?}", old.grace_period),
        format!("{:?}", new.grace_period),
    );
    check(
        "shutdown_timeout",
        old.shutdown_timeout == new.shutdown_timeout,
        format!("{:?}", old.shutdown_timeout),
        format!("{:?}", new.shutdown_timeout),
    );
    check(
        "upstream_keepalive_pool_size",
        old.upstream_keepalive_pool_size == new.upstream_keepalive_pool_size,
        old.upstream_keepalive_pool_size.to_string(),
        new.upstream_keepalive_pool_size.to_string(),
    );
    check(
        "pid_file",
        old.pid_file == new.pid_file,
        format!("{:?}", old.pid_file),
        format!("{:?}", new.pid_file),
    );
    check(
        "upgrade_sock",
        old.upgrade_sock == new.upgrade_sock,
        format!("{:?}", old.upgrade_sock),
        format!("{:?}", new.upgrade_sock),
    );
    errors
}

fn addrs(list: &[std::net::SocketAddr]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// A short human list of what a valid reload changes (for the log and `/status`).
fn describe_changes(
    current: &Snapshot,
    new: &crate::config::Config,
    loaded_tls: &[crate::config::certificates::ListenerCertificates],
    loaded_token: Option<&crate::config::admin_token::AdminToken>,
) -> Vec<String> {
    let mut changes = Vec::new();
    for (name, spec) in &new.upstreams {
        match current.pools.get(name) {
            None => changes.push(format!("upstream {name}: added")),
            Some(p) if p.spec != *spec => changes.push(format!("upstream {name}: rebuilt")),
            Some(_) => {}
        }
    }
    for name in current.pools.keys() {
        if !new.upstreams.contains_key(name) {
            changes.push(format!("upstream {name}: removed"));
        }
    }
    if current.config.server.tls_listen != new.server.tls_listen || current.tls != loaded_tls {
        changes.push("tls: certificates reloaded".to_string());
    }
    if current.config.routes != new.routes {
        changes.push("routes: replaced".to_string());
    }
    let (o, n) = (&current.config.server, &new.server);
    if o.access_log != n.access_log {
        changes.push(format!("server.access_log: {}", n.access_log));
    }
    if o.metrics != n.metrics {
        changes.push(format!("server.metrics: {}", n.metrics));
    }
    if o.admin_auth != n.admin_auth {
        changes.push("server.admin_auth: changed".to_string());
    }
    if current.admin_token.as_ref() != loaded_token {
        changes.push("server.admin_auth: token replaced".to_string());
    }
    if o.log_throttle != n.log_throttle {
        changes.push(format!("server.log_throttle: {:?}", n.log_throttle));
    }
    changes
}

/// `--watch`: polls the config file's content hash every [`WATCH_EVERY`] and reloads when
/// it changes. Polling (rather than inotify) also works on bind mounts and with editors
/// that replace the file; a half-written file is simply rejected and retried on the next
/// change.
pub(crate) struct Watcher {
    reloader: Arc<Reloader>,
}

impl Watcher {
    pub(crate) fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }
}

fn file_hash(path: &PathBuf) -> Option<String> {
    std::fs::read(path).ok().map(|b| config::sha256_hex(&b))
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let path = self.reloader.state.config_path.clone();
        let mut seen = Some(self.reloader.state.snapshot().hash.clone());
        tracing::info!(config = %path.display(), every = ?WATCH_EVERY, "watching the config file for changes");
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let now = file_hash(&path);
            if now.is_some() && now != seen {
                let record = self.reloader.reload("watch").await;
                if record.retry_later {
                    // Not this file's fault (a changed pool's discovery is failing): the
                    // same file is tried again, not every second.
                    tokio::time::sleep(WATCH_RETRY).await;
                } else {
                    seen = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn server(extra: &str) -> ServerSettings {
        Config::from_yaml(&format!(
            "version: 1\nserver: {{ admin: \"127.0.0.1:9901\" {extra} }}\nroutes: [ {{ prefix: /, upstream: a }} ]\nupstreams: {{ a: {{ discovery: {{ static: [\"127.0.0.1:1\"] }} }} }}\n"
        ))
        .expect("valid")
        .server
    }

    #[test]
    fn tls_listen_addresses_and_protocols_need_a_restart_certificates_do_not() {
        let tls = |addr: &str, protocols: &str, cert: &str| {
            server(&format!(
                ", tls_listen: [ {{ address: \"{addr}\", protocols: {protocols}, certificates: [ {{ cert: {cert}, key: k }} ] }} ]"
            ))
        };
        let old = tls("127.0.0.1:8443", "[h2, http/1.1]", "a.pem");
        assert!(not_in_place(&old, &tls("127.0.0.1:8443", "[http/1.1, h2]", "b.pem")).is_empty());
        let errors = not_in_place(&old, &tls("127.0.0.1:9443", "[h2, http/1.1]", "a.pem"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("server.tls_listen: changed"));
        let errors = not_in_place(&old, &tls("127.0.0.1:8443", "[http/1.1]", "a.pem"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            not_in_place(&old, &server("")).len() == 1,
            "removing a TLS listener"
        );
    }

    #[test]
    fn listen_and_threads_need_a_restart() {
        let old = server(", threads: 2");
        assert!(not_in_place(
            &old,
            &server(", threads: 2, access_log: false, metrics: false")
        )
        .is_empty());
        let errors = not_in_place(&old, &server(", listen: [\"127.0.0.1:1\"], threads: 3"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("server.listen: changed"));
        assert!(errors[0].contains("needs an upgrade or restart"));
        assert!(errors[1].starts_with("server.threads: changed from 2 to 3"));
    }
}
