//! Test helpers: what tests wait for and assert on in a running lab.
//!
//! - BGP sessions on FRR (`vtysh ... json`), BIRD (`birdc`) and GoBGP (`gobgp -j`):
//!   [`sessions`], [`wait_established`];
//! - routes a daemon received from a peer, with their AS paths: [`received_routes`];
//! - a node's kernel routes by protocol (`ip -j route`): [`kernel_routes`];
//! - pings from a node or pod with a deadline, counting lost packets: [`ping`], or in the
//!   background while the test acts: [`Pinger`];
//! - packet captures on a link, counted by IP protocol: [`Capture`];
//! - polling with a deadline instead of fixed sleeps: [`wait_for`], and [`eventually`], its
//!   panicking sibling for a test's own condition;
//! - asking a node's daemon anything, its output as text: [`vtysh`], [`birdc`], [`gobgp`].

mod bgp_routes;
mod capture;
mod cli;
mod kernel;
mod ping;
mod sessions;

pub use bgp_routes::*;
pub use capture::*;
pub use cli::*;
pub use kernel::*;
pub use ping::*;
pub use sessions::*;

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Polls `probe` every 200 ms until it gives `Some`, or fails with [`Error::Timeout`] after
/// `timeout`. The probe's `Err` is kept as the last observation, not returned at once (a daemon
/// may not answer yet).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = error.to_string(),
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                waited: timeout,
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `check` every 100 ms until it returns `Ok`; after `timeout` panics with `what` and the
/// last reason `check` gave. For a test's own condition, where [`wait_for`]'s `Result` is only
/// unwrapped.
pub fn eventually(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if start.elapsed() >= timeout => panic!("{what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use serde_json::Value;

    use super::*;

    #[test]
    fn frr_neighbors_json_gives_states_by_peer() {
        let json: Value = serde_json::from_str(
            r#"{"10.0.0.2":{"bgpState":"Established"},"fd00::3":{"bgpState":"Active"},"eth1":{"bgpState":"Idle"}}"#,
        )
        .expect("json");
        let sessions = frr_sessions(&json);
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions[&"10.0.0.2".parse::<IpAddr>().expect("ip")],
            "Established"
        );
        assert_eq!(
            sessions[&"fd00::3".parse::<IpAddr>().expect("ip")],
            "Active"
        );
    }

    #[test]
    fn gobgp_session_state_numbers_become_rfc_names() {
        let json: Value = serde_json::from_str(
            r#"[{"state":{"neighbor_address":"10.9.0.2","session_state":6}},
                {"state":{"neighbor_address":"10.9.0.4","session_state":3}}]"#,
        )
        .expect("json");
        let sessions = gobgp_sessions(&json);
        assert_eq!(
            sessions[&"10.9.0.2".parse::<IpAddr>().expect("ip")],
            "Established"
        );
        assert_eq!(
            sessions[&"10.9.0.4".parse::<IpAddr>().expect("ip")],
            "Active"
        );
    }

    const BIRD_PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     03:39:51.277
gobgp      BGP        ---        up     03:39:55.219  Established
  BGP state:          Established
    Neighbor address: 10.9.0.3
    Neighbor AS:      65003
  Channel ipv4
    State:          UP
frr        BGP        ---        start  03:39:51.277  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 10.9.0.1
    Neighbor AS:      65001
