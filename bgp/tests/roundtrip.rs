//! Property tests: every message value encodes to bytes that decode back to the same value, under
//! every session context; the UPDATE builder's packed output decodes to exactly the routes given;
//! and the decoder neither panics nor changes its mind on arbitrary input.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tern_bgp::wire::*;

fn families() -> impl Strategy<Value = Families> {
    (any::<bool>(), any::<bool>()).prop_map(|(v4, v6)| {
        let mut set = Families::NONE;
        if v4 {
            set.insert(Family::IPV4_UNICAST);
        }
        if v6 {
            set.insert(Family::IPV6_UNICAST);
        }
        set
    })
}

/// A session context whose send and receive ADD-PATH sets agree, so a value survives the trip.
fn contexts() -> impl Strategy<Value = Context> {
    (any::<bool>(), any::<bool>(), families(), any::<bool>()).prop_map(
        |(four_octet_as, extended_messages, add_path, external)| Context {
            four_octet_as,
            extended_messages,
            add_path_receive: add_path,
            add_path_send: add_path,
            external,
        },
    )
}

fn ipv4_prefix() -> impl Strategy<Value = IpNetwork> {
    (any::<u32>(), 0u8..=32).prop_map(|(bits, length)| {
        let net = Ipv4Network::new(Ipv4Addr::from(bits), length).unwrap();
        IpNetwork::V4(Ipv4Network::new(net.network(), length).unwrap())
    })
}

fn ipv6_prefix() -> impl Strategy<Value = IpNetwork> {
    (any::<u128>(), 0u8..=128).prop_map(|(bits, length)| {
        let net = Ipv6Network::new(Ipv6Addr::from(bits), length).unwrap();
        IpNetwork::V6(Ipv6Network::new(net.network(), length).unwrap())
    })
}

fn routes(
    prefix: impl Strategy<Value = IpNetwork>,
    add_path: bool,
    max: usize,
) -> impl Strategy<Value = Vec<Nlri>> {
    vec((prefix, any::<u32>()), 0..max).prop_map(move |list| {
        list.into_iter()
            .map(|(prefix, id)| Nlri {
                path_id: add_path.then_some(id),
                prefix,
            })
            .collect()
    })
}

fn unicast_ipv4() -> impl Strategy<Value = Ipv4Addr> {
    (1u32..0xe000_0000).prop_map(Ipv4Addr::from)
}

fn segment(max_asn: u32, types: Vec<SegmentType>) -> impl Strategy<Value = AsSegment> {
    (proptest::sample::select(types), vec(1..=max_asn, 1..12))
        .prop_map(|(segment_type, asns)| AsSegment { segment_type, asns })
}

/// AS paths as real speakers build them: optional confederation segments first (never from an
/// external peer, RFC 5065 section 5), then sequences and sets. Confederation members fit two
/// octets, as AS4_PATH cannot carry them.
fn as_path(external: bool) -> impl Strategy<Value = AsPath> {
    (
        vec(
            segment(
                0xffff,
                vec![SegmentType::ConfedSequence, SegmentType::ConfedSet],
            ),
            0..if external { 1 } else { 2 },
        ),
        vec(
            segment(u32::MAX, vec![SegmentType::Sequence, SegmentType::Set]),
            0..4,
        ),
    )
        .prop_map(|(mut confed, rest)| {
            confed.extend(rest);
            AsPath { segments: confed }
        })
}

