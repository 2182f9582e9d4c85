//! How an upstream chooses among its backends: `selection` (with `hash_key`), `outlier`,
//! `slow_start` and `sticky`.

use std::time::Duration;

use serde_yaml::Value;

use super::Errors;
use crate::config::raw::{RawOutlier, RawSticky};
use crate::config::{
    defaults, duration, HashKey, OutlierFailures, OutlierSpec, SameSite, Selection, StickySpec,
};

/// The HMAC key must carry at least this much (a key shorter than the hash is weaker).
const MIN_STICKY_KEY: usize = 32;

/// Longest ejection: a day (a longer one is a mistake, and `Instant + length` must not
/// overflow).
const MAX_EJECTION: Duration = Duration::from_secs(24 * 3600);

pub(super) fn selection(
    errs: &mut Errors,
    path: &str,
    selection: Option<&str>,
    hash_key: Option<&str>,
) -> Selection {
    let chosen = match selection {
        None | Some("round_robin") => Selection::RoundRobin,
        Some("random") => Selection::Random,
        Some("least_requests") => Selection::LeastRequests,
        Some("consistent_hash") => {
            Selection::ConsistentHash(key(errs, &format!("{path}.hash_key"), hash_key))
        }
        Some(other) => {
            errs.push(
                format!("{path}.selection"),
                format!("{other:?} is not supported (supported: round_robin, random, least_requests, consistent_hash)"),
            );
            Selection::RoundRobin
        }
    };
    if hash_key.is_some() && !matches!(chosen, Selection::ConsistentHash(_)) {
        errs.push(
            format!("{path}.hash_key"),
            "only `selection: consistent_hash` uses a hash key",
        );
    }
    chosen
}

/// `client_ip` (the default), `path`, `header:<name>` or `cookie:<name>`.
fn key(errs: &mut Errors, path: &str, text: Option<&str>) -> HashKey {
    let text = text.unwrap_or("client_ip");
    match text.split_once(':') {
        None if text == "client_ip" => HashKey::ClientIp,
        None if text == "path" => HashKey::Path,
        Some(("header", name)) => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => HashKey::Header(name),
            Err(_) => {
                errs.push(path, format!("{name:?} is not a header name"));
                HashKey::ClientIp
            }
        },
        Some(("cookie", name)) if is_token(name) => HashKey::Cookie(name.to_string()),
        Some(("cookie", name)) => {
            errs.push(path, format!("{name:?} is not a cookie name"));
            HashKey::ClientIp
        }
        _ => {
            errs.push(
                path,
                format!(
                    "{text:?} is not a hash key (client_ip, path, header:<name> or cookie:<name>)"
                ),
            );
            HashKey::ClientIp
        }
    }
}

/// An RFC 9110 token: what a cookie name may be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// On by default with [`defaults`]' values; `off` (or `false`) turns it off.
pub(super) fn outlier(errs: &mut Errors, path: &str, raw: Option<&Value>) -> Option<OutlierSpec> {
    let raw: RawOutlier = match raw {
        None => RawOutlier::default(),
        Some(Value::Bool(false)) => return None,
        Some(Value::String(s)) if s == "off" => return None,
        Some(v @ Value::Mapping(_)) => match serde_yaml::from_value(v.clone()) {
            Ok(raw) => raw,
            Err(e) => {
                errs.push(path, e.to_string());
                return None;
            }
        },
        Some(_) => {
            errs.push(
                path,
                "expected `off` or a map of failures, consecutive_failures, window, base_ejection, max_ejection, max_ejected_percent",
            );
            return None;
        }
    };
    let base_ejection = errs.duration(
        &format!("{path}.base_ejection"),
        raw.base_ejection.as_ref(),
        defaults::OUTLIER_BASE_EJECTION,
        MAX_EJECTION,
    );
    let max_ejection = errs.duration(
        &format!("{path}.max_ejection"),
        raw.max_ejection.as_ref(),
        defaults::OUTLIER_MAX_EJECTION.max(base_ejection),
        MAX_EJECTION,
    );
    if max_ejection < base_ejection {
        errs.push(
            format!("{path}.max_ejection"),
            format!("{max_ejection:?} is shorter than base_ejection ({base_ejection:?})"),
        );
    }
    let failures = match raw.failures.as_ref() {
        None => OutlierFailures::Gateway,
        Some(Value::String(s)) if s == "gateway" => OutlierFailures::Gateway,
        Some(Value::String(s)) if s == "5xx" => OutlierFailures::Any5xx,
        Some(other) => {
            let shown = serde_yaml::to_string(other).unwrap_or_default();
            errs.push(
                format!("{path}.failures"),
                format!(
                    "{:?} is not `gateway` (502, 503, 504) or `5xx` (any 5xx)",
                    shown.trim()
                ),
            );
            OutlierFailures::Gateway
        }
    };
    Some(OutlierSpec {
        failures,
        consecutive_failures: errs.count(
            &format!("{path}.consecutive_failures"),
            raw.consecutive_failures,
            defaults::OUTLIER_FAILURES as usize,
            1,
            Some(1000),
        ) as u32,
        window: errs.duration_up_to(
            &format!("{path}.window"),
            raw.window.as_ref(),
            defaults::OUTLIER_WINDOW,
            Duration::from_secs(3600),
        ),
        base_ejection,
        max_ejection,
        max_ejected_percent: errs.count(
            &format!("{path}.max_ejected_percent"),
            raw.max_ejected_percent,
            defaults::OUTLIER_MAX_EJECTED_PERCENT as usize,
            1,
            Some(100),
        ) as u32,
    })
}

