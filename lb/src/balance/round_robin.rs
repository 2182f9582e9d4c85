//! Smooth weighted round robin: nginx's order, so that weights 5:1:1 go
//! `a a b a c a a`, not `a a a a a b c` (pingora's `Weighted` repeats each backend
//! `weight` times in a row, which sends bursts to the heavy one).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;

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

    pub(crate) fn iter(self: &Arc<Self>) -> RoundRobinIter {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let first = self
            .order
            .get(turn % self.order.len().max(1))
            .map_or(0, |&i| i as usize);
        RoundRobinIter {
            rr: self.clone(),
            first,
            step: 0,
        }
    }
}

/// The backend whose turn it is, then every other one once, in list order.
pub(crate) struct RoundRobinIter {
    rr: Arc<SmoothRoundRobin>,
    first: usize,
    step: usize,
}

impl BackendIter for RoundRobinIter {
    fn next(&mut self) -> Option<&Backend> {
        let n = self.rr.backends.len();
        if self.step >= n {
            return None;
        }
        let i = (self.first + self.step) % n;
        self.step += 1;
        self.rr.backends.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(weights: &[usize]) -> BTreeSet<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new_with_weight(&format!("127.0.0.1:{}", 1000 + i), w).unwrap())
            .collect()
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
        let mut it = rr.iter();
        let mut seen = Vec::new();
        while let Some(b) = it.next() {
            seen.push(b.addr.as_inet().unwrap().port());
        }
        seen.sort();
        assert_eq!(seen, [1000, 1001, 1002]);
    }

    #[test]
    fn an_empty_pool_yields_nothing() {
        let rr = Arc::new(SmoothRoundRobin::build(&BTreeSet::new()));
        assert!(rr.iter().next().is_none());
    }
}
