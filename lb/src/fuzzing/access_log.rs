//! The access log's JSON line, written by hand (`crate::json_line`): it must stay one
//! JSON object on one line whatever the request held, with every field as it was.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use crate::proxy::access_log::Line;

/// The request-dependent fields of one line (the client sends `method`, `path` and
/// `request_id`; the rest comes from the lb), and when it was written.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct AccessLine {
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub route: Option<String>,
    pub upstream: Option<String>,
    pub backend: Option<SocketAddr>,
    pub tries: usize,
    pub duration_us: u64,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub direct: bool,
    pub h2: bool,
    pub tls_version: Option<String>,
    pub error: Option<u8>,
    /// Microseconds since the epoch, taken modulo the year 10000.
    pub now_us: u64,
}

/// Error names the line may carry (pingora's `ErrorType::as_str`, all plain ASCII).
const ERRORS: [&str; 3] = ["ConnectRefused", "ReadTimedout", "HTTPStatus"];

/// Microseconds from the epoch to 10000-01-01: RFC 3339 years have four digits.
const YEAR_10000_US: u64 = 253_402_300_800_000_000;

/// The line for `input`, parsed back: every field equal, the timestamp as the `time`
/// crate writes it, and no raw line break anywhere.
pub fn access_line(input: AccessLine) {
    let line = Line {
        request_id: &input.request_id,
        client_ip: input.client_ip,
        method: &input.method,
        path: &input.path,
        status: input.status,
        route: input.route.as_deref(),
        upstream: input.upstream.as_deref(),
        backend: input.backend,
        tries: input.tries,
        duration_us: input.duration_us.into(),
        bytes_in: input.bytes_in,
        bytes_out: input.bytes_out,
        pipeline: if input.direct { "direct" } else { "engine" },
        protocol: if input.h2 { "h2" } else { "h1" },
        tls_version: input.tls_version.as_deref(),
        error: input.error.map(|e| ERRORS[usize::from(e) % ERRORS.len()]),
    };
    let now_us = input.now_us % YEAR_10000_US;
    let now = UNIX_EPOCH + Duration::from_micros(now_us);
    let mut buf = Vec::new();
    line.to_json(&mut buf, now);
    assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
    assert_eq!(buf.last(), Some(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&buf).expect("one JSON object");

    let at = time::OffsetDateTime::UNIX_EPOCH + Duration::from_micros(now_us);
    // the calendar from the `time` crate, against the lb's own arithmetic
    let expected = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    );
    assert_eq!(v["timestamp"], expected);
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "access");
    assert_eq!(v["request_id"], input.request_id);
    assert_eq!(v["method"], input.method);
    assert_eq!(v["path"], input.path);
    assert_eq!(v["status"], input.status);
    let text = |o: Option<String>| o.map_or(serde_json::Value::Null, serde_json::Value::from);
    let field = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
    assert_eq!(
        field("client_ip"),
        text(input.client_ip.map(|ip| ip.to_string()))
    );
    assert_eq!(field("route"), text(input.route.clone()));
    assert_eq!(field("upstream"), text(input.upstream.clone()));
    assert_eq!(field("backend"), text(input.backend.map(|a| a.to_string())));
    assert_eq!(field("tls_version"), text(input.tls_version.clone()));
    assert_eq!(field("error"), text(line.error.map(str::to_string)));
    assert_eq!(v["tries"], input.tries);
    assert_eq!(v["bytes_in"], input.bytes_in);
    assert_eq!(v["bytes_out"], input.bytes_out);
    assert_eq!(v["pipeline"], line.pipeline);
    assert_eq!(v["protocol"], line.protocol);
    // three decimals exactly, as written (a float comparison would round)
    let duration = format!(
        "\"duration_ms\":{}.{:03},",
        input.duration_us / 1000,
        input.duration_us % 1000
    );
    assert!(
        String::from_utf8_lossy(&buf).contains(&duration),
        "{duration}"
    );
}
