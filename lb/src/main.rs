//! `lb`: read the config, check it, then hand it to pingora.

use std::process::ExitCode;

use clap::Parser;
use lb::cli::{Cli, Command};
use lb::logging::{self, LogFormat};
use lb::{healthcheck, server};

/// Exit code for an invalid configuration (as nginx/pingora tooling expects from `-t`).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();

    if let Some(Command::Healthcheck { url }) = &cli.command {
        // The URL comes from --url, else from the config's admin address, else the default.
        let url = url
            .clone()
            .unwrap_or_else(|| match lb::config::Config::load(&cli.conf) {
                Ok(c) => healthcheck::url_for_admin(c.server.admin),
                Err(_) => "http://127.0.0.1:9901/ready".to_string(),
            });
        return match healthcheck::probe(&url) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lb healthcheck: {e}");
                ExitCode::FAILURE
            }
        };
    }

    // Check the whole config before pingora sees anything; never start on a bad one.
    let path = cli.conf.display().to_string();
    let config = match server::check(&cli.conf) {
        Ok(config) => config,
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
        config_path: path,
    };
    match server::run(config, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}
