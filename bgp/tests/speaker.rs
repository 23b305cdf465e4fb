//! Speaker scenarios, scripted against the sans-IO core: peers come up, routes flow with the
//! right attributes, and sessions fail and restart the way RFC 4271, RFC 4456 and RFC 4724 say.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::fsm::State;
use tern_bgp::speaker::config::{MaxPrefix, MaxPrefixAction, PeerConfig, SpeakerConfig};
use tern_bgp::speaker::core::{
    ConnId, Core, Counters, Input, LinkAddress, Output, PeerStatus, SpeakerEvent, TimerKey,
};
use tern_bgp::wire::*;
use tokio::time::Instant;

const LOCAL_AS: u32 = 65001;

struct Harness {
    core: Core,
    now: Instant,
    outputs: Vec<Output>,
}

struct Remote {
    address: IpAddr,
    conn: ConnId,
    context: Context,
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn prefix(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

impl Harness {
    fn new() -> Harness {
        let config = SpeakerConfig::new(LOCAL_AS, Ipv4Addr::new(10, 0, 0, 1));
        Harness {
            core: Core::new(config),
            now: Instant::now(),
            outputs: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        let out = self.core.handle(input, self.now);
        self.outputs.extend(out.clone());
        out
    }

    /// Brings a peer up through the normal path (we connect), and returns its connection.
    fn establish(
        &mut self,
        config: PeerConfig,
        router_id: Ipv4Addr,
        caps: Vec<Capability>,
    ) -> Remote {
        let address = config.address;
        let asn = config.asn;
        let out = self.input(Input::AddPeer(config));
        let conn = out
            .iter()
            .find_map(|o| match o {
                Output::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .expect("the speaker connects");
        let local = SocketAddr::new(ip("192.0.2.1"), 40000);
        let out = self.input(Input::Connected { conn, local });
        assert!(matches!(
            sent(&out, conn, &Context::default())[..],
            [Message::Open(_)]
        ));
        let mut capabilities = vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
        ];
        capabilities.extend(caps);
        let open = Open::new(asn, 90, router_id, capabilities);
        let out = self.input(Input::Received {
            conn,
            message: Message::Open(open),
        });
        let context = out
            .iter()
            .find_map(|o| match o {
                Output::SetContext { conn: c, context } if *c == conn => Some(*context),
                _ => None,
            })
            .expect("the reader learns the context");
        self.input(Input::Received {
            conn,
            message: Message::Keepalive,
        });
        assert_eq!(self.state(address), State::Established);
        Remote {
            address,
            conn,
            context,
        }
    }

    fn status(&self, address: IpAddr) -> PeerStatus {
        self.core
            .peers()
            .into_iter()
            .find(|p| p.config.address == address)
            .unwrap()
    }

    fn state(&self, address: IpAddr) -> State {
        self.status(address).state
    }

    /// An external peer (192.0.2.2, AS 65002, our end 192.0.2.1) that sent us 198.51.100.0/24.
    fn with_external_route() -> (Harness, Remote) {
        let mut h = Harness::new();
        let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
        h.announce(
            &a,
            external_route(&[65002], "192.0.2.2"),
            &["198.51.100.0/24"],
        );
        assert_eq!(h.core.table().len(), 1);
        (h, a)
    }

    /// Decodes `bytes` with the session's context, as the reader does, and hands the message in.
    fn receive_bytes(&mut self, remote: &Remote, bytes: &[u8]) -> Vec<Output> {
        let message = Message::decode(bytes, &remote.context).unwrap();
        self.input(Input::Received {
            conn: remote.conn,
            message,
        })
    }

    fn counters(&self, address: IpAddr) -> Counters {
        self.status(address).counters
    }

    fn announce(
        &mut self,
        remote: &Remote,
        attributes: PathAttributes,
        prefixes: &[&str],
    ) -> Vec<Output> {
        let update = Update {
            attributes,
            nlri: prefixes.iter().map(|p| Nlri::new(prefix(p))).collect(),
            ..Update::default()
        };
        self.input(Input::Received {
            conn: remote.conn,
            message: Message::Update(update),
        })
    }

    fn withdraw(&mut self, remote: &Remote, prefixes: &[&str]) -> Vec<Output> {
        let update = Update {
            withdrawn: prefixes.iter().map(|p| Nlri::new(prefix(p))).collect(),
            ..Update::default()
        };
        self.input(Input::Received {
            conn: remote.conn,
            message: Message::Update(update),
        })
    }

    /// Everything sent to `remote` since `outputs` was last cleared.
    fn sent_to(&self, remote: &Remote) -> Vec<Message> {
        sent(&self.outputs, remote.conn, &remote.context)
    }
}

/// Decodes the messages sent on `conn` in `outputs`.
fn sent(outputs: &[Output], conn: ConnId, context: &Context) -> Vec<Message> {
    let mut messages = Vec::new();
    for output in outputs {
        let Output::Send { conn: c, bytes } = output else {
            continue;
        };
        if *c != conn {
            continue;
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let header = frame(rest, context).unwrap().unwrap();
            messages.push(Message::decode(&rest[..header.length], context).unwrap());
            rest = &rest[header.length..];
        }
    }
    messages
}

fn updates(messages: &[Message]) -> Vec<&Update> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .collect()
}

fn announced(messages: &[Message]) -> Vec<(IpNetwork, PathAttributes)> {
    updates(messages)
        .into_iter()
        .flat_map(|u| {
            let mut attrs = u.attributes.clone();
            let mut list: Vec<(IpNetwork, PathAttributes)> =
                u.nlri.iter().map(|n| (n.prefix, attrs.clone())).collect();
            if let Some(reach) = &u.mp_reach {
                attrs.next_hop = None;
                list.extend(reach.nlri.iter().map(|n| (n.prefix, attrs.clone())));
            }
            list
        })
        .collect()
}

fn withdrawn(messages: &[Message]) -> Vec<IpNetwork> {
    updates(messages)
        .into_iter()
        .flat_map(|u| {
            u.withdrawn
                .iter()
                .chain(u.mp_unreach.iter().flat_map(|m| m.withdrawn.iter()))
                .map(|n| n.prefix)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn external_route(asns: &[u32], next_hop: &str) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(asns.to_vec())),
        next_hop: Some(next_hop.parse().unwrap()),
        ..PathAttributes::default()
    }
}

fn ebgp(address: &str, asn: u32) -> PeerConfig {
    PeerConfig::new(ip(address), asn)
}

#[test]
fn an_established_session_gets_our_routes_then_end_of_rib_for_each_family() {
    let mut h = Harness::new();
    h.input(Input::Originate {
        prefix: prefix("10.65.0.0/26"),
        communities: vec![],
    });
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let messages = h.sent_to(&a);
    let routes = announced(&messages);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].0, prefix("10.65.0.0/26"));
    assert_eq!(routes[0].1.as_path, Some(AsPath::sequence([LOCAL_AS])));
    assert_eq!(
        routes[0].1.next_hop,
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "next hop self"
    );
    let eor: Vec<Family> = updates(&messages)
        .iter()
        .filter_map(|u| u.end_of_rib_family())
        .collect();
    assert_eq!(eor, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    let position = |pred: &dyn Fn(&Update) -> bool| updates(&messages).iter().position(|u| pred(u));
    assert!(position(&|u| !u.nlri.is_empty()) < position(&|u| u.end_of_rib_family().is_some()));
}

#[test]
fn a_route_from_one_external_peer_reaches_another_with_our_as_prepended() {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    h.outputs.clear();
    let mut attributes = external_route(&[65002, 64999], "192.0.2.2");
    attributes.communities = vec![Community::new(65002, 7)];
    attributes.large_communities = vec![LargeCommunity {
        global_admin: 65002,
        local_data_1: 1,
        local_data_2: 2,
    }];
    attributes.med = Some(50);
    h.announce(&a, attributes, &["198.51.100.0/24"]);
    let routes = announced(&h.sent_to(&b));
    assert_eq!(routes.len(), 1);
    let out = &routes[0].1;
    assert_eq!(
        out.as_path,
        Some(AsPath::sequence([LOCAL_AS, 65002, 64999]))
    );
    assert_eq!(out.communities, vec![Community::new(65002, 7)]);
    assert_eq!(out.large_communities.len(), 1);
    assert_eq!(out.med, None, "a MED from another AS is not passed on");
    assert!(
        announced(&h.sent_to(&a)).is_empty(),
        "never sent back to its source"
    );
    let best = h.core.table().best(prefix("198.51.100.0/24")).unwrap();
    assert_eq!(best.paths.len(), 1);
}

#[test]
fn a_withdrawal_reaches_every_peer_that_had_the_route() {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    h.outputs.clear();
    let out = h.withdraw(&a, &["198.51.100.0/24"]);
    assert_eq!(withdrawn(&h.sent_to(&b)), vec![prefix("198.51.100.0/24")]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(SpeakerEvent::BestPath { best: None, .. })))
    );
    assert!(h.core.table().is_empty());
}

