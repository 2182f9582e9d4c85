//! `server.tls_listen:`: TLS listeners, their certificates' SNI names and their ALPN
//! protocols. The files themselves are read later, by `config::certificates`, once the
//! whole file is known to be valid.

use super::Errors;
use crate::config::raw::{RawAcme, RawCertificate, RawTlsListener};
use crate::config::{
    defaults, AcmeSpec, CertificateSource, CertificateSpec, Protocols, TlsListener,
};

pub(super) fn tls_listen(errs: &mut Errors, raw: &[RawTlsListener]) -> Vec<TlsListener> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, l)| listener(errs, &format!("server.tls_listen[{i}]"), l))
        .collect()
}

fn listener(errs: &mut Errors, path: &str, raw: &RawTlsListener) -> Option<TlsListener> {
    let address = errs.socket_addr(&format!("{path}.address"), &raw.address);
    let protocols = protocols(errs, &format!("{path}.protocols"), raw.protocols.as_deref());
    if raw.certificates.is_empty() {
        errs.push(
            format!("{path}.certificates"),
            "at least one certificate is required",
        );
    }
    let mut certificates: Vec<CertificateSpec> = raw
        .certificates
        .iter()
        .enumerate()
        .map(|(j, c)| certificate(errs, &format!("{path}.certificates[{j}]"), c))
        .collect();
    match certificates.iter().filter(|c| c.default).count() {
        // None says `default`: the first one listed is, as in nginx. Otherwise a client that
        // sends no SNI (an old client, a health probe, `https://10.0.0.5/`) or a name no
        // certificate serves would fail its handshake with no certificate at all.
        0 => {
            if let Some(first) = certificates.first_mut() {
                first.default = true;
            }
        }
        1 => {}
        _ => errs.push(
            format!("{path}.certificates"),
            "more than one certificate says `default: true`",
        ),
    }
    // The same name on two certificates would make the choice depend on file order.
    let mut seen = std::collections::BTreeSet::new();
    for (j, c) in certificates.iter().enumerate() {
        for name in c.names.iter().flatten() {
            if !seen.insert(name.clone()) {
                errs.push(
                    format!("{path}.certificates[{j}].names"),
                    format!("{name:?} is served by an earlier certificate of this listener"),
                );
            }
        }
    }
    Some(TlsListener {
        address: address?,
        protocols,
        certificates,
    })
}

fn certificate(errs: &mut Errors, path: &str, raw: &RawCertificate) -> CertificateSpec {
    let names: Option<Vec<String>> = raw.names.as_ref().map(|names| {
        if names.is_empty() {
            errs.push(
                format!("{path}.names"),
                "empty: list at least one name, or leave `names` out to use the certificate's own",
            );
        }
        names
            .iter()
            .enumerate()
            .filter_map(|(k, n)| sni_name(errs, &format!("{path}.names[{k}]"), n))
            .collect()
    });
    let source = match (&raw.cert, &raw.key, &raw.local_ca, &raw.acme) {
        (None, None, None, Some(acme_raw)) => {
            if raw.names.is_none() {
                errs.push(
                    format!("{path}.names"),
                    "required with `acme`: the domain names to order the certificate for",
                );
            }
            for (k, n) in names.iter().flatten().enumerate() {
                if n.starts_with("*.") {
                    errs.push(
                        format!("{path}.names[{k}]"),
                        format!("{n:?}: a wildcard needs a dns-01 challenge; `acme` answers http-01 only"),
                    );
                }
            }
            CertificateSource::Acme(acme(errs, &format!("{path}.acme"), acme_raw))
        }
        (None, None, Some(dir), None) => {
            if dir.is_empty() {
                errs.push(format!("{path}.local_ca"), "must not be empty");
            }
            if raw.names.is_none() {
                errs.push(
                    format!("{path}.names"),
                    "required with `local_ca`: the names to issue the certificate for",
                );
            }
            CertificateSource::LocalCa { dir: dir.clone() }
        }
        (cert, key, None, None) => {
            for (field, value) in [("cert", cert), ("key", key)] {
                match value {
                    None => errs.push(
                        format!("{path}.{field}"),
                        "required (or `local_ca` or `acme` instead of `cert` and `key`)",
                    ),
                    Some(v) if v.is_empty() => {
                        errs.push(format!("{path}.{field}"), "must not be empty")
                    }
                    Some(_) => {}
                }
            }
            CertificateSource::Files {
                cert: cert.clone().unwrap_or_default(),
                key: key.clone().unwrap_or_default(),
            }
        }
        (_, _, Some(dir), _) => {
            errs.push(
                format!("{path}.local_ca"),
                "either `cert` and `key`, or `local_ca`, or `acme`: only one",
            );
            CertificateSource::LocalCa { dir: dir.clone() }
        }
        (_, _, None, Some(_)) => {
            errs.push(
                format!("{path}.acme"),
                "either `cert` and `key`, or `local_ca`, or `acme`: only one",
            );
            CertificateSource::Files {
                cert: String::new(),
                key: String::new(),
            }
        }
    };
    CertificateSpec {
        source,
        names,
        default: raw.default,
    }
}

