//! Entry points for the cargo-fuzz targets in `fuzz/` (`ipip_inbound`, `ipip_outbound`,
//! `segmentation`): not an API. The packet logic of the data path is private to this module
//! tree; these functions run it on arbitrary octets and assert the properties it promises, so
//! a fuzz target is one call and a failed property is a crash the fuzzer keeps.
//!
//! The table is fixed: this node has block 10.244.1.0/26 and address 192.168.77.1; node
//! 192.168.77.2 has block 10.244.2.0/26, node 192.168.77.3 has 10.244.3.0/26 and the /32
//! 10.244.2.7 (borrowed from the other's block). Inputs start with an octet whose bits steer
//! the addresses toward those, so the fuzzer reaches the deeper checks quickly.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use ipnetwork::Ipv4Network;

use super::icmp::{FRAGMENTATION_NEEDED_MAX, fragmentation_needed};
use super::offload::{Segmentation, resegment};
use super::packet::{
    Header, Inbound, Outbound, checksum, fold, inbound, outbound, pseudo_header_sum, word_sum,
};
use super::table::Table;
use super::{ECN_CE, ECN_MASK, ECN_NOT_ECT, IPV4_HEADER, MAX_PACKET, PROTOCOL_IPIP};

const NODE_B: [u8; 4] = [192, 168, 77, 2];
const NODE_C: [u8; 4] = [192, 168, 77, 3];

/// The fixed table, built once.
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

fn build_table() -> Table {
    let net = |a: [u8; 4], length: u8| Ipv4Network::new(Ipv4Addr::from(a), length).ok();
    let routes = [
        (net([10, 244, 2, 0], 26), Ipv4Addr::from(NODE_B)),
        (net([10, 244, 3, 0], 26), Ipv4Addr::from(NODE_C)),
        (net([10, 244, 2, 7], 32), Ipv4Addr::from(NODE_C)),
    ];
    let local = [net([10, 244, 1, 0], 26), net([192, 168, 77, 1], 32)];
    Table::new(
        routes
            .into_iter()
            .filter_map(|(prefix, node)| Some((prefix?, vec![node])))
            .collect(),
        local.into_iter().flatten().collect(),
    )
}

/// Overwrites four octets at `at`, if they are there.
fn put(packet: &mut [u8], at: usize, value: [u8; 4]) {
    if let Some(field) = packet.get_mut(at..at + 4) {
        field.copy_from_slice(&value);
    }
}

