//! One structured line per request with target `access`. Fields: request_id, client_ip,
//! method, path, status, route, upstream, backend, tries, duration_ms, bytes_in, bytes_out
//! (body bytes), and error when the request failed; plus timestamp, level and target like
//! every other log line.
//!
//! With JSON logs (the default off a terminal) the line is written here directly: the same
//! shape `tracing-subscriber`'s JSON formatter gives every other event, but built in a reused
//! per-thread buffer and written with one `write_all` to stdout. Going through the generic
//! formatter cost ~28k instructions per request (callgrind: field visitors, a `String` per
//! `Display` value, date formatting), about a fifth of the lb's whole per-request work; this
//! path costs ~4k. It still obeys the `RUST_LOG` filter (`access=off` silences it). With
//! text logs the line is an ordinary `tracing` event. `server.access_log: false` skips both.
//!
//! JSON lines are buffered per thread and written in one `write` when the buffer holds
//! 32 KiB or its oldest line is `server.access_log_flush` old (100 ms by default; checked at
//! each line and by [`flush_due`] every 20 ms, so an idle thread's lines still go out).
//! The write was a syscall per request, about a tenth of the lb's CPU per request. All
//! buffers are written when the server stops ([`flush_all`]); a `SIGKILL` loses at most
//! `access_log_flush` of lines. `access_log_flush: 0s` writes each line at once. Every
//! writer goes through the process's stdout lock, so lines never interleave.

use std::cell::RefCell;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pingora::proxy::Session;
use pingora::Error;
use tracing::Level;

use crate::logging::{self, LogFormat};
use crate::per_thread::{lock, Registry};
use crate::proxy::RequestCtx;

pub fn log(session: &Session, error: Option<&Error>, ctx: &RequestCtx, flush_after: Duration) {
    if !tracing::enabled!(target: "access", Level::INFO) {
        return;
    }
    let line = Line::new(session, error, ctx);
    match logging::format() {
        Some(LogFormat::Json) if flush_after.is_zero() => line.write_json(),
        Some(LogFormat::Json) => line.buffer_json(flush_after),
        _ => line.emit_event(),
    }
}

/// A buffer is written once it holds this much.
const FLUSH_BYTES: usize = 32 * 1024;

/// One thread's lines waiting to be written.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// When the oldest line in `buf` must be out.
    deadline: Option<Instant>,
}

impl Pending {
    fn write_out(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stdout().lock().write_all(&self.buf);
            self.buf.clear();
        }
        self.deadline = None;
    }
}

thread_local! {
    static PENDING: Local = Local(ALL.register());
}

/// A thread's own handle on its buffer: when the thread ends (its runtime shut down), the
/// lines still waiting are written.
struct Local(Arc<Mutex<Pending>>);

impl Drop for Local {
    fn drop(&mut self) {
        lock(&self.0).write_out();
    }
}

/// Every thread's buffer, for [`flush_due`] and [`flush_all`].
static ALL: Registry<Pending> = Registry::new();

/// Write every buffered line now (the server is stopping; threads that already ended wrote
/// theirs as they ended).
pub fn flush_all() {
    ALL.for_each(Pending::write_out);
}

/// Write out the buffers whose oldest line is due (run every 20 ms in the background, so a
/// quiet thread's lines go out too).
pub fn flush_due() {
    let now = Instant::now();
    ALL.for_each(|p| {
        if p.deadline.is_some_and(|d| d <= now) {
            p.write_out();
        }
    });
}

/// The fields of one access log line.
struct Line<'a> {
    request_id: &'a str,
    client_ip: Option<IpAddr>,
    method: &'a str,
    path: &'a str,
    status: u16,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    backend: Option<SocketAddr>,
    tries: usize,
    /// Whole microseconds, so the number prints short (2.417, not 2.4170000000000003).
    duration_us: u128,
    bytes_in: usize,
    bytes_out: usize,
    error: Option<&'static str>,
}

