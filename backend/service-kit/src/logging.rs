//! The one logging contract of every Softy Pinko binary (lb, backend, frontend).
//!
//! - **Format**: `--log-format json|text`, or the `LOG_FORMAT` environment variable
//!   ([`LogArgs`], flattened into each binary's flags). When neither is given: JSON when
//!   stdout is not a terminal (containers, log shippers), text on a terminal.
//! - **Level**: `RUST_LOG` (default `info`).
//! - **Records**: one object per line with `timestamp`, `level`, `target` and the event's
//!   fields at the top level. pingora's `log` records are bridged in (tracing-log).
//! - **One line per request**, target `access`, with the same names in every binary:
//!   `request_id`, `method`, `path`, `status`, `duration_ms` (milliseconds, microsecond
//!   precision). The lb adds its own routing fields (see `lb/README.md`).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// The environment variable every binary reads its log format from.
pub const ENV: &str = "LOG_FORMAT";

/// The target of the per-request line.
pub const ACCESS_TARGET: &str = "access";

/// The `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// The choice made on the command line or in `LOG_FORMAT`, else the default rule.
    pub fn resolve(choice: Option<LogFormat>) -> LogFormat {
        choice.unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        })
    }
}

/// The `--log-format` flag, the same in every binary.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// Log format [default: json when stdout is not a terminal, text on a terminal].
    #[arg(long, env = ENV, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl LogArgs {
    /// The format these flags select, by the default rule when none was given.
    pub fn format(self) -> LogFormat {
        LogFormat::resolve(self.log_format)
    }
}

/// The format [`init`] installed; `None` before, or when another subscriber was set first.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The installed format, for writers that build their lines themselves (the lb's
/// access log writes its JSON lines by hand, in this same shape).
pub fn format() -> Option<LogFormat> {
    FORMAT.get().copied()
}

/// Installs the global subscriber, with pingora's and other crates' `log` records bridged
/// in. A second call (tests) leaves the first subscriber in place.
pub fn init(format: LogFormat) {
    init_quieting(format, |_| false);
}

/// Like [`init`], but drops every event `quiet` returns true for, before any formatting: for
/// a dependency's per-connection error line that the caller counts in a metric instead
/// (the lb's TLS handshake failures, which pingora logs at ERROR for each bad client).
pub fn init_quieting(format: LogFormat, quiet: fn(&tracing::Event<'_>) -> bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer();
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => fmt.with_ansi(std::io::stdout().is_terminal()).boxed(),
    };
    // try_init also installs the log → tracing bridge (tracing-log's LogTracer, through
    // tracing-subscriber's default `tracing-log` feature).
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(Quiet(quiet))
        .with(fmt)
        .try_init();
    if installed.is_ok() {
        let _ = FORMAT.set(format);
    }
}

/// Vetoes the events its function picks, for every layer.
struct Quiet(fn(&tracing::Event<'_>) -> bool);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Quiet {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !(self.0)(event)
    }
}

#[cfg(feature = "axum")]
pub use self::access::layer;

#[cfg(feature = "axum")]
mod access {
    use std::time::Instant;

    use axum::{extract::Request, middleware, middleware::Next, response::Response, Router};
    use tower_http::request_id::RequestId;
    use tracing::Instrument;

    /// Adds the per-request line (the contract in the module doc) to `router`, logged once
    /// the response head is ready. Handlers' own events carry the id in their `request`
    /// span. Apply it inside [`crate::request_id::layer`] so the id is known.
    pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
        router.layer(middleware::from_fn(log_request))
    }

    async fn log_request(request: Request, next: Next) -> Response {
        let started = Instant::now();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!("request", request_id = %request_id);
        let response = next.run(request).instrument(span).await;
        // Outside the span: the line has the same flat shape as the lb's access line.
        tracing::info!(
            target: "access",
            parent: None,
            request_id,
            method = %method,
            path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_micros() as f64 / 1000.0,
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn flag_values_and_the_default_rule() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.log.log_format);
        assert_eq!(
            parse(&["x", "--log-format", "json"]).unwrap(),
            Some(LogFormat::Json)
        );
        assert_eq!(
            parse(&["x", "--log-format", "text"]).unwrap(),
            Some(LogFormat::Text)
        );
        assert!(parse(&["x", "--log-format", "xml"]).is_err());
        assert_eq!(LogFormat::resolve(Some(LogFormat::Text)), LogFormat::Text);
        // Under `cargo test` stdout is captured, not a terminal.
        if !std::io::stdout().is_terminal() {
            assert_eq!(LogFormat::resolve(None), LogFormat::Json);
        }
    }
}
