//! The netlink batch: RTM_NEWROUTE / RTM_DELROUTE requests encoded by hand, packed many per
//! sendmsg on one socket, and the kernel's answers read back and matched to their requests by
//! sequence number.
//!
//! Only failures are answered (no NLM_F_ACK but on the last request, which marks the end of the
//! batch). The kernel handles a socket's requests inside sendmsg, so once a chunk is sent all of
//! its answers are queued on our socket: they are read after each chunk, without waiting, and the
//! receive buffer is sized so that an answer to every request of a chunk fits (a chunk holds no
//! more requests than that). An answer that is lost anyway (the kernel reports the overrun as
//! ENOBUFS) leaves its chunk's outcome unknown, and the batch says so instead of calling those
//! requests done. Sequence numbers come from one counter per programmer, never reused by the next
//! batch, and answers outside a batch's numbers are ignored.

use std::ops::Range;
use std::os::fd::AsRawFd;

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{RouteKind, RouteTag};

/// How many octets of requests go into one sendmsg.
pub(super) const BATCH_OCTETS: usize = 64 * 1024;

/// The receive buffer asked for (the kernel doubles it): room for an answer to each request of
/// a full chunk, with margin. Without CAP_NET_ADMIN the kernel caps it at `rmem_max`, and
/// chunks get smaller instead.
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// What one answer costs in the receive buffer: the kernel charges a socket the whole buffer of
/// each message (its "truesize"), about 768 octets for an error answer without the request
/// echoed (NETLINK_CAP_ACK); rounded up.
const ANSWER_OCTETS: usize = 1024;

/// How a request treats a route already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Create only (NLM_F_CREATE | NLM_F_EXCL): EEXIST when a route with our table and metric
    /// is there, whatever its protocol.
    Create,
    /// Create or replace (NLM_F_CREATE | NLM_F_REPLACE): only for prefixes known to be ours.
    Replace,
    /// Delete our route (the protocol is in the request, and the kernel matches on it).
    Delete,
}

/// One request of a batch: its prefix, its mode and which change it came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    pub prefix: IpNetwork,
    pub mode: Mode,
    pub change: usize,
}

/// A batch of encoded requests: sendmsg-sized chunks, and each request. Request `i` carries
/// sequence number `base + i` (wrapping); the last one asks for an ACK.
#[derive(Debug)]
pub(super) struct Encoded {
    chunks: Vec<Vec<u8>>,
    /// The index of each chunk's first request.
    starts: Vec<usize>,
    pub requests: Vec<Request>,
    base: u32,
}

impl Encoded {
    /// Encodes requests in order: `Some(kind)` with [`Mode::Create`] or [`Mode::Replace`]
    /// installs, `None` with [`Mode::Delete`] deletes. A chunk holds at most `per_chunk`
    /// requests and about [`BATCH_OCTETS`].
    pub fn new<'a>(
        tag: RouteTag,
        base: u32,
        per_chunk: usize,
        requests: impl IntoIterator<Item = (Request, Option<&'a RouteKind>)>,
    ) -> Encoded {
        let mut batch = Encoded {
            chunks: Vec::new(),
            starts: Vec::new(),
            requests: Vec::new(),
            base,
        };
        let mut last = 0;
        for (request, kind) in requests {
            let index = batch.requests.len();
            let full = batch.chunks.last().is_none_or(|chunk| {
                chunk.len() >= BATCH_OCTETS
                    || batch
                        .starts
                        .last()
                        .is_some_and(|start| index - start >= per_chunk.max(1))
            });
            if full {
                batch.chunks.push(Vec::with_capacity(BATCH_OCTETS + 512));
                batch.starts.push(index);
            }
            let flags = match request.mode {
                Mode::Create => NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
                Mode::Replace => NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                Mode::Delete => NLM_F_REQUEST,
            };
            let kind = if request.mode == Mode::Delete {
                None
            } else {
                kind
            };
            let sequence = base.wrapping_add(index as u32);
            if let Some(chunk) = batch.chunks.last_mut() {
                last = encode(chunk, sequence, flags, tag, request.prefix, kind);
            }
            batch.requests.push(request);
        }
        // NLM_F_ACK on the last request marks the end of the batch.
        if let Some(flags) = batch
            .chunks
            .last_mut()
            .and_then(|chunk| chunk.get_mut(last + 6..last + 8))
        {
            let value = u16::from_ne_bytes([flags[0], flags[1]]) | NLM_F_ACK;
            flags.copy_from_slice(&value.to_ne_bytes());
        }
        batch
    }

