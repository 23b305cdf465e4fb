//! tern's BGP speaker against FRR 8.4, BIRD 2 and GoBGP (Debian's packages) on one segment, the
//! `speaker-ebgp` lab (e2e/topologies/speaker-ebgp.clab.yml), the speaker running in-process in
//! the lab's `tern` node: eBGP sessions over IPv4 and IPv6, routes both ways with their
//! attributes (communities, large communities, MED), routes passed on between the daemons through
//! tern, and withdrawals.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::wire::{Community, LargeCommunity};
use tern_bgp::{PeerConfig, Speaker, SpeakerConfig, State};
use tern_e2e::check::{birdc, eventually, gobgp, vtysh};
use tern_e2e::{Lab, inside, require_root};

/// The lab: e2e/topologies/speaker-ebgp.clab.yml.
fn topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/speaker-ebgp.clab.yml")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn peer(address: &str, asn: u32, local: &str) -> PeerConfig {
    PeerConfig {
        local_address: Some(ip(local)),
        connect_retry: Duration::from_secs(1),
        ..PeerConfig::new(ip(address), asn)
    }
}

#[test]
fn tern_exchanges_routes_with_frr_bird_and_gobgp_over_ipv4_and_ipv6() {
    if !require_root() {
        return;
    }
    let lab = Arc::new(Lab::up(topology()).unwrap());
    let tern = lab.netns("tern").unwrap();
    let lab_check = lab.clone();
    inside(&tern, move || {
        let lab = lab_check;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = SpeakerConfig::new(65010, "10.0.7.10".parse().unwrap());
            let listen = [
                SocketAddr::new(ip("0.0.0.0"), 179),
                SocketAddr::new(ip("::"), 179),
            ];
            let (speaker, _) = Speaker::start(config, &listen).await.unwrap();
            for (address, asn, local) in [
                ("10.0.7.1", 65001, "10.0.7.10"),
                ("fd00:7::1", 65001, "fd00:7::10"),
                ("10.0.7.2", 65002, "10.0.7.10"),
                ("fd00:7::2", 65002, "fd00:7::10"),
                ("10.0.7.3", 65003, "10.0.7.10"),
                ("fd00:7::3", 65003, "fd00:7::10"),
            ] {
                speaker.add_peer(peer(address, asn, local)).await.unwrap();
            }
            speaker
                .originate(net("10.244.7.0/26"), vec![Community::new(65010, 7)])
                .await
                .unwrap();
            speaker
                .originate(net("fd00:244:7::/122"), vec![Community::new(65010, 6)])
                .await
                .unwrap();

            // Every session comes up.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let peers = speaker.peers().await.unwrap();
                if peers.iter().all(|p| p.state == State::Established) && peers.len() == 6 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "sessions not up: {:#?}",
                    peers
                        .iter()
                        .map(|p| (p.config.address, p.state, p.last_error.clone()))
                        .collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let lab_gobgp = lab.clone();
            tokio::task::spawn_blocking(move || {
                let lab = lab_gobgp;
                lab.exec(
                    "gobgp",
                    &[
                        "gobgp",
                        "global",
                        "rib",
                        "add",
                        "203.0.113.0/24",
                        "community",
                        "65003:300",
                        "med",
                        "30",
                    ],
                )
                .unwrap();
                lab.exec(
                    "gobgp",
                    &[
                        "gobgp",
                        "global",
                        "rib",
                        "-a",
                        "ipv6",
                        "add",
                        "2001:db8:300::/48",
                        "community",
                        "65003:600",
                    ],
                )
                .unwrap();
            })
            .await
            .unwrap();

            // Routes from each daemon arrive with their attributes.
            let wanted = [
                ("198.51.100.0/24", "10.0.7.1"),
                ("2001:db8:100::/48", "fd00:7::1"),
                ("192.0.2.128/25", "10.0.7.2"),
                ("2001:db8:200::/48", "fd00:7::2"),
                ("203.0.113.0/24", "10.0.7.3"),
                ("2001:db8:300::/48", "fd00:7::3"),
            ];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let routes = loop {
                let routes = speaker.routes(None, 100).await.unwrap();
                let have = |p: &str| routes.iter().any(|r| r.prefix == net(p));
                if wanted.iter().all(|(p, _)| have(p)) {
                    break routes;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "missing routes: {:?}",
                    routes.iter().map(|r| r.prefix).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            for (prefix, from) in wanted {
                let route = routes.iter().find(|r| r.prefix == net(prefix)).unwrap();
                assert_eq!(route.sources, vec![Some(ip(from))], "{prefix}");
            }
            let attrs = |p: &str| {
                routes
                    .iter()
                    .find(|r| r.prefix == net(p))
                    .unwrap()
                    .best
                    .paths[0]
                    .attributes
                    .attributes
                    .clone()
            };
            let frr4 = attrs("198.51.100.0/24");
            assert_eq!(frr4.communities, vec![Community::new(65001, 100)]);
            assert_eq!(
                frr4.large_communities,
                vec![LargeCommunity {
                    global_admin: 65001,
                    local_data_1: 1,
                    local_data_2: 1
                }]
            );
            assert_eq!(frr4.med, Some(50));
            let bird4 = attrs("192.0.2.128/25");
            assert_eq!(bird4.communities, vec![Community::new(65002, 200)]);
            assert_eq!(
                bird4.large_communities,
                vec![LargeCommunity {
                    global_admin: 65002,
                    local_data_1: 2,
                    local_data_2: 2
                }]
            );
            assert_eq!(bird4.med, Some(20));
            let gobgp4 = attrs("203.0.113.0/24");
            assert_eq!(gobgp4.communities, vec![Community::new(65003, 300)]);
            assert_eq!(gobgp4.med, Some(30));
            assert_eq!(
                attrs("2001:db8:200::/48").communities,
                vec![Community::new(65002, 600)]
            );

            // Our routes, and those passed on through us, reach every daemon with their attributes.
            let lab_check = lab.clone();
            tokio::task::spawn_blocking(move || {
                let lab = lab_check;
                eventually(
                    Duration::from_secs(30),
                    "FRR holds our block and BIRD's route",
                    || {
                        let table = vtysh(&lab, "frr", "show ip bgp 10.244.7.0/26").unwrap();
                        let via_us = vtysh(&lab, "frr", "show ip bgp 192.0.2.128/25").unwrap();
                        let ok = table.contains("65010:7")
                            && via_us.contains("65010 65002")
                            && via_us.contains("65002:200");
                        if ok {
                            Ok(())
                        } else {
                            Err(format!("{table}\n{via_us}"))
                        }
                    },
                );
                eventually(Duration::from_secs(30), "FRR holds our IPv6 block", || {
                    let table =
                        vtysh(&lab, "frr", "show bgp ipv6 unicast fd00:244:7::/122").unwrap();
                    if table.contains("65010:6") {
                        Ok(())
                    } else {
                        Err(table)
                    }
                });
                eventually(
                    Duration::from_secs(30),
                    "BIRD holds our block and FRR's route",
                    || {
                        let ours = birdc(&lab, "bird", "show route 10.244.7.0/26 all").unwrap();
                        let frr = birdc(&lab, "bird", "show route 198.51.100.0/24 all").unwrap();
                        let ok = ours.contains("(65010,7)")
                            && frr.contains("65010 65001")
                            && frr.contains("(65001, 1, 1)");
                        if ok {
                            Ok(())
                        } else {
                            Err(format!("{ours}\n{frr}"))
                        }
                    },
                );
                eventually(Duration::from_secs(30), "GoBGP holds our block", || {
                    let rib = gobgp(&lab, "gobgp", "global rib").unwrap();
                    let ok = rib.contains("10.244.7.0/26") && rib.contains("192.0.2.128/25");
                    if ok { Ok(()) } else { Err(rib) }
                });
            })
            .await
            .unwrap();

            // A withdrawal reaches them all.
            speaker.withdraw(net("10.244.7.0/26")).await.unwrap();
            let lab_check = lab.clone();
            tokio::task::spawn_blocking(move || {
                let lab = lab_check;
                eventually(
                    Duration::from_secs(30),
                    "our block is withdrawn everywhere",
                    || {
                        let f = vtysh(&lab, "frr", "show ip bgp").unwrap();
                        let b = birdc(&lab, "bird", "show route 10.244.7.0/26").unwrap();
                        let g = gobgp(&lab, "gobgp", "global rib").unwrap();
                        if !f.contains("10.244.7.0/26")
                            && !b.contains("10.244.7.0/26")
                            && !g.contains("10.244.7.0/26")
                        {
                            Ok(())
                        } else {
                            Err(format!("{f}\n{b}\n{g}"))
                        }
                    },
                );
            })
            .await
            .unwrap();
            speaker.shutdown(false).await.unwrap();
        });
    });
}
