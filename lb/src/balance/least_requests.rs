//! Least requests by the power of two choices (Envoy's default): two backends drawn at
//! random, by weight, and the one with fewer requests in flight per unit of weight wins.
//! Two draws rather than a scan of every backend: no herd on the one that was least
//! loaded a moment ago, and O(1) per request whatever the pool size.

use std::collections::BTreeSet;
use std::sync::Arc;

use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;

use super::backend_state::BackendState;
use super::rest::Offered;

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

    /// Two distinct backends drawn by weight, the less busy first.
    fn pair(&self) -> (usize, usize) {
        let n = self.backends.len();
        let a = self.draw();
        let mut b = self.draw();
        if b == a && n > 1 {
            b = (a + 1 + fastrand::usize(0..n - 1)) % n;
        }
        if self.busier(a, b) {
            (b, a)
        } else {
            (a, b)
        }
    }

    pub(crate) fn iter(self: &Arc<Self>) -> LeastRequestsIter {
        let order = if self.backends.is_empty() {
            [0, 0]
        } else {
            let (first, second) = self.pair();
            [first, second]
        };
        LeastRequestsIter {
            lr: self.clone(),
            order,
            step: 0,
            redraws: 0,
            offered: Offered::default(),
        }
    }
}

/// The winner, the loser; when both are turned down, the winners of fresh draws of two (at
/// most one per backend, each offering a backend not offered yet); then every backend not
/// offered yet, once each ([`Offered`]). Fresh draws rather than the list after the winner:
/// backends turned down on every request (down, ejected, ramping) then leave their share
/// to the others by weight instead of handing it to their neighbour in the list.
pub(crate) struct LeastRequestsIter {
    lr: Arc<LeastRequests>,
    order: [usize; 2],
    /// Candidates of `order` offered so far.
    step: usize,
    /// Fresh draws taken so far.
    redraws: usize,
    offered: Offered,
}

impl BackendIter for LeastRequestsIter {
    fn next(&mut self) -> Option<&Backend> {
        let lr = &self.lr;
        let n = lr.backends.len();
        if n == 0 {
            return None;
        }
        match self.step {
            0 => {
                self.step = 1;
                return lr.backends.get(self.order[0]);
            }
            1 if n > 1 => {
                self.step = 2;
                return lr.backends.get(self.order[1]);
            }
            _ => {}
        }
        if self.redraws == 0 {
            // Recorded only now: the common case, where a first draw is taken, costs nothing.
            for i in self.order {
                self.offered.offer(i, n);
            }
        }
        while self.redraws < n {
            self.redraws += 1;
            let (first, second) = lr.pair();
            for i in [first, second] {
                if self.offered.offer(i, n) {
                    return lr.backends.get(i);
                }
            }
        }
        let i = self
            .offered
            .rest(&lr.backends, |total| fastrand::u64(0..total))?;
        lr.backends.get(i)
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

    /// Backends turned down on every request leave their share to the others evenly: when
    /// both draws are turned down, the next candidate is not the one after them in the
    /// list (with 1, 2 and 3 of five out, 4 would get about 65 %, 0 about 35 %).
    #[test]
    fn skipped_backends_share_spreads_over_the_others() {
        let t = table();
        let set: BTreeSet<_> = (0..5)
            .map(|p| t.backend(([127, 0, 0, 1], p).into(), 1))
            .collect();
        let lr = Arc::new(LeastRequests::build(&set));
        let n = 20_000;
        let mut to_0 = 0;
        for _ in 0..n {
            let mut it = lr.iter();
            let port = loop {
                let b = it.next().expect("a backend is accepted");
                let port = b.addr.as_inet().unwrap().port();
                if port == 0 || port == 4 {
                    break port;
                }
            };
            to_0 += usize::from(port == 0);
        }
        let share = to_0 as f64 / n as f64;
        assert!((0.4..0.6).contains(&share), "{share}");
    }

    #[test]
    fn every_backend_comes_once_and_an_empty_pool_yields_nothing() {
        let t = table();
        let set: BTreeSet<_> = (0..5)
            .map(|p| t.backend(([127, 0, 0, 1], p).into(), 1))
            .collect();
        let lr = Arc::new(LeastRequests::build(&set));
        for _ in 0..20 {
            assert_eq!(
                super::super::testing::ports_offered(lr.iter()),
                [0, 1, 2, 3, 4],
                "each once"
            );
        }
        let one = Arc::new(LeastRequests::build(&set.iter().take(1).cloned().collect()));
        let mut it = one.iter();
        assert!(it.next().is_some());
        assert!(it.next().is_none());
        assert!(Arc::new(LeastRequests::build(&BTreeSet::new()))
            .iter()
            .next()
            .is_none());
    }
}
