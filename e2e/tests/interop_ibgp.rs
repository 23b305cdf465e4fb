//! tern's speaker in iBGP with BIRD 2 and GoBGP over IPv4 and IPv6: LOCAL_PREF travels both ways,
//! and internal routes are not passed between internal peers unless reflected. The `speaker-ibgp`
//! lab (e2e/topologies/speaker-ibgp.clab.yml), the speaker running in-process in its `tern` node.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::wire::Community;
use tern_bgp::{PeerConfig, Speaker, SpeakerConfig, State};
use tern_e2e::check::{birdc, eventually, gobgp};
use tern_e2e::{Lab, inside, require_root};

/// The lab: e2e/topologies/speaker-ibgp.clab.yml.
fn topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/speaker-ibgp.clab.yml")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

#[test]
fn tern_in_ibgp_with_bird_and_gobgp_carries_local_pref_both_ways() {
    if !require_root() {
        return;
    }
    let lab = Arc::new(Lab::up(topology()).unwrap());
    let tern = lab.netns("tern").unwrap();
    inside(&tern, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = SpeakerConfig::new(65010, "10.0.9.10".parse().unwrap());
            let listen = [
                SocketAddr::new(ip("0.0.0.0"), 179),
                SocketAddr::new(ip("::"), 179),
            ];
            let (speaker, _) = Speaker::start(config, &listen).await.unwrap();
            for (address, local) in [
                ("10.0.9.2", "10.0.9.10"),
                ("fd00:9::2", "fd00:9::10"),
                ("10.0.9.3", "10.0.9.10"),
                ("fd00:9::3", "fd00:9::10"),
            ] {
                let peer = PeerConfig {
                    local_address: Some(ip(local)),
                    connect_retry: Duration::from_secs(1),
                    ..PeerConfig::new(ip(address), 65010)
                };
                speaker.add_peer(peer).await.unwrap();
            }
            speaker
                .originate(net("10.244.9.0/26"), vec![Community::new(65010, 9)])
                .await
                .unwrap();
            speaker
                .originate(net("fd00:244:9::/122"), vec![])
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let peers = speaker.peers().await.unwrap();
                if peers.len() == 4 && peers.iter().all(|p| p.state == State::Established) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "sessions not up");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let lab_gobgp = lab.clone();
            tokio::task::spawn_blocking(move || {
                lab_gobgp
                    .exec(
                        "gobgp",
                        &[
                            "gobgp",
                            "global",
                            "rib",
                            "add",
                            "203.0.113.0/26",
                            "local-pref",
                            "300",
                        ],
                    )
                    .unwrap();
            })
            .await
            .unwrap();

            // Theirs reach us with LOCAL_PREF as they set it.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let routes = loop {
                let routes = speaker.routes(None, 100).await.unwrap();
                let have = |p: &str| routes.iter().any(|r| r.prefix == net(p));
                if have("192.0.2.0/26") && have("2001:db8:2::/48") && have("203.0.113.0/26") {
                    break routes;
                }
                assert!(tokio::time::Instant::now() < deadline, "routes missing");
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let pref = |p: &str| {
                routes
                    .iter()
                    .find(|r| r.prefix == net(p))
                    .unwrap()
                    .best
                    .paths[0]
                    .attributes
                    .attributes
                    .local_pref
            };
            assert_eq!(pref("192.0.2.0/26"), Some(250));
            assert_eq!(pref("2001:db8:2::/48"), Some(260));
            assert_eq!(pref("203.0.113.0/26"), Some(300));

            // Ours reach them with LOCAL_PREF 100; neither gets the other's route (iBGP split horizon).
            tokio::task::spawn_blocking(move || {
                eventually(
                    Duration::from_secs(30),
                    "BIRD holds our block with LOCAL_PREF",
                    || {
                        let r = birdc(&lab, "bird", "show route 10.244.9.0/26 all").unwrap();
                        let split = birdc(&lab, "bird", "show route 203.0.113.0/26").unwrap();
                        if r.contains("BGP.local_pref: 100")
                            && r.contains("(65010,9)")
                            && !split.contains("203.0.113.0/26")
                        {
                            Ok(())
                        } else {
                            Err(format!("{r}\n{split}"))
                        }
                    },
                );
                eventually(Duration::from_secs(30), "GoBGP holds our blocks", || {
                    let r = gobgp(&lab, "gobgp", "global rib").unwrap();
                    let r6 = gobgp(&lab, "gobgp", "global rib -a ipv6").unwrap();
                    if r.contains("10.244.9.0/26")
                        && !r.contains("192.0.2.0/26")
                        && r6.contains("fd00:244:9::/122")
                    {
                        Ok(())
                    } else {
                        Err(format!("{r}\n{r6}"))
                    }
                });
            })
            .await
            .unwrap();
            speaker.shutdown(false).await.unwrap();
        });
    });
}
