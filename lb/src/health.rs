//! Active HTTP health checks, and the admission gate for newly discovered backends.
//!
//! Pingora treats a backend healthy from the moment discovery sees it, so a replica that is
//! still starting would get traffic at once. With a health check configured, discovery hands
//! new backends to pingora *disabled* and the first passing check enables them
//! ([`Admission`]). Failover still covers whatever slips through (e.g. a replica that dies
//! between two checks).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock, Weak};

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::{Backend, LoadBalancer};
use pingora::{Error, ErrorType, Result};

use crate::balance::{BackendTable, Selector};
use crate::config::HealthCheckSpec;
use crate::observe::PoolObserver;
use crate::upstream_tls::PeerTls;

/// Pingora's key for a backend's enablement (its `hash_key`, which is crate-private):
/// the std hash of the backend's identity (address + weight).
pub(crate) fn backend_key(backend: &Backend) -> u64 {
    let mut h = DefaultHasher::new();
    backend.hash(&mut h);
    h.finish()
}

/// Which discovered backends have passed a health check since they (re)appeared.
pub(crate) struct Admission {
    /// False when the pool has no health check: then every discovered backend is trusted.
    gated: bool,
    admitted: Mutex<HashSet<u64>>,
    lb: OnceLock<Weak<LoadBalancer<Selector>>>,
    /// Told of every passing check (slow start, the return of an ejected backend).
    table: std::sync::Arc<BackendTable>,
}

impl Admission {
    pub(crate) fn new(gated: bool, table: std::sync::Arc<BackendTable>) -> Self {
        Self {
            gated,
            admitted: Mutex::new(HashSet::new()),
            lb: OnceLock::new(),
            table,
        }
    }

    /// Link to the load balancer whose backends this gate enables (set once, after building).
    pub(crate) fn attach(&self, lb: Weak<LoadBalancer<Selector>>) {
        let _ = self.lb.set(lb);
    }

    /// The enablement map discovery returns to pingora: admitted backends on, the rest off.
    /// Backends that left the set lose their admission, so one that comes back is checked
    /// again before it gets traffic.
    pub(crate) fn enablement(&self, set: &BTreeSet<Backend>) -> HashMap<u64, bool> {
        if !self.gated {
            return HashMap::new();
        }
        let keys: HashMap<u64, bool> = set.iter().map(|b| (backend_key(b), false)).collect();
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        admitted.retain(|k| keys.contains_key(k));
        keys.into_keys()
            .map(|k| (k, admitted.contains(&k)))
            .collect()
    }

    /// Record a passing check; the first one enables the backend in the balancer.
    fn admit(&self, backend: &Backend) {
        if !self.gated {
            return;
        }
        let first = self
            .admitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(backend_key(backend));
        if first {
            if let Some(lb) = self.lb.get().and_then(Weak::upgrade) {
                lb.backends().set_enable(backend, true);
                self.table.mirror(backend, lb.backends());
            }
        }
        self.table.check_passed(backend, first);
    }

    /// A check flipped `backend`'s health: copy pingora's readiness now, not at the end of
    /// the round, so the request path's first look stops (or starts) choosing it at once.
    fn health_changed(&self, backend: &Backend) {
        if let Some(lb) = self.lb.get().and_then(Weak::upgrade) {
            self.table.mirror(backend, lb.backends());
        }
    }
}

/// Pingora's HTTP check, plus admission and 2xx acceptance.
pub(crate) struct GatedHttpCheck {
    inner: HttpHealthCheck,
    admission: std::sync::Arc<Admission>,
    observer: std::sync::Arc<PoolObserver>,
    pool: String,
}

impl GatedHttpCheck {
    /// A GET of `spec.path` with `Host: spec.host` (default: `host_default`); connect and
    /// read each bounded by `spec.timeout`; any 2xx passes. With `tls`, over TLS with the
    /// same SNI, CA and verification as the pool's requests, so a backend whose certificate
    /// fails them is marked unhealthy. Every result is also recorded in `observer` (for
    /// `/status`).
    pub(crate) fn new(
        pool: &str,
        spec: &HealthCheckSpec,
        host_default: &str,
        tls: Option<&PeerTls>,
        admission: std::sync::Arc<Admission>,
        observer: std::sync::Arc<PoolObserver>,
    ) -> Self {
        let host = spec.host.as_deref().unwrap_or(host_default);
        let mut inner = HttpHealthCheck::new(host, false);
        // validated as an absolute path in config::validate
        if let Ok(uri) = spec.path.parse() {
            inner.req.set_uri(uri);
        }
        inner.consecutive_success = spec.healthy_after;
        inner.consecutive_failure = spec.unhealthy_after;
        let opts = &mut inner.peer_template.options;
        opts.connection_timeout = Some(spec.timeout);
        opts.total_connection_timeout = Some(spec.timeout);
        opts.read_timeout = Some(spec.timeout);
        opts.write_timeout = Some(spec.timeout);
        inner.validator = Some(Box::new(accept_2xx));
        // Not `HttpHealthCheck::new(host, true)`: that sends the Host header (with its
        // port) as SNI and verifies against the platform's store (empty in a scratch
        // image), not the pool's CA.
        if let Some(tls) = tls {
            tls.apply(&mut inner.peer_template);
        }
        Self {
            inner,
            admission,
            observer,
            pool: pool.to_string(),
        }
    }
}

fn accept_2xx(resp: &ResponseHeader) -> Result<()> {
    if resp.status.is_success() {
        Ok(())
    } else {
        Error::e_explain(
            ErrorType::CustomCode("non 2xx status", resp.status.as_u16()),
            "health check",
        )
    }
}

#[async_trait]
impl HealthCheck for GatedHttpCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let result = self.inner.check(target).await;
        if result.is_ok() {
            self.admission.admit(target);
        }
        if let Some(addr) = target.addr.as_inet() {
            let error = result
                .as_ref()
                .err()
                .map(|e| e.to_string().trim().to_string());
            self.observer.record_check(*addr, error);
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, _healthy: bool) {
        self.admission.health_changed(target);
    }

    fn backend_summary(&self, target: &Backend) -> String {
        format!("upstream {} backend {}", self.pool, target.addr)
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}
