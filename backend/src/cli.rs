//! Command line: `backend [OPTIONS]` serves; `backend healthcheck` probes a running one.
//! Every flag has an environment variable (`BACKEND_*`, and `LOG_FORMAT`).

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use service_kit::{healthcheck, logging::LogArgs};

use crate::{cors::CorsOrigins, fault::FaultStatus};

/// The origins the stack serves the page from: the load balancer (8080) and the
/// frontend published directly (9000), by name and by address.
pub const DEFAULT_CORS_ORIGINS: &str =
    "http://localhost:8080,http://127.0.0.1:8080,http://localhost:9000,http://127.0.0.1:9000";

const SHUTDOWN_HELP: &str = "\
Shutdown (SIGTERM or SIGINT):
  1. /ready answers 503 at once, and responses carry `Connection: close`;
  2. the server keeps serving for --drain, so load balancers notice;
  3. it stops accepting connections, closes idle ones, gives in-flight requests up to
     --shutdown-timeout, and exits 0.

Endpoints: GET /api/hello, /api/whoami, /api/slow?ms=N, /health, /ready.
Logs: RUST_LOG refines the filter (default info).";

/// Softy Pinko API replica.
#[derive(Debug, Parser)]
#[command(name = "backend", version, about, after_long_help = SHUTDOWN_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// GET this service's /ready and exit 0 on 2xx, 1 otherwise (for Docker HEALTHCHECK).
    Healthcheck(healthcheck::Args),
}

/// How the API serves. Parse it with `ServeArgs::parse_from`-style helpers in tests.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "BACKEND_LISTEN", default_value = "0.0.0.0:5252")]
    pub listen: SocketAddr,

    /// Name reported by /api/whoami [default: the hostname].
    #[arg(long, env = "BACKEND_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// Comma-separated origins allowed to call the API from a browser (CORS), e.g.
    /// `http://localhost:9000`; `*` allows any origin; an empty value allows none.
    #[arg(long, env = "BACKEND_CORS_ORIGINS", default_value = DEFAULT_CORS_ORIGINS,
          value_parser = CorsOrigins::parse)]
    pub cors_origins: CorsOrigins,

    /// How long to keep serving after SIGTERM while /ready answers 503.
    #[arg(long, env = "BACKEND_DRAIN", default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,

    /// How long in-flight requests get after the drain window before the process exits.
    #[arg(long, env = "BACKEND_SHUTDOWN_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "BACKEND_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// Longest a request may take; slower ones get 503.
    #[arg(long, env = "BACKEND_REQUEST_TIMEOUT", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Test only: answer every /api/* request with this server error status (500-599)
    /// while /health and /ready keep passing, to test a load balancer's passive outlier
    /// detection. Unset in production.
    #[arg(long, env = "BACKEND_FAULT_STATUS", value_name = "STATUS",
          value_parser = FaultStatus::parse)]
    pub fault_status: Option<FaultStatus>,

    #[command(flatten)]
    pub log: LogArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_docs() {
        let cli = Cli::try_parse_from(["backend"]).unwrap();
        assert_eq!(cli.serve.listen, "0.0.0.0:5252".parse().unwrap());
        assert_eq!(cli.serve.drain, Duration::from_secs(3));
        assert_eq!(cli.serve.request_timeout, Duration::from_secs(10));
        assert_eq!(cli.serve.fault_status, None);
        assert!(cli.command.is_none());
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for args in [
            &["backend", "--listen", "nowhere"][..],
            &["backend", "--drain", "soon"],
            &["backend", "--cors-origins", "localhost:9000"],
            &["backend", "--log-format", "xml"],
            &["backend", "--fault-status", "404"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            let kind = error.kind();
            use clap::error::ErrorKind::{InvalidValue, ValueValidation};
            assert!(
                matches!(kind, ValueValidation | InvalidValue),
                "{args:?}: {kind:?}"
            );
        }
    }
}
