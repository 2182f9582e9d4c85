//! `backend`: parse flags, bind, serve until a signal, drain, exit 0.

use std::process::ExitCode;

use anyhow::Context;
use backend::{
    cli::{Cli, Command, ServeArgs},
    AppState,
};
use clap::Parser;
use service_kit::{process, shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck(check)) => check.run(cli.serve.listen).await,
        None => process::run(cli.serve.log.format(), serve(cli.serve)).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state = AppState::new(&args);
    tracing::info!(replica = %state.replica, version = env!("CARGO_PKG_VERSION"), "starting");
    if let Some(fault) = state.fault_status {
        tracing::warn!(
            status = fault.status().as_u16(),
            "test-only fault on (BACKEND_FAULT_STATUS): every /api/* request fails, /health and /ready pass"
        );
    }
    let listener = process::bind(args.listen).await?;
    let signal = shutdown::signal().context("installing signal handlers")?;
    backend::serve(listener, state, signal)
        .await
        .context("serving")
}
