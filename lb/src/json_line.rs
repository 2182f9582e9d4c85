//! JSON written by hand for the access log's hot path: `core::fmt` (padding, flags,
//! `IpAddr`'s intermediate buffer) and tracing's generic formatter made up most of the cost
//! of a line; these write the same text straight into a byte buffer.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// `,"key":"value"` with the value JSON-escaped (a path may hold `"` or `\`).
pub(crate) fn str_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    // writing a &str into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// RFC 3339 UTC with microseconds, as tracing-subscriber prints it:
/// `2026-11-28T20:36:42.773565Z`.
pub(crate) fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    push_num(buf, year.unsigned_abs(), 4);
    for (sep, n) in [
        (b'-', u64::from(month)),
        (b'-', u64::from(day)),
        (b'T', rem / 3600),
        (b':', rem / 60 % 60),
        (b':', rem % 60),
    ] {
        buf.push(sep);
        push_num(buf, n, 2);
    }
    buf.push(b'.');
    push_num(buf, since.subsec_micros().into(), 6);
    buf.push(b'Z');
}

/// `n` in decimal, zero-padded to at least `width` digits (at most 20). The numbers and
/// addresses of a line are written by hand: `core::fmt` (padding, flags, `IpAddr`'s
/// intermediate buffer) made up most of the remaining cost of a line.
pub(crate) fn push_num(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    start = start.min(digits.len() - width.clamp(1, 20));
    buf.extend_from_slice(&digits[start..]);
}

pub(crate) fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_num(buf, octet.into(), 1);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

pub(crate) fn push_socket_addr(buf: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(buf, IpAddr::V4(*v4.ip()));
            buf.push(b':');
            push_num(buf, v4.port().into(), 1);
        }
        SocketAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn timestamp_like_tracing() {
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::from_micros(1_795_898_202_773_565);
        write_timestamp(&mut buf, t);
        assert_eq!(buf, b"2026-11-28T20:36:42.773565Z");
    }

    #[test]
    fn numbers_and_addresses() {
        let mut buf = Vec::new();
        push_num(&mut buf, 0, 1);
        push_num(&mut buf, 7, 3);
        push_num(&mut buf, 1234, 2);
        push_num(&mut buf, u64::MAX, 1);
        assert_eq!(buf, b"0007123418446744073709551615");
        for addr in ["10.20.0.255:5252", "[::1]:80", "0.0.0.0:0"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let mut buf = Vec::new();
            push_socket_addr(&mut buf, addr);
            assert_eq!(String::from_utf8(buf).expect("utf8"), addr.to_string());
        }
    }
}
