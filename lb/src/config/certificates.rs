//! The certificate and key files of the TLS listeners, read and checked: each certificate
//! chain loads, and its key loads and matches it. `lb -t`, startup and every reload go
//! through [`load`] (from `config::check`), so a bad file rejects a reload exactly like a
//! bad config, and pingora's `TlsSettings`, which panics on an unreadable file, never reads
//! one: the lb hands it a resolver holding the keys loaded here (`crate::tls`).
//!
//! A certificate that is expired or not yet valid is served all the same (as nginx does),
//! with a warning: one stale certificate must not take every site of the process down, nor
//! block a reload that changes something else. `lb_tls_certificate_expiry_timestamp_seconds`
//! shows its date. Only an ACME certificate read back from storage must be valid now
//! ([`issued_acme`]): the lb orders a new one instead.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::{local_ca, CertificateSource, CertificateSpec, ConfigError, TlsListener};

/// One loaded certificate: the key rustls signs handshakes with, and what `/status` and
/// the metrics show about it.
#[derive(Clone)]
pub(crate) struct Certificate {
    pub(crate) key: Arc<CertifiedKey>,
    /// The SNI names it is chosen for (configured, or the certificate's own DNS names).
    pub(crate) names: Vec<String>,
    pub(crate) default: bool,
    /// The cert file it came from.
    pub(crate) file: String,
    /// Hex, lowercase, as `openssl x509 -serial` prints it.
    pub(crate) serial: String,
    /// Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// The certificates of one `server.tls_listen` entry, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListenerCertificates(pub(crate) Vec<Certificate>);

impl PartialEq for Certificate {
    /// The same chain, names and role (keys are not comparable; the chain identifies them).
    fn eq(&self, other: &Self) -> bool {
        self.key.cert == other.key.cert
            && self.names == other.names
            && self.default == other.default
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("file", &self.file)
            .field("names", &self.names)
            .field("default", &self.default)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Every listener's certificates, at the time `now`; every problem is reported, each
/// naming its field (`server.tls_listen[0].certificates[1].key`). A certificate outside its
/// dates is loaded, and warned about ([`warn`]).
pub(crate) fn load(
    listeners: &[TlsListener],
    now: SystemTime,
) -> Result<Vec<ListenerCertificates>, Vec<ConfigError>> {
    let (loaded, warnings) = load_with_warnings(listeners, now);
    warn(&warnings);
    loaded
}

/// [`load`], with its warnings returned instead of written.
fn load_with_warnings(
    listeners: &[TlsListener],
    now: SystemTime,
) -> (
    Result<Vec<ListenerCertificates>, Vec<ConfigError>>,
    Vec<ConfigError>,
) {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut loaded = Vec::new();
    for (i, listener) in listeners.iter().enumerate() {
        let mut certs = Vec::new();
        for (j, spec) in listener.certificates.iter().enumerate() {
            let path = format!("server.tls_listen[{i}].certificates[{j}]");
            match certificate(spec, now) {
                Ok(c) => {
                    if let Some(why) = out_of_dates(&c, now) {
                        let field = match spec.source {
                            CertificateSource::Files { .. } => "cert",
                            CertificateSource::LocalCa { .. } => "local_ca",
                            CertificateSource::Acme(_) => "acme",
                        };
                        let message = format!(
                            "{why}: served anyway, but clients that check dates refuse it; replace it and reload"
                        );
                        warnings.push(ConfigError::new(format!("{path}.{field}"), message));
                    }
                    certs.push(c);
                }
                Err((field, message)) => {
                    errors.push(ConfigError::new(format!("{path}.{field}"), message));
                }
            }
        }
        loaded.push(ListenerCertificates(certs));
    }
    let loaded = if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    };
    (loaded, warnings)
}

/// A WARN line each, once logging is up (a reload); before that (`lb -t`, the check before
/// startup) a `lb: warning:` line on stderr, where `lb -t` prints its errors.
fn warn(warnings: &[ConfigError]) {
    let logging = tracing::dispatcher::has_been_set();
    for w in warnings {
        if logging {
            tracing::warn!("certificate outside its validity dates: {w}");
        } else {
            eprintln!("lb: warning: {w}");
        }
    }
}

/// Why `cert` is not valid at `now` (Unix seconds): expired, or not yet valid.
fn out_of_dates(cert: &Certificate, now: i64) -> Option<String> {
    let date = |t: i64| {
        x509_parser::time::ASN1Time::from_timestamp(t)
            .map_or_else(|_| t.to_string(), |d| d.to_string())
    };
    if now < cert.not_before {
        Some(format!(
            "{:?} is not valid before {}",
            cert.file,
            date(cert.not_before)
        ))
    } else if now > cert.not_after {
        Some(format!(
            "{:?} expired on {}",
            cert.file,
            date(cert.not_after)
        ))
    } else {
        None
    }
}

/// The field at fault (`cert`, `key` or `names`) and what is wrong.
pub(crate) type Fault = (&'static str, String);

/// One certificate entry, loaded (also how `crate::acme` reads back what it stored).
pub(crate) fn certificate(spec: &CertificateSpec, now: i64) -> Result<Certificate, Fault> {
    match &spec.source {
        CertificateSource::Acme(acme) => {
            let names = spec.names.as_deref().unwrap_or_default();
            let paths = crate::acme::storage::Paths::new(acme, names);
            if let Some(stored) = stored_acme(spec, &paths, now)? {
                return Ok(stored);
            }
            let (chain, key) =
                crate::acme::storage::placeholder(acme, names, now).map_err(|e| ("acme", e))?;
            let labels = Labels {
                cert_field: "acme",
                key_field: "acme",
                cert: "the ACME placeholder".into(),
                key: "the ACME placeholder's key".into(),
                file: format!(
                    "{} {}",
                    paths.cert.display(),
                    crate::acme::storage::PLACEHOLDER_LABEL
                ),
            };
            checked(spec, chain, key, &labels)
        }
        CertificateSource::Files { cert, key } => {
            let (chain, key_der) = read_files(cert, key)?;
            let labels = Labels {
                cert_field: "cert",
                key_field: "key",
                cert: format!("{cert:?}"),
                key: format!("{key:?}"),
                file: cert.clone(),
            };
            checked(spec, chain, key_der, &labels)
        }
        CertificateSource::LocalCa { dir } => {
            let names = spec.names.as_deref().unwrap_or_default();
            let issued = local_ca::issue(std::path::Path::new(dir), names, now)
                .map_err(|e| ("local_ca", e))?;
            let labels = Labels {
                cert_field: "local_ca",
                key_field: "local_ca",
                cert: "the local CA's certificate".into(),
                key: "the local CA's key".into(),
                file: format!("{dir}/{} (local CA)", local_ca::CA_CERT),
            };
            checked(spec, issued.chain, issued.key, &labels)
        }
    }
}

/// The certificate `crate::acme` stored for `spec`, if there is one that loads, is valid
/// now and covers every configured name; `Ok(None)` otherwise (the placeholder is served
/// and a new one ordered). Only an unreadable file is an error.
fn stored_acme(
    spec: &CertificateSpec,
    paths: &crate::acme::storage::Paths,
    now: i64,
) -> Result<Option<Certificate>, Fault> {
    let Some((cert_pem, key_pem)) = crate::acme::storage::read(paths).map_err(|e| ("acme", e))?
    else {
        return Ok(None);
    };
    match issued_acme(spec, paths, &cert_pem, &key_pem, now) {
        Ok(cert) => Ok(Some(cert)),
        Err((_, why)) => {
            tracing::warn!(file = %paths.cert.display(), error = %why, "stored ACME certificate not usable: serving the placeholder until a new one is issued");
            Ok(None)
        }
    }
}

/// An ACME certificate and key (PEM), as stored or to be stored at `paths`: loaded and
/// checked (dates, key match, every configured name covered) without touching the disk,
/// so an issued pair is checked before it replaces the stored one.
pub(crate) fn issued_acme(
    spec: &CertificateSpec,
    paths: &crate::acme::storage::Paths,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: i64,
) -> Result<Certificate, Fault> {
    let (c, k) = (
        paths.cert.display().to_string(),
        paths.key.display().to_string(),
    );
    let (chain, key) = parse_pem(&c, cert_pem, &k, key_pem)?;
    let labels = Labels {
        cert_field: "acme",
        key_field: "acme",
        cert: format!("{c:?}"),
        key: format!("{k:?}"),
        file: c.clone(),
    };
    let cert = checked(spec, chain, key, &labels)?;
    // Never served out of its dates: an ACME certificate can be ordered again instead.
    if let Some(why) = out_of_dates(&cert, now) {
        return Err(("acme", why));
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&cert.key.cert[0])
        .map_err(|e| ("acme", e.to_string()))?;
    let has = dns_names(&leaf);
    match cert.names.iter().find(|n| !has.contains(n)) {
        Some(missing) => Err(("acme", format!("{c:?} does not cover {missing:?}"))),
        None => Ok(cert),
    }
}

/// How errors and `/status` name a certificate's parts.
struct Labels {
    cert_field: &'static str,
    key_field: &'static str,
    cert: String,
    key: String,
    file: String,
}

fn read_files(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Fault> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| ("cert", format!("cannot read {cert:?}: {e}")))?;
    let key_pem = std::fs::read(key).map_err(|e| ("key", format!("cannot read {key:?}: {e}")))?;
    parse_pem(cert, &cert_pem, key, &key_pem)
}

/// The certificate chain (never empty) and the private key in two files' PEM text.
pub(crate) fn parse_pem(
    cert: &str,
    cert_pem: &[u8],
    key: &str,
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Fault> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ("cert", format!("{cert:?} is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(("cert", format!("no PEM certificate in {cert:?}")));
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| ("key", format!("no PEM private key in {key:?}: {e}")))?;
    Ok((chain, key_der))
}

/// A certificate read from `pem` as both its cert and its key file (a combined PEM file),
/// checked as [`load`] checks one at the time `now` (Unix seconds), and refused outside its
/// dates as an ACME certificate is.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn from_combined_pem(
    spec: &CertificateSpec,
    pem: &[u8],
    now: i64,
) -> Result<Certificate, Fault> {
    let (chain, key) = parse_pem("cert", pem, "key", pem)?;
    let labels = Labels {
        cert_field: "cert",
        key_field: "key",
        cert: "\"cert\"".into(),
        key: "\"key\"".into(),
        file: "cert".into(),
    };
    let cert = checked(spec, chain, key, &labels)?;
    match out_of_dates(&cert, now) {
        Some(why) => Err(("cert", why)),
        None => Ok(cert),
    }
}

/// Names and key match of a loaded chain and key (the dates are the caller's to judge).
fn checked(
    spec: &CertificateSpec,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    labels: &Labels,
) -> Result<Certificate, Fault> {
    let cert_field = labels.cert_field;
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| {
        (
            cert_field,
            format!("{}: not an X.509 certificate: {e}", labels.cert),
        )
    })?;
    let validity = leaf.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let names = match &spec.names {
        Some(names) => names.clone(),
        None => dns_names(&leaf),
    };
    if names.is_empty() {
        return Err((
            "names",
            format!(
                "{} has no DNS names; list the SNI names it serves under `names`",
                labels.cert
            ),
        ));
    }
    let serial = leaf
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => (
            labels.key_field,
            format!(
                "{} is not the key of the certificate {}",
                labels.key, labels.cert
            ),
        ),
        e => (labels.key_field, format!("{}: {e}", labels.key)),
    })?;
    Ok(Certificate {
        key: Arc::new(key),
        names,
        default: spec.default,
        file: labels.file.clone(),
        serial,
        not_before,
        not_after,
    })
}

