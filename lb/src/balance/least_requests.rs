//! Least requests by the power of two choices (Envoy's default): two backends drawn at
//! random, by weight, and the one with fewer requests in flight per unit of weight wins.
//! Two draws rather than a scan of every backend: no herd on the one that was least
//! loaded a moment ago, and O(1) per request whatever the pool size.

use std::collections::BTreeSet;
use std::sync::Arc;

use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;

use super::backend_state::BackendState;

pub(crate) struct LeastRequests {
    backends: Box<[Backend]>,
    /// Each backend's state (discovery attaches one to every backend).
    states: Box<[Option<Arc<BackendState>>]>,
    /// Cumulative weights, for a draw by weight.
    cumulative: Box<[u64]>,
}

impl LeastRequests {
    pub(crate) fn build(set: &BTreeSet<Backend>) -> Self {
        let backends: Box<[Backend]> = set.iter().cloned().collect();
        let states = backends
            .iter()
            .map(|b| BackendState::of(b).cloned())
            .collect();
        let mut total = 0u64;
        let cumulative = backends
            .iter()
            .map(|b| {
                total += b.weight.max(1) as u64;
                total
            })
            .collect();
        Self {
            backends,
            states,
            cumulative,
        }
    }

    fn draw(&self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let r = fastrand::u64(0..total.max(1));
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// In flight per unit of weight, compared without division.
    fn busier(&self, a: usize, b: usize) -> bool {
        let load = |i: usize| self.states[i].as_ref().map_or(0, |s| s.in_flight()) as u64;
        let weight = |i: usize| self.backends[i].weight.max(1) as u64;
        load(a) * weight(b) > load(b) * weight(a)
    }

    pub(crate) fn iter(self: &Arc<Self>) -> LeastRequestsIter {
        let n = self.backends.len();
        if n == 0 {
            return LeastRequestsIter {
                lr: self.clone(),
                order: [0, 0],
                step: usize::MAX,
            };
        }
        let a = self.draw();
        let mut b = self.draw();
        if b == a && n > 1 {
            b = (a + 1 + fastrand::usize(0..n - 1)) % n;
        }
        let (first, second) = if self.busier(a, b) { (b, a) } else { (a, b) };
        LeastRequestsIter {
            lr: self.clone(),
            order: [first, second],
            step: 0,
        }
    }
}

/// The winner, the loser, then every backend in list order after the winner (pingora's
/// `UniqueIterator` skips repeats).
pub(crate) struct LeastRequestsIter {
    lr: Arc<LeastRequests>,
    order: [usize; 2],
    step: usize,
}

impl BackendIter for LeastRequestsIter {
    fn next(&mut self) -> Option<&Backend> {
        let n = self.lr.backends.len();
        let i = match self.step {
            0 | 1 => self.order[self.step],
            s if s < n + 2 => (self.order[0] + s - 1) % n,
            _ => return None,
        };
        self.step += 1;
        self.lr.backends.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend_state::{BackendTable, InFlight, OutlierMetrics};
    use super::*;

    fn table() -> BackendTable {
        BackendTable::new(
            "api",
            &crate::config::tests_support::upstream_spec(),
            OutlierMetrics {
                ejections: prometheus::IntCounter::new("e", "e").unwrap(),
                ejected: prometheus::IntGauge::new("g", "g").unwrap(),
            },
        )
    }

    #[test]
    fn the_backend_with_fewer_in_flight_wins_every_draw_of_two() {
        let t = table();
        let a = t.backend(([127, 0, 0, 1], 1).into(), 1);
        let b = t.backend(([127, 0, 0, 1], 2).into(), 1);
        let _busy: Vec<_> = (0..3)
            .map(|_| InFlight::start(BackendState::of(&a).unwrap().clone()))
            .collect();
        let lr = Arc::new(LeastRequests::build(&[a, b.clone()].into_iter().collect()));
        for _ in 0..100 {
            assert_eq!(lr.iter().next().unwrap().addr, b.addr);
        }
    }

    #[test]
    fn idle_backends_share_by_weight() {
        let t = table();
        let a = t.backend(([127, 0, 0, 1], 1).into(), 3);
        let b = t.backend(([127, 0, 0, 1], 2).into(), 1);
        let lr = Arc::new(LeastRequests::build(&[a.clone(), b].into_iter().collect()));
        let n = 20_000;
        let to_a = (0..n)
            .filter(|_| lr.iter().next().unwrap().addr == a.addr)
            .count();
        // Both draws idle: the first drawn wins, and draws are by weight (3:1).
        let share = to_a as f64 / n as f64;
        assert!((0.70..0.80).contains(&share), "{share}");
    }

    #[test]
    fn every_backend_comes_once_and_an_empty_pool_yields_nothing() {
        let t = table();
        let set: BTreeSet<_> = (0..5)
            .map(|p| t.backend(([127, 0, 0, 1], p).into(), 1))
            .collect();
        let lr = Arc::new(LeastRequests::build(&set));
        let mut it = lr.iter();
        let mut seen = std::collections::HashSet::new();
        while let Some(b) = it.next() {
            seen.insert(b.addr.clone());
        }
        assert_eq!(seen.len(), 5);
        assert!(Arc::new(LeastRequests::build(&BTreeSet::new()))
            .iter()
            .next()
            .is_none());
    }
}