fn attributes(external: bool) -> impl Strategy<Value = PathAttributes> {
    let known_codes = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32];
    (
        (
            option::of(prop_oneof![
                Just(Origin::Igp),
                Just(Origin::Egp),
                Just(Origin::Incomplete)
            ]),
            option::of(as_path(external)),
            option::of(unicast_ipv4()),
            option::of(any::<u32>()),
            option::of(any::<u32>()),
            any::<bool>(),
            option::of((1u32.., any::<u32>())),
        ),
        (
            vec(any::<u32>(), 0..5),
            option::of(any::<u32>()),
            vec(any::<u32>(), 0..4),
            vec(any::<[u8; 8]>(), 0..4),
            vec(any::<(u32, u32, u32)>(), 0..4),
            vec(
                (
                    any::<u8>().prop_filter("unknown", move |c| !known_codes.contains(c)),
                    vec(any::<u8>(), 0..300),
                ),
                0..3,
            ),
        ),
    )
        .prop_map(
            move |(
                (origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator),
                (communities, originator, cluster, extended, large, unknown),
            )| {
                let mut seen = std::collections::HashSet::new();
                PathAttributes {
                    origin,
                    as_path,
                    next_hop,
                    med,
                    local_pref: local_pref.filter(|_| !external),
                    atomic_aggregate,
                    aggregator: aggregator.map(|(asn, address)| Aggregator {
                        asn,
                        address: Ipv4Addr::from(address),
                    }),
                    communities: communities.into_iter().map(Community).collect(),
                    originator_id: originator.filter(|_| !external).map(Ipv4Addr::from),
                    cluster_list: if external {
                        vec![]
                    } else {
                        cluster.into_iter().map(Ipv4Addr::from).collect()
                    },
                    extended_communities: extended.into_iter().map(ExtendedCommunity).collect(),
                    large_communities: large
                        .into_iter()
                        .map(
                            |(global_admin, local_data_1, local_data_2)| LargeCommunity {
                                global_admin,
                                local_data_1,
                                local_data_2,
                            },
                        )
                        .collect(),
                    unknown: unknown
                        .into_iter()
                        .filter(|(code, _)| seen.insert(*code))
                        .map(|(type_code, value)| RawAttribute {
                            flags: 0xe0,
                            type_code,
                            value,
                        })
                        .collect(),
                }
            },
        )
}

fn next_hop(family: Family) -> BoxedStrategy<NextHop> {
    let v6 =
        (any::<u128>(), option::of(any::<u128>())).prop_map(|(global, link_local)| NextHop::V6 {
            global: Ipv6Addr::from(global),
            link_local: link_local.map(Ipv6Addr::from),
        });
    if family == Family::IPV4_UNICAST {
        prop_oneof![unicast_ipv4().prop_map(NextHop::V4), v6].boxed()
    } else {
        v6.boxed()
    }
}

fn mp_reach(context: Context) -> impl Strategy<Value = MpReach> {
    prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)].prop_flat_map(
        move |family| {
            let add_path = context.add_path_receive.contains(family);
            let prefixes = if family == Family::IPV4_UNICAST {
                routes(ipv4_prefix(), add_path, 40).boxed()
            } else {
                routes(ipv6_prefix(), add_path, 40).boxed()
            };
            (next_hop(family), prefixes).prop_map(move |(next_hop, nlri)| MpReach {
                family,
                next_hop,
                nlri,
            })
        },
    )
}

fn mp_unreach(context: Context) -> impl Strategy<Value = MpUnreach> {
    prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)].prop_flat_map(
        move |family| {
            let add_path = context.add_path_receive.contains(family);
            let prefixes = if family == Family::IPV4_UNICAST {
                routes(ipv4_prefix(), add_path, 40).boxed()
            } else {
                routes(ipv6_prefix(), add_path, 40).boxed()
            };
            prefixes.prop_map(move |withdrawn| MpUnreach { family, withdrawn })
        },
    )
}

fn update(context: Context) -> impl Strategy<Value = Update> {
    let add_path = context.add_path_receive.contains(Family::IPV4_UNICAST);
    (
        routes(ipv4_prefix(), add_path, 60),
        attributes(context.external),
        option::of(mp_reach(context)),
        option::of(mp_unreach(context)),
        routes(ipv4_prefix(), add_path, 60),
    )
        .prop_map(|(withdrawn, mut attributes, mp_reach, mp_unreach, nlri)| {
            let mut update = Update {
                withdrawn,
                mp_reach,
                mp_unreach,
                nlri,
                ..Update::default()
            };
            // A clean UPDATE that announces routes carries the well-known mandatory attributes.
            if update.announces() {
                attributes.origin.get_or_insert(Origin::Igp);
                attributes.as_path.get_or_insert_with(AsPath::default);
                if !update.nlri.is_empty() {
                    attributes
                        .next_hop
                        .get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
                }
            }
            update.attributes = attributes;
            update
        })
}

