//! The fuzz targets' properties under proptest, in plain `cargo test` on stable: the same
//! entry points, fed by generators that know the shapes (config keys and values, HTTP
//! requests with the smuggling shapes, PEM files), plus arbitrary bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_yaml::{Mapping, Value};

use super::AccessLine;

/// The repository's own config files, to mutate.
const EXAMPLES: [&str; 4] = [
    include_str!("../../../deploy/lb.yaml"),
    include_str!("../../../deploy/examples/full.yaml"),
    include_str!("../../../deploy/examples/local.yaml"),
    include_str!("../../../deploy/examples/static.yaml"),
];

/// Values near the edges of what each field takes.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "1",
            "0",
            "-1",
            "0s",
            "1ms",
            "10s",
            "61s",
            "1m30s",
            "2y",
            "18446744073709551615s",
            "18446744073709551615s 999999999ns",
            "584542y",
            "1KiB",
            "10MiB",
            "17179869184GiB",
            "0KiB",
            "127.0.0.1:0",
            "[::1]:443",
            "0.0.0.0:8080",
            "backend:5252",
            "backend:0",
            "backend:65536",
            "a..b:1",
            "/",
            "/api/",
            "api",
            "",
            " ",
            "*.example.test",
            "EXAMPLE.test",
            "h2",
            "http/1.1",
            "round_robin",
            "api.internal",
            "a\nb",
            "a\rb",
            "é",
            "\u{0}",
            "x-\u{7f}",
            "user@host",
            "[::1",
            "*.",
            "-a.test",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|n| Value::Number(n.into())),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// Config-shaped YAML: the real section and key names, values from [`scalar`], nested a
/// few levels (lists and mappings where the file has them).
fn config_tree() -> impl Strategy<Value = Value> {
    const KEYS: [&str; 40] = [
        "version",
        "server",
        "routes",
        "upstreams",
        "listen",
        "tls_listen",
        "admin",
        "threads",
        "grace_period",
        "shutdown_timeout",
        "access_log",
        "access_log_flush",
        "metrics",
        "upstream_keepalive_pool_size",
        "pid_file",
        "upgrade_sock",
        "h2c",
        "https_redirect",
        "hsts",
        "port",
        "exclude",
        "max_age",
        "include_subdomains",
        "preload",
        "address",
        "certificates",
        "protocols",
        "cert",
        "key",
        "local_ca",
        "names",
        "default",
        "prefix",
        "upstream",
        "strip_prefix",
        "max_body_size",
        "discovery",
        "static",
        "dns",
        "health_check",
    ];
    const MORE: [&str; 16] = [
        "interval",
        "resolver",
        "selection",
        "retries",
        "queue_timeout",
        "queue_max",
        "timeouts",
        "connect",
        "read",
        "write",
        "idle",
        "host",
        "tls",
        "sni",
        "ca_file",
        "path",
    ];
    let key = prop_oneof![
        prop::sample::select(KEYS.to_vec()),
        prop::sample::select(MORE.to_vec()),
        Just("web"),
        Just("api"),
    ];
    scalar().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            vec((key.clone(), inner), 0..6).prop_map(|entries| {
                let mut map = Mapping::new();
                for (k, v) in entries {
                    map.insert(Value::String(k.to_string()), v);
                }
                Value::Mapping(map)
            }),
        ]
    })
}

/// A valid skeleton with generated sections: most files reach validation.
fn config_file() -> impl Strategy<Value = String> {
    (config_tree(), config_tree(), config_tree(), any::<bool>()).prop_map(
        |(server, routes, upstreams, versioned)| {
            let mut map = Mapping::new();
            if versioned {
                map.insert("version".into(), 1.into());
            }
            map.insert("server".into(), server);
            map.insert("routes".into(), routes);
            map.insert("upstreams".into(), upstreams);
            serde_yaml::to_string(&Value::Mapping(map)).unwrap_or_default()
        },
    )
}

/// One of the repository's config files with a few edits: a byte range replaced, a line
/// dropped or repeated.
fn mutated_example() -> impl Strategy<Value = String> {
    (
        prop::sample::select(EXAMPLES.to_vec()),
        vec((any::<prop::sample::Index>(), 0..3u8, "\\PC{0,8}"), 1..4),
    )
        .prop_map(|(text, edits)| {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            for (at, kind, with) in edits {
                let i = at.index(lines.len());
                match kind {
                    0 => {
                        let line = &mut lines[i];
                        let cut = line
                            .char_indices()
                            .map(|(j, _)| j)
                            .nth(at.index(line.chars().count().max(1)))
                            .unwrap_or(line.len());
                        line.replace_range(cut.., &with);
                    }
                    1 => {
                        lines.remove(i);
                        if lines.is_empty() {
                            lines.push(with);
                        }
                    }
                    _ => lines.insert(i, lines[i].clone()),
                }
            }
            lines.join("\n")
        })
}

