//! What the request path knows of each backend beyond pingora's health: requests in
//! flight, the outlier record, the slow-start ramp and the sticky token; and the per-pool
//! table that keeps one such state per address across discovery rounds.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pingora::lb::{Backend, Backends, Extensions};
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use super::sticky::{self, Token};
use crate::config::{OutlierSpec, UpstreamSpec};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The outlier detector's record of one backend (see `super::outlier`).
#[derive(Default)]
pub(super) struct OutlierRecord {
    /// Failed tries in a row, the first of them at `streak_started`.
    pub(super) consecutive: u32,
    pub(super) streak_started: Option<Instant>,
    /// Ejections that count towards the next one's length (reset after `max_ejection` in
    /// rotation).
    pub(super) ejections: u32,
    /// All ejections, for `/status`.
    pub(super) ejections_total: u64,
    pub(super) ejected_until: Option<Instant>,
    pub(super) returned_at: Option<Instant>,
}

/// The slow-start ramp of a newly admitted backend.
#[derive(Clone, Copy)]
struct Ramp {
    started: Instant,
    length: Duration,
}

pub(crate) struct BackendState {
    pub(crate) addr: SocketAddr,
    in_flight: AtomicUsize,
    /// The sticky cookie's value for this backend (an HMAC of its address).
    pub(crate) token: Token,
    /// Set while ejected; the hot path reads only this and `ramping`.
    pub(super) ejected: AtomicBool,
    /// A failed try in the current streak (lets a success skip the lock).
    pub(super) failing: AtomicBool,
    pub(super) outlier: Mutex<OutlierRecord>,
    ramping: AtomicBool,
    ramp: Mutex<Option<Ramp>>,
    /// Woken when the backend is marked down (health check or ejection): in-flight tries
    /// waiting for its response head give up and go elsewhere.
    down: Notify,
    /// Bumped with every down mark, so a try that started before one and had not begun
    /// waiting yet (still connecting) sees it too.
    downs: AtomicU64,
    /// Gone from the pool (set under the outlier lock): it can no longer be ejected, so
    /// it cannot hold an ejection slot nobody would free.
    pub(super) removed: AtomicBool,
    /// Ready at the last health-check round (to see it go down).
    was_ready: AtomicBool,
    /// Pingora's readiness of this backend (member, enabled, healthy), copied each time it
    /// can change ([`BackendTable::mirror`]), for the request path's first look. False
    /// until the first copy: a backend is never taken for ready before pingora says so.
    ready: AtomicBool,
    /// Seen by [`BackendTable::membership`] (a backend new to it may ramp up).
    member: AtomicBool,
}

impl BackendState {
    fn new(addr: SocketAddr, token: Token) -> Self {
        Self {
            addr,
            in_flight: AtomicUsize::new(0),
            token,
            ejected: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            outlier: Mutex::new(OutlierRecord::default()),
            ramping: AtomicBool::new(false),
            ramp: Mutex::new(None),
            down: Notify::new(),
            downs: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            was_ready: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            member: AtomicBool::new(false),
        }
    }

    /// Pingora's readiness as last copied ([`BackendTable::mirror`]).
    #[inline]
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The state discovery attached to `backend`, if any.
    #[inline]
    pub(crate) fn of(backend: &Backend) -> Option<&Arc<BackendState>> {
        backend.ext.get::<Arc<BackendState>>()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(crate) fn outlier_record(&self) -> (u64, Option<Instant>) {
        let r = lock(&self.outlier);
        (r.ejections_total, r.ejected_until)
    }

    /// Resolves when the backend is next marked down.
    pub(crate) fn went_down(&self) -> tokio::sync::futures::Notified<'_> {
        self.down.notified()
    }

    /// How many times it was marked down so far (compare with [`Self::went_down`]'s
    /// creation to see a mark that came before it).
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Ordering::Acquire)
    }

    pub(super) fn mark_down(&self) {
        self.downs.fetch_add(1, Ordering::AcqRel);
        self.down.notify_waiters();
    }

    pub(super) fn start_ramp(&self, length: Duration) {
        if length.is_zero() {
            return;
        }
        *lock(&self.ramp) = Some(Ramp {
            started: Instant::now(),
            length,
        });
        self.ramping.store(true, Ordering::Relaxed);
    }

    /// The share of a full weight this backend takes now: 1.0 outside a ramp; during one,
    /// from 10 % up to 100 % linearly (never 0, so a ramping backend is seen at all).
    pub(crate) fn ramp_share(&self) -> f64 {
        if !self.ramping.load(Ordering::Relaxed) {
            return 1.0;
        }
        let mut ramp = lock(&self.ramp);
        let Some(r) = *ramp else { return 1.0 };
        let share = r.started.elapsed().as_secs_f64() / r.length.as_secs_f64();
        if share >= 1.0 {
            *ramp = None;
            self.ramping.store(false, Ordering::Relaxed);
            return 1.0;
        }
        share.max(0.1)
    }

    /// Whether a ramping backend takes this request: a coin weighted by its share.
    #[inline]
    pub(crate) fn ramp_admits(&self) -> bool {
        !self.ramping.load(Ordering::Relaxed) || fastrand::f64() < self.ramp_share()
    }
}