thread_local! {
    /// The line being built; keeps its capacity between requests.
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl<'a> Line<'a> {
    fn new(session: &'a Session, error: Option<&Error>, ctx: &'a RequestCtx) -> Self {
        let req = session.req_header();
        let route = ctx.route();
        let downstream = session.as_downstream();
        Line {
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            client_ip: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            method: req.method.as_str(),
            path: req.uri.path(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            route: route.map(|r| r.prefix.as_str()),
            upstream: route.map(|r| r.pool.name.as_str()),
            backend: ctx.backend(),
            tries: ctx.tries(),
            duration_us: ctx.started.elapsed().as_micros(),
            bytes_in: downstream.body_bytes_read(),
            bytes_out: downstream.body_bytes_sent(),
            error: error.map(|e| e.etype().as_str()),
        }
    }

    fn duration_ms(&self) -> f64 {
        self.duration_us as f64 / 1000.0
    }

    fn emit_event(&self) {
        tracing::info!(
            target: "access",
            request_id = self.request_id,
            client_ip = self.client_ip.map(display),
            method = self.method,
            path = self.path,
            status = self.status,
            route = self.route,
            upstream = self.upstream,
            backend = self.backend.map(display),
            tries = self.tries,
            duration_ms = self.duration_ms(),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            error = self.error,
        );
    }

    fn buffer_json(&self, flush_after: Duration) {
        PENDING.with(|pending| {
            let mut p = lock(&pending.0);
            self.to_json(&mut p.buf, SystemTime::now());
            let now = Instant::now();
            let deadline = *p.deadline.get_or_insert(now + flush_after);
            if p.buf.len() >= FLUSH_BYTES || deadline <= now {
                p.write_out();
            }
        });
    }

    fn write_json(&self) {
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            self.to_json(buf, SystemTime::now());
            // One write per line, as the tracing formatter does, so lines never interleave.
            let _ = std::io::stdout().lock().write_all(buf);
        });
    }

    /// `{"timestamp":…,"level":"INFO",<fields>,"target":"access"}\n`; absent optional
    /// fields are left out, as tracing leaves out unset ones.
    fn to_json(&self, buf: &mut Vec<u8>, now: SystemTime) {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(buf, now);
        buf.extend_from_slice(b"\",\"level\":\"INFO\"");
        str_field(buf, "request_id", self.request_id);
        if let Some(ip) = self.client_ip {
            buf.extend_from_slice(b",\"client_ip\":\"");
            push_ip(buf, ip);
            buf.push(b'"');
        }
        str_field(buf, "method", self.method);
        str_field(buf, "path", self.path);
        buf.extend_from_slice(b",\"status\":");
        push_num(buf, self.status.into(), 1);
        if let Some(route) = self.route {
            str_field(buf, "route", route);
        }
        if let Some(upstream) = self.upstream {
            str_field(buf, "upstream", upstream);
        }
        if let Some(backend) = self.backend {
            buf.extend_from_slice(b",\"backend\":\"");
            push_socket_addr(buf, backend);
            buf.push(b'"');
        }
        buf.extend_from_slice(b",\"tries\":");
        push_num(buf, self.tries as u64, 1);
        // milliseconds with 3 decimals, from whole microseconds (`2.417`)
        buf.extend_from_slice(b",\"duration_ms\":");
        push_num(buf, (self.duration_us / 1000) as u64, 1);
        buf.push(b'.');
        push_num(buf, (self.duration_us % 1000) as u64, 3);
        buf.extend_from_slice(b",\"bytes_in\":");
        push_num(buf, self.bytes_in as u64, 1);
        buf.extend_from_slice(b",\"bytes_out\":");
        push_num(buf, self.bytes_out as u64, 1);
        if let Some(error) = self.error {
            str_field(buf, "error", error);
        }
        buf.extend_from_slice(b",\"target\":\"access\"}\n");
    }
}

/// `,"key":"value"` with the value JSON-escaped (a path may hold `"` or `\`).
fn str_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    // writing a &str into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// RFC 3339 UTC with microseconds, as tracing-subscriber prints it:
/// `2026-11-28T20:36:42.773565Z`.
fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    push_num(buf, year.unsigned_abs(), 4);
    for (sep, n) in [
        (b'-', u64::from(month)),
        (b'-', u64::from(day)),
        (b'T', rem / 3600),
        (b':', rem / 60 % 60),
        (b':', rem % 60),
    ] {
        buf.push(sep);
        push_num(buf, n, 2);
    }
    buf.push(b'.');
    push_num(buf, since.subsec_micros().into(), 6);
    buf.push(b'Z');
}

/// `n` in decimal, zero-padded to at least `width` digits (at most 20). The numbers and
/// addresses of a line are written by hand: `core::fmt` (padding, flags, `IpAddr`'s
/// intermediate buffer) made up most of the remaining cost of a line.
fn push_num(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    start = start.min(digits.len() - width.clamp(1, 20));
    buf.extend_from_slice(&digits[start..]);
}

fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_num(buf, octet.into(), 1);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

fn push_socket_addr(buf: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(buf, IpAddr::V4(*v4.ip()));
            buf.push(b':');
            push_num(buf, v4.port().into(), 1);
        }
        SocketAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn timestamp_like_tracing() {
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::from_micros(1_795_898_202_773_565);
        write_timestamp(&mut buf, t);
        assert_eq!(buf, b"2026-11-28T20:36:42.773565Z");
    }

    #[test]
    fn json_line_escapes_and_skips_absent_fields() {
        let line = Line {
            request_id: "id-1",
            client_ip: Some([10, 0, 0, 1].into()),
            method: "GET",
            path: "/a\"b\\c",
            status: 502,
            route: Some("/api/"),
            upstream: Some("api"),
            backend: None,
            tries: 3,
            duration_us: 2417,
            bytes_in: 0,
            bytes_out: 64,
            error: Some("ConnectRefused"),
        };
        let mut buf = Vec::new();
        line.to_json(&mut buf, UNIX_EPOCH);
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("one JSON object");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        assert_eq!(v["path"], "/a\"b\\c");
        assert_eq!(v["client_ip"], "10.0.0.1");
        assert_eq!(v["status"], 502);
        assert_eq!(v["duration_ms"], 2.417);
        assert_eq!(v["error"], "ConnectRefused");
        assert!(v.get("backend").is_none());
    }

    #[test]
    fn numbers_and_addresses() {
        let mut buf = Vec::new();
        push_num(&mut buf, 0, 1);
        push_num(&mut buf, 7, 3);
        push_num(&mut buf, 1234, 2);
        push_num(&mut buf, u64::MAX, 1);
        assert_eq!(buf, b"0007123418446744073709551615");
        for addr in ["10.20.0.255:5252", "[::1]:80", "0.0.0.0:0"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let mut buf = Vec::new();
            push_socket_addr(&mut buf, addr);
            assert_eq!(String::from_utf8(buf).expect("utf8"), addr.to_string());
        }
    }
}