#[test]
fn internal_routes_are_not_passed_between_internal_peers() {
    let mut h = Harness::new();
    let a = h.establish(
        ebgp("10.0.0.2", LOCAL_AS),
        Ipv4Addr::new(10, 0, 0, 2),
        vec![],
    );
    let b = h.establish(
        ebgp("10.0.0.3", LOCAL_AS),
        Ipv4Addr::new(10, 0, 0, 3),
        vec![],
    );
    h.outputs.clear();
    h.announce(&a, external_route(&[], "10.0.0.2"), &["10.65.1.0/26"]);
    assert!(announced(&h.sent_to(&b)).is_empty());
}

#[test]
fn a_route_reflector_reflects_client_routes_with_originator_id_and_cluster_list() {
    let mut h = Harness::new();
    let client = PeerConfig {
        route_reflector_client: true,
        ..ebgp("10.0.0.2", LOCAL_AS)
    };
    let a = h.establish(client, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(
        ebgp("10.0.0.3", LOCAL_AS),
        Ipv4Addr::new(10, 0, 0, 3),
        vec![],
    );
    h.outputs.clear();
    h.announce(&a, external_route(&[], "10.0.0.2"), &["10.65.1.0/26"]);
    let routes = announced(&h.sent_to(&b));
    assert_eq!(routes.len(), 1);
    let out = &routes[0].1;
    assert_eq!(out.originator_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(out.cluster_list, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(
        out.next_hop,
        Some(Ipv4Addr::new(10, 0, 0, 2)),
        "next hop kept on iBGP"
    );
    assert_eq!(out.local_pref, Some(100));
}

#[test]
fn a_route_whose_path_holds_our_as_is_ignored() {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.announce(
        &a,
        external_route(&[65002, LOCAL_AS], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    assert!(h.core.table().is_empty());
}

#[test]
fn treat_as_withdraw_removes_a_route_held_before() {
    let (mut h, a) = Harness::with_external_route();
    // The same prefix again, with a malformed ORIGIN: RFC 7606 says withdraw it.
    let mut bytes = vec![0xff; 16];
    let body = [
        0x00, 0x00, 0x00, 0x14, 0x40, 0x01, 0x01, 0x07, 0x40, 0x02, 0x06, 0x02, 0x01, 0x00, 0x00,
        0xfd, 0xea, 0x40, 0x03, 0x04, 192, 0, 2, 2, 24, 198, 51, 100,
    ];
    bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(&body);
    h.receive_bytes(&a, &bytes);
    assert!(h.core.table().is_empty());
    assert_eq!(h.counters(a.address).updates_treated_as_withdraw, 1);
}

#[test]
fn a_next_hop_that_is_our_own_session_address_is_treated_as_withdraw() {
    // RFC 4271 section 6.3: the NEXT_HOP must not be the receiving speaker's own address.
    let (mut h, a) = Harness::with_external_route();
    // 192.0.2.1 is our end of the connection.
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.1"),
        &["198.51.100.0/24", "203.0.113.0/24"],
    );
    assert!(
        h.core.table().is_empty(),
        "held route withdrawn, new one refused"
    );
    assert_eq!(h.counters(a.address).updates_treated_as_withdraw, 1);
    assert_eq!(h.state(a.address), State::Established);
}

#[test]
fn a_confederation_path_from_an_external_peer_is_treated_as_withdraw() {
    // RFC 5065 section 5 and RFC 7606 section 7.2, decoded with the session's own context.
    let (mut h, a) = Harness::with_external_route();
    let attributes = PathAttributes {
        as_path: Some(AsPath {
            segments: vec![
                AsSegment {
                    segment_type: SegmentType::ConfedSequence,
                    asns: vec![65010],
                },
                AsSegment {
                    segment_type: SegmentType::Sequence,
                    asns: vec![65002],
                },
            ],
        }),
        ..external_route(&[], "192.0.2.2")
    };
    let update = Update {
        attributes,
        nlri: vec![Nlri::new(prefix("198.51.100.0/24"))],
        ..Update::default()
    };
    let bytes = Message::Update(update).to_bytes(&a.context).unwrap();
    h.receive_bytes(&a, &bytes);
    assert!(h.core.table().is_empty());
    assert_eq!(h.counters(a.address).updates_treated_as_withdraw, 1);
}

#[test]
fn equal_paths_from_two_peers_form_an_ecmp_set_when_allowed() {
    let mut config = SpeakerConfig::new(LOCAL_AS, Ipv4Addr::new(10, 0, 0, 1));
    config.decision.maximum_paths = 4;
    let mut h = Harness {
        core: Core::new(config),
        now: Instant::now(),
        outputs: Vec::new(),
    };
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    let out = h.announce(
        &b,
        external_route(&[65003], "192.0.2.3"),
        &["198.51.100.0/24"],
    );
    let best = out.iter().find_map(|o| match o {
        Output::Event(SpeakerEvent::BestPath {
            best: Some(best), ..
        }) => Some(best.clone()),
        _ => None,
    });
    let hops: Vec<NextHop> = best
        .unwrap()
        .paths
        .iter()
        .map(|p| p.attributes.next_hop)
        .collect();
    assert_eq!(hops.len(), 2);
}

#[test]
fn a_peer_that_drops_its_connection_keeps_its_routes_stale_until_its_end_of_rib() {
    let mut h = Harness::new();
    let gr = Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 120,
        families: vec![GracefulRestartFamily {
            family: Family::IPV4_UNICAST,
            forwarding_preserved: true,
        }],
    });
    let a = h.establish(
        ebgp("192.0.2.2", 65002),
        Ipv4Addr::new(10, 0, 0, 2),
        vec![gr.clone()],
    );
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24", "198.51.101.0/24"],
    );
    h.outputs.clear();
    let out = h.input(Input::Closed { conn: a.conn });
    assert!(out.iter().any(|o| matches!(o, Output::StartTimer(TimerKey::Restart(_), d) if *d == Duration::from_secs(120))));
    assert_eq!(
        h.core.table().len(),
        2,
        "routes kept while the peer restarts"
    );
    assert!(
        withdrawn(&h.sent_to(&b)).is_empty(),
        "nothing withdrawn from others"
    );

    // It comes back and re-announces one of the two, then End-of-RIB: the other is swept.
    let session_retry = h.outputs.iter().rev().find_map(|o| match o {
        Output::StartTimer(key @ TimerKey::Fsm(_, tern_bgp::fsm::Timer::IdleHold), _) => Some(*key),
        _ => None,
    });
    h.input(Input::TimerExpired(
        session_retry.expect("an automatic restart is scheduled"),
    ));
    let conn = h
        .outputs
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    h.input(Input::Connected {
        conn,
        local: SocketAddr::new(ip("192.0.2.1"), 40001),
    });
    let mut open = Open::new(
        65002,
        90,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST), gr],
    );
    if let Some(Capability::GracefulRestart(g)) = open.capabilities.last_mut() {
        g.restart_state = true;
    }
    h.input(Input::Received {
        conn,
        message: Message::Open(open),
    });
    h.input(Input::Received {
        conn,
        message: Message::Keepalive,
    });
    let a = Remote { conn, ..a };
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    assert_eq!(
        h.core.table().len(),
        2,
        "stale route still there before End-of-RIB"
    );
    h.outputs.clear();
    h.input(Input::Received {
        conn,
        message: Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
    });
    assert_eq!(h.core.table().len(), 1);
    assert_eq!(withdrawn(&h.sent_to(&b)), vec![prefix("198.51.101.0/24")]);
}

