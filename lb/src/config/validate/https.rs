//! `server.https_redirect`, `server.hsts` and `routes[].hsts`: moving clients to HTTPS and
//! keeping them there.

use serde_yaml::Value;

use super::Errors;
use crate::config::raw::{RawHsts, RawHttpsRedirect};
use crate::config::{defaults, Hsts, HttpsRedirect};

pub(super) fn https_redirect(
    errs: &mut Errors,
    raw: Option<&RawHttpsRedirect>,
) -> Option<HttpsRedirect> {
    let raw = raw?;
    let path = "server.https_redirect";
    let port = match raw.port {
        None => defaults::HTTPS_PORT,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or_else(|| {
                errs.push(
                    format!("{path}.port"),
                    format!("{p} is not a port (1-65535)"),
                );
                defaults::HTTPS_PORT
            }),
    };
    for (i, prefix) in raw.exclude.iter().enumerate() {
        if !prefix.starts_with('/') {
            errs.push(
                format!("{path}.exclude[{i}]"),
                format!("{prefix:?} must start with `/`"),
            );
        }
    }
    Some(HttpsRedirect {
        port,
        exclude: raw.exclude.clone(),
    })
}

pub(super) fn hsts(errs: &mut Errors, path: &str, raw: &RawHsts) -> Hsts {
    let max_age = errs.duration_up_to(
        &format!("{path}.max_age"),
        raw.max_age.as_ref(),
        defaults::HSTS_MAX_AGE,
        // RFC 6797 sets no bound; two years is what the preload lists recommend at most.
        std::time::Duration::from_secs(2 * defaults::HSTS_MAX_AGE.as_secs()),
    );
    let include_subdomains = raw.include_subdomains.unwrap_or(false);
    let preload = raw.preload.unwrap_or(false);
    if preload && (!include_subdomains || max_age < defaults::HSTS_MAX_AGE) {
        errs.push(
            format!("{path}.preload"),
            "preload lists accept only `include_subdomains: true` with a max_age of a year or more",
        );
    }
    let mut value = format!("max-age={}", max_age.as_secs());
    if include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if preload {
        value.push_str("; preload");
    }
    Hsts {
        max_age,
        include_subdomains,
        preload,
        value,
    }
}

/// A route's `hsts`: absent inherits `server.hsts`; `false` turns it off; `true` is the
/// defaults; a mapping is its own policy.
pub(super) fn route_hsts(
    errs: &mut Errors,
    path: &str,
    raw: Option<&Value>,
    server: Option<&Hsts>,
) -> Option<Hsts> {
    match raw {
        None => server.cloned(),
        Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(hsts(
            errs,
            path,
            &RawHsts {
                max_age: None,
                include_subdomains: None,
                preload: None,
            },
        )),
        Some(v @ Value::Mapping(_)) => match serde_yaml::from_value::<RawHsts>(v.clone()) {
            Ok(raw) => Some(hsts(errs, path, &raw)),
            Err(e) => {
                errs.push(path, e.to_string());
                None
            }
        },
        Some(_) => {
            errs.push(
                path,
                "expected `false`, `true` or { max_age, include_subdomains, preload }",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{collect, yaml};

    #[test]
    fn hsts_defaults_and_header_value() {
        let raw: RawHsts = yaml("{}");
        let (h, errs) = collect(|e| hsts(e, "server.hsts", &raw));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(h.value, "max-age=31536000");
        let raw: RawHsts = yaml("{ max_age: 730d, include_subdomains: true, preload: true }");
        let (h, errs) = collect(|e| hsts(e, "server.hsts", &raw));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(h.value, "max-age=63072000; includeSubDomains; preload");
    }

    #[test]
    fn preload_needs_subdomains_and_a_year() {
        let raw: RawHsts = yaml("{ max_age: 1d, preload: true }");
        let (_, errs) = collect(|e| hsts(e, "server.hsts", &raw));
        assert_eq!(errs, vec!["server.hsts.preload: preload lists accept only `include_subdomains: true` with a max_age of a year or more"]);
    }

    #[test]
    fn route_hsts_inherits_turns_off_or_overrides() {
        let server: RawHsts = yaml("{ max_age: 1h }");
        let (server, _) = collect(|e| hsts(e, "server.hsts", &server));
        let p = "routes[0].hsts";
        let run = |v: Option<Value>| collect(|e| route_hsts(e, p, v.as_ref(), Some(&server)));
        assert_eq!(run(None).0.map(|h| h.value), Some("max-age=3600".into()));
        assert_eq!(run(Some(Value::Bool(false))).0, None);
        assert_eq!(
            run(Some(Value::Bool(true))).0.map(|h| h.value),
            Some("max-age=31536000".into())
        );
        assert_eq!(
            run(Some(yaml("{ max_age: 2h, include_subdomains: true }")))
                .0
                .map(|h| h.value),
            Some("max-age=7200; includeSubDomains".into())
        );
        let (_, errs) = run(Some(yaml("7")));
        assert_eq!(
            errs,
            vec![format!(
                "{p}: expected `false`, `true` or {{ max_age, include_subdomains, preload }}"
            )]
        );
        let (_, errs) = run(Some(yaml("{ maxage: 1d }")));
        assert!(
            errs[0].starts_with(&format!("{p}: unknown field `maxage`")),
            "{errs:?}"
        );
    }

    #[test]
    fn redirect_port_and_exclusions() {
        let raw: RawHttpsRedirect = yaml("{}");
        let (r, errs) = collect(|e| https_redirect(e, Some(&raw)));
        assert!(errs.is_empty());
        assert_eq!(
            r,
            Some(HttpsRedirect {
                port: 443,
                exclude: vec![]
            })
        );
        let raw: RawHttpsRedirect = yaml("{ port: 70000, exclude: [/health, metrics] }");
        let (_, errs) = collect(|e| https_redirect(e, Some(&raw)));
        assert_eq!(
            errs,
            vec![
                "server.https_redirect.port: 70000 is not a port (1-65535)",
                "server.https_redirect.exclude[1]: \"metrics\" must start with `/`",
            ]
        );
    }
}
