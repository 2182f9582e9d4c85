//! The lb's own certificate authority, for `local_ca` certificates: HTTPS that works with no
//! files to make and no network, as Caddy's `tls internal` does. Meant for development
//! machines and private networks, where no public CA can issue a certificate for the name.
//!
//! The CA (`ca.pem`, and `ca.key` with mode 0600) lives in the configured directory and is
//! made there the first time it is missing; users trust `ca.pem` once. A fresh leaf
//! certificate, with a fresh key, is issued from it at every load (start, reload, `lb -t`),
//! so nothing but the CA is ever stored.
//!
//! Several processes may share the directory (replicas on one volume, `lb -t` beside a
//! running lb): the key file is published with a hard link, which fails if another process
//! got there first, so one CA wins and everyone else reads it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca.key";
const CA_NAME: &str = "Softy Pinko lb local CA";
/// Ten years: the CA is what users trust once; renewing it means trusting it again.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// One year, within what browsers accept from a locally trusted CA. The leaf is re-issued
/// at every load, so a restart or a reload renews it; `/status` and
/// `lb_tls_certificate_expiry_timestamp_seconds` show when it ends.
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Clock skew between the lb and its clients.
const BACKDATE: Duration = Duration::from_secs(3600);
/// How long to wait for another process that is writing the CA right now.
const PEER_WRITE_WAIT: Duration = Duration::from_secs(2);

/// A leaf certificate for the configured names, and its key.
pub(crate) struct Issued {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// Issue a leaf for `names` (DNS names; IP literals become IP address SANs) from the CA in
/// `dir`, creating the CA first if the directory has none. `now` is Unix seconds.
pub(crate) fn issue(dir: &Path, names: &[String], now: i64) -> Result<Issued, String> {
    let (ca_pem, ca_key_pem) = ca(dir, now)?;
    issue_from(dir, &ca_pem, &ca_key_pem, names, now)
}

/// [`issue`] from the text of the CA's two files in `dir` (named in the errors).
pub(crate) fn issue_from(
    dir: &Path,
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    now: i64,
) -> Result<Issued, String> {
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| format!("{}: not a private key: {e}", path(dir, CA_KEY)))?;
    check_pair(ca_pem, &ca_key, &dir.join(CA_CERT), now)?;
    let ca_params = CertificateParams::from_ca_cert_pem(ca_pem)
        .map_err(|e| format!("{}: not a CA certificate: {e}", path(dir, CA_CERT)))?;
    let ca_not_after = ca_params.not_after;
    // Re-signed in memory only, to get rcgen's issuer object: same name, key and identifiers
    // as the stored ca.pem, which is what clients check the leaf against.
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| format!("{}: cannot sign with it: {e}", path(dir, CA_KEY)))?;

    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| format!("cannot issue a certificate for {names:?}: {e}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = at(now) - BACKDATE;
    params.not_after = (at(now) + LEAF_LIFETIME).min(ca_not_after);
    let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let leaf = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(|e| format!("cannot issue a certificate for {names:?}: {e}"))?;
    Ok(Issued {
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The CA's certificate and key (PEM), made first if `dir` has none; [`issue`] checks
/// that they belong together.
fn ca(dir: &Path, now: i64) -> Result<(String, String), String> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {}
        (false, false) => create(dir, now)?,
        (false, true) => wait_for_peer(&cert_path)?,
        (true, false) => {
            return Err(format!(
                "{} exists without {CA_KEY}: restore the key, or remove {CA_CERT} to make a new CA (which clients must trust again)",
                cert_path.display()
            ))
        }
    }
    let read = |p: &PathBuf| {
        fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    Ok((read(&cert_path)?, read(&key_path)?))
}

/// Another process published the key and is about to publish the certificate.
fn wait_for_peer(cert_path: &Path) -> Result<(), String> {
    let deadline = std::time::Instant::now() + PEER_WRITE_WAIT;
    while std::time::Instant::now() < deadline {
        if cert_path.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{CA_KEY} exists without {}: restore the certificate, or remove {CA_KEY} to make a new CA",
        cert_path.display()
    ))
}

/// The stored pair belongs together and the CA is valid now.
fn check_pair(cert_pem: &str, key: &KeyPair, cert_path: &Path, now: i64) -> Result<(), String> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| format!("{}: not a PEM certificate: {e}", cert_path.display()))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("{}: not an X.509 certificate: {e}", cert_path.display()))?;
    if x509.public_key().raw != key.public_key_der().as_slice() {
        return Err(format!(
            "{} is not the certificate of {CA_KEY} beside it",
            cert_path.display()
        ));
    }
    let not_after = x509.validity().not_after;
    if now > not_after.timestamp() {
        return Err(format!(
            "the local CA {} expired on {not_after}: remove {CA_CERT} and {CA_KEY} to make a new one (which clients must trust again)",
            cert_path.display()
        ));
    }
    Ok(())
}