#[test]
fn max_restart_time_is_advertised_and_caps_how_long_stale_routes_are_kept() {
    let mut h = Harness::new();
    let gr = Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 120,
        families: vec![GracefulRestartFamily {
            family: Family::IPV4_UNICAST,
            forwarding_preserved: true,
        }],
    });
    let config = PeerConfig {
        max_restart_time: Some(15),
        ..ebgp("192.0.2.2", 65002)
    };
    let a = h.establish(config, Ipv4Addr::new(10, 0, 0, 2), vec![gr]);
    let ours = h.sent_to(&a).into_iter().find_map(|m| match m {
        Message::Open(open) => open.capabilities.into_iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g.restart_time),
            _ => None,
        }),
        _ => None,
    });
    assert_eq!(ours, Some(15), "our OPEN advertises maxRestartTime");
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    let out = h.input(Input::Closed { conn: a.conn });
    assert!(
        out.iter().any(|o| matches!(o, Output::StartTimer(TimerKey::Restart(_), d) if *d == Duration::from_secs(15))),
        "the peer's 120 s are capped at 15: {out:?}"
    );
}

#[test]
fn stale_routes_are_swept_when_the_restart_time_runs_out() {
    let mut h = Harness::new();
    let gr = Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 30,
        families: vec![],
    });
    let a = h.establish(
        ebgp("192.0.2.2", 65002),
        Ipv4Addr::new(10, 0, 0, 2),
        vec![gr],
    );
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    h.input(Input::Closed { conn: a.conn });
    assert_eq!(h.core.table().len(), 1);
    h.input(Input::TimerExpired(TimerKey::Restart(a.address)));
    assert!(h.core.table().is_empty());
}