    /// The requests of chunk `index`.
    fn chunk_requests(&self, index: usize) -> Range<usize> {
        let start = self.starts.get(index).copied().unwrap_or(0);
        let end = self
            .starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.requests.len());
        start..end
    }

    /// The request a sequence number belongs to, if it is one of this batch's.
    fn request_of(&self, sequence: u32) -> Option<usize> {
        let index = sequence.wrapping_sub(self.base) as usize;
        (index < self.requests.len()).then_some(index)
    }
}

/// What the kernel answered to a batch.
#[derive(Debug, Default)]
pub(super) struct Answers {
    /// The requests it refused, in order, with the error number (positive).
    pub refused: Vec<(usize, i32)>,
    /// Requests whose answer may have been lost: those among them not in `refused` may or may
    /// not have been applied.
    pub unknown: Vec<Range<usize>>,
}

impl Answers {
    /// Whether every answer came: the socket holds nothing of this batch any more.
    pub fn complete(&self) -> bool {
        self.unknown.is_empty()
    }
}

/// A batch socket. One batch at a time uses it; the programmer keeps idle ones in a pool and
/// drops a socket whose batch lost answers.
#[derive(Debug)]
pub(super) struct Writer {
    socket: Socket,
    /// How many requests a chunk may hold so that an answer to each fits the receive buffer.
    pub per_chunk: usize,
    /// Where answers are read into.
    buffer: Vec<u8>,
}

// rtnetlink constants (linux/netlink.h, linux/rtnetlink.h).
const NLMSG_ERROR: u16 = 2;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTN_UNSPEC: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTN_BLACKHOLE: u8 = 6;
const RTNH_F_ONLINK: u8 = 4;
const RT_TABLE_COMPAT: u8 = 252;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

