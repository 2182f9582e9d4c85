//! Where a pool's backends come from: a fixed list, or DNS re-resolved on an interval.
//!
//! DNS rules (documented in the README):
//! - A successful answer replaces the set; backends still in it keep their health state.
//! - A failed lookup (timeout, SERVFAIL, unreachable resolver) keeps the last set and warns
//!   once per outage.
//! - NXDOMAIN or an empty answer for a name that used to resolve means "scaled to zero":
//!   Docker's DNS answers NXDOMAIN when a service has no running replica. One such answer
//!   can be a blip while containers restart, so the pool empties only on the second in a
//!   row (one interval later); until then the old set is kept, and health checks already
//!   take dead replicas out of rotation.
//! - The record TTL is ignored (Docker sets 600 s): the name is asked again every interval.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;
use pingora::{Error, ErrorType, Result};

use crate::balance::BackendTable;
use crate::config::StaticBackend;
use crate::health::Admission;

/// How many NXDOMAIN/empty answers in a row empty a pool that had backends.
const ABSENT_ANSWERS_TO_EMPTY: u32 = 2;

/// A fixed list of `IP:port` backends.
pub(crate) struct StaticDiscovery {
    backends: BTreeSet<Backend>,
    admission: Arc<Admission>,
}

impl StaticDiscovery {
    /// Each backend carries its state from `table` (built once: the list never changes).
    pub(crate) fn new(
        list: &[StaticBackend],
        admission: Arc<Admission>,
        table: &BackendTable,
    ) -> Self {
        Self {
            backends: list
                .iter()
                .map(|b| table.backend(b.addr, b.weight))
                .collect(),
            admission,
        }
    }
}

#[async_trait]
impl ServiceDiscovery for StaticDiscovery {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let enablement = self.admission.enablement(&self.backends);
        Ok((self.backends.clone(), enablement))
    }
}

/// A name resolved with hickory (async; never pingora's blocking lookups).
pub(crate) struct DnsDiscovery {
    pool: String,
    name: String,
    /// `None`: `name` is an SRV name, whose records give each target's port and weight.
    port: Option<u16>,
    resolver: TokioResolver,
    admission: Arc<Admission>,
    /// Gives each discovered backend its state (the same one every round).
    table: Arc<BackendTable>,
    state: Mutex<DnsState>,
}

#[derive(Default)]
struct DnsState {
    /// The last set we handed to pingora.
    last: BTreeSet<Backend>,
    /// In a lookup-failure outage (so we warn once, and log the recovery).
    failing: bool,
    /// Consecutive NXDOMAIN/empty answers.
    absent: u32,
}

impl DnsDiscovery {
    /// `port: None` asks for `name`'s SRV records instead of its addresses.
    /// `resolver: None` reads `/etc/resolv.conf`; `Some(addr)` asks only that server.
    /// Lookups time out after [`lookup_timeout`]`(interval)`.
    pub(crate) fn new(
        pool: &str,
        name: &str,
        port: Option<u16>,
        resolver: Option<SocketAddr>,
        interval: Duration,
        admission: Arc<Admission>,
        table: Arc<BackendTable>,
    ) -> anyhow::Result<Self> {
        let provider = TokioConnectionProvider::default();
        let mut builder = match resolver {
            Some(addr) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                let mut b = TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], servers),
                    provider,
                );
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => TokioResolver::builder(provider).map_err(|e| {
                anyhow::anyhow!("cannot read the system DNS configuration (/etc/resolv.conf): {e}")
            })?,
        };
        let opts = builder.options_mut();
        // Ignore TTLs: every interval asks the server again.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.timeout = lookup_timeout(interval);
        opts.attempts = 1;
        Ok(Self {
            pool: pool.to_string(),
            name: name.to_string(),
            port,
            resolver: builder.build(),
            admission,
            table,
            state: Mutex::new(DnsState::default()),
        })
    }
}

