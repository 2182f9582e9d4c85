//! The listening sockets of one address: bound here, or taken over from the process this
//! one upgrades (`lb -u`) through pingora's fd table.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

use anyhow::Context;
use pingora::server::ListenFds;
use tokio::net::TcpSocket;

/// The accept queue's length, as pingora's listener asks (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: u32 = 65535;
/// An address in use is tried this many times, a second apart, as pingora's listener does:
/// a restarted lb may start while the old one still closes its sockets.
const BIND_TRIES: usize = 30;
const BIND_PAUSE: Duration = Duration::from_secs(1);

/// What an upgrade can hand over: the proxy's sockets must fit in it, all addresses
/// together.
pub(super) use crate::config::defaults::HANDED_OVER_MAX;

/// The fd-table key of socket `i` of `addr`: the address itself for the first, which is the
/// key pingora's own listener uses (so an lb started with `per_thread_accept: false`, or an
/// older lb, hands its socket over), and `ADDR#i` for the others.
pub(super) fn key(addr: SocketAddr, i: usize) -> String {
    if i == 0 {
        addr.to_string()
    } else {
        format!("{addr}#{i}")
    }
}

/// The descriptors an upgrade handed over, read once before anything is bound, so a socket
/// this process binds (and records) is never mistaken for one it inherited; each is taken
/// at most once.
pub(super) struct Inherited(HashMap<String, RawFd>);

impl Inherited {
    pub(super) fn from_table(fds: Option<&ListenFds>) -> Self {
        let (keys, fds) = fds.map(|t| t.lock().serialize()).unwrap_or_default();
        Self(keys.into_iter().zip(fds).collect())
    }

    fn take(&mut self, key: &str) -> Option<RawFd> {
        self.0.remove(key)
    }
}

/// The sockets of one address, each with its fd-table key.
pub(super) struct Bound {
    pub(super) sockets: Vec<(String, std::net::TcpListener)>,
    /// Keys whose handed-over descriptor could not be used (it is closed now): the table
    /// must not send that number on.
    stale: Vec<String>,
}

/// Up to `count` listening sockets on `addr`, non-blocking and not yet registered with any
/// thread. The first is the one handed over under its key, else bound fresh (after
/// [`exclusive_probe`]); every other one is taken over likewise, else bound with
/// `SO_REUSEPORT` on the first one's port (the port `:0` got). A socket that cannot join
/// the port (the first came from an lb that set no `SO_REUSEPORT`) is left out: fewer
/// sockets than asked is not an error, none is.
pub(super) async fn bind(
    addr: SocketAddr,
    count: usize,
    inherited: &mut Inherited,
) -> anyhow::Result<Bound> {
    bind_with(addr, count, |key| inherited.take(key), BIND_TRIES).await
}

async fn bind_with(
    addr: SocketAddr,
    count: usize,
    mut inherited: impl FnMut(&str) -> Option<RawFd>,
    tries: usize,
) -> anyhow::Result<Bound> {
    let mut stale = Vec::new();
    let first_key = key(addr, 0);
    let handed_over = inherited(&first_key).and_then(|fd| match take_over(fd) {
        Ok(socket) => Some(socket),
        Err(e) => {
            tracing::warn!(address = %addr, "the socket handed over is unusable ({e}); binding anew");
            stale.push(first_key.clone());
            None
        }
    });
    let first = match handed_over {
        Some(socket) => socket,
        None => {
            // A second lb on this address must fail here, as without `SO_REUSEPORT`,
            // not quietly take a share of its connections.
            if addr.port() != 0 {
                exclusive_probe(addr, tries).await?;
            }
            fresh(addr).with_context(|| format!("bind {addr}"))?
        }
    };
    let mut bound = addr; // keeps an IPv6 scope
    bound.set_port(first.local_addr().context("the bound address")?.port());
    let mut sockets = vec![(first_key, first)];
    for i in 1..count {
        let key = key(addr, i);
        let socket = match inherited(&key) {
            Some(fd) => take_over(fd).inspect_err(|_| stale.push(key.clone())),
            None => fresh(bound),
        };
        match socket {
            Ok(socket) => sockets.push((key, socket)),
            Err(e) => tracing::warn!(
                address = %bound,
                "a per-thread socket could not be bound ({e}); fewer sockets than threads (a restart binds them all)"
            ),
        }
    }
    Ok(Bound { sockets, stale })
}

