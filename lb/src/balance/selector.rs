//! One `BackendSelection` for every policy, so a pool is always a
//! `LoadBalancer<Selector>` and the policy is config, not a type: pingora's `Random`
//! (`Weighted`) and `KetamaHashing` where pingora has them, ours for smooth weighted
//! round robin and least requests.
//!
//! Why Ketama for `consistent_hash`: pingora ships and maintains it, it honours weights,
//! and a backend joining or leaving moves only its own share of keys (about 1/n), which
//! is what a cache-affinity user wants. Maglev balances a little more evenly and looks up
//! in O(1), but moves more keys on a change; at our pool sizes the ring's binary search
//! (about 160 points per backend) is a few dozen nanoseconds.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pingora::lb::selection::consistent::{KetamaHashing, OwnedNodeIterator};
use pingora::lb::selection::weighted::{Weighted, WeightedIterator};
use pingora::lb::selection::{algorithms, BackendIter, BackendSelection};
use pingora::lb::Backend;

use super::least_requests::{LeastRequests, LeastRequestsIter};
use super::round_robin::{RoundRobinIter, SmoothRoundRobin};
use crate::config::Selection;

type RandomSelection = Weighted<algorithms::Random>;

/// What pingora builds a pool's selectors from: the policy, and where each new selector
/// is published for the request path.
#[derive(Clone)]
pub(crate) struct SelectorConfig {
    pub(crate) selection: Selection,
    pub(crate) published: Arc<Published>,
}

impl SelectorConfig {
    /// `selection`, publishing into a new, empty [`Published`].
    pub(crate) fn new(selection: Selection) -> Self {
        Self {
            selection,
            published: Arc::default(),
        }
    }
}

/// The selector pingora built last (at each membership change), shared with the request
/// path: its first look at a candidate asks no pingora lookup (`crate::pool::Pool::select`).
/// It is the same object as pingora's, so round robin's turn is one counter for both.
#[derive(Default)]
pub(crate) struct Published(ArcSwapOption<Selector>);

impl Published {
    /// The latest selector (`None` before pingora built one).
    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<Selector>>> {
        self.0.load()
    }

    #[cfg(test)]
    fn load_full(&self) -> Option<Arc<Selector>> {
        self.0.load_full()
    }
}

/// Cheap to clone: every variant is an `Arc` (a clone is what [`Published`] holds).
#[derive(Clone)]
pub(crate) enum Selector {
    RoundRobin(Arc<SmoothRoundRobin>),
    Random(Arc<RandomSelection>),
    LeastRequests(Arc<LeastRequests>),
    ConsistentHash(Arc<KetamaHashing>),
}

pub(crate) enum SelectorIter {
    RoundRobin(RoundRobinIter),
    Random(WeightedIterator<algorithms::Random>),
    LeastRequests(LeastRequestsIter),
    ConsistentHash(OwnedNodeIterator),
}

impl BackendSelection for Selector {
    type Iter = SelectorIter;
    type Config = SelectorConfig;

    fn build_with_config(backends: &BTreeSet<Backend>, config: &SelectorConfig) -> Self {
        let selector = Self::build_for(backends, &config.selection);
        config.published.0.store(Some(Arc::new(selector.clone())));
        selector
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_for(backends, &Selection::RoundRobin)
    }

    /// `key` matters to `consistent_hash` only; an empty key (the request had none) gets
    /// a random point on the ring.
    fn iter(self: &Arc<Self>, key: &[u8]) -> SelectorIter {
        match &**self {
            Selector::RoundRobin(s) => SelectorIter::RoundRobin(s.iter()),
            Selector::Random(s) => SelectorIter::Random(s.iter(key)),
            Selector::LeastRequests(s) => SelectorIter::LeastRequests(s.iter()),
            Selector::ConsistentHash(s) if key.is_empty() => {
                SelectorIter::ConsistentHash(s.iter(&fastrand::u64(..).to_le_bytes()))
            }
            Selector::ConsistentHash(s) => SelectorIter::ConsistentHash(s.iter(key)),
        }
    }
}

impl Selector {
    fn build_for(backends: &BTreeSet<Backend>, selection: &Selection) -> Self {
        match selection {
            Selection::RoundRobin => {
                Selector::RoundRobin(Arc::new(SmoothRoundRobin::build(backends)))
            }
            Selection::Random => Selector::Random(Arc::new(RandomSelection::build(backends))),
            Selection::LeastRequests => {
                Selector::LeastRequests(Arc::new(LeastRequests::build(backends)))
            }
            Selection::ConsistentHash(_) => {
                Selector::ConsistentHash(Arc::new(KetamaHashing::build(backends)))
            }
        }
    }
}

impl BackendIter for SelectorIter {
    fn next(&mut self) -> Option<&Backend> {
        match self {
            SelectorIter::RoundRobin(i) => i.next(),
            SelectorIter::Random(i) => i.next(),
            SelectorIter::LeastRequests(i) => i.next(),
            SelectorIter::ConsistentHash(i) => i.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ports: std::ops::Range<u16>) -> BTreeSet<Backend> {
        ports
            .map(|p| Backend::new(&format!("10.0.0.{}:80", p)).unwrap())
            .collect()
    }

    fn owner(s: &Arc<Selector>, key: u32) -> Backend {
        let mut it = s.iter(&key.to_le_bytes());
        it.next().unwrap().clone()
    }

    /// The request path's first look and pingora's `select_with` read one selector: the
    /// one pingora built last, with one round-robin turn for both.
    #[test]
    fn the_built_selector_is_published_and_shares_its_turn() {
        let config = SelectorConfig::new(Selection::RoundRobin);
        assert!(config.published.load().is_none());
        let _old = Selector::build_with_config(&set(1..3), &config);
        let built = Arc::new(Selector::build_with_config(&set(1..4), &config));
        let published = config.published.load_full();
        let published = published.expect("published");
        let first = |s: &Arc<Selector>| s.iter(&[]).next().unwrap().clone();
        let turns = [
            first(&built),
            first(&published),
            first(&built),
            first(&published),
        ];
        let hosts: Vec<String> = turns
            .iter()
            .map(|b| b.addr.as_inet().unwrap().ip().to_string())
            .collect();
        assert_eq!(hosts, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]);
    }

    #[test]
    fn a_fourth_backend_takes_about_a_quarter_of_the_keys_from_the_others() {
        let hash = Selection::ConsistentHash(crate::config::HashKey::Path);
        let three = Arc::new(Selector::build_for(&set(1..4), &hash));
        let four = Arc::new(Selector::build_for(&set(1..5), &hash));
        let keys = 10_000;
        let kept = (0..keys)
            .filter(|&k| owner(&three, k) == owner(&four, k))
            .count();
        let share = kept as f64 / keys as f64;
        assert!(share >= 0.70, "only {share:.3} of keys stayed");
    }

    #[test]
    fn random_and_hash_follow_weights() {
        let mut backends = set(1..3);
        let heavy = Backend::new_with_weight("10.0.0.9:80", 2).unwrap();
        backends.insert(heavy.clone());
        for policy in [
            Selection::Random,
            Selection::ConsistentHash(crate::config::HashKey::Path),
        ] {
            let s = Arc::new(Selector::build_for(&backends, &policy));
            let n = 40_000u32;
            let to_heavy = (0..n)
                .filter(|&k| owner(&s, k.wrapping_mul(2_654_435_761)) == heavy)
                .count();
            let share = to_heavy as f64 / n as f64;
            assert!((0.45..0.55).contains(&share), "{policy:?}: {share:.3}");
        }
    }
}
