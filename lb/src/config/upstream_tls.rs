//! `upstreams.<name>.tls`, validated: the SNI name, whether the backend's certificate is
//! verified, and the CA bundle it is verified against, read and checked here.
//!
//! The CA file is read during validation (so by `lb -t`, at startup and on every reload),
//! and every certificate in it is parsed before pingora sees it: pingora turns each one
//! into a `WrappedX509` with a parser that panics on bytes that are not X.509.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// How a pool's backends are reached over TLS.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UpstreamTls {
    /// Sent as SNI and checked against the certificate (never empty: pingora turns
    /// verification off for an empty SNI).
    pub(crate) sni: String,
    /// `false` only when the file says `verify: false`: no certificate check at all.
    pub(crate) verify: bool,
    /// The CAs to trust; required while `verify` is true.
    pub(crate) ca: Option<CaBundle>,
}

/// The certificates of a `ca_file`, in file order.
#[derive(Clone, PartialEq)]
pub(crate) struct CaBundle {
    pub(crate) file: String,
    /// DER bytes. Part of the spec's `PartialEq`, so a reload that finds the file's content
    /// changed (same path) rebuilds the pool.
    pub(crate) certs: Arc<[CertificateDer<'static>]>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("file", &self.file)
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// Read and check a CA file: readable, PEM, at least one certificate, each one X.509 and
/// usable as a trust anchor. The error says what is wrong, naming the file.
pub(crate) fn load_ca(file: &str) -> Result<CaBundle, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {file:?}: {e}"))?;
    parse_ca(file, &pem)
}

/// [`load_ca`]'s checks on the text of `file`.
pub(crate) fn parse_ca(file: &str, pem: &[u8]) -> Result<CaBundle, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{file:?} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {file:?}"));
    }
    for (i, der) in certs.iter().enumerate() {
        let n = i + 1;
        x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("{file:?}: certificate {n} is not an X.509 certificate: {e}"))?;
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| format!("{file:?}: certificate {n} cannot be a trust anchor: {e}"))?;
    }
    Ok(CaBundle {
        file: file.to_string(),
        certs: certs.into(),
    })
}