#[test]
fn a_peer_without_graceful_restart_loses_its_routes_with_the_session() {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    h.input(Input::Closed { conn: a.conn });
    assert!(h.core.table().is_empty());
}

#[test]
fn a_notification_from_the_peer_drops_its_routes_even_with_graceful_restart() {
    let mut h = Harness::new();
    let gr = Capability::GracefulRestart(GracefulRestart {
        restart_time: 120,
        ..GracefulRestart::default()
    });
    let a = h.establish(
        ebgp("192.0.2.2", 65002),
        Ipv4Addr::new(10, 0, 0, 2),
        vec![gr],
    );
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    let cease = Notification::cease(cease_subcode::ADMINISTRATIVE_RESET);
    h.input(Input::Received {
        conn: a.conn,
        message: Message::Notification(cease),
    });
    assert!(h.core.table().is_empty());
}

#[test]
fn too_many_prefixes_close_the_session_with_cease_maximum_prefixes() {
    let mut h = Harness::new();
    let limited = PeerConfig {
        max_prefix: Some(MaxPrefix {
            limit: 2,
            warning: None,
            action: MaxPrefixAction::Restart(Duration::from_secs(30)),
        }),
        ..ebgp("192.0.2.2", 65002)
    };
    let a = h.establish(limited, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.outputs.clear();
    let out = h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24", "198.51.101.0/24", "198.51.102.0/24"],
    );
    let cease = h.sent_to(&a).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n),
        _ => None,
    });
    let cease = cease.expect("a Cease is sent");
    assert_eq!(
        (cease.code, cease.subcode),
        (code::CEASE, cease_subcode::MAXIMUM_PREFIXES_REACHED)
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(SpeakerEvent::MaxPrefixExceeded {
            count: 3,
            limit: 2,
            ..
        })
    )));
    assert!(out.iter().any(|o| matches!(o, Output::StartTimer(TimerKey::Fsm(_, tern_bgp::fsm::Timer::IdleHold), d) if *d == Duration::from_secs(30))));
    assert_eq!(h.state(a.address), State::Idle);
    assert!(h.core.table().is_empty());
}

