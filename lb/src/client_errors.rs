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
    /// Writing to the client failed (reset).
    Write,
    /// The client took no response bytes for `client_timeouts.response_write`.
    WriteTimeout,
    /// The client broke the protocol (a bad h2 frame, a malformed body).
    Protocol,
    /// The request head took longer than `client_timeouts.request_head` (408).
    HeadTimeout,
    /// The request body took longer than `client_timeouts.request_body` (408).
    BodyTimeout,
    /// Not an HTTP/1 request head, or an HTTP/1.1 one without `Host` (400).
    Malformed,
    /// Framing or authority two parsers could read differently: smuggling-shaped (400).
    Ambiguous,
    /// The request target is over `request_limits.uri_length` (414).
    UriTooLong,
    /// The head is over `request_limits.head_size` or `request_limits.headers` (431).
    HeadTooLarge,
    /// CONNECT, which a reverse proxy does not serve (405).
    Connect,
    /// A body over the route's `max_body_size` (413).
    BodyTooLarge,
}

impl Reason {
    pub(crate) const ALL: [Reason; 14] = [
        Reason::RequestHead,
        Reason::Closed,
        Reason::Read,
        Reason::Write,
        Reason::WriteTimeout,
        Reason::Protocol,
        Reason::HeadTimeout,
        Reason::BodyTimeout,
        Reason::Malformed,
        Reason::Ambiguous,
        Reason::UriTooLong,
        Reason::HeadTooLarge,
        Reason::Connect,
        Reason::BodyTooLarge,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::RequestHead => "request_head",
            Reason::Closed => "closed",
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::WriteTimeout => "write_timeout",
            Reason::Protocol => "protocol",
            Reason::HeadTimeout => "head_timeout",
            Reason::BodyTimeout => "body_timeout",
            Reason::Malformed => "malformed",
            Reason::Ambiguous => "ambiguous",
            Reason::UriTooLong => "uri_too_long",
            Reason::HeadTooLarge => "head_too_large",
            Reason::Connect => "connect",
            Reason::BodyTooLarge => "body_too_large",
        }
    }

    /// The client's part of a final proxy error; `None` when the lb or a backend caused it.
    pub(crate) fn of(e: &Error) -> Option<Reason> {
        // The lb's own refusals of a request body, raised in `request_body_filter`.
        match e.etype() {
            ErrorType::HTTPStatus(408) => return Some(Reason::BodyTimeout),
            ErrorType::HTTPStatus(413) => return Some(Reason::BodyTooLarge),
            _ => {}
        }
        if *e.esource() != ErrorSource::Downstream {
            return None;
        }
        Some(match e.etype() {
            ErrorType::ConnectionClosed => Reason::Closed,
            // Request heads are read by `crate::downstream`; pingora reads only bodies.
            ErrorType::ReadTimedout => Reason::BodyTimeout,
            ErrorType::ReadError => Reason::Read,
            ErrorType::WriteError if timed_out(e) => Reason::WriteTimeout,
            ErrorType::WriteError => Reason::Write,
            ErrorType::WriteTimedout => Reason::WriteTimeout,
            _ => Reason::Protocol,
        })
    }
}

/// A write that failed because the client took nothing for `response_write`: pingora
/// reports the stream's error as a plain write error, with it as the cause.
fn timed_out(e: &Error) -> bool {
    e.root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

static COUNTS: [AtomicU64; Reason::ALL.len()] = [const { AtomicU64::new(0) }; Reason::ALL.len()];

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
        assert_eq!(down(ErrorType::ReadTimedout), Some(Reason::BodyTimeout));
        assert_eq!(down(ErrorType::ReadError), Some(Reason::Read));
        assert_eq!(down(ErrorType::WriteError), Some(Reason::Write));
        assert_eq!(down(ErrorType::WriteTimedout), Some(Reason::WriteTimeout));
        let stalled = std::io::Error::new(std::io::ErrorKind::TimedOut, "stalled");
        let mut e = Error::because(ErrorType::WriteError, "writing", stalled);
        e.as_down();
        assert_eq!(Reason::of(&e), Some(Reason::WriteTimeout));
        assert_eq!(down(ErrorType::H2Error), Some(Reason::Protocol));
        assert_eq!(
            Reason::of(&Error::new_up(ErrorType::ConnectionClosed)),
            None
        );
        assert_eq!(Reason::of(&Error::new(ErrorType::InternalError)), None);
        let too_large = Error::new(ErrorType::HTTPStatus(413));
        assert_eq!(Reason::of(&too_large), Some(Reason::BodyTooLarge));
    }
}
