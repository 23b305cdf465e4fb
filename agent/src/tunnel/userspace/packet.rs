//! IPv4 packets of the userspace IP-in-IP data path: the header fields read (RFC 791), the
//! choice of node and outer header for a packet from the device (RFC 2003 section 3: DF and
//! TOS copied, RFC 6040 normal-mode ECN), the checks on a packet from the wire before its outer
//! header is stripped (RFC 2003 section 3.1, RFC 6040 section 4.2), and the Internet checksum
//! (RFC 1071). Pure: no system calls.

use super::table::Table;
use super::{ECN_CE, ECN_ECT_0, ECN_MASK, ECN_NOT_ECT, IPV4_HEADER, PROTOCOL_IPIP};
use std::net::Ipv4Addr;

/// The fields of an IPv4 header (RFC 791 section 3.1) the data path reads.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version|  IHL  |Type of Service|          Total Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Identification        |Flags|      Fragment Offset    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Source Address                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Destination Address                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Options                    |    Padding    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// IHL in octets.
    pub(super) header_length: usize,
    pub(super) tos: u8,
    pub(super) total_length: usize,
    /// Flags: don't fragment.
    pub(super) dont_fragment: bool,
    /// More fragments set or a fragment offset: the ports are not in every piece.
    pub(super) fragment: bool,
    /// Not the first piece of a fragmented packet.
    pub(super) later_fragment: bool,
    pub(super) protocol: u8,
    pub(super) source: u32,
    pub(super) destination: u32,
}

impl Header {
    /// The header `packet` starts with, if it is IPv4, well formed and its total length fits.
    pub(super) fn parse(packet: &[u8]) -> Option<Header> {
        let fixed: &[u8; IPV4_HEADER] = packet.get(..IPV4_HEADER)?.try_into().ok()?;
        let header_length = usize::from(fixed[0] & 0x0f) * 4;
        let total_length = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        let well_formed = fixed[0] >> 4 == 4
            && header_length >= IPV4_HEADER
            && total_length >= header_length
            && total_length <= packet.len();
        if !well_formed {
            return None;
        }
        let flags_offset = u16::from_be_bytes([fixed[6], fixed[7]]);
        let offset = flags_offset & 0x1fff;
        Some(Header {
            header_length,
            tos: fixed[1],
            total_length,
            dont_fragment: flags_offset & 0x4000 != 0,
            fragment: flags_offset & 0x2000 != 0 || offset != 0,
            later_fragment: offset != 0,
            protocol: fixed[9],
            source: u32::from_be_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]),
            destination: u32::from_be_bytes([fixed[16], fixed[17], fixed[18], fixed[19]]),
        })
    }
}

/// What to do with a packet the kernel routed into the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outbound {
    /// Send the first `length` octets to `node`, on the DF socket if `dont_fragment`, with `tos`
    /// in the outer header.
    Send {
        node: Ipv4Addr,
        length: usize,
        dont_fragment: bool,
        tos: u8,
    },
    /// Not IPv4 (the kernel may route IPv6 into any device): ignored.
    NotIpv4,
    /// No prefix holds the destination.
    NoRoute,
}

pub(super) fn outbound(packet: &[u8], table: &Table) -> Outbound {
    let Some(header) = Header::parse(packet) else {
        return Outbound::NotIpv4;
    };
    let Some(nodes) = table.lookup(header.destination) else {
        return Outbound::NoRoute;
    };
    let node = match nodes {
        [] => return Outbound::NoRoute,
        [node] => *node,
        _ => {
            let hash = flow_hash(packet, &header);
            let index = usize::try_from(hash % nodes.len() as u64).unwrap_or(0);
            match nodes.get(index) {
                Some(node) => *node,
                None => return Outbound::NoRoute,
            }
        }
    };
    Outbound::Send {
        node,
        length: header.total_length,
        dont_fragment: header.dont_fragment,
        tos: encapsulated_tos(header.tos),
    }
}

