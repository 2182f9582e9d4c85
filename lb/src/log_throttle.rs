//! Repeated WARN and ERROR lines, rate-limited: a backend that is down, a flapping health
//! check or a client hammering the admin listener would otherwise write the same line for
//! every request or every check, burying what else happened and filling the disk.
//!
//! A line is identified by its *site* (a fixed text: what happened) and a *key* (what it
//! happened to: a backend address, a client IP, an upstream). The first line of a
//! (site, key) is written; identical ones within `server.log_throttle` (10 s by default)
//! after it are dropped and counted; when that window has ended, one summary line at the
//! same level says how many were dropped:
//!
//! ```text
//! ERROR fail to proxy [api 10.0.0.3:5252 ConnectRefused] (suppressed 312 similar lines in the last 10s)
//! ```
//!
//! The summary is written by [`flush_due`] (a background service calls it every second),
//! or just before the next line of that (site, key) if that comes first. So every dropped
//! line is accounted for, even when the flood stops. `0s` turns throttling off.
//!
//! Pingora's own WARN and ERROR lines (bridged from `log`, as are those of the other
//! libraries) pass through [`foreign`], called
//! from the `tracing` filter in [`crate::quiet_log`]; a filter must not write lines itself,
//! so their summaries always wait for [`flush_due`].

use std::collections::btree_map::Entry as Slot;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Level;

use crate::config::defaults;

/// Distinct (site, key) pairs tracked at once. Beyond that, new keys of a site share one
/// entry (keyed [`OVERFLOW_KEY`]), so a flood of distinct keys cannot grow memory.
const CAPACITY: usize = 1024;
const OVERFLOW_KEY: &str = "(other keys)";
/// Pingora's lines: at most this much of the message is kept as the key.
const FOREIGN_KEY_MAX: usize = 200;

/// The counting state: one window per (site, key). Time comes in as an argument, so tests
/// drive it with made-up instants.
pub(crate) struct Throttle {
    window_ms: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    windows: BTreeMap<(&'static str, String), Window>,
    /// Summaries of windows that ended, not yet written.
    pending: Vec<Summary>,
}

struct Window {
    start: Instant,
    suppressed: u64,
    level: Level,
}

/// "`suppressed` lines like `site [key]` were dropped within `window`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) site: &'static str,
    pub(crate) key: String,
    pub(crate) level: Level,
    pub(crate) suppressed: u64,
    pub(crate) window: Duration,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it. `summary_due`: a summary of the previous window is pending
    /// ([`Throttle::flush_due`] returns it); write that first when possible.
    Write { summary_due: bool },
    /// Drop it (counted for the summary).
    Drop,
}

