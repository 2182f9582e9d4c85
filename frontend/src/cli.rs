//! Command line: `frontend [OPTIONS]` serves the site; `frontend healthcheck` probes a
//! running one. Every flag has an environment variable (`FRONTEND_*`, and `LOG_FORMAT`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use service_kit::{healthcheck, logging::LogArgs};

use crate::security_headers::ConnectSrc;

const MORE_HELP: &str = "\
Site root (--root): FRONTEND_ROOT if set, else the first directory that exists of
  <directory of the binary>/site, ./frontend/site, ./site.

The site is read into memory at start (files over --cache-file-limit excepted), so a
file added or changed later is not served until SIGHUP, which reads the root again
(on failure the previous copy stays in service and a warning is logged).

Shutdown (SIGTERM or SIGINT):
  1. /ready answers 503 at once, and responses carry `Connection: close`;
  2. the server keeps serving for --drain, so load balancers notice;
  3. it stops accepting connections, closes idle ones, gives in-flight requests up to
     --shutdown-timeout, and exits 0.

Endpoints: the site under /, GET /health, GET /ready.
Logs: RUST_LOG refines the filter (default info).";

/// Softy Pinko static site server.
#[derive(Debug, Parser)]
#[command(name = "frontend", version, about, after_long_help = MORE_HELP)]
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

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "FRONTEND_LISTEN", default_value = "0.0.0.0:9000")]
    pub listen: SocketAddr,

    /// Directory holding the site [default: see "Site root" below].
    #[arg(long, env = "FRONTEND_ROOT")]
    pub root: Option<PathBuf>,

    /// CSP `connect-src` sources: where the page may send requests. Add the API's
    /// origin when the page calls it directly (`'self' http://localhost:5252`).
    #[arg(long, env = "FRONTEND_CONNECT_SRC", default_value = "'self'",
          value_parser = ConnectSrc::parse)]
    pub connect_src: ConnectSrc,

    /// How long to keep serving after SIGTERM while /ready answers 503.
    #[arg(long, env = "FRONTEND_DRAIN", default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,

    /// How long in-flight requests get after the drain window before the process exits.
    #[arg(long, env = "FRONTEND_SHUTDOWN_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Files larger than this are not held in memory but read from disk on each request
    /// (bytes, or with a KiB, MiB or GiB suffix).
    #[arg(long, env = "FRONTEND_CACHE_FILE_LIMIT", default_value = "8MiB", value_parser = parse_size)]
    pub cache_file_limit: u64,

    /// Longest a request may take; slower ones get 503.
    #[arg(long, env = "FRONTEND_REQUEST_TIMEOUT", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `8MiB` → 8388608: a byte count, optionally with a `KiB`, `MiB` or `GiB` suffix.
fn parse_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let (digits, scale) = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        .into_iter()
        .find_map(|(suffix, scale)| Some((value.strip_suffix(suffix)?, scale)))
        .unwrap_or((value, 1));
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("expected a size such as 1048576, 512KiB or 8MiB, got {value:?}"))
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
        let cli = Cli::try_parse_from(["frontend"]).unwrap();
        assert_eq!(cli.serve.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(cli.serve.connect_src.as_str(), "'self'");
        assert_eq!(cli.serve.drain, Duration::from_secs(3));
        assert_eq!(
            cli.serve.cache_file_limit,
            crate::site_cache::DEFAULT_FILE_LIMIT
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        for bad in ["", "8MB", "-1", "1.5MiB", "99999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for args in [
            &["frontend", "--listen", "nowhere"][..],
            &["frontend", "--connect-src", "'self'; script-src *"],
            &["frontend", "--drain", "later"],
            &["frontend", "--cache-file-limit", "lots"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
