//! # backend: the Softy Pinko API replica
//!
//! `GET /api/hello` answers `Hello, World!` (the original contract); `/api/whoami`
//! names the replica, so round robin is visible; `/health` and `/ready` serve probes;
//! SIGTERM drains before stopping.
//!
//! ## Layout
//! - [`cli`]: flags, environment variables and the `healthcheck` subcommand.
//! - [`state`]: replica identity, counters, settings ([`AppState`]).
//! - [`app`](mod@app): [`app()`] builds the router and its layers; [`serve`] runs it.
//! - [`routes`]: one handler per endpoint.
//! - [`cors`]: the `--cors-origins` value and its layer.
//! - `errors`: the `{"error": ...}` body shape.
//! - [`fault`]: the test-only `BACKEND_FAULT_STATUS` (every `/api/*` answers a 5xx).
//!
//! Request ids, logs, probes, shutdown, the health-check client and the common parts of
//! `main` come from `service-kit` (`backend/service-kit/`), shared with the frontend and
//! the lb.
//!
//! `main.rs` only parses flags, binds, and calls [`serve`].

pub mod app;
pub mod cli;
pub mod cors;
mod errors;
pub mod fault;
pub mod routes;
pub mod state;

pub use app::{app, serve};
pub use state::AppState;