/// `certificates[].acme`: every key but `agree_terms` has a default.
fn acme(errs: &mut Errors, path: &str, raw: &RawAcme) -> AcmeSpec {
    let directory = raw
        .directory
        .clone()
        .unwrap_or_else(|| defaults::ACME_DIRECTORY.to_string());
    // The CA's TLS is what protects the account key's signatures from being replayed
    // elsewhere; plain http is for a CA on loopback only.
    let loopback_http = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| directory.starts_with(p));
    if directory.parse::<http::Uri>().is_err()
        || !(directory.starts_with("https://") || loopback_http)
    {
        errs.push(
            format!("{path}.directory"),
            format!("{directory:?} is not an https:// URL (the CA's ACME directory)"),
        );
    }
    if raw.agree_terms != Some(true) {
        errs.push(
            format!("{path}.agree_terms"),
            "must be `true`: ordering a certificate means agreeing to the CA's terms of service",
        );
    }
    if let Some(email) = &raw.email {
        let ok = email
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && !email.chars().any(|c| c.is_whitespace() || c == ',');
        if !ok {
            errs.push(
                format!("{path}.email"),
                format!("{email:?} is not an e-mail address"),
            );
        }
    }
    let storage = raw
        .storage
        .clone()
        .unwrap_or_else(|| defaults::ACME_STORAGE.to_string());
    if storage.is_empty() {
        errs.push(format!("{path}.storage"), "must not be empty");
    }
    let renew_at = match &raw.renew_at {
        None => defaults::ACME_RENEW_AT,
        Some(v) => match v.as_f64() {
            Some(f) if f > 0.0 && f < 1.0 => f,
            _ => {
                errs.push(
                    format!("{path}.renew_at"),
                    format!(
                        "{} is not a fraction of the lifetime between 0 and 1 (exclusive), e.g. 0.67",
                        crate::config::duration::show(v)
                    ),
                );
                defaults::ACME_RENEW_AT
            }
        },
    };
    if let Some(f) = &raw.ca_file {
        if f.is_empty() {
            errs.push(format!("{path}.ca_file"), "must not be empty");
        }
    }
    AcmeSpec {
        directory,
        email: raw.email.clone(),
        storage,
        renew_at,
        ca_file: raw.ca_file.clone(),
    }
}

/// A DNS name, or `*.` and a DNS name (the wildcard stands for exactly one label), lowercased.
pub(crate) fn sni_name(errs: &mut Errors, path: &str, text: &str) -> Option<String> {
    let name = text.to_ascii_lowercase();
    let base = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if base.len() > 253 || !base.split('.').all(label_ok) {
        errs.push(
            path,
            format!("{text:?} is not a DNS name or a wildcard such as \"*.example.com\""),
        );
        return None;
    }
    Some(name)
}

