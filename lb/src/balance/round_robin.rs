//! Smooth weighted round robin: nginx's order, so that weights 5:1:1 go
//! `a a b a c a a`, not `a a a a a b c` (pingora's `Weighted` repeats each backend
//! `weight` times in a row, which sends bursts to the heavy one).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;

use super::rest::Offered;

pub(crate) struct SmoothRoundRobin {
    backends: Box<[Backend]>,
    /// One full cycle: each backend's index, `weight / gcd` times, interleaved.
    order: Box<[u16]>,
    next: AtomicUsize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SmoothRoundRobin {
    /// The cycle is built once per membership change. Weights are reduced by their common
    /// divisor first; config caps a weight at 1000, so a cycle stays small.
    pub(crate) fn build(set: &BTreeSet<Backend>) -> Self {
        let backends: Box<[Backend]> = set.iter().take(u16::MAX as usize).cloned().collect();
        let divisor = backends.iter().map(|b| b.weight.max(1)).fold(0, gcd).max(1);
        let weights: Vec<i64> = backends
            .iter()
            .map(|b| (b.weight.max(1) / divisor) as i64)
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            order.push(best as u16);
        }
        Self {
            backends,
            order: order.into(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next turn of the shared counter: its number and whose turn it is.
    fn turn(&self) -> (usize, usize) {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let i = self
            .order
            .get(turn % self.order.len().max(1))
            .map_or(0, |&i| i as usize);
        (turn, i)
    }

    pub(crate) fn iter(self: &Arc<Self>) -> RoundRobinIter {
        RoundRobinIter {
            rr: self.clone(),
            first: self.turn().1,
            started: false,
            fresh: 0,
            last_turn: 0,
            offered: Offered::default(),
        }
    }
}

/// The backend whose turn it is; when it is turned down, the backends of fresh turns of the
/// shared counter (at most one per backend); then every backend not offered yet, once each
/// ([`Offered`]). A fresh turn rather than the next in the list: a backend turned down on
/// every turn (down, ejected, not admitted, losing its slow-start coin) then leaves its
/// share to the others by weight, as if it were not in the cycle, instead of handing all of
/// it to its neighbour.
pub(crate) struct RoundRobinIter {
    rr: Arc<SmoothRoundRobin>,
    /// The first candidate (the turn's backend), and whether it was offered.
    first: usize,
    started: bool,
    /// Fresh turns taken so far.
    fresh: usize,
    /// The last fresh turn's number (where the walk over the rest starts, by weight).
    last_turn: usize,
    offered: Offered,
}

impl BackendIter for RoundRobinIter {
    fn next(&mut self) -> Option<&Backend> {
        let backends = &self.rr.backends;
        let n = backends.len();
        if n == 0 {
            return None;
        }
        if !self.started {
            self.started = true;
            return backends.get(self.first);
        }
        if self.fresh == 0 {
            // Recorded only now: the common case, where the first is taken, costs nothing.
            self.offered.offer(self.first, n);
        }
        while self.fresh < n {
            self.fresh += 1;
            let (turn, i) = self.rr.turn();
            self.last_turn = turn;
            if self.offered.offer(i, n) {
                return backends.get(i);
            }
        }
        let turn = self.last_turn as u64;
        let i = self.offered.rest(backends, |_| turn)?;
        backends.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(weights: &[usize]) -> BTreeSet<Backend> {
        super::super::testing::weighted(weights)
    }

    fn firsts(rr: &Arc<SmoothRoundRobin>, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let mut it = rr.iter();
                let b = it.next().unwrap();
                b.addr.as_inet().unwrap().port() - 1000
            })
            .collect()
    }

    #[test]
    fn weights_interleave_like_nginx() {
        let rr = Arc::new(SmoothRoundRobin::build(&set(&[5, 1, 1])));
        assert_eq!(firsts(&rr, 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_take_turns_and_common_divisors_shrink_the_cycle() {
        let rr = Arc::new(SmoothRoundRobin::build(&set(&[1, 1, 1])));
        assert_eq!(firsts(&rr, 6), [0, 1, 2, 0, 1, 2]);
        let rr = SmoothRoundRobin::build(&set(&[200, 400]));
        assert_eq!(rr.order.len(), 3);
    }

    #[test]
    fn after_the_first_choice_every_backend_comes_once() {
        let rr = Arc::new(SmoothRoundRobin::build(&set(&[1000, 1, 1])));
        assert_eq!(
            super::super::testing::ports_offered(rr.iter()),
            [1000, 1001, 1002]
        );
    }

    /// The first backend `accept` takes, walking one iterator as the pool does.
    fn chosen(rr: &Arc<SmoothRoundRobin>, accept: impl Fn(u16) -> bool) -> Option<u16> {
        let mut it = rr.iter();
        while let Some(b) = it.next() {
            let i = b.addr.as_inet().unwrap().port() - 1000;
            if accept(i) {
                return Some(i);
            }
        }
        None
    }

    fn shares(rr: &Arc<SmoothRoundRobin>, n: usize, accept: impl Fn(u16) -> bool) -> Vec<f64> {
        let mut counts = vec![0usize; rr.backends.len()];
        for _ in 0..n {
            counts[chosen(rr, &accept).expect("a backend") as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    /// A backend turned down on every turn leaves its share to the others evenly, not all
    /// of it to the next one in the list (which would get two thirds).
    #[test]
    fn a_skipped_backends_share_spreads_over_the_others() {
        let rr = Arc::new(SmoothRoundRobin::build(&set(&[1, 1, 1])));
        let s = shares(&rr, 3000, |i| i != 1);
        for i in [0, 2] {
            assert!((0.4..0.6).contains(&s[i]), "{s:?}");
        }
        // Turned down nine times in ten (a slow-start coin at 10 %): still about even.
        let coin = std::sync::atomic::AtomicUsize::new(0);
        let s = shares(&rr, 3000, |i| {
            i != 1 || coin.fetch_add(1, Ordering::Relaxed).is_multiple_of(10)
        });
        assert!(
            (0.4..0.5).contains(&s[0]) && (0.4..0.5).contains(&s[2]),
            "{s:?}"
        );
        // By weight: with `a` out of 5:1:1, `b` and `c` share evenly.
        let rr = Arc::new(SmoothRoundRobin::build(&set(&[5, 1, 1])));
        let s = shares(&rr, 3000, |i| i != 0);
        assert!((0.4..0.6).contains(&s[1]), "{s:?}");
    }

    #[test]
    fn every_backend_is_offered_once_when_all_are_turned_down() {
        let rr = Arc::new(SmoothRoundRobin::build(&set(&[3, 1, 1, 1])));
        for _ in 0..10 {
            assert_eq!(
                super::super::testing::ports_offered(rr.iter()),
                [1000, 1001, 1002, 1003]
            );
        }
        assert_eq!(chosen(&rr, |i| i == 3), Some(3));
    }

    #[test]
    fn an_empty_pool_yields_nothing() {
        let rr = Arc::new(SmoothRoundRobin::build(&BTreeSet::new()));
        assert!(rr.iter().next().is_none());
    }
}
