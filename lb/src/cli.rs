//! Command line: pingora's flags with their usual meaning, plus the `healthcheck`,
//! `reload` and `admin-token` subcommands, `--watch` and `--log-format`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use service_kit::logging::LogArgs;

#[derive(Debug, Parser)]
#[command(name = "lb", version, about = "Softy Pinko load balancer (Pingora)")]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long = "conf",
        env = "LB_CONFIG",
        default_value = "/etc/lb/lb.yaml",
        global = true
    )]
    pub conf: PathBuf,

    /// Check the configuration and exit: 0 and "configuration OK", or 2 and every error.
    #[arg(short = 't', long = "test")]
    pub test: bool,

    /// Take over the listening sockets of a running lb (zero-downtime upgrade via
    /// `server.upgrade_sock`; then send SIGQUIT to the old process).
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,

    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Reload the config file whenever its content changes (checked every second).
    #[arg(long)]
    pub watch: bool,

    #[command(flatten)]
    pub log: LogArgs,

    /// Accepted and ignored, as pingora does (cargo test may pass it).
    #[arg(long, hide = true)]
    pub nocapture: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 if the running lb is ready (GET of the admin /ready), 1 otherwise.
    Healthcheck {
        /// Default: `server.admin` from the config file if it can be read, else
        /// http://127.0.0.1:9901/ready.
        #[arg(long)]
        url: Option<String>,
    },
    /// Ask the running lb to reload its config file (POST of the admin /reload). Prints the
    /// result; exit 0 when applied, 1 when rejected or unreachable.
    Reload {
        /// Default: `server.admin` from the config file if it can be read, else
        /// http://127.0.0.1:9901/reload.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the admin API's bearer token (`server.admin_auth` of the config file, read as
    /// the lb reads it), e.g. `docker compose exec lb /lb admin-token`. Exit 1 when none is
    /// configured or it cannot be read.
    AdminToken,
}