fn protocols(errs: &mut Errors, path: &str, raw: Option<&[String]>) -> Protocols {
    let Some(list) = raw else {
        return Protocols::H2AndHttp1;
    };
    let (mut h1, mut h2) = (false, false);
    for (i, p) in list.iter().enumerate() {
        let seen = match p.as_str() {
            "h2" => std::mem::replace(&mut h2, true),
            "http/1.1" => std::mem::replace(&mut h1, true),
            _ => {
                errs.push(
                    format!("{path}[{i}]"),
                    format!("{p:?} is not a protocol the lb offers (h2, http/1.1)"),
                );
                continue;
            }
        };
        if seen {
            errs.push(format!("{path}[{i}]"), format!("{p:?} is listed twice"));
        }
    }
    match (h1, h2) {
        (true, true) => Protocols::H2AndHttp1,
        (true, false) => Protocols::Http1,
        (false, true) => Protocols::H2,
        (false, false) => {
            if list.is_empty() {
                errs.push(path, "list at least one of h2, http/1.1");
            }
            Protocols::H2AndHttp1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{collect, yaml};

    fn check(text: &str) -> (Vec<TlsListener>, Vec<String>) {
        let raw: Vec<RawTlsListener> = yaml(text);
        collect(|errs| tls_listen(errs, &raw))
    }

    #[test]
    fn a_listener_with_defaults() {
        let (listeners, errs) = check(
            r#"[ { address: "127.0.0.1:8443", certificates: [ { cert: c.pem, key: k.pem } ] } ]"#,
        );
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(
            listeners,
            vec![TlsListener {
                address: "127.0.0.1:8443".parse().unwrap(),
                protocols: Protocols::H2AndHttp1,
                certificates: vec![CertificateSpec {
                    source: CertificateSource::Files {
                        cert: "c.pem".into(),
                        key: "k.pem".into(),
                    },
                    names: None,
                    // The only (first) certificate is the default without `default: true`.
                    default: true,
                }],
            }]
        );
    }

    #[test]
    fn the_first_certificate_is_the_default_unless_one_says_so() {
        let (listeners, errs) = check(
            r#"[ { address: "127.0.0.1:1",
                   certificates: [ { cert: a, key: a }, { cert: b, key: b } ] },
                 { address: "127.0.0.1:2",
                   certificates: [ { cert: a, key: a }, { cert: b, key: b, default: true } ] } ]"#,
        );
        assert_eq!(errs, Vec::<String>::new());
        let defaults = |i: usize| -> Vec<bool> {
            listeners[i]
                .certificates
                .iter()
                .map(|c| c.default)
                .collect()
        };
        assert_eq!(defaults(0), [true, false]);
        assert_eq!(defaults(1), [false, true]);
    }

    #[test]
    fn names_are_dns_names_or_one_label_wildcards_lowercased() {
        let (listeners, errs) = check(
            r#"[ { address: "127.0.0.1:1", protocols: [http/1.1],
                   certificates: [ { cert: c, key: k, default: true,
                                     names: [A.Example.test, "*.example.test", "a.*.test", "-x.test", ""] } ] } ]"#,
        );
        assert_eq!(
            errs,
            vec![
                "server.tls_listen[0].certificates[0].names[2]: \"a.*.test\" is not a DNS name or a wildcard such as \"*.example.com\"",
                "server.tls_listen[0].certificates[0].names[3]: \"-x.test\" is not a DNS name or a wildcard such as \"*.example.com\"",
                "server.tls_listen[0].certificates[0].names[4]: \"\" is not a DNS name or a wildcard such as \"*.example.com\"",
            ]
        );
        let c = &listeners[0].certificates[0];
        assert_eq!(
            c.names,
            Some(vec!["a.example.test".into(), "*.example.test".into()])
        );
        assert!(c.default);
        assert_eq!(listeners[0].protocols, Protocols::Http1);
    }

    #[test]
    fn every_listener_error_names_its_field() {
        let (_, errs) = check(
            r#"[ { address: "nope", certificates: [], protocols: [h3, h2, h2] },
                 { address: "127.0.0.1:1", protocols: [],
                   certificates: [ { cert: "", key: k, default: true, names: [a.test] },
                                   { cert: c, key: "", default: true, names: [a.test] } ] } ]"#,
        );
        assert_eq!(
            errs,
            vec![
                "server.tls_listen[0].address: \"nope\" is not an IP:port address (names go through `dns:`)",
                "server.tls_listen[0].protocols[0]: \"h3\" is not a protocol the lb offers (h2, http/1.1)",
                "server.tls_listen[0].protocols[2]: \"h2\" is listed twice",
                "server.tls_listen[0].certificates: at least one certificate is required",
                "server.tls_listen[1].protocols: list at least one of h2, http/1.1",
                "server.tls_listen[1].certificates[0].cert: must not be empty",
                "server.tls_listen[1].certificates[1].key: must not be empty",
                "server.tls_listen[1].certificates: more than one certificate says `default: true`",
                "server.tls_listen[1].certificates[1].names: \"a.test\" is served by an earlier certificate of this listener",
            ]
        );
    }

    #[test]
    fn local_ca_needs_names_and_excludes_files() {
        let (listeners, errs) = check(
            r#"[ { address: "127.0.0.1:1",
                   certificates: [ { local_ca: /var/lib/lb/ca, names: [localhost, 127.0.0.1], default: true },
                                   { local_ca: /x },
                                   { local_ca: /y, cert: c, key: k, names: [b.test] },
                                   { cert: c, names: [c.test] },
                                   { local_ca: "", names: [d.test] } ] } ]"#,
        );
        let p = "server.tls_listen[0].certificates";
        assert_eq!(
            errs,
            vec![
                format!("{p}[1].names: required with `local_ca`: the names to issue the certificate for"),
                format!("{p}[2].local_ca: either `cert` and `key`, or `local_ca`, or `acme`: only one"),
                format!("{p}[3].key: required (or `local_ca` or `acme` instead of `cert` and `key`)"),
                format!("{p}[4].local_ca: must not be empty"),
            ]
        );
        let c = &listeners[0].certificates[0];
        assert_eq!(
            c.source,
            CertificateSource::LocalCa {
                dir: "/var/lib/lb/ca".into()
            }
        );
        assert_eq!(c.names, Some(vec!["localhost".into(), "127.0.0.1".into()]));
    }
}
