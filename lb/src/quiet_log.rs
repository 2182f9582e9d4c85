//! Bad clients on a TLS listener (plaintext HTTP, garbage, a handshake cut half-way, an
//! unknown SNI name, TLS 1.0 only) make pingora log `Downstream handshake error ...` at
//! ERROR, once per connection: anyone on the internet could fill the log with them. Those
//! lines are dropped ([`quiet`], given to `service_kit::logging::init_quieting`) and
//! counted instead, in `lb_tls_handshake_failures_total`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};

/// The module whose `log` records carry pingora's per-connection handshake errors.
const PINGORA_LISTENING: &str = "pingora_core::services::listening";

static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// TLS handshakes that failed since the start.
pub(crate) fn handshake_failures() -> u64 {
    HANDSHAKE_FAILURES.load(Ordering::Relaxed)
}

/// True (drop the event) for pingora's per-connection handshake error and timeout lines.
pub fn quiet(event: &tracing::Event<'_>) -> bool {
    // Bridged `log` records all share the target `log`; the record's own target is the
    // `log.target` field.
    let meta = event.metadata();
    if *meta.level() != tracing::Level::ERROR || meta.target() != "log" {
        return false;
    }
    let mut seen = Seen::default();
    event.record(&mut seen);
    let handshake = seen.target && seen.handshake;
    if handshake {
        HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
    handshake
}

/// What a bridged record says: from pingora's listener module, about a handshake.
#[derive(Default)]
struct Seen {
    target: bool,
    handshake: bool,
}

impl Seen {
    fn field(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.target = value == PINGORA_LISTENING,
            "message" => self.handshake = value.starts_with("Downstream handshake"),
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
