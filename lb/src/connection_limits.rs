//! `server.connection_limits`: concurrent client connections, in all and per client IP,
//! refused at accept time, before any TLS handshake or HTTP parsing.
//!
//! # How open connections are counted
//! The accept loop (`crate::accept`) owns each connection from `accept` to its close. It asks
//! [`AcceptFilter::admit`] once per accepted socket, and holds the [`Guard`] it gets for as
//! long as it serves the connection: a failed TLS handshake, a client gone at once and the
//! last request of a keep-alive connection all end in the guard's drop, which releases the
//! count. Nothing is counted while the limits are `off`; a reload that turns them on counts
//! the connections accepted from then on.
//!
//! The per-IP limit goes by the socket peer only: at accept time no request has been read,
//! and a proxy's connection carries many clients' requests. Peers in
//! `server.trusted_proxies` are therefore held to the total only.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::client_ip::{self, ClientKey};
use crate::config::ConnectionLimits;
use crate::state::LbState;

/// Why a connection was refused (`lb_connections_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    PerIp,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 2] = [Refusal::Total, Refusal::PerIp];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        }
    }
}

/// The open-connection counts of the process (one table for every listener).
pub(crate) struct Connections {
    table: Mutex<Table>,
    refused: [AtomicU64; 2],
}

#[derive(Default)]
struct Table {
    open: usize,
    per_ip: HashMap<ClientKey, usize>,
}

/// One counted connection; dropping it releases the count.
#[must_use = "the connection is counted only while its guard lives"]
pub(crate) struct Guard {
    conns: Arc<Connections>,
    key: ClientKey,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            table: Mutex::new(Table::default()),
            refused: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a new connection from `peer` under `limits` (`exempt`: not held to `per_ip`),
    /// or refuse it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        limits: &ConnectionLimits,
        exempt: bool,
    ) -> Result<Guard, Refusal> {
        let key = ClientKey::of(peer);
        let mut t = self.lock();
        let refusal = if t.open >= limits.total {
            Some(Refusal::Total)
        } else {
            // One hash of the key per connection here and one at its close (this runs for
            // every accepted connection, under a lock both threads take).
            match t.per_ip.entry(key) {
                Entry::Occupied(count) if !exempt && *count.get() >= limits.per_ip => {
                    Some(Refusal::PerIp)
                }
                Entry::Occupied(mut count) => {
                    *count.get_mut() += 1;
                    None
                }
                Entry::Vacant(_) if !exempt && limits.per_ip == 0 => Some(Refusal::PerIp),
                Entry::Vacant(slot) => {
                    slot.insert(1);
                    None
                }
            }
        };
        if let Some(r) = refusal {
            drop(t);
            self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        t.open += 1;
        Ok(Guard {
            conns: self.clone(),
            key,
        })
    }

    /// Connections counted now.
    pub(crate) fn open(&self) -> usize {
        self.lock().open
    }

    /// Connections refused since the start, by reason.
    pub(crate) fn refused(&self) -> [(Refusal, u64); 2] {
        Refusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut t = self.conns.lock();
        t.open = t.open.saturating_sub(1);
        if let Entry::Occupied(mut count) = t.per_ip.entry(self.key) {
            *count.get_mut() = count.get().saturating_sub(1);
            if *count.get() == 0 {
                count.remove();
            }
        }
    }
}

/// The process's table: one server per process, read by the metrics at scrape time.
pub(crate) fn connections() -> &'static Arc<Connections> {
    static CONNECTIONS: LazyLock<Arc<Connections>> = LazyLock::new(|| Arc::new(Connections::new()));
    &CONNECTIONS
}

/// Admits or refuses each accepted socket, under the limits in force now (they follow
/// reloads).
pub(crate) struct AcceptFilter {
    state: Arc<LbState>,
    conns: Arc<Connections>,
}

impl AcceptFilter {
    /// Admits against the process's table ([`connections`]).
    pub(crate) fn new(state: Arc<LbState>) -> Self {
        Self {
            state,
            conns: connections().clone(),
        }
    }

    /// `Ok(Some(guard))`: counted, serve it while holding the guard. `Ok(None)`: the limits
    /// are `off`, nothing is counted. `Err`: refused (counted, logged at DEBUG: a client's
    /// doing, not the operator's).
    pub(crate) fn admit(&self, peer: SocketAddr) -> Result<Option<Guard>, Refusal> {
        let snapshot = self.state.snapshot();
        let Some(limits) = snapshot.config.server.connection_limits else {
            return Ok(None);
        };
        let exempt = client_ip::is_trusted(peer.ip(), &snapshot.config.server.trusted_proxies);
        match self.conns.admit(peer.ip(), &limits, exempt) {
            Ok(guard) => Ok(Some(guard)),
            Err(reason) => {
                tracing::debug!(peer = %peer, reason = reason.label(), "connection refused: over server.connection_limits");
                Err(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        total: 3,
        per_ip: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn per_ip_then_total_and_dropped_guards_release() {
        let c = Arc::new(Connections::new());
        let a = c.admit(ip("192.0.2.1"), &LIMITS, false).expect("first");
        let _b = c.admit(ip("192.0.2.1"), &LIMITS, false).expect("second");
        assert_eq!(
            c.admit(ip("192.0.2.1"), &LIMITS, false).err(),
            Some(Refusal::PerIp)
        );
        let _d = c
            .admit(ip("192.0.2.2"), &LIMITS, false)
            .expect("other address");
        assert_eq!(
            c.admit(ip("192.0.2.3"), &LIMITS, false).err(),
            Some(Refusal::Total)
        );
        assert_eq!(c.open(), 3);
        drop(a);
        assert_eq!(c.open(), 2);
        let _e = c
            .admit(ip("192.0.2.1"), &LIMITS, false)
            .expect("a place freed");
        assert_eq!(c.refused(), [(Refusal::Total, 1), (Refusal::PerIp, 1)]);
    }

    #[test]
    fn trusted_peers_are_held_to_the_total_only() {
        let c = Arc::new(Connections::new());
        let held: Vec<Guard> = (0..3)
            .map(|_| c.admit(ip("10.0.0.1"), &LIMITS, true).expect("exempt"))
            .collect();
        assert_eq!(
            c.admit(ip("10.0.0.1"), &LIMITS, true).err(),
            Some(Refusal::Total)
        );
        drop(held);
        assert_eq!(c.open(), 0);
        assert!(c.lock().per_ip.is_empty(), "no entry left behind");
    }

    #[test]
    fn one_ipv6_subnet_is_one_client() {
        let c = Arc::new(Connections::new());
        let a = c.admit(ip("2001:db8::1"), &LIMITS, false).expect("admit");
        let b = c.admit(ip("2001:db8::1"), &LIMITS, false).expect("admit");
        assert_eq!(
            c.admit(ip("2001:db8::2"), &LIMITS, false).err(),
            Some(Refusal::PerIp),
            "one /64"
        );
        assert_eq!(c.open(), 2);
        drop((a, b));
        assert_eq!(c.open(), 0);
    }
}