#[test]
fn the_max_prefix_cease_names_the_family_that_overflowed() {
    let mut h = Harness::new();
    let limited = PeerConfig {
        max_prefix: Some(MaxPrefix {
            limit: 1,
            warning: None,
            action: MaxPrefixAction::Restart(Duration::from_secs(30)),
        }),
        ..ebgp("2001:db8::2", 65002)
    };
    let a = h.establish(limited, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.outputs.clear();
    let update = Update {
        attributes: PathAttributes {
            next_hop: None,
            ..external_route(&[65002], "192.0.2.2")
        },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::2".parse().unwrap(),
                link_local: None,
            },
            nlri: vec![
                Nlri::new(prefix("2001:db8:1::/48")),
                Nlri::new(prefix("2001:db8:2::/48")),
            ],
        }),
        ..Update::default()
    };
    h.input(Input::Received {
        conn: a.conn,
        message: Message::Update(update),
    });
    let cease = h
        .sent_to(&a)
        .into_iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .expect("a Cease is sent");
    assert_eq!(
        (cease.code, cease.subcode),
        (code::CEASE, cease_subcode::MAXIMUM_PREFIXES_REACHED)
    );
    // RFC 4486 section 4: AFI (2 octets), SAFI (1 octet), the prefix upper bound (4 octets).
    assert_eq!(cease.data, vec![0, 2, 1, 0, 0, 0, 1]);
}

#[test]
fn a_route_whose_update_cannot_be_encoded_is_withdrawn_instead_and_counted() {
    let mut h = Harness::new();
    // 1,100 communities take 4,400 octets: no 4,096-octet UPDATE can carry them.
    let communities = (0..1100).map(|i| Community(0xfde8_0000 + i)).collect();
    h.input(Input::Originate {
        prefix: prefix("10.65.0.0/26"),
        communities,
    });
    h.input(Input::Originate {
        prefix: prefix("10.66.0.0/26"),
        communities: vec![],
    });
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let messages = h.sent_to(&a);
    let routes: Vec<IpNetwork> = announced(&messages).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        routes,
        vec![prefix("10.66.0.0/26")],
        "the other route still goes"
    );
    assert_eq!(withdrawn(&messages), vec![prefix("10.65.0.0/26")]);
    let eor = updates(&messages)
        .iter()
        .filter(|u| u.end_of_rib_family().is_some())
        .count();
    assert_eq!(eor, 2, "End-of-RIB still follows");
    let status = h.core.peers().into_iter().next().unwrap();
    assert_eq!(status.counters.messages_not_encoded, 1);
    assert_eq!(status.counters.prefixes_advertised, 1);
}

