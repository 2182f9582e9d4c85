//! The one config contract: a YAML file parsed into typed, validated settings.
//!
//! [`check`] = read → parse (`raw`, serde) → validate (`validate`, collects every error) →
//! [`Config`] → pingora's own validation of the `ServerConf` it maps to (`server_conf`).
//! `lb -t`, startup and every reload go through [`check`], so they accept exactly the same
//! files. Everything downstream (pingora's `ServerConf`, the routing snapshot) is built
//! from a `Config`, never from the raw file. The validated types derive `PartialEq` so a reload can tell which pools changed.

pub(crate) mod admin_token;
pub(crate) mod certificates;
pub(crate) mod client_limits;
pub(crate) mod duration;
pub(crate) mod local_ca;
mod raw;
mod server_conf;
mod system_dns;
pub(crate) mod upstream_tls;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub(crate) use client_limits::ClientLimits;
pub(crate) use upstream_tls::UpstreamTls;

/// Defaults, in one place so the README table and the code cannot drift apart.
pub(crate) mod defaults {
    use std::time::Duration;

    pub(crate) const LISTEN: &str = "0.0.0.0:8080";
    pub(crate) const ADMIN: &str = "127.0.0.1:9901";
    pub(crate) const GRACE_PERIOD: Duration = Duration::from_secs(3);
    pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
    /// As long as the longest request the client timeouts let through may still need.
    pub(crate) const GRACE_PERIOD_MAX: Duration = Duration::from_secs(3600);
    /// Only tasks that ignored the grace period are left then; minutes are plenty.
    pub(crate) const SHUTDOWN_TIMEOUT_MAX: Duration = Duration::from_secs(600);
    pub(crate) const KEEPALIVE_POOL_SIZE: usize = 128;
    /// Pingora sizes its shared pool's map up front from this times the threads, so a huge
    /// value aborts the start; 65,536 idle connections per thread is already far more
    /// than the file descriptors a process gets.
    pub(crate) const KEEPALIVE_POOL_SIZE_MAX: usize = 65_536;
    /// The pool size times the threads: pingora's two pool maps (HTTP/1 and h2) are sized
    /// from it at start, about 32 bytes an entry each, so this keeps them near 64 MiB.
    pub(crate) const KEEPALIVE_POOL_TOTAL_MAX: usize = 1_048_576;
    pub(crate) const WORK_STEALING: bool = false;
    pub(crate) const ACCESS_LOG_FLUSH: Duration = Duration::from_millis(100);
    pub(crate) const ACCESS_LOG_FLUSH_MAX: Duration = Duration::from_secs(10);
    pub(crate) const PID_FILE: &str = "/tmp/lb.pid";
    pub(crate) const UPGRADE_SOCK: &str = "/tmp/lb_upgrade.sock";
    /// Pingora's receiving side of an upgrade takes at most this many descriptors
    /// (`server/transfer_fd`, `MAX_FDS`); with more, the new process fails to start while
    /// the old one stops. So at most this many proxy addresses (`listen` and `tls_listen`
    /// together), and per-thread sockets are capped to fit (`crate::accept`).
    pub(crate) const HANDED_OVER_MAX: usize = 32;
    pub(crate) const DNS_INTERVAL: Duration = Duration::from_secs(2);
    /// Bounds of `discovery.interval` and `health_check.interval`: below 100 ms a pool
    /// spends its time asking (and a DNS lookup could not finish), above an hour a change
    /// goes unseen too long to be of use.
    pub(crate) const INTERVAL_MIN: Duration = Duration::from_millis(100);
    pub(crate) const INTERVAL_MAX: Duration = Duration::from_secs(3600);
    pub(crate) const RETRIES: usize = 2;
    /// Upper bound on `retries`: every try may wait a full connect timeout.
    pub(crate) const MAX_RETRIES: usize = 8;
    pub(crate) const HC_PATH: &str = "/";
    pub(crate) const HC_INTERVAL: Duration = Duration::from_secs(1);
    pub(crate) const HC_TIMEOUT: Duration = Duration::from_millis(500);
    pub(crate) const HC_HEALTHY_AFTER: usize = 1;
    pub(crate) const HC_UNHEALTHY_AFTER: usize = 2;
    pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Below the 30 s header-read timeout of hyper-based backends, so the lb closes an idle
    /// pooled connection before the backend does (a request racing the backend's close would
    /// otherwise fail on a dead socket).
    pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
    /// Longest upstream timeout (`timeouts.*`, `health_check.timeout`): a backend silent
    /// for an hour is gone, and the request path adds these to `Instant::now()`.
    pub(crate) const UPSTREAM_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
    pub(crate) const HTTPS_PORT: u16 = 443;
    /// 10 MiB: API calls and form posts fit; a client cannot stream gigabytes at a
    /// backend. nginx's `client_max_body_size` is 1 MiB; raise it per route for uploads.
    pub(crate) const MAX_BODY_SIZE: u64 = 10 << 20;
    /// Covers a replica restart (drain, stop, start, first passing check) in the compose
    /// stack, and is well below clients' usual 30 s+ timeouts.
    pub(crate) const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const QUEUE_TIMEOUT_MAX: Duration = Duration::from_secs(60);
    /// Waiting requests hold a connection and a task each, and little else.
    pub(crate) const QUEUE_MAX: usize = 1024;
    /// One year: what browsers' HSTS preload lists ask for.
    pub(crate) const HSTS_MAX_AGE: Duration = Duration::from_secs(31_536_000);
    /// Concurrent client connections in all (`server.connection_limits.total`): a busy
    /// site's worth, each costing a socket and a task, and finite so that a flood is refused
    /// at accept time before the process runs out of file descriptors or memory.
    pub(crate) const CONNECTIONS_TOTAL: usize = 10_000;
    /// Concurrent connections from one client IP (an IPv6 /64): a NAT with a few hundred
    /// browsers at 6 connections each fits; one address cannot take a tenth of the total.
    pub(crate) const CONNECTIONS_PER_IP: usize = 1_000;
    /// Longest `routes[].rate_limit.per`.
    pub(crate) const RATE_LIMIT_PER_MAX: Duration = Duration::from_secs(3600);
    /// Never redirected to HTTPS: an ACME CA checks http-01 challenges over plain HTTP.
    pub(crate) const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
    /// Let's Encrypt production. Its staging directory, for trying a setup without its rate
    /// limits, is `https://acme-staging-v02.api.letsencrypt.org/directory`.
    pub(crate) const ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
    /// A named volume in the compose example; the image creates /var/lib/lb for uid 10001.
    pub(crate) const ACME_STORAGE: &str = "/var/lib/lb/acme";
    /// Let's Encrypt's own advice: renew 90-day certificates at 60 days, i.e. 2/3 through.
    pub(crate) const ACME_RENEW_AT: f64 = 2.0 / 3.0;
    pub(crate) const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Envoy's defaults for consecutive 5xx ejection: five in a row, 30 s base ejection,
    /// 300 s cap, at most half the pool out; the 10 s window keeps five failures spread
    /// over an hour from ejecting a backend that serves well.
    pub(crate) const OUTLIER_FAILURES: u32 = 5;
    pub(crate) const OUTLIER_WINDOW: Duration = Duration::from_secs(10);
    pub(crate) const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(30);
    pub(crate) const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
    pub(crate) const OUTLIER_MAX_EJECTED_PERCENT: u32 = 50;
    pub(crate) const SLOW_START: Duration = Duration::ZERO;
    pub(crate) const SLOW_START_MAX: Duration = Duration::from_secs(600);
    pub(crate) const STICKY_COOKIE: &str = "lb_sticky";
    /// `sticky.max_age` bounds: the cookie's `Max-Age` is whole seconds (under 1 s it
    /// would be `Max-Age=0`, deleting the cookie), and a pin longer than a day outlives
    /// the backends it points to.
    pub(crate) const STICKY_MAX_AGE_MIN: Duration = Duration::from_secs(1);
    pub(crate) const STICKY_MAX_AGE_MAX: Duration = Duration::from_secs(24 * 3600);
    pub(crate) const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(60);
    pub(crate) const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Upper bound on the client timeouts: a connection held longer is an attack.
    pub(crate) const CLIENT_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
    pub(crate) const HEAD_SIZE: usize = 32 << 10;
    /// Pingora reads at most 1 MiB of request head.
    pub(crate) const HEAD_SIZE_MAX: usize = 1 << 20;
    pub(crate) const HEADERS: usize = 100;
    /// Pingora parses at most 256 header lines.
    pub(crate) const HEADERS_MAX: usize = 256;
    pub(crate) const URI_LENGTH: usize = 8 << 10;
    /// Identical WARN/ERROR lines at most once per 10 s: a flood shows as one line and a
    /// count, and a new problem still appears within seconds.
    pub(crate) const LOG_THROTTLE: Duration = Duration::from_secs(10);
    pub(crate) const LOG_THROTTLE_MAX: Duration = Duration::from_secs(3600);
    /// `/metrics` needs the token too: it shows the routes, pools, backend counts and
    /// certificate names, and Prometheus sends a bearer token with one line of config.
    pub(crate) const ADMIN_AUTH_METRICS: bool = true;
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) server: ServerSettings,
    /// In file order; precedence is decided by prefix length, not order.
    pub(crate) routes: Vec<RouteSpec>,
    pub(crate) upstreams: BTreeMap<String, UpstreamSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerSettings {
    pub(crate) listen: Vec<SocketAddr>,
    /// TLS listeners, in file order (their certificates are loaded by [`certificates`]).
    pub(crate) tls_listen: Vec<TlsListener>,
    pub(crate) admin: SocketAddr,
    pub(crate) threads: usize,
    /// One tokio runtime whose threads steal each other's tasks (true), or one
    /// single-threaded runtime per thread, each connection staying on the thread that
    /// accepted it (false).
    pub(crate) work_stealing: bool,
    /// Each thread accepts on its own `SO_REUSEPORT` socket per address and serves what it
    /// accepts (true), or one accept loop per address hands connections to random threads
    /// (false, as pingora's listener) (`crate::accept`).
    pub(crate) per_thread_accept: bool,
    pub(crate) grace_period: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) access_log: bool,
    /// How long JSON access-log lines may wait in a per-thread buffer before they are
    /// written (a full 32 KiB buffer is written at once). Zero: one write per line.
    pub(crate) access_log_flush: Duration,
    /// Per-request metrics (`lb_requests_total`, durations, tries, per-backend counts).
    /// Off only to measure their cost; state metrics are always served.
    pub(crate) metrics: bool,
    pub(crate) upstream_keepalive_pool_size: usize,
    pub(crate) pid_file: String,
    pub(crate) upgrade_sock: String,
    /// HTTP/2 with prior knowledge (h2c) on the plaintext `listen` addresses.
    pub(crate) h2c: bool,
    /// Simple HTTP/1.1 `GET`/`HEAD` requests take the fast path (`crate::proxy::fast`).
    pub(crate) fast_path: bool,
    /// Answer plaintext requests with a 308 to the same URL over HTTPS.
    pub(crate) https_redirect: Option<HttpsRedirect>,
    /// The default `Strict-Transport-Security` of every route (a route may set its own).
    pub(crate) hsts: Option<Hsts>,
    /// `server.client_timeouts` and `server.request_limits`.
    pub(crate) client: ClientLimits,
    /// Peers whose `X-Forwarded-For` names the client (`crate::client_ip`); empty: the
    /// client is always the socket peer.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Concurrent client connections, refused at accept time beyond these
    /// (`crate::connection_limits`); `None`: `off`.
    pub(crate) connection_limits: Option<ConnectionLimits>,
    /// Who may use the admin API (`server.admin_auth`).
    pub(crate) admin_auth: AdminAuth,
    /// Identical WARN/ERROR lines are written at most once per this window
    /// ([`crate::log_throttle`]); zero writes every one.
    pub(crate) log_throttle: Duration,
}

