//! Messages captured from real FRR 8.4.4 and BIRD 2.0.12 sessions (Debian packages; see
//! `tests/vectors/README.md` and `capture.sh`). Each file names its source, its version and the
//! negotiated context of its session; every message must decode cleanly under that context, and
//! the values the routers were configured to send must come out.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::IpNetwork;
use tern_bgp::wire::*;

struct Vector {
    file: String,
    context: Context,
    messages: Vec<(String, Vec<u8>)>,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Reads the `# context:` line: `four_octet_as=yes extended_messages=no add_path=ipv4/unicast,...
/// external=yes ...`.
fn parse_context(line: &str) -> Context {
    let mut context = Context::default();
    for field in line.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "four_octet_as" => context.four_octet_as = value == "yes",
            "extended_messages" => context.extended_messages = value == "yes",
            "external" => context.external = value == "yes",
            "add_path" => {
                for family in value.split(',') {
                    match family {
                        "ipv4/unicast" => context.add_path_receive.insert(Family::IPV4_UNICAST),
                        "ipv6/unicast" => context.add_path_receive.insert(Family::IPV6_UNICAST),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    context.add_path_send = context.add_path_receive;
    context
}

fn load() -> Vec<Vector> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut vectors = Vec::new();
    for entry in fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            text.starts_with("# source: "),
            "{file} must name its source first"
        );
        assert!(
            text.lines().next().unwrap().contains("FRR 8.4") || text.contains("BIRD 2."),
            "{file} must name the version of its source"
        );
        let context_line = text
            .lines()
            .find_map(|l| l.strip_prefix("# context: "))
            .unwrap_or_else(|| panic!("{file} has no context line"));
        let messages = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (keyword, bytes) = l.split_once(' ').unwrap();
                (keyword.to_owned(), hex(bytes.trim()))
            })
            .collect();
        vectors.push(Vector {
            file,
            context: parse_context(context_line),
            messages,
        });
    }
    vectors.sort_by(|a, b| a.file.cmp(&b.file));
    assert!(
        vectors.len() >= 10,
        "expected the ten captured session directions"
    );
    vectors
}

fn decoded(file_part: &str) -> Vec<Message> {
    let vector = load()
        .into_iter()
        .find(|v| v.file.contains(file_part))
        .unwrap();
    vector
        .messages
        .iter()
        .map(|(_, bytes)| Message::decode(bytes, &vector.context).unwrap())
        .collect()
}

fn updates(file_part: &str) -> Vec<Update> {
    decoded(file_part)
        .into_iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .collect()
}

fn prefix(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

/// The announced routes of an UPDATE, from the NLRI field and MP_REACH_NLRI.
fn announced(update: &Update) -> Vec<Nlri> {
    let mut all = update.nlri.clone();
    all.extend(update.mp_reach.iter().flat_map(|m| m.nlri.iter().copied()));
    all
}

fn update_for<'a>(updates: &'a [Update], text: &str) -> &'a Update {
    updates
        .iter()
        .find(|u| announced(u).iter().any(|n| n.prefix == prefix(text)))
        .unwrap_or_else(|| panic!("no UPDATE announces {text}"))
}

#[test]
fn every_captured_message_decodes_cleanly_and_survives_a_round_trip() {
    let mut total = 0;
    let mut byte_exact = 0;
    for vector in load() {
        for (keyword, bytes) in &vector.messages {
            let message = Message::decode(bytes, &vector.context)
                .unwrap_or_else(|e| panic!("{}: {keyword} fails to decode: {e}", vector.file));
            let expected_keyword = match &message {
                Message::Open(_) => "open",
                Message::Update(_) => "update",
                Message::Notification(_) => "notification",
                Message::Keepalive => "keepalive",
                Message::RouteRefresh(_) => "route-refresh",
            };
            assert_eq!(keyword, expected_keyword, "{}", vector.file);
            if let Message::Update(update) = &message {
                assert!(
                    update.errors.is_empty(),
                    "{}: {:?}",
                    vector.file,
                    update.errors
                );
            }
            let encoded = message.to_bytes(&vector.context).unwrap();
            assert_eq!(
                Message::decode(&encoded, &vector.context).unwrap(),
                message,
                "{}",
                vector.file
            );
            // These have one encoding only; OPEN and UPDATE may group capabilities, order
            // attributes and pick length forms differently from FRR and BIRD.
            if matches!(
                message,
                Message::Keepalive | Message::Notification(_) | Message::RouteRefresh(_)
            ) {
                assert_eq!(
                    &encoded, bytes,
                    "{}: {keyword} re-encodes differently",
                    vector.file
                );
            }
            byte_exact += usize::from(&encoded == bytes);
            total += 1;
        }
    }
    assert!(total >= 130, "only {total} messages");
    println!("{byte_exact} of {total} captured messages re-encode byte for byte");
}

