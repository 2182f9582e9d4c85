//! One structured line per request, as a `tracing` event with target `access` (JSON or text
//! depending on `--log-format`). Fields: request_id, client_ip, method, path, status, route,
//! upstream, backend, tries, duration_ms, bytes_in, bytes_out (body bytes), and error when
//! the request failed. The event's timestamp is the time.
//!
//! Values are passed as `Display` references, so nothing is formatted unless a subscriber
//! actually writes the line; `server.access_log: false` skips the event altogether.

use pingora::proxy::Session;
use pingora::Error;
use tracing::field::display;

use crate::proxy::RequestCtx;

pub fn log(session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let client_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| display(a.ip()));
    let route = ctx.route();
    let downstream = session.as_downstream();
    tracing::info!(
        target: "access",
        request_id = ctx.request_id.to_str().unwrap_or("-"),
        client_ip,
        method = req.method.as_str(),
        path = req.uri.path(),
        status,
        route = route.map(|r| r.prefix.as_str()),
        upstream = route.map(|r| r.pool.name.as_str()),
        backend = ctx.backend().map(display),
        tries = ctx.tries(),
        // whole microseconds, so the number prints short (2.417, not 2.4170000000000003)
        duration_ms = ctx.started.elapsed().as_micros() as f64 / 1000.0,
        bytes_in = downstream.body_bytes_read(),
        bytes_out = downstream.body_bytes_sent(),
        error = error.map(|e| e.etype().as_str()),
    );
}