/// `server.connection_limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    pub(crate) total: usize,
    /// Per client IP (IPv6: per /64); peers in `trusted_proxies` are held to `total` only.
    pub(crate) per_ip: usize,
}

impl Default for ConnectionLimits {
    /// [`defaults::CONNECTIONS_TOTAL`] and [`defaults::CONNECTIONS_PER_IP`].
    fn default() -> Self {
        Self {
            total: defaults::CONNECTIONS_TOTAL,
            per_ip: defaults::CONNECTIONS_PER_IP,
        }
    }
}

/// `server.admin_auth`: where the admin API's bearer token comes from (it is read by
/// [`admin_token::load`] at every load) and what it guards.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct AdminAuth {
    /// The environment variable holding the token; when it is set and not empty it wins
    /// over `token_file`.
    pub(crate) token_env: Option<String>,
    /// A file holding the token (a compose or Kubernetes secret).
    pub(crate) token_file: Option<String>,
    /// Write a fresh random token to `token_file` when it is missing.
    pub(crate) create: bool,
    /// `/metrics` needs the token too.
    pub(crate) metrics: bool,
    /// Serve the admin API without a token on an address that is not loopback.
    pub(crate) allow_unauthenticated: bool,
}

impl AdminAuth {
    /// A token source is configured (the token itself may still fail to load).
    pub(crate) fn has_token(&self) -> bool {
        self.token_env.is_some() || self.token_file.is_some()
    }