/// Make a CA and publish it: the key by hard link (exclusive: a second process loses and
/// reads the winner's), then the certificate by rename.
fn create(dir: &Path, now: i64) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Softy Pinko");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(now) - BACKDATE;
    params.not_after = at(now) + CA_LIFETIME;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot make the local CA: {e}"))?;

    let pid = std::process::id();
    let key_tmp = dir.join(format!(".{CA_KEY}.{pid}.tmp"));
    let cert_tmp = dir.join(format!(".{CA_CERT}.{pid}.tmp"));
    let result = (|| {
        write_new(&key_tmp, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_tmp, cert.pem().as_bytes(), 0o644)?;
        match fs::hard_link(&key_tmp, dir.join(CA_KEY)) {
            Ok(()) => fs::rename(&cert_tmp, dir.join(CA_CERT))
                .map_err(|e| format!("cannot write {}: {e}", path(dir, CA_CERT))),
            // Another process made one first: use it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                wait_for_peer(&dir.join(CA_CERT))
            }
            Err(e) => Err(format!("cannot write {}: {e}", path(dir, CA_KEY))),
        }
    })();
    let _ = fs::remove_file(&key_tmp);
    let _ = fs::remove_file(&cert_tmp);
    if result.is_ok() {
        tracing::info!(dir = %dir.display(), "made a local CA: trust its ca.pem to trust the lb's local_ca certificates");
    }
    result
}

/// Write a file that must not exist yet, with `mode`, and sync it (also used for the admin
/// token, `super::admin_token`).
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOW: i64 = 1_800_000_000;

    fn leaf(issued: &Issued) -> x509_parser::certificate::X509Certificate<'_> {
        x509_parser::parse_x509_certificate(&issued.chain[0])
            .expect("x509")
            .1
    }

    #[test]
    fn makes_a_ca_once_and_issues_leaves_it_signed() {
        let dir = tempfile::tempdir().expect("dir");
        let ca_dir = dir.path().join("ca");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = issue(&ca_dir, &names, NOW).expect("issued");
        let ca_pem = fs::read(ca_dir.join(CA_CERT)).expect("ca.pem");
        let mode = |f: &str| {
            fs::metadata(ca_dir.join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY), 0o600);
        assert_eq!(mode(""), 0o700);

        let second = issue(&ca_dir, &names, NOW).expect("issued again");
        assert_eq!(
            fs::read(ca_dir.join(CA_CERT)).expect("ca.pem"),
            ca_pem,
            "the CA is kept"
        );
        assert_ne!(first.chain[0], second.chain[0], "a fresh leaf each time");
        // Only the CA is stored.
        let mut files: Vec<_> = fs::read_dir(&ca_dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        files.sort();
        assert_eq!(files, vec![CA_KEY, CA_CERT]);

        // The leaf verifies against the stored CA, for both names.
        let ca_der = CertificateDer::from_pem_slice(&ca_pem).expect("pem");
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        let l = leaf(&first);
        l.verify_signature(Some(ca.public_key()))
            .expect("signed by the CA");
        assert_eq!(l.issuer(), ca.subject());
        assert_eq!(
            l.validity().not_after.timestamp(),
            NOW + LEAF_LIFETIME.as_secs() as i64
        );
        let san = l.subject_alternative_name().expect("san").expect("present");
        assert_eq!(
            san.value.general_names.len(),
            2,
            "{:?}",
            san.value.general_names
        );
    }

    #[test]
    fn a_half_written_or_mismatched_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["localhost".to_string()];
        issue(dir.path(), &names, NOW).expect("issued");
        let other = tempfile::tempdir().expect("dir");
        issue(other.path(), &names, NOW).expect("issued");

        // Another CA's key beside this certificate.
        fs::copy(other.path().join(CA_KEY), dir.path().join(CA_KEY)).expect("copy");
        let err = issue(dir.path(), &names, NOW).err().expect("mismatch");
        assert!(err.contains("is not the certificate of ca.key"), "{err}");

        fs::remove_file(dir.path().join(CA_KEY)).expect("rm");
        let err = issue(dir.path(), &names, NOW).err().expect("no key");
        assert!(err.contains("exists without ca.key"), "{err}");
        assert!(
            dir.path().join(CA_CERT).exists(),
            "the old CA is not replaced"
        );
    }

    #[test]
    fn an_expired_ca_is_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["localhost".to_string()];
        issue(dir.path(), &names, NOW).expect("issued");
        let later = NOW + CA_LIFETIME.as_secs() as i64 + 1;
        let err = issue(dir.path(), &names, later).err().expect("expired");
        assert!(err.contains("expired on"), "{err}");
    }
}
