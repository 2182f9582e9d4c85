//! Passive outlier ejection: what the request path sees of a backend (gateway errors,
//! refused or failed connections, resets, timeouts) takes it out of rotation before an
//! active check would, since passing `/ready` is not the same as serving well.
//!
//! - Which answers count (`failures`): by default only 502, 503 and 504, like Envoy's
//!   `consecutive_gateway_failure` (nginx's passive checks count only errors and timeouts).
//!   A 500 usually says the request hit a bug, not that the backend is broken, and a client
//!   that can provoke one (a malformed input) could otherwise eject half a healthy pool and
//!   keep it out. `failures: 5xx` counts every 5xx.
//! - `consecutive_failures` failed tries in a row, the first and last within `window`,
//!   eject the backend for `base_ejection`, doubled on each repeat up to `max_ejection`;
//!   the repeat count starts over once a backend has stayed in rotation for
//!   `max_ejection`.
//! - At most `max_ejected_percent` of the pool (rounded down) is ejected at once, and never
//!   every backend: a pool of one is never ejected.
//! - An ejected backend returns on its first passing active health check after the
//!   ejection ends (or, without a health check, when it ends), ramping up if the pool has
//!   `slow_start`.
//! - Ejecting it wakes the tries waiting for its response head, which go elsewhere.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::backend_state::{lock, BackendState, BackendTable};

impl BackendTable {
    /// A try on `state` got an answer with `status`: it counts against the backend if the
    /// pool's `outlier.failures` says so (by default 502, 503, 504); any other answer ends
    /// the streak. The one place every request path's answers are judged.
    #[inline]
    pub(crate) fn try_answered(&self, state: &BackendState, status: u16) {
        match self.outlier {
            Some(spec) if spec.failures.counts(status) => {
                self.try_failed(state);
            }
            _ => self.try_succeeded(state),
        }
    }

    /// A try on `state` got an answer that does not count as a failure: the streak (if
    /// any) ends.
    #[inline]
    pub(crate) fn try_succeeded(&self, state: &BackendState) {
        if state.failing.load(Ordering::Relaxed) {
            state.failing.store(false, Ordering::Relaxed);
            lock(&state.outlier).consecutive = 0;
        }
    }