/// HTTP/1 requests: methods, targets, versions and headers around what the lb and pingora
/// decide on, the request-smuggling shapes included, with CRLF or bare LF.
fn http_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "OPTIONS", "CONNECT", "get", "G T", "",
    ]);
    let target = prop::sample::select(vec![
        "/",
        "/api/",
        "/api/x?y=1",
        "/api//x",
        "/api",
        "/static/a.css",
        "/.well-known/acme-challenge/t",
        "http://example.test/api/x",
        "http://u@example.test/",
        "*",
        "example.test:443",
        "/%00",
        "/\u{e9}",
    ]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", ""]);
    let header = prop::sample::select(vec![
        "Host: example.test",
        "Host: example.test:8080",
        "Host: ",
        "Host: a b",
        "Host: user@evil",
        "Host: [::1]:80",
        "Content-Length: 5",
        "Content-Length: 0",
        "Content-Length: 65",
        "Content-Length: 18446744073709551616",
        "Content-Length: 5, 5",
        "Content-Length: -1",
        "Content-Length: +5",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: identity",
        " chunked",
        "Connection: keep-alive",
        "Connection: close, te",
        "Connection: upgrade",
        "Upgrade: websocket",
        "Expect: 100-continue",
        "TE: trailers",
        "X-Request-Id: req-1",
        "X-Request-Id: bad id",
        "X-Request-Id: a",
        "X-Forwarded-For: 10.0.0.1",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
    ]);
    let body = prop::sample::select(vec![
        "",
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "zz\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\n",
        "41\r\n",
        "-1\r\nx\r\n0\r\n\r\n",
        "5;ext=1\r\nhello\r\n0\r\n\r\n",
        "0\r\n\r\nGET /api/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ]);
    (
        method,
        target,
        version,
        vec(
            prop_oneof![header.prop_map(str::to_string), "[ -~]{0,20}"],
            0..6,
        ),
        body,
        any::<bool>(),
    )
        .prop_map(|(m, t, v, headers, body, lf)| {
            let eol = if lf { "\n" } else { "\r\n" };
            let mut req = format!("{m} {t} {v}{eol}");
            for h in headers {
                req.push_str(&h);
                req.push_str(eol);
            }
            req.push_str(eol);
            req.push_str(body);
            req.into_bytes()
        })
}

/// A self-signed certificate and its key for `a.test`, valid around the check time, as
/// one PEM file; optionally a copy with a few bytes changed.
fn pem_file() -> impl Strategy<Value = Vec<u8>> {
    let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("params");
    params.not_before = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
    params.not_after = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("time");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let pem = format!("{}{}", cert.pem(), key.serialize_pem()).into_bytes();
    vec((any::<prop::sample::Index>(), any::<u8>()), 0..4).prop_map(move |edits| {
        let mut pem = pem.clone();
        for (at, byte) in edits {
            let i = at.index(pem.len());
            pem[i] = byte;
        }
        pem
    })
}

fn access_line() -> impl Strategy<Value = AccessLine> {
    let text = || {
        prop_oneof![
            "\\PC{0,16}",
            any::<String>(),
            Just("\"\\\n\u{2028}".to_string())
        ]
    };
    (
        (
            text(),
            any::<Option<std::net::IpAddr>>(),
            text(),
            text(),
            any::<u16>(),
        ),
        (proptest::option::of(text()), proptest::option::of(text())),
        (
            any::<Option<std::net::SocketAddr>>(),
            any::<usize>(),
            any::<u64>(),
        ),
        (any::<usize>(), any::<usize>(), any::<bool>(), any::<bool>()),
        (
            proptest::option::of(text()),
            any::<Option<u8>>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (request_id, client_ip, method, path, status),
                (route, upstream),
                (backend, tries, duration_us),
                (bytes_in, bytes_out, direct, h2),
                (tls_version, error, now_us),
            )| AccessLine {
                request_id,
                client_ip,
                method,
                path,
                status,
                route,
                upstream,
                backend,
                tries,
                duration_us,
                bytes_in,
                bytes_out,
                direct,
                h2,
                tls_version,
                error,
                now_us,
            },
        )
}

/// A chunk-extension as the fast path's parser takes it (RFC 9112 §7.1.1 without the
/// optional whitespace around `;` and `=`): `;name`, `;name=token` or `;name="quoted"`.
fn chunk_extension() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|n| format!(";{n}")),
        ("[a-z]{1,8}", "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}").prop_map(|(n, v)| format!(";{n}={v}")),
        ("[a-z]{1,8}", "[ !#-\\[\\]-~]{0,12}").prop_map(|(n, v)| format!(";{n}=\"{v}\"")),
    ]
}