/// `data`: a steering octet, then an IP-in-IP packet as the raw socket hands it over (outer
/// header first). Bit 0 makes the outer packet IPv4 with protocol 4 from node .2 or (bit 1)
/// .3; bit 2 puts the inner source in that node's block, bit 3 the inner destination in this
/// node's. Then [`inbound`] must not panic, and a packet it delivers must be a well-formed
/// IPv4 packet inside the outer one that passed every check.
pub fn ipip_inbound(data: &[u8]) {
    let Some((&steer, rest)) = data.split_first() else {
        return;
    };
    let mut packet = rest.to_vec();
    let outer_length = packet
        .first()
        .map_or(IPV4_HEADER, |v| usize::from(v & 0x0f) * 4);
    if steer & 0x01 != 0 {
        if let Some(version) = packet.first_mut() {
            *version = (*version & 0x0f) | 0x40;
        }
        if let Some(protocol) = packet.get_mut(9) {
            *protocol = PROTOCOL_IPIP;
        }
        let node = if steer & 0x02 != 0 { NODE_C } else { NODE_B };
        put(&mut packet, 12, node);
        if steer & 0x04 != 0 {
            let last = packet.get(outer_length + 15).copied().unwrap_or(0);
            let block = if steer & 0x02 != 0 { 3 } else { 2 };
            put(
                &mut packet,
                outer_length + 12,
                [10, 244, block, last & 0x3f],
            );
        }
        if steer & 0x08 != 0 {
            let last = packet.get(outer_length + 19).copied().unwrap_or(0);
            put(&mut packet, outer_length + 16, [10, 244, 1, last & 0x3f]);
        }
    }
    let original = packet.clone();
    let table = table();
    match inbound(&mut packet, table) {
        Inbound::Deliver { start, end } => {
            let outer = Header::parse(&original).expect("a delivered packet has an outer header");
            assert_eq!(outer.protocol, PROTOCOL_IPIP);
            assert!(table.knows(outer.source));
            assert_eq!(start, outer.header_length);
            assert!(start <= end && end <= outer.total_length && end <= packet.len());
            let inner = Header::parse(&packet[start..end]).expect("a delivered inner header");
            assert_eq!(inner.total_length, end - start);
            assert!(table.routed_via(inner.source, outer.source));
            assert!(table.is_local(inner.destination));
            // Only the ECN field and the header checksum may have changed (RFC 6040).
            let changed = packet[start..start + inner.header_length]
                != original[start..start + inner.header_length];
            if changed {
                assert_eq!(outer.tos & ECN_MASK, ECN_CE);
                assert_eq!(packet[start + 1] & ECN_MASK, ECN_CE);
                assert_eq!(checksum(&packet[start..start + inner.header_length]), 0);
            } else {
                assert!(outer.tos & ECN_MASK != ECN_CE || inner.tos & ECN_MASK == ECN_CE);
            }
            assert_ne!(
                (
                    outer.tos & ECN_MASK == ECN_CE,
                    original[start + 1] & ECN_MASK
                ),
                (true, ECN_NOT_ECT),
                "RFC 6040: CE over a not-ECT inner packet is dropped"
            );
            assert_eq!(packet[..start], original[..start]);
            assert_eq!(
                packet[start + inner.header_length..],
                original[start + inner.header_length..]
            );
        }
        Inbound::UnknownSource => {
            let outer = Header::parse(&original).expect("an outer header was read");
            assert!(!table.knows(outer.source));
        }
        Inbound::ForeignSource | Inbound::NotLocal | Inbound::Invalid => {}
    }
}

