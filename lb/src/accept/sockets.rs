//! The listening sockets of one address: bound here, or taken over from the process this
//! one upgrades (`lb -u`) through pingora's fd table.

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

/// `count` listening sockets on `addr`, in the fd table under [`key`], non-blocking and
/// not yet registered with any thread. Each is taken from the table when an upgrade handed
/// it over, else bound. Several are bound with `SO_REUSEPORT` on one port (the port the
/// first got, for `:0`); one that cannot be (the first came from a process that did not set
/// `SO_REUSEPORT`) shares the first socket instead.
pub(super) async fn bind(
    addr: SocketAddr,
    count: usize,
    fds: Option<&ListenFds>,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let sockets = bind_with(addr, count, |key| {
        fds.and_then(|t| t.lock().get(key).copied())
    })
    .await?;
    if let Some(table) = fds {
        let mut table = table.lock();
        for (i, socket) in sockets.iter().enumerate() {
            if table.get(&key(addr, i)).is_none() {
                table.add(key(addr, i), socket.as_raw_fd());
            }
        }
    }
    Ok(sockets)
}

/// [`bind`], with `inherited(key)` saying which descriptor was handed over for a key.
async fn bind_with(
    addr: SocketAddr,
    count: usize,
    inherited: impl Fn(&str) -> Option<RawFd>,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let count = count.max(1);
    let first = match inherited(&key(addr, 0)) {
        Some(fd) => take_over(fd).with_context(|| format!("the socket handed over for {addr}"))?,
        None => {
            // A second lb on this address must fail here, as without `SO_REUSEPORT`,
            // not quietly take a share of its connections.
            if addr.port() != 0 {
                exclusive_probe(addr).await?;
            }
            fresh(addr, count > 1).with_context(|| format!("bind {addr}"))?
        }
    };
    let port = first.local_addr().context("the bound address")?.port();
    let bound = SocketAddr::new(addr.ip(), port);
    let mut sockets = vec![first];
    for i in 1..count {
        let socket = match inherited(&key(addr, i)) {
            Some(fd) => take_over(fd),
            None => fresh(bound, true),
        };
        let socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(
                    address = %bound,
                    "a per-thread socket could not be bound ({e}); this thread shares the first socket (a restart binds them all)"
                );
                sockets[0].try_clone().context("sharing the first socket")?
            }
        };
        sockets.push(socket);
    }
    Ok(sockets)
}

/// A new listening socket on `addr`.
fn fresh(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As pingora: restarts do not wait for TIME_WAIT connections.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
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
/// and is closed at once. Retried for a while, as pingora does.
async fn exclusive_probe(addr: SocketAddr) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        let probe = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .with_context(|| format!("a socket for {addr}"))?;
        probe.set_reuseaddr(true)?;
        match probe.bind(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AddrInUse && tries + 1 < BIND_TRIES => {
                tries += 1;
                tracing::warn!(address = %addr, "address in use; trying again in a second");
                tokio::time::sleep(BIND_PAUSE).await;
            }
            Err(e) => return Err(e).with_context(|| format!("bind {addr}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
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

    #[tokio::test]
    async fn one_port_many_sockets_and_each_accepts() {
        let sockets = bind_with(loopback(), 3, |_| None).await.expect("bind");
        assert_eq!(sockets.len(), 3);
        let port = sockets[0].local_addr().expect("addr").port();
        assert_ne!(port, 0);
        for s in &sockets {
            assert_eq!(s.local_addr().expect("addr").port(), port);
        }
        let inodes: std::collections::HashSet<u64> = sockets.iter().map(inode).collect();
        assert_eq!(inodes.len(), 3, "three sockets, not one shared");
        // The kernel spreads connections over the group: enough of them reach each socket.
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
        while accepted < clients.len() {
            for (i, l) in listeners.iter().enumerate() {
                while let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(20), l.accept()).await
                {
                    reached[i] += 1;
                    accepted += 1;
                }
            }
        }
        assert!(reached.iter().all(|&n| n > 0), "{reached:?}");
    }

    #[tokio::test]
    async fn handed_over_sockets_are_taken_by_key() {
        let old = bind_with(loopback(), 2, |_| None).await.expect("bind");
        let addr = loopback();
        let (inodes, fds): (Vec<u64>, HashMap<String, RawFd>) = {
            let inodes = old.iter().map(inode).collect();
            let fds = old
                .into_iter()
                .enumerate()
                .map(|(i, s)| (key(addr, i), s.into_raw_fd()))
                .collect();
            (inodes, fds)
        };
        let new = bind_with(addr, 2, |k| fds.get(k).copied())
            .await
            .expect("take over");
        assert_eq!(new.iter().map(inode).collect::<Vec<_>>(), inodes);
    }

    /// A first socket from an lb that set no `SO_REUSEPORT` (`per_thread_accept: false`):
    /// no second socket can join its port, so the threads share it.
    #[tokio::test]
    async fn a_plain_handed_over_socket_is_shared() {
        let addr = loopback();
        let plain = bind_with(addr, 1, |_| None).await.expect("bind").remove(0);
        let plain_inode = inode(&plain);
        let fd = plain.into_raw_fd();
        let new = bind_with(addr, 2, |k| (k == key(addr, 0)).then_some(fd))
            .await
            .expect("take over");
        assert_eq!(new.len(), 2);
        assert!(new.iter().all(|s| inode(s) == plain_inode));
    }

    #[tokio::test]
    async fn an_address_someone_listens_on_is_refused_by_the_probe() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let probe = TcpSocket::new_v4().expect("socket");
        probe.set_reuseaddr(true).expect("reuseaddr");
        assert_eq!(
            probe.bind(addr).map_err(|e| e.kind()),
            Err(ErrorKind::AddrInUse)
        );
        // And a free one passes at once.
        drop(taken);
        exclusive_probe(addr).await.expect("free again");
    }

    #[test]
    fn keys() {
        let addr: SocketAddr = "0.0.0.0:80".parse().expect("addr");
        assert_eq!(key(addr, 0), "0.0.0.0:80");
        assert_eq!(key(addr, 2), "0.0.0.0:80#2");
    }
}
