//! `routes[].rate_limit`: at most `requests` per client per `per`, counted with
//! pingora-limits' [`Rate`] (count-min sketches over two consecutive windows of `per`).
//!
//! # What is enforced, exactly
//! A request is let through when fewer than `requests` of the client's requests are
//! estimated to have been let through in the last `per`. The estimate is the sliding-window
//! one pingora-limits documents: `previous × (1 − f) + current`, where `current` counts the
//! window in progress, `previous` the one before, and `f` is how far into the current
//! window we are. Refused requests are not counted, so a client that keeps sending gets
//! `requests` per `per` through, spread over the window rather than all at its start.
//!
//! Guarantees, given that the sketch can only over-count:
//! - no window holds more than `requests` let-through requests of one client, so no span
//!   of `per` holds more than `2 × requests` (the estimate assumes the previous window's
//!   requests were spread evenly; a client that sent them all at its end gets the rest
//!   of its quota a little early);
//! - a client is never limited late; it may be limited early when the sketch's counters
//!   are shared with other clients. Each row has [`SLOTS`] counters, so this stays
//!   small while the clients active on a route in one window are well below that number.
//!
//! The counters live as long as the route's prefix and its `per` are unchanged: a reload
//! that changes only `requests` keeps them and applies the new number to the next request.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::Result;
use pingora_limits::rate::{Rate, RateComponents};
use prometheus::IntCounter;

use crate::client_ip::ClientKey;
use crate::config::RateLimitSpec;

/// Hash rows of each sketch (pingora-limits' own default).
const HASHES: usize = 4;
/// Counters per row: 16 times pingora-limits' default of 1024, so that thousands of clients
/// active on one route in one window barely over-count each other. Two windows of
/// 4 × 16384 counters: 1 MiB per limited route.
const SLOTS: usize = 16_384;

pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

pub(crate) struct RateLimiter {
    requests: u32,
    per: Duration,
    rate: Arc<Rate>,
    /// `RateLimit-Limit` and `RateLimit-Policy` values, made once.
    limit_value: HeaderValue,
    policy_value: HeaderValue,
    /// `lb_rate_limited_total{route}`.
    pub(crate) refused: IntCounter,
}

/// The outcome for one request, and what the `RateLimit-*` headers say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    /// Requests the client may still send now.
    pub(crate) remaining: u32,
    /// Seconds until the client's count is back to zero if it sends nothing more.
    pub(crate) reset: u64,
    /// Refused only: seconds until one more request would be let through (at least 1).
    pub(crate) retry_after: u64,
}

impl RateLimiter {
    /// A limiter for `spec`; it keeps the counters of `previous` (the same route in the
    /// snapshot being replaced) when the window length is the same.
    pub(crate) fn new(
        spec: &RateLimitSpec,
        previous: Option<&RateLimiter>,
        refused: IntCounter,
    ) -> Self {
        let rate = match previous {
            Some(p) if p.per == spec.per => p.rate.clone(),
            _ => Arc::new(Rate::new_with_estimator_config(spec.per, HASHES, SLOTS)),
        };
        Self {
            requests: spec.requests,
            per: spec.per,
            rate,
            limit_value: HeaderValue::from(spec.requests),
            policy_value: HeaderValue::from_str(&format!(
                "{};w={}",
                spec.requests,
                spec.per.as_secs()
            ))
            .expect("digits and ;w= are a valid header value"),
            refused,
        }
    }

    /// Count one request of `client`, or refuse it (then it is not counted).
    pub(crate) fn check(&self, client: ClientKey) -> Verdict {
        // pingora-limits 0.9.1 asserts on its own clock arithmetic when a thread that lost
        // a window-reset race was descheduled for over a second (and overflows in a debug
        // build); such a fluke must not take the request down with it: let it through.
        let counted = catch_unwind(AssertUnwindSafe(|| {
            self.rate.observe(&client, 1);
            let parts = self.rate.rate_with(&client, |c: RateComponents| c);
            let verdict = verdict(self.requests, self.per, parts);
            if !verdict.allowed {
                self.rate.observe(&client, -1);
            }
            verdict
        }));
        match counted {
            Ok(verdict) => {
                if !verdict.allowed {
                    self.refused.inc();
                }
                verdict
            }
            Err(_) => {
                tracing::warn!(client = %client, "rate estimator failed; request let through");
                Verdict {
                    allowed: true,
                    remaining: 0,
                    reset: self.per.as_secs(),
                    retry_after: 0,
                }
            }
        }
    }