    /// A try on `state` failed (a counted answer, connect failure, reset, timeout); true if
    /// that ejected it.
    pub(crate) fn try_failed(&self, state: &BackendState) -> bool {
        let Some(spec) = self.outlier else {
            return false;
        };
        let now = Instant::now();
        let mut rec = lock(&state.outlier);
        let in_window = rec
            .streak_started
            .is_some_and(|t| now.duration_since(t) <= spec.window);
        if rec.consecutive == 0 || !in_window {
            rec.consecutive = 0;
            rec.streak_started = Some(now);
        }
        rec.consecutive += 1;
        state.failing.store(true, Ordering::Relaxed);
        if rec.consecutive < spec.consecutive_failures
            || state.is_ejected()
            || state.removed.load(Ordering::Relaxed)
        {
            return false;
        }
        // The cap: a share of the pool, and never all of it.
        let members = self.members.load(Ordering::Relaxed);
        let allowed =
            (members * spec.max_ejected_percent as usize / 100).min(members.saturating_sub(1));
        let took_slot = self
            .ejected_now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < allowed).then_some(n + 1)
            })
            .is_ok();
        if !took_slot {
            tracing::debug!(upstream = %self.pool, backend = %state.addr, "outlier not ejected: the pool's ejection cap is reached");
            return false;
        }
        if rec
            .returned_at
            .is_some_and(|t| now.duration_since(t) >= spec.max_ejection)
        {
            rec.ejections = 0;
        }
        let factor = 1u32 << rec.ejections.min(16);
        let length = spec
            .base_ejection
            .saturating_mul(factor)
            .min(spec.max_ejection);
        rec.ejections += 1;
        rec.ejections_total += 1;
        rec.ejected_until = Some(crate::deadline::after(now, length));
        rec.consecutive = 0;
        state.failing.store(false, Ordering::Relaxed);
        state.ejected.store(true, Ordering::Relaxed);
        drop(rec);
        self.metrics.ejections.inc();
        self.metrics.ejected.inc();
        tracing::warn!(
            upstream = %self.pool, backend = %state.addr, seconds = length.as_secs_f64(),
            failures = spec.consecutive_failures,
            "backend ejected: it failed every try in a row"
        );
        state.mark_down();
        true
    }

    /// End `state`'s ejection if its time is up; true if it is back (or was not out).
    pub(super) fn return_if_due(&self, state: &BackendState) -> bool {
        let mut rec = lock(&state.outlier);
        if !state.is_ejected() {
            return true;
        }
        let now = Instant::now();
        if rec.ejected_until.is_some_and(|t| now < t) {
            return false;
        }
        rec.ejected_until = None;
        rec.returned_at = Some(now);
        let was_ejected = state.ejected.swap(false, Ordering::AcqRel);
        drop(rec);
        if !was_ejected {
            return true;
        }
        self.ejected_now.fetch_sub(1, Ordering::AcqRel);
        self.metrics.ejected.dec();
        state.start_ramp(self.slow_start);
        tracing::info!(upstream = %self.pool, backend = %state.addr, "ejected backend back in rotation");
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use prometheus::{IntCounter, IntGauge};

    use super::super::backend_state::OutlierMetrics;
    use super::*;
    use crate::config::{OutlierFailures, OutlierSpec};

    fn table(n: u16, spec: OutlierSpec) -> (BackendTable, Vec<pingora::lb::Backend>) {
        let mut up = crate::config::tests_support::upstream_spec();
        up.outlier = Some(spec);
        let t = BackendTable::new(
            "api",
            &up,
            OutlierMetrics {
                ejections: IntCounter::new("e", "e").unwrap(),
                ejected: IntGauge::new("g", "g").unwrap(),
            },
        );
        let backends: Vec<_> = (0..n)
            .map(|i| t.backend(([127, 0, 0, 1], 1000 + i).into(), 1))
            .collect();
        t.membership(&backends.iter().cloned().collect::<BTreeSet<_>>());
        (t, backends)
    }

    fn spec(failures: u32, percent: u32) -> OutlierSpec {
        OutlierSpec {
            failures: OutlierFailures::Gateway,
            consecutive_failures: failures,
            window: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: percent,
        }
    }

    fn state(b: &pingora::lb::Backend) -> &BackendState {
        BackendState::of(b).unwrap()
    }

    #[test]
    fn n_failures_in_a_row_eject_and_a_success_resets_the_streak() {
        let (t, b) = table(3, spec(3, 50));
        assert!(!t.try_failed(state(&b[0])));
        assert!(!t.try_failed(state(&b[0])));
        t.try_succeeded(state(&b[0]));
        assert!(!t.try_failed(state(&b[0])));
        assert!(!t.try_failed(state(&b[0])));
        assert!(t.try_failed(state(&b[0])), "third in a row ejects");
        assert!(!t.usable(&b[0], false));
        assert!(t.usable(&b[1], false));
        assert_eq!(t.metrics.ejected.get(), 1);
        assert_eq!(t.metrics.ejections.get(), 1);
    }

    /// By default only gateway errors count: a client that can make the application answer
    /// 500 cannot eject a healthy backend; with `failures: 5xx`, any 5xx counts.
    #[test]
    fn by_default_only_gateway_errors_count() {
        let (t, b) = table(3, spec(3, 50));
        for _ in 0..10 {
            t.try_answered(state(&b[0]), 500);
        }
        assert!(t.usable(&b[0], false), "500s do not eject");
        assert_eq!(t.metrics.ejections.get(), 0);
        t.try_answered(state(&b[1]), 503);
        t.try_answered(state(&b[1]), 500);
        t.try_answered(state(&b[1]), 502);
        t.try_answered(state(&b[1]), 504);
        assert!(
            t.usable(&b[1], false),
            "a 500 ends the streak like any answer"
        );
        t.try_answered(state(&b[1]), 503);
        assert!(!t.usable(&b[1], false), "502, 504, 503 in a row eject");

        let mut any = spec(3, 50);
        any.failures = OutlierFailures::Any5xx;
        let (t, b) = table(3, any);
        for _ in 0..3 {
            t.try_answered(state(&b[0]), 500);
        }
        assert!(!t.usable(&b[0], false), "with `failures: 5xx`, 500s eject");
        for _ in 0..10 {
            t.try_answered(state(&b[1]), 404);
        }
        assert!(t.usable(&b[1], false));
    }

    #[test]
    fn the_cap_keeps_most_of_the_pool_and_never_all_of_it() {
        let (t, b) = table(4, spec(1, 50));
        assert!(t.try_failed(state(&b[0])));
        assert!(t.try_failed(state(&b[1])));
        assert!(!t.try_failed(state(&b[2])), "50 % of 4 is 2");
        let (t, b) = table(2, spec(1, 100));
        assert!(t.try_failed(state(&b[0])));
        assert!(!t.try_failed(state(&b[1])), "never all");
        let (t, b) = table(1, spec(1, 100));
        assert!(
            !t.try_failed(state(&b[0])),
            "a pool of one is never ejected"
        );
    }

    #[test]
    fn an_ejection_ends_by_time_without_a_health_check_and_grows_on_repeat() {
        let mut s = spec(1, 50);
        s.base_ejection = Duration::from_millis(1);
        s.max_ejection = Duration::from_secs(300);
        let (t, b) = table(2, s);
        assert!(t.try_failed(state(&b[0])));
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.usable(&b[0], false), "returns when the ejection ends");
        assert_eq!(t.metrics.ejected.get(), 0);
        assert!(t.try_failed(state(&b[0])));
        let until = state(&b[0]).outlier_record().1.unwrap();
        assert!(until > Instant::now(), "the second ejection lasts 2 ms");
        assert_eq!(state(&b[0]).outlier_record().0, 2);
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_eject() {
        let mut s = spec(2, 50);
        s.window = Duration::from_millis(1);
        let (t, b) = table(2, s);
        assert!(!t.try_failed(state(&b[0])));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!t.try_failed(state(&b[0])), "the streak started again");
    }

    #[test]
    fn leaving_the_pool_frees_the_ejection_slot() {
        let (t, b) = table(3, spec(1, 50));
        assert!(t.try_failed(state(&b[0])));
        t.membership(&b[1..].iter().cloned().collect());
        assert_eq!(t.ejected_now.load(Ordering::Relaxed), 0);
        assert_eq!(t.metrics.ejected.get(), 0);
        // A try still in flight on the removed backend cannot eject it any more.
        assert!(!t.try_failed(state(&b[0])));
        assert_eq!(t.ejected_now.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_table_takes_its_ejections_off_the_gauge() {
        let (t, b) = table(3, spec(1, 50));
        let gauge = t.metrics.ejected.clone();
        assert!(t.try_failed(state(&b[0])));
        assert_eq!(gauge.get(), 1);
        drop(t);
        assert_eq!(gauge.get(), 0);
    }
}