/// One try in flight on a backend; counted until dropped.
pub(crate) struct InFlight(Arc<BackendState>);

impl InFlight {
    pub(crate) fn start(state: Arc<BackendState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }

    pub(crate) fn state(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Ejection metrics of one pool.
pub(crate) struct OutlierMetrics {
    pub(crate) ejections: IntCounter,
    pub(crate) ejected: IntGauge,
}

/// One pool's backend states, by address.
pub(crate) struct BackendTable {
    pub(crate) pool: String,
    states: Mutex<HashMap<SocketAddr, Arc<BackendState>>>,
    sticky_key: ring::hmac::Key,
    pub(super) outlier: Option<OutlierSpec>,
    pub(super) slow_start: Duration,
    /// With an active health check, an ejected backend returns on its first passing check
    /// after the ejection; without one, when the ejection ends.
    pub(super) returns_by_check: bool,
    /// Backends in the pool now, and how many of them are ejected.
    pub(super) members: AtomicUsize,
    pub(super) ejected_now: AtomicUsize,
    /// Set after the pool's first discovery and check: backends admitted later ramp up.
    warmed: AtomicBool,
    /// The members of the pool this one replaces in a reload (its spec changed): a backend
    /// not among them is new, and ramps up even while this pool warms up.
    earlier: Mutex<Option<std::collections::HashSet<SocketAddr>>>,
    pub(super) metrics: OutlierMetrics,
    /// Held while a readiness is read from pingora and copied ([`BackendTable::mirror`]).
    mirroring: Mutex<()>,
}

impl BackendTable {
    pub(crate) fn new(pool: &str, spec: &UpstreamSpec, metrics: OutlierMetrics) -> Self {
        Self {
            pool: pool.to_string(),
            states: Mutex::new(HashMap::new()),
            sticky_key: sticky::key(spec.sticky.as_ref()),
            outlier: spec.outlier,
            slow_start: spec.slow_start,
            returns_by_check: spec.health_check.is_some(),
            members: AtomicUsize::new(0),
            ejected_now: AtomicUsize::new(0),
            warmed: AtomicBool::new(false),
            earlier: Mutex::new(None),
            metrics,
            mirroring: Mutex::new(()),
        }
    }

    /// A pingora backend for `addr` carrying its state (the same state every round).
    pub(crate) fn backend(&self, addr: SocketAddr, weight: usize) -> Backend {
        let state = lock(&self.states)
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(BackendState::new(
                    addr,
                    sticky::token(&self.sticky_key, addr),
                ))
            })
            .clone();
        let mut ext = Extensions::new();
        ext.insert(state);
        Backend {
            addr: PSocketAddr::Inet(addr),
            weight,
            ext,
        }
    }

    /// After discovery: forget backends that left (an ejected one no longer counts), and
    /// ramp up the ones that joined a warm pool with no health check to admit them.
    pub(crate) fn membership(&self, set: &BTreeSet<Backend>) {
        let mut states = lock(&self.states);
        states.retain(|addr, state| {
            let keep = set.iter().any(|b| b.addr.as_inet() == Some(addr));
            if !keep {
                // Under the outlier lock: a try still in flight on it cannot eject it
                // after this (see `try_failed`), and only one side frees its slot.
                let _rec = lock(&state.outlier);
                state.removed.store(true, Ordering::Relaxed);
                state.ready.store(false, Ordering::Release);
                if state.ejected.swap(false, Ordering::AcqRel) {
                    self.ejected_now.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.ejected.dec();
                }
            }
            keep
        });
        self.members.store(set.len(), Ordering::Relaxed);
        for state in set.iter().filter_map(BackendState::of) {
            if !state.member.swap(true, Ordering::Relaxed)
                && !self.returns_by_check
                && self.is_newcomer(state.addr)
            {
                state.start_ramp(self.slow_start);
            }
        }
    }

    /// Whether anything can mark a backend down (a health check, outlier detection):
    /// without either, tries need not watch for it.
    pub(crate) fn marks_down(&self) -> bool {
        self.returns_by_check || self.outlier.is_some()
    }

