//! Softy Pinko's load balancer, built on Pingora 0.9.
//!
//! # Layout
//! The crate reads top to bottom; no module imports one listed after its own layer.
//! - **Startup**: [`cli`] (flags) → [`config`] (YAML → validated `Config` with every error's
//!   field path → pingora's `ServerConf`; [`check`] is what `lb -t`, startup and reload
//!   accept) → [`server`] (the pingora server, its services, run) — `main.rs` tells it.
//! - **Routing state**: `state` holds the immutable `Snapshot` (routes + pools) behind an
//!   `ArcSwap`; `routes` is the longest-prefix table; `pool` wraps one pingora
//!   `LoadBalancer` with the configured policy; `balance` is what the request path
//!   keeps per backend (in flight, outlier ejection, slow start, sticky token) and the
//!   policies themselves; `discovery` (static / DNS) and `health` (HTTP checks, admission of new
//!   backends) feed it; `supervisor` drives discovery and health checks for the pools of
//!   the current snapshot; `tls` holds each TLS listener's SNI certificate resolver, whose
//!   certificates a reload swaps in place; `acme` orders and renews `acme` certificates
//!   from an ACME CA, answers its http-01 challenges and swaps them in the same way.
//! - **Request path**: `accept` takes each client connection on the thread that serves it
//!   (a `SO_REUSEPORT` socket per thread; TLS handshake); `downstream` reads each HTTP/1 request head within the client
//!   deadlines and limits and refuses ambiguous framing, offers it to the fast path
//!   (`proxy::fast`: a simple `GET`/`HEAD` proxied on the client's own bytes, below
//!   pingora's HTTP session), and hands anything else to pingora; `proxy`, one module per
//!   stage: request (snapshot, request id,
//!   route) → upstream (backend choice, request headers) → failover (retry policy) →
//!   response (response headers) → access log. Body-less `GET`/`HEAD` take the direct path
//!   (`proxy::direct`) through the same stages; `errors` are the lb's own JSON answers.
//!   Edge protection: `client_ip` (the client behind `trusted_proxies`), `rate_limit`
//!   (per-route limits per client, checked in `request`), `connection_limits` (concurrent
//!   connections, refused at accept time; each connection's task holds its place).
//! - **Operations**: `admin` (`/ready`, `/health`, `/metrics`, `/status`, `POST /reload`),
//!   `admin_auth` (its bearer token; the token is read by `config::admin_token`),
//!   `reload` (hot reload: check, reuse unchanged pools, warm up new ones, swap; `--watch`),
//!   `metrics` (private Prometheus registry), `observe` (per-pool history) and `status`
//!   (the `/status` JSON), [`admin_client`] (`lb healthcheck`, `lb reload`), `signals`
//!   (SIGHUP reloads).
//! - **Plumbing**: [`quiet_log`] (pingora's per-connection TLS handshake and request-head
//!   errors: counted, not logged), `client_errors` (what clients get wrong, counted),
//!   `log_throttle` (repeated WARN/ERROR lines: one per window, then a "suppressed N"
//!   line), `per_thread` (per-thread values a background task can visit), `deadline`
//!   (`now + timeout` that cannot overflow),
//!   `line_buffer` (log lines written in batches per thread), `json_line` (hand-written
//!   JSON for the access log). The request-id rule, the logging contract and the
//!   healthcheck client come from `service-kit`, shared with the backend and frontend.
//! - **Testing**: `fuzzing` (with the `fuzzing` feature, and in tests): the entry points of
//!   the fuzz targets in `lb/fuzz` and of the property tests, one per parser.
//!
//! Everything is `pub(crate)` but what `main.rs` uses.

pub mod admin_client;
pub mod cli;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod quiet_log;
pub mod server;

mod accept;
mod acme;
mod admin;
mod admin_auth;
mod balance;
mod client_errors;
mod client_ip;
mod config;
mod connection_limits;
mod deadline;
mod discovery;
mod downstream;
mod errors;
mod health;
mod json_line;
mod line_buffer;
mod log_throttle;
mod metrics;
mod observe;
mod per_thread;
mod pool;
mod proxy;
mod rate_limit;
mod reload;
mod routes;
mod signals;
mod state;
mod status;
mod supervisor;
mod tls;
mod upstream_tls;

pub use config::{check, ConfigError, ConfigErrors, LoadedConfig};