    /// Where the token comes from, for the start line (never the token itself): `none`,
    /// `$VAR`, `FILE`, or `$VAR, else FILE`.
    pub(crate) fn source(&self) -> String {
        match (&self.token_env, &self.token_file) {
            (None, None) => "none".into(),
            (Some(var), None) => format!("${var}"),
            (None, Some(file)) => file.clone(),
            (Some(var), Some(file)) => format!("${var}, else {file}"),
        }
    }
}

/// `server.https_redirect`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpsRedirect {
    /// The HTTPS port in the `Location` (left out when 443).
    pub(crate) port: u16,
    /// Path prefixes still served over plaintext (the ACME http-01 path always is).
    pub(crate) exclude: Vec<String>,
}

/// A `Strict-Transport-Security` policy, sent on responses over TLS only (RFC 6797 §7.2).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hsts {
    pub(crate) max_age: Duration,
    pub(crate) include_subdomains: bool,
    pub(crate) preload: bool,
    /// The header value, made once.
    pub(crate) value: String,
}

/// One `server.tls_listen` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsListener {
    pub(crate) address: SocketAddr,
    pub(crate) protocols: Protocols,
    pub(crate) certificates: Vec<CertificateSpec>,
}

/// The application protocols a TLS listener offers by ALPN (h2 preferred when both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocols {
    Http1,
    H2,
    H2AndHttp1,
}