fn capability() -> impl Strategy<Value = Capability> {
    let family = (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family::new(afi, safi));
    let known = [1u8, 2, 5, 6, 64, 65, 69, 70, 71, 73];
    prop_oneof![
        family.clone().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        Just(Capability::ExtendedMessage),
        (1u32..).prop_map(Capability::FourOctetAs),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            vec((family.clone(), any::<bool>()), 0..4)
        )
            .prop_map(|(restart_state, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestart {
                    restart_state,
                    notification,
                    restart_time,
                    families: families
                        .into_iter()
                        .map(|(family, forwarding_preserved)| GracefulRestartFamily {
                            family,
                            forwarding_preserved,
                        })
                        .collect(),
                })
            }),
        vec((family.clone(), any::<bool>(), 0u32..0x0100_0000), 0..4).prop_map(|list| {
            Capability::LongLivedGracefulRestart(
                list.into_iter()
                    .map(|(family, forwarding_preserved, long_lived_stale_time)| {
                        LongLivedGracefulRestartFamily {
                            family,
                            forwarding_preserved,
                            long_lived_stale_time,
                        }
                    })
                    .collect(),
            )
        }),
        vec(
            (
                family,
                prop_oneof![
                    Just(AddPathMode::Receive),
                    Just(AddPathMode::Send),
                    Just(AddPathMode::Both)
                ]
            ),
            0..4
        )
        .prop_map(|list| Capability::AddPath(
            list.into_iter()
                .map(|(family, mode)| AddPathFamily { family, mode })
                .collect()
        )),
        vec((any::<u16>(), any::<u16>(), any::<u16>()), 0..4).prop_map(|list| {
            Capability::ExtendedNextHop(
                list.into_iter()
                    .map(|(a, s, n)| ExtendedNextHop {
                        nlri_afi: Afi(a),
                        nlri_safi: s,
                        next_hop_afi: Afi(n),
                    })
                    .collect(),
            )
        }),
        ("[a-z0-9.-]{0,40}", "[a-z0-9.-]{0,40}")
            .prop_map(|(hostname, domain)| Capability::Fqdn { hostname, domain }),
        (
            any::<u8>().prop_filter("unknown", move |c| !known.contains(c)),
            vec(any::<u8>(), 0..200)
        )
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        // AS 0 is refused (RFC 7607).
        1u16..,
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        vec(capability(), 0..12),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            my_as,
            hold_time,
            bgp_identifier: Ipv4Addr::from(id),
            capabilities,
        })
}

