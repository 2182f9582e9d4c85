//! `routes[].rate_limit`: at most `requests` per client per `per`, counted exactly per
//! client over two consecutive windows of `per`, in a bounded table of the lb's own.
//!
//! # What is enforced, exactly
//! A request is let through when fewer than `requests` of the client's requests were let
//! through in the last `per`, estimated the sliding-window way: `previous × (1 − f) +
//! current`, where `current` counts the window in progress, `previous` the one before, and
//! `f` is how far into the current window we are. Refused requests are not counted, so a
//! client that keeps sending gets `requests` per `per` through, spread over the window
//! rather than all at its start.
//!
//! Guarantees, for every client the table tracks:
//! - no window holds more than `requests` let-through requests of one client, so no span
//!   of `per` holds more than `2 × requests` (the estimate assumes the previous window's
//!   requests were spread evenly; a client that sent them all at its end gets the rest
//!   of its quota a little early);
//! - one client's count is its own: no other client can make it be limited, early or late.
//!
//! # The bound
//! Each route tracks at most [`MAX_CLIENTS`] distinct clients per window, so that a
//! key-rotating client (one IPv6 /48 holds 65,536 /64 keys) cannot grow the table without
//! end (memory: at most 6.3 MiB per limited route, see [`MAX_CLIENTS`]). A client that
//! is new in a window when its shard of the table is full is let through uncounted
//! (availability first: whoever rotates keys is unlimited anyway), counted in
//! `lb_rate_limit_untracked_total{route}` and reported by a WARN at most once a minute:
//! the limit is then not enforced for everyone. Clients already tracked keep their limit.
//!
//! The table lives as long as the route's prefix and its `per` are unchanged: a reload
//! that changes only `requests` keeps it and applies the new number to the next request.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::Result;
use prometheus::IntCounter;

use crate::client_ip::ClientKey;
use crate::config::RateLimitSpec;
use crate::per_thread::lock;

/// Shards of a route's table, each behind its own lock: requests of different clients
/// rarely wait for each other.
const SHARDS: usize = 64;
/// Clients one shard tracks per window: what a hash table of 2,048 buckets holds at its
/// 7/8 load, so a full shard never grows its table.
const SHARD_CLIENTS: usize = 1_792;
/// Distinct clients tracked per route and window (114,688). Each window's maps take at most
/// 64 × 2,048 buckets of 25 bytes (key, count, control byte): 3.1 MiB, so a limited route
/// holds at most 6.3 MiB, allocated as clients arrive.
const MAX_CLIENTS: usize = SHARDS * SHARD_CLIENTS;
/// At most one WARN per route this often about clients let through untracked.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The metrics of one limited route.
pub(crate) struct Counters {
    /// `lb_rate_limited_total{route}`.
    pub(crate) refused: IntCounter,
    /// `lb_rate_limit_untracked_total{route}`.
    pub(crate) untracked: IntCounter,
}

pub(crate) struct RateLimiter {
    /// The route's prefix, for the untracked-client WARN.
    route: String,
    requests: u32,
    per: Duration,
    table: Arc<Table>,
    /// `RateLimit-Limit` and `RateLimit-Policy` values, made once.
    limit_value: HeaderValue,
    policy_value: HeaderValue,
    counters: Counters,
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

/// The counts of one route, shared by the limiters of successive snapshots while `per`
/// stays the same.
struct Table {
    per: Duration,
    /// Window `n` is `[epoch + n × per, epoch + (n + 1) × per)`.
    epoch: Instant,
    /// Picks a client's shard. Its own random key, independent of the shards' tables
    /// (which would otherwise see keys whose hashes share bits), and unknown to clients,
    /// who therefore cannot crowd one shard.
    shard_of: RandomState,
    shards: Box<[Shard]>,
    /// [`SHARD_CLIENTS`], smaller in tests.
    shard_clients: usize,
    /// Nanoseconds after `epoch` before which no other untracked-client WARN is logged.
    next_warn: AtomicU64,
}

/// One lock per shard, each on its own cache lines.
#[repr(align(64))]
struct Shard(Mutex<Windows>);

/// The exact counts of a shard's clients in the window in progress and the one before.
/// Both maps only ever grow or are cleared, so a map never holds more buckets than its
/// largest client count needs.
struct Windows {
    /// The number of the window `current` counts.
    window: u64,
    current: HashMap<ClientKey, u32>,
    previous: HashMap<ClientKey, u32>,
}

/// What a request did to the table.
enum Outcome {
    Counted(Verdict),
    /// Let through uncounted: new in this window, and its shard is full.
    Untracked(Verdict),
}

impl RateLimiter {
    /// A limiter for `spec` on the route `route`; it keeps the counts of `previous` (the
    /// same route in the snapshot being replaced) when the window length is the same.
    pub(crate) fn new(
        route: &str,
        spec: &RateLimitSpec,
        previous: Option<&RateLimiter>,
        counters: Counters,
    ) -> Self {
        let table = match previous {
            Some(p) if p.per == spec.per => p.table.clone(),
            _ => Arc::new(Table::new(spec.per, SHARD_CLIENTS, Instant::now())),
        };
        Self::with_table(route, spec, table, counters)
    }