/// Record `bound` in pingora's fd table, so an upgrade hands every socket on. A stale key is
/// pointed at the first socket (any live one will do; its old number may be reused).
pub(super) fn record(table: &ListenFds, bound: &Bound) {
    let mut table = table.lock();
    for (key, socket) in &bound.sockets {
        table.add(key.clone(), socket.as_raw_fd());
    }
    if let Some((_, first)) = bound.sockets.first() {
        for key in &bound.stale {
            if !bound.sockets.iter().any(|(k, _)| k == key) {
                table.add(key.clone(), first.as_raw_fd());
            }
        }
    }
}

/// A new listening socket on `addr`, always with `SO_REUSEPORT` (so per-thread sockets can
/// join it, also after an upgrade that adds threads; [`exclusive_probe`] keeps other
/// processes out).
fn fresh(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = unbound(addr)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// A socket of `addr`'s family with `SO_REUSEADDR` (as pingora: restarts do not wait for
/// TIME_WAIT connections).
fn unbound(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

/// A listening socket handed over by the previous process. The lb's one `unsafe`: a
/// descriptor received over the upgrade socket can only become a socket object by asserting
/// that it is open and owned by nothing else, as pingora's own listener does.
#[allow(unsafe_code)]
fn take_over(fd: RawFd) -> std::io::Result<std::net::TcpListener> {
    // SAFETY: pingora's fd table holds the descriptors it received from the previous
    // process (open, and owned by nothing else in this one); `bind_with` takes each key
    // once, and the table keeps only the number, never closing it itself.
    let socket = unsafe { TcpSocket::from_raw_fd(fd) };
    // `listen` again on a listening socket only updates its queue length.
    socket.listen(BACKLOG)?.into_std()
}

/// Fails while another socket listens on `addr`, whatever its options: a socket without
/// `SO_REUSEPORT` cannot be bound beside a listening one. It is bound only, never listens,
/// and is closed at once. Tried `tries` times a second apart, as pingora does. Two lbs
/// started in the same instant could both pass it; that race is not closed here.
async fn exclusive_probe(addr: SocketAddr, tries: usize) -> anyhow::Result<()> {
    let mut tried = 1;
    loop {
        let probe = unbound(addr).with_context(|| format!("a socket for {addr}"))?;
        match probe.bind(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AddrInUse && tried < tries => {
                tried += 1;
                tracing::warn!(address = %addr, "address in use; trying again in a second");
                tokio::time::sleep(BIND_PAUSE).await;
            }
            Err(e) => return Err(e).with_context(|| format!("bind {addr}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::io::IntoRawFd;

    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("addr")
    }

    fn inode(socket: &std::net::TcpListener) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .expect("fd")
            .ino()
    }

    async fn fresh_sockets(addr: SocketAddr, count: usize) -> Vec<std::net::TcpListener> {
        let bound = bind_with(addr, count, |_| None, 1).await.expect("bind");
        assert!(bound.stale.is_empty());
        bound.sockets.into_iter().map(|(_, s)| s).collect()
    }

    #[tokio::test]
    async fn one_port_many_sockets_and_each_accepts() {
        let sockets = fresh_sockets(loopback(), 3).await;
        assert_eq!(sockets.len(), 3);
        let port = sockets[0].local_addr().expect("addr").port();
        assert_ne!(port, 0);
        for s in &sockets {
            assert_eq!(s.local_addr().expect("addr").port(), port);
        }
        let inodes: std::collections::HashSet<u64> = sockets.iter().map(inode).collect();
        assert_eq!(inodes.len(), 3, "three sockets, not one shared");
        // The kernel spreads connections over the group: some reach each socket.
        let listeners: Vec<_> = sockets
            .into_iter()
            .map(|s| tokio::net::TcpListener::from_std(s).expect("register"))
            .collect();
        let mut reached = vec![0; listeners.len()];
        let mut clients = Vec::new();
        for _ in 0..60 {
            clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"));
        }
        let mut accepted = 0;
        // Every connection is in some socket's queue; the rounds only bound a broken run.
        for _ in 0..100 {
            if accepted == clients.len() {
                break;
            }
            for (i, l) in listeners.iter().enumerate() {
                while let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(20), l.accept()).await
                {
                    reached[i] += 1;
                    accepted += 1;
                }
            }
        }
        assert_eq!(accepted, clients.len(), "every connection accepted");
        assert!(reached.iter().all(|&n| n > 0), "{reached:?}");
    }

    #[tokio::test]
    async fn handed_over_sockets_are_taken_by_key() {
        let addr = loopback();
        let old = fresh_sockets(addr, 2).await;
        let inodes: Vec<u64> = old.iter().map(inode).collect();
        let fds: HashMap<String, RawFd> = old
            .into_iter()
            .enumerate()
            .map(|(i, s)| (key(addr, i), s.into_raw_fd()))
            .collect();
        let mut inherited = Inherited(fds);
        let new = bind(addr, 2, &mut inherited).await.expect("take over");
        assert_eq!(
            new.sockets
                .iter()
                .map(|(k, s)| (k.clone(), inode(s)))
                .collect::<Vec<_>>(),
            vec![(key(addr, 0), inodes[0]), (key(addr, 1), inodes[1])]
        );
        assert!(inherited.0.is_empty(), "each taken once");
    }

    /// A first socket from an lb that set no `SO_REUSEPORT` (an older lb): no other socket
    /// can join its port, so there is one (the accept loop then hands connections out).
    #[tokio::test]
    async fn a_plain_handed_over_socket_stays_alone() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let plain_inode = inode(&plain);
        let addr = loopback();
        let fd = plain.into_raw_fd();
        let new = bind_with(addr, 2, |k| (k == key(addr, 0)).then_some(fd), 1)
            .await
            .expect("take over");
        assert_eq!(new.sockets.len(), 1);
        assert_eq!(inode(&new.sockets[0].1), plain_inode);
    }

    /// The probe is what keeps a second process out of a `SO_REUSEPORT` group: it must
    /// fail against one (and it sets no `SO_REUSEPORT` itself, or it would join).
    #[tokio::test]
    async fn the_probe_refuses_an_address_a_group_listens_on() {
        let group = fresh_sockets(loopback(), 2).await;
        let addr = group[0].local_addr().expect("addr");
        let e = exclusive_probe(addr, 2).await.expect_err("in use");
        assert!(format!("{e:#}").contains("in use"), "{e:#}");
        let e = bind_with(addr, 2, |_| None, 1).await.err().expect("in use");
        assert!(format!("{e:#}").contains("in use"), "{e:#}");
        drop(group);
        exclusive_probe(addr, 1).await.expect("free again");
    }

    #[tokio::test]
    async fn an_unusable_handed_over_socket_is_replaced_and_its_key_repointed() {
        // A descriptor that is no socket (a file): taking it over fails.
        let file = tempfile::tempfile().expect("file");
        let fd = file.into_raw_fd();
        let addr = loopback();
        let bound = bind_with(addr, 2, |k| (k == key(addr, 1)).then_some(fd), 1)
            .await
            .expect("bind");
        assert_eq!(bound.sockets.len(), 1, "{:?}", bound.stale);
        assert_eq!(bound.stale, vec![key(addr, 1)]);
    }

    #[test]
    fn keys() {
        let addr: SocketAddr = "0.0.0.0:80".parse().expect("addr");
        assert_eq!(key(addr, 0), "0.0.0.0:80");
        assert_eq!(key(addr, 2), "0.0.0.0:80#2");
    }
}