/// A chunk-size line for `size`: hex in either case, up to three leading zeros, then
/// extensions.
fn size_line(size: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=3usize, any::<bool>(), vec(chunk_extension(), 0..3)).prop_map(
        move |(zeros, upper, ext)| {
            let hex = if upper {
                format!("{size:X}")
            } else {
                format!("{size:x}")
            };
            format!("{}{hex}{}\r\n", "0".repeat(zeros), ext.concat()).into_bytes()
        },
    )
}

/// One chunk: its size line, data of that size (any bytes), CRLF.
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..300).prop_flat_map(|data| {
        size_line(data.len()).prop_map(move |mut line| {
            line.extend_from_slice(&data);
            line.extend_from_slice(b"\r\n");
            line
        })
    })
}

/// A whole chunked body: chunks, the last (zero) chunk, trailer lines, the final CRLF.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(chunk(), 0..6),
        size_line(0),
        vec("[A-Za-z][A-Za-z0-9-]{0,10}: [ -~]{0,20}", 0..3),
    )
        .prop_map(|(chunks, last, trailers)| {
            let mut body = chunks.concat();
            body.extend_from_slice(&last);
            for t in trailers {
                body.extend_from_slice(t.as_bytes());
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"\r\n");
            body
        })
}

/// A valid body with one byte changed, inserted or removed.
fn mutated_chunked_body() -> impl Strategy<Value = Vec<u8>> {
    (
        chunked_body(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..3u8,
    )
        .prop_map(|(mut body, at, byte, how)| {
            let i = at.index(body.len());
            match how {
                0 => body[i] = byte,
                1 => body.insert(i, byte),
                _ => {
                    body.remove(i);
                }
            }
            body
        })
}

proptest! {
    #[test]
    fn chunked_bodies_end_where_they_end_however_they_are_cut(
        body in chunked_body(),
        after in vec(any::<u8>(), 0..40),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut input = body.clone();
        input.extend_from_slice(&after);
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        // The end is found exactly, and what follows is left alone.
        prop_assert_eq!(
            crate::proxy::fast::chunked::Chunked::new().feed(&input),
            Ok(Some(body.len()))
        );
        prop_assert_eq!(super::chunked::in_pieces(&input, &cuts), Ok(Some(body.len())));
        super::chunked(&input);
    }

    #[test]
    fn any_bytes_give_one_chunked_answer_however_they_are_cut(
        data in prop_oneof![2 => mutated_chunked_body(), 1 => any::<Vec<u8>>()],
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        prop_assert_eq!(
            super::chunked::in_pieces(&data, &cuts),
            crate::proxy::fast::chunked::Chunked::new().feed(&data)
        );
        super::chunked(&data);
    }
}

/// A backend's response head: a status line, header lines drawn from the framing and
/// hop-by-hop shapes that matter, the blank line, then a few body bytes.
fn response_head() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("Content-Length: 5".to_string()),
        Just("Content-Length: 0".to_string()),
        Just("Content-Length: 05".to_string()),
        Just("Content-Length: 5, 5".to_string()),
        Just("Content-Length: -1".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: gzip, chunked".to_string()),
        Just("Transfer-Encoding: gzip".to_string()),
        Just("Connection: close".to_string()),
        Just("Connection: keep-alive".to_string()),
        Just("Keep-Alive: timeout=5".to_string()),
        Just("Proxy-Connection: keep-alive".to_string()),
        Just("X-Request-Id: theirs".to_string()),
        Just("Date: yesterday".to_string()),
        Just("Strict-Transport-Security: max-age=1".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,20}",
    ];
    (
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2.0")],
        prop_oneof![
            Just(200u16),
            Just(204),
            Just(304),
            Just(100),
            Just(101),
            Just(404),
            Just(502),
            100u16..1000
        ],
        "[ -~]{0,12}",
        vec(line, 0..8),
        vec(any::<u8>(), 0..8),
        any::<u8>(),
    )
        .prop_map(|(version, status, reason, lines, body, flags)| {
            let mut head = vec![flags];
            head.extend_from_slice(format!("{version} {status} {reason}\r\n").as_bytes());
            for l in lines {
                head.extend_from_slice(l.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(&body);
            head
        })
}

proptest! {
    #[test]
    fn backend_heads_are_framed_or_refused(
        data in prop_oneof![4 => response_head(), 1 => any::<Vec<u8>>()]
    ) {
        super::fast_response(&data);
    }
}

/// The fast path takes a simple request on the fuzz lb without the HTTPS redirect, declines
/// it on plaintext with the redirect, and takes it over TLS there: the request properties
/// above are not vacuous for it.
#[test]
fn the_fast_path_takes_a_simple_request() {
    let simple = b"GET /static/a?b=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
    let states = super::request::states();
    let peer = Some(std::net::IpAddr::from([192, 0, 2, 7]));
    let take = |i: usize, tls: bool| {
        crate::proxy::fast::request_head::prepare(simple, peer, tls, &states[i].snapshot())
    };
    let p = take(0, false).expect("simple, no redirect");
    assert!(String::from_utf8_lossy(&p.upstream_head)
        .contains("x-forwarded-for: 1.2.3.4, 192.0.2.7\r\n"));
    assert!(take(1, false).is_none(), "the redirect answers plaintext");
    assert!(take(1, true).is_some(), "no redirect over TLS");
    super::fast_request(simple);
}

proptest! {
    #[test]
    fn config_files_are_refused_or_start(
        text in prop_oneof![config_file(), mutated_example(), any::<String>()]
    ) {
        super::config(text.as_bytes());
    }

    #[test]
    fn a_value_at_a_field_is_taken_as_written_or_refused_there(
        selector in any::<u8>(),
        value in prop_oneof![
            scalar().prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default()),
            scalar().prop_map(|v| v.as_str().map(str::to_string).unwrap_or_default()),
            any::<String>(),
        ]
    ) {
        let mut data = vec![selector];
        data.extend_from_slice(value.trim_end_matches('\n').as_bytes());
        super::config_field(&data);
    }

    #[test]
    fn requests_are_answered_or_proxied_whole(
        data in prop_oneof![4 => http_request(), 1 => any::<Vec<u8>>()]
    ) {
        super::request(&data);
    }

    #[test]
    fn pem_files_load_or_are_refused(data in prop_oneof![pem_file(), any::<Vec<u8>>()]) {
        super::pem(&data);
    }

    #[test]
    fn access_lines_read_back_as_written(input in access_line()) {
        super::access_line(input);
    }
}

/// Every example and every field's template, as they are: the entry points accept what
/// they must (a broken fixture would make every property above vacuous).
#[test]
fn the_examples_and_templates_are_valid() {
    for text in EXAMPLES {
        assert!(super::config(text.as_bytes()), "{text}");
    }
    for (i, (path, _)) in super::FIELDS.iter().enumerate() {
        // (value, written as YAML rather than as a string)
        let (valid, yaml) = match *path {
            "server.listen[0]" | "server.admin" | "server.tls_listen[0].address" => {
                ("127.0.0.1:7", false)
            }
            "upstreams.web.discovery.static[0]" | "upstreams.web.discovery.resolver" => {
                ("127.0.0.1:53", false)
            }
            "upstreams.web.discovery.dns" => ("backend:80", false),
            "server.threads" | "server.https_redirect.port" | "upstreams.web.retries" => {
                ("1", true)
            }
            "server.tls_listen[0].protocols[0]" => ("h2", false),
            "upstreams.web.selection" => ("round_robin", false),
            "routes[0].hsts" => ("true", true),
            p if p.contains("prefix") || p.contains("exclude") || p.ends_with(".path") => {
                ("/x", false)
            }
            p if p.ends_with("names[0]") || p.ends_with("host") || p.ends_with("sni") => {
                ("a.test", false)
            }
            "upstreams.$V" | "server.pid_file" | "routes[0].max_body_size" => ("5", false),
            _ => ("5s", false),
        };
        let selector = u8::try_from(i * 2 + usize::from(yaml)).expect("few fields");
        let data = [&[selector][..], valid.as_bytes()].concat();
        assert!(super::config_field(&data), "{path}: {valid:?} refused");
    }
}
