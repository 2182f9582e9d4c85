//! The config file exactly as written: serde structs with `deny_unknown_fields`.
//!
//! Fields whose values need checking (durations, addresses, weights) stay loose here
//! (`serde_yaml::Value`, `String`, `i64`) so that `validate` can report every bad value at
//! once, each with its field path, instead of serde stopping at the first one.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) version: Option<Value>,
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, RawUpstream>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Vec<String>>,
    pub(crate) tls_listen: Option<Vec<RawTlsListener>>,
    pub(crate) admin: Option<String>,
    pub(crate) threads: Option<i64>,
    pub(crate) work_stealing: Option<bool>,
    pub(crate) per_thread_accept: Option<bool>,
    pub(crate) grace_period: Option<Value>,
    pub(crate) shutdown_timeout: Option<Value>,
    pub(crate) access_log: Option<bool>,
    pub(crate) access_log_flush: Option<Value>,
    pub(crate) metrics: Option<bool>,
    pub(crate) upstream_keepalive_pool_size: Option<i64>,
    pub(crate) pid_file: Option<String>,
    pub(crate) upgrade_sock: Option<String>,
    pub(crate) h2c: Option<bool>,
    pub(crate) fast_path: Option<bool>,
    pub(crate) https_redirect: Option<RawHttpsRedirect>,
    pub(crate) hsts: Option<RawHsts>,
    /// CIDRs (or single addresses) whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: Option<Vec<String>>,
    /// `off`, or a mapping `{total, per_ip}`: checked by `validate` (a string here would
    /// make serde report a mapping's errors without their key).
    pub(crate) connection_limits: Option<Value>,
    pub(crate) client_timeouts: Option<RawClientTimeouts>,
    pub(crate) request_limits: Option<RawRequestLimits>,
    pub(crate) admin_auth: Option<RawAdminAuth>,
    pub(crate) log_throttle: Option<Value>,
}

/// `server.client_timeouts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientTimeouts {
    pub(crate) request_head: Option<Value>,
    pub(crate) keepalive: Option<Value>,
    pub(crate) request_body: Option<Value>,
    pub(crate) response_write: Option<Value>,
}

/// `server.request_limits`: sizes are bytes, or strings such as `32KiB`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestLimits {
    pub(crate) head_size: Option<Value>,
    pub(crate) headers: Option<i64>,
    pub(crate) uri_length: Option<Value>,
}

/// `server.admin_auth`: the admin API's bearer token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminAuth {
    pub(crate) token_file: Option<String>,
    pub(crate) token_env: Option<String>,
    pub(crate) create: Option<bool>,
    pub(crate) metrics: Option<bool>,
    pub(crate) allow_unauthenticated: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpsRedirect {
    pub(crate) port: Option<i64>,
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHsts {
    pub(crate) max_age: Option<Value>,
    pub(crate) include_subdomains: Option<bool>,
    pub(crate) preload: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsListener {
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) certificates: Vec<RawCertificate>,
    pub(crate) protocols: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) local_ca: Option<String>,
    pub(crate) acme: Option<RawAcme>,
    pub(crate) names: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) default: bool,
}

/// `certificates[].acme`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub(crate) directory: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) agree_terms: Option<bool>,
    pub(crate) storage: Option<String>,
    pub(crate) renew_at: Option<Value>,
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) prefix: String,
    pub(crate) upstream: String,
    #[serde(default)]
    pub(crate) strip_prefix: bool,
    /// `false`, `true` (the defaults) or a `RawHsts` mapping: checked by `validate`.
    pub(crate) hsts: Option<Value>,
    /// Bytes: a number, or a string such as `10MiB`.
    pub(crate) max_body_size: Option<Value>,
    pub(crate) rate_limit: Option<RawRateLimit>,
}

/// `routes[].rate_limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub(crate) requests: Option<i64>,
    pub(crate) per: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) discovery: RawDiscovery,
    pub(crate) selection: Option<String>,
    pub(crate) hash_key: Option<String>,
    /// `off`/`false`, or a [`RawOutlier`] map.
    pub(crate) outlier: Option<Value>,
    pub(crate) slow_start: Option<Value>,
    pub(crate) sticky: Option<RawSticky>,
    pub(crate) health_check: Option<RawHealthCheck>,
    pub(crate) retries: Option<i64>,
    pub(crate) queue_timeout: Option<Value>,
    pub(crate) queue_max: Option<i64>,
    #[serde(default)]
    pub(crate) timeouts: RawTimeouts,
    pub(crate) host: Option<String>,
    pub(crate) tls: Option<RawUpstreamTls>,
}

/// `upstreams.<name>.outlier`, when a map.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlier {
    /// `gateway` (the default) or `5xx` (a `Value`: a number here gets an error that names
    /// this field).
    pub(crate) failures: Option<Value>,
    pub(crate) consecutive_failures: Option<i64>,
    pub(crate) window: Option<Value>,
    pub(crate) base_ejection: Option<Value>,
    pub(crate) max_ejection: Option<Value>,
    pub(crate) max_ejected_percent: Option<i64>,
}

/// `upstreams.<name>.sticky`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSticky {
    pub(crate) cookie: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) secure: Option<bool>,
    pub(crate) http_only: Option<bool>,
    pub(crate) same_site: Option<String>,
    pub(crate) max_age: Option<Value>,
    pub(crate) key_file: Option<String>,
}

/// `upstreams.<name>.tls`: connect to the backends over TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) sni: Option<String>,
    pub(crate) ca_file: Option<String>,
    pub(crate) verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscovery {
    pub(crate) dns: Option<String>,
    pub(crate) srv: Option<String>,
    #[serde(rename = "static")]
    pub(crate) static_: Option<Vec<Value>>,
    pub(crate) interval: Option<Value>,
    pub(crate) resolver: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub(crate) path: Option<String>,
    pub(crate) interval: Option<Value>,
    pub(crate) timeout: Option<Value>,
    pub(crate) healthy_after: Option<i64>,
    pub(crate) unhealthy_after: Option<i64>,
    pub(crate) host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub(crate) connect: Option<Value>,
    pub(crate) read: Option<Value>,
    pub(crate) write: Option<Value>,
    pub(crate) idle: Option<Value>,
    pub(crate) per_try: Option<Value>,
}