#[test]
fn a_max_prefix_warning_keeps_the_session() {
    let mut h = Harness::new();
    let limited = PeerConfig {
        max_prefix: Some(MaxPrefix {
            limit: 1,
            warning: None,
            action: MaxPrefixAction::Warn,
        }),
        ..ebgp("192.0.2.2", 65002)
    };
    let a = h.establish(limited, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let out = h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24", "198.51.101.0/24"],
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(SpeakerEvent::MaxPrefixExceeded { .. })))
    );
    assert_eq!(h.state(a.address), State::Established);
}

#[test]
fn a_route_refresh_request_is_answered_between_begin_and_end_markers() {
    let mut h = Harness::new();
    h.input(Input::Originate {
        prefix: prefix("10.65.0.0/26"),
        communities: vec![],
    });
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.outputs.clear();
    h.input(Input::Received {
        conn: a.conn,
        message: Message::RouteRefresh(RouteRefresh::request(Family::IPV4_UNICAST)),
    });
    let messages = h.sent_to(&a);
    assert!(matches!(&messages[0], Message::RouteRefresh(r) if r.subtype == RefreshSubtype::Begin));
    assert_eq!(announced(&messages).len(), 1);
    assert!(
        matches!(messages.last(), Some(Message::RouteRefresh(r)) if r.subtype == RefreshSubtype::End)
    );
}

#[test]
fn removing_a_peer_sends_cease_with_the_shutdown_text_and_withdraws_its_routes() {
    let mut h = Harness::new();
    let leaving = PeerConfig {
        shutdown_message: Some("node drained".into()),
        ..ebgp("192.0.2.2", 65002)
    };
    let a = h.establish(leaving, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    h.outputs.clear();
    h.input(Input::RemovePeer(a.address));
    let cease = h.sent_to(&a).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n),
        _ => None,
    });
    assert_eq!(cease.unwrap().shutdown_message(), Some("node drained"));
    assert_eq!(withdrawn(&h.sent_to(&b)), vec![prefix("198.51.100.0/24")]);
    assert!(h.core.peers().iter().all(|p| p.config.address != a.address));
}

#[test]
fn an_inbound_connection_from_an_unknown_address_is_refused() {
    let mut h = Harness::new();
    let out = h.input(Input::Accepted {
        conn: 99,
        peer: ip("203.0.113.9"),
        local: SocketAddr::new(ip("192.0.2.1"), 179),
    });
    assert!(matches!(out[..], [Output::Close { conn: 99 }]));
}

#[test]
fn a_collision_keeps_the_connection_initiated_by_the_higher_identifier() {
    // We are 10.0.0.1; the peer is 10.0.0.2 (higher): its connection (inbound) must survive.
    let mut h = Harness::new();
    let out = h.input(Input::AddPeer(ebgp("192.0.2.2", 65002)));
    let outbound = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    h.input(Input::Connected {
        conn: outbound,
        local: SocketAddr::new(ip("192.0.2.1"), 40000),
    });
    let inbound = 1000;
    h.input(Input::Accepted {
        conn: inbound,
        peer: ip("192.0.2.2"),
        local: SocketAddr::new(ip("192.0.2.1"), 179),
    });
    let open = || Message::Open(Open::new(65002, 90, Ipv4Addr::new(10, 0, 0, 2), vec![]));
    // The first OPEN settles it: both ends know both identifiers now.
    let out = h.input(Input::Received {
        conn: outbound,
        message: open(),
    });
    h.input(Input::Received {
        conn: inbound,
        message: open(),
    });
    let dumped = sent(&out, outbound, &Context::default());
    assert!(
        matches!(dumped.last(), Some(Message::Notification(n)) if n.subcode == cease_subcode::CONNECTION_COLLISION_RESOLUTION)
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn } if *conn == outbound))
    );
    h.input(Input::Received {
        conn: inbound,
        message: Message::Keepalive,
    });
    assert_eq!(h.state(ip("192.0.2.2")), State::Established);
}