impl Protocols {
    pub(crate) fn names(self) -> &'static [&'static str] {
        match self {
            Protocols::Http1 => &["http/1.1"],
            Protocols::H2 => &["h2"],
            Protocols::H2AndHttp1 => &["h2", "http/1.1"],
        }
    }
}

/// One certificate of a TLS listener, as configured (the files are read by
/// [`certificates::load`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertificateSpec {
    pub(crate) source: CertificateSource,
    /// SNI names it serves: exact (`api.example.test`) or a one-label wildcard
    /// (`*.example.test`), lowercase. `None`: the DNS names of the certificate itself
    /// (always `Some` for a `LocalCa` certificate, which is issued for these names).
    pub(crate) names: Option<Vec<String>>,
    /// Served to clients that send no SNI name or one no certificate serves.
    pub(crate) default: bool,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CertificateSource {
    /// PEM files: the certificate and its chain, and its private key.
    Files { cert: String, key: String },
    /// Issued at every load by the lb's own CA, kept in this directory
    /// ([`local_ca`]; created there if missing).
    LocalCa { dir: String },
    /// Obtained and renewed from an ACME CA by the lb itself (`crate::acme`); loaded from
    /// its storage directory, or a self-signed placeholder until the first one is issued.
    Acme(AcmeSpec),
}

