//! Segmentation offload for the TUN device: the `virtio_net_hdr` before every packet, TSO
//! super-packets cut into the segments the kernel asked for (RFC 9293 sequence numbers and
//! flags, RFC 791 identification), merged packets from the underlay cut back to the device MTU,
//! and GRO-like merging of in-order TCP segments on the way in. Pure: no system calls.

use super::packet::{Header, checksum, fold, pseudo_header_sum, word_sum};
use super::{
    IPV4_HEADER, MAX_PACKET, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, VNET_GSO_TCPV4, VNET_HEADER,
    VNET_NEEDS_CSUM,
};

/// How a TCP packet is cut into segments, as TSO would: each gets the headers with its own
/// total length, identification (counting up, like GSO), sequence number and checksums; FIN
/// and PSH stay on the last segment only, CWR on the first only (RFC 3168 section 6.1.2).
/// Both checksums are computed whole, so the packet's own may be partial or wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segmentation {
    /// IPv4 header octets.
    pub(super) ip_length: usize,
    /// IPv4 and TCP header octets, repeated in every segment.
    pub(super) headers: usize,
    /// TCP payload octets of the whole packet.
    pub(super) payload: usize,
    pub(super) sequence: u32,
    pub(super) identification: u16,
    pub(super) source: u32,
    pub(super) destination: u32,
}

impl Segmentation {
    /// `None` for anything but a whole TCP packet (IPv4, not a fragment) with sane headers.
    pub(super) fn plan(packet: &[u8]) -> Option<Segmentation> {
        let header = Header::parse(packet)?;
        if header.protocol != 6 || header.fragment {
            return None;
        }
        let ip_length = header.header_length;
        let headers = ip_length + usize::from(*packet.get(ip_length + 12)? >> 4) * 4;
        if headers < ip_length + 20 || headers > header.total_length {
            return None;
        }
        let sequence = packet.get(ip_length + 4..ip_length + 8)?;
        Some(Segmentation {
            ip_length,
            headers,
            payload: header.total_length - headers,
            sequence: u32::from_be_bytes([sequence[0], sequence[1], sequence[2], sequence[3]]),
            identification: u16::from_be_bytes([packet[4], packet[5]]),
            source: header.source,
            destination: header.destination,
        })
    }

    /// How many segments of at most `size` payload octets (at least one).
    pub(super) fn count(&self, size: usize) -> usize {
        self.payload.div_ceil(size.max(1)).max(1)
    }

    /// The length of segment `index`.
    pub(super) fn length(&self, size: usize, index: usize) -> usize {
        let before = index.saturating_mul(size);
        self.headers + self.payload.saturating_sub(before).min(size)
    }

    /// Writes segment `index` (of at most `size` payload octets) of `packet` at the start of
    /// `out`; its length, or `None` if there is no such segment or `out` is too short.
    pub(super) fn write(
        &self,
        packet: &[u8],
        size: usize,
        index: usize,
        out: &mut [u8],
    ) -> Option<usize> {
        if size == 0 || index >= self.count(size) {
            return None;
        }
        let from = self.headers + index * size;
        let to = (from + size).min(self.headers + self.payload);
        let (head, chunk) = (packet.get(..self.headers)?, packet.get(from..to)?);
        let length = self.headers + chunk.len();
        let segment = out.get_mut(..length)?;
        segment[..self.headers].copy_from_slice(head);
        segment[self.headers..].copy_from_slice(chunk);
        let (ip, tcp) = segment.split_at_mut(self.ip_length);
        ip[2..4].copy_from_slice(&(length as u16).to_be_bytes());
        let id = self.identification.wrapping_add(index as u16);
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[10..12].fill(0);
        let sum = checksum(ip).to_be_bytes();
        ip[10..12].copy_from_slice(&sum);
        let sequence = self.sequence.wrapping_add((index * size) as u32);
        tcp[4..8].copy_from_slice(&sequence.to_be_bytes());
        if index + 1 < self.count(size) {
            tcp[13] &= !(TCP_FIN | TCP_PSH);
        }
        if index > 0 {
            tcp[13] &= !TCP_CWR;
        }
        tcp[16..18].fill(0);
        let pseudo = pseudo_header_sum(self.source, self.destination, 6, tcp.len());
        let sum = fold(pseudo + word_sum(tcp));
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        Some(length)
    }
}