    /// `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` (draft-ietf-httpapi-
    /// ratelimit-headers-07), on every response of a limited route.
    pub(crate) fn headers(&self, verdict: Verdict, resp: &mut ResponseHeader) -> Result<()> {
        resp.insert_header(RATELIMIT_LIMIT, self.limit_value.clone())?;
        resp.insert_header(RATELIMIT_REMAINING, HeaderValue::from(verdict.remaining))?;
        resp.insert_header(RATELIMIT_RESET, HeaderValue::from(verdict.reset))?;
        resp.insert_header(RATELIMIT_POLICY, self.policy_value.clone())?;
        if !verdict.allowed {
            resp.insert_header(
                http::header::RETRY_AFTER,
                HeaderValue::from(verdict.retry_after),
            )?;
        }
        Ok(())
    }
}

/// The decision from the estimator's counts; `c.curr_samples` includes this request.
///
/// Let through when the estimate of the client's *earlier* requests in the last `per` is
/// below `requests`. (Counting this one in and asking for at most `requests` would never
/// quite fit while any of the previous window still slides out, and a client sending
/// continuously would get only `requests − 1` per window, one per two windows at 1.)
fn verdict(requests: u32, per: Duration, c: RateComponents) -> Verdict {
    let limit = f64::from(requests);
    let per = per.as_secs_f64();
    let f = c.current_interval_fraction.clamp(0.0, 1.0);
    let prev = c.prev_samples.max(0) as f64;
    let curr = c.curr_samples.max(1) as f64;
    // Before this request.
    let earlier = (curr - 1.0) + prev * (1.0 - f);
    let allowed = earlier < limit;
    // What stays counted in this window: this request only if it goes through.
    let kept = if allowed { curr } else { curr - 1.0 };
    // Back to zero: the previous window leaves the estimate when the current one ends,
    // the current one by the end of the next.
    let reset = if kept > 0.0 {
        (1.0 - f) * per + per
    } else if prev > 0.0 {
        (1.0 - f) * per
    } else {
        0.0
    };
    let retry_after = if allowed {
        0
    } else {
        let wait = if kept < limit {
            // This window has room once enough of the previous one has slid out:
            // prev × (1 − f') + kept < limit (prev > 0 here, or it would have passed).
            let f_ok = 1.0 - (limit - kept) / prev.max(1.0);
            (f_ok - f).max(0.0) * per
        } else {
            // This window is spent: into the next, where it is the previous one:
            // kept × (1 − g) < limit.
            (1.0 - f) * per + (1.0 - limit / kept) * per
        };
        // Strictly after the point where it fits, in whole seconds (the micro-second
        // absorbs float error at a whole second).
        (wait + 1e-6).floor() as u64 + 1
    };
    Verdict {
        allowed,
        remaining: if allowed {
            (limit - (earlier + 1.0)).ceil().max(0.0) as u32
        } else {
            0
        },
        reset: reset.ceil() as u64,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(prev: isize, curr: isize, f: f64) -> RateComponents {
        // `RateComponents` is non-exhaustive: build one through a real estimator, then set
        // the fields under test.
        let rate = Rate::new(Duration::from_secs(1));
        let mut c = rate.rate_with(&0u8, |c| c);
        c.prev_samples = prev;
        c.curr_samples = curr;
        c.current_interval_fraction = f;
        c
    }

    fn at(requests: u32, per: u64, prev: isize, curr: isize, f: f64) -> Verdict {
        verdict(requests, Duration::from_secs(per), parts(prev, curr, f))
    }

    #[test]
    fn a_fresh_client_gets_the_whole_quota_then_is_refused() {
        let v = at(10, 60, 0, 1, 0.0);
        assert!(v.allowed);
        assert_eq!((v.remaining, v.reset), (9, 120));
        let v = at(10, 60, 0, 10, 0.5);
        assert!(v.allowed);
        assert_eq!((v.remaining, v.reset), (0, 90));
        let v = at(10, 60, 0, 11, 0.5);
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
        // 10 kept: the window is spent; the next one takes a request as soon as it starts,
        // 30 s from now.
        assert_eq!(v.retry_after, 31);
        assert_eq!(v.reset, 90);
    }

    #[test]
    fn the_previous_window_slides_out() {
        // 10 last window, a quarter into this one: 7.5 still count, so 3 more fit.
        let v = at(10, 4, 10, 1, 0.25);
        assert!(v.allowed);
        assert_eq!(v.remaining, 2);
        assert!(at(10, 4, 10, 3, 0.25).allowed);
        assert_eq!(at(10, 4, 10, 3, 0.25).remaining, 0);
        let v = at(10, 4, 10, 4, 0.25);
        assert!(!v.allowed);
        // With 3 kept, the fourth fits once previous × (1 − f') < 7: f' = 0.3, 0.2 s away.
        assert_eq!(v.retry_after, 1);
        assert_eq!(v.reset, 7);
        // Refused with nothing kept in this window: back to zero when this one ends.
        let v = at(1, 4, 2, 1, 0.5);
        assert!(!v.allowed);
        assert_eq!((v.reset, v.retry_after), (2, 1));
    }

    #[test]
    fn a_limit_of_one_is_one_per_window() {
        // Let through at the start of a window after a full one.
        assert!(at(1, 10, 1, 1, 0.01).allowed);
        let v = at(1, 10, 0, 2, 0.9);
        assert!(!v.allowed);
        // The next window takes one as soon as it starts, in 1 s.
        assert_eq!(v.retry_after, 2);
    }

    #[test]
    fn the_limiter_counts_per_client_and_keeps_counts_across_a_new_requests_number() {
        let spec = RateLimitSpec {
            requests: 2,
            per: Duration::from_secs(60),
        };
        let counter = IntCounter::new("t", "t").expect("counter");
        let limiter = RateLimiter::new(&spec, None, counter.clone());
        let a = ClientKey::of("192.0.2.1".parse().expect("ip"));
        let b = ClientKey::of("192.0.2.2".parse().expect("ip"));
        assert!(limiter.check(a).allowed);
        assert!(limiter.check(a).allowed);
        assert!(!limiter.check(a).allowed);
        assert!(
            !limiter.check(a).allowed,
            "refused requests are not counted, but 2 are"
        );
        assert!(limiter.check(b).allowed, "another client has its own count");
        assert_eq!(counter.get(), 2);

        let more = RateLimitSpec {
            requests: 3,
            ..spec
        };
        let reloaded = RateLimiter::new(&more, Some(&limiter), counter.clone());
        assert!(reloaded.check(a).allowed, "the third of 3");
        assert!(!reloaded.check(a).allowed);
        let other_window = RateLimitSpec {
            per: Duration::from_secs(30),
            ..more
        };
        let fresh = RateLimiter::new(&other_window, Some(&reloaded), counter);
        assert!(
            fresh.check(a).allowed,
            "a new window length starts from zero"
        );
    }

    #[test]
    fn headers_follow_the_draft() {
        let spec = RateLimitSpec {
            requests: 5,
            per: Duration::from_secs(10),
        };
        let limiter = RateLimiter::new(&spec, None, IntCounter::new("t", "t").expect("c"));
        let mut resp = ResponseHeader::build(429, None).expect("resp");
        let v = Verdict {
            allowed: false,
            remaining: 0,
            reset: 12,
            retry_after: 3,
        };
        limiter.headers(v, &mut resp).expect("headers");
        let h = |n: &str| {
            resp.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(h("ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(h("ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(h("ratelimit-reset").as_deref(), Some("12"));
        assert_eq!(h("ratelimit-policy").as_deref(), Some("5;w=10"));
        assert_eq!(h("retry-after").as_deref(), Some("3"));
    }
}
