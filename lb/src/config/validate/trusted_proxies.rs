//! `server.trusted_proxies`: the peers whose `X-Forwarded-For` names the client.

use ipnet::IpNet;

use super::Errors;

/// CIDRs, or single addresses (a /32 or /128). Host bits after the prefix are ignored
/// (`10.1.2.3/8` is `10.0.0.0/8`), as nginx's `set_real_ip_from` does.
pub(super) fn trusted_proxies(errs: &mut Errors, raw: Option<&[String]>) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (i, text) in raw.unwrap_or_default().iter().enumerate() {
        let t = text.trim();
        let net = t
            .parse::<IpNet>()
            .ok()
            .or_else(|| t.parse::<std::net::IpAddr>().ok().map(IpNet::from));
        match net {
            Some(net) => nets.push(net.trunc()),
            None => errs.push(
                format!("server.trusted_proxies[{i}]"),
                format!("{text:?} is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)"),
            ),
        }
    }
    nets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::collect;

    fn check(list: &[&str]) -> (Vec<String>, Vec<String>) {
        let raw: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let (nets, errs) = collect(|errs| trusted_proxies(errs, Some(&raw)));
        (nets.iter().map(ToString::to_string).collect(), errs)
    }

    #[test]
    fn cidrs_and_single_addresses() {
        assert_eq!(
            check(&[
                "10.0.0.0/8",
                "192.0.2.7",
                "2001:db8::/32",
                "::1",
                "10.1.2.3/16"
            ]),
            (
                vec![
                    "10.0.0.0/8".to_string(),
                    "192.0.2.7/32".to_string(),
                    "2001:db8::/32".to_string(),
                    "::1/128".to_string(),
                    "10.1.0.0/16".to_string(),
                ],
                vec![]
            )
        );
        assert_eq!(
            collect(|errs| trusted_proxies(errs, None)),
            (vec![], vec![])
        );
    }

    #[test]
    fn anything_else_is_an_error_with_its_index() {
        assert_eq!(
            check(&["10.0.0.0/8", "10.0.0.0/33", "proxy.local", ""]).1,
            vec![
                "server.trusted_proxies[1]: \"10.0.0.0/33\" is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)",
                "server.trusted_proxies[2]: \"proxy.local\" is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)",
                "server.trusted_proxies[3]: \"\" is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)",
            ]
        );
    }
}
