//! Golden (bytes, value) pairs, checked both ways: the bytes decode to the value and the value
//! encodes to the same bytes. The bytes were written by hand from the RFCs' layouts; the
//! comments name each field.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{four_octet, golden, hex, message};
use tern_bgp::wire::*;

fn v4(text: &str) -> ipnetwork::IpNetwork {
    text.parse().unwrap()
}

fn route(text: &str) -> Nlri {
    Nlri::new(v4(text))
}

#[test]
fn keepalive_is_a_bare_header() {
    golden(&message(4, ""), &Message::Keepalive, &Context::default());
}

#[test]
fn open_with_every_capability_round_trips() {
    let bytes = message(
        1,
        "04 fde9 005a 0a000001   # version 4, AS 65001, hold 90, id 10.0.0.1
         48 02 46                # optional parameters 72, capabilities 70
         01 04 0001 00 01        # multiprotocol ipv4 unicast
         01 04 0002 00 01        # multiprotocol ipv6 unicast
         02 00                   # route refresh
         46 00                   # enhanced route refresh
         41 04 0000fde9          # 4-octet AS 65001
         40 0a c078 0001 01 80 0002 01 00   # graceful restart R N 120s, ipv4 F, ipv6
         47 07 0001 01 80 000e10 # long-lived graceful restart ipv4 F 3600s
         45 04 0001 01 03        # add-path ipv4 unicast send+receive
         06 00                   # extended message
         05 06 0001 0001 0002    # extended next hop: ipv4 unicast over ipv6
         49 07 05 6e6f646531 00  # fqdn node1
         80 00                   # unknown (Cisco's pre-standard route refresh)",
    );
    let value = Message::Open(Open {
        my_as: 65001,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart(GracefulRestart {
                restart_state: true,
                notification: true,
                restart_time: 120,
                families: vec![
                    GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    },
                    GracefulRestartFamily {
                        family: Family::IPV6_UNICAST,
                        forwarding_preserved: false,
                    },
                ],
            }),
            Capability::LongLivedGracefulRestart(vec![LongLivedGracefulRestartFamily {
                family: Family::IPV4_UNICAST,
                forwarding_preserved: true,
                long_lived_stale_time: 3600,
            }]),
            Capability::AddPath(vec![AddPathFamily {
                family: Family::IPV4_UNICAST,
                mode: AddPathMode::Both,
            }]),
            Capability::ExtendedMessage,
            Capability::ExtendedNextHop(vec![ExtendedNextHop {
                nlri_afi: Afi::IPV4,
                nlri_safi: 1,
                next_hop_afi: Afi::IPV6,
            }]),
            Capability::Fqdn {
                hostname: "node1".into(),
                domain: String::new(),
            },
            Capability::Unknown {
                code: 128,
                value: vec![],
            },
        ],
    });
    golden(&bytes, &value, &Context::default());
    let Message::Open(open) = value else {
        unreachable!()
    };
    assert_eq!(open.asn(), 65001);
}

#[test]
fn open_with_more_than_255_octets_of_capabilities_uses_rfc_9072_lengths() {
    let big = vec![0xab; 250];
    let mut body = hex("04 5ba0 00b4 0a000002  ff ff 0105  02 0102");
    body.extend_from_slice(&hex("41 04 fa56ea01"));
    body.extend_from_slice(&[0xfe, 250]);
    body.extend_from_slice(&big);
    let mut bytes = vec![0xff; 16];
    bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    bytes.push(1);
    bytes.extend_from_slice(&body);
    let open = Open {
        my_as: 23456,
        hold_time: 180,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![
            Capability::FourOctetAs(4_200_000_001),
            Capability::Unknown {
                code: 0xfe,
                value: big,
            },
        ],
    };
    assert_eq!(open.asn(), 4_200_000_001);
    assert_eq!(
        Open::new(4_200_000_001, 180, Ipv4Addr::new(10, 0, 0, 2), vec![]).my_as,
        23456
    );
    golden(&bytes, &Message::Open(open), &Context::default());
}

#[test]
fn notification_carries_the_rfc_8203_shutdown_message() {
    let bytes = message(3, "06 02 0b 6d61696e74656e616e6365");
    let value = Notification::shutdown(cease_subcode::ADMINISTRATIVE_SHUTDOWN, "maintenance");
    assert_eq!(value.shutdown_message(), Some("maintenance"));
    golden(&bytes, &Message::Notification(value), &Context::default());
}

#[test]
fn notification_with_plain_data_round_trips() {
    let bytes = message(3, "01 02 1234");
    let value = Notification::new(
        code::MESSAGE_HEADER,
        header_subcode::BAD_MESSAGE_LENGTH,
        [0x12, 0x34],
    );
    assert_eq!(value.shutdown_message(), None);
    golden(&bytes, &Message::Notification(value), &Context::default());
}

