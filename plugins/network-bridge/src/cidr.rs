//! IPv4 prefixes as the backend reasons about them: a network address and a length.

use std::fmt;

use keelson_plugin_sdk::{IpAddress, IpPrefix};

/// An IPv4 network such as `10.244.1.0/24`, its address already masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network of `p` (host bits cleared); `None` for IPv6 or a length above 32.
    pub(crate) fn from_prefix(p: &IpPrefix) -> Option<Ipv4Cidr> {
        let IpAddress::Ipv4((a, b, c, d)) = p.address else {
            return None;
        };
        if p.prefix_length > 32 {
            return None;
        }
        Some(Ipv4Cidr {
            base: u32::from_be_bytes([a, b, c, d]) & mask(p.prefix_length),
            prefix: p.prefix_length,
        })
    }

    /// Parses `a.b.c.d/n`, requiring the host bits to be zero as Kubernetes does for
    /// `--cluster-cidr`.
    pub(crate) fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let (address, length) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR such as 10.244.0.0/16"))?;
        let address: std::net::Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv4 CIDR such as 10.244.0.0/16"))?;
        let prefix: u8 = length
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?;
        let base = u32::from(address);
        if base & !mask(prefix) != 0 {
            return Err(format!(
                "{text:?} has host bits set; the network is {}",
                Ipv4Cidr {
                    base: base & mask(prefix),
                    prefix
                }
            ));
        }
        Ok(Ipv4Cidr { base, prefix })
    }

    pub(crate) fn prefix_length(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the network spans, network and broadcast included.
    pub(crate) fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The address `offset` from the network address.
    pub(crate) fn nth(&self, offset: u32) -> u32 {
        self.base.wrapping_add(offset)
    }

    pub(crate) fn contains(&self, ip: u32) -> bool {
        ip & mask(self.prefix) == self.base
    }

    /// The network as a WIT prefix (`10.244.1.0/24`).
    pub(crate) fn to_prefix(self) -> IpPrefix {
        IpPrefix {
            address: ipv4(self.base),
            prefix_length: self.prefix,
        }
    }

    /// Address `ip` with this network's prefix length (`10.244.1.5/24`), as an interface
    /// address.
    pub(crate) fn interface_address(&self, ip: u32) -> IpPrefix {
        IpPrefix {
            address: ipv4(ip),
            prefix_length: self.prefix,
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

pub(crate) fn ipv4(ip: u32) -> IpAddress {
    let [a, b, c, d] = ip.to_be_bytes();
    IpAddress::Ipv4((a, b, c, d))
}

/// The IPv4 address as a number; `None` for IPv6.
pub(crate) fn ipv4_bits(address: &IpAddress) -> Option<u32> {
    match *address {
        IpAddress::Ipv4((a, b, c, d)) => Some(u32::from_be_bytes([a, b, c, d])),
        IpAddress::Ipv6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_checks_form_length_and_host_bits() {
        let c = Ipv4Cidr::parse("10.244.0.0/16").expect("valid");
        assert_eq!(c.to_string(), "10.244.0.0/16");
        assert_eq!(c.size(), 65536);
        assert!(c.contains(u32::from_be_bytes([10, 244, 7, 9])));
        assert!(!c.contains(u32::from_be_bytes([10, 245, 0, 1])));
        assert_eq!(
            Ipv4Cidr::parse("10.244.1.5/16").expect_err("host bits"),
            "\"10.244.1.5/16\" has host bits set; the network is 10.244.0.0/16"
        );
        assert!(Ipv4Cidr::parse("10.244.0.0").is_err());
        assert!(Ipv4Cidr::parse("10.244.0.0/33").is_err());
        assert!(Ipv4Cidr::parse("fd00::/64").is_err());
        assert_eq!(Ipv4Cidr::parse("0.0.0.0/0").expect("all").size(), 1 << 32);
    }

    #[test]
    fn a_prefix_is_masked_to_its_network() {
        let p = IpPrefix {
            address: IpAddress::Ipv4((10, 244, 1, 7)),
            prefix_length: 24,
        };
        let c = Ipv4Cidr::from_prefix(&p).expect("ipv4");
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert_eq!(c.nth(1), u32::from_be_bytes([10, 244, 1, 1]));
    }
}