/// Cuts a TCP packet longer than `mtu` back into segments that fit, as TSO would have, and
/// hands each to `emit`; false (and nothing emitted) for any other packet.
///
/// GRO on the underlay NIC merges a train of IP-in-IP TCP segments into one packet before the
/// raw socket sees it; written into the device whole, the kernel would refuse to forward it
/// to a pod (DF, longer than the pod's MTU).
pub(super) fn resegment(
    packet: &[u8],
    mtu: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> bool {
    let Some(plan) = Segmentation::plan(packet) else {
        return false;
    };
    let size = mtu.saturating_sub(plan.headers);
    if plan.headers + plan.payload <= mtu || size < 8 || scratch.len() < mtu {
        return false;
    }
    for index in 0..plan.count(size) {
        match plan.write(packet, size, index, scratch) {
            Some(length) => emit(&scratch[..length]),
            None => return index > 0,
        }
    }
    true
}

/// The `virtio_net_hdr` (virtio 1.x section 5.1.6, legacy layout in the machine's byte order)
/// before every packet read from or written into the device (`IFF_VNET_HDR`). All zero: one
/// whole packet with complete checksums.
///
/// ```text
/// +-------+----------+-----------+-----------+------------+-------------+
/// | flags | gso_type |  hdr_len  | gso_size  | csum_start | csum_offset |
/// |   1   |    1     |     2     |     2     |     2      |      2      |
/// +-------+----------+-----------+-----------+------------+-------------+
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct VnetHeader {
    /// `VNET_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the sum of
    /// the pseudo-header, the rest is to be added.
    pub(super) flags: u8,
    /// `VNET_GSO_NONE`, or `VNET_GSO_TCPV4` (with `VNET_GSO_ECN` if the first segment has CWR)
    /// for a super-packet to be cut into segments of `gso_size` payload octets.
    pub(super) gso_type: u8,
    /// The header octets repeated in every segment.
    pub(super) header_length: u16,
    pub(super) gso_size: u16,
    pub(super) csum_start: u16,
    pub(super) csum_offset: u16,
}

impl VnetHeader {
    pub(super) fn parse(bytes: &[u8]) -> Option<VnetHeader> {
        let b: &[u8; VNET_HEADER] = bytes.get(..VNET_HEADER)?.try_into().ok()?;
        let word = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        Some(VnetHeader {
            flags: b[0],
            gso_type: b[1],
            header_length: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        })
    }

    pub(super) fn encode(&self) -> [u8; VNET_HEADER] {
        let mut out = [self.flags, self.gso_type, 0, 0, 0, 0, 0, 0, 0, 0];
        let words = [
            self.header_length,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        ];
        for (to, word) in out[2..].chunks_exact_mut(2).zip(words) {
            to.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }
}

/// A TCP segment from the tunnel that may be merged with the next ones of its flow into one
/// GSO packet for the device: IPv4 without options, DF, no fragment, with data, only ACK
/// (and PSH) set and a valid TCP checksum (the kernel trusts a merged packet's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mergeable {
    /// IPv4 and TCP header octets.
    pub(super) headers: usize,
    pub(super) identification: u16,
    pub(super) sequence: u32,
    /// TCP payload octets.
    pub(super) payload: usize,
    /// PSH is set: the segment ends a merged packet.
    pub(super) push: bool,
}

impl Mergeable {
    pub(super) fn parse(packet: &[u8]) -> Option<Mergeable> {
        let header = Header::parse(packet)?;
        let flags = *packet.get(IPV4_HEADER + 13)?;
        let headers = IPV4_HEADER + usize::from(*packet.get(IPV4_HEADER + 12)? >> 4) * 4;
        let mergeable = header.header_length == IPV4_HEADER
            && header.protocol == 6
            && header.dont_fragment
            && !header.fragment
            && header.total_length == packet.len()
            && headers >= IPV4_HEADER + 20
            && headers < packet.len()
            && flags & !TCP_PSH == TCP_ACK;
        if !mergeable {
            return None;
        }
        let tcp = packet.get(IPV4_HEADER..)?;
        let pseudo = pseudo_header_sum(header.source, header.destination, 6, tcp.len());
        if fold(pseudo + word_sum(tcp)) != 0 {
            return None;
        }
        Some(Mergeable {
            headers,
            identification: u16::from_be_bytes([packet[4], packet[5]]),
            sequence: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            payload: packet.len() - headers,
            push: flags & TCP_PSH != 0,
        })
    }
}

/// Whether `next` continues a merged packet that starts with `first` and so far ends with
/// `last`, `length` octets long: same flow, next in sequence and identification, headers equal
/// but for the fields segmentation rewrites, and every segment but the last full-sized.
pub(super) fn continues(
    (first_bytes, first): (&[u8], &Mergeable),
    last: &Mergeable,
    (next_bytes, next): (&[u8], &Mergeable),
    length: usize,
) -> bool {
    let headers = first.headers;
    let same = |range: std::ops::Range<usize>| {
        first_bytes.get(range.clone()).is_some()
            && first_bytes.get(range.clone()) == next_bytes.get(range)
    };
    !last.push
        && last.payload == first.payload
        && next.payload <= first.payload
        && next.headers == headers
        && next.sequence == last.sequence.wrapping_add(last.payload as u32)
        && next.identification == last.identification.wrapping_add(1)
        && length + next.payload <= MAX_PACKET
        // TOS; flags, TTL, protocol; addresses; ports.
        && same(1..2)
        && same(6..10)
        && same(12..24)
        // Acknowledgment, data offset; window; urgent pointer and options.
        && same(28..33)
        && same(34..36)
        && same(38..headers)
}

/// The headers of segments `first` .. `last` merged into one packet `length` octets long,
/// written into `out`: total length, IP checksum, the flags of the last segment (PSH) and, in
/// place of the TCP checksum, the pseudo-header sum (`VNET_NEEDS_CSUM`). With the
/// `virtio_net_hdr` to go before it.
pub(super) fn merged_headers(
    first: &[u8],
    merged: &Mergeable,
    last_flags: u8,
    length: usize,
    out: &mut [u8],
) -> Option<VnetHeader> {
    let headers = merged.headers;
    let out = out.get_mut(..headers)?;
    out.copy_from_slice(first.get(..headers)?);
    out[2..4].copy_from_slice(&u16::try_from(length).ok()?.to_be_bytes());
    out[10..12].fill(0);
    let sum = checksum(&out[..IPV4_HEADER]).to_be_bytes();
    out[10..12].copy_from_slice(&sum);
    out[IPV4_HEADER + 13] = last_flags;
    let source = u32::from_be_bytes([out[12], out[13], out[14], out[15]]);
    let destination = u32::from_be_bytes([out[16], out[17], out[18], out[19]]);
    let pseudo = pseudo_header_sum(source, destination, 6, length - IPV4_HEADER);
    out[IPV4_HEADER + 16..IPV4_HEADER + 18].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
    Some(VnetHeader {
        flags: VNET_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        header_length: headers as u16,
        gso_size: u16::try_from(merged.payload).ok()?,
        csum_start: IPV4_HEADER as u16,
        csum_offset: 16,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    #[test]
    fn a_tcp_packet_merged_by_gro_is_cut_back_into_segments_that_fit() {
        let payload: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
        let (fin, psh, ack, cwr) = (0x01, 0x08, 0x10, 0x80);
        let merged = tcp_segment(0xffff_ff00, fin | psh | ack | cwr, &payload);
        let mut scratch = vec![0; MAX_PACKET];
        let mut segments = Vec::new();
        assert!(resegment(&merged, 1480, &mut scratch, |s| segments.push(s.to_vec())));
        let lengths: Vec<usize> = segments.iter().map(Vec::len).collect();
        assert_eq!(lengths, [1480, 1480, 160]);
        let mut pseudo = [10, 244, 2, 1, 10, 244, 1, 1, 0, 6, 0, 0];
        let mut data: Vec<u8> = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let header = Header::parse(segment).unwrap();
            assert_eq!(header.total_length, segment.len());
            assert_eq!(segment[1], ECN_ECT_0);
            assert_eq!(checksum(&segment[..20]), 0, "IP header checksum");
            let id = u16::from_be_bytes([segment[4], segment[5]]);
            assert_eq!(id, 0x1234 + i as u16);
            pseudo[10..].copy_from_slice(&((segment.len() - 20) as u16).to_be_bytes());
            assert_eq!(
                fold(word_sum(&pseudo) + word_sum(&segment[20..])),
                0,
                "TCP checksum"
            );
            let sequence = u32::from_be_bytes(segment[24..28].try_into().unwrap());
            assert_eq!(sequence, 0xffff_ff00_u32.wrapping_add(1440 * i as u32));
            let flags = [ack | cwr, ack, ack | psh | fin][i];
            assert_eq!(segment[33], flags, "segment {i}");
            data.extend(&segment[40..]);
        }
        assert_eq!(data, payload);
    }

    #[test]
    fn packets_that_fit_or_are_not_tcp_go_in_whole() {
        let mut scratch = vec![0; MAX_PACKET];
        let fits = tcp_segment(1, 0x10, &[0; 1440]);
        assert!(!resegment(&fits, 1480, &mut scratch, |_| panic!()));
        let udp = packet("10.244.2.1", "10.244.1.1", 17, 0, &[0; 3000]);
        assert!(!resegment(&udp, 1480, &mut scratch, |_| panic!()));
    }

    #[test]
    fn the_virtio_net_header_round_trips() {
        let header = VnetHeader {
            flags: VNET_NEEDS_CSUM,
            gso_type: VNET_GSO_TCPV4 | VNET_GSO_ECN,
            header_length: 52,
            gso_size: 1428,
            csum_start: 20,
            csum_offset: 16,
        };
        assert_eq!(VnetHeader::parse(&header.encode()), Some(header));
        assert_eq!(VnetHeader::parse(&[0; 9]), None);
        assert_eq!(VnetHeader::parse(&[0; 10]), Some(VnetHeader::default()));
    }

    #[test]
    fn a_partial_checksum_is_finished() {
        let whole = valid(tcp_segment(7, 0x18, b"hello, world"));
        let mut packet = partial(whole.clone());
        assert!(finish_checksum(&mut packet, 20, 16));
        assert_eq!(packet, whole);
        assert!(!finish_checksum(&mut packet, 20, 100));
        assert!(!finish_checksum(&mut packet, 60, 0));
    }

    #[test]
    fn a_tso_super_packet_is_cut_at_the_size_the_kernel_asked_for() {
        let payload: Vec<u8> = (0..5000).map(|i| (i % 253) as u8).collect();
        let (psh, ack, cwr) = (0x08, 0x10, 0x80);
        let sequence: u32 = 0xffff_fff0;
        let segment = |i: usize, flags: u8| {
            let chunk = &payload[i * 1428..((i + 1) * 1428).min(payload.len())];
            let mut s = tcp_segment(sequence.wrapping_add(1428 * i as u32), flags, chunk);
            s[4..6].copy_from_slice(&(0x1234_u16 + i as u16).to_be_bytes());
            valid(s)
        };
        let super_packet = partial(tcp_segment(sequence, ack | psh | cwr, &payload));
        let plan = Segmentation::plan(&super_packet).unwrap();
        assert_eq!(plan.count(1428), 4);
        let mut out = vec![0; 1500];
        for i in 0..4 {
            let length = plan.write(&super_packet, 1428, i, &mut out).unwrap();
            assert_eq!(length, plan.length(1428, i));
            let flags = [ack | cwr, ack, ack, ack | psh][i];
            assert_eq!(out[..length], segment(i, flags)[..], "segment {i}");
        }
        assert_eq!(plan.write(&super_packet, 1428, 4, &mut out), None);
        assert_eq!(plan.write(&super_packet, 1428, 0, &mut out[..100]), None);
    }

    #[test]
    fn merged_segments_are_cut_back_into_the_very_same_segments() {
        let segments = train(5, 1000);
        assert_eq!(merges(&segments), 5);
        let first = Mergeable::parse(&segments[0]).unwrap();
        let length = 40 + 5 * 1000;
        let mut headers = [0; 120];
        let vnet = merged_headers(&segments[0], &first, 0x18, length, &mut headers).unwrap();
        assert_eq!(
            (vnet.flags, vnet.gso_type, vnet.gso_size, vnet.header_length),
            (VNET_NEEDS_CSUM, VNET_GSO_TCPV4, 1000, 40)
        );
        assert_eq!((vnet.csum_start, vnet.csum_offset), (20, 16));
        let mut merged = headers[..40].to_vec();
        for segment in &segments {
            merged.extend(&segment[40..]);
        }
        // What the kernel does with it: GSO, as on the way out.
        let plan = Segmentation::plan(&merged).unwrap();
        let mut out = vec![0; 1100];
        for (i, segment) in segments.iter().enumerate() {
            let length = plan.write(&merged, 1000, i, &mut out).unwrap();
            assert_eq!(&out[..length], &segment[..], "segment {i}");
        }
    }

    #[test]
    fn only_in_order_full_segments_of_one_flow_are_merged() {
        let base = train(3, 1000);
        assert_eq!(merges(&base), 3);
        // Out of order.
        let swapped = vec![base[0].clone(), base[2].clone(), base[1].clone()];
        assert_eq!(merges(&swapped), 1);
        // A short segment ends the run (but joins it); PSH too.
        let mut short = train(3, 1000);
        short[1].truncate(540);
        short[1][2..4].copy_from_slice(&540_u16.to_be_bytes());
        short[1][33] = 0x10;
        short[1] = valid(short[1].clone());
        assert_eq!(merges(&short), 2);
        let mut push_first = train(2, 1000);
        push_first[0][33] = 0x18;
        push_first[0] = valid(push_first[0].clone());
        assert_eq!(merges(&push_first), 1);
        // Another acknowledgment number, a bad checksum, SYN: never.
        let mut other_ack = base.clone();
        other_ack[1][31] ^= 1;
        other_ack[1] = valid(other_ack[1].clone());
        assert_eq!(merges(&other_ack), 1);
        let mut corrupt = base.clone();
        corrupt[0][100] ^= 1;
        assert_eq!(Mergeable::parse(&corrupt[0]), None);
        let mut syn = tcp_segment(1, 0x12, &[0; 10]);
        syn[6] = 0x40;
        let syn = valid(syn);
        assert_eq!(Mergeable::parse(&syn), None);
    }
}
