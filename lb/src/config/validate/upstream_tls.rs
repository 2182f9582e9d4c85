//! `upstreams.<name>.tls`: TLS to the backends. Verification is on unless the file says
//! `verify: false`, and nothing can turn it off by accident: pingora skips every
//! certificate check when the SNI is empty, so an empty SNI is an error, and a static pool
//! (which has no name to default to) must name one.

use rustls::pki_types::ServerName;

use super::Errors;
use crate::config::raw::RawUpstreamTls;
use crate::config::upstream_tls::{load_ca, UpstreamTls};
use crate::config::DiscoverySpec;

pub(super) fn upstream_tls(
    errs: &mut Errors,
    path: &str,
    raw: &RawUpstreamTls,
    discovery: &DiscoverySpec,
) -> UpstreamTls {
    let sni_path = format!("{path}.sni");
    let sni = match (raw.sni.as_deref(), discovery) {
        (Some(sni), _) => {
            check_sni(errs, &sni_path, sni);
            sni.to_string()
        }
        (None, DiscoverySpec::Dns { srv: true, .. }) => {
            errs.push(
                &sni_path,
                "required with `srv` discovery: each SRV record names its own target",
            );
            String::new()
        }
        (None, DiscoverySpec::Dns { name, .. }) => {
            // An empty name is a discovery error, reported there already.
            if !name.is_empty() {
                check_sni(errs, &sni_path, name);
            }
            name.clone()
        }
        (None, DiscoverySpec::Static { .. }) => {
            errs.push(
                &sni_path,
                "required with `static` discovery: the name the backends' certificate is \
                 checked against (there is no DNS name to default to)",
            );
            String::new()
        }
    };
    let verify = raw.verify.unwrap_or(true);
    let ca_path = format!("{path}.ca_file");
    let ca = match raw.ca_file.as_deref() {
        Some(file) => load_ca(file)
            .map_err(|message| errs.push(&ca_path, message))
            .ok(),
        None => {
            if verify {
                errs.push(
                    &ca_path,
                    "required while `verify` is true: the lb has no built-in CA roots \
                     (name a PEM bundle of the CAs that sign the backends' certificates)",
                );
            }
            None
        }
    };
    UpstreamTls { sni, verify, ca }
}

