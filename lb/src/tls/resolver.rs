//! The certificate a TLS handshake gets, chosen by its SNI name: an exact name first, then a
//! one-label wildcard (`*.example.test` serves `a.example.test`, not `example.test` nor
//! `a.b.example.test`), then the listener's default certificate (the one marked `default`,
//! else the first listed, as in nginx), which also serves a client that sends no SNI (or an
//! IP address, which rustls does not pass on as a name).
//!
//! The table sits behind an `ArcSwap`: a reload swaps in new certificates without touching
//! the listener. Each handshake loads the table once; established connections keep the
//! keys they were set up with.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::certificates::ListenerCertificates;

#[derive(Default)]
struct SniTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the name after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniTable {
    fn new(certs: &ListenerCertificates) -> Self {
        let mut table = SniTable::default();
        for cert in &certs.0 {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(base) => table.wildcard.insert(base.to_string(), cert.key.clone()),
                    None => table.exact.insert(name.clone(), cert.key.clone()),
                };
            }
            if cert.default {
                table.default = Some(cert.key.clone());
            }
        }
        // `config::validate::tls` marks the first certificate when none says `default`;
        // the same rule here holds for any list, such as one an ACME issuance changed.
        if table.default.is_none() {
            table.default = certs.0.first().map(|c| c.key.clone());
        }
        table
    }

    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = sni.and_then(|name| {
            // rustls hands over the name as sent; DNS names are case-insensitive.
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        by_name.or(self.default.as_ref()).cloned()
    }
}

pub(crate) struct SniResolver {
    table: ArcSwap<SniTable>,
}

impl SniResolver {
    pub(crate) fn new(certs: &ListenerCertificates) -> Self {
        Self {
            table: ArcSwap::from_pointee(SniTable::new(certs)),
        }
    }

    /// New handshakes get `certs` from now on.
    pub(crate) fn store(&self, certs: &ListenerCertificates) {
        self.table.store(Arc::new(SniTable::new(certs)));
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        f.debug_struct("SniResolver")
            .field("exact", &table.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &table.wildcard.keys().collect::<Vec<_>>())
            .field("default", &table.default.is_some())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = self.table.load().lookup(hello.server_name());
        if key.is_none() {
            tracing::debug!(
                sni = hello.server_name(),
                "no certificate for this name and no default (no certificates): handshake refused"
            );
        }
        key
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::certificates::Certificate;

    /// A stand-in key: the table only moves `Arc`s around, so no real key is needed.
    fn key(tag: u8) -> Arc<CertifiedKey> {
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ECDSA
            }
        }
        Arc::new(CertifiedKey::new(vec![vec![tag].into()], Arc::new(NoKey)))
    }

    /// A certificate whose key's first certificate byte is `tag`.
    pub(in crate::tls) fn cert(tag: u8, names: &[&str], default: bool) -> Certificate {
        Certificate {
            key: key(tag),
            names: names.iter().map(|n| n.to_string()).collect(),
            default,
            file: String::new(),
            serial: String::new(),
            not_before: 0,
            not_after: 0,
        }
    }

    fn tag(table: &SniTable, sni: Option<&str>) -> Option<u8> {
        table.lookup(sni).map(|k| k.cert[0].as_ref()[0])
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let table = SniTable::new(&ListenerCertificates(vec![
            cert(1, &["a.example.test"], false),
            cert(2, &["*.example.test"], false),
            cert(3, &["other.test"], true),
        ]));
        assert_eq!(tag(&table, Some("a.example.test")), Some(1));
        assert_eq!(tag(&table, Some("A.Example.Test.")), Some(1));
        assert_eq!(tag(&table, Some("b.example.test")), Some(2));
        assert_eq!(
            tag(&table, Some("example.test")),
            Some(3),
            "a wildcard needs a label"
        );
        assert_eq!(
            tag(&table, Some("x.b.example.test")),
            Some(3),
            "one label only"
        );
        assert_eq!(tag(&table, None), Some(3));
        assert_eq!(tag(&table, Some("other.test")), Some(3));
    }

    #[test]
    fn without_a_default_the_first_certificate_is_the_default() {
        let resolver = SniResolver::new(&ListenerCertificates(vec![
            cert(1, &["a.test"], false),
            cert(2, &["b.test"], false),
        ]));
        assert_eq!(tag(&resolver.table.load(), Some("b.test")), Some(2));
        assert_eq!(tag(&resolver.table.load(), Some("c.test")), Some(1));
        assert_eq!(tag(&resolver.table.load(), None), Some(1));
        resolver.store(&ListenerCertificates(vec![
            cert(3, &["a.test"], false),
            cert(4, &["b.test"], true),
        ]));
        assert_eq!(tag(&resolver.table.load(), Some("a.test")), Some(3));
        assert_eq!(tag(&resolver.table.load(), None), Some(4));
        // Nothing to serve: refused.
        resolver.store(&ListenerCertificates(vec![]));
        assert_eq!(tag(&resolver.table.load(), None), None);
    }
}
