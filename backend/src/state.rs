//! What the handlers share: who this replica is, its counters, and its settings.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use service_kit::shutdown::{Draining, Plan};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{cli::ServeArgs, cors::CorsOrigins, fault::FaultStatus};

/// Cheap to clone; everything lives behind one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    /// `--replica-id`, or the hostname.
    pub replica: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    requests_served: AtomicU64,
    pub draining: Draining,
    /// `--drain` and `--shutdown-timeout`.
    pub shutdown_plan: Plan,
    pub cors_origins: CorsOrigins,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// `--fault-status` (`BACKEND_FAULT_STATUS`): test only, `None` in production.
    pub fault_status: Option<FaultStatus>,
}

impl AppState {
    /// A fresh replica: zero requests served, not draining, settings from `args`.
    pub fn new(args: &ServeArgs) -> Self {
        Self(Arc::new(Inner {
            replica: args.replica_id.clone().unwrap_or_else(hostname),
            started_at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            requests_served: AtomicU64::new(0),
            draining: Draining::default(),
            shutdown_plan: Plan {
                drain: args.drain,
                timeout: args.shutdown_timeout,
            },
            cors_origins: args.cors_origins.clone(),
            body_limit: args.body_limit,
            request_timeout: args.request_timeout,
            fault_status: args.fault_status,
        }))
    }

    /// Counts one more API request and returns the new total.
    pub fn count_request(&self) -> u64 {
        self.0.requests_served.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// API requests counted so far.
    pub fn requests_served(&self) -> u64 {
        self.0.requests_served.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The kernel's hostname (in a container: the container id), or `unknown`.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