/// A hash of the flow: addresses, protocol and, for TCP, UDP, SCTP and UDP-Lite packets that
/// are not fragments, the ports (fragments hash on the rest only, so all pieces of a packet
/// take one path).
pub(super) fn flow_hash(packet: &[u8], header: &Header) -> u64 {
    let has_ports = matches!(header.protocol, 6 | 17 | 132 | 136) && !header.fragment;
    let ports = has_ports
        .then(|| packet.get(header.header_length..header.header_length + 4))
        .flatten()
        .map_or(0, |p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
    let mut x = (u64::from(header.source) << 32) | u64::from(header.destination);
    x ^= u64::from(ports).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= u64::from(header.protocol) << 56;
    // The finalizer of MurmurHash3, so every input bit moves the result.
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The outer TOS for an inner TOS: the same, but an inner CE leaves as ECT(0) (RFC 6040
/// section 4.1, normal mode, as Linux's tunnels do).
pub(super) fn encapsulated_tos(inner: u8) -> u8 {
    if inner & ECN_MASK == ECN_CE {
        (inner & !ECN_MASK) | ECN_ECT_0
    } else {
        inner
    }
}

/// What to do with an IP-in-IP packet received from the wire (outer header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inbound {
    /// Write `packet[start..end]` into the device.
    Deliver { start: usize, end: usize },
    /// The outer source is no node in the table.
    UnknownSource,
    /// The inner source is not in the blocks routed through the node it came from (a forged
    /// inner packet).
    ForeignSource,
    /// The inner destination is not this node's (it would be forwarded on: a reflection).
    NotLocal,
    /// The outer or inner packet is malformed, or RFC 6040 says to drop it.
    Invalid,
}

/// Checks an IP-in-IP packet and finds the inner packet; carries an outer CE mark into the
/// inner header (RFC 6040 section 4.2), which is why `packet` is mutable. Delivered only when
/// the outer source is a node, the inner source lies in that node's blocks and the inner
/// destination is this node's (see [`Table::routed_via`] and [`Table::is_local`]).
pub(super) fn inbound(packet: &mut [u8], table: &Table) -> Inbound {
    // The kernel hands raw sockets the outer header as received, total length and all.
    let Some(outer) = Header::parse(packet) else {
        return Inbound::Invalid;
    };
    if outer.protocol != PROTOCOL_IPIP {
        return Inbound::Invalid;
    }
    if !table.knows(outer.source) {
        return Inbound::UnknownSource;
    }
    let start = outer.header_length;
    let Some(inner_bytes) = packet.get_mut(start..outer.total_length) else {
        return Inbound::Invalid;
    };
    let Some(inner) = Header::parse(inner_bytes) else {
        return Inbound::Invalid;
    };
    if !table.routed_via(inner.source, outer.source) {
        return Inbound::ForeignSource;
    }
    if !table.is_local(inner.destination) {
        return Inbound::NotLocal;
    }
    if outer.tos & ECN_MASK == ECN_CE && inner.tos & ECN_MASK != ECN_CE {
        if inner.tos & ECN_MASK == ECN_NOT_ECT {
            return Inbound::Invalid;
        }
        let Some(header) = inner_bytes.get_mut(..inner.header_length) else {
            return Inbound::Invalid;
        };
        header[1] |= ECN_CE;
        header[10] = 0;
        header[11] = 0;
        let sum = checksum(header).to_be_bytes();
        header[10] = sum[0];
        header[11] = sum[1];
    }
    Inbound::Deliver {
        start,
        end: start + inner.total_length,
    }
}

/// The Internet checksum (RFC 1071) of `bytes`, whose checksum field is zero.
pub(super) fn checksum(bytes: &[u8]) -> u16 {
    fold(word_sum(bytes))
}

/// The one's complement sum of `bytes` as 16-bit words, the last one padded, folded to 16
/// bits (never 0 unless every octet is); sums of even-length pieces add.
///
/// It adds 32-bit words in the machine's byte order into a 64-bit accumulator and swaps the
/// folded result into network order (RFC 1071 section 2 (B): the sum does not depend on the
/// byte order, up to a swap).
pub(super) fn word_sum(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(8);
    let mut sum: u64 = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_ne_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        // Two 32-bit halves: 64 KiB of them stay far below `u64::MAX`.
        sum += (word >> 32) + (word & 0xffff_ffff);
    }
    let mut last = [0_u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    let word = u64::from_ne_bytes(last);
    sum += (word >> 32) + (word & 0xffff_ffff);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u32::from(u16::from_be(sum as u16))
}

/// A sum folded to 16 bits with end-around carry, complemented.
pub(super) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sum of the pseudo-header of TCP and UDP over IPv4 (RFC 9293 section 3.1).
pub(super) fn pseudo_header_sum(source: u32, destination: u32, protocol: u8, length: usize) -> u32 {
    let mut pseudo = [0_u8; 12];
    pseudo[..4].copy_from_slice(&source.to_be_bytes());
    pseudo[4..8].copy_from_slice(&destination.to_be_bytes());
    pseudo[9] = protocol;
    pseudo[10..].copy_from_slice(&(length as u16).to_be_bytes());
    word_sum(&pseudo)
}

/// Completes a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the field at `start +
/// offset` holds the pseudo-header sum; the sum from `start` to the end goes in, complemented,
/// with 0 sent as 0xffff (as the kernel's `skb_checksum_help`). False if the field lies
/// outside `packet`.
pub(super) fn finish_checksum(packet: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start.saturating_add(offset);
    if field.saturating_add(2) > packet.len() || start >= packet.len() {
        return false;
    }
    let sum = match fold(word_sum(&packet[start..])) {
        0 => 0xffff,
        sum => sum,
    };
    packet[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    #[test]
    fn the_longest_prefix_wins() {
        let table = table(&[
            ("10.244.0.0/16", &["192.168.0.1"]),
            ("10.244.2.0/26", &["192.168.0.2"]),
            ("10.244.2.7/32", &["192.168.0.3"]),
            ("0.0.0.0/0", &["192.168.0.4"]),
        ]);
        let to = |d: &str| node_of(&tcp("10.244.1.1", d, 1, 2), &table);
        assert_eq!(to("10.244.2.7"), Some(addr("192.168.0.3")));
        assert_eq!(to("10.244.2.8"), Some(addr("192.168.0.2")));
        assert_eq!(to("10.244.2.64"), Some(addr("192.168.0.1")));
        assert_eq!(to("8.8.8.8"), Some(addr("192.168.0.4")));
    }

    #[test]
    fn a_destination_outside_every_prefix_has_no_route() {
        let table = table(&[("10.244.2.0/26", &["192.168.0.2"])]);
        let packet = tcp("10.244.1.1", "10.244.3.1", 1, 2);
        assert_eq!(outbound(&packet, &table), Outbound::NoRoute);
        let empty = self::table(&[("10.244.3.0/26", &[])]);
        assert_eq!(outbound(&packet, &empty), Outbound::NoRoute);
    }

    #[test]
    fn ipv6_and_garbage_from_the_device_are_ignored() {
        let table = table(&[("0.0.0.0/0", &["192.168.0.2"])]);
        let mut ipv6 = vec![0x60; 40];
        ipv6[4] = 0;
        assert_eq!(outbound(&ipv6, &table), Outbound::NotIpv4);
        assert_eq!(outbound(&[0x45, 0, 0], &table), Outbound::NotIpv4);
    }

    #[test]
    fn the_outer_header_keeps_df_and_the_tos_of_the_inner_packet() {
        let table = table(&[("10.244.2.0/26", &["192.168.0.2"])]);
        let mut packet = packet("10.244.1.1", "10.244.2.1", 1, 0xb8 | ECN_CE, &[8, 0, 0, 0]);
        packet.extend([0xee; 3]);
        assert_eq!(
            outbound(&packet, &table),
            Outbound::Send {
                node: addr("192.168.0.2"),
                length: 24,
                dont_fragment: true,
                tos: 0xb8 | ECN_ECT_0,
            }
        );
        packet[6] = 0;
        assert!(matches!(
            outbound(&packet, &table),
            Outbound::Send {
                dont_fragment: false,
                ..
            }
        ));
    }

    #[test]
    fn one_flow_stays_on_one_node_and_flows_spread_over_all() {
        let nodes = ["192.168.0.2", "192.168.0.3", "192.168.0.4"];
        let forward = table(&[("10.244.2.0/26", &nodes)]);
        let mut reversed = nodes;
        reversed.reverse();
        let backward = table(&[("10.244.2.0/26", &reversed)]);
        let mut used = std::collections::BTreeSet::new();
        for port in 1000..1100 {
            let packet = tcp("10.244.1.1", "10.244.2.1", port, 80);
            let node = node_of(&packet, &forward).unwrap();
            assert_eq!(node_of(&packet, &forward), Some(node));
            assert_eq!(
                node_of(&packet, &backward),
                Some(node),
                "order given matters"
            );
            used.insert(node);
        }
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn fragments_of_a_packet_take_the_path_of_its_addresses() {
        let nodes = ["192.168.0.2", "192.168.0.3", "192.168.0.4", "192.168.0.5"];
        let table = table(&[("10.244.2.0/26", &nodes)]);
        let mut first = tcp("10.244.1.1", "10.244.2.1", 1234, 80);
        first[6] = 0x20; // more fragments
        let mut later = tcp("10.244.1.1", "10.244.2.1", 9999, 9999);
        later[6] = 0x00;
        later[7] = 0x10; // offset 16 * 8: data, not ports
        assert_eq!(node_of(&first, &table), node_of(&later, &table));
    }

    #[test]
    fn a_packet_from_a_node_is_unwrapped_and_its_padding_dropped() {
        let table = table(&[("10.244.2.0/26", &["192.168.77.2"])]);
        let inner = packet("10.244.2.1", "10.244.1.1", 1, 0, &[0, 0, 0, 0, 1, 2, 3, 4]);
        let mut outer = packet("192.168.77.2", "192.168.77.1", 4, 0, &inner);
        outer.extend([0; 6]);
        assert_eq!(
            inbound(&mut outer, &table),
            Inbound::Deliver { start: 20, end: 48 }
        );
        assert_eq!(&outer[20..48], &inner[..]);
    }

    #[test]
    fn a_packet_from_an_unknown_source_is_refused() {
        let table = table(&[("10.244.2.0/26", &["192.168.77.2"])]);
        let inner = packet("10.244.2.1", "10.244.1.1", 1, 0, &[0; 8]);
        let mut outer = packet("192.168.77.3", "192.168.77.1", 4, 0, &inner);
        assert_eq!(inbound(&mut outer, &table), Inbound::UnknownSource);
    }

    #[test]
    fn an_inner_packet_from_outside_the_senders_blocks_is_refused() {
        let table = table(&[
            ("10.244.2.0/26", &["192.168.77.2"]),
            ("10.244.3.0/26", &["192.168.77.3"]),
        ]);
        // Another node's block, and an address in no block at all.
        for source in ["10.244.3.1", "10.99.0.1"] {
            let inner = packet(source, "10.244.1.1", 17, 0, &[0; 8]);
            let mut outer = packet("192.168.77.2", "192.168.77.1", 4, 0, &inner);
            assert_eq!(
                inbound(&mut outer, &table),
                Inbound::ForeignSource,
                "{source}"
            );
        }
        let inner = packet("10.244.3.1", "10.244.1.1", 17, 0, &[0; 8]);
        let mut outer = packet("192.168.77.3", "192.168.77.1", 4, 0, &inner);
        assert!(matches!(
            inbound(&mut outer, &table),
            Inbound::Deliver { .. }
        ));
    }

    #[test]
    fn an_inner_packet_for_an_address_that_is_not_this_nodes_is_refused() {
        let table = table(&[
            ("10.244.2.0/26", &["192.168.77.2"]),
            ("10.244.3.0/26", &["192.168.77.3"]),
        ]);
        // Onward to another node's pod, into the underlay, or out to the world.
        for destination in ["10.244.3.1", "192.168.77.3", "8.8.8.8", "10.244.1.64"] {
            let inner = packet("10.244.2.1", destination, 17, 0, &[0; 8]);
            let mut outer = packet("192.168.77.2", "192.168.77.1", 4, 0, &inner);
            assert_eq!(
                inbound(&mut outer, &table),
                Inbound::NotLocal,
                "{destination}"
            );
        }
        // This node's own address (the helper's table has 192.168.0.9/32 as local).
        let inner = packet("10.244.2.1", "192.168.0.9", 17, 0, &[0; 8]);
        let mut outer = packet("192.168.77.2", "192.168.77.1", 4, 0, &inner);
        assert!(matches!(
            inbound(&mut outer, &table),
            Inbound::Deliver { .. }
        ));
    }

    #[test]
    fn an_inner_packet_longer_than_its_carrier_is_invalid() {
        let table = table(&[("10.244.2.0/26", &["192.168.77.2"])]);
        let mut inner = packet("10.244.2.1", "10.244.1.1", 1, 0, &[0; 8]);
        inner[3] += 1;
        let mut outer = packet("192.168.77.2", "192.168.77.1", 4, 0, &inner);
        assert_eq!(inbound(&mut outer, &table), Inbound::Invalid);
        let mut ipv6_inside = packet("192.168.77.2", "192.168.77.1", 4, 0, &[0x60; 40]);
        assert_eq!(inbound(&mut ipv6_inside, &table), Inbound::Invalid);
    }

    #[test]
    fn an_outer_ce_mark_reaches_an_ecn_capable_inner_packet() {
        let table = table(&[("10.244.2.0/26", &["192.168.77.2"])]);
        let inner = packet("10.244.2.1", "10.244.1.1", 6, ECN_ECT_0, &[0; 20]);
        let mut outer = packet("192.168.77.2", "192.168.77.1", 4, ECN_CE, &inner);
        assert!(matches!(
            inbound(&mut outer, &table),
            Inbound::Deliver { .. }
        ));
        assert_eq!(outer[21] & ECN_MASK, ECN_CE);
        assert_eq!(checksum(&outer[20..40]), 0, "inner header checksum");
        let not_ect = packet("10.244.2.1", "10.244.1.1", 6, ECN_NOT_ECT, &[0; 20]);
        let mut outer = packet("192.168.77.2", "192.168.77.1", 4, ECN_CE, &not_ect);
        assert_eq!(inbound(&mut outer, &table), Inbound::Invalid);
    }

    #[test]
    fn the_fast_word_sum_matches_the_plain_one() {
        let plain = |bytes: &[u8]| -> u16 {
            let mut sum: u32 = bytes
                .chunks(2)
                .map(|p| u32::from(p[0]) << 8 | u32::from(*p.get(1).unwrap_or(&0)))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            !(sum as u16)
        };
        let data: Vec<u8> = (0..3000_u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for length in (0..40).chain([1479, 1480, 2999, 3000]) {
            assert_eq!(
                checksum(&data[..length]),
                plain(&data[..length]),
                "{length}"
            );
        }
        assert_eq!(checksum(&[0xff; 64]), 0, "all ones sum to negative zero");
        assert_eq!(checksum(&[0; 64]), 0xffff);
    }
}