/// `server.tls_listen[].certificates[].acme`: the certificate's `names` are the domains
/// ordered (http-01 challenges, so no wildcards).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AcmeSpec {
    /// The CA's ACME directory URL.
    pub(crate) directory: String,
    /// `mailto:` contact of the account (the CA's expiry and policy mail).
    pub(crate) email: Option<String>,
    /// The certificate, its key, the account and the lock file live here.
    pub(crate) storage: String,
    /// Renew once this fraction of the certificate's lifetime has passed (0 < f < 1).
    pub(crate) renew_at: f64,
    /// PEM roots to trust for the ACME server's own HTTPS instead of the built-in
    /// Let's Encrypt roots (a private or test CA).
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteSpec {
    pub(crate) prefix: String,
    pub(crate) upstream: String,
    pub(crate) strip_prefix: bool,
    /// The route's own `hsts`, else `server.hsts`; `None`: no header.
    pub(crate) hsts: Option<Hsts>,
    /// Largest request body accepted, in bytes (413 beyond it).
    pub(crate) max_body_size: u64,
    /// Requests per client IP (`crate::rate_limit`); `None`: not limited.
    pub(crate) rate_limit: Option<RateLimitSpec>,
}

/// `routes[].rate_limit`: at most `requests` per client IP in any window of `per` (as
/// estimated by `crate::rate_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimitSpec {
    pub(crate) requests: u32,
    /// Whole seconds, from 1 s to [`defaults::RATE_LIMIT_PER_MAX`].
    pub(crate) per: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UpstreamSpec {
    pub(crate) discovery: DiscoverySpec,
    pub(crate) selection: Selection,
    /// Passive outlier ejection (`None`: off).
    pub(crate) outlier: Option<OutlierSpec>,
    /// How long a newly admitted backend ramps up to its full share (zero: off).
    pub(crate) slow_start: Duration,
    /// Sticky sessions by cookie (`None`: off).
    pub(crate) sticky: Option<StickySpec>,
    pub(crate) health_check: Option<HealthCheckSpec>,
    pub(crate) retries: usize,
    /// How long a request waits for a healthy backend when the pool has none (zero:
    /// answer 503 at once).
    pub(crate) queue_timeout: Duration,
    /// How many requests may wait so at once; more are answered 503 at once.
    pub(crate) queue_max: usize,
    pub(crate) timeouts: Timeouts,
    /// `Host` header sent upstream instead of the client's.
    pub(crate) host: Option<String>,
    /// `None`: plain HTTP to the backends.
    pub(crate) tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DiscoverySpec {
    /// An A/AAAA name re-resolved every `interval`; the port comes from the config because
    /// A records carry none.
    Dns {
        name: String,
        /// With `srv`, 0: each SRV record names its own port.
        port: u16,
        /// `discovery.srv`: `name` is an SRV name; its records give targets, ports and
        /// weights.
        srv: bool,
        interval: Duration,
        /// `None` = the system resolver (`/etc/resolv.conf`).
        resolver: Option<SocketAddr>,
    },
    Static {
        backends: Vec<StaticBackend>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StaticBackend {
    pub(crate) addr: SocketAddr,
    pub(crate) weight: usize,
}

/// A pool spec with every default and one static backend, for unit tests elsewhere.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn upstream_spec() -> UpstreamSpec {
        UpstreamSpec {
            discovery: DiscoverySpec::Static {
                backends: vec![StaticBackend {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    weight: 1,
                }],
            },
            selection: Selection::RoundRobin,
            outlier: None,
            slow_start: Duration::ZERO,
            sticky: None,
            health_check: None,
            retries: defaults::RETRIES,
            queue_timeout: defaults::QUEUE_TIMEOUT,
            queue_max: defaults::QUEUE_MAX,
            timeouts: Timeouts {
                connect: defaults::CONNECT_TIMEOUT,
                read: defaults::READ_TIMEOUT,
                write: defaults::WRITE_TIMEOUT,
                idle: defaults::IDLE_TIMEOUT,
                per_try: None,
            },
            host: None,
            tls: None,
        }
    }
}

/// How a pool picks a backend (`crate::balance::selector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Smooth weighted round robin (nginx's order: weights interleave, no runs).
    RoundRobin,
    /// Weighted random (pingora's `Random`).
    Random,
    /// Power of two choices on in-flight requests per unit of weight.
    LeastRequests,
    /// pingora's weighted Ketama ring on the request's key.
    ConsistentHash(HashKey),
}

