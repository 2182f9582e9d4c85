//! # service-kit: the plumbing every Softy Pinko binary shares
//!
//! Nothing in here knows about the API, the site or routing: it is the part of "behave
//! like a production service" that must be identical in the lb, the backend and the
//! frontend, so it lives in one place.
//!
//! Always available (the lb uses these):
//! - [`request_id`]: the `X-Request-Id` rule (keep a valid id, replace anything else).
//! - [`logging`]: the one logging contract (`--log-format` / `LOG_FORMAT`, the default
//!   rule, subscriber setup with `log` bridged in, the per-request field names).
//! - [`healthcheck`]: the tiny HTTP/1.1 client behind every `healthcheck` subcommand.
//! - [`memory`]: no transparent huge pages (resident memory of the lb and frontend).
//!
//! With the `axum` feature (default; the backend and frontend):
//! - [`probes`]: `/health` and `/ready`.
//! - [`shutdown`]: signals, the drain window, `Connection: close` while draining, and the
//!   bounded graceful stop.
//! - [`process`]: the parts of `main` every service shares (bind, exit codes).
//! - `request_id::layer` and `logging::layer`: the request-id and per-request log layers.
//! - [`server`]: those layers and the drain layer in one call, and the server loop
//!   (header-read and idle timeouts, accept errors) under [`shutdown::serve`].

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod healthcheck;
pub mod logging;
pub mod memory;
#[cfg(feature = "axum")]
pub mod probes;
#[cfg(feature = "axum")]
pub mod process;
pub mod request_id;
#[cfg(feature = "axum")]
pub mod server;
#[cfg(feature = "axum")]
pub mod shutdown;