";

    #[test]
    fn bird_protocols_give_neighbor_and_state() {
        let protocols = bird_protocols(BIRD_PROTOCOLS);
        assert_eq!(
            protocols,
            [
                BirdProtocol {
                    name: "gobgp".into(),
                    neighbor: Some("10.9.0.3".parse().expect("ip")),
                    state: "Established".into()
                },
                BirdProtocol {
                    name: "frr".into(),
                    neighbor: Some("10.9.0.1".parse().expect("ip")),
                    state: "Active".into()
                },
            ]
        );
    }

    #[test]
    fn bird_routes_give_as_path_next_hop_and_best() {
        let text = "BIRD 2.0.12 ready.
Table master4:
192.0.2.0/24         unicast [gobgp 03:39:55.220] * (100) [AS65003?]
\tvia 10.9.0.3 on eth1
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65003
\tBGP.next_hop: 10.9.0.3
\tBGP.local_pref: 100
                     unicast [frr 03:39:56.000] (100) [AS65002i]
\tvia 10.9.0.1 on eth1
\tBGP.as_path: 65001 65002
\tBGP.next_hop: 10.9.0.1
Table master6:
2001:db8::/48        unicast [gobgp 03:39:55.220] * (100) [AS65003i]
\tvia fd00::3 on eth1
\tBGP.as_path: 65003
\tBGP.next_hop: fd00::3 fe80::1
";
        let routes = bird_routes(text);
        assert_eq!(routes.len(), 3, "{routes:?}");
        assert_eq!(routes[0].prefix.to_string(), "192.0.2.0/24");
        assert_eq!(routes[0].as_path, [65003]);
        assert!(routes[0].best);
        assert_eq!(routes[1].prefix.to_string(), "192.0.2.0/24");
        assert_eq!(routes[1].as_path, [65001, 65002]);
        assert!(!routes[1].best);
        assert_eq!(routes[2].next_hop, Some("fd00::3".parse().expect("ip")));
    }

    #[test]
    fn frr_and_gobgp_route_json_give_as_paths() {
        let frr: Value = serde_json::from_str(
            r#"{"routes":{"203.0.113.0/24":[{"valid":true,"bestpath":true,"path":"65002 {65010,65011}",
                "nexthops":[{"ip":"10.0.0.2","afi":"ipv4","used":true}]}]}}"#,
        )
        .expect("json");
        let routes = frr_routes(&frr);
        assert_eq!(routes[0].as_path, [65002, 65010, 65011]);
        assert_eq!(routes[0].next_hop, Some("10.0.0.2".parse().expect("ip")));
        assert!(routes[0].best);

        let gobgp: Value = serde_json::from_str(
            r#"{"203.0.113.0/24":[{"nlri":{"prefix":"203.0.113.0/24"},"best":true,"attrs":[
                {"type":1,"value":0},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[65002]}]},
                {"type":3,"nexthop":"10.9.0.2"}]}]}"#,
        )
        .expect("json");
        let routes = gobgp_routes(&gobgp);
        assert_eq!(routes[0].as_path, [65002]);
        assert_eq!(routes[0].next_hop, Some("10.9.0.2".parse().expect("ip")));
    }

    #[test]
    fn ip_route_json_gives_prefixes_next_hops_and_protocols() {
        let json: Value = serde_json::from_str(
            r#"[{"dst":"default","gateway":"10.0.1.1","dev":"eth1","flags":[]},
                {"dst":"10.244.1.2","dev":"cali0","protocol":"static","scope":"link","flags":[]},
                {"type":"blackhole","dst":"203.0.113.0/24","protocol":"bird","metric":32,"flags":[]},
                {"dst":"198.51.100.0/24","protocol":"bgp","metric":20,"nexthops":[
                    {"gateway":"10.0.0.1","dev":"eth1","weight":1},{"gateway":"10.0.0.3","dev":"eth1","weight":1}]}]"#,
        )
        .expect("json");
        let routes = parse_ip_routes(&json, false);
        assert_eq!(routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(routes[1].dst.to_string(), "10.244.1.2/32");
        assert_eq!(routes[1].protocol, "static");
        assert_eq!(routes[2].kind, "blackhole");
        assert!(routes[2].nexthops.is_empty());
        assert_eq!(routes[3].gateways().len(), 2);
    }

    #[test]
    fn ping_summaries_give_sent_and_received() {
        let text = "PING 10.0.1.11 (10.0.1.11) 56(84) bytes of data.\n\n--- 10.0.1.11 ping statistics ---\n\
                    5 packets transmitted, 3 received, 40% packet loss, time 801ms\n";
        let report = parse_ping(text).expect("summary");
        assert_eq!(
            report,
            PingReport {
                transmitted: 5,
                received: 3
            }
        );
        assert_eq!(report.lost(), 2);
        let text = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4ms\n";
        assert_eq!(parse_ping(text).map(|r| r.lost()), Some(5));
    }

    fn pcap(link_type: u32, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(0xa1b2_c3d4_u32.to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend([0; 8]);
        out.extend(65535u32.to_le_bytes());
        out.extend(link_type.to_le_bytes());
        for frame in frames {
            out.extend([0; 8]);
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend(frame);
        }
        out
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0; 12];
        frame.extend(ethertype.to_be_bytes());
        frame.extend(payload);
        frame
    }

    #[test]
    fn captures_count_packets_by_ip_protocol() {
        let mut ipv4 = vec![0x45; 20];
        ipv4[9] = ip_protocol::IPIP;
        let mut ipv6 = vec![0x60; 40];
        ipv6[6] = ip_protocol::ICMPV6;
        let mut icmp = ipv4.clone();
        icmp[9] = ip_protocol::ICMP;
        let bytes = pcap(
            1,
            &[
                ethernet(0x0800, &ipv4),
                ethernet(0x0800, &ipv4),
                ethernet(0x86dd, &ipv6),
                ethernet(0x0806, &[0; 28]),
                {
                    let mut vlan = vec![0; 12];
                    vlan.extend([0x81, 0x00, 0, 1, 0x08, 0x00]);
                    vlan.extend(&icmp);
                    vlan
                },
            ],
        );
        let counts = count_protocols(&bytes).expect("pcap");
        assert_eq!(counts.count(ip_protocol::IPIP), 2);
        assert_eq!(counts.count(ip_protocol::ICMPV6), 1);
        assert_eq!(counts.count(ip_protocol::ICMP), 1);
        assert_eq!(counts.not_ip, 1);
        assert_eq!(counts.ip_total(), 4);
        assert!(count_protocols(b"not a pcap file at all, no").is_err());
    }
}
