//! TLS to a pool's backends: an [`UpstreamTls`] turned into pingora `HttpPeer` settings,
//! once per pool, applied to every peer the pool hands out (requests on the engine path
//! and the health check's peer template alike).
//!
//! What pingora 0.9.1's rustls connector (`connectors/tls/rustls/mod.rs`) does with them:
//! - `options.ca` (`Arc<[WrappedX509]>` under rustls) replaces the trust store for this
//!   peer; without it, the connector's store is used, which holds only the platform's
//!   certificates (rustls-native-certs: `SSL_CERT_FILE`/`SSL_CERT_DIR` or the usual
//!   `/etc/ssl` paths; nothing in a `FROM scratch` image). Hence `ca_file` is required.
//! - an empty `sni` skips every certificate check (validation refuses one);
//! - `verify_cert: false` skips every check, `verify_hostname: false` only the name check;
//!   `alternative_cn` is not read at all. The lb sets both flags from `verify`.
//! - the connection pool's key hashes address, SNI and the verify flags but not `ca`, so a
//!   pool gets a `group_key` from its CA certificates: a connection verified against one
//!   CA is never reused under another after a reload.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::{HttpPeer, Scheme};
use pingora::utils::tls::WrappedX509;

use crate::config::UpstreamTls;

/// The peer settings of one pool's TLS, built once (the CA certificates are parsed here).
pub(crate) struct PeerTls {
    sni: String,
    verify: bool,
    ca: Option<Arc<CaType>>,
    group_key: u64,
}

impl PeerTls {
    /// `pool` names the upstream in the warning logged when verification is off.
    pub(crate) fn new(pool: &str, spec: &UpstreamTls) -> Self {
        let mut key = DefaultHasher::new();
        let ca = spec.ca.as_ref().map(|bundle| {
            let certs: Vec<WrappedX509> = bundle
                .certs
                .iter()
                .map(|der| {
                    der.as_ref().hash(&mut key);
                    // Parsed without panicking in `config::upstream_tls::load_ca`, so
                    // pingora's own parser (which panics on non-X.509 bytes) accepts it.
                    WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509)
                })
                .collect();
            Arc::<CaType>::from(certs)
        });
        if !spec.verify {
            tracing::warn!(
                upstream = %pool, sni = %spec.sni,
                "upstream TLS certificate verification is off (`verify: false`): the backends' identity is not checked"
            );
        }
        Self {
            sni: spec.sni.clone(),
            verify: spec.verify,
            ca,
            group_key: key.finish(),
        }
    }

    /// Make `peer` a TLS peer with these settings; its timeouts and `Host` stay as they are.
    pub(crate) fn apply(&self, peer: &mut HttpPeer) {
        peer.scheme = Scheme::HTTPS;
        peer.sni.clone_from(&self.sni);
        peer.group_key = self.group_key;
        let opts = &mut peer.options;
        opts.verify_cert = self.verify;
        opts.verify_hostname = self.verify;
        opts.ca.clone_from(&self.ca);
    }
}
