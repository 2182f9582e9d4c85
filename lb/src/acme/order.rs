//! One ACME order (RFC 8555 §7.4): the account (created once per CA and stored), a new
//! order for the names, an http-01 challenge per name answered by this lb, finalize with
//! a CSR for a fresh P-256 key, and the certificate chain downloaded.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use super::challenge::Published;
use super::client::AcmeHttp;
use super::storage::{self, Paths};
use crate::config::AcmeSpec;

/// How long the CA may take to validate the challenges, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// What an order produced: the chain and key, PEM.
pub(crate) struct Issued {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// Order a certificate for `names` from `spec`'s CA.
pub(crate) async fn order(
    spec: &AcmeSpec,
    names: &[String],
    paths: &Paths,
) -> Result<Issued, String> {
    let http = AcmeHttp::new(spec.ca_file.as_deref())?;
    let account = account(spec, paths, http).await?;
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;

    // Answered until this is dropped, whatever happens below.
    let mut published = Published::new(&paths.storage);
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Validated by an earlier order of this account (the CA reuses it).
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or("the CA offers no http-01 challenge")?;
        let key_authorization = challenge.key_authorization();
        published.add(&challenge.token, key_authorization.as_str())?;
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge: {e}"))?;
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("the order is {status:?} after validation"));
    }

    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| format!("cannot make a CSR for {names:?}: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("cannot make a CSR: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let cert_pem = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    drop(published);
    Ok(Issued {
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The stored account for this CA, or a new one (stored 0600 before it is used).
async fn account(spec: &AcmeSpec, paths: &Paths, http: AcmeHttp) -> Result<Account, String> {
    let file = paths.account(&spec.directory);
    match std::fs::read(&file) {
        Ok(bytes) => {
            let credentials: AccountCredentials = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not ACME account credentials: {e}", file.display()))?;
            return Account::builder_with_http(Box::new(http))
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("account: {e}"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    }
    let contact = spec.email.as_ref().map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(Box::new(http))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            spec.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account at {}: {e}", spec.directory))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    storage::create_dir(&paths.storage)?;
    storage::write_atomic(&file, &json, 0o600)?;
    tracing::info!(directory = %spec.directory, account = account.id(), file = %file.display(), "ACME account created");
    Ok(account)
}
