//! Softy Pinko's load balancer, built on Pingora 0.9.
//!
//! # Layout
//! - Startup: [`cli`] (flags) → [`config`] (YAML → validated `Config`, every error with its
//!   field path) → [`server`] (pingora `ServerConf`, services, run) — `main.rs` tells it.
//! - Routing state: [`state`] holds the immutable [`state::Snapshot`] (routes + pools) behind
//!   an `ArcSwap`; [`routes`] is the longest-prefix table; [`pool`] wraps one pingora
//!   `LoadBalancer`; [`discovery`] (static / DNS) and [`health`] (HTTP checks, admission of
//!   new backends) feed it; [`supervisor`] is the single background service that drives
//!   discovery and health checks for the pools of the current snapshot.
//! - Request path: [`proxy`] (one module per stage: request → upstream → failover →
//!   response), [`request_id`], [`errors`] (lb-generated JSON errors), [`access_log`].
//! - Operations: [`admin`] (`/ready`, `/health`, `/metrics`, `/status`, `POST /reload`),
//!   [`reload`] (hot reload: check, reuse unchanged pools, warm up new ones, swap; `--watch`),
//!   [`metrics`] (private Prometheus registry, handles resolved per route/pool),
//!   [`observe`] (per-pool discovery/check history and per-backend counts) and [`status`]
//!   (the `/status` JSON), [`admin_client`] (`lb healthcheck`, `lb reload`), [`signals`]
//!   (SIGHUP reloads), [`logging`] (JSON/text, `log` bridged to tracing).
//! - Shared plumbing: [`per_thread`] (per-thread values a background task can visit: idle
//!   upstream connections, access-log buffers).

pub mod access_log;
pub mod admin;
pub mod admin_client;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod per_thread;
pub mod pool;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod signals;
pub mod state;
pub mod status;
pub mod supervisor;
