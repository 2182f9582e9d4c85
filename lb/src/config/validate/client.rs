//! `server.client_timeouts` and `server.request_limits` → [`ClientLimits`].

use super::Errors;
use crate::config::raw::{RawClientTimeouts, RawRequestLimits};
use crate::config::{defaults, ClientLimits};

pub(super) fn client_limits(
    errs: &mut Errors,
    timeouts: Option<&RawClientTimeouts>,
    limits: Option<&RawRequestLimits>,
) -> ClientLimits {
    let mut client = ClientLimits::default();
    if let Some(t) = timeouts {
        let mut timeout = |key: &str, value, default| {
            let path = format!("server.client_timeouts.{key}");
            errs.duration(&path, value, default, defaults::CLIENT_TIMEOUT_MAX)
        };
        client.request_head_timeout = timeout(
            "request_head",
            t.request_head.as_ref(),
            defaults::REQUEST_HEAD_TIMEOUT,
        );
        client.keepalive_timeout = timeout(
            "keepalive",
            t.keepalive.as_ref(),
            defaults::KEEPALIVE_TIMEOUT,
        );
        client.request_body_timeout = timeout(
            "request_body",
            t.request_body.as_ref(),
            defaults::REQUEST_BODY_TIMEOUT,
        );
        client.response_write_timeout = timeout(
            "response_write",
            t.response_write.as_ref(),
            defaults::RESPONSE_WRITE_TIMEOUT,
        );
    }
    if let Some(l) = limits {
        // A head smaller than 1 KiB refuses ordinary browser requests (cookies alone).
        client.head_size = errs.byte_size_within(
            "server.request_limits.head_size",
            l.head_size.as_ref(),
            defaults::HEAD_SIZE as u64,
            (1 << 10, defaults::HEAD_SIZE_MAX as u64),
        ) as usize;
        client.headers = errs.count(
            "server.request_limits.headers",
            l.headers,
            defaults::HEADERS,
            1,
            Some(defaults::HEADERS_MAX as i64),
        );
        client.uri_length = errs.byte_size_within(
            "server.request_limits.uri_length",
            l.uri_length.as_ref(),
            defaults::URI_LENGTH as u64,
            (16, defaults::HEAD_SIZE_MAX as u64),
        ) as usize;
        if client.uri_length >= client.head_size {
            errs.push(
                "server.request_limits.uri_length",
                format!(
                    "{} must be smaller than head_size ({})",
                    client.uri_length, client.head_size
                ),
            );
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{collect, yaml};
    use std::time::Duration;

    fn check(timeouts: &str, limits: &str) -> (ClientLimits, Vec<String>) {
        let t: Option<RawClientTimeouts> = yaml(timeouts);
        let l: Option<RawRequestLimits> = yaml(limits);
        collect(|errs| client_limits(errs, t.as_ref(), l.as_ref()))
    }

    #[test]
    fn absent_blocks_give_the_documented_defaults() {
        let (client, errs) = check("null", "null");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(client.request_head_timeout, Duration::from_secs(10));
        assert_eq!(client.keepalive_timeout, Duration::from_secs(30));
        assert_eq!(client.request_body_timeout, Duration::from_secs(60));
        assert_eq!(client.response_write_timeout, Duration::from_secs(60));
        assert_eq!(client.head_size, 32 * 1024);
        assert_eq!(client.headers, 100);
        assert_eq!(client.uri_length, 8 * 1024);
    }

    #[test]
    fn values_are_read_with_units() {
        let (client, errs) = check(
            "{ request_head: 2s, keepalive: 500ms, request_body: 1m, response_write: 5s }",
            "{ head_size: 64KiB, headers: 50, uri_length: 2048 }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(client.request_head_timeout, Duration::from_secs(2));
        assert_eq!(client.keepalive_timeout, Duration::from_millis(500));
        assert_eq!(client.request_body_timeout, Duration::from_secs(60));
        assert_eq!(client.response_write_timeout, Duration::from_secs(5));
        assert_eq!(
            (client.head_size, client.headers, client.uri_length),
            (65536, 50, 2048)
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_path() {
        let (_, errs) = check(
            "{ request_head: 0s, keepalive: 2h, request_body: 5, response_write: 0ms }",
            "{ head_size: 2MiB, headers: 300, uri_length: 31KiB }",
        );
        assert_eq!(
            errs,
            vec![
                "server.client_timeouts.request_head: \"0s\" must be greater than zero",
                "server.client_timeouts.keepalive: \"2h\" is longer than the maximum 3600s",
                "server.client_timeouts.request_body: 5 is not a duration (write a unit, e.g. \"5s\" or \"5ms\")",
                "server.client_timeouts.response_write: \"0ms\" must be greater than zero",
                "server.request_limits.head_size: \"2MiB\" must be between 1024 and 1048576 bytes",
                "server.request_limits.headers: 300 must be at most 256",
            ]
        );
        let (_, errs) = check("null", "{ head_size: 4KiB, uri_length: 4KiB }");
        assert_eq!(
            errs,
            vec!["server.request_limits.uri_length: 4096 must be smaller than head_size (4096)"]
        );
    }
}