fn message_and_context() -> impl Strategy<Value = (Message, Context)> {
    contexts().prop_flat_map(|context| {
        let message = prop_oneof![
            Just(Message::Keepalive),
            open().prop_map(Message::Open),
            update(context).prop_map(Message::Update),
            (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..100))
                .prop_map(|(c, s, d)| Message::Notification(Notification::new(c, s, d))),
            (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(afi, safi, subtype)| {
                Message::RouteRefresh(RouteRefresh {
                    family: Family::new(afi, safi),
                    subtype: match subtype {
                        0 => RefreshSubtype::Request,
                        1 => RefreshSubtype::Begin,
                        2 => RefreshSubtype::End,
                        other => RefreshSubtype::Reserved(other),
                    },
                })
            }),
        ];
        (message, Just(context))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_survives_encode_then_decode((message, context) in message_and_context()) {
        let bytes = match message.to_bytes(&context) {
            Ok(bytes) => bytes,
            Err(EncodeError::TooLong { .. }) => return Ok(()),
            Err(error) => return Err(TestCaseError::fail(error.to_string())),
        };
        prop_assert!(bytes.len() <= context.max_message_len());
        let decoded = Message::decode(&bytes, &context)
            .map_err(|e| TestCaseError::fail(format!("{e}: {message:?}")))?;
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn the_builder_packs_routes_into_messages_that_decode_to_the_same_routes(
        context in contexts(),
        attributes in attributes(false),
        v6 in any::<bool>(),
        mp_next_hop in next_hop(Family::IPV6_UNICAST),
        seed in vec((any::<u128>(), 0u8..=128, any::<u32>()), 0..3000),
    ) {
        let context = Context { external: false, ..context };
        let mut attributes = attributes;
        attributes.origin.get_or_insert(Origin::Igp);
        attributes.as_path.get_or_insert_with(AsPath::default);
        let family = if v6 { Family::IPV6_UNICAST } else { Family::IPV4_UNICAST };
        let add_path = context.add_path_send.contains(family);
        let routes: Vec<Nlri> = seed
            .iter()
            .map(|&(bits, length, id)| {
                let prefix = if v6 {
                    let net = Ipv6Network::new(Ipv6Addr::from(bits), length).unwrap();
                    IpNetwork::V6(Ipv6Network::new(net.network(), length).unwrap())
                } else {
                    let length = length % 33;
                    let net = Ipv4Network::new(Ipv4Addr::from(bits as u32), length).unwrap();
                    IpNetwork::V4(Ipv4Network::new(net.network(), length).unwrap())
                };
                Nlri { path_id: add_path.then_some(id), prefix }
            })
            .collect();
        let next_hop = if v6 { mp_next_hop } else { NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)) };
        let builder = UpdateBuilder::new(&context);
        let mut stream = Vec::new();
        let announced = builder.announce(family, &attributes, next_hop, &routes, &mut stream).unwrap();
        let withdrawals_start = stream.len();
        let withdrawn = builder.withdraw(family, &routes, &mut stream).unwrap();

        let mut seen_announced = Vec::new();
        let mut seen_withdrawn = Vec::new();
        let mut messages = 0;
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let header = frame(rest, &context).unwrap().expect("a whole message");
            prop_assert!(header.length <= context.max_message_len());
            let Message::Update(update) = Message::decode(&rest[..header.length], &context).unwrap() else {
                panic!("the builder wrote something other than an UPDATE");
            };
            prop_assert!(update.errors.is_empty(), "{:?}", update.errors);
            let in_withdrawals = stream.len() - rest.len() >= withdrawals_start;
            if in_withdrawals {
                seen_withdrawn.extend(update.withdrawn);
                seen_withdrawn.extend(update.mp_unreach.into_iter().flat_map(|m| m.withdrawn));
            } else {
                let mut expected = attributes.clone();
                expected.next_hop = (!v6).then_some(Ipv4Addr::new(192, 0, 2, 1));
                prop_assert_eq!(&update.attributes, &expected);
                seen_announced.extend(update.nlri);
                if let Some(reach) = update.mp_reach {
                    prop_assert_eq!(reach.next_hop, next_hop);
                    seen_announced.extend(reach.nlri);
                }
            }
            messages += 1;
            rest = &rest[header.length..];
        }
        prop_assert_eq!(messages, announced + withdrawn);
        prop_assert_eq!(&seen_announced, &routes);
        prop_assert_eq!(&seen_withdrawn, &routes);
        // Packed: every message but the last of each kind is too full for one more route.
        let max_route = if v6 { 21 } else { 9 };
        prop_assert!(announced <= 1 + routes.len() * max_route / (context.max_message_len() - 200));
    }

    #[test]
    fn the_decoder_never_panics_and_clean_results_are_stable(
        context in contexts(),
        message_type in 1u8..=5,
        body in vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        bytes.push(message_type);
        bytes.extend_from_slice(&body);
        if let Ok(message) = Message::decode(&bytes, &context) {
            let clean = !matches!(&message, Message::Update(u) if !u.errors.is_empty());
            if clean {
                let again = message.to_bytes(&context).unwrap();
                prop_assert_eq!(Message::decode(&again, &context).unwrap(), message);
            }
        }
    }
}
