//! A test-only fault: with `BACKEND_FAULT_STATUS=500` every `/api/*` request is answered
//! with that status (and the usual `{"error": ...}` body) while `/health` and `/ready`
//! keep passing. Such a replica looks healthy to an active health check; only a load
//! balancer watching real responses (passive outlier detection) can catch it, which is
//! what the Docker e2e suite's `outlier` scenario checks.
//!
//! Read once at startup: unset, the layer is not even installed, so it costs nothing.

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    Router,
};
use http::StatusCode;

use crate::errors::error;

/// The environment variable (also `--fault-status`).
pub const ENV: &str = "BACKEND_FAULT_STATUS";

/// A server error status (500 to 599) to answer every API request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultStatus(StatusCode);

impl FaultStatus {
    /// Parses a status code from 500 to 599; the error names the variable, since that is
    /// how the fault is meant to be set.
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|code| (500..=599).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .map(Self)
            .ok_or_else(|| {
                format!("{ENV} must be a server error status from 500 to 599, not {value:?}")
            })
    }

    pub fn status(self) -> StatusCode {
        self.0
    }
}

/// `router` answering every `/api/*` request with `fault`, or `router` untouched when
/// there is none.
pub(crate) fn layer(router: Router, fault: Option<FaultStatus>) -> Router {
    match fault {
        Some(fault) => router.layer(middleware::from_fn_with_state(fault, answer)),
        None => router,
    }
}

/// Only `/api/*`: the probes must keep passing, or the active health check would take
/// the replica out and the fault would test nothing.
async fn answer(State(fault): State<FaultStatus>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let reason = fault
        .0
        .canonical_reason()
        .unwrap_or("server error")
        .to_ascii_lowercase();
    error(fault.0, &reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_server_errors_only() {
        assert_eq!(
            FaultStatus::parse("500").map(FaultStatus::status),
            Ok(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(FaultStatus::parse(" 599 ").unwrap().status().as_u16(), 599);
        for bad in ["", "abc", "499", "600", "200", "-500", "5000", "500.0"] {
            let error = FaultStatus::parse(bad).unwrap_err();
            assert!(error.contains(ENV), "{bad:?}: {error}");
        }
    }
}
