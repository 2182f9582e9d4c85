//! Where an ACME certificate lives on disk, and the self-signed placeholder served until the
//! first one exists.
//!
//! Layout under `storage` (shareable by several replicas on one volume):
//! - `<first name>/cert.pem`, `<first name>/key.pem` (mode 0600): the certificate chain
//!   and its key, each written to a temporary file, synced and renamed into place, key
//!   first, so a reader sees either the old pair or the new one (a reader that catches the
//!   new key beside the old certificate fails the key match and tries again later);
//! - `<first name>/lock`: held by the process ordering (see [`Lock`]);
//! - `account-<hash of the directory URL>.json` (0600): the ACME account's key;
//! - `http-01/<token>`: the key authorizations of challenges in flight, so that any
//!   replica behind the same address can answer the CA.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::AcmeSpec;

/// How long the placeholder is valid: long enough to cover days of a CA being unreachable,
/// short enough that a client that pinned it by mistake notices.
const PLACEHOLDER_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// A lock older than this is taken to be left by a process that died mid-order (an order
/// takes seconds; the CA's own timeouts are well under this).
pub(crate) const STALE_LOCK: Duration = Duration::from_secs(10 * 60);

/// The files of one ACME certificate.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) storage: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) lock: PathBuf,
}

impl Paths {
    pub(crate) fn new(spec: &AcmeSpec, names: &[String]) -> Self {
        let storage = PathBuf::from(&spec.storage);
        let dir = storage.join(names.first().map_or("certificate", String::as_str));
        Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            lock: dir.join("lock"),
            dir,
            storage,
        }
    }

    /// The account's credentials, one per CA (directory URL).
    pub(crate) fn account(&self, directory: &str) -> PathBuf {
        let hash = crate::config::sha256_hex(directory.as_bytes());
        self.storage.join(format!("account-{}.json", &hash[..16]))
    }

    pub(crate) fn challenges(storage: &Path) -> PathBuf {
        storage.join("http-01")
    }
}

/// The PEM text of a certificate chain and of its key.
pub(crate) type PemPair = (Vec<u8>, Vec<u8>);

/// The stored chain and key of this certificate, when both files exist (`Ok(None)` when
/// neither has been written yet).
pub(crate) fn read(paths: &Paths) -> Result<Option<PemPair>, String> {
    let read = |p: &Path| match fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    };
    match (read(&paths.cert)?, read(&paths.key)?) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        _ => Ok(None),
    }
}

/// Store a new chain and key (key first; see the module comment).
pub(crate) fn write(paths: &Paths, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    create_dir(&paths.dir)?;
    write_atomic(&paths.key, key_pem, 0o600)?;
    write_atomic(&paths.cert, cert_pem, 0o644)
}

/// Create `dir` (and its parents) with mode 0700 if missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Write `bytes` to `path` through a synced temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the directory is synced.
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok::<(), std::io::Error>(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The lock file of one certificate's directory: held while ordering, so replicas sharing
/// the storage never order the same certificate at once (the others pick the winner's
/// certificate up from disk). Taken by exclusive creation; removed when dropped.
pub(crate) struct Lock {
    path: PathBuf,
}

impl Lock {
    /// `Ok(None)`: another process holds it (and it is not stale).
    pub(crate) fn try_take(paths: &Paths) -> Result<Option<Lock>, String> {
        create_dir(&paths.dir)?;
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&paths.lock)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "pid {}", std::process::id());
                    return Ok(Some(Lock {
                        path: paths.lock.clone(),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&paths.lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        tracing::warn!(lock = %paths.lock.display(), "removing a stale ACME lock file (its process died mid-order?)");
                        let _ = fs::remove_file(&paths.lock);
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(format!("cannot create {}: {e}", paths.lock.display())),
            }
        }
        Ok(None)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// By storage directory and names.
type PlaceholderKey = (String, Vec<String>);
/// Its certificate and key (DER) and its end (Unix seconds).
type PlaceholderValue = (Vec<u8>, Vec<u8>, i64);
/// One placeholder per certificate for the life of the process, so a reload does not
/// swap in a new one (nor report the certificates as changed).
static PLACEHOLDERS: LazyLock<Mutex<HashMap<PlaceholderKey, PlaceholderValue>>> =
    LazyLock::new(Default::default);

/// A self-signed certificate for `names`, valid [`PLACEHOLDER_LIFETIME`] from its first
/// use by this process, served until the first issuance. No client trusts it: it only
/// lets the listener start, and other names on it keep working.
pub(crate) fn placeholder(
    spec: &AcmeSpec,
    names: &[String],
    now: i64,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let key = (spec.storage.clone(), names.to_vec());
    let mut cache = PLACEHOLDERS.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = cache
        .get(&key)
        .is_some_and(|(_, _, not_after)| *not_after > now + 3600);
    if !fresh {
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| format!("cannot make a placeholder for {names:?}: {e}"))?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            "Softy Pinko lb ACME placeholder (not yet issued)",
        );
        params.distinguished_name = dn;
        let at = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        };
        let not_after = now + PLACEHOLDER_LIFETIME.as_secs() as i64;
        params.not_before = at(now - 60);
        params.not_after = at(not_after);
        let k = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let cert = params
            .self_signed(&k)
            .map_err(|e| format!("cannot make a placeholder for {names:?}: {e}"))?;
        cache.insert(
            key.clone(),
            (cert.der().to_vec(), k.serialize_der(), not_after),
        );
    }
    let (cert, key, _) = &cache[&key];
    Ok((
        vec![CertificateDer::from(cert.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
    ))
}

/// The common name every placeholder carries (how `/status` and the manager tell it apart).
pub(crate) fn is_placeholder(file_label: &str) -> bool {
    file_label.ends_with(PLACEHOLDER_LABEL)
}

pub(crate) const PLACEHOLDER_LABEL: &str = "(ACME placeholder: not issued yet)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn spec(dir: &Path) -> AcmeSpec {
        AcmeSpec {
            directory: "https://ca.test/dir".into(),
            email: None,
            storage: dir.display().to_string(),
            renew_at: 2.0 / 3.0,
            ca_file: None,
        }
    }

    #[test]
    fn writes_are_atomic_with_a_private_key_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("dir");
        let paths = Paths::new(&spec(dir.path()), &["a.test".into()]);
        assert_eq!(read(&paths).expect("read"), None);
        write(&paths, b"CERT", b"KEY").expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&paths.dir), 0o700);
        assert_eq!(
            read(&paths).expect("read"),
            Some((b"CERT".to_vec(), b"KEY".to_vec()))
        );
        write(&paths, b"CERT2", b"KEY2").expect("rewrite");
        assert_eq!(mode(&paths.key), 0o600);
        let names: Vec<_> = fs::read_dir(&paths.dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");

        let lock = Lock::try_take(&paths).expect("lock").expect("free");
        assert!(Lock::try_take(&paths).expect("lock").is_none(), "held");
        drop(lock);
        assert!(Lock::try_take(&paths).expect("lock").is_some(), "released");
    }

    #[test]
    fn the_placeholder_is_kept_for_the_process() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["p.test".to_string()];
        let (a, _) = placeholder(&spec(dir.path()), &names, 1_800_000_000).expect("made");
        let (b, _) = placeholder(&spec(dir.path()), &names, 1_800_000_100).expect("kept");
        assert_eq!(a, b);
        let later = 1_800_000_000 + PLACEHOLDER_LIFETIME.as_secs() as i64;
        let (c, _) = placeholder(&spec(dir.path()), &names, later).expect("renewed");
        assert_ne!(a, c);
    }
}