    fn with_table(
        route: &str,
        spec: &RateLimitSpec,
        table: Arc<Table>,
        counters: Counters,
    ) -> Self {
        Self {
            route: route.to_string(),
            requests: spec.requests,
            per: spec.per,
            table,
            limit_value: HeaderValue::from(spec.requests),
            policy_value: HeaderValue::from_str(&format!(
                "{};w={}",
                spec.requests,
                spec.per.as_secs()
            ))
            .expect("digits and ;w= are a valid header value"),
            counters,
        }
    }

    /// Count one request of `client`, or refuse it (then it is not counted).
    pub(crate) fn check(&self, client: ClientKey) -> Verdict {
        self.check_at(client, Instant::now())
    }

    /// [`RateLimiter::check`] at `now`, which may be a little earlier than a `now` another
    /// thread has already counted with.
    fn check_at(&self, client: ClientKey, now: Instant) -> Verdict {
        match self.table.count(client, now, self.requests) {
            Outcome::Counted(verdict) => {
                if !verdict.allowed {
                    self.counters.refused.inc();
                }
                verdict
            }
            Outcome::Untracked(verdict) => {
                self.counters.untracked.inc();
                if self.table.may_warn(now) {
                    tracing::warn!(
                        route = %self.route,
                        max_clients = MAX_CLIENTS,
                        untracked_total = self.counters.untracked.get(),
                        "rate_limit table full: new clients are let through without a limit \
                         (lb_rate_limit_untracked_total)"
                    );
                }
                verdict
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

impl Table {
    fn new(per: Duration, shard_clients: usize, epoch: Instant) -> Self {
        Self {
            per,
            epoch,
            shard_of: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Shard(Mutex::new(Windows {
                        window: 0,
                        current: HashMap::new(),
                        previous: HashMap::new(),
                    }))
                })
                .collect(),
            shard_clients,
            next_warn: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since `epoch` (0 before it; saturated after 584 years).
    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The window `now` falls in, and how far into it `now` is (0 to 1).
    fn window_at(&self, now: Instant) -> (u64, f64) {
        let per = u64::try_from(self.per.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let t = self.nanos(now);
        (t / per, (t % per) as f64 / per as f64)
    }

    /// Decide on one request of `client` with a quota of `requests`, and count it if it
    /// goes through: one lock, and one lookup in each window's map.
    fn count(&self, client: ClientKey, now: Instant, requests: u32) -> Outcome {
        let (window, f) = self.window_at(now);
        // The remainder is below SHARDS, so it fits a usize.
        let shard = (self.shard_of.hash_one(client) % SHARDS as u64) as usize;
        let Some(Shard(shard)) = self.shards.get(shard) else {
            return Outcome::Counted(verdict(requests, self.per, 0, 1, f));
        };
        let mut w = lock(shard);
        let f = w.roll(window, f);
        let previous = w.previous.get(&client).copied().unwrap_or(0);
        if let Some(current) = w.current.get_mut(&client) {
            let v = verdict(requests, self.per, previous, current.saturating_add(1), f);
            if v.allowed {
                *current = current.saturating_add(1);
            }
            return Outcome::Counted(v);
        }
        let v = verdict(requests, self.per, previous, 1, f);
        if !v.allowed {
            Outcome::Counted(v)
        } else if w.current.len() >= self.shard_clients {
            // Not `entry()`: a vacant entry reserves room first, which would grow the map.
            Outcome::Untracked(v)
        } else {
            w.current.insert(client, 1);
            Outcome::Counted(v)
        }
    }

    /// Whether an untracked-client WARN may be logged at `now` (then none for
    /// [`WARN_EVERY`]): one thread wins the exchange.
    fn may_warn(&self, now: Instant) -> bool {
        let t = self.nanos(now);
        let next = self.next_warn.load(Ordering::Relaxed);
        let after = u64::try_from(WARN_EVERY.as_nanos()).unwrap_or(u64::MAX);
        t >= next
            && self
                .next_warn
                .compare_exchange(
                    next,
                    t.saturating_add(after),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

impl Windows {
    /// Move on to `window` if it is later than the one counted, and give the fraction of
    /// the window to estimate with. A `now` read before another thread moved the shard on
    /// counts at the start of the shard's window: no client ever gets its counts dropped
    /// by a late clock reading.
    fn roll(&mut self, window: u64, f: f64) -> f64 {
        if window < self.window {
            return 0.0;
        }
        if window > self.window {
            if window - self.window == 1 {
                std::mem::swap(&mut self.previous, &mut self.current);
            } else {
                self.previous.clear();
            }
            // Keeps the buckets: the next window likely sees as many clients.
            self.current.clear();
            self.window = window;
        }
        f
    }
}

/// The decision from the client's counts: `prev` in the previous window, `curr` in the
/// current one including this request, `f` of the current window gone.
///
/// Let through when the estimate of the client's *earlier* requests in the last `per` is
/// below `requests`. (Counting this one in and asking for at most `requests` would never
/// quite fit while any of the previous window still slides out, and a client sending
/// continuously would get only `requests − 1` per window, one per two windows at 1.)
fn verdict(requests: u32, per: Duration, prev: u32, curr: u32, f: f64) -> Verdict {
    let limit = f64::from(requests);
    let per = per.as_secs_f64();
    let f = f.clamp(0.0, 1.0);
    let prev = f64::from(prev);
    let curr = f64::from(curr.max(1));
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
    use std::net::Ipv4Addr;

    use super::*;

    fn at(requests: u32, per: u64, prev: u32, curr: u32, f: f64) -> Verdict {
        verdict(requests, Duration::from_secs(per), prev, curr, f)
    }

    fn counters() -> Counters {
        Counters {
            refused: IntCounter::new("refused", "t").expect("counter"),
            untracked: IntCounter::new("untracked", "t").expect("counter"),
        }
    }

    fn spec(requests: u32, per: u64) -> RateLimitSpec {
        RateLimitSpec {
            requests,
            per: Duration::from_secs(per),
        }
    }

    /// Distinct IPv4 clients 10.0.0.0, 10.0.0.1, ...
    fn clients(n: u32) -> Vec<ClientKey> {
        (0..n)
            .map(|i| ClientKey::of(Ipv4Addr::from(0x0a00_0000 + i).into()))
            .collect()
    }

    /// A limiter whose table starts at `epoch` and tracks `shard_clients` per shard.
    fn limiter_at(spec: &RateLimitSpec, shard_clients: usize, epoch: Instant) -> RateLimiter {
        let table = Arc::new(Table::new(spec.per, shard_clients, epoch));
        RateLimiter::with_table("/t", spec, table, counters())
    }

    fn tracked(limiter: &RateLimiter) -> usize {
        limiter
            .table
            .shards
            .iter()
            .map(|Shard(s)| lock(s).current.len())
            .sum()
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

    /// The count-min sketch this replaced refused nearly all of these: 20,000 clients over
    /// 16,384 counters per row leave most counters at 1 or more.
    #[test]
    fn twenty_thousand_clients_each_get_their_first_request_through() {
        let refused = IntCounter::new("t", "t").expect("counter");
        let untracked = IntCounter::new("u", "u").expect("counter");
        let counters = Counters {
            refused: refused.clone(),
            untracked: untracked.clone(),
        };
        let limiter = RateLimiter::new("/login", &spec(1, 3600), None, counters);
        let clients = clients(20_000);
        let first_refused = clients
            .iter()
            .filter(|&&c| !limiter.check(c).allowed)
            .count();
        assert_eq!(first_refused, 0, "first requests refused");
        assert!(!limiter.check(clients[0]).allowed, "a second request is");
        assert!(!limiter.check(clients[19_999]).allowed);
        assert_eq!(refused.get(), 2);
        assert_eq!(untracked.get(), 0);
        assert_eq!(tracked(&limiter), 20_000);
    }

    #[test]
    fn the_limiter_counts_per_client_and_keeps_counts_across_a_new_requests_number() {
        let refused = IntCounter::new("t", "t").expect("counter");
        let counters = || Counters {
            refused: refused.clone(),
            untracked: IntCounter::new("u", "u").expect("counter"),
        };
        let limiter = RateLimiter::new("/t", &spec(2, 60), None, counters());
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
        assert_eq!(refused.get(), 2);

        let reloaded = RateLimiter::new("/t", &spec(3, 60), Some(&limiter), counters());
        assert!(reloaded.check(a).allowed, "the third of 3");
        assert!(!reloaded.check(a).allowed);
        let lowered = RateLimiter::new("/t", &spec(1, 60), Some(&reloaded), counters());
        assert!(!lowered.check(b).allowed, "b's one request is kept");
        let fresh = RateLimiter::new("/t", &spec(3, 30), Some(&lowered), counters());
        assert!(
            fresh.check(a).allowed,
            "a new window length starts from zero"
        );
    }

    #[test]
    fn windows_roll_over_on_the_clock() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let limiter = limiter_at(&spec(2, 10), SHARD_CLIENTS, t0);
        let a = clients(1)[0];
        assert!(limiter.check_at(a, s(0.0)).allowed);
        assert!(limiter.check_at(a, s(1.0)).allowed);
        let v = limiter.check_at(a, s(2.0));
        assert!(!v.allowed);
        // Spent: the next window (8 s away) is where it fits, once 2 × (1 − g) < 2.
        assert_eq!(v.retry_after, 9);
        // Window 1 starts with the 2 of window 0 in full, and lets one through halfway.
        assert!(!limiter.check_at(a, s(10.0)).allowed);
        assert!(limiter.check_at(a, s(15.0)).allowed);
        assert!(!limiter.check_at(a, s(15.0)).allowed);
        // Window 2, halfway: window 1's one counts for a half, so two more fit.
        let v = limiter.check_at(a, s(25.0));
        assert!(v.allowed);
        assert_eq!(v.remaining, 1);
        assert!(limiter.check_at(a, s(25.0)).allowed);
        assert!(!limiter.check_at(a, s(25.0)).allowed);
        // Two windows later nothing of window 2 is left.
        assert!(limiter.check_at(a, s(40.0)).allowed);
        assert!(limiter.check_at(a, s(40.0)).allowed);
        // A clock read before window 4 began (by a thread that lost the lock to the one
        // that moved on) counts in window 4 and drops nothing.
        let v = limiter.check_at(a, s(39.9));
        assert!(!v.allowed);
        assert!(!limiter.check_at(a, s(41.0)).allowed);
        // A `now` before the table's start counts too.
        assert!(
            !limiter
                .check_at(a, t0.checked_sub(Duration::from_secs(1)).unwrap_or(t0))
                .allowed
        );
        assert_eq!(limiter.counters.refused.get(), 7);
    }

    #[test]
    fn a_full_table_lets_new_clients_through_and_counts_them() {
        let t0 = Instant::now();
        // One client per shard.
        let limiter = limiter_at(&spec(1, 60), 1, t0);
        let clients = clients(1_000);
        assert!(clients.iter().all(|&c| limiter.check_at(c, t0).allowed));
        let held = tracked(&limiter);
        assert!(held > 0 && held <= SHARDS, "{held} tracked");
        let untracked = limiter.counters.untracked.get();
        assert_eq!(untracked, (1_000 - held) as u64);
        // Tracked clients keep their limit; untracked ones are let through again, counted.
        let again: Vec<bool> = clients
            .iter()
            .map(|&c| limiter.check_at(c, t0).allowed)
            .collect();
        assert_eq!(again.iter().filter(|&&ok| !ok).count(), held);
        assert_eq!(limiter.counters.refused.get(), held as u64);
        assert_eq!(limiter.counters.untracked.get(), 2 * untracked);
        // Two windows on, both are empty and new clients are tracked again.
        let later = t0 + Duration::from_secs(120);
        let fresh = ClientKey::of("2001:db8::1".parse().expect("ip"));
        assert!(limiter.check_at(fresh, later).allowed);
        assert!(!limiter.check_at(fresh, later).allowed);
        assert_eq!(limiter.counters.untracked.get(), 2 * untracked);
        // One WARN a minute at most.
        assert!(!limiter.table.may_warn(t0));
        assert!(limiter.table.may_warn(t0 + Duration::from_secs(61)));
        assert!(!limiter.table.may_warn(t0 + Duration::from_secs(62)));
    }

    /// The memory the README states: a shard's map at its bound still has 2,048 buckets of
    /// 24-byte entries.
    #[test]
    fn a_full_shard_keeps_its_table_size() {
        assert_eq!(MAX_CLIENTS, 114_688);
        assert_eq!(std::mem::size_of::<(ClientKey, u32)>(), 24);
        let mut map = HashMap::new();
        for c in clients(SHARD_CLIENTS as u32) {
            map.insert(c, 1u32);
        }
        assert_eq!(map.capacity(), SHARD_CLIENTS, "2,048 buckets at 7/8");
    }

    #[test]
    fn headers_follow_the_draft() {
        let limiter = RateLimiter::new("/t", &spec(5, 10), None, counters());
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
