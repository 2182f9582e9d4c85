//! What clients get wrong, counted instead of logged at ERROR: a client that disconnects
//! mid-request, stalls, or sends what is not HTTP is not something an operator can act on,
//! and anyone on the internet could fill the log with such lines. Each is counted in
//! `lb_client_errors_total{reason}` and logged at DEBUG.
//!
//! Two sources: pingora's own ERROR line when reading a request head fails
//! (`crate::quiet_log` drops it and counts [`Reason::RequestHead`]), and the proxy's
//! final errors caused downstream (`LbProxy::suppress_error_log`).

use std::sync::atomic::{AtomicU64, Ordering};

use pingora::{Error, ErrorSource, ErrorType};

/// Why a client's request ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The request head could not be read: closed or reset before it was complete.
    RequestHead,
    /// The client closed the connection during the request or its answer.
    Closed,
    /// Reading from the client failed (reset, or a read timeout).
    Read,
    /// Writing to the client failed (reset, or a write timeout).
    Write,
    /// The client broke the protocol (a bad h2 frame, a malformed body).
    Protocol,
}

impl Reason {
    pub(crate) const ALL: [Reason; 5] = [
        Reason::RequestHead,
        Reason::Closed,
        Reason::Read,
        Reason::Write,
        Reason::Protocol,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::RequestHead => "request_head",
            Reason::Closed => "closed",
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::Protocol => "protocol",
        }
    }

    /// The client's part of a final proxy error; `None` when the lb or a backend caused it.
    pub(crate) fn of(e: &Error) -> Option<Reason> {
        if *e.esource() != ErrorSource::Downstream {
            return None;
        }
        Some(match e.etype() {
            ErrorType::ConnectionClosed => Reason::Closed,
            ErrorType::ReadError | ErrorType::ReadTimedout => Reason::Read,
            ErrorType::WriteError | ErrorType::WriteTimedout => Reason::Write,
            _ => Reason::Protocol,
        })
    }
}

static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

pub(crate) fn count(reason: Reason) {
    COUNTS[reason as usize].fetch_add(1, Ordering::Relaxed);
}

/// Counted so far, for the metrics scrape.
pub(crate) fn counts() -> impl Iterator<Item = (Reason, u64)> {
    Reason::ALL
        .into_iter()
        .map(|r| (r, COUNTS[r as usize].load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_downstream_errors_are_the_clients() {
        let down = |t| {
            let mut e = Error::new(t);
            e.as_down();
            Reason::of(&e)
        };
        assert_eq!(down(ErrorType::ConnectionClosed), Some(Reason::Closed));
        assert_eq!(down(ErrorType::ReadTimedout), Some(Reason::Read));
        assert_eq!(down(ErrorType::WriteError), Some(Reason::Write));
        assert_eq!(down(ErrorType::H2Error), Some(Reason::Protocol));
        assert_eq!(
            Reason::of(&Error::new_up(ErrorType::ConnectionClosed)),
            None
        );
        assert_eq!(Reason::of(&Error::new(ErrorType::InternalError)), None);
    }
}