#[test]
fn a_graceful_shutdown_closes_connections_without_a_notification() {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.outputs.clear();
    let out = h.input(Input::Shutdown { graceful: true });
    assert!(h.sent_to(&a).is_empty());
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn } if *conn == a.conn))
    );
}

#[test]
fn a_policy_change_withdraws_what_the_new_export_filter_refuses() {
    use tern_bgp::speaker::config::{Filter, PrefixRange};
    let mut h = Harness::new();
    h.input(Input::Originate {
        prefix: prefix("10.65.0.0/26"),
        communities: vec![],
    });
    h.input(Input::Originate {
        prefix: prefix("10.66.0.0/26"),
        communities: vec![],
    });
    let config = ebgp("192.0.2.2", 65002);
    let a = h.establish(config.clone(), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    h.outputs.clear();
    let filter = Filter {
        ranges: vec![PrefixRange {
            prefix: prefix("10.65.0.0/16"),
            min_length: 16,
            max_length: 32,
        }],
    };
    h.input(Input::UpdatePeer(PeerConfig {
        export: Some(filter),
        ..config
    }));
    assert_eq!(
        h.state(a.address),
        State::Established,
        "a policy change keeps the session"
    );
    assert_eq!(withdrawn(&h.sent_to(&a)), vec![prefix("10.66.0.0/26")]);
}

#[test]
fn long_lived_stale_routes_stay_least_preferred_and_go_only_to_peers_that_understand_them() {
    let mut h = Harness::new();
    let llgr = |time| {
        Capability::LongLivedGracefulRestart(vec![LongLivedGracefulRestartFamily {
            family: Family::IPV4_UNICAST,
            forwarding_preserved: true,
            long_lived_stale_time: time,
        }])
    };
    let gr = Capability::GracefulRestart(GracefulRestart {
        restart_time: 5,
        ..GracefulRestart::default()
    });
    let a = h.establish(
        ebgp("192.0.2.2", 65002),
        Ipv4Addr::new(10, 0, 0, 2),
        vec![gr, llgr(3600)],
    );
    let aware = h.establish(
        ebgp("192.0.2.3", 65003),
        Ipv4Addr::new(10, 0, 0, 3),
        vec![llgr(0)],
    );
    let plain = h.establish(ebgp("192.0.2.4", 65004), Ipv4Addr::new(10, 0, 0, 4), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    h.input(Input::Closed { conn: a.conn });
    h.outputs.clear();
    let out = h.input(Input::TimerExpired(TimerKey::Restart(a.address)));
    assert!(out.iter().any(|o| matches!(o, Output::StartTimer(TimerKey::LongLivedStale(_), d) if *d == Duration::from_secs(3600))));
    assert_eq!(h.core.table().len(), 1, "kept long-lived");
    let to_aware = announced(&h.sent_to(&aware));
    assert_eq!(to_aware.len(), 1);
    assert!(to_aware[0].1.communities.contains(&Community::LLGR_STALE));
    assert_eq!(
        withdrawn(&h.sent_to(&plain)),
        vec![prefix("198.51.100.0/24")]
    );
    h.input(Input::TimerExpired(TimerKey::LongLivedStale(a.address)));
    assert!(h.core.table().is_empty());
}

#[test]
fn adding_changing_and_removing_peers_leaves_the_other_sessions_alone() {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    h.announce(
        &a,
        external_route(&[65002], "192.0.2.2"),
        &["198.51.100.0/24"],
    );
    h.outputs.clear();
    // A third peer comes and goes; B's hold time changes (a reset) while A stays untouched.
    h.input(Input::AddPeer(ebgp("192.0.2.4", 65004)));
    h.input(Input::RemovePeer(ip("192.0.2.4")));
    h.input(Input::UpdatePeer(PeerConfig {
        hold_time: 30,
        ..ebgp("192.0.2.3", 65003)
    }));
    assert_eq!(h.state(a.address), State::Established);
    assert!(
        !h.outputs
            .iter()
            .any(|o| matches!(o, Output::Close { conn } if *conn == a.conn)),
        "A's connection is never closed"
    );
    assert!(
        h.sent_to(&a)
            .iter()
            .all(|m| !matches!(m, Message::Notification(_)))
    );
    assert_eq!(h.core.table().len(), 1, "A's route stays");
    assert_ne!(
        h.state(b.address),
        State::Established,
        "B was reset for its new hold time"
    );
}

#[test]
fn peers_in_one_update_group_receive_the_same_updates() {
    let mut h = Harness::new();
    let client = |a: &str| PeerConfig {
        route_reflector_client: true,
        ..ebgp(a, LOCAL_AS)
    };
    let a = h.establish(client("10.0.0.2"), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(client("10.0.0.3"), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    let source = h.establish(ebgp("192.0.2.9", 65009), Ipv4Addr::new(10, 0, 0, 9), vec![]);
    h.outputs.clear();
    h.announce(
        &source,
        external_route(&[65009], "192.0.2.9"),
        &["198.51.100.0/24", "198.51.101.0/24"],
    );
    let bytes = |conn| {
        h.outputs
            .iter()
            .find_map(|o| match o {
                Output::Send { conn: c, bytes } if *c == conn => Some(bytes.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(bytes(a.conn), bytes(b.conn));
    assert_eq!(announced(&h.sent_to(&a)).len(), 2);
}

/// Routes of `family` announced in `messages`, with their MP_REACH_NLRI next hop.
fn mp_announced(messages: &[Message], family: Family) -> Vec<(IpNetwork, NextHop)> {
    updates(messages)
        .into_iter()
        .filter_map(|u| u.mp_reach.as_ref())
        .filter(|r| r.family == family)
        .flat_map(|r| r.nlri.iter().map(|n| (n.prefix, r.next_hop)))
        .collect()
}

/// Peer A (192.0.2.2) announces 2001:db8:77::/48 over IPv4 with a next hop only A's side
/// reaches; peer B (192.0.2.3) is another external peer over IPv4.
fn ipv6_route_over_ipv4(link: Option<Vec<LinkAddress>>) -> (Harness, Remote) {
    let mut h = Harness::new();
    let a = h.establish(ebgp("192.0.2.2", 65002), Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let b = h.establish(ebgp("192.0.2.3", 65003), Ipv4Addr::new(10, 0, 0, 3), vec![]);
    if let Some(addresses) = link {
        h.input(Input::LinkAddresses {
            conn: b.conn,
            addresses,
        });
    }
    h.outputs.clear();
    let update = Update {
        attributes: external_route(&[65002], "192.0.2.2"),
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8:aa::9".parse().unwrap(),
                link_local: None,
            },
            nlri: vec![Nlri::new(prefix("2001:db8:77::/48"))],
        }),
        ..Update::default()
    };
    h.input(Input::Received {
        conn: a.conn,
        message: Message::Update(update),
    });
    assert_eq!(h.core.table().len(), 1);
    (h, b)
}

fn link_address(text: &str, prefix_len: u8) -> LinkAddress {
    LinkAddress {
        address: ip(text),
        prefix_len,
    }
}

#[test]
fn an_ipv6_route_to_an_external_peer_over_ipv4_carries_our_ipv6_addresses_on_its_link() {
    // Our end of B's session is 192.0.2.1, on an interface that also has IPv6.
    let link = vec![
        link_address("192.0.2.1", 24),
        link_address("2001:db8:2::1", 64),
        link_address("fe80::1", 64),
    ];
    let (h, b) = ipv6_route_over_ipv4(Some(link));
    assert_eq!(
        mp_announced(&h.sent_to(&b), Family::IPV6_UNICAST),
        vec![(
            prefix("2001:db8:77::/48"),
            NextHop::V6 {
                global: "2001:db8:2::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap()),
            }
        )],
        "next hop self of the route's family, link-local beside it (RFC 2545)"
    );
}

#[test]
fn an_ipv6_route_is_not_sent_to_an_external_peer_we_have_no_ipv6_address_for() {
    let (h, b) = ipv6_route_over_ipv4(Some(vec![link_address("192.0.2.1", 24)]));
    assert_eq!(mp_announced(&h.sent_to(&b), Family::IPV6_UNICAST), vec![]);
    let (h, b) = ipv6_route_over_ipv4(None);
    assert_eq!(mp_announced(&h.sent_to(&b), Family::IPV6_UNICAST), vec![]);
}

#[test]
fn a_peer_off_our_link_gets_our_global_ipv6_address_without_the_link_local_one() {
    // 192.0.2.3 is not in 198.51.100.0/24: B is not on this interface's link.
    let link = vec![
        link_address("198.51.100.1", 24),
        link_address("2001:db8:2::1", 64),
        link_address("fe80::1", 64),
    ];
    let (h, b) = ipv6_route_over_ipv4(Some(link));
    assert_eq!(
        mp_announced(&h.sent_to(&b), Family::IPV6_UNICAST),
        vec![(
            prefix("2001:db8:77::/48"),
            NextHop::V6 {
                global: "2001:db8:2::1".parse().unwrap(),
                link_local: None,
            }
        )]
    );
}