impl Writer {
    /// Opens a batch socket in the calling thread's network namespace.
    pub fn open() -> std::io::Result<Writer> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Answers carry the request's header only, not the whole request.
        socket.set_cap_ack(true)?;
        if crate::sys::force_receive_buffer(socket.as_raw_fd(), RECEIVE_BUFFER).is_err() {
            socket.set_rx_buf_sz(RECEIVE_BUFFER)?;
        }
        let size = socket.get_rx_buf_sz()?;
        Ok(Writer {
            socket,
            per_chunk: (size / ANSWER_OCTETS).max(1),
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends every request, reading the answers after each chunk.
    pub fn send(&mut self, batch: &Encoded) -> Answers {
        let mut answers = Answers::default();
        let mut acknowledged = false;
        for (index, chunk) in batch.chunks.iter().enumerate() {
            let requests = batch.chunk_requests(index);
            if let Err(error) = self.socket.send(chunk, 0) {
                tracing::warn!(%error, "netlink send failed");
                answers.unknown.push(requests);
                continue;
            }
            if !self.read(batch, &mut answers, &mut acknowledged) {
                answers.unknown.push(requests);
            }
        }
        answers.refused.sort_unstable_by_key(|(index, _)| *index);
        if !acknowledged && answers.unknown.is_empty() {
            // The end of the batch never came: the last chunk's outcome is not known.
            answers
                .unknown
                .push(batch.chunk_requests(batch.chunks.len().saturating_sub(1)));
        }
        answers
    }

    /// Reads every answer queued, without waiting. Returns false when some were lost.
    fn read(&mut self, batch: &Encoded, answers: &mut Answers, acknowledged: &mut bool) -> bool {
        let last = batch.requests.len().saturating_sub(1);
        let mut complete = true;
        loop {
            self.buffer.clear();
            match self.socket.recv(&mut self.buffer, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("netlink answers lost: the receive buffer overran");
                    complete = false;
                    continue;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return complete,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!(%error, "netlink receive failed");
                    return false;
                }
            }
            for (sequence, code) in errors(&self.buffer) {
                let Some(index) = batch.request_of(sequence) else {
                    // Not this batch's: ignored.
                    continue;
                };
                if code != 0 {
                    answers.refused.push((index, code.saturating_neg()));
                }
                if index == last {
                    *acknowledged = true;
                }
            }
        }
    }
}

/// The (sequence number, error code) of every NLMSG_ERROR message in a datagram (0 is an ACK).
fn errors(datagram: &[u8]) -> impl Iterator<Item = (u32, i32)> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        loop {
            let header = datagram.get(offset..offset + 16)?;
            let length = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
            let kind = u16::from_ne_bytes(header[4..6].try_into().ok()?);
            let sequence = u32::from_ne_bytes(header[8..12].try_into().ok()?);
            if length < 16 {
                return None;
            }
            let start = offset;
            offset += (length + 3) & !3;
            if kind == NLMSG_ERROR {
                let code = datagram.get(start + 16..start + 20)?;
                return Some((sequence, i32::from_ne_bytes(code.try_into().ok()?)));
            }
        }
    })
}