/// What `consistent_hash` hashes (`upstreams.<name>.hash_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashKey {
    /// The client's address (behind `server.trusted_proxies`, the forwarded one).
    ClientIp,
    /// The request path, without the query.
    Path,
    Header(http::HeaderName),
    Cookie(String),
}

/// `upstreams.<name>.outlier`: a backend that fails `consecutive_failures` tries in a
/// row (what counts as failed: `failures`), all within `window`, leaves rotation for
/// `base_ejection`, doubled on each repeat up to `max_ejection`; at most
/// `max_ejected_percent` of the pool (rounded down, and never all of it) is out at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OutlierSpec {
    pub(crate) failures: OutlierFailures,
    pub(crate) consecutive_failures: u32,
    pub(crate) window: Duration,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    pub(crate) max_ejected_percent: u32,
}

/// `upstreams.<name>.outlier.failures`: which answers count as a failed try. Connect
/// failures, resets and timeouts always do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutlierFailures {
    /// 502, 503 and 504 only (the default): a client that can make the application answer
    /// 500 (an input that hits an unhandled error) cannot eject healthy backends with it.
    Gateway,
    /// Any 5xx.
    Any5xx,
}

impl OutlierFailures {
    /// Whether an answer with `status` counts against its backend.
    #[inline]
    pub(crate) fn counts(self, status: u16) -> bool {
        match self {
            OutlierFailures::Gateway => matches!(status, 502..=504),
            OutlierFailures::Any5xx => (500..600).contains(&status),
        }
    }

    /// As written in the config.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OutlierFailures::Gateway => "gateway",
            OutlierFailures::Any5xx => "5xx",
        }
    }
}

/// `upstreams.<name>.sticky`: the cookie that pins a client to a backend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StickySpec {
    pub(crate) cookie: String,
    pub(crate) path: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    /// `None`: a session cookie.
    pub(crate) max_age: Option<Duration>,
    /// The HMAC key (read from `key_file`); `None`: a random key per process.
    pub(crate) key: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthCheckSpec {
    pub(crate) path: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) healthy_after: usize,
    pub(crate) unhealthy_after: usize,
    pub(crate) host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) read: Duration,
    pub(crate) write: Duration,
    pub(crate) idle: Duration,
    /// Longest wait for a backend's response to an idempotent request before the try is
    /// given up and the request sent to another backend (`None`: off, only `read` bounds
    /// it). See `crate::proxy::failover`.
    pub(crate) per_try: Option<Duration>,
}

/// A validated config, the SHA-256 (hex) of the file text it came from, and the
/// certificates of its TLS listeners (one entry per `server.tls_listen`, read and checked).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub(crate) config: Config,
    pub(crate) hash: String,
    pub(crate) tls: Vec<certificates::ListenerCertificates>,
    /// The admin API's token (`None`: the admin API is open, see `server.admin_auth`).
    pub(crate) admin_token: Option<admin_token::AdminToken>,
}

