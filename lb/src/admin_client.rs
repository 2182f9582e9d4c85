//! The subcommands that talk to a running lb over its admin listener: `lb healthcheck`
//! (GET `/ready`, the container health probe) and `lb reload` (POST `/reload`). They use
//! the same small HTTP/1.1 client as the services' `healthcheck` (service-kit): no TLS,
//! no extra tools, so they work in a scratch image.
//!
//! Both send the admin token of `server.admin_auth` in the same config file, read as the
//! lb reads it (`config::admin_token::for_client`). `/ready` needs none, so a token that
//! cannot be read fails `lb reload` but not `lb healthcheck` (which then probes without).
//! `lb admin-token` prints that token, for an operator in a scratch image.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use service_kit::healthcheck;

use crate::cli::Command;

const TIMEOUT: Duration = Duration::from_secs(2);
/// A reload may wait for new pools to warm up (`reload::WARM_UP_LIMIT`).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Run a subcommand against the lb whose config is `conf`.
pub fn run(command: &Command, conf: &Path) -> ExitCode {
    match command {
        Command::Healthcheck { url } => call(Call::Healthcheck, url.as_deref(), conf),
        Command::Reload { url } => call(Call::Reload, url.as_deref(), conf),
        Command::AdminToken => admin_token(conf),
    }
}

/// The subcommands that send a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Healthcheck,
    Reload,
}

/// The URL comes from `--url`, else from the config's admin address (read leniently, so
/// `reload` can report a broken file), else the default admin address.
fn call(what: Call, url: Option<&str>, conf: &Path) -> ExitCode {
    let (name, path, timeout) = match what {
        Call::Healthcheck => ("healthcheck", "/ready", TIMEOUT),
        Call::Reload => ("reload", "/reload", RELOAD_TIMEOUT),
    };
    let url = url.map_or_else(
        || {
            let admin = crate::config::admin_address(conf).unwrap_or_else(default_admin);
            healthcheck::default_url(admin, path)
        },
        str::to_string,
    );
    let token = match crate::config::admin_token::for_client(conf) {
        Ok(token) => token,
        // `/ready` needs no token.
        Err(_) if what == Call::Healthcheck => None,
        Err(e) => {
            eprintln!("lb {name}: cannot read the admin token: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
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
        match what {
            Call::Healthcheck => healthcheck::check_with(&url, &headers, timeout)
                .await
                .map(|status| format!("{url} answered {status}"))
                .map_err(|e| e.to_string()),
            Call::Reload => reload(&url, &headers, timeout).await,
        }
    });
    match outcome {
        Ok(report) => {
            if what == Call::Reload {
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

/// `lb admin-token`: the token on stdout, for an operator (the lb's image has no `cat`).
fn admin_token(conf: &Path) -> ExitCode {
    match crate::config::admin_token::for_client(conf) {
        Ok(Some(token)) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!(
                "lb admin-token: {} configures no admin token (server.admin_auth)",
                conf.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lb admin-token: {e}");
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
async fn reload(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<String, String> {
    let answer = healthcheck::request_with("POST", url, headers, timeout)
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
        (401, _) if headers.is_empty() => return Err(format!(
            "{url} answered 401: the admin API needs a token, and the config file sets none (server.admin_auth)"
        )),
        (401, _) => return Err(format!(
            "{url} answered 401: the running lb does not accept the token of server.admin_auth in this config file"
        )),
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
