//! IP networks written in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or a single
//! address), for settings that name a set of peers. Parsed here rather than with a crate:
//! parsing and matching are a few lines over the standard library's address types.

use std::net::IpAddr;

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this network. An IPv4 address written as IPv6
    /// (`::ffff:10.0.0.1`, as a dual-stack socket reports it) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Written back as parsed: an address alone when the network is one address.
impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == width {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, width: u8) -> bool {
    prefix == 0 || a >> (width - prefix) == b >> (width - prefix)
}

impl std::str::FromStr for IpNet {
    type Err = String;

    /// The error says what is wrong and how to write it.
    fn from_str(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            "not an IP address or network; write an address, or an address and a prefix \
             length such as 10.0.0.0/8 or 2001:db8::/32"
                .to_string()
        })?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= width => p,
                _ => {
                    return Err(format!(
                        "the prefix length must be a number from 0 to {width}"
                    ))
                }
            },
        };
        let bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if prefix < width && bits << (128 - (width - prefix)) != 0 {
            let kept = bits.checked_shr(u32::from(width - prefix)).unwrap_or(0);
            let network_bits = kept.checked_shl(u32::from(width - prefix)).unwrap_or(0);
            let network = match addr {
                IpAddr::V4(_) => IpAddr::from((network_bits as u32).to_be_bytes()),
                IpAddr::V6(_) => IpAddr::from(network_bits.to_be_bytes()),
            };
            return Err(format!(
                "address bits are set past the /{prefix} prefix; write {network}/{prefix}"
            ));
        }
        // An IPv4 network written as IPv6 matches IPv4 peers.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(IpNet {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Ok(IpNet { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(
            !net("::/0").contains(ip("203.0.113.1")),
            "families stay apart"
        );
    }

    #[test]
    fn ipv4_written_as_ipv6_is_ipv4() {
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
    }

    #[test]
    fn mistakes_are_explained() {
        let err = "10.0.0.1/8".parse::<IpNet>().unwrap_err();
        assert!(err.contains("write 10.0.0.0/8"), "{err}");
        let err = "2001:db8::1/32".parse::<IpNet>().unwrap_err();
        assert!(err.contains("write 2001:db8::/32"), "{err}");
        assert!("10.0.0.0/33"
            .parse::<IpNet>()
            .unwrap_err()
            .contains("0 to 32"));
        assert!("proxy.example".parse::<IpNet>().is_err());
        assert!("10.0.0.0/x".parse::<IpNet>().is_err());
    }
}