#[test]
fn frr_open_carries_fqdn_add_path_graceful_restart_and_the_old_route_refresh_code() {
    let Message::Open(open) = &decoded("frr-8.4.4_to_bird-2.0.12_ebgp")[0] else {
        panic!("the first message is not an OPEN")
    };
    assert_eq!(open.asn(), 65001);
    assert_eq!(open.bgp_identifier, Ipv4Addr::new(10, 255, 0, 1));
    let caps = &open.capabilities;
    assert!(caps.contains(&Capability::Fqdn {
        hostname: "tern-frr1".into(),
        domain: String::new()
    }));
    assert!(caps.contains(&Capability::Unknown {
        code: 128,
        value: vec![]
    }));
    assert!(caps.contains(&Capability::EnhancedRouteRefresh));
    assert!(caps.contains(&Capability::ExtendedMessage));
    assert!(caps.contains(&Capability::FourOctetAs(65001)));
    assert!(
        caps.iter()
            .any(|c| matches!(c, Capability::GracefulRestart(_)))
    );
    let add_path = caps
        .iter()
        .find_map(|c| match c {
            Capability::AddPath(families) => Some(families.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        add_path
            .iter()
            .any(|f| f.family == Family::IPV4_UNICAST && f.mode == AddPathMode::Both)
    );
    assert!(
        add_path
            .iter()
            .any(|f| f.family == Family::IPV6_UNICAST && f.mode == AddPathMode::Both)
    );
}

#[test]
fn bird_open_carries_long_lived_graceful_restart_and_extended_next_hop() {
    let Message::Open(open) = &decoded("bird-2.0.12_to_frr-8.4.4_ibgp-v6")[0] else {
        panic!("the first message is not an OPEN")
    };
    assert_eq!(open.hold_time, 240);
    assert!(
        open.capabilities
            .contains(&Capability::ExtendedNextHop(vec![ExtendedNextHop {
                nlri_afi: Afi::IPV4,
                nlri_safi: 1,
                next_hop_afi: Afi::IPV6,
            }]))
    );
    let Message::Open(ebgp) = &decoded("bird-2.0.12_to_frr-8.4.4_ebgp")[0] else {
        panic!()
    };
    let llgr = ebgp.capabilities.iter().find_map(|c| match c {
        Capability::LongLivedGracefulRestart(f) => Some(f.clone()),
        _ => None,
    });
    assert!(
        llgr.is_some_and(|f| f.iter().all(|f| f.long_lived_stale_time == 3600)),
        "{ebgp:?}"
    );
}

#[test]
fn shutdown_notifications_carry_their_rfc_8203_text() {
    let text = |file| {
        decoded(file).into_iter().find_map(|m| match m {
            Message::Notification(n) => Some(n.shutdown_message().map(str::to_owned)),
            _ => None,
        })
    };
    assert_eq!(
        text("frr-8.4.4_to_bird-2.0.12_ebgp"),
        Some(Some("maintenance window 42".into()))
    );
    assert_eq!(
        text("bird-2.0.12_to_frr-8.4.4_ibgp-v6"),
        Some(Some("bird going down for test".into()))
    );
    assert_eq!(
        text("frr-8.4.4_to_bird-2.0.12_as2"),
        Some(None),
        "a shutdown without text"
    );
}

#[test]
fn frr_packs_a_thousand_prefixes_into_one_extended_message() {
    let vector = load()
        .into_iter()
        .find(|v| v.file.contains("frr-8.4.4_to_bird-2.0.12_ebgp"))
        .unwrap();
    let (_, big) = vector
        .messages
        .iter()
        .find(|(_, b)| b.len() > MAX_MESSAGE_LEN)
        .unwrap();
    let Message::Update(update) = Message::decode(big, &vector.context).unwrap() else {
        panic!()
    };
    assert_eq!(update.nlri.len(), 1000);
    assert!(update.nlri.iter().all(|n| n.path_id.is_some()));
    let without = Context {
        extended_messages: false,
        ..vector.context
    };
    assert_eq!(
        Message::decode(big, &without)
            .unwrap_err()
            .notification
            .subcode,
        header_subcode::BAD_MESSAGE_LENGTH
    );
}

#[test]
fn bird_sends_one_prefix_twice_under_two_path_identifiers_with_all_community_kinds() {
    let updates = updates("bird-2.0.12_to_frr-8.4.4_ebgp");
    let ids: Vec<Option<u32>> = updates
        .iter()
        .flat_map(|u| u.nlri.iter())
        .filter(|n| n.prefix == prefix("10.2.1.0/24"))
        .map(|n| n.path_id)
        .collect();
    assert!(ids.contains(&Some(2)) && ids.contains(&Some(3)), "{ids:?}");
    let first = update_for(&updates, "10.2.1.0/24");
    let attrs = &first.attributes;
    assert_eq!(attrs.med, Some(20));
    assert_eq!(attrs.as_path, Some(AsPath::sequence([65002])));
    assert_eq!(attrs.next_hop, Some(Ipv4Addr::new(10, 255, 1, 2)));
    assert_eq!(
        attrs.communities,
        vec![Community::new(65002, 100), Community::new(65002, 200)]
    );
    assert!(
        attrs
            .extended_communities
            .contains(&ExtendedCommunity::route_target(65002, 100))
    );
    assert_eq!(
        attrs.large_communities,
        vec![
            LargeCommunity {
                global_admin: 65002,
                local_data_1: 1,
                local_data_2: 1
            },
            LargeCommunity {
                global_admin: 65002,
                local_data_1: 1,
                local_data_2: 2
            },
        ]
    );
    assert_eq!(
        update_for(&updates, "10.2.2.0/24").attributes.origin,
        Some(Origin::Egp)
    );
}

#[test]
fn ipv6_next_hops_carry_global_and_link_local_addresses() {
    let updates = updates("frr-8.4.4_to_bird-2.0.12_ebgp");
    let reach = update_for(&updates, "2001:db8:1::/48")
        .mp_reach
        .as_ref()
        .unwrap();
    assert_eq!(reach.family, Family::IPV6_UNICAST);
    let NextHop::V6 {
        global,
        link_local: Some(link_local),
    } = reach.next_hop
    else {
        panic!("expected global and link-local: {:?}", reach.next_hop)
    };
    assert_eq!(
        global,
        "fd00:ffff::1:1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert!(link_local.segments()[0] == 0xfe80);
}

#[test]
fn ipv4_routes_over_an_ipv6_session_use_extended_next_hop_and_local_pref() {
    let updates = updates("frr-8.4.4_to_bird-2.0.12_ibgp-v6");
    let update = update_for(&updates, "10.1.1.0/24");
    let reach = update.mp_reach.as_ref().unwrap();
    assert_eq!(reach.family, Family::IPV4_UNICAST);
    assert!(matches!(reach.next_hop, NextHop::V6 { .. }));
    assert_eq!(update.attributes.local_pref, Some(250));
    assert_eq!(
        update.attributes.as_path,
        Some(AsPath::default()),
        "iBGP-originated: empty path"
    );
}

#[test]
fn reflected_routes_carry_originator_id_and_cluster_list() {
    let updates = updates("bird-2.0.12_to_frr-8.4.4_ibgp-v6");
    let update = update_for(&updates, "10.8.1.0/24");
    assert_eq!(
        update.attributes.originator_id,
        Some(Ipv4Addr::new(10, 255, 0, 4))
    );
    assert_eq!(
        update.attributes.cluster_list,
        vec![Ipv4Addr::new(10, 255, 0, 2)]
    );
    assert_eq!(update.attributes.local_pref, Some(150));
}

#[test]
fn a_two_octet_session_gets_as4_path_and_as4_aggregator_merged_back() {
    let updates = updates("frr-8.4.4_to_bird-2.0.12_as2");
    let aggregate = update_for(&updates, "10.6.0.0/16");
    let path = aggregate.attributes.as_path.as_ref().unwrap();
    assert_eq!(path.to_string(), "65001 4200000001 {65010 4200000002}");
    assert_eq!(aggregate.attributes.aggregator.unwrap().asn, 4_200_000_001);
    let atomic = update_for(&updates, "10.4.0.0/16");
    assert!(atomic.attributes.atomic_aggregate);
    let long = update_for(&updates, "10.7.1.0/24")
        .attributes
        .as_path
        .as_ref()
        .unwrap();
    assert_eq!(
        long.to_string(),
        "65001 4200000001 4200000002 65010 4200000003"
    );
    // FRR's BGP role attribute OTC (35) is unknown to us: kept, partial bit set.
    let otc = &update_for(&updates, "10.1.2.0/24").attributes.unknown;
    assert_eq!(otc.len(), 1);
    assert_eq!((otc[0].type_code, otc[0].flags), (35, 0xe0));
    assert_eq!(otc[0].value, 65001u32.to_be_bytes());
}

#[test]
fn a_four_octet_session_sends_the_same_paths_natively() {
    let updates = updates("frr-8.4.4-as4200000001_to_frr-8.4.4_ebgp-as4");
    let aggregate = update_for(&updates, "10.6.0.0/16");
    assert_eq!(
        aggregate.attributes.as_path.as_ref().unwrap().to_string(),
        "4200000001 {65010 4200000002}"
    );
    assert_eq!(aggregate.attributes.aggregator.unwrap().asn, 4_200_000_001);
}

#[test]
fn end_of_rib_and_enhanced_route_refresh_markers_are_recognised() {
    let messages = decoded("frr-8.4.4_to_bird-2.0.12_ebgp");
    let eor: Vec<Family> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => u.end_of_rib_family(),
            _ => None,
        })
        .collect();
    assert!(
        eor.contains(&Family::IPV4_UNICAST) && eor.contains(&Family::IPV6_UNICAST),
        "{eor:?}"
    );
    let subtypes: Vec<RefreshSubtype> = messages
        .iter()
        .filter_map(|m| match m {
            Message::RouteRefresh(r) => Some(r.subtype),
            _ => None,
        })
        .collect();
    assert!(subtypes.contains(&RefreshSubtype::Begin) && subtypes.contains(&RefreshSubtype::End));
    let requests = decoded("bird-2.0.12_to_frr-8.4.4_ebgp")
        .into_iter()
        .filter(|m| matches!(m, Message::RouteRefresh(r) if r.subtype == RefreshSubtype::Request))
        .count();
    assert_eq!(requests, 2, "BIRD asked for both families");
}

#[test]
fn withdrawals_carry_path_identifiers_where_add_path_is_in_use() {
    let updates = updates("frr-8.4.4_to_bird-2.0.12_ebgp");
    let withdrawn: Vec<Nlri> = updates
        .iter()
        .flat_map(|u| {
            u.withdrawn
                .iter()
                .chain(u.mp_unreach.iter().flat_map(|m| m.withdrawn.iter()))
        })
        .copied()
        .collect();
    assert!(!withdrawn.is_empty());
    assert!(withdrawn.iter().all(|n| n.path_id.is_some()));
}
