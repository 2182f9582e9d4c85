//! http-01 challenges (RFC 8555 §8.3), answered by the lb itself on its plaintext
//! listeners before routing and before the HTTPS redirect: `GET
//! /.well-known/acme-challenge/<token>` gets the key authorization as `text/plain`.
//!
//! A token is kept in memory by the process that ordered, and written under the storage
//! directory too (`http-01/<token>`), so that when several replicas share the storage
//! and one address, whichever replica the CA reaches can answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::storage;
use crate::config::{CertificateSource, Config};

static TOKENS: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

/// RFC 8555 §8.3: a token is base64url, at least 128 bits of entropy.
fn valid_token(token: &str) -> bool {
    (16..=256).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The challenges of one order, answered until dropped.
pub(crate) struct Published {
    dir: PathBuf,
    tokens: Vec<String>,
}

impl Published {
    pub(crate) fn new(storage_dir: &Path) -> Self {
        Self {
            dir: storage::Paths::challenges(storage_dir),
            tokens: Vec::new(),
        }
    }

    /// Answer `token` with `key_authorization` from now on.
    pub(crate) fn add(&mut self, token: &str, key_authorization: &str) -> Result<(), String> {
        if !valid_token(token) {
            return Err(format!("the CA sent an unusable challenge token {token:?}"));
        }
        storage::create_dir(&self.dir)?;
        storage::write_atomic(&self.dir.join(token), key_authorization.as_bytes(), 0o644)?;
        TOKENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
        self.tokens.push(token.to_string());
        Ok(())
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let mut tokens = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
        for t in &self.tokens {
            tokens.remove(t);
            let _ = std::fs::remove_file(self.dir.join(t));
        }
    }
}

/// The storage directories of the config's ACME certificates (none: the lb leaves the
/// challenge path to the routes, e.g. a backend that runs its own ACME client).
pub(crate) fn storages(config: &Config) -> Vec<&str> {
    let mut dirs: Vec<&str> = config
        .server
        .tls_listen
        .iter()
        .flat_map(|l| &l.certificates)
        .filter_map(|c| match &c.source {
            CertificateSource::Acme(a) => Some(a.storage.as_str()),
            _ => None,
        })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs
}

/// The key authorization for `token`: this process's, else one a replica stored. The file
/// is read off the request threads (`tokio::fs`): anyone can ask for a well-formed token,
/// and the storage shared between replicas is often a network volume.
async fn lookup(token: &str, storages: &[&str]) -> Option<String> {
    if !valid_token(token) {
        return None;
    }
    let known = TOKENS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(token)
        .cloned();
    if known.is_some() {
        return known;
    }
    for s in storages {
        let file = storage::Paths::challenges(Path::new(s)).join(token);
        if let Ok(k) = tokio::fs::read_to_string(file).await {
            return Some(k);
        }
    }
    None
}

/// Answer a plaintext request for `/.well-known/acme-challenge/<token>` when the config
/// has ACME certificates: `Ok(true)` once answered (200 with the key authorization, or
/// 404), `Ok(false)` when the request is not the lb's to answer.
pub(crate) async fn answer(session: &mut Session, config: &Config) -> pingora::Result<bool> {
    let path = session.req_header().uri.path();
    let Some(token) = path.strip_prefix(crate::config::defaults::ACME_CHALLENGE_PREFIX) else {
        return Ok(false);
    };
    let storages = storages(config);
    if storages.is_empty() {
        return Ok(false);
    }
    let found = lookup(token, &storages).await;
    tracing::debug!(
        token,
        found = found.is_some(),
        "ACME http-01 challenge request"
    );
    let (status, body) = match found {
        Some(k) => (http::StatusCode::OK, Bytes::from(k)),
        None => (
            http::StatusCode::NOT_FOUND,
            Bytes::from_static(b"no such challenge\n"),
        ),
    };
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    // A client that fails to take the answer is the client's (`crate::client_errors`).
    session
        .write_response_header(Box::new(resp), false)
        .await
        .map_err(|e| e.into_down())?;
    session
        .write_response_body(Some(body), true)
        .await
        .map_err(|e| e.into_down())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_answered_from_memory_or_a_replicas_file_until_withdrawn() {
        let dir = tempfile::tempdir().expect("dir");
        let storage = dir.path().display().to_string();
        let token = "abcdefghijklmnopqrstuvwxyz_-0123";
        assert_eq!(lookup(token, &[&storage]).await, None);
        let mut published = Published::new(dir.path());
        published.add(token, "key.auth").expect("published");
        assert_eq!(lookup(token, &[]).await.as_deref(), Some("key.auth"));
        // Another replica sees the file only.
        TOKENS.lock().expect("lock").remove(token);
        assert_eq!(
            lookup(token, &[&storage]).await.as_deref(),
            Some("key.auth")
        );
        drop(published);
        assert_eq!(lookup(token, &[&storage]).await, None);
        assert!(published_rejects("../../etc/passwd"));
        assert_eq!(lookup("../../../etc/passwd", &[&storage]).await, None);
    }

    fn published_rejects(token: &str) -> bool {
        let dir = tempfile::tempdir().expect("dir");
        Published::new(dir.path()).add(token, "x").is_err()
    }
}