    /// This table replaces one whose pool had `members` (a reload that rebuilt the pool).
    pub(crate) fn inherit(&self, members: impl IntoIterator<Item = SocketAddr>) {
        *lock(&self.earlier) = Some(members.into_iter().collect());
    }

    /// A backend joining now is new to the pool: the pool is warm, or it was not a member
    /// of the pool this one replaced.
    fn is_newcomer(&self, addr: SocketAddr) -> bool {
        self.warmed.load(Ordering::Relaxed)
            || lock(&self.earlier)
                .as_ref()
                .is_some_and(|e| !e.contains(&addr))
    }

    /// The pool's first discovery and check are done.
    pub(crate) fn warmed_up(&self) {
        self.warmed.store(true, Ordering::Relaxed);
    }

    /// Whether [`BackendTable::warmed_up`] was called: backends admitted from now on join
    /// a running pool (they need `healthy_after` passes, `crate::health`, and may ramp up).
    pub(crate) fn is_warm(&self) -> bool {
        self.warmed.load(Ordering::Relaxed)
    }

    /// A backend passed a health check; `admitted`: this pass admitted it (`crate::health`),
    /// the first time since it (re)appeared.
    pub(crate) fn check_passed(&self, backend: &Backend, admitted: bool) {
        let Some(state) = BackendState::of(backend) else {
            return;
        };
        state.was_ready.store(true, Ordering::Relaxed);
        if admitted && self.is_newcomer(state.addr) {
            state.start_ramp(self.slow_start);
        }
        if state.is_ejected() {
            self.return_if_due(state);
        }
    }

    /// Copy pingora's readiness of `backend`'s address into its state, for the request
    /// path's first look (`crate::pool::Pool::select`), and return it. Called wherever it
    /// can change: after each discovery update and health-check round, on each health flip
    /// and on admission. Read and stored under one lock, so that of two copies racing
    /// (discovery's and a health check's), the later store holds the later reading.
    /// One address listed twice (two weights: two pingora identities, one state) is ready
    /// only if both are.
    pub(crate) fn mirror(&self, backend: &Backend, backends: &Backends) -> bool {
        let Some(state) = BackendState::of(backend) else {
            return false;
        };
        let _copying = lock(&self.mirroring);
        let members = backends.get_backend();
        let mut listed = false;
        let mut ready = true;
        for b in members.iter().filter(|b| b.addr == backend.addr) {
            listed = true;
            ready &= backends.ready(b);
        }
        let ready = listed && ready;
        state.ready.store(ready, Ordering::Release);
        ready
    }

    /// [`BackendTable::mirror`] for every member at once (after a discovery update or a
    /// health-check round): one pass over the members, not one per member.
    pub(crate) fn mirror_all(&self, backends: &Backends) {
        let _copying = lock(&self.mirroring);
        let members = backends.get_backend();
        let mut by_address: HashMap<SocketAddr, (&Arc<BackendState>, bool)> = HashMap::new();
        for b in members.iter() {
            let Some(state) = BackendState::of(b) else {
                continue;
            };
            let ready = backends.ready(b);
            by_address
                .entry(state.addr)
                .and_modify(|(_, all)| *all &= ready)
                .or_insert((state, ready));
        }
        for (state, ready) in by_address.into_values() {
            state.ready.store(ready, Ordering::Release);
        }
    }

    /// After a health-check round: a backend that was ready and is not any more is down;
    /// its tries waiting for a response go elsewhere now.
    pub(crate) fn readiness(&self, backend: &Backend, ready: bool) {
        if let Some(state) = BackendState::of(backend) {
            if state.was_ready.swap(ready, Ordering::Relaxed) && !ready {
                state.mark_down();
            }
        }
    }

    /// Whether a request may go to `backend` now (outlier ejection, slow-start ramp;
    /// pingora's health is checked by the caller).
    #[inline]
    pub(crate) fn usable(&self, backend: &Backend, ramp: bool) -> bool {
        let Some(state) = BackendState::of(backend) else {
            return true;
        };
        // Ejected: out, unless there is no health check to bring it back and its time
        // is up (then it returns here).
        if state.is_ejected() && (self.returns_by_check || !self.return_if_due(state)) {
            return false;
        }
        !ramp || state.ramp_admits()
    }
}

/// A reload replaces a changed pool's table: its ejections leave the shared gauge with it.
impl Drop for BackendTable {
    fn drop(&mut self) {
        self.metrics
            .ejected
            .sub(self.ejected_now.load(Ordering::Acquire) as i64);
    }
}
