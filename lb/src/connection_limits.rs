//! `server.connection_limits`: concurrent client connections, in all and per client IP,
//! refused at accept time, before any TLS handshake or HTTP parsing.
//!
//! # How open connections are counted
//! The accept loop (`crate::accept`) asks once per accepted socket, with the peer address
//! only. So the count is kept here in two steps:
//! 1. [`AcceptFilter`] admits the connection against the limits and counts it as
//!    *pending*, keyed by its peer `IP:port`;
//! 2. after the TLS handshake (none on plaintext), the connection reaches the proxy app,
//!    which [`Counted`] wraps: it claims the pending entry as a [`Guard`] and serves every
//!    request of the connection before dropping it, which releases the count.
//!
//! A connection whose TLS handshake fails or times out never reaches the app: the accept
//! loop releases its entry by its address ([`never_served`]). A pending entry older than
//! [`PENDING_MAX`] (longer than any handshake may take) belongs to a connection that is
//! gone and is released too, as a safety net.
//!
//! The per-IP limit goes by the socket peer only: at accept time no request has been read,
//! and a proxy's connection carries many clients' requests. Peers in
//! `server.trusted_proxies` are therefore held to the total only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::client_ip::{self, ClientKey};
use crate::config::ConnectionLimits;
use crate::state::LbState;

/// The TLS handshake deadline and a second of slack: a connection still pending after this
/// has failed its handshake.
const PENDING_MAX: Duration = crate::accept::HANDSHAKE_MAX.saturating_add(Duration::from_secs(1));
/// How often pending entries are checked for age (on an accept or a scrape).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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

struct Table {
    /// Every counted connection: pending and claimed.
    open: usize,
    per_ip: HashMap<ClientKey, usize>,
    /// Admitted, not yet claimed (in the TLS handshake, or about to be handed over).
    pending: HashMap<SocketAddr, Pending>,
    last_sweep: Instant,
}

/// Admitted connections from one peer `IP:port` (two listeners may see the same one).
struct Pending {
    count: usize,
    since: Instant,
}

