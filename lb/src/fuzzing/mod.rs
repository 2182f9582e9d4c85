//! Entry points for the fuzz targets (`lb/fuzz`, `cargo +nightly fuzz`) and the property
//! tests (`properties`, plain `cargo test`): the same functions, so both check the same
//! properties. Each takes raw input, runs one of the lb's parsers or checks on it as the lb
//! does, and panics only when a property of the outcome fails (a panic inside the lb's own
//! code fails the same way, which is the point: bad input gets an error, never a panic).
//!
//! Built with the `fuzzing` feature (and in this crate's tests); not an API.
//!
//! | entry | input | what runs |
//! |---|---|---|
//! | [`config`] | a config file's bytes | what `lb -t` and startup run: parse, validate, pingora's `ServerConf` check, and for an accepted file the routing snapshot and its metrics |
//! | [`config_field`] | a field selector byte + a value | one value placed at one field of a valid config: accepted as written, or refused naming that field |
//! | [`request`] | the bytes a client sends | pingora's HTTP/1 head parser, then the lb's request stage (request id, HTTPS redirect, Host check, routing, 413) and the upstream request, on a loopback-free in-memory stream |
//! | [`pem`] | a PEM file's bytes | a TLS listener's certificate and key, an upstream `ca_file`, and the local CA's stored pair |
//! | [`access_line`] | the fields of one request | the hand-written JSON access-log line, parsed back |
//! | [`chunked`] | the bytes after a chunked response head | the fast path's chunked-body parser, fed whole and in pieces: the same answer, and an exact end |
//!
//! The request-head checker (the lb's own limits and smuggling checks on the raw head) gets
//! its entry here as `request_head(data: &[u8])`: run the checker on `data` with the default
//! limits and with tight ones, and assert what its `Ok`/`Err` promise. Its fuzz target
//! (`lb/fuzz/fuzz_targets/request_head.rs`) and seeds (the same smuggling shapes as
//! [`request`]'s) are described in `lb/fuzz/README.md`.

mod access_log;
mod chunked;
mod config;
mod fast_path;
mod pem;
mod request;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod regressions;

pub use access_log::{access_line, AccessLine};
pub use chunked::chunked;
pub use config::{config, config_field, FIELDS};
pub use fast_path::{fast_request, fast_response};
pub use pem::pem;
pub use request::request;
