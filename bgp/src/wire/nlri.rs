//! Prefixes in the NLRI, withdrawn routes, MP_REACH_NLRI and MP_UNREACH_NLRI fields
//! (RFC 4271 section 4.3, RFC 4760 section 5), with the ADD-PATH path identifier (RFC 7911).
//!
//! ```text
//! +---------------------------+
//! | Path Identifier (4 octets)|   only where ADD-PATH was negotiated for the family
//! +---------------------------+
//! | Length (1 octet, in bits) |
//! +---------------------------+
//! | Prefix (variable)         |   the fewest octets that hold Length bits
//! +---------------------------+
//! ```
//! Bits after the prefix length are ignored on receipt (RFC 4271) and cleared, so equal routes
//! compare equal.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::family::Afi;
use super::reader::Reader;

/// One route in an NLRI field: a prefix and, with ADD-PATH, its path identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    /// The path identifier, present exactly when ADD-PATH is in use for the family and direction.
    pub path_id: Option<u32>,
    /// The prefix, host bits cleared.
    pub prefix: IpNetwork,
}

impl Nlri {
    /// A route without a path identifier.
    pub fn new(prefix: IpNetwork) -> Nlri {
        Nlri {
            path_id: None,
            prefix,
        }
    }

    /// Octets this route takes on the wire.
    pub(crate) fn encoded_len(&self, add_path: bool) -> usize {
        let id = if add_path { 4 } else { 0 };
        id + 1 + usize::from(self.prefix.prefix()).div_ceil(8)
    }

    /// Appends the route. Without `add_path` the identifier is left out; with it, a missing one
    /// is sent as 0.
    pub(crate) fn encode(&self, add_path: bool, out: &mut Vec<u8>) {
        if add_path {
            out.extend_from_slice(&self.path_id.unwrap_or(0).to_be_bytes());
        }
        let length = self.prefix.prefix();
        out.push(length);
        let octets = usize::from(length).div_ceil(8);
        match self.prefix {
            IpNetwork::V4(net) => {
                out.extend_from_slice(net.network().octets().get(..octets).unwrap_or_default());
            }
            IpNetwork::V6(net) => {
                out.extend_from_slice(net.network().octets().get(..octets).unwrap_or_default());
            }
        }
    }
}

/// Decodes a whole field of `afi` prefixes into `out`. Fails with what was wrong when a length is
/// too long for the family or a prefix runs past the field.
pub(crate) fn decode_field(
    field: &[u8],
    afi: Afi,
    add_path: bool,
    out: &mut Vec<Nlri>,
) -> Result<(), &'static str> {
    // A /24 takes 4 octets; reserving by that guess never exceeds the field's own size.
    out.reserve(field.len() / 4);
    match (afi == Afi::IPV6, add_path) {
        (false, false) => decode_v4::<false>(field, out),
        (false, true) => decode_v4::<true>(field, out),
        (true, false) => decode_v6::<false>(field, out),
        (true, true) => decode_v6::<true>(field, out),
    }
}

/// Reads the path identifier (with ADD-PATH) and the length octet.
fn head<const ADD_PATH: bool>(field: &[u8]) -> Result<(Option<u32>, u8, &[u8]), &'static str> {
    let mut r = Reader::new(field);
    let path_id = if ADD_PATH {
        Some(r.u32().ok_or("path identifier runs past the field")?)
    } else {
        None
    };
    let length = r.u8().ok_or("prefix length runs past the field")?;
    Ok((path_id, length, r.rest()))
}

fn decode_v4<const ADD_PATH: bool>(
    mut field: &[u8],
    out: &mut Vec<Nlri>,
) -> Result<(), &'static str> {
    while !field.is_empty() {
        let (path_id, length, rest) = head::<ADD_PATH>(field)?;
        if length > 32 {
            return Err("IPv4 prefix length above 32");
        }
        let octets = usize::from(length).div_ceil(8);
        if rest.len() < octets {
            return Err("prefix runs past the field");
        }
        // Read four octets at once where the field allows and mask off what is not the prefix:
        // no copy through a buffer, which would stall the load that follows it.
        let raw = match rest.first_chunk::<4>() {
            Some(four) => u32::from_be_bytes(*four),
            None => rest
                .iter()
                .take(octets)
                .enumerate()
                .fold(0, |v, (i, b)| v | u32::from(*b) << (24 - 8 * i)),
        };
        let bits = raw & mask32(length);
        let prefix =
            Ipv4Network::new(Ipv4Addr::from(bits), length).map_err(|_| "bad IPv4 prefix")?;
        out.push(Nlri {
            path_id,
            prefix: IpNetwork::V4(prefix),
        });
        field = rest.get(octets..).unwrap_or_default();
    }
    Ok(())
}

fn decode_v6<const ADD_PATH: bool>(
    mut field: &[u8],
    out: &mut Vec<Nlri>,
) -> Result<(), &'static str> {
    while !field.is_empty() {
        let (path_id, length, rest) = head::<ADD_PATH>(field)?;
        if length > 128 {
            return Err("IPv6 prefix length above 128");
        }
        let octets = usize::from(length).div_ceil(8);
        if rest.len() < octets {
            return Err("prefix runs past the field");
        }
        let raw = match rest.first_chunk::<16>() {
            Some(sixteen) => u128::from_be_bytes(*sixteen),
            None => rest
                .iter()
                .take(octets)
                .enumerate()
                .fold(0, |v, (i, b)| v | u128::from(*b) << (120 - 8 * i)),
        };
        let bits = raw & mask128(length);
        let prefix =
            Ipv6Network::new(Ipv6Addr::from(bits), length).map_err(|_| "bad IPv6 prefix")?;
        out.push(Nlri {
            path_id,
            prefix: IpNetwork::V6(prefix),
        });
        field = rest.get(octets..).unwrap_or_default();
    }
    Ok(())
}

fn mask32(length: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(length.min(32)))
        .unwrap_or(0)
}

fn mask128(length: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(length.min(128)))
        .unwrap_or(0)
}
