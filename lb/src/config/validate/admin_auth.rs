//! `server.admin_auth`: where the admin API's token comes from, what it guards, and the
//! rule that an admin listener without a token stays on loopback.

use std::net::{IpAddr, SocketAddr};

use super::Errors;
use crate::config::raw::RawAdminAuth;
use crate::config::{defaults, AdminAuth};

const PATH: &str = "server.admin_auth";

pub(super) fn admin_auth(
    errs: &mut Errors,
    raw: Option<&RawAdminAuth>,
    admin: SocketAddr,
) -> AdminAuth {
    let default = RawAdminAuth::default();
    let raw = raw.unwrap_or(&default);
    if raw.token_file.as_deref() == Some("") {
        errs.push(format!("{PATH}.token_file"), "must not be empty");
    }
    if let Some(var) = raw.token_env.as_deref().filter(|v| !is_env_name(v)) {
        errs.push(
            format!("{PATH}.token_env"),
            format!("{var:?} is not an environment variable name (letters, digits and `_`, not starting with a digit)"),
        );
    }
    let auth = AdminAuth {
        token_env: raw.token_env.clone(),
        token_file: raw.token_file.clone(),
        create: raw.create.unwrap_or(false),
        metrics: raw.metrics.unwrap_or(defaults::ADMIN_AUTH_METRICS),
        allow_unauthenticated: raw.allow_unauthenticated.unwrap_or(false),
    };
    if auth.create && auth.token_file.is_none() {
        errs.push(
            format!("{PATH}.create"),
            "needs token_file (the file to write the token to)",
        );
    }
    if auth.allow_unauthenticated && auth.has_token() {
        errs.push(
            format!("{PATH}.allow_unauthenticated"),
            "a token is configured (token_file or token_env): remove one or the other",
        );
    }
    if !auth.has_token() && !auth.allow_unauthenticated && !is_loopback(admin.ip()) {
        errs.push(
            "server.admin",
            format!(
                "\"{admin}\" is not a loopback address and the admin API has no token: set {PATH}.token_file or {PATH}.token_env, or bind it to 127.0.0.1 (or set {PATH}.allow_unauthenticated: true to let anyone who reaches it reload the lb)"
            ),
        );
    }
    auth
}

/// Loopback only: `0.0.0.0` and `::` listen on every interface.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// What a shell accepts as a variable name.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{collect, yaml};

    fn check(admin: &str, text: &str) -> (AdminAuth, Vec<String>) {
        let raw: RawAdminAuth = yaml(text);
        collect(|errs| admin_auth(errs, Some(&raw), admin.parse().unwrap()))
    }

    #[test]
    fn defaults_protect_metrics_and_need_a_token_off_loopback() {
        let (auth, errs) =
            collect(|errs| admin_auth(errs, None, "127.0.0.1:9901".parse().unwrap()));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            auth,
            AdminAuth {
                token_env: None,
                token_file: None,
                create: false,
                metrics: true,
                allow_unauthenticated: false,
            }
        );
        for loopback in ["[::1]:9901", "127.0.0.9:1", "[::ffff:127.0.0.1]:1"] {
            assert!(check(loopback, "{}").1.is_empty(), "{loopback}");
        }
        for open in ["0.0.0.0:9901", "[::]:9901", "10.0.0.1:9901"] {
            let errs = check(open, "{}").1;
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].starts_with(&format!("server.admin: \"{open}\" is not a loopback address and the admin API has no token: set server.admin_auth.token_file or server.admin_auth.token_env")),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn a_token_or_an_explicit_opt_out_allows_any_address() {
        let (auth, errs) = check(
            "0.0.0.0:9901",
            "{ token_file: /run/secrets/admin, token_env: LB_ADMIN_TOKEN, create: true, metrics: false }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            auth,
            AdminAuth {
                token_env: Some("LB_ADMIN_TOKEN".into()),
                token_file: Some("/run/secrets/admin".into()),
                create: true,
                metrics: false,
                allow_unauthenticated: false,
            }
        );
        let (auth, errs) = check("0.0.0.0:9901", "{ allow_unauthenticated: true }");
        assert!(errs.is_empty(), "{errs:?}");
        assert!(auth.allow_unauthenticated && !auth.has_token());
    }

    #[test]
    fn contradictions_and_bad_values_are_named() {
        assert_eq!(
            check(
                "127.0.0.1:1",
                "{ token_file: \"\", token_env: 1TOKEN, allow_unauthenticated: true }"
            )
            .1,
            vec![
                "server.admin_auth.token_file: must not be empty",
                "server.admin_auth.token_env: \"1TOKEN\" is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                "server.admin_auth.allow_unauthenticated: a token is configured (token_file or token_env): remove one or the other",
            ]
        );
        assert_eq!(
            check("127.0.0.1:1", "{ token_env: A_B, create: true }").1,
            vec!["server.admin_auth.create: needs token_file (the file to write the token to)"]
        );
    }
}
