//! Segmentation offload for the TUN device: the `virtio_net_hdr` before every packet, TSO
//! super-packets cut into the segments the kernel asked for (RFC 9293 sequence numbers and
//! flags, RFC 791 identification), merged packets from the underlay cut back to the device MTU,
//! and GRO-like merging of in-order TCP segments on the way in. Pure: no system calls.

use super::*;

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