/// One counted connection; dropping it releases the count.
pub(crate) struct Guard {
    conns: Arc<Connections>,
    key: ClientKey,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            table: Mutex::new(Table {
                open: 0,
                per_ip: HashMap::new(),
                pending: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            refused: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a new connection from `peer` under `limits` (`exempt`: not held to `per_ip`),
    /// counting it as pending; or refuse it.
    pub(crate) fn admit(
        &self,
        peer: SocketAddr,
        limits: &ConnectionLimits,
        exempt: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let key = ClientKey::of(peer.ip());
        let mut t = self.lock();
        t.sweep(now);
        let refusal = if t.open >= limits.total {
            Some(Refusal::Total)
        } else if !exempt && t.per_ip.get(&key).copied().unwrap_or(0) >= limits.per_ip {
            Some(Refusal::PerIp)
        } else {
            None
        };
        if let Some(r) = refusal {
            drop(t);
            self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        t.add(key);
        let pending = t.pending.entry(peer).or_insert(Pending {
            count: 0,
            since: now,
        });
        pending.count += 1;
        pending.since = now;
        Ok(())
    }

    /// The connection from `peer` reached the app: its pending count becomes a guard. A
    /// connection that was not admitted here (limits were `off` then, or its entry was
    /// already swept) is counted now when `counting`, and not at all otherwise.
    pub(crate) fn claim(self: &Arc<Self>, peer: SocketAddr, counting: bool) -> Option<Guard> {
        let key = ClientKey::of(peer.ip());
        let mut t = self.lock();
        if !t.take_pending(peer) {
            if !counting {
                return None;
            }
            t.add(key);
        }
        Some(Guard {
            conns: self.clone(),
            key,
        })
    }

    /// The connection from `peer` ended before it reached the app (its TLS handshake
    /// failed, or it was gone at once): release its pending count.
    pub(crate) fn never_served(&self, peer: SocketAddr) {
        let mut t = self.lock();
        if t.take_pending(peer) {
            t.remove(ClientKey::of(peer.ip()), 1);
        }
    }

    /// Connections counted now (after releasing stale pending ones).
    pub(crate) fn open(&self) -> usize {
        let mut t = self.lock();
        t.sweep(Instant::now());
        t.open
    }

    /// Connections refused since the start, by reason.
    pub(crate) fn refused(&self) -> [(Refusal, u64); 2] {
        Refusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }
}

impl Table {
    fn add(&mut self, key: ClientKey) {
        self.open += 1;
        *self.per_ip.entry(key).or_insert(0) += 1;
    }

    fn remove(&mut self, key: ClientKey, n: usize) {
        self.open = self.open.saturating_sub(n);
        if let Some(count) = self.per_ip.get_mut(&key) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.per_ip.remove(&key);
            }
        }
    }

    /// One pending connection of `peer` taken off the pending list (its count stays).
    fn take_pending(&mut self, peer: SocketAddr) -> bool {
        let Some(p) = self.pending.get_mut(&peer) else {
            return false;
        };
        p.count -= 1;
        if p.count == 0 {
            self.pending.remove(&peer);
        }
        true
    }

    /// Release pending entries older than [`PENDING_MAX`], at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let stale: Vec<(SocketAddr, usize)> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= PENDING_MAX)
            .map(|(addr, p)| (*addr, p.count))
            .collect();
        for (addr, n) in stale {
            self.pending.remove(&addr);
            self.remove(ClientKey::of(addr.ip()), n);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.conns.lock().remove(self.key, 1);
    }
}

/// The process's table: one server per process (the accept loops report failed handshakes
/// to it by address).
pub(crate) fn connections() -> &'static Arc<Connections> {
    static CONNECTIONS: LazyLock<Arc<Connections>> = LazyLock::new(|| Arc::new(Connections::new()));
    &CONNECTIONS
}

/// See [`Connections::never_served`].
pub(crate) fn never_served(peer: SocketAddr) {
    connections().never_served(peer);
}

/// The limits in force now (they follow reloads).
fn limits(state: &LbState) -> Option<ConnectionLimits> {
    state.snapshot().config.server.connection_limits
}

/// Admits or refuses each accepted socket.
pub(crate) struct AcceptFilter {
    state: Arc<LbState>,
    conns: Arc<Connections>,
}

impl std::fmt::Debug for AcceptFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptFilter")
    }
}

impl AcceptFilter {
    /// True when the connection from `peer` may be served (it is then counted as pending).
    pub(crate) fn admits(&self, peer: SocketAddr) -> bool {
        let snapshot = self.state.snapshot();
        let Some(limits) = snapshot.config.server.connection_limits else {
            return true;
        };
        let exempt = client_ip::is_trusted(peer.ip(), &snapshot.config.server.trusted_proxies);
        match self.conns.admit(peer, &limits, exempt, Instant::now()) {
            Ok(()) => true,
            Err(reason) => {
                tracing::debug!(peer = %peer, reason = reason.label(), "connection refused: over server.connection_limits");
                false
            }
        }
    }
}

