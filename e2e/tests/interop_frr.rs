//! tern's speaker with FRR 8.4 in the roles a Calico cluster meets: route reflector for FRR
//! clients and client of an FRR reflector (iBGP, LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST), TCP
//! MD5 with GTSM, max-prefix, an IPv6 link-local session, and a peer restarting with graceful restart.
//! The `speaker-frr` lab (e2e/topologies/speaker-frr.clab.yml), the speaker running in-process in
//! its `tern` node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::wire::Community;
use tern_bgp::{MaxPrefix, MaxPrefixAction, PeerConfig, RouteEntry, Speaker, SpeakerConfig, State};
use tern_e2e::check::{eventually, vtysh};
use tern_e2e::{Lab, inside, require_root};

/// The lab: e2e/topologies/speaker-frr.clab.yml.
fn topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/speaker-frr.clab.yml")
}

/// Client A's config when it comes back from its crash: one of its two routes only.
const CLIENT_A_RESTARTED: &str = "frr defaults traditional
hostname frr1
!
route-map LP permit 10
 set local-preference 200
 set community 65010:1
!
router bgp 65010
 bgp router-id 10.0.8.1
 bgp graceful-restart
 no bgp network import-check
 neighbor 10.0.8.10 remote-as 65010
 address-family ipv4 unicast
  network 198.51.100.0/24 route-map LP
 exit-address-family
!
";

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
    let lab = Lab::up(topology()).unwrap();
    let tern = lab.netns("tern").unwrap();
    let ll_index: u32 = lab
        .exec("tern", &["ip", "-o", "link", "show", "ll0"])
        .unwrap()
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    // Shared with the speaker's thread; locked only while asking FRR or restarting it.
    let lab = Arc::new(Mutex::new(lab));
    inside(&tern, move || {
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
                warning: None,
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

            let lab_check = lab.clone();
            blocking(move || {
                let lab = lab_check.lock().unwrap();
                eventually(
                    Duration::from_secs(30),
                    "B gets A's route reflected",
                    || {
                        let json = vtysh(&lab, "b", "show ip bgp 198.51.100.0/24 json").unwrap();
                        let ok = json.contains("\"originatorId\":\"10.0.8.1\"")
                            && json.contains("10.0.8.10")
                            && json.contains("\"locPrf\":200");
                        if ok { Ok(()) } else { Err(json) }
                    },
                );
                eventually(
                    Duration::from_secs(30),
                    "FRR's reflector passes our block to C with us as originator",
                    || {
                        let json = vtysh(&lab, "c", "show ip bgp 10.244.8.0/26 json").unwrap();
                        if json.contains("\"originatorId\":\"10.0.8.10\"") {
                            Ok(())
                        } else {
                            Err(json)
                        }
                    },
                );
                eventually(
                    Duration::from_secs(30),
                    "the MD5 peer holds our block",
                    || {
                        let t = vtysh(&lab, "md5", "show ip bgp").unwrap();
                        if t.contains("10.244.8.0/26") {
                            Ok(())
                        } else {
                            Err(t)
                        }
                    },
                );
                eventually(
                    Duration::from_secs(30),
                    "the link-local peer holds our IPv6 block with a link-local next hop",
                    || {
                        let json = vtysh(&lab, "ll", "show bgp ipv6 unicast fd00:244:8::/122 json")
                            .unwrap();
                        if json.contains("fe80::10") {
                            Ok(())
                        } else {
                            Err(json)
                        }
                    },
                );
            })
            .await
            .unwrap();

            // Graceful restart: A crashes; its routes stay (stale) while it is away.
            let lab_a = lab.clone();
            blocking(move || lab_a.lock().unwrap().crash_frr_daemon("a", "bgpd").unwrap())
                .await
                .unwrap();
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
            let lab_a = lab.clone();
            blocking(move || {
                lab_a
                    .lock()
                    .unwrap()
                    .restart_frr_daemon("a", "bgpd", CLIENT_A_RESTARTED)
                    .unwrap()
            })
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
            let lab_a = lab.clone();
            blocking(move || lab_a.lock().unwrap().crash_frr_daemon("a", "bgpd").unwrap())
                .await
                .unwrap();
            speaker.shutdown(false).await.unwrap();
        });
    });
}
