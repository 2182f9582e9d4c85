//! TLS termination (pingora's `rustls` backend): one [`SniResolver`] per `server.tls_listen`
//! entry, created at startup and kept for the life of the process; reloads swap the
//! certificates inside it ([`TlsListeners::install`]).
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
    current: Mutex<Vec<ListenerCertificates>>,
}

impl TlsListeners {
    /// One resolver per listener, from the certificates loaded with the config.
    pub(crate) fn new(certs: &[ListenerCertificates]) -> Self {
        Self {
            resolvers: certs
                .iter()
                .map(|c| Arc::new(SniResolver::new(c)))
                .collect(),
            current: Mutex::new(certs.to_vec()),
        }
    }

    /// The certificates served now, per listener.
    pub(crate) fn current(&self) -> Vec<ListenerCertificates> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serve `cert` as certificate `j` of listener `i` from the next handshake on (an ACME
    /// issuance or renewal); open connections keep the key they were set up with. Returns
    /// every listener's certificates as they are now (for the expiry metric), or `None`
    /// when a reload removed that entry meanwhile.
    pub(crate) fn replace(
        &self,
        i: usize,
        j: usize,
        cert: crate::config::certificates::Certificate,
    ) -> Option<Vec<ListenerCertificates>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let slot = current.get_mut(i)?.0.get_mut(j)?;
        *slot = cert;
        self.resolvers.get(i)?.store(&current[i]);
        Some(current.clone())
    }

    /// Swap in a reload's certificates. The listeners cannot change by reload
    /// (`reload::not_in_place`), so the lists line up one to one.
    pub(crate) fn install(&self, certs: &[ListenerCertificates]) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        for (resolver, certs) in self.resolvers.iter().zip(certs) {
            resolver.store(certs);
        }
        *current = certs.to_vec();
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
