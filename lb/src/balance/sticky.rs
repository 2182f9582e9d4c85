//! The sticky cookie: its value names a backend without revealing it (the first 16 bytes
//! of an HMAC-SHA256 of the backend's address, hex), so a client cannot aim at a backend
//! it was not given, and learns nothing of the network behind the lb.
//!
//! The key is `sticky.key_file`'s content, shared by every lb replica that reads it;
//! without one, a random key per process: cookies then last until the process does (a
//! restart or binary upgrade re-pins clients, once).

use std::net::SocketAddr;
use std::sync::OnceLock;

use http::HeaderMap;
use ring::hmac;

use crate::config::StickySpec;

/// A cookie value, decoded.
pub(crate) type Token = [u8; 16];

/// The HMAC key: configured, or this process's random one.
pub(super) fn key(spec: Option<&StickySpec>) -> hmac::Key {
    static PROCESS_KEY: OnceLock<[u8; 32]> = OnceLock::new();
    match spec.and_then(|s| s.key.as_deref()) {
        Some(k) => hmac::Key::new(hmac::HMAC_SHA256, k),
        None => {
            let k = PROCESS_KEY.get_or_init(|| {
                let mut k = [0u8; 32];
                // The system RNG only fails where the process could not run anyway; a
                // fixed key then still separates backends, it is only guessable.
                let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k);
                k
            });
            hmac::Key::new(hmac::HMAC_SHA256, k)
        }
    }
}

pub(super) fn token(key: &hmac::Key, addr: SocketAddr) -> Token {
    let tag = hmac::sign(key, addr.to_string().as_bytes());
    let mut t = [0u8; 16];
    t.copy_from_slice(&tag.as_ref()[..16]);
    t
}

/// The values of the request's cookies named `name`, in order.
pub(super) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            pair.trim_ascii()
                .strip_prefix(name.as_bytes())?
                .strip_prefix(b"=")
        })
}

/// The token in the request's `name` cookie, if it has a well-formed one.
pub(crate) fn from_request(headers: &HeaderMap, name: &str) -> Option<Token> {
    cookie_values(headers, name).find_map(decode)
}

fn decode(hex: &[u8]) -> Option<Token> {
    if hex.len() != 32 {
        return None;
    }
    let mut t = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        t[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(t)
}

/// The `Set-Cookie` value pinning a client to the backend with `token`.
pub(crate) fn set_cookie(spec: &StickySpec, token: &Token) -> String {
    use std::fmt::Write;
    let mut v = String::with_capacity(96);
    let _ = write!(v, "{}=", spec.cookie);
    for b in token {
        let _ = write!(v, "{b:02x}");
    }
    let _ = write!(v, "; Path={}", spec.path);
    if let Some(age) = spec.max_age {
        let _ = write!(v, "; Max-Age={}", age.as_secs());
    }
    if spec.http_only {
        v.push_str("; HttpOnly");
    }
    if spec.secure {
        v.push_str("; Secure");
    }
    let _ = write!(v, "; SameSite={}", spec.same_site.as_str());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SameSite;

    fn spec() -> StickySpec {
        StickySpec {
            cookie: "lb_sticky".into(),
            path: "/".into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
            max_age: Some(std::time::Duration::from_secs(60)),
            key: Some(vec![7; 32]),
        }
    }

    #[test]
    fn a_set_cookie_reads_back_as_the_same_token() {
        let k = key(Some(&spec()));
        let t = token(&k, "10.0.0.1:80".parse().unwrap());
        let set = set_cookie(&spec(), &t);
        assert!(
            set.ends_with("; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Strict"),
            "{set}"
        );
        let value = set.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("a=b; {value}; c=d").parse().unwrap(),
        );
        assert_eq!(from_request(&h, "lb_sticky"), Some(t));
    }

    #[test]
    fn tokens_differ_by_backend_and_by_key_and_hide_the_address() {
        let k = key(Some(&spec()));
        let a = token(&k, "10.0.0.1:80".parse().unwrap());
        let b = token(&k, "10.0.0.2:80".parse().unwrap());
        let other = token(&key(None), "10.0.0.1:80".parse().unwrap());
        assert_ne!(a, b);
        assert_ne!(a, other);
        assert!(!set_cookie(&spec(), &a).contains("10.0.0"));
    }

    #[test]
    fn malformed_cookies_are_ignored() {
        for bad in [
            "lb_sticky=zz",
            "lb_sticky=",
            "lb_stickyx=00000000000000000000000000000000",
            "lb_sticky=0000000000000000000000000000000g",
        ] {
            let mut h = HeaderMap::new();
            h.insert(http::header::COOKIE, bad.parse().unwrap());
            assert_eq!(from_request(&h, "lb_sticky"), None, "{bad}");
        }
    }
}