fn put_attribute(buffer: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let length = 4 + payload.len();
    buffer.extend_from_slice(&(length as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(payload);
    buffer.resize(buffer.len() + (4 - length % 4) % 4, 0);
}

fn address_octets(address: std::net::IpAddr) -> ([u8; 16], usize) {
    let mut octets = [0; 16];
    match address {
        std::net::IpAddr::V4(a) => {
            octets[..4].copy_from_slice(&a.octets());
            (octets, 4)
        }
        std::net::IpAddr::V6(a) => {
            octets.copy_from_slice(&a.octets());
            (octets, 16)
        }
    }
}

/// Encodes one RTM_NEWROUTE (`kind` given) or RTM_DELROUTE (`kind` `None`: any type of ours
/// matches) with our table, protocol and metric, and returns where it starts in `buffer`.
pub(super) fn encode(
    buffer: &mut Vec<u8>,
    sequence: u32,
    flags: u16,
    tag: RouteTag,
    prefix: IpNetwork,
    kind: Option<&RouteKind>,
) -> usize {
    let start = buffer.len();
    let message_type = if kind.is_some() {
        RTM_NEWROUTE
    } else {
        RTM_DELROUTE
    };
    // nlmsghdr: length (patched below), type, flags, sequence, port id.
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.extend_from_slice(&message_type.to_ne_bytes());
    buffer.extend_from_slice(&flags.to_ne_bytes());
    buffer.extend_from_slice(&sequence.to_ne_bytes());
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let family = if prefix.is_ipv4() { AF_INET } else { AF_INET6 };
    let route_type = match kind {
        None => RTN_UNSPEC,
        Some(RouteKind::Blackhole) => RTN_BLACKHOLE,
        Some(RouteKind::Via(_)) => RTN_UNICAST,
    };
    let onlink = match kind {
        Some(RouteKind::Via(hops)) if hops.len() == 1 => hops.first().is_some_and(|h| h.onlink),
        _ => false,
    };
    let table = u8::try_from(tag.table).unwrap_or(RT_TABLE_COMPAT);
    buffer.extend_from_slice(&[
        family,
        prefix.prefix(),
        0,
        0,
        table,
        tag.protocol,
        0, // RT_SCOPE_UNIVERSE
        route_type,
    ]);
    let route_flags: u32 = if onlink { u32::from(RTNH_F_ONLINK) } else { 0 };
    buffer.extend_from_slice(&route_flags.to_ne_bytes());
    let (octets, length) = address_octets(prefix.network());
    put_attribute(buffer, RTA_DST, &octets[..length]);
    if tag.table > 255 {
        put_attribute(buffer, RTA_TABLE, &tag.table.to_ne_bytes());
    }
    if let Some(metric) = tag.metric {
        put_attribute(buffer, RTA_PRIORITY, &metric.to_ne_bytes());
    }
    match kind {
        Some(RouteKind::Via(hops)) if hops.len() == 1 => {
            if let Some(hop) = hops.first() {
                let (octets, length) = address_octets(hop.gateway);
                put_attribute(buffer, RTA_GATEWAY, &octets[..length]);
                if let Some(index) = hop.interface {
                    put_attribute(buffer, RTA_OIF, &index.to_ne_bytes());
                }
            }
        }
        Some(RouteKind::Via(hops)) => {
            // RTA_MULTIPATH: an rtnexthop (length, flags, hops, ifindex) per hop, each followed
            // by its RTA_GATEWAY.
            let mut nested = Vec::with_capacity(hops.len() * 28);
            for hop in hops {
                let (octets, length) = address_octets(hop.gateway);
                let size = 8 + 4 + length;
                nested.extend_from_slice(&(size as u16).to_ne_bytes());
                nested.push(if hop.onlink { RTNH_F_ONLINK } else { 0 });
                nested.push(0);
                nested.extend_from_slice(&hop.interface.unwrap_or(0).to_ne_bytes());
                put_attribute(&mut nested, RTA_GATEWAY, &octets[..length]);
            }
            put_attribute(buffer, RTA_MULTIPATH, &nested);
        }
        _ => {}
    }
    let length = (buffer.len() - start) as u32;
    if let Some(field) = buffer.get_mut(start..start + 4) {
        field.copy_from_slice(&length.to_ne_bytes());
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::NextHop;
    use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteType};
    use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
    use rtnetlink::{RouteMessageBuilder, RouteNextHopBuilder};
    use std::net::IpAddr;

    const TAG: RouteTag = RouteTag {
        table: 254,
        protocol: 12,
        metric: Some(1024),
    };

    /// The same request built with rtnetlink's builder, the reference for [`encode`].
    fn reference(prefix: IpNetwork, kind: &RouteKind) -> RouteMessage {
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(prefix.ip(), prefix.prefix())
            .unwrap()
            .table_id(TAG.table)
            .protocol(RouteProtocol::from(TAG.protocol))
            .priority(1024);
        match kind {
            RouteKind::Blackhole => builder.kind(RouteType::BlackHole).build(),
            RouteKind::Via(hops) if hops.len() == 1 => {
                let hop = hops[0];
                builder = builder
                    .kind(RouteType::Unicast)
                    .gateway(hop.gateway)
                    .unwrap();
                if let Some(index) = hop.interface {
                    builder = builder.output_interface(index);
                }
                if hop.onlink {
                    builder = builder.onlink();
                }
                builder.build()
            }
            RouteKind::Via(hops) => {
                let family = if prefix.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                let nexthops = hops
                    .iter()
                    .map(|hop| {
                        let mut b = RouteNextHopBuilder::new(family).via(hop.gateway).unwrap();
                        if let Some(index) = hop.interface {
                            b = b.interface(index);
                        }
                        if hop.onlink {
                            b = b.onlink();
                        }
                        b.build()
                    })
                    .collect();
                builder.kind(RouteType::Unicast).multipath(nexthops).build()
            }
        }
    }

    fn decoded(prefix: IpNetwork, kind: &RouteKind) -> RouteMessage {
        let mut buffer = Vec::new();
        encode(&mut buffer, 7, NLM_F_REQUEST, TAG, prefix, Some(kind));
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer).unwrap();
        assert_eq!(message.header.length as usize, buffer.len());
        assert_eq!(message.header.sequence_number, 7);
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => route,
            other => panic!("not a new route: {other:?}"),
        }
    }

    fn sorted(message: &RouteMessage) -> Vec<String> {
        let mut attributes: Vec<String> = message
            .attributes
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        attributes.sort();
        attributes
    }

    #[test]
    fn hand_encoded_routes_read_back_as_rtnetlink_builds_them() {
        let hop = |gateway: &str, interface: Option<u32>, onlink: bool| NextHop {
            gateway: gateway.parse().unwrap(),
            interface,
            onlink,
        };
        let cases: Vec<(&str, RouteKind)> = vec![
            ("10.244.1.0/26", RouteKind::Blackhole),
            (
                "10.244.2.0/26",
                RouteKind::Via(vec![hop("10.0.0.12", None, false)]),
            ),
            (
                "10.244.3.0/26",
                RouteKind::Via(vec![hop("10.1.2.13", Some(9), true)]),
            ),
            (
                "10.244.4.0/26",
                RouteKind::Via(vec![
                    hop("10.0.0.12", None, false),
                    hop("10.0.0.13", None, false),
                ]),
            ),
            (
                "10.244.5.0/26",
                RouteKind::Via(vec![
                    hop("10.1.2.13", Some(9), true),
                    hop("10.1.2.14", Some(9), true),
                ]),
            ),
            (
                "fd00:244::/64",
                RouteKind::Via(vec![hop("fd00::12", None, false)]),
            ),
            (
                "fd00:245::/64",
                RouteKind::Via(vec![
                    hop("fd00::12", None, false),
                    hop("fd00::13", None, false),
                ]),
            ),
        ];
        for (prefix, kind) in cases {
            let prefix: IpNetwork = prefix.parse().unwrap();
            let ours = decoded(prefix, &kind);
            let theirs = reference(prefix, &kind);
            assert_eq!(ours.header, theirs.header, "{prefix}");
            assert_eq!(sorted(&ours), sorted(&theirs), "{prefix}");
        }
    }

    #[test]
    fn a_delete_matches_any_type_of_our_protocol() {
        let mut buffer = Vec::new();
        let prefix: IpNetwork = "10.244.1.0/26".parse().unwrap();
        encode(&mut buffer, 1, NLM_F_REQUEST, TAG, prefix, None);
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(route)) = message.payload
        else {
            panic!("not a delete");
        };
        assert_eq!(route.header.kind, RouteType::Unspec);
        assert_eq!(u8::from(route.header.protocol), 12);
        assert_eq!(route.header.destination_prefix_length, 26);
    }

    #[test]
    fn only_the_last_request_of_a_batch_asks_for_an_ack() {
        let prefixes: Vec<IpNetwork> = (0..5000u32)
            .map(|i| IpNetwork::new(IpAddr::V4((0x0a00_0000 + (i << 8)).into()), 24).unwrap())
            .collect();
        let requests: Vec<Request> = prefixes
            .iter()
            .enumerate()
            .map(|(change, prefix)| Request {
                prefix: *prefix,
                mode: Mode::Create,
                change,
            })
            .collect();
        let batch = Encoded::new(
            TAG,
            1,
            usize::MAX,
            requests.iter().map(|r| (*r, Some(&RouteKind::Blackhole))),
        );
        assert!(
            batch.chunks.len() > 1,
            "5000 requests span several sendmsgs"
        );
        let mut seen = 0;
        for chunk in &batch.chunks {
            assert!(chunk.len() <= BATCH_OCTETS + 512);
            let mut offset = 0;
            while offset < chunk.len() {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&chunk[offset..]).unwrap();
                seen += 1;
                assert_eq!(message.header.sequence_number, seen);
                assert_eq!(message.header.flags & NLM_F_ACK != 0, seen == 5000);
                offset += message.header.length as usize;
            }
        }
        assert_eq!(seen, 5000);
    }

    fn requests(count: usize, mode: Mode) -> Vec<Request> {
        (0..count)
            .map(|change| Request {
                prefix: IpNetwork::new(
                    IpAddr::V4((0x0a00_0000 + ((change as u32) << 8)).into()),
                    24,
                )
                .unwrap(),
                mode,
                change,
            })
            .collect()
    }

    #[test]
    fn a_create_is_exclusive_and_only_a_replace_replaces() {
        let flags = |mode| {
            let batch = Encoded::new(
                TAG,
                1,
                usize::MAX,
                requests(1, mode)
                    .into_iter()
                    .map(|r| (r, Some(&RouteKind::Blackhole))),
            );
            let message =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&batch.chunks[0]).unwrap();
            message.header.flags & !(NLM_F_ACK | NLM_F_REQUEST)
        };
        assert_eq!(flags(Mode::Create), NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(flags(Mode::Replace), NLM_F_CREATE | NLM_F_REPLACE);
        assert_eq!(flags(Mode::Delete), 0);
    }

    #[test]
    fn sequence_numbers_start_at_the_base_and_answers_outside_the_batch_are_ignored() {
        let base = u32::MAX - 1;
        let batch = Encoded::new(
            TAG,
            base,
            usize::MAX,
            requests(4, Mode::Create)
                .into_iter()
                .map(|r| (r, Some(&RouteKind::Blackhole))),
        );
        let mut offset = 0;
        let mut seen = Vec::new();
        while offset < batch.chunks[0].len() {
            let message =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&batch.chunks[0][offset..])
                    .unwrap();
            seen.push(message.header.sequence_number);
            offset += message.header.length as usize;
        }
        // Wrapping past 2^32.
        assert_eq!(seen, vec![u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(batch.request_of(u32::MAX - 1), Some(0));
        assert_eq!(batch.request_of(1), Some(3));
        assert_eq!(batch.request_of(2), None, "the next batch's first number");
        assert_eq!(
            batch.request_of(u32::MAX - 2),
            None,
            "the last batch's last number"
        );
    }

    #[test]
    fn a_chunk_holds_no_more_requests_than_answers_fit_in_the_receive_buffer() {
        let batch = Encoded::new(
            TAG,
            1,
            100,
            requests(1000, Mode::Create)
                .into_iter()
                .map(|r| (r, Some(&RouteKind::Blackhole))),
        );
        assert_eq!(batch.chunks.len(), 10);
        assert_eq!(batch.chunk_requests(0), 0..100);
        assert_eq!(batch.chunk_requests(9), 900..1000);
    }

    /// An NLMSG_ERROR message: header, error code, the request's header (NETLINK_CAP_ACK).
    fn error_message(sequence: u32, code: i32) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&36u32.to_ne_bytes());
        message.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&code.to_ne_bytes());
        message.extend_from_slice(&[0; 16]);
        message
    }

    #[test]
    fn answers_are_read_by_sequence_number_and_a_short_datagram_ends_the_reading() {
        let mut datagram = error_message(7, -libc::ENETUNREACH);
        // A message of another type between them is skipped.
        let mut other = error_message(8, 0);
        other[4..6].copy_from_slice(&3u16.to_ne_bytes());
        datagram.extend_from_slice(&other);
        datagram.extend_from_slice(&error_message(9, 0));
        let read: Vec<(u32, i32)> = errors(&datagram).collect();
        assert_eq!(read, vec![(7, -libc::ENETUNREACH), (9, 0)]);
        for cut in 0..datagram.len() {
            // Never panics, whatever the length.
            let _ = errors(&datagram[..cut]).count();
        }
        let mut zero = error_message(1, 0);
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(errors(&zero).count(), 0, "a zero length does not loop");
    }
}
