//! Every input the fuzz targets (or the property tests) found failing, replayed in plain
//! `cargo test` through the same entry points, so a fix cannot quietly come undone.

/// `config_field`: `upstreams.web.health_check.host: "\0"` (and the same `host` of the
/// upstream) was accepted, so every check (every request) would have sent a broken Host
/// header. Host values are now checked: a host or host:port.
#[test]
fn a_host_that_is_no_header_value_is_refused() {
    for field in ["upstreams.web.health_check.host", "upstreams.web.host"] {
        let i = super::FIELDS
            .iter()
            .position(|(path, _)| *path == field)
            .expect("field");
        let data = [&[u8::try_from(i * 2).expect("small")][..], b"\0"].concat();
        assert!(!super::config_field(&data), "{field}");
    }
}

/// `config`: a health-check `host` with a line break passed `lb -t`, then panicked in
/// pingora's `HttpHealthCheck::new` (`append_header(..).unwrap()`) when startup built the
/// pool.
#[test]
fn a_health_check_host_with_a_line_break_is_refused_before_startup() {
    let text = "version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web:\n    \
                discovery: { static: [\"127.0.0.1:9000\"] }\n    health_check: { host: \"h\\nx\" }\n";
    assert!(!super::config(text.as_bytes()));
}

/// `config_field` (a seed): `server.grace_period: 18446744073709551615s 999999999ns` is a
/// valid duration; rounding it up to whole seconds for pingora overflowed (a panic with
/// overflow checks, zero seconds without). The rounding now saturates, and the value is
/// refused at its field anyway: every duration has a maximum (`grace_period`: 1 h).
#[test]
fn the_longest_grace_period_is_refused_at_its_field() {
    let data = b"\x0418446744073709551615s 999999999ns";
    assert!(!super::config_field(data));
}

/// Review: `timeouts.read: "10000000000000000000s"` passed `lb -t`, then every request
/// panicked on `Instant::now() + timeouts.read`. Every upstream timeout is now at most 1 h.
#[test]
fn a_read_timeout_no_deadline_can_hold_is_refused_at_its_field() {
    for field in ["upstreams.web.timeouts.read", "upstreams.web.timeouts.idle"] {
        let i = super::FIELDS
            .iter()
            .position(|(path, _)| *path == field)
            .expect("field");
        let data = [
            &[u8::try_from(i * 2).expect("small")][..],
            b"10000000000000000000s",
        ]
        .concat();
        assert!(!super::config_field(&data), "{field}");
    }
}

/// `request`: `Host: pro[::1]:8080` on a plaintext listener with the HTTPS redirect. The
/// `http` crate parses it as an authority, but `https://pro[::1]/x` is no URI, so the
/// Location sent was one no client could follow. Such a Host now gets the 400.
#[test]
fn a_host_that_makes_no_https_url_gets_a_400_not_a_broken_redirect() {
    super::request(b"GET /x HTTP/1.1\r\nHost: pro[::1]:8080\r\n\r\n");
}

/// `fast_response` (CI, 60 s): a backend head of 220 headers, which the fast path takes (up
/// to 256, as pingora does). The property's own parse of the client head had room for only
/// 160 headers, so it failed on a head the lb wrote correctly. The checker now has room for
/// all the fast path accepts plus the headers it adds.
#[test]
fn a_backend_head_with_many_headers_is_checked_whole() {
    let mut data = b"\x02HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..220 {
        data.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    data.extend_from_slice(b"Content-Length: 6\r\n\r\n");
    super::fast_response(&data);
}

/// `request` (fuzzing, 60 s): empty lines before the request line, which HTTP/1.1 lets a
/// server skip (RFC 9112, 2.2) and which httparse, pingora and the fast path all skip. The
/// property assumed the client's bytes began with the method; it now skips them too.
#[test]
fn empty_lines_before_the_request_line_are_skipped() {
    super::fast_request(b"\n\r\n\n\r\nGET /api/ HTTP/1.1\r\nHost: a\r\n\r\n");
    super::request(b"\r\n\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n");
}
