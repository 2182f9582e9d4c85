//! Service plumbing shared by every Softy Pinko HTTP service (backend and frontend).
//!
//! Nothing in here knows about the API: it is the part of "behave like a production
//! service" that must be identical in both binaries, so it lives in one place.
//!
//! - [`request_id`]: the `X-Request-Id` rule (keep a valid id, replace anything else).
//! - [`logging`]: subscriber setup (text or JSON) and the one-line-per-request log.
//! - [`shutdown`]: signals, the drain window, `Connection: close` while draining, and
//!   the bounded graceful stop.
//! - [`probes`]: `/health` and `/ready`.
//! - [`healthcheck`]: the tiny HTTP/1.1 client behind the `healthcheck` subcommand.
//! - [`process`]: the parts of `main` every service shares (bind, exit codes).

pub mod healthcheck;
pub mod logging;
pub mod probes;
pub mod process;
pub mod request_id;
pub mod shutdown;
