//! IP addresses and CIDR blocks, as policies match them and blocks cover them.

use std::fmt;
use std::net::IpAddr;

/// Why a value is not an address or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrError(String);

/// An IPv4 or IPv6 CIDR block; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7` or `::1`. Host bits
    /// below the prefix are ignored, as Envoy does.
    ///
    /// # Errors
    /// [`CidrError`] for anything else.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(format!("`{s}` is not an IP address or CIDR block"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u8>().map_err(|_| err())?,
            Some(_) => return Err(err()),
        };
        if prefix > max {
            return Err(CidrError(format!("`{s}`: prefix length {prefix} exceeds {max}")));
        }
        // `::ffff:10.0.0.0/104` is the IPv4 block 10.0.0.0/8.
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(Self { network: mask(IpAddr::V4(v4), prefix - 96), prefix: prefix - 96 });
        }
        Ok(Self { network: mask(ip, prefix), prefix })
    }

    /// The block of length `prefix` around `ip` (IPv4-mapped addresses as
    /// IPv4; a prefix longer than the address is cut to its length).
    #[must_use]
    pub fn around(ip: IpAddr, prefix: u8) -> Self {
        let ip = canonical_ip(ip);
        let prefix = prefix.min(if ip.is_ipv4() { 32 } else { 128 });
        Self { network: mask(ip, prefix), prefix }
    }

    /// The block's first address.
    #[must_use]
    pub const fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    #[must_use]
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the block is a single address (/32 or /128).
    #[must_use]
    pub const fn is_single(&self) -> bool {
        match self.network {
            IpAddr::V4(_) => self.prefix == 32,
            IpAddr::V6(_) => self.prefix == 128,
        }
    }

    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses are
    /// compared as IPv4, so `::ffff:10.0.0.1` cannot slip past `10.0.0.0/8`.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (canonical_ip(ip), self.network) {
            (ip @ IpAddr::V4(_), IpAddr::V4(_)) | (ip @ IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            // An IPv6 block such as `::/0` or `::ffff:0:0/96` covers mapped IPv4.
            (IpAddr::V4(v4), IpAddr::V6(_)) => mask(IpAddr::V6(v4.to_ipv6_mapped()), self.prefix) == self.network,
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
#[must_use]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((bits & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c("10.0.0.0/8").contains(ip("10.200.1.1")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("10.1.2.3/8").contains(ip("10.9.9.9")), "host bits are ignored");
        assert!(c("192.0.2.7").contains(ip("192.0.2.7")) && !c("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")) && !c("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(c("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(c("::1").contains(ip("::1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")), "mapped addresses compare as IPv4");
        assert!(c("::ffff:10.0.0.0/104").contains(ip("10.0.0.1")));
        assert_eq!(c("::ffff:10.0.0.0/104"), c("10.0.0.0/8"));
        assert!(c("::/0").contains(ip("10.0.0.1")) && c("::ffff:0:0/96").contains(ip("1.2.3.4")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "10.0.0.0/+8", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(c("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::around(ip("::ffff:10.9.8.7"), 24), c("10.9.8.0/24"));
        assert_eq!(Cidr::around(ip("10.9.8.7"), 40), c("10.9.8.7"));
        assert!(c("10.9.8.7").is_single() && !c("10.9.8.0/24").is_single());
        assert_eq!((c("2001:db8::/32").network(), c("2001:db8::/32").prefix()), (ip("2001:db8::"), 32));
    }
}
