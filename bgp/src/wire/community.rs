//! Community values: standard (RFC 1997), extended (RFC 4360) and large (RFC 8092). The
//! attribute framing lives in `attributes`.

use std::fmt;

/// A standard community (RFC 1997): `asn:value` in 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    /// NO_EXPORT: do not advertise outside the AS (or confederation).
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    /// NO_ADVERTISE: do not advertise to any peer.
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);
    /// NO_EXPORT_SUBCONFED: do not advertise to external peers.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xffff_ff03);
    /// LLGR_STALE (RFC 9494): the route is long-lived stale.
    pub const LLGR_STALE: Community = Community(0xffff_0006);
    /// NO_LLGR (RFC 9494): do not keep the route as long-lived stale.
    pub const NO_LLGR: Community = Community(0xffff_0007);

    /// The community `asn:value`.
    pub const fn new(asn: u16, value: u16) -> Community {
        Community(((asn as u32) << 16) | value as u32)
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// An extended community (RFC 4360), kept as its eight octets (type, subtype, value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtendedCommunity(pub [u8; 8]);

impl ExtendedCommunity {
    /// A two-octet-AS route target `rt asn:value` (type 0x00, subtype 0x02).
    pub fn route_target(asn: u16, value: u32) -> ExtendedCommunity {
        let [a, b] = asn.to_be_bytes();
        let [c, d, e, f] = value.to_be_bytes();
        ExtendedCommunity([0x00, 0x02, a, b, c, d, e, f])
    }
}

/// A large community (RFC 8092): three 32-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    /// The global administrator, usually the AS.
    pub global_admin: u32,
    /// Local data part 1.
    pub local_data_1: u32,
    /// Local data part 2.
    pub local_data_2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.global_admin, self.local_data_1, self.local_data_2
        )
    }
}
