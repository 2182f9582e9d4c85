//! The addresses the lb actually listens on, so `listen: ["127.0.0.1:0"]` is usable (tests,
//! several lbs on one host): each is logged as `proxy listening on ADDR` (plaintext),
//! `tls listening on ADDR` (`tls_listen`) or `admin listening on ADDR`, and shown in
//! `/status` under `listening`.
//!
//! The proxy's listeners are bound by their own service (`crate::accept`), which does not
//! report back, so the port a `:0` address got is read back from the kernel: this process's listening TCP sockets
//! (`/proc/self/fd` → socket inodes → `/proc/self/net/tcp` and `tcp6`). Linux only, like
//! the rest of the lb's deployment.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::LbState;

/// How long to wait for pingora to bind every configured address before saying so.
const BIND_WAIT: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(20);

/// The listening TCP sockets this process holds.
fn own_listening_sockets() -> std::io::Result<Vec<SocketAddr>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        // tcp6 is absent when IPv6 is off.
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        found.extend(listening_in(&text, &inodes));
    }
    Ok(found)
}

/// The LISTEN entries of one `/proc/net/tcp{,6}` table whose inode is in `inodes`.
fn listening_in(table: &str, inodes: &HashSet<String>) -> Vec<SocketAddr> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (*state == LISTEN && inodes.contains(*inode))
                .then(|| parse_local(local))
                .flatten()
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6): the address is printed as
/// 32-bit words in host byte order, the port as a plain number in hex.
fn parse_local(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The word's bytes as they lie in memory: the address in network order.
    let word = |i: usize| {
        u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    let ip: IpAddr = match ip.len() {
        8 => Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(bytes).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Each configured address with its real port, from the sockets `bound` (minus the admin
/// listener's); `None` while one is not bound yet. Several `:0` addresses on one IP are
/// matched in the order the kernel lists them.
fn resolve(
    configured: &[SocketAddr],
    admin: SocketAddr,
    bound: &[SocketAddr],
) -> Option<Vec<SocketAddr>> {
    // One address per port: each proxy thread holds its own socket on it.
    let mut free: Vec<SocketAddr> = Vec::new();
    for a in bound {
        if *a != admin && !configured.contains(a) && !free.contains(a) {
            free.push(*a);
        }
    }
    configured
        .iter()
        .map(|want| {
            if want.port() != 0 {
                return bound.contains(want).then_some(*want);
            }
            let i = free.iter().position(|a| a.ip() == want.ip())?;
            Some(free.remove(i))
        })
        .collect()
}

/// Learns the proxy's bound addresses once pingora has bound them, logs and records them.
pub(crate) struct ListenReport {
    state: Arc<LbState>,
}

impl ListenReport {
    pub(crate) fn new(state: Arc<LbState>) -> Self {
        Self { state }
    }
}

#[async_trait]
impl BackgroundService for ListenReport {
    /// Polls until every configured address is bound, and the admin listener too (its
    /// socket must not be taken for a proxy one). During an upgrade (`-u`) the admin port
    /// comes free only when the old process exits, so there is no deadline: after
    /// [`BIND_WAIT`] it says so once and polls slower.
    async fn start(&self, _shutdown: ShutdownWatch) {
        let server = self.state.snapshot().config.server.clone();
        let plaintext = server.listen.len();
        let configured: Vec<SocketAddr> = server
            .listen
            .iter()
            .copied()
            .chain(server.tls_listen.iter().map(|l| l.address))
            .collect();
        let started = tokio::time::Instant::now();
        let mut warned = false;
        loop {
            if let Some(admin) = self.state.admin_addr() {
                let bound = match own_listening_sockets() {
                    Ok(bound) => bound,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read this process's sockets; bound ports are not reported");
                        return;
                    }
                };
                if let Some(mut addrs) = resolve(&configured, admin, &bound) {
                    let tls = addrs.split_off(plaintext);
                    for addr in &addrs {
                        tracing::info!(%addr, "proxy listening on {addr}");
                    }
                    for addr in &tls {
                        tracing::info!(%addr, "tls listening on {addr}");
                    }
                    self.state.set_listening(addrs);
                    self.state.set_tls_listening(tls);
                    return;
                }
            }
            let waited = started.elapsed();
            if waited >= BIND_WAIT && !warned {
                warned = true;
                tracing::warn!(
                    ?configured,
                    ?waited,
                    "listen or admin addresses not bound yet; still waiting to report them"
                );
            }
            tokio::time::sleep(if warned { BIND_WAIT / 10 } else { POLL_EVERY }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn proc_net_tcp_entries() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n   \
            1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n   \
            2: 0100007F:1F92 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n";
        let ours: HashSet<String> = ["111".to_string()].into();
        assert_eq!(listening_in(table, &ours), vec![addr("127.0.0.1:8080")]);
        assert_eq!(
            parse_local("00000000000000000000000001000000:2352"),
            Some(addr("[::1]:9042"))
        );
        assert_eq!(parse_local("00000000:0050"), Some(addr("0.0.0.0:80")));
        assert_eq!(parse_local("xyz"), None);
    }

    #[test]
    fn resolves_port_zero_and_fixed_ports() {
        let admin = addr("127.0.0.1:9901");
        let bound = [admin, addr("127.0.0.1:40001"), addr("0.0.0.0:8080")];
        let configured = [addr("0.0.0.0:8080"), addr("127.0.0.1:0")];
        assert_eq!(
            resolve(&configured, admin, &bound),
            Some(vec![addr("0.0.0.0:8080"), addr("127.0.0.1:40001")])
        );
        assert_eq!(
            resolve(&[addr("127.0.0.2:0")], admin, &bound),
            None,
            "not bound yet"
        );
        assert_eq!(resolve(&[addr("127.0.0.1:0")], admin, &[admin]), None);
    }

    #[test]
    fn reads_this_process_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let bound = own_listening_sockets().expect("proc");
        assert!(
            bound.contains(&listener.local_addr().expect("addr")),
            "{bound:?}"
        );
    }
}
