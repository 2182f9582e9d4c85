//! Certificate and key files: what `lb -t`, startup and every reload read from disk.

use std::path::Path;

use crate::config::{certificates, local_ca, upstream_tls};
use crate::config::{CertificateSource, CertificateSpec};

/// When the certificates are checked (2027-01-15): the seeds' certificates are valid then.
const NOW: i64 = 1_800_000_000;

/// `data` as a combined PEM file (certificate chain and key): a TLS listener's
/// certificate with and without configured names, an upstream `ca_file`, and the local
/// CA's stored `ca.pem` + `ca.key` issuing a leaf.
pub fn pem(data: &[u8]) {
    for names in [None, Some(vec!["a.test".to_string()])] {
        let spec = CertificateSpec {
            source: CertificateSource::Files {
                cert: "cert".into(),
                key: "key".into(),
            },
            names,
            default: false,
        };
        if let Ok(cert) = certificates::from_combined_pem(&spec, data, NOW) {
            assert!(!cert.names.is_empty());
            assert!(cert.not_before <= NOW && NOW <= cert.not_after, "{cert:?}");
            assert!(cert
                .serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }
    if let Ok(bundle) = upstream_tls::parse_ca("ca.pem", data) {
        assert!(!bundle.certs.is_empty());
    }
    let text = String::from_utf8_lossy(data);
    let names = ["a.test".to_string(), "127.0.0.1".to_string()];
    if let Ok(issued) = local_ca::issue_from(Path::new("ca"), &text, &text, &names, NOW) {
        assert_eq!(issued.chain.len(), 1);
    }
}
