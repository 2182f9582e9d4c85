//! The client behind every `healthcheck` subcommand (and `lb reload`): one plain
//! HTTP/1.1 request over TCP with `Connection: close`, the whole exchange bounded by a
//! timeout.
//!
//! Docker runs it inside a `FROM scratch` image: no curl, no TLS, and no DNS needed
//! when the URL names an IP address (the defaults do). It reads at most 64 KiB and does
//! not decode chunked bodies: it talks to our own probes and admin endpoints, which
//! answer with a length.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Why a request or health check failed. Printed on stderr by the subcommands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported URL {0:?}: expected http://HOST[:PORT][/PATH]")]
    Url(String),
    #[error("cannot reach {0}: {1}")]
    Io(String, std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("{0} answered something that is not HTTP/1.x")]
    NotHttp(String),
    #[error("{0} answered status {1}")]
    Unhealthy(String, u16),
    #[error("a header name or value holds a line break")]
    Header,
}

/// The most of an answer that is read.
const MAX_ANSWER: u64 = 64 * 1024;

/// A server's answer: its status code and body (lossily decoded as UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends `method url` with an empty body and returns the answer, whatever its status.
pub async fn request(method: &str, url: &str, timeout: Duration) -> Result<Answer, Error> {
    request_with(method, url, &[], timeout).await
}

/// [`request`] with extra header lines (e.g. `Authorization`). A name or value holding a
/// line break is refused: it would forge a header.
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, Error> {
    if headers
        .iter()
        .any(|(n, v)| n.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']))
    {
        return Err(Error::Header);
    }
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let target = Target::parse(url)?;
    let exchange = async {
        let mut stream = TcpStream::connect(&target.addr).await?;
        stream
            .write_all(target.head_with(method, &extra).as_bytes())
            .await?;
        let mut answer = Vec::with_capacity(512);
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::Timeout(url.into(), timeout))?
        .map_err(|e| Error::Io(url.into(), e))?;
    parse(&answer).ok_or_else(|| Error::NotHttp(url.into()))
}

/// Where a URL sends the request: `http://HOST[:PORT][/PATH]`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    /// What to connect to: the authority, with `:80` added when it names no port.
    pub(crate) addr: String,
    /// Sent as `Host`.
    pub(crate) authority: &'a str,
    /// The request target, `/` when the URL has no path.
    pub(crate) path: &'a str,
}

impl<'a> Target<'a> {
    /// The URL's parts. Whitespace and control characters are refused: they would end up
    /// inside the request line or the `Host` header and change what is sent.
    pub(crate) fn parse(url: &'a str) -> Result<Self, Error> {
        let bad = || Error::Url(url.into());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        if rest.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad());
        }
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let addr = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            addr,
            authority,
            path,
        })
    }

    /// The request head: `method` with `extra` header lines (each ending in CRLF), an
    /// empty body, and the connection closed after it.
    pub(crate) fn head_with(&self, method: &str, extra: &str) -> String {
        format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: healthcheck\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.path, self.authority
        )
    }
}

/// `HTTP/1.x NNN ...` head, then the body after the blank line.
pub(crate) fn parse(answer: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        // three digits: `parse` alone would also take `+12`
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse::<u16>().ok())?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some(Answer { status, body })
}

/// GETs `url` and returns its status when it is 2xx.
pub async fn check(url: &str, timeout: Duration) -> Result<u16, Error> {
    check_with(url, &[], timeout).await
}

/// [`check`] with extra header lines, as [`request_with`] sends them.
pub async fn check_with(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<u16, Error> {
    match request_with("GET", url, headers, timeout).await?.status {
        status @ 200..=299 => Ok(status),
        status => Err(Error::Unhealthy(url.into(), status)),
    }
}

/// The `healthcheck` subcommand's flags, the same in every service.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// URL to probe [default: http://127.0.0.1:<port of --listen>/ready].
    #[arg(long)]
    pub url: Option<String>,

    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl Args {
    /// Runs [`check`] against `--url`, or `/ready` on the service's `listen` address,
    /// and turns the outcome into the process exit code (0 healthy, 1 not), with one
    /// line on stdout or stderr.
    pub async fn run(self, listen: std::net::SocketAddr) -> std::process::ExitCode {
        let url = self.url.unwrap_or_else(|| default_url(listen, "/ready"));
        report(&url, check(&url, self.timeout).await)
    }
}

fn report(url: &str, outcome: Result<u16, Error>) -> std::process::ExitCode {
    match outcome {
        Ok(status) => {
            println!("healthy: {url} answered {status}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("unhealthy: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The URL a bare `healthcheck` probes: `path` on the address the service listens on,
/// with an unspecified address (`0.0.0.0`, `::`) replaced by loopback.
pub fn default_url(listen: std::net::SocketAddr, path: &str) -> String {
    let ip = match listen.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!(
        "http://{}{path}",
        std::net::SocketAddr::new(ip, listen.port())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_uses_loopback_for_unspecified_addresses() {
        let url = |s: &str| default_url(s.parse().unwrap(), "/ready");
        assert_eq!(url("0.0.0.0:5252"), "http://127.0.0.1:5252/ready");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/ready");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/ready");
    }

    #[tokio::test]
    async fn rejects_urls_it_cannot_speak() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:5252",
            "http:///ready",
            "http://u@h/",
            "http://127.0.0.1/a b",
            "http://127.0.0.1/a\r\nX-Injected: 1",
            "http://127.0.0.1\t:80/",
        ] {
            let error = check(url, Duration::from_secs(1)).await.unwrap_err();
            assert!(matches!(error, Error::Url(_)), "{url}: {error}");
        }
    }

    #[test]
    fn parses_status_and_body() {
        let answer = parse(b"HTTP/1.1 422 Unprocessable\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(
            answer,
            Some(Answer {
                status: 422,
                body: "{}".into()
            })
        );
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1"), None);
        assert_eq!(parse(b"HTTP/1.1 +20 OK\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn sends_extra_headers_and_refuses_line_breaks() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                conn.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let url = format!("http://{addr}/status");
        let auth = [("Authorization", "Bearer t0ken")];
        let status = check_with(&url, &auth, Duration::from_secs(5)).await;
        assert_eq!(status.unwrap(), 204);
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /status HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\nAuthorization: Bearer t0ken\r\n"),
            "{head}"
        );
        for bad in [("X", "a\r\nEvil: 1"), ("X\nY", "v"), ("X: Y", "v")] {
            let error = request_with("GET", &url, &[bad], Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(matches!(error, Error::Header), "{bad:?}: {error}");
        }
    }

    #[tokio::test]
    async fn reports_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = check(&format!("http://{addr}/ready"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Io(..)), "{error}");
    }
}
