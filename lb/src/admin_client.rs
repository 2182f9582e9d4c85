//! The subcommands that talk to a running lb over its admin listener: `lb healthcheck`
//! (GET `/ready`, the container health probe) and `lb reload` (POST `/reload`). They use
//! the same small HTTP/1.1 client as the services' `healthcheck` (service-kit): no TLS,
//! no extra tools, so they work in a scratch image.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use service_kit::healthcheck;

use crate::cli::Command;

const TIMEOUT: Duration = Duration::from_secs(2);
/// A reload may wait for new pools to warm up (`reload::WARM_UP_LIMIT`).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Run a subcommand against the lb whose config is `conf`. The URL comes from `--url`,
/// else from the config's admin address (read leniently, so `reload` can report a broken
/// file), else the default admin address.
pub fn run(command: &Command, conf: &Path) -> ExitCode {
    let url = |url: &Option<String>, path: &str| {
        url.clone().unwrap_or_else(|| {
            let admin = crate::config::admin_address(conf).unwrap_or_else(default_admin);
            healthcheck::default_url(admin, path)
        })
    };
    let (name, url, timeout) = match command {
        Command::Healthcheck { url: u } => ("healthcheck", url(u, "/ready"), TIMEOUT),
        Command::Reload { url: u } => ("reload", url(u, "/reload"), RELOAD_TIMEOUT),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lb {name}: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Healthcheck { .. } => healthcheck::check(&url, timeout)
                .await
                .map(|status| format!("{url} answered {status}"))
                .map_err(|e| e.to_string()),
            Command::Reload { .. } => reload(&url, timeout).await,
        }
    });
    match outcome {
        Ok(report) => {
            if matches!(command, Command::Reload { .. }) {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(report) => {
            eprintln!("lb {name}: {report}");
            ExitCode::FAILURE
        }
    }
}

/// `server.admin`'s default, for a config file that cannot be read.
fn default_admin() -> std::net::SocketAddr {
    crate::config::defaults::ADMIN
        .parse()
        .expect("the default admin address is an IP:port")
}

/// Ask the lb at `url` to reload: `Ok(report)` when applied, `Err(report or error)`
/// otherwise. A report is a summary line, then one indented line per change or error.
async fn reload(url: &str, timeout: Duration) -> Result<String, String> {
    let answer = healthcheck::request("POST", url, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let json: Option<serde_json::Value> = serde_json::from_str(&answer.body).ok();
    Ok(match (answer.status, json) {
        (200, Some(json)) => format!("configuration reloaded{}", lines(&json, "changes")),
        (422, Some(json)) => {
            return Err(format!(
                "configuration rejected; still running with the previous one:{}",
                lines(&json, "errors")
            ))
        }
        (status, _) => return Err(format!("{url} answered status {status}")),
    })
}

/// The strings of `json[key]`, one indented line each.
fn lines(json: &serde_json::Value, key: &str) -> String {
    json[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str())
        .map(|l| format!("\n  {l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines() {
        let json = serde_json::json!({ "errors": ["a: bad", "b: worse"] });
        assert_eq!(lines(&json, "errors"), "\n  a: bad\n  b: worse");
        assert_eq!(lines(&json, "changes"), "");
    }
}
