//! # frontend: the Softy Pinko site server
//!
//! Serves the static site in `frontend/site/` (HTML, CSS, a little JavaScript, no
//! build step) the way production wants it: correct types, validators and 304s,
//! caching rules, precompressed twins, Range, a custom 404, strict security headers,
//! and no way out of the root.
//!
//! ## Layout
//! - [`cli`]: flags, environment variables and the `healthcheck` subcommand.
//! - [`site_root`]: where the site is found and the checks it must pass.
//! - [`state`]: settings resolved at startup ([`AppState`]).
//! - [`site_cache`]: the files under the root, read into memory with their headers;
//!   [`reload`]: SIGHUP reads them again.
//! - [`app`](mod@app): [`app()`] builds the router and its layers; [`serve`] runs it.
//! - `site_service`: the one service behind the router: probes, files, security
//!   headers, timeout.
//! - `file_response`: answers a file request from memory (ServeDir for files over the
//!   memory limit), with `content_coding` (which twin to send) and `byte_range`
//!   (`Range`).
//! - [`path_guard`]: 400 for traversal attempts, however encoded.
//! - [`not_found`]: the custom `404.html`, always whole, always 404.
//! - [`etag`]: ETag, `If-None-Match` and `If-Modified-Since`.
//! - [`file_headers`]: `Cache-Control`, charset and `Vary`.
//! - [`security_headers`]: CSP (configurable `connect-src`), `nosniff`, referrer policy.
//!
//! Request ids, logs, probes, shutdown and the health-check client come from
//! `service-kit` (`backend/service-kit/`), shared with the backend and the lb, so every
//! binary behaves identically.

pub mod app;
mod byte_range;
pub mod cli;
mod content_coding;
pub mod etag;
pub mod file_headers;
mod file_response;
pub mod not_found;
pub mod path_guard;
pub mod reload;
pub mod security_headers;
pub mod site_cache;
pub mod site_root;
mod site_service;
pub mod state;

pub use app::{app, serve};
pub use state::AppState;