/// `data`: two octets of path MTU (big-endian), then a packet from the device. [`outbound`]
/// must not panic and must send no more than the packet; an ICMP "fragmentation needed" about
/// it must be a valid IPv4 packet (header and ICMP checksums, lengths) of type 3 code 4 with
/// that MTU, quoting the start of the packet.
pub fn ipip_outbound(data: &[u8]) {
    let Some((mtu, packet)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mtu = u16::from_be_bytes(*mtu);
    if let Outbound::Send { length, .. } = outbound(packet, table()) {
        assert!(length <= packet.len());
        assert!(Header::parse(packet).is_some_and(|h| h.total_length == length));
    }
    let mut out = [0; FRAGMENTATION_NEEDED_MAX];
    let Some(length) = fragmentation_needed(packet, mtu, &mut out) else {
        return;
    };
    assert!(length <= FRAGMENTATION_NEEDED_MAX);
    let message = &out[..length];
    let ip = Header::parse(message).expect("the ICMP message has an IPv4 header");
    assert_eq!((ip.protocol, ip.total_length), (1, length));
    assert_eq!(checksum(&message[..IPV4_HEADER]), 0, "IP header checksum");
    assert_eq!(checksum(&message[IPV4_HEADER..]), 0, "ICMP checksum");
    assert_eq!(message[IPV4_HEADER..IPV4_HEADER + 2], [3, 4]);
    assert_eq!(message[IPV4_HEADER + 6..IPV4_HEADER + 8], mtu.to_be_bytes());
    let quoted = &message[IPV4_HEADER + 8..];
    assert_eq!(quoted, &packet[..quoted.len()]);
    let original = Header::parse(packet).expect("only about a parsed packet");
    assert_eq!(ip.destination, original.source);
    assert!(!original.later_fragment);
}

/// `data`: two octets of segment size or MTU (big-endian), then a packet. Every segment
/// [`Segmentation`] writes and every packet [`resegment`] emits must be within its bound, carry
/// valid IPv4 and TCP checksums and the right lengths and sequence numbers, and together the
/// segments' payloads must be the packet's payload, in order.
pub fn segmentation(data: &[u8]) {
    let Some((size, packet)) = data.split_first_chunk::<2>() else {
        return;
    };
    let size = usize::from(u16::from_be_bytes(*size));
    let mut scratch = vec![0; MAX_PACKET];
    if let Some(plan) = Segmentation::plan(packet) {
        // At most 4096 segments, so one input stays fast.
        let size = size.max(plan.payload.div_ceil(4096)).max(1);
        let payload = &packet[plan.headers..plan.headers + plan.payload];
        let mut joined = Vec::with_capacity(plan.payload);
        let count = plan.count(size);
        for index in 0..count {
            let length = plan
                .write(packet, size, index, &mut scratch)
                .expect("every counted segment is written");
            assert_eq!(length, plan.length(size, index));
            assert!(length <= plan.headers + size);
            let segment = &scratch[..length];
            check_segment(segment, &plan, size, index);
            joined.extend_from_slice(&segment[plan.headers..]);
        }
        assert_eq!(plan.write(packet, size, count, &mut scratch), None);
        assert!(
            joined == payload,
            "the segments carry the payload, in order"
        );
    }
    let mtu = size;
    let mut emitted = Vec::new();
    let cut = resegment(packet, mtu, &mut scratch, |segment| {
        assert!(segment.len() <= mtu, "a segment over the MTU");
        emitted.push(segment.to_vec());
    });
    if !cut {
        assert!(emitted.is_empty());
        return;
    }
    let plan = Segmentation::plan(packet).expect("only TCP packets are cut");
    let mut joined = Vec::new();
    for (index, segment) in emitted.iter().enumerate() {
        check_segment(segment, &plan, mtu - plan.headers, index);
        joined.extend_from_slice(&segment[plan.headers..]);
    }
    assert!(joined == packet[plan.headers..plan.headers + plan.payload]);
}

/// One segment of `plan` cut at `size`: lengths, checksums, sequence number.
fn check_segment(segment: &[u8], plan: &Segmentation, size: usize, index: usize) {
    let header = Header::parse(segment).expect("a segment is an IPv4 packet");
    assert_eq!(header.total_length, segment.len());
    assert_eq!(
        checksum(&segment[..plan.ip_length]),
        0,
        "IP header checksum"
    );
    let tcp = &segment[plan.ip_length..];
    let pseudo = pseudo_header_sum(plan.source, plan.destination, 6, tcp.len());
    assert_eq!(fold(pseudo + word_sum(tcp)), 0, "TCP checksum");
    let sequence = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    assert_eq!(sequence, plan.sequence.wrapping_add((index * size) as u32));
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn the_fuzz_entry_points_accept_real_packets_and_garbage() {
        let inner = packet(
            "10.244.2.1",
            "10.244.1.1",
            1,
            0b10,
            &[8, 0, 0, 0, 0, 0, 0, 0],
        );
        let outer = packet("192.168.77.2", "192.168.77.1", 4, 0b11, &inner);
        for steer in 0..16_u8 {
            let mut data = vec![steer];
            data.extend(&outer);
            ipip_inbound(&data);
            ipip_inbound(&data[..data.len() / 2]);
        }
        let segments = train(3, 1000);
        let mut super_packet = segments[0].clone();
        for s in &segments[1..] {
            super_packet.extend(&s[40..]);
        }
        let total = super_packet.len() as u16;
        super_packet[2..4].copy_from_slice(&total.to_be_bytes());
        for size in [0_u16, 1, 7, 8, 100, 999, 1000, 1040, 1500, 4000] {
            let mut data = size.to_be_bytes().to_vec();
            data.extend(&super_packet);
            segmentation(&data);
            ipip_outbound(&data);
        }
        for data in [&[][..], &[0], &[0, 0, 0x45], &[0xff; 90]] {
            ipip_inbound(data);
            ipip_outbound(data);
            segmentation(data);
        }
    }
}
