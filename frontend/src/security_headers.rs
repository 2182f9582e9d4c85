//! Headers on every response: `nosniff`, a strict Content-Security-Policy whose
//! `connect-src` is configurable (the page may call the API on another origin),
//! `Referrer-Policy`, `X-Frame-Options` and `Cross-Origin-Opener-Policy`. The site
//! service (`crate::site_service`) sets them on each of its answers.

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The `--connect-src` value: whitespace-separated CSP sources, checked so that no
/// value can end the directive and smuggle in another one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectSrc(String);

impl ConnectSrc {
    /// Accepts `'self'`, `'none'`, `*`, schemes (`https:`) and host sources
    /// (`http://localhost:5252`, `https://*.example.com`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let sources: Vec<&str> = value.split_whitespace().collect();
        if sources.is_empty() {
            return Err("expected at least one source, e.g. 'self'".into());
        }
        for source in &sources {
            let keyword = matches!(*source, "'self'" | "'none'");
            let plain = |c: char| c.is_ascii_alphanumeric() || ".-:/*[]_".contains(c);
            if !keyword && !source.chars().all(plain) {
                return Err(format!(
                    "invalid CSP source {source:?}: use 'self', 'none', a scheme or an origin"
                ));
            }
        }
        Ok(Self(sources.join(" ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The whole policy. Scripts and styles only from our own files (no inline code),
    /// no plugins, no framing, no forms, no `<base>` tricks.
    pub fn policy(&self) -> String {
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             font-src 'self'; manifest-src 'self'; connect-src {}; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            self.0
        )
    }
}

/// The headers every response carries, errors included; made once, at start.
#[derive(Clone, Debug)]
pub(crate) struct SecurityHeaders([(HeaderName, HeaderValue); 5]);

impl SecurityHeaders {
    pub(crate) fn new(connect_src: &ConnectSrc) -> Self {
        let csp = HeaderValue::from_str(&connect_src.policy())
            .expect("ConnectSrc::parse admits only header-safe characters");
        Self([
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ])
    }

    /// Sets them on `headers`, replacing any value already there.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_keywords_and_origins() {
        let src =
            ConnectSrc::parse("'self'   http://127.0.0.1:5252 https://*.example.com").unwrap();
        assert_eq!(
            src.as_str(),
            "'self' http://127.0.0.1:5252 https://*.example.com"
        );
        assert!(src
            .policy()
            .contains("connect-src 'self' http://127.0.0.1:5252 https://*.example.com;"));
    }

    #[test]
    fn refuses_directive_injection() {
        for bad in [
            "",
            "'self'; script-src *",
            "'unsafe-inline'",
            "a,b",
            "http://x\"y",
        ] {
            assert!(ConnectSrc::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
