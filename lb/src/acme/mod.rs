//! Automatic HTTPS: certificates for `acme` entries of `server.tls_listen`, ordered from an
//! ACME CA (Let's Encrypt by default), stored, renewed and swapped into the listener's SNI
//! resolver with no restart.
//!
//! Crate: `instant-acme` (RFC 8555, async, maintained by a rustls maintainer) with its
//! `ring` feature only, over [`client`]: the lb's own rustls and tokio-rustls carry the
//! TLS, so the static binary gets no second TLS stack. `rustls-acme` was the other
//! candidate; it wants to own the rustls resolver, which here is the lb's `SniResolver`
//! shared with file and `local_ca` certificates.
//!
//! One background task ([`AcmeService`]) looks after every entry of the current config:
//! - at start the entry serves what `config::certificates` loaded: the stored certificate
//!   if it is valid and covers the names, else a self-signed placeholder ([`storage`]);
//! - a stored certificate is renewed once `renew_at` of its lifetime has passed, less a
//!   random jitter of up to 5 % of the lifetime (replicas and restarts spread out); a
//!   placeholder is replaced at once;
//! - an order runs under the entry's lock file: a replica that finds it held waits and
//!   picks the winner's certificate up from disk;
//! - a failed order is retried with exponential backoff (1 min doubling to 1 h); the old
//!   certificate keeps serving; the error is in `/status` (`acme`) and
//!   `lb_acme_orders_total{result="failure"}`, logged as WARN, or ERROR once the served
//!   certificate is in the last tenth of its life.
//!
//! New handshakes get a new certificate through `TlsListeners::replace`; established
//! connections keep theirs. A reload re-reads the storage, so it never goes back to an
//! older certificate.

mod challenge;
mod client;
mod order;
pub(crate) mod storage;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::{json, Value};

pub(crate) use challenge::answer;

use crate::config::certificates::{self, Certificate};
use crate::config::{AcmeSpec, CertificateSource, CertificateSpec, Config};
use crate::state::LbState;

/// First retry after a failed order, doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_secs(60);
const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// How often a replica that found the lock held looks again (for the winner's
/// certificate, or a free lock).
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// The longest sleep between looks at the config (a reload may add or change entries).
const TICK: Duration = Duration::from_secs(5);
/// Renewal is moved earlier by up to this fraction of the lifetime.
const JITTER: f64 = 0.05;
/// How long to wait for the plaintext listeners before a first order (the CA validates
/// through them).
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Where one entry stands, for `/status`.
#[derive(Debug, Clone, Default)]
struct EntryStatus {
    names: Vec<String>,
    directory: String,
    storage: String,
    /// `placeholder`, `valid`, `ordering`, `backoff` or `waiting_for_lock`.
    state: &'static str,
    serial: String,
    not_after: i64,
    renew_after: Option<i64>,
    next_attempt: Option<SystemTime>,
    consecutive_failures: u32,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    last_success_at: Option<SystemTime>,
}

static STATUS: LazyLock<Mutex<BTreeMap<String, EntryStatus>>> = LazyLock::new(Default::default);

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `acme` block of `/status`: one object per ACME certificate.
pub(crate) fn status() -> Value {
    let status = STATUS.lock().unwrap_or_else(|p| p.into_inner());
    status
        .values()
        .map(|e| {
            json!({
                "names": e.names,
                "directory": e.directory,
                "storage": e.storage,
                "state": e.state,
                "serial": e.serial,
                "not_after": (e.not_after > 0).then(|| rfc3339(unix_time(e.not_after))),
                "renew_after": e.renew_after.map(|t| rfc3339(unix_time(t))),
                "next_attempt": e.next_attempt.map(rfc3339),
                "consecutive_failures": e.consecutive_failures,
                "last_error": e.last_error,
                "last_error_at": e.last_error_at.map(rfc3339),
                "last_success_at": e.last_success_at.map(rfc3339),
            })
        })
        .collect()
}

