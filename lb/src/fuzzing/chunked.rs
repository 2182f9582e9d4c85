//! The fast path's chunked-body parser (`crate::proxy::fast::chunked`): where a backend's
//! chunked body ends, found while its bytes stream past in reads of any size. The fast path
//! stops reading there and keeps the upstream connection for the next request, so an end
//! found early or late would desynchronise that connection: the end must be exact, and the
//! same however the bytes are cut into reads.

use crate::proxy::fast::chunked::{Chunked, Invalid};

/// `data` as the bytes after a chunked response head. Fed whole, one byte at a time and cut
/// in two at many points, the parser gives the same answer. An end it finds is exact: the
/// bytes up to it make a whole message and one byte fewer does not; bytes fed after the end
/// are refused. Without an end, the parser is not done.
pub fn chunked(data: &[u8]) {
    let whole = Chunked::new().feed(data);
    let every_byte: Vec<usize> = (1..data.len()).collect();
    assert_eq!(in_pieces(data, &every_byte), whole, "one byte at a time");
    // Every cut of a short input; a spread of them in a long one.
    let step = (data.len() / 64).max(1);
    for cut in (0..=data.len()).step_by(step) {
        assert_eq!(in_pieces(data, &[cut]), whole, "cut at {cut}");
    }
    match whole {
        Ok(Some(end)) => {
            assert!(
                (5..=data.len()).contains(&end),
                "end {end} of {}",
                data.len()
            );
            let mut c = Chunked::new();
            assert_eq!(c.feed(&data[..end]), Ok(Some(end)));
            assert!(c.is_done());
            if end < data.len() {
                assert!(c.feed(&data[end..]).is_err(), "bytes after the end taken");
            }
            let mut short = Chunked::new();
            assert_eq!(short.feed(&data[..end - 1]), Ok(None), "ends before {end}");
            assert!(!short.is_done());
        }
        Ok(None) => {
            let mut c = Chunked::new();
            let _ = c.feed(data);
            assert!(!c.is_done());
        }
        Err(_) => {}
    }
}

/// Feed `data` in pieces cut at `cuts` (positions in `data`, any order, any repeats): the
/// end as a position in `data`, `None` if not reached, or the first refusal.
pub(crate) fn in_pieces(data: &[u8], cuts: &[usize]) -> Result<Option<usize>, Invalid> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    cuts.push(data.len());
    let mut c = Chunked::new();
    let mut start = 0;
    for cut in cuts {
        if let Some(end) = c.feed(&data[start..cut])? {
            return Ok(Some(start + end));
        }
        start = cut;
    }
    Ok(None)
}
