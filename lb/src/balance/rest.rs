//! What a selector offers once its own choices were turned down (the backend is down,
//! ejected, already tried, or lost its slow-start coin): every backend it has not offered
//! yet, once each, so a request still finds any usable one.
//!
//! The walk over them starts at a backend picked **by weight among those left**, not right
//! after the one turned down: a walk that always starts there hands the whole share of a
//! backend that keeps being turned down to its neighbour in the list (with `[a, b, c]` and
//! `b` down, `a` would get a third and `c` two thirds).

use pingora::lb::Backend;

/// Which backends one selector iterator has offered, and its walk over the rest. Untouched
/// until [`Offered::offer`] is first called: the common case, where the first candidate is
/// taken, never gets here. A pool of up to 64 backends needs no allocation at all.
#[derive(Default)]
pub(super) struct Offered {
    seen: Seen,
    /// The walk over the rest: its start and the steps taken.
    walk: Option<(usize, usize)>,
}

impl Offered {
    /// Mark backend `i` (of `n`) offered; false if it already was.
    pub(super) fn offer(&mut self, i: usize, n: usize) -> bool {
        self.seen.size(n);
        i < n && self.seen.insert(i)
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
        self.seen.size(n);
        let (start, steps) = match self.walk {
            Some(walk) => walk,
            None => {
                let left = |i: &usize| !self.seen.contains(*i);
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
            if self.seen.insert(i) {
                self.walk = Some((start, step + 1));
                return Some(i);
            }
        }
        self.walk = Some((start, n));
        None
    }
}

/// A set of backend indexes: one word for pools of up to 64, a vector of words above.
#[derive(Default)]
struct Seen {
    len: usize,
    small: u64,
    big: Vec<u64>,
}

impl Seen {
    /// Make it a set over `0..n`, emptied if `n` changed (the pool changed under the
    /// iterator).
    fn size(&mut self, n: usize) {
        if self.len != n {
            self.len = n;
            self.small = 0;
            self.big = if n > 64 {
                vec![0; n.div_ceil(64)]
            } else {
                Vec::new()
            };
        }
    }

    fn word(&mut self, i: usize) -> &mut u64 {
        if self.len > 64 {
            &mut self.big[i / 64]
        } else {
            &mut self.small
        }
    }

    fn contains(&self, i: usize) -> bool {
        let word = if self.len > 64 {
            self.big.get(i / 64).copied().unwrap_or(0)
        } else {
            self.small
        };
        word & (1 << (i % 64)) != 0
    }

    /// Add `i` (below the size); false if it was already there.
    fn insert(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        let bit = 1 << (i % 64);
        let word = self.word(i);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[usize]) -> Vec<Backend> {
        super::super::testing::weighted(weights)
    }

    /// Above 64 backends the set spills into words; each index is still offered once.
    #[test]
    fn a_pool_above_64_backends_is_walked_once_each() {
        let b = backends(&[1; 130]);
        let mut o = Offered::default();
        assert!(o.offer(129, 130));
        assert!(o.offer(64, 130));
        assert!(!o.offer(64, 130));
        assert!(!o.offer(130, 130), "out of range");
        let mut rest = Vec::new();
        while let Some(i) = o.rest(&b, |_| 0) {
            rest.push(i);
        }
        rest.sort_unstable();
        let expected: Vec<usize> = (0..130).filter(|&i| i != 64 && i != 129).collect();
        assert_eq!(rest, expected);
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
