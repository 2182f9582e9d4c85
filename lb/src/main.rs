//! `lb`: read the config, check it, then hand it to pingora.

use std::process::ExitCode;

use clap::Parser;
use lb::admin_client;
use lb::cli::Cli;

use lb::server;
use service_kit::logging;

/// mimalloc instead of glibc's malloc: the proxy allocates and frees many small buffers and
/// header maps per request, and glibc's `malloc`/`free` took about a fifth of the lb's user
/// instructions per request (callgrind, keep-alive `GET /api/hello`). mimalloc's per-thread
/// free lists make that path much shorter. It is C built by the `cc` crate and links into the
/// static (`+crt-static`) release binary like the rest.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (as nginx/pingora tooling expects from `-t`).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    service_kit::memory::without_huge_pages();
    let mut cli = Cli::parse();
    // Messages name the file as it was given; everything else uses it made absolute, so
    // that reloads (SIGHUP, `--watch`, `POST /reload`) find it whatever the working
    // directory is by then.
    let path = cli.conf.display().to_string();
    if let Ok(absolute) = std::path::absolute(&cli.conf) {
        cli.conf = absolute;
    }

    // `healthcheck` and `reload` talk to a running lb through its admin listener.
    if let Some(command) = &cli.command {
        return admin_client::run(command, &cli.conf);
    }

    // Check the whole config before pingora sees anything; never start on a bad one.
    let loaded = match lb::check(&cli.conf) {
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

    logging::init_quieting(cli.log.format(), lb::quiet_log::quiet);
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
