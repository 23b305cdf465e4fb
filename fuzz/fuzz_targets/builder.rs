//! `UpdateBuilder` on routes and attributes read from the input. Every message it writes must fit
//! the session, the stream must frame and decode back, and the decoded routes must be the input
//! routes in order: host bits cleared, and path identifiers present exactly when the session sends
//! them for the family (a missing one is sent as 0).
//!
//! Input: one octet of context (see `tern_fuzz::context`), three octets choosing the attributes,
//! their values, then routes until the input ends. A route is a tag octet (bit 0 IPv6, bit 1 has
//! a path identifier, bit 2 withdrawn rather than announced, bits 3 to 7 how many more copies,
//! each with the next path identifier), a length octet (taken modulo 33 or 129), the prefix
//! octets the length needs, and the path identifier. Reads past the end give zeros.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use libfuzzer_sys::fuzz_target;
use tern_bgp::wire::{
    Aggregator, AsPath, AsSegment, Community, Context, ExtendedCommunity, Family, LargeCommunity,
    Message, NextHop, Nlri, Origin, PathAttributes, RawAttribute, SegmentType, Update,
    UpdateBuilder, frame,
};

/// Reads from the front of the input; past its end every read gives zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.octets(4))
    }

    /// An AS number: AS 0 is refused on receipt (RFC 7607), so it is read as 1.
    fn asn(&mut self) -> u32 {
        self.u32().max(1)
    }

    /// `count` octets at the front of an array of `N`, the rest zero.
    fn octets<const N: usize>(&mut self, count: usize) -> [u8; N] {
        let mut out = [0; N];
        for octet in out.iter_mut().take(count) {
            *octet = self.u8();
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn v6_next_hop(input: &mut Input<'_>, link_local: bool) -> NextHop {
    NextHop::V6 {
        global: Ipv6Addr::from(input.octets::<16>(16)),
        link_local: link_local.then(|| Ipv6Addr::from(input.octets::<16>(16))),
    }
}

/// The attributes, the next hop of IPv4 routes and that of IPv6 routes.
fn attributes(input: &mut Input<'_>, context: &Context) -> (PathAttributes, NextHop, NextHop) {
    let [a, b, c] = input.octets::<3>(3);
    let mut segments = Vec::new();
    if b & 0x10 != 0 {
        // Toward a 2-octet speaker a confederation AS cannot be above 65535: AS4_PATH does not
        // carry confederation segments (RFC 6793 section 3).
        let asn = u32::from(u16::from_be_bytes(input.octets(2))).max(1);
        segments.push(AsSegment {
            segment_type: SegmentType::ConfedSequence,
            asns: vec![asn],
        });
    }
    let sequence = usize::from(b & 0x0f);
    if sequence > 0 {
        segments.push(AsSegment {
            segment_type: SegmentType::Sequence,
            asns: (0..sequence).map(|_| input.asn()).collect(),
        });
    }
    if b & 0x20 != 0 {
        segments.push(AsSegment {
            segment_type: SegmentType::Set,
            asns: vec![input.asn(), input.asn()],
        });
    }
    let internal = !context.external;
    let attributes = PathAttributes {
        origin: Some(match a & 0x03 {
            1 => Origin::Egp,
            2 => Origin::Incomplete,
            _ => Origin::Igp,
        }),
        as_path: Some(AsPath { segments }),
        // Ignored by the builder: the next hop argument decides.
        next_hop: Some(Ipv4Addr::from(input.u32())),
        med: (a & 0x04 != 0).then(|| input.u32()),
        local_pref: (a & 0x08 != 0 && internal).then(|| input.u32()),
        atomic_aggregate: a & 0x10 != 0,
        aggregator: (a & 0x20 != 0).then(|| Aggregator {
            asn: input.asn(),
            address: Ipv4Addr::from(input.u32()),
        }),
        communities: (0..b >> 6).map(|_| Community(input.u32())).collect(),
        originator_id: (c & 0x10 != 0 && internal).then(|| Ipv4Addr::from(input.u32())),
        cluster_list: if c & 0x10 != 0 && internal {
            vec![Ipv4Addr::from(input.u32()), Ipv4Addr::from(input.u32())]
        } else {
            Vec::new()
        },
        extended_communities: (0..(c >> 2) & 0x03)
            .map(|_| ExtendedCommunity(input.octets(8)))
            .collect(),
        large_communities: (0..c & 0x03)
            .map(|_| LargeCommunity {
                global_admin: input.u32(),
                local_data_1: input.u32(),
                local_data_2: input.u32(),
            })
            .collect(),
        unknown: if c & 0x20 != 0 {
            let choice = input.u8();
            let value: [u8; 7] = input.octets(7);
            vec![RawAttribute {
                // Optional transitive, and partial as a receiver marks it.
                flags: 0xe0,
                type_code: 0xf0 | (choice & 0x0f),
                value: value[..usize::from(choice >> 5)].to_vec(),
            }]
        } else {
            Vec::new()
        },
    };
    let ipv4_next_hop = match a >> 6 {
        1 => v6_next_hop(input, false),
        2 => v6_next_hop(input, true),
        _ => {
            let address = Ipv4Addr::from(input.u32());
            // NEXT_HOP must be a unicast address (RFC 4271 section 6.3).
            if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
                NextHop::V4(Ipv4Addr::new(192, 0, 2, 1))
            } else {
                NextHop::V4(address)
            }
        }
    };
    let ipv6_next_hop = v6_next_hop(input, c & 0x40 != 0);
    (attributes, ipv4_next_hop, ipv6_next_hop)
}

/// Routes to announce and withdraw, IPv4 then IPv6 in each.
#[derive(Default)]
struct Routes {
    announce: [Vec<Nlri>; 2],
    withdraw: [Vec<Nlri>; 2],
}

fn routes(input: &mut Input<'_>) -> Routes {
    let mut routes = Routes::default();
    while !input.is_empty() {
        let tag = input.u8();
        let ipv6 = tag & 0x01 != 0;
        let length = input.u8();
        let prefix = if ipv6 {
            let length = length % 129;
            let address = Ipv6Addr::from(input.octets::<16>(usize::from(length).div_ceil(8)));
            IpNetwork::V6(Ipv6Network::new(address, length).unwrap())
        } else {
            let length = length % 33;
            let address = Ipv4Addr::from(input.octets::<4>(usize::from(length).div_ceil(8)));
            IpNetwork::V4(Ipv4Network::new(address, length).unwrap())
        };
        let path_id = (tag & 0x02 != 0).then(|| input.u32());
        let list = if tag & 0x04 != 0 {
            &mut routes.withdraw
        } else {
            &mut routes.announce
        };
        for copy in 0..=u32::from(tag >> 3) {
            list[usize::from(ipv6)].push(Nlri {
                path_id: path_id.map(|id| id.wrapping_add(copy)),
                prefix,
            });
        }
    }
    routes
}

/// What a route decodes to: host bits cleared, and a path identifier exactly with ADD-PATH.
fn expected(route: &Nlri, add_path: bool) -> Nlri {
    let prefix = match route.prefix {
        IpNetwork::V4(net) => IpNetwork::V4(Ipv4Network::new(net.network(), net.prefix()).unwrap()),
        IpNetwork::V6(net) => IpNetwork::V6(Ipv6Network::new(net.network(), net.prefix()).unwrap()),
    };
    Nlri {
        path_id: add_path.then(|| route.path_id.unwrap_or(0)),
        prefix,
    }
}

const FAMILIES: [Family; 2] = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];

