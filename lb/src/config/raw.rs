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
pub struct RawConfig {
    pub version: Option<Value>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<String>>,
    pub admin: Option<String>,
    pub threads: Option<i64>,
    pub work_stealing: Option<bool>,
    pub grace_period: Option<Value>,
    pub shutdown_timeout: Option<Value>,
    pub access_log: Option<bool>,
    pub access_log_flush: Option<Value>,
    pub metrics: Option<bool>,
    pub upstream_keepalive_pool_size: Option<i64>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub discovery: RawDiscovery,
    pub selection: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub retries: Option<i64>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub dns: Option<String>,
    #[serde(rename = "static")]
    pub static_: Option<Vec<Value>>,
    pub interval: Option<Value>,
    pub resolver: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<Value>,
    pub timeout: Option<Value>,
    pub healthy_after: Option<i64>,
    pub unhealthy_after: Option<i64>,
    pub host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Value>,
    pub read: Option<Value>,
    pub write: Option<Value>,
    pub idle: Option<Value>,
}