#[test]
fn route_refresh_request_and_enhanced_markers_round_trip() {
    let cases = [
        ("0001 00 01", Family::IPV4_UNICAST, RefreshSubtype::Request),
        ("0002 01 01", Family::IPV6_UNICAST, RefreshSubtype::Begin),
        ("0001 02 01", Family::IPV4_UNICAST, RefreshSubtype::End),
    ];
    for (body, family, subtype) in cases {
        golden(
            &message(5, body),
            &Message::RouteRefresh(RouteRefresh { family, subtype }),
            &Context::default(),
        );
    }
}

#[test]
fn update_with_every_ipv4_attribute_round_trips() {
    let bytes = message(
        2,
        "0004 18 0a0203                          # withdrawn 10.2.3.0/24
         0071                                    # 113 octets of attributes
         40 01 01 00                             # ORIGIN IGP
         40 02 0a 02 02 0000fde9 fa56ea01        # AS_PATH sequence 65001 4200000001
         40 03 04 c0000201                       # NEXT_HOP 192.0.2.1
         80 04 04 00000064                       # MED 100
         40 05 04 000000c8                       # LOCAL_PREF 200
         40 06 00                                # ATOMIC_AGGREGATE
         c0 07 08 fa56ea01 0a000009              # AGGREGATOR 4200000001 10.0.0.9
         c0 08 08 fde90064 ffffff01              # COMMUNITIES 65001:100 no-export
         80 09 04 0a000005                       # ORIGINATOR_ID 10.0.0.5
         80 0a 08 0a000007 0a000008              # CLUSTER_LIST 10.0.0.7 10.0.0.8
         c0 10 08 0002fde900000064               # EXTENDED_COMMUNITIES rt 65001:100
         c0 20 0c 0000fde9 00000001 00000002     # LARGE_COMMUNITY 65001:1:2
         e0 f0 03 010203                         # unknown optional transitive, partial
         10 0a01  18 c0a801  00                  # NLRI 10.1.0.0/16 192.168.1.0/24 0.0.0.0/0",
    );
    let value = Message::Update(Update {
        withdrawn: vec![route("10.2.3.0/24")],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65001, 4_200_000_001])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            med: Some(100),
            local_pref: Some(200),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: 4_200_000_001,
                address: Ipv4Addr::new(10, 0, 0, 9),
            }),
            communities: vec![Community::new(65001, 100), Community::NO_EXPORT],
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 5)),
            cluster_list: vec![Ipv4Addr::new(10, 0, 0, 7), Ipv4Addr::new(10, 0, 0, 8)],
            extended_communities: vec![ExtendedCommunity::route_target(65001, 100)],
            large_communities: vec![LargeCommunity {
                global_admin: 65001,
                local_data_1: 1,
                local_data_2: 2,
            }],
            unknown: vec![RawAttribute {
                flags: 0xe0,
                type_code: 0xf0,
                value: vec![1, 2, 3],
            }],
        },
        nlri: vec![
            route("10.1.0.0/16"),
            route("192.168.1.0/24"),
            route("0.0.0.0/0"),
        ],
        ..Update::default()
    });
    golden(&bytes, &value, &four_octet());
}

#[test]
fn update_toward_a_two_octet_speaker_carries_as4_path_and_as4_aggregator() {
    let bytes = message(
        2,
        "0000 003b
         40 01 01 02                             # ORIGIN incomplete
         40 02 08 02 03 fde9 5ba0 fdea           # AS_PATH 65001 AS_TRANS 65002
         40 03 04 c0000201                       # NEXT_HOP
         c0 07 06 5ba0 0a000009                  # AGGREGATOR AS_TRANS 10.0.0.9
         c0 11 0e 02 03 0000fde9 fa56ea01 0000fdea  # AS4_PATH 65001 4200000001 65002
         c0 12 08 fa56ea01 0a000009              # AS4_AGGREGATOR 4200000001 10.0.0.9
         18 0a0900",
    );
    let value = Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath::sequence([65001, 4_200_000_001, 65002])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            aggregator: Some(Aggregator {
                asn: 4_200_000_001,
                address: Ipv4Addr::new(10, 0, 0, 9),
            }),
            ..PathAttributes::default()
        },
        nlri: vec![route("10.9.0.0/24")],
        ..Update::default()
    });
    golden(&bytes, &value, &Context::default());
}

#[test]
fn as_path_with_confederation_and_set_segments_round_trips_in_two_octets() {
    let bytes = message(
        2,
        "0000 001c
         40 01 01 00
         40 02 0e 03 01 fdf2  02 01 fde9  01 02 fe4c fe4d  # (65010) 65001 {65100 65101}
         40 03 04 c0000201
         18 0a0901",
    );
    let path = AsPath {
        segments: vec![
            AsSegment {
                segment_type: SegmentType::ConfedSequence,
                asns: vec![65010],
            },
            AsSegment {
                segment_type: SegmentType::Sequence,
                asns: vec![65001],
            },
            AsSegment {
                segment_type: SegmentType::Set,
                asns: vec![65100, 65101],
            },
        ],
    };
    assert_eq!(
        path.len(),
        2,
        "a set counts as one, a confederation segment as none"
    );
    assert_eq!(path.to_string(), "(65010) 65001 {65100 65101}");
    let value = Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(path),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..PathAttributes::default()
        },
        nlri: vec![route("10.9.1.0/24")],
        ..Update::default()
    });
    golden(&bytes, &value, &Context::default());
}