pub(super) fn slow_start(errs: &mut Errors, path: &str, raw: Option<&Value>) -> Duration {
    errs.duration_up_to(path, raw, defaults::SLOW_START, defaults::SLOW_START_MAX)
}

pub(super) fn sticky(errs: &mut Errors, path: &str, raw: Option<&RawSticky>) -> Option<StickySpec> {
    let raw = raw?;
    let cookie = raw
        .cookie
        .clone()
        .unwrap_or_else(|| defaults::STICKY_COOKIE.to_string());
    if !is_token(&cookie) {
        errs.push(
            format!("{path}.cookie"),
            format!("{cookie:?} is not a cookie name"),
        );
    }
    let cookie_path = raw.path.clone().unwrap_or_else(|| "/".to_string());
    if !cookie_path.starts_with('/')
        || !cookie_path
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b';')
    {
        errs.push(
            format!("{path}.path"),
            format!("{cookie_path:?} is not a cookie path (`/…`, visible ASCII, no `;`)"),
        );
    }
    let same_site = match raw.same_site.as_deref() {
        None | Some("Lax") | Some("lax") => SameSite::Lax,
        Some("Strict") | Some("strict") => SameSite::Strict,
        Some("None") | Some("none") => SameSite::None,
        Some(other) => {
            errs.push(
                format!("{path}.same_site"),
                format!("{other:?} is not Strict, Lax or None"),
            );
            SameSite::Lax
        }
    };
    let secure = raw.secure.unwrap_or(false);
    if same_site == SameSite::None && !secure {
        // Browsers drop a `SameSite=None` cookie that is not `Secure`.
        errs.push(
            format!("{path}.same_site"),
            "`None` needs `secure: true` (browsers drop it otherwise)",
        );
    }
    let max_age = raw.max_age.as_ref().map(|v| {
        let key = format!("{path}.max_age");
        let age = errs.duration_within(
            &key,
            Some(v),
            Duration::from_secs(3600),
            (defaults::STICKY_MAX_AGE_MIN, defaults::STICKY_MAX_AGE_MAX),
        );
        // Written as the cookie's `Max-Age`, in whole seconds: `1500ms` would silently
        // become 1 s.
        if age.subsec_nanos() != 0 {
            errs.push(
                key,
                format!("{} is not a whole number of seconds", duration::show(v)),
            );
        }
        age
    });
    let key = raw.key_file.as_deref().and_then(|file| {
        let key_path = format!("{path}.key_file");
        match std::fs::read(file) {
            Ok(bytes) => {
                let key = bytes.trim_ascii().to_vec();
                if key.len() < MIN_STICKY_KEY {
                    errs.push(
                        key_path,
                        format!(
                            "{file:?} holds {} bytes; the key needs at least {MIN_STICKY_KEY}",
                            key.len()
                        ),
                    );
                    None
                } else {
                    Some(key)
                }
            }
            Err(e) => {
                errs.push(key_path, format!("cannot read {file:?}: {e}"));
                None
            }
        }
    });
    Some(StickySpec {
        cookie,
        path: cookie_path,
        secure,
        http_only: raw.http_only.unwrap_or(true),
        same_site,
        max_age,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs() -> Errors {
        Errors(Vec::new())
    }

    #[test]
    fn selections_and_hash_keys_parse() {
        let mut e = errs();
        assert_eq!(selection(&mut e, "u", None, None), Selection::RoundRobin);
        assert_eq!(
            selection(&mut e, "u", Some("least_requests"), None),
            Selection::LeastRequests
        );
        assert_eq!(
            selection(&mut e, "u", Some("consistent_hash"), None),
            Selection::ConsistentHash(HashKey::ClientIp)
        );
        assert_eq!(
            selection(&mut e, "u", Some("consistent_hash"), Some("header:X-User")),
            Selection::ConsistentHash(HashKey::Header(http::HeaderName::from_static("x-user")))
        );
        assert_eq!(
            selection(&mut e, "u", Some("consistent_hash"), Some("cookie:sid")),
            Selection::ConsistentHash(HashKey::Cookie("sid".into()))
        );
        assert!(e.0.is_empty(), "{:?}", e.0);
    }

    #[test]
    fn bad_selections_and_keys_name_their_field() {
        let mut e = errs();
        selection(&mut e, "u", Some("least_conn"), None);
        selection(
            &mut e,
            "u",
            Some("consistent_hash"),
            Some("header:bad header"),
        );
        selection(&mut e, "u", Some("consistent_hash"), Some("query:x"));
        selection(&mut e, "u", Some("random"), Some("path"));
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["u.selection", "u.hash_key", "u.hash_key", "u.hash_key"]
        );
    }

    #[test]
    fn outlier_is_on_by_default_and_can_be_turned_off() {
        let mut e = errs();
        let on = outlier(&mut e, "o", None).expect("on by default");
        assert_eq!(on.failures, OutlierFailures::Gateway);
        assert_eq!(on.consecutive_failures, 5);
        assert_eq!(on.base_ejection, Duration::from_secs(30));
        assert_eq!(outlier(&mut e, "o", Some(&Value::Bool(false))), None);
        assert_eq!(
            outlier(&mut e, "o", Some(&Value::String("off".into()))),
            None
        );
        assert!(e.0.is_empty());
    }

    #[test]
    fn outlier_failures_is_gateway_or_5xx() {
        let parse = |yaml: &str| {
            let mut e = errs();
            let v: Value = serde_yaml::from_str(yaml).unwrap();
            let spec = outlier(&mut e, "o", Some(&v)).map(|o| o.failures);
            let paths: Vec<_> = e.0.iter().map(|e| e.path.clone()).collect();
            (spec, paths)
        };
        assert_eq!(
            parse("{ failures: gateway }"),
            (Some(OutlierFailures::Gateway), vec![])
        );
        assert_eq!(
            parse("{ failures: 5xx }"),
            (Some(OutlierFailures::Any5xx), vec![])
        );
        assert_eq!(parse("{ failures: 500 }").1, ["o.failures"]);
        assert_eq!(parse("{ failures: all }").1, ["o.failures"]);
    }

    #[test]
    fn outlier_checks_its_fields() {
        let mut e = errs();
        let v: Value =
            serde_yaml::from_str("{ consecutive_failures: 0, base_ejection: 10s, max_ejection: 5s, max_ejected_percent: 101, nope: 1 }")
                .unwrap();
        outlier(&mut e, "o", Some(&v));
        assert_eq!(e.0.len(), 1, "unknown field first: {:?}", e.0);
        let v: Value =
            serde_yaml::from_str("{ consecutive_failures: 0, base_ejection: 10s, max_ejection: 5s, max_ejected_percent: 101 }")
                .unwrap();
        let mut e = errs();
        outlier(&mut e, "o", Some(&v));
        let mut paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "o.consecutive_failures",
                "o.max_ejected_percent",
                "o.max_ejection"
            ]
        );
    }

    #[test]
    fn sticky_max_age_is_whole_seconds_from_1s_to_a_day() {
        let raw = |yaml: &str| -> RawSticky { serde_yaml::from_str(yaml).unwrap() };
        let messages = |yaml: &str| {
            let mut e = errs();
            let spec = sticky(&mut e, "s", Some(&raw(yaml))).unwrap();
            (
                spec.max_age,
                e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            messages("{ max_age: 1s }"),
            (Some(Duration::from_secs(1)), vec![])
        );
        assert_eq!(
            messages("{ max_age: 24h }"),
            (Some(Duration::from_secs(86400)), vec![])
        );
        // `Max-Age=0` would delete the cookie at once.
        assert_eq!(
            messages("{ max_age: 500ms }").1,
            vec!["s.max_age: \"500ms\" is shorter than the minimum 1s"]
        );
        assert_eq!(
            messages("{ max_age: 1500ms }").1,
            vec!["s.max_age: \"1500ms\" is not a whole number of seconds"]
        );
        assert_eq!(
            messages("{ max_age: 25h }").1,
            vec!["s.max_age: \"25h\" is longer than the maximum 86400s"]
        );
    }

    #[test]
    fn ejections_are_at_most_a_day() {
        let v: Value =
            serde_yaml::from_str("{ base_ejection: 10000000000000000000s, max_ejection: 25h }")
                .unwrap();
        let mut e = errs();
        outlier(&mut e, "o", Some(&v));
        assert_eq!(
            e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "o.base_ejection: \"10000000000000000000s\" is longer than the maximum 86400s",
                "o.max_ejection: \"25h\" is longer than the maximum 86400s",
            ]
        );
    }

    #[test]
    fn sticky_defaults_and_checks() {
        let raw = |yaml: &str| -> RawSticky { serde_yaml::from_str(yaml).unwrap() };
        let mut e = errs();
        let s = sticky(&mut e, "s", Some(&raw("{}"))).unwrap();
        assert_eq!(s.cookie, "lb_sticky");
        assert!(s.http_only && !s.secure && s.same_site == SameSite::Lax && s.max_age.is_none());
        assert!(e.0.is_empty());
        sticky(
            &mut e,
            "s",
            Some(&raw(
                "{ cookie: 'a b', path: x, same_site: None, key_file: /nonexistent/key }",
            )),
        );
        let paths: Vec<_> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["s.cookie", "s.path", "s.same_site", "s.key_file"]);
    }
}
