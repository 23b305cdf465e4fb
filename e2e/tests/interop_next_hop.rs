//! Next hops toward an eBGP peer of another family than the session's (issue 12, item 8): tern's
//! speaker learns an IPv6 route over IPv4 from one FRR with a third-party next hop and passes it
//! over IPv4 to another FRR, which must get tern's own IPv6 addresses on their link (global, and
//! link-local beside it, RFC 2545) and install the route in its kernel. The `speaker-nexthop` lab
//! (e2e/topologies/speaker-nexthop.clab.yml), the speaker running in-process in its `tern` node.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::{PeerConfig, Speaker, SpeakerConfig, State};
use tern_e2e::check::{eventually, vtysh};
use tern_e2e::{Lab, inside, require_root};

/// The lab: e2e/topologies/speaker-nexthop.clab.yml.
fn topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/speaker-nexthop.clab.yml")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn peer(address: &str, asn: u32, local: &str) -> PeerConfig {
    PeerConfig {
        local_address: Some(ip(local)),
        connect_retry: Duration::from_secs(1),
        ..PeerConfig::new(ip(address), asn)
    }
}

const ROUTE: &str = "2001:db8:77::/48";

#[test]
fn frr_gets_our_ipv6_address_as_next_hop_for_an_ipv6_route_over_an_ipv4_session_and_installs_it() {
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
            let config = SpeakerConfig::new(65010, "10.0.12.10".parse().unwrap());
            let listen = [SocketAddr::new(ip("0.0.0.0"), 179)];
            let (speaker, _) = Speaker::start(config, &listen).await.unwrap();
            speaker
                .add_peer(peer("10.0.11.1", 65011, "10.0.11.10"))
                .await
                .unwrap();
            speaker
                .add_peer(peer("10.0.12.2", 65012, "10.0.12.10"))
                .await
                .unwrap();

            // The route arrives from src with its third-party next hop.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let route: IpNetwork = ROUTE.parse().unwrap();
            loop {
                let peers = speaker.peers().await.unwrap();
                let up = peers.iter().all(|p| p.state == State::Established);
                let routes = speaker.routes(None, 100).await.unwrap();
                if up && routes.iter().any(|r| r.prefix == route) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "sessions {:?}, routes {:?}",
                    peers
                        .iter()
                        .map(|p| (p.config.address, p.state, p.last_error.clone()))
                        .collect::<Vec<_>>(),
                    routes.iter().map(|r| r.prefix).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }

            let lab_rx = lab.clone();
            tokio::task::spawn_blocking(move || {
                let lab = lab_rx;
                eventually(
                    Duration::from_secs(30),
                    "rx holds the route as valid and best with our global IPv6 next hop",
                    || {
                        let json =
                            vtysh(&lab, "rx", &format!("show bgp ipv6 unicast {ROUTE} json"))
                                .map_err(|e| e.to_string())?;
                        let ok = json.contains("\"valid\":true")
                            && json.contains("2001:db8:12::10")
                            && !json.contains("2001:db8:aa::1");
                        if ok { Ok(()) } else { Err(json) }
                    },
                );
                eventually(
                    Duration::from_secs(30),
                    "rx installs the route in its kernel",
                    || {
                        let routes = lab
                            .exec("rx", &["ip", "-6", "route", "show", ROUTE])
                            .map_err(|e| e.to_string())?;
                        if routes.contains("proto bgp") && routes.contains("dev eth1") {
                            Ok(())
                        } else {
                            Err(routes)
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
