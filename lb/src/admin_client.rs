//! The subcommands that talk to a running lb over its admin listener: `lb healthcheck`
//! (GET `/ready`, the container health probe) and `lb reload` (POST `/reload`). Plain-TCP
//! HTTP/1.0: no DNS, no TLS, no extra tools, so they work in a scratch image.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::Command;

const TIMEOUT: Duration = Duration::from_secs(2);
/// A reload may wait for new pools to warm up (`reload::WARM_UP_LIMIT`).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// `http://IP:PORT/path` → (address, path). Only numeric addresses (no DNS).
pub fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = authority
        .parse::<SocketAddr>()
        .map_err(|_| format!("{url:?}: expected http://IP:PORT/path (numeric address, no DNS)"))?;
    Ok((addr, path))
}

/// The URL of `path` on an admin address from the config: a wildcard bind is reached on
/// loopback.
pub fn url_for_admin(admin: SocketAddr, path: &str) -> String {
    let ip = match admin.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(ip, admin.port()))
}

/// Run a subcommand against the lb whose config is `conf`. The URL comes from `--url`,
/// else from the config's admin address (read leniently, so `reload` can report a broken
/// file), else the default admin address.
pub fn run(command: &Command, conf: &Path) -> ExitCode {
    let url = |url: &Option<String>, path: &str| {
        url.clone()
            .unwrap_or_else(|| match crate::config::admin_address(conf) {
                Some(admin) => url_for_admin(admin, path),
                None => format!("http://127.0.0.1:9901{path}"),
            })
    };
    let (name, outcome) = match command {
        Command::Healthcheck { url: u } => ("healthcheck", probe(&url(u, "/ready"))),
        Command::Reload { url: u } => ("reload", reload(&url(u, "/reload"))),
    };
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

/// Probe `url`; `Ok(status line)` on 2xx.
pub fn probe(url: &str) -> Result<String, String> {
    let (status_line, code, _) = request("GET", url, TIMEOUT)?;
    match code {
        Some(c) if (200..300).contains(&c) => Ok(status_line),
        _ => Err(format!("{url}: {status_line}")),
    }
}

/// Ask the lb at `url` to reload: `Ok(report)` when applied, `Err(report or error)`
/// otherwise. A report is a summary line, then one indented line per change or error.
pub fn reload(url: &str) -> Result<String, String> {
    let (status_line, code, body) = request("POST", url, RELOAD_TIMEOUT)?;
    let answer: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let lines = |key: &str| -> String {
        answer
            .as_ref()
            .and_then(|a| a[key].as_array())
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str())
            .map(|l| format!("\n  {l}"))
            .collect()
    };
    match (code, &answer) {
        (Some(200), Some(_)) => Ok(format!("configuration reloaded{}", lines("changes"))),
        (Some(422), Some(_)) => Err(format!(
            "configuration rejected; still running with the previous one:{}",
            lines("errors")
        )),
        _ => Err(format!("{url}: {status_line}")),
    }
}

/// One request without a body: (status line, status code, body).
fn request(
    method: &str,
    url: &str,
    timeout: Duration,
) -> Result<(String, Option<u16>, String), String> {
    let (addr, path) = parse_url(url)?;
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    stream
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or("").to_string();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status_line, code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (a, p) = parse_url("http://127.0.0.1:9901/ready").expect("ok");
        assert_eq!(a.to_string(), "127.0.0.1:9901");
        assert_eq!(p, "/ready");
        assert!(parse_url("https://127.0.0.1:1/").is_err());
        assert!(parse_url("http://localhost:9901/ready").is_err());
        assert_eq!(
            url_for_admin("0.0.0.0:9901".parse().expect("addr"), "/ready"),
            "http://127.0.0.1:9901/ready"
        );
    }
}