/// SHA-256 of `bytes` in lowercase hex (what `sha256sum FILE` prints).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// `bytes` in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One problem in a config file: where, and what is wrong with the value found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted field path, e.g. `upstreams.api.health_check.interval`; empty for file-level
    /// problems (unreadable file, invalid YAML).
    pub(crate) path: String,
    pub(crate) message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Everything `lb -t` checks: our config, pingora's own validation of the server part, the
/// system DNS configuration when a `dns:`/`srv:` pool has no `resolver:`, then the TLS
/// certificate and key files (readable, matching; dates only warn), so that pingora never meets a
/// file it would panic on, and the admin token (read, or made when missing and
/// `create: true`).
pub fn check(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let text = read(path)?;
    let config = Config::from_yaml(&text)?;
    if let Err(e) = config.server_conf(false).validate() {
        return Err(ConfigErrors(vec![ConfigError::new(
            "server",
            e.to_string(),
        )]));
    }
    let dns = system_dns::check(&config, Path::new(system_dns::RESOLV_CONF));
    if !dns.is_empty() {
        return Err(ConfigErrors(dns));
    }
    let tls = certificates::load(&config.server.tls_listen, std::time::SystemTime::now())
        .map_err(ConfigErrors)?;
    let admin_token =
        admin_token::load(&config.server.admin_auth).map_err(|e| ConfigErrors(vec![e]))?;
    Ok(LoadedConfig {
        config,
        hash: sha256_hex(text.as_bytes()),
        tls,
        admin_token,
    })
}

impl Config {
    /// Parse and validate config text.
    pub(crate) fn from_yaml(text: &str) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigErrors(vec![parse_error(&e)]))?;
        validate::validate(raw).map_err(ConfigErrors)
    }
}

/// `server.admin` of a config file even when the rest of it is invalid (so `lb reload` can
/// report a broken file's errors from the running lb): `None` when the file can't be read
/// or parsed as YAML, or the value is not an `IP:port`; the default when the key is absent.
pub(crate) fn admin_address(path: &Path) -> Option<SocketAddr> {
    match server_value(path, "admin")? {
        Some(v) => v.as_str()?.parse().ok(),
        None => defaults::ADMIN.parse().ok(),
    }
}

/// `server.<key>` of a config file read as plain YAML, so it is found even when the rest
/// of the file is invalid: `None` when the file can't be read or parsed as YAML,
/// `Some(None)` when the key is absent.
pub(crate) fn server_value(path: &Path, key: &str) -> Option<Option<serde_yaml::Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    Some(doc.get("server").and_then(|s| s.get(key)).cloned())
}

/// The text of a config file; an unreadable file is a config error like any other.
pub(crate) fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read config file {}: {e}", path.display()),
        )])
    })
}

/// serde_yaml reports the field path as a `path: ` prefix; split it off so the message
/// reads like our own validation errors.
fn parse_error(e: &serde_yaml::Error) -> ConfigError {
    let text = e.to_string();
    let location = e
        .location()
        .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
        .unwrap_or_default();
    // serde_yaml appends " at line L column C"; we print our own location suffix.
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') && !path.is_empty() => {
            ConfigError::new(path, format!("{msg}{location}"))
        }
        _ => ConfigError::new("", format!("invalid YAML: {text}{location}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_address_is_found_in_a_broken_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lb.yaml");
        let write = |text: &str| std::fs::write(&path, text).expect("write");
        write("version: 1\nserver: { admin: \"127.0.0.1:9999\", threads: lots }\nroutes: 7\n");
        assert!(Config::from_yaml(&read(&path).expect("read")).is_err());
        assert_eq!(admin_address(&path), "127.0.0.1:9999".parse().ok());
        write("version: 1\n");
        assert_eq!(admin_address(&path), defaults::ADMIN.parse().ok());
        write("server: { admin: nowhere }\n");
        assert_eq!(admin_address(&path), None);
        write(": not yaml [");
        assert_eq!(admin_address(&path), None);
    }
}
