//! The UPDATE builder fills every message: the counts here are worked out from the RFC layouts.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use tern_bgp::wire::*;

/// ORIGIN (4) + AS_PATH of three 4-octet ASes (17) + NEXT_HOP (7) + MED (7) + two communities
/// (11): 46 octets with the next hop, 39 without.
fn attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence([65001, 65002, 4_200_000_001])),
        med: Some(10),
        communities: vec![Community::new(65001, 1), Community::new(65001, 2)],
        ..PathAttributes::default()
    }
}

fn ipv4_slash24s(count: u32) -> Vec<Nlri> {
    (0..count)
        .map(|i| {
            let address = Ipv4Addr::from(0x0a00_0000 + (i << 8));
            Nlri::new(IpNetwork::V4(Ipv4Network::new(address, 24).unwrap()))
        })
        .collect()
}

/// Splits a stream into its messages' lengths, checking each frames.
fn lengths(stream: &[u8], context: &Context) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let header = frame(rest, context).unwrap().unwrap();
        out.push(header.length);
        rest = &rest[header.length..];
    }
    out
}

#[test]
fn ipv4_routes_fill_4096_octet_updates_1006_at_a_time() {
    let context = Context {
        four_octet_as: true,
        ..Context::default()
    };
    let routes = ipv4_slash24s(100_000);
    let mut stream = Vec::new();
    let next_hop = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let count = UpdateBuilder::new(&context)
        .announce(
            Family::IPV4_UNICAST,
            &attributes(),
            next_hop,
            &routes,
            &mut stream,
        )
        .unwrap();
    // (4096 - 19 header - 4 length fields - 46 attributes) / 4 octets per /24 = 1006.
    assert_eq!(count, 100_000usize.div_ceil(1006));
    let lengths = lengths(&stream, &context);
    assert_eq!(lengths.len(), count);
    assert!(
        lengths[..count - 1]
            .iter()
            .all(|&l| l == 19 + 4 + 46 + 1006 * 4),
        "{lengths:?}"
    );
}

#[test]
fn extended_messages_hold_sixteen_times_more_routes() {
    let context = Context {
        four_octet_as: true,
        extended_messages: true,
        ..Context::default()
    };
    let routes = ipv4_slash24s(100_000);
    let mut stream = Vec::new();
    let next_hop = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let count = UpdateBuilder::new(&context)
        .announce(
            Family::IPV4_UNICAST,
            &attributes(),
            next_hop,
            &routes,
            &mut stream,
        )
        .unwrap();
    // (65535 - 23 - 46) / 4 = 16366 per message.
    assert_eq!(count, 100_000usize.div_ceil(16366));
    assert!(
        lengths(&stream, &context)
            .iter()
            .all(|&l| l <= MAX_EXTENDED_MESSAGE_LEN)
    );
}

#[test]
fn ipv6_routes_fill_mp_reach_nlri_572_slash48s_at_a_time() {
    let context = Context {
        four_octet_as: true,
        ..Context::default()
    };
    let routes: Vec<Nlri> = (0..10_000u128)
        .map(|i| {
            let address = Ipv6Addr::from((0x2001_0db8u128 << 96) + (i << 80));
            Nlri::new(IpNetwork::V6(Ipv6Network::new(address, 48).unwrap()))
        })
        .collect();
    let next_hop = NextHop::V6 {
        global: "2001:db8::1".parse().unwrap(),
        link_local: None,
    };
    let mut stream = Vec::new();
    let count = UpdateBuilder::new(&context)
        .announce(
            Family::IPV6_UNICAST,
            &attributes(),
            next_hop,
            &routes,
            &mut stream,
        )
        .unwrap();
    // MP_REACH_NLRI header 4 + AFI/SAFI 3 + next hop 17 + reserved 1 = 25; other attributes 39.
    // (4096 - 23 - 25 - 39) / 7 octets per /48 = 572.
    assert_eq!(count, 10_000usize.div_ceil(572));
    let lengths = lengths(&stream, &context);
    assert!(
        lengths[..count - 1]
            .iter()
            .all(|&l| l == 23 + 25 + 39 + 572 * 7),
        "{lengths:?}"
    );
}

#[test]
fn withdrawals_fill_the_withdrawn_routes_field() {
    let context = Context::default();
    let routes = ipv4_slash24s(5000);
    let mut stream = Vec::new();
    let count = UpdateBuilder::new(&context)
        .withdraw(Family::IPV4_UNICAST, &routes, &mut stream)
        .unwrap();
    // (4096 - 23) / 4 = 1018 per message.
    assert_eq!(count, 5000usize.div_ceil(1018));
}

#[test]
fn no_routes_means_no_message() {
    let context = Context::default();
    let mut stream = Vec::new();
    let builder = UpdateBuilder::new(&context);
    let next_hop = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        builder.announce(
            Family::IPV4_UNICAST,
            &attributes(),
            next_hop,
            &[],
            &mut stream
        ),
        Ok(0)
    );
    assert_eq!(
        builder.withdraw(Family::IPV6_UNICAST, &[], &mut stream),
        Ok(0)
    );
    assert!(stream.is_empty());
}

#[test]
fn attributes_too_large_for_any_message_are_refused_and_nothing_written() {
    let context = Context::default();
    let mut huge = attributes();
    huge.communities = (0..1100).map(Community).collect();
    let mut stream = vec![1, 2, 3];
    let next_hop = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let result = UpdateBuilder::new(&context).announce(
        Family::IPV4_UNICAST,
        &huge,
        next_hop,
        &ipv4_slash24s(1),
        &mut stream,
    );
    assert!(
        matches!(result, Err(EncodeError::TooLong { .. })),
        "{result:?}"
    );
    assert_eq!(stream, vec![1, 2, 3]);
}

#[test]
fn attributes_that_leave_no_room_for_a_route_are_refused() {
    let context = Context::default();
    let mut crowded = attributes();
    // 46 + 4 * 1004 = 4062 octets of attributes: the header and fields fit, a /24 does not.
    crowded.communities = (0..1006).map(Community).collect();
    let next_hop = NextHop::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut stream = Vec::new();
    let builder = UpdateBuilder::new(&context);
    let result = builder.announce(
        Family::IPV4_UNICAST,
        &crowded,
        next_hop,
        &ipv4_slash24s(3),
        &mut stream,
    );
    assert!(
        matches!(result, Err(EncodeError::TooLong { .. })),
        "{result:?}"
    );
    assert!(stream.is_empty());
    let v6 = NextHop::V6 {
        global: Ipv6Addr::LOCALHOST,
        link_local: None,
    };
    let result = builder.announce(
        Family::IPV4_UNICAST,
        &crowded,
        v6,
        &ipv4_slash24s(3),
        &mut stream,
    );
    assert!(
        matches!(result, Err(EncodeError::TooLong { .. })),
        "{result:?}"
    );
}
