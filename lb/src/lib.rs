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
//! - Operations: [`admin`] (`/ready`, `/health`), [`healthcheck`] (`lb healthcheck`),
//!   [`signals`] (SIGHUP does not kill), [`logging`] (JSON/text, `log` bridged to tracing).

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod health;
pub mod healthcheck;
pub mod logging;
pub mod pool;
pub mod proxy;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod signals;
pub mod state;
pub mod supervisor;
