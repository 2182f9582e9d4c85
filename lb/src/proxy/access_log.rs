//! The last stage: one structured line per request, target `access`. Fields: the
//! logging contract's `request_id`, `method`, `path`, `status`, `duration_ms` (the same
//! names as the backend's and frontend's lines, see the README's "Logs"), plus client_ip,
//! route, upstream, backend, tries, bytes_in, bytes_out (body bytes), pipeline (`fast`,
//! `direct` or `engine`: which request path proxied it), protocol (`h1` or `h2`), tls_version
//! (`TLSv1.2`/`TLSv1.3`, only on a TLS listener), and error when the request failed; plus timestamp, level and target like every other log line.
//!
//! With JSON logs (the default off a terminal) the line is built here directly: the same
//! shape `tracing-subscriber`'s JSON formatter gives every other event, but written by hand
//! ([`crate::json_line`]) into a per-thread buffer ([`crate::line_buffer`]). Going through
//! the generic formatter cost ~28k instructions per request (callgrind: field visitors, a
//! `String` per `Display` value, date formatting), about a fifth of the lb's whole
//! per-request work; this path costs ~4k. It still obeys the `RUST_LOG` filter
//! (`access=off` silences it). With text logs the line is an ordinary `tracing` event.
//! `server.access_log: false` skips both; `server.access_log_flush` bounds how long a line
//! may wait in the buffer (`0s`: written at once).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use pingora::proxy::Session;
use pingora::Error;
use service_kit::logging::{self, LogFormat, ACCESS_TARGET};
use tracing::Level;

use super::ctx::RequestCtx;
use crate::json_line::{push_ip, push_num, push_socket_addr, str_field, write_timestamp};
use crate::line_buffer;
use crate::state::LbState;

/// What the client spoke: h2 or not, and the TLS version (`None` on plaintext).
#[derive(Clone, Copy)]
pub(crate) struct Spoken<'a> {
    pub(crate) h2: bool,
    pub(crate) tls_version: Option<&'a str>,
}

impl<'a> Spoken<'a> {
    pub(crate) fn of(session: &'a Session) -> Self {
        let downstream = session.as_downstream();
        Spoken {
            h2: downstream.is_http2(),
            tls_version: downstream
                .digest()
                .and_then(|d| d.ssl_digest.as_deref())
                .map(|d| tls_version(&d.version)),
        }
    }
}

/// What the client asked and got: read once from pingora's session, or given by the fast
/// path, which has no session.
pub(crate) struct Exchange<'a> {
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// 0: no response was written.
    pub(crate) status: u16,
    pub(crate) bytes_in: usize,
    pub(crate) bytes_out: usize,
    pub(crate) spoken: Spoken<'a>,
}

impl<'a> Exchange<'a> {
    pub(crate) fn of(session: &'a Session) -> Self {
        let req = session.req_header();
        let downstream = session.as_downstream();
        Exchange {
            client_ip: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            method: req.method.as_str(),
            path: req.uri.path(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            bytes_in: downstream.body_bytes_read(),
            bytes_out: downstream.body_bytes_sent(),
            spoken: Spoken::of(session),
        }
    }
}

/// The end of every request, on every path: the per-request metrics, then the access line.
pub(crate) fn finish(
    state: &LbState,
    ctx: &RequestCtx,
    exchange: &Exchange<'_>,
    error: Option<&Error>,
) {
    let fallback;
    let snapshot = match &ctx.snapshot {
        Some(s) => s,
        None => {
            // failed before request_filter (e.g. an unparsable request)
            fallback = state.snapshot();
            &fallback
        }
    };
    let server = &snapshot.config.server;
    if server.metrics {
        let spoken = exchange.spoken;
        state
            .metrics
            .request_protocol(spoken.h2, spoken.tls_version);
        match ctx.route() {
            Some(route) => {
                route.metrics.request(exchange.status);
                let seconds = ctx.started.elapsed().as_secs_f64();
                route.pool.metrics.finished(seconds, ctx.tries());
            }
            None => snapshot.no_route.request(exchange.status),
        }
    }
    if server.access_log {
        log(exchange, error, ctx, server.access_log_flush);
    }
}

fn log(exchange: &Exchange<'_>, error: Option<&Error>, ctx: &RequestCtx, flush_after: Duration) {
    if !tracing::enabled!(target: "access", Level::INFO) {
        return;
    }
    let line = Line::new(exchange, error, ctx);
    match logging::format() {
        Some(LogFormat::Json) => {
            line_buffer::write_line(flush_after, |buf| line.to_json(buf, SystemTime::now()));
        }
        _ => line.emit_event(),
    }
}

/// The fields of one access log line.
pub(crate) struct Line<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) route: Option<&'a str>,
    pub(crate) upstream: Option<&'a str>,
    pub(crate) backend: Option<SocketAddr>,
    pub(crate) tries: usize,
    /// Whole microseconds, so the number prints short (2.417, not 2.4170000000000003).
    pub(crate) duration_us: u128,
    pub(crate) bytes_in: usize,
    pub(crate) bytes_out: usize,
    pub(crate) pipeline: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) tls_version: Option<&'a str>,
    pub(crate) error: Option<&'static str>,
}

impl<'a> Line<'a> {
    fn new(exchange: &'a Exchange<'a>, error: Option<&Error>, ctx: &'a RequestCtx) -> Self {
        let route = ctx.route();
        Line {
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            client_ip: exchange.client_ip,
            method: exchange.method,
            path: exchange.path,
            status: exchange.status,
            route: route.map(|r| r.prefix.as_str()),
            upstream: route.map(|r| r.pool.name.as_str()),
            backend: ctx.backend(),
            tries: ctx.tries(),
            duration_us: ctx.started.elapsed().as_micros(),
            bytes_in: exchange.bytes_in,
            bytes_out: exchange.bytes_out,
            pipeline: ctx.pipeline(),
            protocol: if exchange.spoken.h2 { "h2" } else { "h1" },
            tls_version: exchange.spoken.tls_version,
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
            pipeline = self.pipeline,
            protocol = self.protocol,
            tls_version = self.tls_version,
            error = self.error,
        );
    }

    /// `{"timestamp":…,"level":"INFO",<fields>,"target":"access"}\n`; absent optional
    /// fields are left out, as tracing leaves out unset ones.
    pub(crate) fn to_json(&self, buf: &mut Vec<u8>, now: SystemTime) {
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
        // Known ASCII values: written as they are, no escaping pass on the hot path.
        buf.extend_from_slice(b",\"pipeline\":\"");
        buf.extend_from_slice(self.pipeline.as_bytes());
        buf.extend_from_slice(b"\",\"protocol\":\"");
        buf.extend_from_slice(self.protocol.as_bytes());
        buf.push(b'"');
        if let Some(v) = self.tls_version {
            str_field(buf, "tls_version", v);
        }
        if let Some(error) = self.error {
            str_field(buf, "error", error);
        }
        buf.extend_from_slice(b",\"target\":\"");
        buf.extend_from_slice(ACCESS_TARGET.as_bytes());
        buf.extend_from_slice(b"\"}\n");
    }
}

/// rustls names versions after its enum (`TLSv1_3`); the log says them as people write them.
pub(crate) fn tls_version(v: &str) -> &str {
    match v {
        "TLSv1_3" => "TLSv1.3",
        "TLSv1_2" => "TLSv1.2",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

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
            pipeline: "engine",
            protocol: "h2",
            tls_version: Some("TLSv1.3"),
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
        assert_eq!(v["pipeline"], "engine");
        assert_eq!(v["protocol"], "h2");
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert!(v.get("backend").is_none());
    }
}