/// One ACME entry of the config, where it sits, and its schedule.
struct Entry {
    /// Where it is served: (listener, certificate index). Several when the same names and
    /// storage appear on several listeners (one order serves them all).
    slots: Vec<(usize, usize)>,
    spec: CertificateSpec,
    acme: AcmeSpec,
    names: Vec<String>,
    next: Instant,
    backoff: Duration,
    /// In [0, 1): this process's draw for the renewal jitter.
    jitter: f64,
}

/// The ACME entries of `config` by a key naming the certificate (storage, CA, names).
fn entries(config: &Config) -> Vec<(String, usize, usize, &CertificateSpec, &AcmeSpec)> {
    let mut out = Vec::new();
    for (i, l) in config.server.tls_listen.iter().enumerate() {
        for (j, c) in l.certificates.iter().enumerate() {
            if let CertificateSource::Acme(a) = &c.source {
                let names = c.names.clone().unwrap_or_default();
                let key = format!("{} {} {}", a.storage, a.directory, names.join(","));
                out.push((key, i, j, c, a));
            }
        }
    }
    out
}

fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Unix time at which `cert` is due for renewal.
fn renew_after(cert: &Certificate, renew_at: f64, jitter: f64) -> i64 {
    let lifetime = (cert.not_after - cert.not_before).max(0) as f64;
    let early = (jitter * JITTER * lifetime).min(lifetime * renew_at / 2.0);
    cert.not_before + (lifetime * renew_at - early) as i64
}

/// The background task that orders and renews every ACME certificate.
pub(crate) struct AcmeService {
    state: Arc<LbState>,
}

impl AcmeService {
    pub(crate) fn new(state: Arc<LbState>) -> Self {
        Self { state }
    }

    fn served(&self, e: &Entry) -> Option<Certificate> {
        self.state
            .tls
            .current()
            .get(e.slots.first()?.0)
            .and_then(|l| l.0.get(e.slots.first()?.1))
            .cloned()
    }

    /// Serve `cert` in the entry's slots, as computed with the TLS `generation`; `false`
    /// when a reload has installed certificates since: then nothing more is placed (the
    /// slots may now hold others), and the caller looks again at once, with the new layout
    /// (the certificate is in storage by then, and `tick` serves what storage holds).
    fn install(&self, e: &Entry, cert: Certificate, generation: u64) -> bool {
        for &(i, j) in &e.slots {
            match self.state.tls.replace(generation, i, j, cert.clone()) {
                Some(all) => self.state.metrics.tls_certificates(&all),
                None => return false,
            }
        }
        true
    }

