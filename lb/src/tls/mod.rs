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

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;

use crate::config::certificates::ListenerCertificates;
use crate::config::{Protocols, TlsListener};
pub(crate) use resolver::SniResolver;

pub(crate) struct TlsListeners {
    resolvers: Vec<Arc<SniResolver>>,
}

impl TlsListeners {
    /// One resolver per listener, from the certificates loaded with the config.
    pub(crate) fn new(certs: &[ListenerCertificates]) -> Self {
        Self {
            resolvers: certs
                .iter()
                .map(|c| Arc::new(SniResolver::new(c)))
                .collect(),
        }
    }

    /// Swap in a reload's certificates. The listeners cannot change by reload
    /// (`reload::not_in_place`), so the lists line up one to one.
    pub(crate) fn install(&self, certs: &[ListenerCertificates]) {
        for (resolver, certs) in self.resolvers.iter().zip(certs) {
            resolver.store(certs);
        }
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