impl DnsDiscovery {
    /// SRV discovery: the records of the lowest priority (the others are fallbacks a
    /// healthy pool does not use), each target's addresses with the record's port and
    /// weight. A weight of 0 ("rarely", RFC 2782) counts as 1, and weights above 1000
    /// (the static limit) as 1000. A target that does not resolve (even NXDOMAIN) fails the
    /// round, so the last set is kept: only the SRV name's own absence means "scaled to
    /// zero", never one stale target among others.
    async fn srv_backends(&self) -> std::result::Result<BTreeSet<Backend>, ResolveError> {
        let lookup = self.resolver.srv_lookup(self.name.as_str()).await?;
        let best = lookup.iter().map(|r| r.priority()).min();
        let mut set = BTreeSet::new();
        for record in lookup.iter().filter(|r| Some(r.priority()) == best) {
            let weight = usize::from(record.weight()).clamp(1, 1000);
            let ips = self
                .resolver
                .lookup_ip(record.target().clone())
                .await
                .map_err(|e| ResolveError::from(format!("SRV target {}: {e}", record.target())))?;
            for ip in ips.iter() {
                set.insert(
                    self.table
                        .backend(SocketAddr::new(ip, record.port()), weight),
                );
            }
        }
        Ok(set)
    }
}

/// How long one lookup may take: about the interval, so that a dead resolver cannot
/// stall the loop for long, but at most 2 s, and never under 1 s, the time a healthy
/// resolver may need for an answer it has to fetch (with `interval: 100ms`, a 100 ms
/// timeout would fail such lookups every round, and the pool would never be discovered).
fn lookup_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(2))
}

/// NXDOMAIN, or NOERROR with no address: the name has no backend right now. Anything else
/// (SERVFAIL, REFUSED, timeouts) is a failed lookup that says nothing about the backends.
fn name_is_absent(e: &ResolveError) -> bool {
    matches!(
        e.proto().map(|p| p.kind()),
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. })
            if matches!(*response_code, ResponseCode::NXDomain | ResponseCode::NoError)
    )
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let answer = match self.port {
            Some(port) => self
                .resolver
                .lookup_ip(self.name.as_str())
                .await
                .map(|lookup| {
                    lookup
                        .iter()
                        .map(|ip| self.table.backend(SocketAddr::new(ip, port), 1))
                        .collect()
                }),
            None => self.srv_backends().await,
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let found: Option<BTreeSet<Backend>> = match answer {
            Ok(set) => Some(set),
            Err(e) if name_is_absent(&e) => None,
            Err(e) => {
                // Once per failure, and once per `server.log_throttle` when it flaps.
                if !state.failing
                    && crate::log_throttle::admit(
                        "DNS lookup failed",
                        self.pool.to_string(),
                        tracing::Level::WARN,
                    )
                {
                    tracing::warn!(
                        upstream = %self.pool, name = %self.name, error = %e,
                        kept = state.last.len(),
                        "DNS lookup failed; keeping the last known backends until it recovers"
                    );
                }
                state.failing = true;
                return Error::e_explain(ErrorType::ConnectNoRoute, "DNS lookup failed");
            }
        };
        if state.failing {
            tracing::info!(upstream = %self.pool, name = %self.name, "DNS lookup recovered");
            state.failing = false;
        }
        let set = match found {
            Some(set) if !set.is_empty() => {
                state.absent = 0;
                set
            }
            _ => {
                state.absent += 1;
                if state.last.is_empty() || state.absent >= ABSENT_ANSWERS_TO_EMPTY {
                    if !state.last.is_empty()
                        && crate::log_throttle::admit(
                            "name no longer resolves",
                            self.pool.to_string(),
                            tracing::Level::WARN,
                        )
                    {
                        tracing::warn!(
                            upstream = %self.pool, name = %self.name,
                            "name no longer resolves (NXDOMAIN/no records): scaled to zero, pool is empty"
                        );
                    }
                    BTreeSet::new()
                } else {
                    state.last.clone()
                }
            }
        };
        state.last = set.clone();
        drop(state);
        let enablement = self.admission.enablement(&set);
        Ok((set, enablement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_gets_its_interval_within_1s_to_2s() {
        let ms = Duration::from_millis;
        // 100 ms (the shortest interval) used to give lookups 100 ms.
        assert_eq!(lookup_timeout(ms(100)), ms(1000));
        assert_eq!(lookup_timeout(ms(1500)), ms(1500));
        assert_eq!(lookup_timeout(ms(2000)), ms(2000));
        assert_eq!(lookup_timeout(Duration::from_secs(3600)), ms(2000));
    }
}
