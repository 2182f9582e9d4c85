//! What a selector offers once its own choices were turned down (the backend is down,
//! ejected, already tried, or lost its slow-start coin): every backend it has not offered
//! yet, once each, so a request still finds any usable one.
//!
//! The walk over them starts at a backend picked **by weight among those left**, not right
//! after the one turned down: a walk that always starts there hands the whole share of a
//! backend that keeps being turned down to its neighbour in the list (with `[a, b, c]` and
//! `b` down, `a` would get a third and `c` two thirds).

use pingora::lb::Backend;

/// Which backends one selector iterator has offered, and its walk over the rest. Empty
/// (no allocation) until [`Offered::offer`] is first called: the common case, where the
/// first candidate is taken, never gets here.
#[derive(Default)]
pub(super) struct Offered {
    seen: Vec<bool>,
    /// The walk over the rest: its start and the steps taken.
    walk: Option<(usize, usize)>,
}

impl Offered {
    /// Mark backend `i` (of `n`) offered; false if it already was.
    pub(super) fn offer(&mut self, i: usize, n: usize) -> bool {
        if self.seen.len() != n {
            self.seen = vec![false; n];
        }
        match self.seen.get_mut(i) {
            Some(seen) if !*seen => {
                *seen = true;
                true
            }
            _ => false,
        }
    }

    /// The next backend not offered yet: first the one `pick(weight left)` lands on (taken
    /// modulo the weight left, so a counter will do), then the others in list order after
    /// it. `None` when every backend was offered.
    pub(super) fn rest(
        &mut self,
        backends: &[Backend],
        pick: impl FnOnce(u64) -> u64,
    ) -> Option<usize> {
        let n = backends.len();
        if self.seen.len() != n {
            self.seen = vec![false; n];
        }
        let (start, steps) = match self.walk {
            Some(walk) => walk,
            None => {
                let left = |i: &usize| !self.seen[*i];
                let weight = |i: usize| backends[i].weight.max(1) as u64;
                let total: u64 = (0..n).filter(left).map(weight).sum();
                if total == 0 {
                    return None;
                }
                let mut r = pick(total) % total;
                let start = (0..n)
                    .filter(left)
                    .find(|&i| {
                        let w = weight(i);
                        if r < w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                (start, 0)
            }
        };
        for step in steps..n {
            let i = (start + step) % n;
            if !self.seen[i] {
                self.seen[i] = true;
                self.walk = Some((start, step + 1));
                return Some(i);
            }
        }
        self.walk = Some((start, n));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[usize]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new_with_weight(&format!("127.0.0.1:{}", 1000 + i), w).unwrap())
            .collect()
    }

    #[test]
    fn the_rest_comes_once_each_after_what_was_offered() {
        let b = backends(&[1, 1, 1, 1]);
        let mut o = Offered::default();
        assert!(o.offer(2, 4));
        assert!(!o.offer(2, 4));
        let mut rest = Vec::new();
        while let Some(i) = o.rest(&b, |_| 0) {
            rest.push(i);
        }
        assert_eq!(rest, [0, 1, 3]);
        assert_eq!(o.rest(&b, |_| 0), None);
    }

    /// The walk's start is drawn by weight among the backends left, so the one after a
    /// backend turned down gets no more than its share.
    #[test]
    fn the_start_is_picked_by_weight_among_those_left() {
        let b = backends(&[5, 3, 1]);
        let mut firsts = [0usize; 3];
        for r in 0..4u64 {
            let mut o = Offered::default();
            o.offer(0, 3);
            firsts[o
                .rest(&b, |total| {
                    assert_eq!(total, 4);
                    r
                })
                .unwrap()] += 1;
        }
        assert_eq!(firsts, [0, 3, 1]);
    }
}
