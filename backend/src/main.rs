//! `backend`: parse flags, bind, serve until a signal, drain, exit 0.

use std::process::ExitCode;

use anyhow::Context;
use backend::{
    cli::{Cli, Command, ServeArgs},
    service::{healthcheck, logging, shutdown},
    AppState,
};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck(check)) = cli.command {
        let url = check
            .url
            .unwrap_or_else(|| healthcheck::default_url(cli.serve.listen, "/ready"));
        return healthcheck::run(&url, check.timeout).await;
    }
    logging::init(cli.serve.log_format);
    match run(cli.serve).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let signal = shutdown::signal().context("installing signal handlers")?;
    let state = AppState::new(&args);
    // Scripts and tests parse this line to learn the port when --listen ends in :0.
    tracing::info!(replica = %state.replica, "listening on {addr}");
    backend::serve(listener, state, signal)
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
