//! tern's speaker with FRR 8.4 in the roles a Calico cluster meets: route reflector for FRR
//! clients and client of an FRR reflector (iBGP, LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST), TCP
//! MD5 with GTSM, max-prefix, an IPv6 link-local session, and a peer restarting with graceful restart.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Lab, eventually, inside, kill_bgpd, require_root, restart_bgpd, run, vtysh};
use ipnetwork::IpNetwork;
use tern_bgp::wire::Community;
use tern_bgp::{MaxPrefix, MaxPrefixAction, PeerConfig, RouteEntry, Speaker, SpeakerConfig, State};

const TERN: &str = "tern-t-if-tern";

/// (namespace, last octet) of each FRR.
const FRRS: [(&str, u8); 6] = [
    ("tern-t-if-a", 1),
    ("tern-t-if-b", 2),
    ("tern-t-if-rr", 3),
    ("tern-t-if-c", 4),
    ("tern-t-if-md5", 5),
    ("tern-t-if-max", 6),
];

fn frr_conf(n: u8, body: &str) -> String {
    format!("frr defaults traditional\nhostname frr{n}\n!\n{body}\n!\n")
}

fn client_a(announce_second: bool) -> String {
    let second = if announce_second {
        "  network 198.51.101.0/24 route-map LP\n"
    } else {
        ""
    };
    frr_conf(
        1,
        &format!(
            "route-map LP permit 10\n set local-preference 200\n set community 65010:1\n!\nrouter bgp 65010\n bgp router-id 10.0.8.1\n bgp graceful-restart\n no bgp network import-check\n neighbor 10.0.8.10 remote-as 65010\n address-family ipv4 unicast\n  network 198.51.100.0/24 route-map LP\n{second} exit-address-family\n"
        ),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn peer(address: &str, asn: u32) -> PeerConfig {
    PeerConfig {
        local_address: Some(ip("10.0.8.10")),
        connect_retry: Duration::from_secs(1),
        ..PeerConfig::new(ip(address), asn)
    }
}

async fn wait_routes(
    speaker: &Speaker,
    what: &str,
    check: impl Fn(&[RouteEntry]) -> bool,
) -> Vec<RouteEntry> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let routes = speaker.routes(None, 1000).await.unwrap();
        if check(&routes) {
            return routes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            routes.iter().map(|r| r.prefix).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_state(
    speaker: &Speaker,
    address: &str,
    what: &str,
    check: impl Fn(State, Option<&str>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let peers = speaker.peers().await.unwrap();
        let peer = peers
            .iter()
            .find(|p| p.config.address == ip(address))
            .unwrap();
        if check(peer.state, peer.last_error.as_deref()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?} {:?}",
            peer.state,
            peer.last_error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[test]
fn tern_with_frr_as_reflector_and_client_with_md5_max_prefix_link_local_and_graceful_restart() {
    if !require_root() {
        return;
    }
    let ll = "tern-t-if-ll";
    let mut names = vec![TERN, ll];
    names.extend(FRRS.iter().map(|f| f.0));
    let mut lab = Lab::new(&names);
    let switch = "tern-t-if-sw";
    lab.bridge(switch);
    lab.plug(TERN, "eth0", "10.0.8.10/24", switch, "p10");
    for (ns, n) in FRRS {
        lab.plug(
            ns,
            "eth0",
            &format!("10.0.8.{n}/24"),
            switch,
            &format!("p{n}"),
        );
    }
    lab.veth(TERN, "ll0", ll, "eth0");
    run(&[
        "ip",
        "-n",
        TERN,
        "-6",
        "addr",
        "add",
        "fe80::10/64",
        "dev",
        "ll0",
        "nodad",
    ]);
    run(&[
        "ip",
        "-n",
        ll,
        "-6",
        "addr",
        "add",
        "fe80::7/64",
        "dev",
        "eth0",
        "nodad",
    ]);

    let a = lab.start_frr("tern-t-if-a", &client_a(true));
    let b = lab.start_frr(
        "tern-t-if-b",
        &frr_conf(
            2,
            "router bgp 65010\n bgp router-id 10.0.8.2\n neighbor 10.0.8.10 remote-as 65010\n",
        ),
    );
    let rr = lab.start_frr(
        "tern-t-if-rr",
        &frr_conf(3, "router bgp 65010\n bgp router-id 10.0.8.3\n neighbor 10.0.8.10 remote-as 65010\n neighbor 10.0.8.4 remote-as 65010\n address-family ipv4 unicast\n  neighbor 10.0.8.10 route-reflector-client\n  neighbor 10.0.8.4 route-reflector-client\n exit-address-family\n"),
    );
    let c = lab.start_frr(
        "tern-t-if-c",
        &frr_conf(4, "router bgp 65010\n bgp router-id 10.0.8.4\n no bgp network import-check\n neighbor 10.0.8.3 remote-as 65010\n address-family ipv4 unicast\n  network 203.0.113.0/24\n exit-address-family\n"),
    );
    let md5 = lab.start_frr(
        "tern-t-if-md5",
        &frr_conf(5, "router bgp 65005\n bgp router-id 10.0.8.5\n no bgp ebgp-requires-policy\n neighbor 10.0.8.10 remote-as 65010\n neighbor 10.0.8.10 password s3cret-key\n neighbor 10.0.8.10 ttl-security hops 1\n"),
    );
    let networks: String = (0..5)
        .map(|i| format!("  network 192.0.2.{}/32\n", i * 8))
        .collect();
    lab.start_frr(
        "tern-t-if-max",
        &frr_conf(6, &format!("router bgp 65006\n bgp router-id 10.0.8.6\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 10.0.8.10 remote-as 65010\n address-family ipv4 unicast\n{networks} exit-address-family\n")),
    );
    let ll_frr = lab.start_frr(
        ll,
        &frr_conf(7, "router bgp 65007\n bgp router-id 10.0.8.7\n no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n neighbor fe80::10 remote-as 65010\n neighbor fe80::10 interface eth0\n address-family ipv6 unicast\n  network 2001:db8:700::/48\n  neighbor fe80::10 activate\n exit-address-family\n"),
    );
    let ll_index: u32 = run(&["ip", "-n", TERN, "-o", "link", "show", "ll0"])
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap();

    let lab_dirs = (
        a.clone(),
        b.clone(),
        rr.clone(),
        c.clone(),
        md5.clone(),
        ll_frr.clone(),
    );
    inside(TERN, move || {
        let (a, b, rr, c, md5, ll_frr) = lab_dirs;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = SpeakerConfig::new(65010, Ipv4Addr::new(10, 0, 8, 10));
            let listen = [
                SocketAddr::new(ip("0.0.0.0"), 179),
                SocketAddr::new(ip("::"), 179),
            ];
            let (speaker, _) = Speaker::start(config, &listen).await.unwrap();
            speaker
                .add_peer(PeerConfig {
                    route_reflector_client: true,
                    ..peer("10.0.8.1", 65010)
                })
                .await
                .unwrap();
            speaker
                .add_peer(PeerConfig {
                    route_reflector_client: true,
                    ..peer("10.0.8.2", 65010)
                })
                .await
                .unwrap();
            speaker.add_peer(peer("10.0.8.3", 65010)).await.unwrap();
            speaker
                .add_peer(PeerConfig {
                    password: Some("s3cret-key".into()),
                    // GTSM (RFC 5082) on both sides: TTL 255 sent, at least 255 accepted.
                    ttl_security: true,
                    multihop_ttl: Some(1),
                    ..peer("10.0.8.5", 65005)
                })
                .await
                .unwrap();
            let limited = MaxPrefix {
                limit: 3,
                action: MaxPrefixAction::Restart(Duration::from_secs(600)),
            };
            speaker
                .add_peer(PeerConfig {
                    max_prefix: Some(limited),
                    ..peer("10.0.8.6", 65006)
                })
                .await
                .unwrap();
            let mut link_local = PeerConfig::new(ip("fe80::7"), 65007);
            link_local.scope_id = ll_index;
            link_local.connect_retry = Duration::from_secs(1);
            speaker.add_peer(link_local).await.unwrap();
            speaker
                .originate(net("10.244.8.0/26"), vec![Community::new(65010, 8)])
                .await
                .unwrap();
            speaker
                .originate(net("fd00:244:8::/122"), vec![])
                .await
                .unwrap();

            // MD5 and the link-local session come up.
            wait_state(&speaker, "10.0.8.5", "the MD5 session", |s, _| {
                s == State::Established
            })
            .await;
            wait_state(&speaker, "fe80::7", "the link-local session", |s, _| {
                s == State::Established
            })
            .await;

            // Max-prefix: five prefixes against a limit of three close the session with Cease 1.
            wait_state(&speaker, "10.0.8.6", "max-prefix", |s, e| {
                s != State::Established && e.is_some_and(|e| e.contains("maximum prefixes"))
            })
            .await;

            // As reflector: client A's route reaches client B with ORIGINATOR_ID and CLUSTER_LIST,
            // LOCAL_PREF intact; as client of FRR's reflector, C's route reaches us reflected.
            let routes = wait_routes(&speaker, "routes from A and, reflected, from C", |r| {
                ["198.51.100.0/24", "203.0.113.0/24", "2001:db8:700::/48"]
                    .iter()
                    .all(|p| r.iter().any(|e| e.prefix == net(p)))
            })
            .await;
            let from_a = &routes
                .iter()
                .find(|e| e.prefix == net("198.51.100.0/24"))
                .unwrap()
                .best
                .paths[0]
                .attributes
                .attributes;
            assert_eq!(from_a.local_pref, Some(200));
            let from_c = &routes
                .iter()
                .find(|e| e.prefix == net("203.0.113.0/24"))
                .unwrap()
                .best
                .paths[0]
                .attributes
                .attributes;
            assert_eq!(from_c.originator_id, Some(Ipv4Addr::new(10, 0, 8, 4)));
            assert_eq!(from_c.cluster_list, vec![Ipv4Addr::new(10, 0, 8, 3)]);
            let v6 = &routes
                .iter()
                .find(|e| e.prefix == net("2001:db8:700::/48"))
                .unwrap()
                .best
                .paths[0];
            match v6.attributes.next_hop {
                tern_bgp::wire::NextHop::V6 { global, link_local } => {
                    let link_local = link_local.unwrap_or(global);
                    assert_eq!(
                        link_local,
                        "fe80::7".parse::<std::net::Ipv6Addr>().unwrap(),
                        "{:?}",
                        v6.attributes.next_hop
                    );
                }
                other => panic!("IPv4 next hop for an IPv6 route: {other:?}"),
            }

            blocking(move || {
                eventually(30, "B gets A's route reflected", || {
                    let json = vtysh(&b, "show ip bgp 198.51.100.0/24 json");
                    let ok = json.contains("\"originatorId\":\"10.0.8.1\"")
                        && json.contains("10.0.8.10")
                        && json.contains("\"locPrf\":200");
                    if ok { Ok(()) } else { Err(json) }
                });
                eventually(
                    30,
                    "FRR's reflector passes our block to C with us as originator",
                    || {
                        let json = vtysh(&c, "show ip bgp 10.244.8.0/26 json");
                        if json.contains("\"originatorId\":\"10.0.8.10\"") {
                            Ok(())
                        } else {
                            Err(json)
                        }
                    },
                );
                eventually(30, "the MD5 peer holds our block", || {
                    let t = vtysh(&md5, "show ip bgp");
                    if t.contains("10.244.8.0/26") {
                        Ok(())
                    } else {
                        Err(t)
                    }
                });
                eventually(
                    30,
                    "the link-local peer holds our IPv6 block with a link-local next hop",
                    || {
                        let json = vtysh(&ll_frr, "show bgp ipv6 unicast fd00:244:8::/122 json");
                        if json.contains("fe80::10") {
                            Ok(())
                        } else {
                            Err(json)
                        }
                    },
                );
                let _ = rr;
            })
            .await
            .unwrap();

            // Graceful restart: A crashes; its routes stay (stale) while it is away.
            let a_dir = a.clone();
            blocking(move || kill_bgpd(&a_dir)).await.unwrap();
            wait_state(&speaker, "10.0.8.1", "A's session to drop", |s, _| {
                s != State::Established
            })
            .await;
            let routes = speaker.routes(None, 1000).await.unwrap();
            for kept in ["198.51.100.0/24", "198.51.101.0/24"] {
                assert!(
                    routes.iter().any(|e| e.prefix == net(kept)),
                    "{kept} kept while A restarts"
                );
            }
            // A comes back announcing only one of the two: after its End-of-RIB the other goes.
            let a_dir = a.clone();
            blocking(move || restart_bgpd("tern-t-if-a", &a_dir, &client_a(false)))
                .await
                .unwrap();
            wait_state(&speaker, "10.0.8.1", "A back", |s, _| {
                s == State::Established
            })
            .await;
            wait_routes(
                &speaker,
                "A's withdrawn-by-silence route swept after its End-of-RIB",
                |r| {
                    r.iter().any(|e| e.prefix == net("198.51.100.0/24"))
                        && !r.iter().any(|e| e.prefix == net("198.51.101.0/24"))
                },
            )
            .await;
            let a_dir = a.clone();
            blocking(move || kill_bgpd(&a_dir)).await.unwrap();
            speaker.shutdown(false).await.unwrap();
        });
    });
}