/// The proxy app, holding a [`Guard`] for as long as the connection is served.
pub(crate) struct Counted<A> {
    inner: Arc<A>,
    state: Arc<LbState>,
    conns: Arc<Connections>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Counted<A> {
    /// The app is called once per request of a keep-alive connection; this loop calls it
    /// inside the guard's life, and returns `None` so the caller's loop ends at once.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let _guard = peer.and_then(|p| self.conns.claim(p, limits(&self.state).is_some()));
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// `app`, holding each connection's count while it serves it, and the filter that admits
/// connections against the same table.
pub(crate) fn counted<A>(app: A, state: Arc<LbState>) -> (Counted<A>, AcceptFilter) {
    let conns = connections().clone();
    let filter = AcceptFilter {
        state: state.clone(),
        conns: conns.clone(),
    };
    let app = Counted {
        inner: Arc::new(app),
        state,
        conns,
    };
    (app, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        total: 3,
        per_ip: 2,
    };

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn per_ip_then_total_and_claimed_guards_release() {
        let c = Arc::new(Connections::new());
        let now = Instant::now();
        assert_eq!(c.admit(addr("192.0.2.1:1"), &LIMITS, false, now), Ok(()));
        assert_eq!(c.admit(addr("192.0.2.1:2"), &LIMITS, false, now), Ok(()));
        assert_eq!(
            c.admit(addr("192.0.2.1:3"), &LIMITS, false, now),
            Err(Refusal::PerIp)
        );
        assert_eq!(c.admit(addr("192.0.2.2:1"), &LIMITS, false, now), Ok(()));
        assert_eq!(
            c.admit(addr("192.0.2.3:1"), &LIMITS, false, now),
            Err(Refusal::Total)
        );
        assert_eq!(c.open(), 3);
        let g = c.claim(addr("192.0.2.1:1"), true).expect("guard");
        assert_eq!(c.open(), 3, "claiming moves the count, it does not add one");
        drop(g);
        assert_eq!(c.open(), 2);
        assert_eq!(c.admit(addr("192.0.2.1:4"), &LIMITS, false, now), Ok(()));
        assert_eq!(c.refused(), [(Refusal::Total, 1), (Refusal::PerIp, 1)]);
    }

    #[test]
    fn trusted_peers_are_held_to_the_total_only() {
        let c = Connections::new();
        let now = Instant::now();
        for port in 1..=3 {
            let peer = SocketAddr::from(([10, 0, 0, 1], port));
            assert_eq!(c.admit(peer, &LIMITS, true, now), Ok(()));
        }
        assert_eq!(
            c.admit(addr("10.0.0.1:4"), &LIMITS, true, now),
            Err(Refusal::Total)
        );
    }

    #[test]
    fn failed_handshakes_and_stale_entries_release_their_count() {
        let c = Connections::new();
        let start = Instant::now();
        c.admit(addr("192.0.2.1:1"), &LIMITS, false, start)
            .expect("admit");
        c.admit(addr("192.0.2.1:2"), &LIMITS, false, start)
            .expect("admit");
        c.never_served(addr("192.0.2.1:1"));
        c.never_served(addr("192.0.2.1:1"));
        assert_eq!(c.open(), 1, "released once, not twice");
        // The handshake deadline passed: the entry is gone.
        let later = start + PENDING_MAX + SWEEP_EVERY;
        assert_eq!(c.admit(addr("192.0.2.1:3"), &LIMITS, false, later), Ok(()));
        assert_eq!(c.open(), 1);
    }

    #[test]
    fn an_unadmitted_connection_is_counted_only_while_limits_are_on() {
        let c = Arc::new(Connections::new());
        assert!(c.claim(addr("192.0.2.1:1"), false).is_none());
        let g = c.claim(addr("192.0.2.1:1"), true).expect("guard");
        assert_eq!(c.open(), 1);
        drop(g);
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn one_peer_address_on_two_listeners_is_two_connections() {
        let c = Arc::new(Connections::new());
        let now = Instant::now();
        let peer = addr("[2001:db8::1]:5");
        c.admit(peer, &LIMITS, false, now).expect("admit");
        c.admit(peer, &LIMITS, false, now).expect("admit");
        assert_eq!(
            c.admit(addr("[2001:db8::2]:5"), &LIMITS, false, now),
            Err(Refusal::PerIp),
            "one /64"
        );
        let a = c.claim(peer, true);
        let b = c.claim(peer, true);
        assert_eq!(c.open(), 2);
        drop((a, b));
        assert_eq!(c.open(), 0);
    }
}
