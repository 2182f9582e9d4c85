//! Pingora logs some client misbehaviour at ERROR, once per connection, from code the lb
//! has no hook in: anyone on the internet could fill the log with these lines. They are
//! dropped ([`quiet`], given to `service_kit::logging::init_quieting`) and counted instead:
//! - `Fail to proxy: ..., downstream session type: ...` (the request head could not be
//!   read: the client closed or reset the connection mid-head):
//!   `lb_client_errors_total{reason="request_head"}` (`crate::client_errors`);
//! - `H2 handshake error ...` (a client chose h2 by ALPN, or spoke h2c, then left or sent
//!   no valid preface): `lb_client_errors_total{reason="protocol"}`;
//! - `failed to acquire reusable stream`: pingora's upstream pool lost a benign race with
//!   its own idle watcher for a pooled connection (seen under h2 load: about 8 % of
//!   requests), and simply connects anew; nothing failed and nothing is to be done.
//!
//! Every other WARN or ERROR line of pingora (or another library logging through `log`)
//! is rate-limited by [`crate::log_throttle`]: a backend that refuses connections would
//! otherwise write one `Fail to proxy` line per request.

use std::fmt;

use tracing::field::{Field, Visit};

/// The module that logs a request head it could not read.
const PINGORA_PROXY: &str = "pingora_proxy";
/// The module that logs a failed downstream h2 handshake.
const PINGORA_APPS: &str = "pingora_core::apps";
/// The module that logs a pooled upstream connection it could not take.
const PINGORA_CONNECTORS: &str = "pingora_core::connectors";

/// True (drop the event) for pingora's unreadable-request-head and h2 handshake lines, and for library WARN/ERROR lines the throttle holds back.
pub fn quiet(event: &tracing::Event<'_>) -> bool {
    // Bridged `log` records all share the target `log`; the record's own target is the
    // `log.target` field.
    let meta = event.metadata();
    if *meta.level() > tracing::Level::WARN || meta.target() != "log" {
        return false;
    }
    let mut seen = Seen::default();
    event.record(&mut seen);
    if *meta.level() == tracing::Level::ERROR && dropped(&seen) {
        return true;
    }
    // The rest are rate-limited (`crate::log_throttle`).
    crate::log_throttle::foreign(&seen.module, &seen.message, *meta.level())
}

/// The ERROR lines dropped here, counted.
fn dropped(seen: &Seen) -> bool {
    if seen.proxy && seen.request_head {
        crate::client_errors::count(crate::client_errors::Reason::RequestHead);
        return true;
    }
    if seen.apps && seen.h2_handshake {
        crate::client_errors::count(crate::client_errors::Reason::Protocol);
        return true;
    }
    seen.connectors && seen.reuse_race
}

/// What a bridged record says: which module it is from, and what about.
#[derive(Default)]
struct Seen {
    proxy: bool,
    request_head: bool,
    apps: bool,
    h2_handshake: bool,
    connectors: bool,
    reuse_race: bool,
    /// The `log` target and the message, for `crate::log_throttle`.
    module: String,
    message: String,
}

impl Seen {
    fn field(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => {
                self.module = value.to_string();
                self.proxy = value == PINGORA_PROXY;
                self.apps = value == PINGORA_APPS;
                self.connectors = value == PINGORA_CONNECTORS;
            }
            "message" => {
                // pingora_proxy's line when `read_request` fails other than on a malformed
                // head (which it answers with 400 at DEBUG).
                self.request_head = value.starts_with("Fail to proxy: ")
                    && value.contains(", downstream session type: ");
                self.h2_handshake = value.starts_with("H2 handshake error");
                self.reuse_race = value == "failed to acquire reusable stream";
                self.message = value.to_string();
            }
            _ => {}
        }
    }
}

impl Visit for Seen {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), "log.target" | "message") {
            self.field(field, &format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }
}
