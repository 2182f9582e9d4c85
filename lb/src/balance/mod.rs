//! Choosing a backend, beyond pingora's health: the per-backend state the request path
//! keeps (`backend_state`: in-flight count, outlier record, slow-start ramp), the
//! selection policies plugged into pingora's `LoadBalancer` (`selector`, with
//! `round_robin` and `least_requests`, and `rest`, what they offer once their own choice is
//! turned down; random and Ketama come from pingora), passive
//! outlier ejection (`outlier`), the sticky cookie (`sticky`) and the hash key of a
//! request (`hash_key`).
//!
//! `crate::pool` owns one [`BackendTable`] per pool; discovery attaches each backend's
//! state to its pingora `Backend` (in `ext`), so the request path reaches it without a
//! lookup.

mod backend_state;
mod hash_key;
mod least_requests;
mod outlier;
mod rest;
mod round_robin;
mod selector;
pub(crate) mod sticky;
#[cfg(test)]
mod testing;

pub(crate) use backend_state::{BackendState, BackendTable, InFlight, OutlierMetrics};
pub(crate) use hash_key::request_key;
pub(crate) use selector::{Published, Selector, SelectorConfig};
