//! Helpers for the selectors' unit tests.

use pingora::lb::selection::BackendIter;
use pingora::lb::Backend;

/// Backends on 127.0.0.1, ports 1000, 1001, …, with these weights, in any collection.
pub(super) fn weighted<C: FromIterator<Backend>>(weights: &[usize]) -> C {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new_with_weight(&format!("127.0.0.1:{}", 1000 + i), w).unwrap())
        .collect()
}

/// The ports of every backend `it` offers until it runs out, sorted.
pub(super) fn ports_offered(mut it: impl BackendIter) -> Vec<u16> {
    let mut seen = Vec::new();
    while let Some(b) = it.next() {
        seen.push(b.addr.as_inet().unwrap().port());
    }
    seen.sort_unstable();
    seen
}