#[test]
fn ipv6_update_carries_global_and_link_local_next_hop_and_withdrawals() {
    let bytes = message(
        2,
        "0000 004a
         80 0e 2d 0002 01 20                          # MP_REACH_NLRI ipv6 unicast, next hop 32
            20010db8000000000000000000000001          #   global 2001:db8::1
            fe800000000000000000000000000001          #   link-local fe80::1
            00                                        #   reserved
            30 20010db80001  00                       #   2001:db8:1::/48 ::/0
         80 0f 0a 0002 01 30 20010db80002             # MP_UNREACH_NLRI 2001:db8:2::/48
         40 01 01 00
         40 02 06 02 01 0000fde9",
    );
    let value = Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65001])),
            ..PathAttributes::default()
        },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse::<Ipv6Addr>().unwrap()),
            },
            nlri: vec![route("2001:db8:1::/48"), route("::/0")],
        }),
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: vec![route("2001:db8:2::/48")],
        }),
        ..Update::default()
    });
    golden(&bytes, &value, &four_octet());
}

#[test]
fn ipv4_routes_with_an_ipv6_next_hop_use_mp_reach_nlri() {
    let bytes = message(
        2,
        "0000 0023
         80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18 0a0300
         40 01 01 00
         40 02 00                                     # empty AS_PATH (iBGP origin)",
    );
    let value = Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            ..PathAttributes::default()
        },
        mp_reach: Some(MpReach {
            family: Family::IPV4_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None,
            },
            nlri: vec![route("10.3.0.0/24")],
        }),
        ..Update::default()
    });
    golden(&bytes, &value, &four_octet());
}

#[test]
fn add_path_puts_a_path_identifier_before_each_prefix() {
    let bytes = message(
        2,
        "0008 00000003 18 0a0500
         000e 40 01 01 00  40 02 00  40 03 04 c0000201
         00000001 18 0a0400  00000002 18 0a0400",
    );
    let with_id = |id, text| Nlri {
        path_id: Some(id),
        prefix: v4(text),
    };
    let value = Message::Update(Update {
        withdrawn: vec![with_id(3, "10.5.0.0/24")],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..PathAttributes::default()
        },
        nlri: vec![with_id(1, "10.4.0.0/24"), with_id(2, "10.4.0.0/24")],
        ..Update::default()
    });
    let context = Context {
        add_path_receive: Families::only(Family::IPV4_UNICAST),
        add_path_send: Families::only(Family::IPV4_UNICAST),
        ..four_octet()
    };
    golden(&bytes, &value, &context);
}

#[test]
fn end_of_rib_markers_round_trip_for_both_families() {
    let ipv4 = Update::end_of_rib(Family::IPV4_UNICAST);
    assert_eq!(ipv4.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    golden(
        &message(2, "0000 0000"),
        &Message::Update(ipv4),
        &four_octet(),
    );

    let ipv6 = Update::end_of_rib(Family::IPV6_UNICAST);
    assert_eq!(ipv6.end_of_rib_family(), Some(Family::IPV6_UNICAST));
    golden(
        &message(2, "0000 0006 80 0f 03 0002 01"),
        &Message::Update(ipv6),
        &four_octet(),
    );
}

#[test]
fn trailing_prefix_bits_are_cleared_on_receipt() {
    let bytes = message(
        2,
        "0000 000e 40 01 01 00 40 02 00 40 03 04 c0000201 14 0a00ff",
    );
    let Message::Update(update) = Message::decode(&bytes, &four_octet()).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(update.nlri, vec![route("10.0.240.0/20")]);
}

#[test]
fn updates_above_4096_octets_need_extended_messages() {
    let mut body = String::from("0000 000e 40 01 01 00 40 02 00 40 03 04 c0000201");
    for i in 0..1100u32 {
        body.push_str(&format!(" 18 0a{:04x}", i));
    }
    let bytes = message(2, &body);
    assert!(bytes.len() > MAX_MESSAGE_LEN);
    let error = Message::decode(&bytes, &four_octet()).unwrap_err();
    assert_eq!(error.notification.code, code::MESSAGE_HEADER);
    assert_eq!(
        error.notification.subcode,
        header_subcode::BAD_MESSAGE_LENGTH
    );
    let extended = Context {
        extended_messages: true,
        ..four_octet()
    };
    let Message::Update(update) = Message::decode(&bytes, &extended).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(update.nlri.len(), 1100);
    golden(&bytes, &Message::Update(update), &extended);
}
