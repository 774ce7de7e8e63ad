//! Who the client is. Without `trusted_proxies` it is the connection's peer, and a
//! client's own `X-Forwarded-For` is discarded: nobody writes an address of their choice
//! into Deploy's audit trail. Behind trusted proxies it is the right-most
//! `X-Forwarded-For` entry that none of them wrote.
//!
//! Both paths send Deploy an `X-Forwarded-For` that starts with the address found here
//! and ends with the peer's, and give the token check (failure limits, last-used
//! address) the same address.
//!
//! The gateway's own routes also need the scheme and host the browser used: behind a
//! proxy that terminates TLS the connection here is plain http, so a trusted proxy's
//! `X-Forwarded-Proto` and `X-Forwarded-Host` say them ([`addressed`]); anyone else's
//! are ignored.

use std::net::{IpAddr, Ipv6Addr};

use crate::core::cidr::IpNet;

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Default)]
pub struct TrustedProxies(Box<[IpNet]>);

/// The client of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The address limits, audit and allowlists go by.
    pub ip: IpAddr,
    /// `X-Forwarded-For` entries passed on ahead of the peer, from the client's
    /// rightwards and comma-separated; empty (no allocation) when the peer is the client.
    pub chain: String,
}

impl TrustedProxies {
    pub fn new(networks: &[IpNet]) -> TrustedProxies {
        TrustedProxies(networks.into())
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client of a request that arrived from `peer` with these `X-Forwarded-For`
    /// header values (in order). Only read when `peer` is a trusted proxy.
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> Resolved {
        let peer_is_client = Resolved {
            ip: peer,
            chain: String::new(),
        };
        if self.0.is_empty() || !self.trusts(peer) {
            return peer_is_client;
        }
        let entries: Vec<&[u8]> = forwarded_for
            .flat_map(|value| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|entry| !entry.is_empty())
            .collect();
        // From the right: every trusted proxy's entry is skipped; the first entry no
        // trusted proxy could have written is the client. An entry that is not an
        // address ends the walk at the last address read.
        let mut addresses: Vec<IpAddr> = Vec::new();
        for entry in entries.iter().rev() {
            let Some(ip) = address(entry) else { break };
            addresses.push(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        let Some(&client) = addresses.last() else {
            return peer_is_client;
        };
        let mut chain = String::new();
        for ip in addresses.iter().rev() {
            if !chain.is_empty() {
                chain.push_str(", ");
            }
            chain.push_str(&ip.to_string());
        }
        Resolved { ip: client, chain }
    }
}

impl Resolved {
    /// The `X-Forwarded-For` value for Deploy: the chain, then the peer.
    pub fn write(&self, out: &mut Vec<u8>, peer: &[u8]) {
        if !self.chain.is_empty() {
            out.extend_from_slice(self.chain.as_bytes());
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(peer);
    }
}

/// An `X-Forwarded-For` entry as an address: `192.0.2.1`, `2001:db8::1`, or either with
/// a port (`192.0.2.1:5000`, `[2001:db8::1]:5000`).
fn address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    let ip = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The scheme and host a client addressed: from a trusted proxy (`peer_trusted`), the
/// first entry of its `X-Forwarded-Proto` and `X-Forwarded-Host` (the client-facing
/// proxy's), falling back to this connection's TLS and `Host`; from anyone else, this
/// connection's alone. Returns whether the scheme is https, and the host.
pub fn addressed(
    headers: &http::HeaderMap,
    peer_trusted: bool,
    tls: bool,
) -> (bool, Option<String>) {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let own_host = || {
        headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if !peer_trusted {
        return (tls, own_host());
    }
    let https = match first("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => true,
        Some(proto) if proto.eq_ignore_ascii_case("http") => false,
        _ => tls,
    };
    let host = first("x-forwarded-host")
        .filter(|h| crate::edge::headers::valid_host(h.as_bytes()))
        .map(str::to_string)
        .or_else(own_host);
    (https, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        TrustedProxies::new(&nets)
    }

    fn resolve(trusted: &TrustedProxies, peer: &str, values: &[&str]) -> (String, String) {
        let resolved = trusted.resolve(peer.parse().unwrap(), values.iter().map(|v| v.as_bytes()));
        let mut header = Vec::new();
        resolved.write(&mut header, peer.as_bytes());
        (resolved.ip.to_string(), String::from_utf8(header).unwrap())
    }

    #[test]
    fn scheme_and_host_come_from_trusted_proxies_only() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "gw.internal:4516".parse().unwrap());
        headers.insert("x-forwarded-proto", "https, http".parse().unwrap());
        headers.insert("x-forwarded-host", "deploy.example.com".parse().unwrap());
        assert_eq!(
            addressed(&headers, true, false),
            (true, Some("deploy.example.com".into()))
        );
        assert_eq!(
            addressed(&headers, false, false),
            (false, Some("gw.internal:4516".into()))
        );
        headers.insert("x-forwarded-host", "evil/path".parse().unwrap());
        headers.insert("x-forwarded-proto", "gopher".parse().unwrap());
        assert_eq!(
            addressed(&headers, true, true),
            (true, Some("gw.internal:4516".into()))
        );
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = proxies(&[]);
        assert_eq!(
            resolve(&none, "198.51.100.2", &["203.0.113.9"]),
            ("198.51.100.2".into(), "198.51.100.2".into())
        );
        // Nor is a peer outside the trusted ranges believed.
        let lb = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(&lb, "198.51.100.2", &["203.0.113.9"]),
            ("198.51.100.2".into(), "198.51.100.2".into())
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let lbs = proxies(&["10.0.0.0/8", "2001:db8::/32"]);
        // The client wrote 192.0.2.66 itself; the proxy appended what it saw.
        assert_eq!(
            resolve(&lbs, "10.0.0.5", &["192.0.2.66, 203.0.113.9"]),
            ("203.0.113.9".into(), "203.0.113.9, 10.0.0.5".into())
        );
        // Two proxies, in two header lines, one of them IPv6 with a port.
        assert_eq!(
            resolve(
                &lbs,
                "10.0.0.5",
                &["192.0.2.66", "203.0.113.9, [2001:db8::7]:443"]
            ),
            (
                "203.0.113.9".into(),
                "203.0.113.9, 2001:db8::7, 10.0.0.5".into()
            )
        );
        // Nothing forwarded: the proxy itself is the client.
        assert_eq!(
            resolve(&lbs, "10.0.0.5", &[]),
            ("10.0.0.5".into(), "10.0.0.5".into())
        );
        // Every entry trusted: the left-most is as far as can be told.
        assert_eq!(
            resolve(&lbs, "10.0.0.5", &["10.0.0.9"]),
            ("10.0.0.9".into(), "10.0.0.9, 10.0.0.5".into())
        );
        // Garbage ends the walk at the last address read.
        assert_eq!(
            resolve(&lbs, "10.0.0.5", &["203.0.113.9, evil, 10.0.0.7"]),
            ("10.0.0.7".into(), "10.0.0.7, 10.0.0.5".into())
        );
        // A dual-stack socket's way of writing an IPv4 peer.
        assert_eq!(
            resolve(&lbs, "::ffff:10.0.0.5", &["203.0.113.9:5000"]).0,
            "203.0.113.9"
        );
    }
}
