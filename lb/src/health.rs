//! Active HTTP health checks, and the admission gate for newly discovered backends.
//!
//! Pingora treats a backend healthy from the moment discovery sees it, so a replica that is
//! still starting would get traffic at once. With a health check configured, discovery hands
//! new backends to pingora *disabled* and passing checks enable them ([`Admission`]):
//! `healthy_after` in a row, as for a backend coming back, so a replica that passes one
//! check in a flapping start gets no traffic yet. The backends of a pool's first check round
//! (at startup, or a pool a reload builds) are the exception: one pass admits them, so the
//! pool is ready, with its backends, after that one round. Failover still covers whatever
//! slips through (e.g. a replica that dies between two checks).

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

/// How far a discovered backend is through admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Passed this many checks in a row since it (re)appeared, not enough yet.
    Passing(usize),
    Admitted,
}

/// Which discovered backends have passed enough health checks in a row since they
/// (re)appeared.
pub(crate) struct Admission {
    /// `None` when the pool has no health check: then every discovered backend is trusted.
    /// Otherwise the passes in a row that admit a backend after the pool's first round.
    healthy_after: Option<usize>,
    /// By backend key; a backend not in it has passed no check yet.
    gates: Mutex<HashMap<u64, Gate>>,
    lb: OnceLock<Weak<LoadBalancer<Selector>>>,
    /// Told of every passing check (slow start, the return of an ejected backend).
    table: std::sync::Arc<BackendTable>,
}

impl Admission {
    /// `healthy_after`: the pool's `health_check.healthy_after` (`None`: no health check).
    pub(crate) fn new(healthy_after: Option<usize>, table: std::sync::Arc<BackendTable>) -> Self {
        Self {
            healthy_after,
            gates: Mutex::new(HashMap::new()),
            lb: OnceLock::new(),
            table,
        }
    }

    /// Link to the load balancer whose backends this gate enables (set once, after building).
    pub(crate) fn attach(&self, lb: Weak<LoadBalancer<Selector>>) {
        let _ = self.lb.set(lb);
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Gate>> {
        self.gates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The enablement map discovery returns to pingora: admitted backends on, the rest off.
    /// Backends that left the set lose their admission (and their passes so far), so one
    /// that comes back is checked again before it gets traffic.
    pub(crate) fn enablement(&self, set: &BTreeSet<Backend>) -> HashMap<u64, bool> {
        if self.healthy_after.is_none() {
            return HashMap::new();
        }
        let keys: HashSet<u64> = set.iter().map(backend_key).collect();
        let mut gates = self.gates();
        gates.retain(|k, _| keys.contains(k));
        keys.into_iter()
            .map(|k| (k, gates.get(&k) == Some(&Gate::Admitted)))
            .collect()
    }

    /// Count a check of `backend` towards its admission: a pass adds one, a failure starts
    /// the count over. True when this pass admits it: `healthy_after` passes in a row, or
    /// one during the pool's first round (the table is not warm yet).
    fn record(&self, backend: &Backend, passed: bool) -> bool {
        let Some(healthy_after) = self.healthy_after else {
            return false;
        };
        let key = backend_key(backend);
        let mut gates = self.gates();
        if !passed {
            if let Some(gate @ Gate::Passing(_)) = gates.get_mut(&key) {
                *gate = Gate::Passing(0);
            }
            return false;
        }
        let needed = if self.table.is_warm() {
            healthy_after.max(1)
        } else {
            1
        };
        let gate = gates.entry(key).or_insert(Gate::Passing(0));
        match *gate {
            Gate::Admitted => false,
            Gate::Passing(n) if n + 1 >= needed => {
                *gate = Gate::Admitted;
                true
            }
            Gate::Passing(n) => {
                *gate = Gate::Passing(n + 1);
                false
            }
        }
    }

    /// Record a check's result; the pass that admits the backend enables it in the
    /// balancer.
    fn checked(&self, backend: &Backend, passed: bool) {
        if self.healthy_after.is_none() {
            return;
        }
        let admitted = self.record(backend, passed);
        if admitted {
            if let Some(lb) = self.lb.get().and_then(Weak::upgrade) {
                lb.backends().set_enable(backend, true);
                self.table.mirror(backend, lb.backends());
            }
        }
        if passed {
            self.table.check_passed(backend, admitted);
        }
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
        self.admission.checked(target, result.is_ok());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::OutlierMetrics;

    fn admission(healthy_after: usize) -> (Admission, std::sync::Arc<BackendTable>) {
        let table = std::sync::Arc::new(BackendTable::new(
            "api",
            &crate::config::tests_support::upstream_spec(),
            OutlierMetrics {
                ejections: prometheus::IntCounter::new("e", "e").unwrap(),
                ejected: prometheus::IntGauge::new("g", "g").unwrap(),
            },
        ));
        (Admission::new(Some(healthy_after), table.clone()), table)
    }

    fn enabled(a: &Admission, b: &Backend) -> bool {
        let set: BTreeSet<Backend> = [b.clone()].into_iter().collect();
        a.enablement(&set)[&backend_key(b)]
    }

    /// After the pool's first round, a new backend needs `healthy_after` passes in a row: a
    /// replica that passes one check in a flapping start gets no traffic yet.
    #[test]
    fn a_backend_joining_a_running_pool_needs_healthy_after_passes_in_a_row() {
        let (a, table) = admission(3);
        table.warmed_up();
        let b = table.backend(([127, 0, 0, 1], 1).into(), 1);
        assert!(!enabled(&a, &b));
        assert!(!a.record(&b, true));
        assert!(!a.record(&b, true));
        assert!(!a.record(&b, false), "a failure starts the count over");
        assert!(!a.record(&b, true));
        assert!(!a.record(&b, true));
        assert!(!enabled(&a, &b));
        assert!(a.record(&b, true), "the third pass in a row admits it");
        assert!(enabled(&a, &b));
        assert!(!a.record(&b, true), "admitted once");
        assert!(!a.record(&b, false));
        assert!(
            enabled(&a, &b),
            "pingora's health takes it out, not admission"
        );

        // Gone from the set, then back: admitted again only after three passes.
        assert!(a.enablement(&BTreeSet::new()).is_empty());
        assert!(!enabled(&a, &b));
        assert!(!a.record(&b, true));
        assert!(!enabled(&a, &b));
    }

    /// The pool's first round admits on one pass, so the pool is ready with its backends
    /// after that round, as at startup.
    #[test]
    fn the_first_round_admits_on_one_pass() {
        let (a, table) = admission(3);
        let b = table.backend(([127, 0, 0, 1], 1).into(), 1);
        let c = table.backend(([127, 0, 0, 1], 2).into(), 1);
        assert!(a.record(&b, true));
        assert!(!a.record(&c, false));
        table.warmed_up();
        assert!(enabled(&a, &b));
        assert!(
            !a.record(&c, true),
            "failed the first round: joins as a newcomer"
        );
    }

    #[test]
    fn without_a_health_check_nothing_is_gated() {
        let (_, table) = admission(3);
        let a = Admission::new(None, table.clone());
        let b = table.backend(([127, 0, 0, 1], 1).into(), 1);
        assert!(a.enablement(&[b.clone()].into_iter().collect()).is_empty());
        assert!(!a.record(&b, true));
    }
}
