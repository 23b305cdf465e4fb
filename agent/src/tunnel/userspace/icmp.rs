//! ICMP "fragmentation needed and DF set" (RFC 792, RFC 1191 section 4) for a DF packet larger
//! than the tunnel's path MTU, as RFC 2003 section 5.1 asks of an encapsulator; never about an
//! ICMP error or a later fragment (RFC 1122 section 3.2.2). Pure: no system calls.

use super::IPV4_HEADER;
use super::packet::{Header, checksum};
use std::net::Ipv4Addr;

/// The longest ICMP "fragmentation needed" message built: an IPv4 header, the ICMP header and
/// the quoted header (at most 60 octets) with 8 octets of its data.
pub(super) const FRAGMENTATION_NEEDED_MAX: usize = IPV4_HEADER + 8 + 60 + 8;

/// ICMP destination unreachable, fragmentation needed and DF set (RFC 792, type 3 code 4) for
/// `packet`, with the next-hop MTU of RFC 1191 section 4, written into `out`; returns its
/// length. `None` where RFC 1122 section 3.2.2 forbids an error: about an ICMP error, a later
/// fragment, or a packet from no unicast source.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Type = 3    |   Code = 4    |           Checksum            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           unused = 0          |         Next-Hop MTU          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Internet Header + 64 bits of Original Datagram Data      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// It comes from the inner destination: a local address would be a martian to the kernel
/// when it arrives on the device, and that one is routed through the tunnel.
pub(super) fn fragmentation_needed(
    packet: &[u8],
    mtu: u16,
    out: &mut [u8; FRAGMENTATION_NEEDED_MAX],
) -> Option<usize> {
    let header = Header::parse(packet)?;
    let source = Ipv4Addr::from(header.source);
    if header.later_fragment
        || source.is_unspecified()
        || source.is_broadcast()
        || source.is_multicast()
    {
        return None;
    }
    if header.protocol == 1 {
        // Only queries (echo, timestamp, ...) may be answered with an error.
        let icmp_type = *packet.get(header.header_length)?;
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) {
            return None;
        }
    }
    let quoted = packet.get(..(header.header_length + 8).min(header.total_length))?;
    let length = IPV4_HEADER + 8 + quoted.len();
    let (ip, rest) = out.split_at_mut(IPV4_HEADER);
    let icmp = rest.get_mut(..8 + quoted.len())?;
    let total = u16::try_from(length).ok()?.to_be_bytes();
    let [s0, s1, s2, s3] = header.destination.to_be_bytes();
    let [d0, d1, d2, d3] = header.source.to_be_bytes();
    // Precedence "internetwork control", as the kernel's own ICMP errors; TTL 64; protocol 1.
    ip.copy_from_slice(&[
        0x45, 0xc0, total[0], total[1], 0, 0, 0, 0, 64, 1, 0, 0, s0, s1, s2, s3, d0, d1, d2, d3,
    ]);
    let sum = checksum(ip).to_be_bytes();
    ip[10] = sum[0];
    ip[11] = sum[1];
    let [m0, m1] = mtu.to_be_bytes();
    icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, m0, m1]);
    icmp[8..].copy_from_slice(quoted);
    let sum = checksum(icmp).to_be_bytes();
    icmp[2] = sum[0];
    icmp[3] = sum[1];
    Some(length)
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    #[test]
    fn fragmentation_needed_quotes_the_header_and_8_octets_with_valid_checksums() {
        let payload: Vec<u8> = (0..100).collect();
        let mut original = packet("10.244.1.1", "10.244.2.1", 6, 0, &payload);
        original[4] = 0xab;
        let mut out = [0; FRAGMENTATION_NEEDED_MAX];
        let length = fragmentation_needed(&original, 1380, &mut out).unwrap();
        let message = &out[..length];
        assert_eq!(length, 20 + 8 + 28);
        let ip = Header::parse(message).unwrap();
        assert_eq!(ip.protocol, 1);
        assert_eq!(ip.total_length, length);
        assert_eq!(Ipv4Addr::from(ip.source), addr("10.244.2.1"));
        assert_eq!(Ipv4Addr::from(ip.destination), addr("10.244.1.1"));
        assert_eq!(checksum(&message[..20]), 0, "IP header checksum");
        assert_eq!(
            &message[20..28],
            &[3, 4, message[22], message[23], 0, 0, 0x05, 0x64]
        );
        assert_eq!(checksum(&message[20..]), 0, "ICMP checksum");
        assert_eq!(&message[28..], &original[..28]);
    }

    #[test]
    fn no_fragmentation_needed_about_icmp_errors_or_later_fragments() {
        let mut out = [0; FRAGMENTATION_NEEDED_MAX];
        let error = packet("10.244.1.1", "10.244.2.1", 1, 0, &[3, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(fragmentation_needed(&error, 1380, &mut out), None);
        let echo = packet("10.244.1.1", "10.244.2.1", 1, 0, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert!(fragmentation_needed(&echo, 1380, &mut out).is_some());
        let mut later = tcp("10.244.1.1", "10.244.2.1", 1, 2);
        later[7] = 1;
        assert_eq!(fragmentation_needed(&later, 1380, &mut out), None);
    }
}
