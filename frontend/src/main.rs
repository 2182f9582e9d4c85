//! `frontend`: parse flags, find the site, bind, serve until a signal, drain, exit 0.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use frontend::{
    cli::{Cli, Command, ServeArgs},
    AppState,
};
use service_kit::{process, shutdown};

/// mimalloc instead of glibc's malloc, as in the lb: hyper, axum and tower allocate and free
/// a handful of small objects per request, and glibc's `malloc`/`free` were about a sixth of
/// the frontend's CPU samples serving the page from memory (perf, keep-alive `GET /`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::memory::without_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck(check)) => check.run(cli.serve.listen).await,
        None => process::run(cli.serve.log.format(), serve(cli.serve)).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state = AppState::new(&args)?;
    tracing::info!(
        root = %state.root.display(),
        site = %state.site.summary(),
        connect_src = state.connect_src.as_str(),
        "starting"
    );
    frontend::reload::on_sighup(state.site.clone()).context("installing the SIGHUP handler")?;
    let listener = process::bind(args.listen).await?;
    let signal = shutdown::signal().context("installing signal handlers")?;
    frontend::serve(listener, state, signal)
        .await
        .context("serving")
}
