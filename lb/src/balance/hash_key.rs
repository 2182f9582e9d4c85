//! The key `consistent_hash` places a request by, reduced to 8 bytes before the backend
//! is chosen (so nothing borrowed from the request is held across the wait for a
//! backend). The Ketama ring hashes those bytes again, so the reduction costs no spread.

use std::hash::Hasher;
use std::net::IpAddr;

use http::HeaderMap;

use crate::config::HashKey;

/// The request's key, or `None` if the request has none (no such header or cookie):
/// such requests are spread at random instead of all landing on one backend.
pub(crate) fn request_key(
    key: &HashKey,
    client_ip: impl FnOnce() -> Option<IpAddr>,
    path: &str,
    headers: &HeaderMap,
) -> Option<[u8; 8]> {
    let mut h = fnv::FnvHasher::default();
    match key {
        HashKey::ClientIp => match client_ip()? {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        },
        HashKey::Path => h.write(path.as_bytes()),
        HashKey::Header(name) => h.write(headers.get(name)?.as_bytes()),
        HashKey::Cookie(name) => h.write(super::sticky::cookie_values(headers, name).next()?),
    }
    Some(h.finish().to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn each_kind_of_key_reads_its_part_of_the_request() {
        let ip = || Some(IpAddr::from([10, 0, 0, 1]));
        let h = headers(&[("x-user", "alice"), ("cookie", "a=1; sid=abc")]);
        let k = |key: &HashKey, path| request_key(key, ip, path, &h);
        assert_eq!(k(&HashKey::Path, "/a"), k(&HashKey::Path, "/a"));
        assert_ne!(k(&HashKey::Path, "/a"), k(&HashKey::Path, "/b"));
        let user = HashKey::Header(http::HeaderName::from_static("x-user"));
        let other = headers(&[("x-user", "bob")]);
        assert_ne!(k(&user, "/"), request_key(&user, ip, "/", &other));
        assert!(k(&HashKey::Cookie("sid".into()), "/").is_some());
        assert!(k(&HashKey::ClientIp, "/").is_some());
    }

    #[test]
    fn a_missing_key_is_none() {
        let h = HeaderMap::new();
        assert_eq!(
            request_key(
                &HashKey::Header(http::HeaderName::from_static("x-user")),
                || None,
                "/",
                &h
            ),
            None
        );
        assert_eq!(
            request_key(&HashKey::Cookie("sid".into()), || None, "/", &h),
            None
        );
        assert_eq!(request_key(&HashKey::ClientIp, || None, "/", &h), None);
    }
}
