//! Who the client is, for per-client limits: the socket peer, or, when the peer is one of
//! `server.trusted_proxies`, the address its `X-Forwarded-For` names.
//!
//! Each proxy appends the address it received the request from, so the list reads
//! client, proxy 1, proxy 2, ... and anything left of the first trusted proxy's entry
//! may have been written by the client itself. The client is therefore the rightmost
//! address that is not itself trusted (nginx's `real_ip_recursive on`): a client cannot
//! pose as someone else by sending its own `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Whether `ip` is in one of the `trusted` networks (a linear scan: such lists are short).
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address for a request that came from `peer`.
///
/// - `peer` not trusted (always so when `trusted` is empty): `peer`.
/// - otherwise the rightmost `X-Forwarded-For` entry (over all its header lines, in order)
///   that is not trusted;
/// - every entry trusted (or none): the leftmost one, or `peer`;
/// - an entry that is not an address (garbage, `unknown`) ends the walk: the nearest
///   trusted hop to its right stands for the client, since nothing left of it can be
///   believed.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut nearest = peer;
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = line.to_str() else {
            return nearest;
        };
        for entry in text.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some(ip) = parse_entry(entry) else {
                return nearest;
            };
            if !is_trusted(ip, trusted) {
                return ip;
            }
            nearest = ip;
        }
    }
    nearest
}

/// `192.0.2.1`, `2001:db8::1`, or either with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), or a bracketed IPv6 address without one.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// What per-client limits count by: an IPv4 address, or the /64 network of an IPv6 one
/// (one subscriber usually holds a whole /64, so counting single IPv6 addresses would let
/// one client spread over 2^64 keys). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

impl ClientKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => ClientKey(v4),
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR, l.parse().expect("value"));
        }
        h
    }

    fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
        client_ip(ip(peer), &headers(xff), &nets(trusted))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &[]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let trusted = ["10.0.0.0/8"];
        // The client wrote the first entry itself; the proxy appended the real address.
        assert_eq!(
            client("10.0.0.2", &["198.51.100.1, 203.0.113.9"], &trusted),
            ip("203.0.113.9")
        );
        // Two proxies, over two header lines.
        assert_eq!(
            client(
                "10.0.0.2",
                &["198.51.100.1, 203.0.113.9", "10.0.0.3"],
                &trusted
            ),
            ip("203.0.113.9")
        );
        // Ports and brackets, as some proxies write them.
        assert_eq!(
            client("10.0.0.2", &["[2001:db8::7]:4711"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("10.0.0.2", &["[2001:db8::7]"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("10.0.0.2", &["192.0.2.1:80"], &trusted),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn without_an_untrusted_entry_the_leftmost_trusted_hop_is_the_client() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(client("10.0.0.2", &[], &trusted), ip("10.0.0.2"));
        assert_eq!(
            client("10.0.0.2", &["10.9.9.9, 10.0.0.3"], &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn garbage_stops_at_the_nearest_trusted_hop() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.2", &["198.51.100.1, unknown, 10.0.0.3"], &trusted),
            ip("10.0.0.3")
        );
        assert_eq!(client("10.0.0.2", &["not an ip"], &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert_eq!(
            client("::ffff:10.0.0.2", &["::ffff:203.0.113.9"], &["10.0.0.0/8"]),
            ip("203.0.113.9")
        );
        assert!(is_trusted(ip("::ffff:10.1.1.1"), &nets(&["10.0.0.0/8"])));
    }

    #[test]
    fn keys_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(ClientKey::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
