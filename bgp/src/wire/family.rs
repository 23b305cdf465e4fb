//! Address families (RFC 4760): AFI and SAFI numbers, the (AFI, SAFI) pair, and a small set of
//! the families tern speaks.

use std::fmt;

/// Address Family Identifier (IANA "Address Family Numbers"). Unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Afi(pub u16);

impl Afi {
    /// IP version 4.
    pub const IPV4: Afi = Afi(1);
    /// IP version 6.
    pub const IPV6: Afi = Afi(2);
}

/// Subsequent Address Family Identifier (IANA "SAFI Values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Safi(pub u8);

impl Safi {
    /// Unicast forwarding.
    pub const UNICAST: Safi = Safi(1);
    /// Multicast forwarding.
    pub const MULTICAST: Safi = Safi(2);
}

/// An (AFI, SAFI) pair, as carried by capabilities, MP_REACH_NLRI, MP_UNREACH_NLRI and
/// ROUTE-REFRESH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Family {
    /// The address family.
    pub afi: Afi,
    /// The subsequent address family.
    pub safi: Safi,
}

impl Family {
    /// IPv4 unicast: the family of the UPDATE message's own NLRI and withdrawn routes fields.
    pub const IPV4_UNICAST: Family = Family {
        afi: Afi::IPV4,
        safi: Safi::UNICAST,
    };
    /// IPv6 unicast, carried in MP_REACH_NLRI and MP_UNREACH_NLRI.
    pub const IPV6_UNICAST: Family = Family {
        afi: Afi::IPV6,
        safi: Safi::UNICAST,
    };

    /// Builds a family from its wire numbers.
    pub const fn new(afi: u16, safi: u8) -> Family {
        Family {
            afi: Afi(afi),
            safi: Safi(safi),
        }
    }

    /// Whether tern can decode this family's NLRI.
    pub fn is_supported(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi {}/safi {}", afi.0, safi.0),
        }
    }
}

/// A set of the families tern supports, used for per-family negotiated options such as ADD-PATH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Families(u8);

impl Families {
    /// No family.
    pub const NONE: Families = Families(0);
    /// IPv4 and IPv6 unicast.
    pub const ALL: Families = Families(0b11);

    fn bit(family: Family) -> u8 {
        match family {
            Family::IPV4_UNICAST => 0b01,
            Family::IPV6_UNICAST => 0b10,
            _ => 0,
        }
    }

    /// The set holding one family (empty if tern does not support it).
    pub fn only(family: Family) -> Families {
        Families(Self::bit(family))
    }

    /// Adds a family; unsupported families are ignored.
    pub fn insert(&mut self, family: Family) {
        self.0 |= Self::bit(family);
    }

    /// Whether the set holds `family`.
    pub fn contains(self, family: Family) -> bool {
        let bit = Self::bit(family);
        bit != 0 && self.0 & bit == bit
    }
}