fuzz_target!(|data: &[u8]| {
    let Some((context, rest)) = tern_fuzz::split(data) else {
        return;
    };
    let mut input = Input(rest);
    let (attributes, ipv4_next_hop, ipv6_next_hop) = attributes(&mut input, &context);
    let routes = routes(&mut input);

    let builder = UpdateBuilder::new(&context);
    let mut stream = Vec::new();
    let mut written = 0;
    for (i, family) in FAMILIES.into_iter().enumerate() {
        let next_hop = if i == 0 { ipv4_next_hop } else { ipv6_next_hop };
        written += builder
            .announce(
                family,
                &attributes,
                next_hop,
                &routes.announce[i],
                &mut stream,
            )
            .unwrap_or_else(|e| panic!("announce {family} failed: {e}"));
    }
    for (i, family) in FAMILIES.into_iter().enumerate() {
        written += builder
            .withdraw(family, &routes.withdraw[i], &mut stream)
            .unwrap_or_else(|e| panic!("withdraw {family} failed: {e}"));
    }

    // What each announcement must decode to.
    let classic = match ipv4_next_hop {
        NextHop::V4(address) => Some(address),
        NextHop::V6 { .. } => None,
    };
    let ipv4_attributes = PathAttributes {
        next_hop: classic,
        ..attributes.clone()
    };
    let mp_attributes = PathAttributes {
        next_hop: None,
        ..attributes
    };

    let mut announced: [Vec<Nlri>; 2] = Default::default();
    let mut withdrawn: [Vec<Nlri>; 2] = Default::default();
    let mut messages = 0;
    let mut rest = stream.as_slice();
    while !rest.is_empty() {
        let header = frame(rest, &context)
            .unwrap_or_else(|e| panic!("message {messages} does not frame: {e:?}"))
            .unwrap_or_else(|| panic!("message {messages} is cut short"));
        assert!(
            header.length <= context.max_message_len(),
            "message {messages} is {} octets",
            header.length
        );
        let (bytes, tail) = rest.split_at(header.length);
        rest = tail;
        let update = match Message::decode(bytes, &context) {
            Ok(Message::Update(update)) => update,
            other => panic!("message {messages} is not an UPDATE: {other:?}"),
        };
        assert!(
            update.errors.is_empty(),
            "message {messages} decodes with errors: {:?}",
            update.errors
        );
        let before = announced
            .iter()
            .chain(&withdrawn)
            .map(Vec::len)
            .sum::<usize>();
        let Update {
            withdrawn: ipv4_withdrawn,
            attributes: decoded_attributes,
            mp_reach,
            mp_unreach,
            nlri,
            ..
        } = update;
        withdrawn[0].extend(ipv4_withdrawn);
        if let Some(unreach) = mp_unreach {
            let i = FAMILIES.iter().position(|f| *f == unreach.family).unwrap();
            withdrawn[i].extend(unreach.withdrawn);
        }
        if let Some(reach) = mp_reach {
            assert!(nlri.is_empty(), "message {messages} has both NLRI fields");
            let i = FAMILIES.iter().position(|f| *f == reach.family).unwrap();
            let next_hop = if i == 0 { ipv4_next_hop } else { ipv6_next_hop };
            assert_eq!(reach.next_hop, next_hop, "message {messages}");
            assert_eq!(decoded_attributes, mp_attributes, "message {messages}");
            announced[i].extend(reach.nlri);
        } else if !nlri.is_empty() {
            assert_eq!(decoded_attributes, ipv4_attributes, "message {messages}");
            announced[0].extend(nlri);
        } else {
            assert_eq!(
                decoded_attributes,
                PathAttributes::default(),
                "message {messages}"
            );
        }
        let after = announced
            .iter()
            .chain(&withdrawn)
            .map(Vec::len)
            .sum::<usize>();
        assert!(after > before, "message {messages} carries no route");
        messages += 1;
    }
    assert_eq!(messages, written, "messages counted by the builder");

    for (i, family) in FAMILIES.into_iter().enumerate() {
        let add_path = context.add_path_send.contains(family);
        let want: Vec<Nlri> = routes.announce[i]
            .iter()
            .map(|r| expected(r, add_path))
            .collect();
        assert!(announced[i] == want, "announced {family} routes differ");
        let want: Vec<Nlri> = routes.withdraw[i]
            .iter()
            .map(|r| expected(r, add_path))
            .collect();
        assert!(withdrawn[i] == want, "withdrawn {family} routes differ");
    }
});
