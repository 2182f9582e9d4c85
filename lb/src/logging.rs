//! Log output: `tracing` everywhere, pingora's `log` records bridged in (tracing-log).
//!
//! Format: `--log-format json|text` or `LB_LOG_FORMAT`; by default JSON when stdout is not a
//! terminal (containers, log shippers) and text on a terminal. Level filter: `RUST_LOG`
//! (default `info`).

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    pub fn resolve(choice: Option<LogFormat>) -> LogFormat {
        choice.unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        })
    }
}

/// The format [`init`] installed; `None` before (or if another subscriber was already set).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The installed format, for writers that build their lines themselves (the access log).
pub fn format() -> Option<LogFormat> {
    FORMAT.get().copied()
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init also installs the log → tracing bridge (tracing-log's LogTracer, through
    // tracing-subscriber's default `tracing-log` feature), so pingora's records land here.
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    match result {
        Ok(()) => {
            let _ = FORMAT.set(format);
        }
        Err(e) => eprintln!("lb: logging already initialised: {e}"),
    }
}
