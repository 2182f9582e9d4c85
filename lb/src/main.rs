//! `lb`: read the config, check it, then hand it to pingora.

use std::process::ExitCode;

use clap::Parser;
use lb::admin_client;
use lb::cli::{Cli, Command};
use lb::logging::{self, LogFormat};
use lb::server;

/// Exit code for an invalid configuration (as nginx/pingora tooling expects from `-t`).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();

    // Subcommands that talk to a running lb through its admin listener. The URL comes from
    // --url, else from the config's admin address, else the default admin address.
    let admin_url = |url: &Option<String>, path: &str| {
        url.clone()
            .unwrap_or_else(|| match lb::config::admin_address(&cli.conf) {
                Some(admin) => admin_client::url_for_admin(admin, path),
                None => format!("http://127.0.0.1:9901{path}"),
            })
    };
    match &cli.command {
        Some(Command::Healthcheck { url }) => {
            return match admin_client::probe(&admin_url(url, "/ready")) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lb healthcheck: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Reload { url }) => {
            return match admin_client::reload(&admin_url(url, "/reload")) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(report) => {
                    eprintln!("lb reload: {report}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }

    // Check the whole config before pingora sees anything; never start on a bad one.
    let path = cli.conf.display().to_string();
    let loaded = match server::check(&cli.conf) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!(
                "lb: configuration {path} is invalid ({} error(s)):",
                errors.0.len()
            );
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if cli.test {
        println!("configuration OK: {path}");
        return ExitCode::SUCCESS;
    }

    logging::init(LogFormat::resolve(cli.log_format));
    let opts = server::RunOptions {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        config_path: cli.conf.clone(),
        watch: cli.watch,
    };
    match server::run(loaded, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}
