//! TLS termination (pingora's `rustls` backend): one [`SniResolver`] per `server.tls_listen`
//! entry, created at startup and kept for the life of the process; reloads swap the
//! certificates inside it ([`TlsListeners::install_with`]).
//!
//! Pingora builds each listener's rustls `ServerConfig` (TLS 1.2 and 1.3 only, ring's
//! cipher suites, no renegotiation: rustls has none) from [`TlsListeners::settings`]. The
//! certificate comes from our resolver: under rustls pingora never calls
//! `TlsAccept::certificate_callback`, and its file-based `TlsSettings` would panic on a bad
//! file instead of reporting it.

mod resolver;

use std::sync::{Arc, Mutex};

use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;

use crate::config::certificates::ListenerCertificates;
use crate::config::{Protocols, TlsListener};
pub(crate) use resolver::SniResolver;

pub(crate) struct TlsListeners {
    resolvers: Vec<Arc<SniResolver>>,
    /// What the resolvers serve now: a reload's certificates, with any ACME certificate
    /// issued since swapped in ([`TlsListeners::replace`]). `/status` and the expiry
    /// metric read this, not the snapshot.
    current: Mutex<Served>,
}

struct Served {
    /// Bumped by every reload's [`TlsListeners::install_with`]: an ACME certificate placed by
    /// slot is placed only into the layout it was computed for, and the ACME task looks
    /// again whenever a reload may have put back what it read from disk before.
    generation: u64,
    certs: Vec<ListenerCertificates>,
}

impl TlsListeners {
    /// One resolver per listener, from the certificates loaded with the config.
    pub(crate) fn new(certs: &[ListenerCertificates]) -> Self {
        Self {
            resolvers: certs
                .iter()
                .map(|c| Arc::new(SniResolver::new(c)))
                .collect(),
            current: Mutex::new(Served {
                generation: 0,
                certs: certs.to_vec(),
            }),
        }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The certificates served now, per listener.
    pub(crate) fn current(&self) -> Vec<ListenerCertificates> {
        self.served().certs.clone()
    }

    /// How many reloads have installed their certificates; read it before the snapshot
    /// whose slots a later [`TlsListeners::replace`] names ([`crate::state::LbState::install`]
    /// stores the snapshot and bumps this under one lock).
    pub(crate) fn generation(&self) -> u64 {
        self.served().generation
    }

    /// Serve `cert` as certificate `j` of listener `i` from the next handshake on (an ACME
    /// issuance or renewal); open connections keep the key they were set up with. Returns
    /// every listener's certificates as they are now (for the expiry metric), or `None`
    /// when a reload came after `generation` was read (the slot may now hold another
    /// certificate) or removed that entry: nothing is replaced then.
    pub(crate) fn replace(
        &self,
        generation: u64,
        i: usize,
        j: usize,
        cert: crate::config::certificates::Certificate,
    ) -> Option<Vec<ListenerCertificates>> {
        let mut served = self.served();
        if served.generation != generation {
            return None;
        }
        let slot = served.certs.get_mut(i)?.0.get_mut(j)?;
        *slot = cert;
        self.resolvers.get(i)?.store(&served.certs[i]);
        Some(served.certs.clone())
    }

    /// Swap in a reload's certificates, with `publish` (the new snapshot's store) run
    /// under the same lock first: no [`TlsListeners::replace`] can come between the
    /// snapshot whose slots it names and the generation bump. The listeners cannot change
    /// by reload (`reload::not_in_place`), so the lists line up one to one.
    pub(crate) fn install_with(&self, certs: &[ListenerCertificates], publish: impl FnOnce()) {
        let mut served = self.served();
        publish();
        for (resolver, certs) in self.resolvers.iter().zip(certs) {
            resolver.store(certs);
        }
        served.certs = certs.to_vec();
        served.generation += 1;
    }

    /// Pingora's settings for listener `i` of `listeners`.
    pub(crate) fn settings(&self, i: usize, listener: &TlsListener) -> anyhow::Result<TlsSettings> {
        let resolver = self
            .resolvers
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("no certificates loaded for tls_listen[{i}]"))?;
        // No files: with a resolver set, `build` never reads the (empty) paths.
        let mut settings = TlsSettings::intermediate("", "")?;
        settings.set_cert_resolver(resolver.clone());
        settings.set_alpn(match listener.protocols {
            Protocols::Http1 => ALPN::H1,
            Protocols::H2 => ALPN::H2,
            Protocols::H2AndHttp1 => ALPN::H2H1,
        });
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(tags: &[u8]) -> ListenerCertificates {
        ListenerCertificates(
            tags.iter()
                .map(|&t| resolver::tests::cert(t, &[&format!("n{t}.test")], false))
                .collect(),
        )
    }

    fn tags(tls: &TlsListeners) -> Vec<Vec<u8>> {
        tls.current()
            .iter()
            .map(|l| l.0.iter().map(|c| c.key.cert[0].as_ref()[0]).collect())
            .collect()
    }

    /// An ACME certificate is placed by slot: after a reload the slot may hold another
    /// certificate, so a replace computed before the reload places nothing.
    #[test]
    fn a_replace_from_before_a_reload_places_nothing() {
        let tls = TlsListeners::new(&[listener(&[1, 2])]);
        let before = tls.generation();
        assert!(tls
            .replace(before, 0, 1, resolver::tests::cert(9, &["n2.test"], false))
            .is_some());
        assert_eq!(tags(&tls), vec![vec![1, 9]]);

        // A reload puts a certificate in front: slot 1 is now another name's.
        tls.install_with(&[listener(&[3, 1, 2])], || {});
        assert_ne!(tls.generation(), before);
        assert!(tls
            .replace(before, 0, 1, resolver::tests::cert(8, &["n2.test"], false))
            .is_none());
        assert_eq!(tags(&tls), vec![vec![3, 1, 2]], "nothing replaced");

        // With the generation read after the reload, it is placed; a slot a reload removed
        // is not.
        let after = tls.generation();
        assert!(tls
            .replace(after, 0, 2, resolver::tests::cert(8, &["n2.test"], false))
            .is_some());
        assert_eq!(tags(&tls), vec![vec![3, 1, 8]]);
        assert!(tls
            .replace(after, 0, 7, resolver::tests::cert(7, &["x.test"], false))
            .is_none());
    }
}