    /// Bring one entry up to date; sets `e.next`. `generation`: the TLS generation its
    /// slots were computed with.
    async fn tick(&self, key: &str, e: &mut Entry, generation: u64) {
        let now = now_unix();
        // What the storage holds (a replica's order, or this process's before a restart)
        // when it is not what is served.
        let mut served = self.served(e);
        if let Ok(stored) = certificates::certificate(&e.spec, now) {
            let real = !storage::is_placeholder(&stored.file);
            if real && served.as_ref().map(|s| &s.serial) != Some(&stored.serial) {
                if !self.install(e, stored.clone(), generation) {
                    e.next = Instant::now();
                    return;
                }
                tracing::info!(names = ?e.names, serial = %stored.serial, "serving the stored ACME certificate");
                served = Some(stored);
            }
        }
        let real = served
            .as_ref()
            .filter(|c| !storage::is_placeholder(&c.file));
        let due = real.map(|c| renew_after(c, e.acme.renew_at, e.jitter));
        self.update(key, e, |s| {
            if let Some(c) = &served {
                s.serial = c.serial.clone();
                s.not_after = c.not_after;
            }
            s.renew_after = due;
        });
        if let Some(due) = due.filter(|d| *d > now) {
            e.next = Instant::now() + Duration::from_secs((due - now) as u64);
            e.backoff = Duration::ZERO;
            self.update(key, e, |s| {
                s.state = "valid";
                s.next_attempt = Some(unix_time(due));
            });
            return;
        }

        let paths = storage::Paths::new(&e.acme, &e.names);
        let lock = match storage::Lock::try_take(&paths) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!(names = ?e.names, lock = %paths.lock.display(), "another process is ordering this certificate: waiting for it");
                e.next = Instant::now() + LOCK_WAIT;
                self.update(key, e, |s| {
                    s.state = "waiting_for_lock";
                    s.next_attempt = Some(SystemTime::now() + LOCK_WAIT);
                });
                return;
            }
            Err(err) => return self.failed(key, e, served.as_ref(), err),
        };
        self.update(key, e, |s| s.state = "ordering");
        tracing::info!(names = ?e.names, directory = %e.acme.directory, renewal = real.is_some(), "ordering an ACME certificate");
        let result = async {
            let issued = order::order(&e.acme, &e.names, &paths).await?;
            // Checked in memory first (dates, names, key match), so a certificate that
            // does not load never replaces a stored one that does.
            let cert = certificates::issued_acme(
                &e.spec,
                &paths,
                issued.cert_pem.as_bytes(),
                issued.key_pem.as_bytes(),
                now_unix(),
            )
            .map_err(|(_, m)| format!("the certificate the CA issued does not load: {m}"))?;
            storage::write(
                &paths,
                issued.cert_pem.as_bytes(),
                issued.key_pem.as_bytes(),
            )?;
            Ok(cert)
        }
        .await;
        drop(lock);
        match result {
            Ok(cert) => {
                self.state.metrics.acme_order(true);
                tracing::info!(names = ?e.names, serial = %cert.serial, not_after = %rfc3339(unix_time(cert.not_after)), "ACME certificate issued, stored and served");
                e.jitter = random_fraction();
                e.backoff = Duration::ZERO;
                let due = renew_after(&cert, e.acme.renew_at, e.jitter);
                let wait = Duration::from_secs((due - now_unix()).max(1) as u64);
                e.next = Instant::now() + wait;
                self.update(key, e, |s| {
                    s.state = "valid";
                    s.serial = cert.serial.clone();
                    s.not_after = cert.not_after;
                    s.renew_after = Some(due);
                    s.next_attempt = Some(SystemTime::now() + wait);
                    s.consecutive_failures = 0;
                    s.last_success_at = Some(SystemTime::now());
                });
                if !self.install(e, cert, generation) {
                    // A reload came during the order: serve it from storage in its layout.
                    e.next = Instant::now();
                }
            }
            Err(err) => {
                self.state.metrics.acme_order(false);
                self.failed(key, e, served.as_ref(), err);
            }
        }
    }

    fn failed(&self, key: &str, e: &mut Entry, served: Option<&Certificate>, err: String) {
        e.backoff = if e.backoff.is_zero() {
            BACKOFF_START
        } else {
            (e.backoff * 2).min(BACKOFF_MAX)
        };
        e.next = Instant::now() + e.backoff;
        let near_expiry = served.is_none_or(|c| {
            let lifetime = c.not_after - c.not_before;
            c.not_after - now_unix() < lifetime / 10
        });
        let retry = humantime::format_duration(e.backoff).to_string();
        if near_expiry {
            tracing::error!(names = ?e.names, error = %err, retry_in = %retry, "ACME order failed and the served certificate expires soon");
        } else {
            tracing::warn!(names = ?e.names, error = %err, retry_in = %retry, "ACME order failed; the current certificate keeps serving");
        }
        let backoff = e.backoff;
        self.update(key, e, |s| {
            s.state = "backoff";
            s.next_attempt = Some(SystemTime::now() + backoff);
            s.consecutive_failures += 1;
            s.last_error = Some(err);
            s.last_error_at = Some(SystemTime::now());
        });
    }

    fn update(&self, key: &str, e: &Entry, f: impl FnOnce(&mut EntryStatus)) {
        let mut status = STATUS.lock().unwrap_or_else(|p| p.into_inner());
        let s = status
            .entry(key.to_string())
            .or_insert_with(|| EntryStatus {
                names: e.names.clone(),
                directory: e.acme.directory.clone(),
                storage: e.acme.storage.clone(),
                state: "placeholder",
                ..EntryStatus::default()
            });
        f(s);
    }

    /// The CA validates through the plaintext listeners: let pingora bind them first.
    async fn wait_for_listeners(&self) {
        let deadline = Instant::now() + LISTEN_WAIT;
        while self.state.listening().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if entries(&self.state.snapshot().config).is_empty()
            && !wait_for_entries(&self.state, &mut shutdown).await
        {
            return;
        }
        self.wait_for_listeners().await;
        let mut all: HashMap<String, Entry> = HashMap::new();
        let mut seen_generation = self.state.tls.generation();
        loop {
            // The generation before the snapshot (see `TlsListeners::generation`).
            let generation = self.state.tls.generation();
            let snapshot = self.state.snapshot();
            if generation != seen_generation {
                // A reload installed the certificates it read from disk, which may be
                // older than one this task issued meanwhile: every entry compares what is
                // served with what is stored again now.
                seen_generation = generation;
                for e in all.values_mut() {
                    e.next = Instant::now();
                }
            }
            let wanted = entries(&snapshot.config);
            all.retain(|k, _| wanted.iter().any(|w| &w.0 == k));
            STATUS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|k, _| wanted.iter().any(|w| &w.0 == k));
            let mut slots: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
            for (key, i, j, _, _) in &wanted {
                slots.entry(key.as_str()).or_default().push((*i, *j));
            }
            for (key, _, _, spec, acme) in &wanted {
                let here = slots.get(key.as_str()).cloned().unwrap_or_default();
                let e = all.entry(key.clone()).or_insert_with(|| Entry {
                    slots: here.clone(),
                    spec: (*spec).clone(),
                    acme: (*acme).clone(),
                    names: spec.names.clone().unwrap_or_default(),
                    next: Instant::now(),
                    backoff: Duration::ZERO,
                    jitter: random_fraction(),
                });
                if e.slots != here || e.acme != **acme {
                    // Moved or changed by a reload (e.g. renew_at, ca_file): look again now.
                    (e.slots, e.spec, e.acme) = (here, (*spec).clone(), (*acme).clone());
                    e.next = Instant::now();
                }
            }
            drop(snapshot);
            let mut keys: Vec<String> = all.keys().cloned().collect();
            keys.sort();
            for key in keys {
                if *shutdown.borrow() {
                    return;
                }
                if let Some(e) = all.get_mut(&key) {
                    if e.next <= Instant::now() {
                        self.tick(&key, e, generation).await;
                    }
                }
            }
            let next = all.values().map(|e| e.next).min();
            let sleep = next
                .map_or(TICK, |n| n.saturating_duration_since(Instant::now()))
                .min(TICK);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// With no ACME entry at start, wait for a reload to add one; `false` on shutdown.
async fn wait_for_entries(state: &LbState, shutdown: &mut ShutdownWatch) -> bool {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return false,
        }
        if !entries(&state.snapshot().config).is_empty() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_the_fraction_less_at_most_the_jitter() {
        let spec = AcmeSpec {
            directory: "https://ca.test/d".into(),
            email: None,
            storage: "/nonexistent".into(),
            renew_at: 2.0 / 3.0,
            ca_file: None,
        };
        let (chain, key) = storage::placeholder(&spec, &["a.test".into()], 1_000).expect("key");
        let provider = rustls::crypto::ring::default_provider();
        let key = Arc::new(
            rustls::sign::CertifiedKey::from_der(chain, key, &provider).expect("certified key"),
        );
        let cert = Certificate {
            key,
            names: vec!["a.test".into()],
            default: false,
            file: String::new(),
            serial: "01".into(),
            not_before: 1_000,
            not_after: 1_000 + 90 * 86_400,
        };
        let at = renew_after(&cert, 2.0 / 3.0, 0.0);
        assert_eq!(at, 1_000 + 60 * 86_400);
        let early = renew_after(&cert, 2.0 / 3.0, 0.999_999);
        assert!(at - early <= (0.05 * 90.0 * 86_400.0) as i64 && at - early > 4 * 86_400);
        // A tiny fraction: the jitter never moves it before the certificate's start.
        assert!(renew_after(&cert, 0.001, 0.999) >= cert.not_before);
    }
}
