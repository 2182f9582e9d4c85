//! The parts of `main` every service shares: logging set-up, binding with a clear
//! error and the `listening on ADDR` line, and turning the outcome into an exit code.

use std::{future::Future, net::SocketAddr, process::ExitCode};

use anyhow::Context;
use tokio::net::TcpListener;

use super::logging::{self, LogFormat};

/// Installs logging, runs `serve` to the end, and exits 0, or 1 with the error chain
/// logged.
pub async fn run(format: LogFormat, serve: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    logging::init(format);
    match serve.await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds `listen` and logs `listening on ADDR` with the real port: scripts and tests
/// parse that line when `listen` ends in `:0`.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("listening on {addr}");
    Ok(listener)
}
