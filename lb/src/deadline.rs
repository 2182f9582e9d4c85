//! Deadlines from configured durations: `now + d` that cannot panic.
//!
//! Every duration key has a maximum (`config::validate`), so the sum always fits. This is
//! the second line: `Instant + Duration` panics on overflow, and on the request path that
//! would be a panic per request, so a key added one day without a maximum must not bring
//! that back. A sum that does not fit becomes a far-future deadline (one that never fires,
//! which is what an absurdly long timeout means).

use std::time::Duration;

/// About 30 years: tokio's own "never" for a sleep that does not fit.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A point in time that a duration can be added to without panicking.
pub(crate) trait Instant: Copy {
    fn checked_add(self, d: Duration) -> Option<Self>;
}

impl Instant for std::time::Instant {
    #[inline]
    fn checked_add(self, d: Duration) -> Option<Self> {
        std::time::Instant::checked_add(&self, d)
    }
}

impl Instant for tokio::time::Instant {
    #[inline]
    fn checked_add(self, d: Duration) -> Option<Self> {
        tokio::time::Instant::checked_add(&self, d)
    }
}

/// `now + d`, or a far-future instant when that does not fit.
#[inline]
pub(crate) fn after<I: Instant>(now: I, d: Duration) -> I {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        // Unreachable (30 years always fit after a monotonic clock reading); `now` expires
        // at once rather than panicking.
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_that_fits_is_added() {
        let now = std::time::Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(30)),
            now + Duration::from_secs(30)
        );
        let now = tokio::time::Instant::now();
        assert_eq!(
            after(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
    }

    #[test]
    fn a_duration_that_does_not_fit_gives_a_far_future_deadline() {
        // `10000000000000000000s`, as `timeouts.read` once let through: `now + d` panics.
        let huge = Duration::from_secs(10_000_000_000_000_000_000);
        assert!(std::time::Instant::now().checked_add(huge).is_none());
        for d in [huge, Duration::MAX] {
            let now = std::time::Instant::now();
            assert_eq!(after(now, d), now + FAR_FUTURE);
            let now = tokio::time::Instant::now();
            assert_eq!(after(now, d), now + FAR_FUTURE);
        }
    }
}
