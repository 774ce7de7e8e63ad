//! Where a user's notification channel may post: not to the gateway's own machine or
//! network. A channel made by someone other than an administrator may not reach a
//! loopback, link-local (cloud metadata), private (RFC 1918, fc00::/7), unspecified,
//! multicast or broadcast address, unless the operator lists its host in
//! `notify.channel_hosts`. The address is checked after name resolution, and the
//! request goes to the address checked, so a name that resolves (or re-resolves) to
//! such an address is caught too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of address `ip` is, when channels of users may not post to it.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_kind(v4),
            None => v6_kind(v6),
        },
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || ip.octets()[0] == 0 {
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// `host` as the URL writes it, without the brackets of an IPv6 literal.
pub fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Why a user's channel may not name `host`, when the URL alone tells: an internal
/// address literal, or `localhost`. `None` otherwise (delivery checks what the name
/// resolves to).
pub fn literal_refusal(host: &str) -> Option<String> {
    let bare = bare_host(host);
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Some(refusal(host, "loopback"));
    }
    let ip: IpAddr = bare.parse().ok()?;
    internal_kind(ip).map(|kind| refusal(host, kind))
}

/// Why a user's channel may not post to `address`, which `host` resolved to, or
/// `None`.
pub fn resolved_refusal(host: &str, address: SocketAddr) -> Option<String> {
    internal_kind(address.ip()).map(|kind| {
        if bare_host(host).parse::<IpAddr>().is_ok() {
            refusal(host, kind)
        } else {
            format!(
                "url: host {host:?} resolves to {}, a {kind} address; {}",
                address.ip(),
                ADVICE
            )
        }
    })
}

const ADVICE: &str = "channels of users may not post to the gateway's own machine or network. \
     Use a public address, or ask the operator to list the host in notify.channel_hosts";

fn refusal(host: &str, kind: &str) -> String {
    format!("url: host {host:?} is a {kind} address; {ADVICE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("169.254.169.254", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
        ] {
            assert_eq!(internal_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["93.184.216.34", "172.32.0.1", "8.8.8.8", "2001:db8::1"] {
            assert_eq!(internal_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn literals_and_localhost_are_told_from_the_url() {
        for host in [
            "127.0.0.1",
            "[::1]",
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "10.0.0.1",
        ] {
            let refused = literal_refusal(host).unwrap_or_default();
            assert!(
                refused.contains("notify.channel_hosts"),
                "{host}: {refused}"
            );
        }
        for host in ["hooks.slack.com", "93.184.216.34", "[2001:db8::1]"] {
            assert_eq!(literal_refusal(host), None, "{host}");
        }
    }
}