/// The certificate's DNS subject alternative names, lowercased.
fn dns_names(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A self-signed certificate for `names`, valid from `from` to `to` (Unix seconds),
    /// written as `stem.pem` and `stem.key` under `dir`.
    fn write_cert(dir: &Path, stem: &str, names: &[&str], from: i64, to: i64) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).expect("time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(to).expect("time");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c.display().to_string(), k.display().to_string())
    }

    fn listener(certs: &[(&str, &str)]) -> Vec<TlsListener> {
        vec![TlsListener {
            address: "127.0.0.1:0".parse().expect("addr"),
            protocols: crate::config::Protocols::H2AndHttp1,
            certificates: certs
                .iter()
                .map(|(c, k)| CertificateSpec {
                    source: CertificateSource::Files {
                        cert: c.to_string(),
                        key: k.to_string(),
                    },
                    names: None,
                    default: false,
                })
                .collect(),
        }]
    }

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    }

    fn messages(r: Result<Vec<ListenerCertificates>, Vec<ConfigError>>) -> Vec<String> {
        r.expect_err("rejected")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_valid_certificate_loads_with_its_own_names() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, k) = write_cert(
            dir.path(),
            "a",
            &["A.test", "*.a.test"],
            NOW - DAY,
            NOW + DAY,
        );
        let loaded = load(&listener(&[(c.as_str(), k.as_str())]), at(NOW)).expect("valid");
        let cert = &loaded[0].0[0];
        assert_eq!(cert.names, vec!["a.test", "*.a.test"]);
        assert_eq!(cert.not_after, NOW + DAY);
        assert!(!cert.serial.is_empty());
    }

    #[test]
    fn mismatched_missing_and_unparsable_files_name_their_field() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, k1) = write_cert(dir.path(), "old", &["a.test"], NOW - 2 * DAY, NOW - DAY);
        let (c3, _) = write_cert(dir.path(), "ok", &["a.test"], NOW - DAY, NOW + DAY);
        let errs = messages(load(
            &listener(&[
                (c3.as_str(), k1.as_str()),
                ("/nonexistent.pem", k1.as_str()),
                (c3.as_str(), c3.as_str()),
            ]),
            at(NOW),
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        let p = "server.tls_listen[0].certificates";
        assert!(
            errs[0].starts_with(&format!("{p}[0].key: ")) && errs[0].contains("is not the key of")
        );
        assert!(errs[1].starts_with(&format!("{p}[1].cert: cannot read \"/nonexistent.pem\"")));
        assert!(errs[2].starts_with(&format!("{p}[2].key: no PEM private key")));
    }

    /// An expired or not yet valid certificate loads (it is served, as nginx does): its
    /// dates are warnings, never a reason to refuse the whole config.
    #[test]
    fn expired_and_not_yet_valid_certificates_load() {
        let dir = tempfile::tempdir().expect("dir");
        let (c1, k1) = write_cert(dir.path(), "old", &["a.test"], NOW - 2 * DAY, NOW - DAY);
        let (c2, k2) = write_cert(dir.path(), "new", &["b.test"], NOW + DAY, NOW + 2 * DAY);
        let (c3, k3) = write_cert(dir.path(), "ok", &["c.test"], NOW - DAY, NOW + DAY);
        let (loaded, warnings) = load_with_warnings(
            &listener(&[
                (c1.as_str(), k1.as_str()),
                (c2.as_str(), k2.as_str()),
                (c3.as_str(), k3.as_str()),
            ]),
            at(NOW),
        );
        let loaded = loaded.expect("dates are not errors");
        assert_eq!(loaded[0].0.len(), 3);
        assert_eq!(loaded[0].0[0].not_after, NOW - DAY);
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let p = "server.tls_listen[0].certificates";
        assert!(
            warnings[0].starts_with(&format!("{p}[0].cert: {c1:?} expired on ")),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with(&format!("{p}[1].cert: {c2:?} is not valid before ")),
            "{warnings:?}"
        );
    }

    /// Checked as a stored ACME certificate is: unlike a file, it must be valid now.
    #[test]
    fn a_combined_pem_certificate_outside_its_dates_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, k) = write_cert(dir.path(), "old", &["a.test"], NOW - 2 * DAY, NOW - DAY);
        let pem = [
            std::fs::read(&c).expect("cert"),
            std::fs::read(&k).expect("key"),
        ]
        .concat();
        let spec = &listener(&[(c.as_str(), k.as_str())])[0].certificates[0];
        let (field, why) = from_combined_pem(spec, &pem, NOW).expect_err("expired");
        assert_eq!(field, "cert");
        assert!(why.contains("expired on"), "{why}");
        assert!(from_combined_pem(spec, &pem, NOW - DAY - 10).is_ok());
    }
}