impl Throttle {
    /// Lines of one (site, key) at most once per `window`; zero: every line is written.
    pub(crate) const fn new(window: Duration) -> Self {
        Self {
            window_ms: AtomicU64::new(window.as_millis() as u64),
            inner: Mutex::new(Inner {
                windows: BTreeMap::new(),
                pending: Vec::new(),
            }),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_window(&self, window: Duration) {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.window_ms.store(ms, Ordering::Relaxed);
    }

    /// One line of `site` about `key`, at `level`, at time `now`.
    pub(crate) fn check(
        &self,
        site: &'static str,
        key: String,
        level: Level,
        now: Instant,
    ) -> Verdict {
        let window = self.window();
        if window.is_zero() {
            return Verdict::Write { summary_due: false };
        }
        let mut guard = crate::per_thread::lock(&self.inner);
        let Inner { windows, pending } = &mut *guard;
        let mut key = key;
        if windows.len() >= CAPACITY && !windows.contains_key(&(site, key.clone())) {
            expire(windows, pending, now, window);
            if windows.len() >= CAPACITY {
                key = OVERFLOW_KEY.to_string();
            }
        }
        match windows.entry((site, key)) {
            Slot::Vacant(slot) => {
                slot.insert(Window {
                    start: now,
                    suppressed: 0,
                    level,
                });
                Verdict::Write { summary_due: false }
            }
            Slot::Occupied(mut slot) => {
                let open = slot.get();
                if now.saturating_duration_since(open.start) < window {
                    slot.get_mut().suppressed += 1;
                    return Verdict::Drop;
                }
                let ended = std::mem::replace(
                    slot.get_mut(),
                    Window {
                        start: now,
                        suppressed: 0,
                        level,
                    },
                );
                let summary_due = ended.suppressed > 0;
                if summary_due {
                    let (site, key) = slot.key();
                    pending.push(summary(site, key, &ended, window));
                }
                Verdict::Write { summary_due }
            }
        }
    }

    /// The summaries due at `now`: every window that has ended with lines dropped, and the
    /// pending ones. Ended windows are forgotten (the next line starts a new one).
    pub(crate) fn flush_due(&self, now: Instant) -> Vec<Summary> {
        let window = self.window();
        let mut guard = crate::per_thread::lock(&self.inner);
        let Inner { windows, pending } = &mut *guard;
        expire(windows, pending, now, window);
        std::mem::take(pending)
    }
}

/// Forget ended windows, keeping a summary of those that dropped lines.
fn expire(
    windows: &mut BTreeMap<(&'static str, String), Window>,
    pending: &mut Vec<Summary>,
    now: Instant,
    window: Duration,
) {
    windows.retain(|(site, key), w| {
        if now.saturating_duration_since(w.start) < window {
            return true;
        }
        if w.suppressed > 0 {
            pending.push(summary(site, key, w, window));
        }
        false
    });
}

fn summary(site: &'static str, key: &str, w: &Window, window: Duration) -> Summary {
    Summary {
        site,
        key: key.to_string(),
        level: w.level,
        suppressed: w.suppressed,
        window,
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] (suppressed {} similar lines in the last {:?})",
            self.site, self.key, self.suppressed, self.window
        )
    }
}

/// The process's throttle; its window is `server.log_throttle`.
static LINES: Throttle = Throttle::new(defaults::LOG_THROTTLE);

/// Apply `server.log_throttle` (at startup and on every reload).
pub(crate) fn set_window(window: Duration) {
    LINES.set_window(window);
}

/// Whether to write the lb's own line of `site` about `key` now; writes the summary of
/// the previous window first when one is due.
pub(crate) fn admit(site: &'static str, key: String, level: Level) -> bool {
    match LINES.check(site, key, level, Instant::now()) {
        Verdict::Write { summary_due } => {
            if summary_due {
                flush_due();
            }
            true
        }
        Verdict::Drop => false,
    }
}

/// Site of the libraries' lines (pingora's, bridged from `log`); the key is the line's
/// module and message.
const LIBRARY: &str = "library line";

/// Whether to drop a library's WARN/ERROR line (`module`: its `log` target). Called from
/// a `tracing` filter, so it never writes: its summary waits for [`flush_due`].
pub(crate) fn foreign(module: &str, message: &str, level: Level) -> bool {
    let key = format!("{module}: {}", foreign_key(message));
    LINES.check(LIBRARY, key, level, Instant::now()) == Verdict::Drop
}

/// What makes pingora's lines "identical": the message without its per-request tail
/// (`Fail to proxy: <error>, status: 502, tries: 1, ..., GET /x, Host: a`), and bounded.
fn foreign_key(message: &str) -> &str {
    let cut = message.find(", status: ").unwrap_or(message.len());
    let mut end = cut.min(FOREIGN_KEY_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Write the summaries that are due (called every second by a background service).
pub(crate) fn flush_due() {
    for s in LINES.flush_due(Instant::now()) {
        write(&s);
    }
}

fn write(s: &Summary) {
    let (site, key, suppressed) = (s.site, s.key.as_str(), s.suppressed);
    if s.level == Level::ERROR {
        tracing::error!(site, key, suppressed, "{s}");
    } else {
        tracing::warn!(site, key, suppressed, "{s}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "fail to proxy";
    const WINDOW: Duration = Duration::from_secs(10);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn line(t: &Throttle, key: &str, now: Instant) -> Verdict {
        t.check(SITE, key.to_string(), Level::WARN, now)
    }

    const WRITE: Verdict = Verdict::Write { summary_due: false };

    #[test]
    fn one_line_per_window_then_one_summary_when_it_ends() {
        let t = Throttle::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(line(&t, "a", t0), WRITE);
        for ms in [1, 500, 9_999] {
            assert_eq!(line(&t, "a", at(t0, ms)), Verdict::Drop);
        }
        // Nothing is due while the window is open.
        assert_eq!(t.flush_due(at(t0, 9_999)), vec![]);
        let due = t.flush_due(at(t0, 10_000));
        assert_eq!(
            due,
            vec![Summary {
                site: SITE,
                key: "a".into(),
                level: Level::WARN,
                suppressed: 3,
                window: WINDOW,
            }]
        );
        assert_eq!(
            due[0].to_string(),
            "fail to proxy [a] (suppressed 3 similar lines in the last 10s)"
        );
        // Reported once; the window is forgotten, so the next line is written.
        assert_eq!(t.flush_due(at(t0, 20_000)), vec![]);
        assert_eq!(line(&t, "a", at(t0, 20_001)), WRITE);
    }

    #[test]
    fn keys_and_sites_are_counted_apart() {
        let t = Throttle::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(line(&t, "a", t0), WRITE);
        assert_eq!(line(&t, "b", t0), WRITE);
        assert_eq!(
            t.check("other site", "a".into(), Level::WARN, t0),
            WRITE,
            "same key, another site"
        );
        assert_eq!(line(&t, "b", at(t0, 1)), Verdict::Drop);
        let due = t.flush_due(at(t0, 10_000));
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!((due[0].key.as_str(), due[0].suppressed), ("b", 1));
    }

    #[test]
    fn a_window_without_drops_ends_silently() {
        let t = Throttle::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(line(&t, "a", t0), WRITE);
        assert_eq!(t.flush_due(at(t0, 60_000)), vec![]);
        assert_eq!(line(&t, "a", at(t0, 60_001)), WRITE);
    }

    #[test]
    fn the_next_line_after_the_window_brings_the_summary_first() {
        let t = Throttle::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(line(&t, "a", t0), WRITE);
        assert_eq!(line(&t, "a", at(t0, 5)), Verdict::Drop);
        assert_eq!(line(&t, "a", at(t0, 6)), Verdict::Drop);
        // No flush ran; the window has ended when the next line comes.
        assert_eq!(
            line(&t, "a", at(t0, 12_000)),
            Verdict::Write { summary_due: true }
        );
        let due = t.flush_due(at(t0, 12_000));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].suppressed, 2);
        // A new window started with that line.
        assert_eq!(line(&t, "a", at(t0, 12_001)), Verdict::Drop);
        assert_eq!(t.flush_due(at(t0, 21_999)), vec![]);
        assert_eq!(t.flush_due(at(t0, 22_000)).len(), 1);
    }

    #[test]
    fn the_summary_keeps_the_level_of_the_line() {
        let t = Throttle::new(WINDOW);
        let t0 = Instant::now();
        for ms in [0, 1] {
            t.check(SITE, "a".into(), Level::ERROR, at(t0, ms));
        }
        assert_eq!(t.flush_due(at(t0, 10_000))[0].level, Level::ERROR);
    }

    #[test]
    fn zero_writes_every_line() {
        let t = Throttle::new(Duration::ZERO);
        let t0 = Instant::now();
        for ms in 0..5 {
            assert_eq!(line(&t, "a", at(t0, ms)), WRITE);
        }
        assert_eq!(t.flush_due(at(t0, 5)), vec![]);
        // Turned off with lines counted: they are reported at the next flush.
        let t = Throttle::new(WINDOW);
        line(&t, "a", t0);
        line(&t, "a", at(t0, 1));
        t.set_window(Duration::ZERO);
        assert_eq!(line(&t, "a", at(t0, 2)), WRITE);
        assert_eq!(t.flush_due(at(t0, 2)).len(), 1);
    }

    #[test]
    fn distinct_keys_beyond_the_capacity_share_one_window() {
        let t = Throttle::new(WINDOW);
        let t0 = Instant::now();
        for i in 0..CAPACITY {
            assert_eq!(line(&t, &i.to_string(), t0), WRITE);
        }
        assert_eq!(line(&t, "new-1", t0), WRITE, "first overflow line");
        assert_eq!(line(&t, "new-2", t0), Verdict::Drop);
        assert_eq!(line(&t, "7", t0), Verdict::Drop, "a tracked key");
        let due = t.flush_due(at(t0, 10_000));
        let overflow = due
            .iter()
            .find(|s| s.key == OVERFLOW_KEY)
            .expect("overflow");
        assert_eq!(overflow.suppressed, 1);
        // Once the old windows end, new keys get their own again.
        assert_eq!(line(&t, "new-3", at(t0, 10_001)), WRITE);
        assert_eq!(line(&t, "new-3", at(t0, 10_002)), Verdict::Drop);
        let due = t.flush_due(at(t0, 20_001));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "new-3");
    }

    #[test]
    fn pingora_lines_are_keyed_without_their_request_tail() {
        assert_eq!(
            foreign_key("Fail to proxy: Upstream ConnectRefused context: x, status: 502, tries: 1, retry: false, GET /a, Host: h"),
            "Fail to proxy: Upstream ConnectRefused context: x"
        );
        assert_eq!(
            foreign_key("Backend 10.0.0.1:80 becomes unhealthy, timeout"),
            "Backend 10.0.0.1:80 becomes unhealthy, timeout"
        );
        let long = "é".repeat(150);
        assert!(foreign_key(&long).len() <= FOREIGN_KEY_MAX);
        assert!(long.starts_with(foreign_key(&long)));
    }
}