/// A name rustls can send and check the certificate against: a DNS name or an IP address.
fn check_sni(errs: &mut Errors, path: &str, sni: &str) {
    if sni.is_empty() {
        errs.push(
            path,
            "must not be empty (pingora would send no SNI and skip certificate verification)",
        );
    } else if ServerName::try_from(sni).is_err() {
        errs.push(path, format!("{sni:?} is not a DNS name or IP address"));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::validate::{collect, upstreams::upstreams, yaml};
    use crate::config::UpstreamSpec;

    use super::*;

    /// A CA certificate (PEM) made by rcgen.
    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").pem()
    }

    /// The `api` upstream from `upstreams:` text, and the errors.
    fn api(text: &str) -> (Option<UpstreamTls>, Vec<String>) {
        let (mut specs, errs): (BTreeMap<String, UpstreamSpec>, _) =
            collect(|errs| upstreams(errs, &yaml(text)));
        (specs.remove("api").and_then(|s| s.tls), errs)
    }

    const STATIC: &str = "discovery: { static: [\"127.0.0.1:1\"] }";
    const DNS: &str = "discovery: { dns: \"backend.internal:8443\" }";

    struct CaFile {
        _dir: tempfile::TempDir,
        path: String,
    }

    fn ca_file(content: &[u8]) -> CaFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, content).expect("write");
        CaFile {
            path: path.display().to_string(),
            _dir: dir,
        }
    }

    #[test]
    fn no_tls_key_means_plain_http() {
        assert_eq!(api(&format!("api: {{ {STATIC} }}")), (None, vec![]));
    }

    #[test]
    fn a_static_pool_with_sni_and_ca_file_verifies_against_that_ca() {
        let pem = ca_pem();
        let ca = ca_file(pem.as_bytes());
        let (tls, errs) = api(&format!(
            "api: {{ {STATIC}, tls: {{ sni: api.internal, ca_file: {:?} }} }}",
            ca.path
        ));
        assert_eq!(errs, Vec::<String>::new());
        let tls = tls.expect("tls");
        assert_eq!(tls.sni, "api.internal");
        assert!(tls.verify);
        let bundle = tls.ca.expect("ca");
        assert_eq!(bundle.file, ca.path);
        assert_eq!(bundle.certs.len(), 1);
    }

    #[test]
    fn dns_discovery_defaults_the_sni_to_its_name_without_the_port() {
        let ca = ca_file(ca_pem().as_bytes());
        let (tls, errs) = api(&format!(
            "api: {{ {DNS}, tls: {{ ca_file: {:?} }} }}",
            ca.path
        ));
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(tls.expect("tls").sni, "backend.internal");
    }

    #[test]
    fn a_static_pool_needs_an_sni() {
        let ca = ca_file(ca_pem().as_bytes());
        let (_, errs) = api(&format!(
            "api: {{ {STATIC}, tls: {{ ca_file: {:?} }} }}",
            ca.path
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("upstreams.api.tls.sni: required with `static` discovery"),
            "{errs:?}"
        );
    }

    #[test]
    fn an_empty_sni_is_refused_even_with_verify_false() {
        for extra in ["", ", verify: false"] {
            let ca = ca_file(ca_pem().as_bytes());
            let (_, errs) = api(&format!(
                "api: {{ {DNS}, tls: {{ sni: \"\", ca_file: {:?}{extra} }} }}",
                ca.path
            ));
            assert_eq!(
                errs,
                vec![
                    "upstreams.api.tls.sni: must not be empty (pingora would send no SNI and \
                     skip certificate verification)"
                ],
                "{extra}"
            );
        }
    }

    #[test]
    fn the_sni_is_a_dns_name_or_an_ip() {
        let ca = ca_file(ca_pem().as_bytes());
        let text = |sni: &str| {
            format!(
                "api: {{ {STATIC}, tls: {{ sni: {sni:?}, ca_file: {:?} }} }}",
                ca.path
            )
        };
        assert_eq!(api(&text("10.0.0.7")).1, Vec::<String>::new());
        assert_eq!(
            api(&text("bad name!")).1,
            vec!["upstreams.api.tls.sni: \"bad name!\" is not a DNS name or IP address"]
        );
    }

    #[test]
    fn verify_needs_a_ca_file() {
        let (_, errs) = api(&format!("api: {{ {DNS}, tls: {{}} }}"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("upstreams.api.tls.ca_file: required while `verify` is true"),
            "{errs:?}"
        );
    }

    #[test]
    fn verify_false_must_be_written_and_needs_no_ca_file() {
        let (tls, errs) = api(&format!(
            "api: {{ {STATIC}, tls: {{ sni: api.internal, verify: false }} }}"
        ));
        assert_eq!(errs, Vec::<String>::new());
        let tls = tls.expect("tls");
        assert!(!tls.verify);
        assert_eq!(tls.ca, None);
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let (_, errs) = api(&format!(
            "api: {{ {DNS}, tls: {{ ca_file: /nonexistent/ca.pem }} }}"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("upstreams.api.tls.ca_file: cannot read \"/nonexistent/ca.pem\""),
            "{errs:?}"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        for content in [&b"garbage, not PEM\n"[..], b""] {
            let ca = ca_file(content);
            let (_, errs) = api(&format!(
                "api: {{ {DNS}, tls: {{ ca_file: {:?} }} }}",
                ca.path
            ));
            assert_eq!(
                errs,
                vec![format!(
                    "upstreams.api.tls.ca_file: no PEM certificate in {:?}",
                    ca.path
                )]
            );
        }
    }

    #[test]
    fn a_pem_block_that_is_not_x509_is_refused_before_pingora_parses_it() {
        // Valid PEM and base64, but the DER inside is junk: pingora's parser would panic.
        let ca =
            ca_file(b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
        let (_, errs) = api(&format!(
            "api: {{ {DNS}, tls: {{ ca_file: {:?} }} }}",
            ca.path
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(&format!(
                "upstreams.api.tls.ca_file: {:?}: certificate 1 is not an X.509 certificate",
                ca.path
            )),
            "{errs:?}"
        );
    }

    #[test]
    fn every_tls_error_is_reported_at_once() {
        let (_, errs) = api(&format!(
            "api: {{ {STATIC}, tls: {{ ca_file: /nonexistent/ca.pem }} }}"
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("upstreams.api.tls.sni: "));
        assert!(errs[1].starts_with("upstreams.api.tls.ca_file: "));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<crate::config::raw::RawUpstreamTls, _> =
            serde_yaml::from_str("{ sni: a, insecure: true }");
        assert!(r.is_err());
    }
}
