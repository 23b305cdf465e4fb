//! Two ternd nodes under one FRR 8.4 top-of-rack router (eBGP, mesh off), as in Calico's
//! `mesh3-tor` setups: FRR learns both blocks and nothing more specific, each node installs the
//! other's block via the router, and pods on the two nodes ping each other.

mod common;

use common::{Lab, eventually, require_root, routes, run, vtysh};

const FRR: &str = "
frr defaults traditional
hostname tor
no ipv6 forwarding
!
router bgp 65000
 bgp router-id 10.0.0.254
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 10.0.1.11 remote-as 64512
 neighbor 10.0.2.12 remote-as 64513
 address-family ipv4 unicast
  neighbor 10.0.1.11 activate
  neighbor 10.0.2.12 activate
 exit-address-family
!
";

fn node(name: &str, address: &str, asn: u32, tor: &str, block: &str) -> String {
    format!(
        r#"
nodeName: {name}
nodeAddress: {address}/24
asNumber: {asn}
nodeToNodeMeshEnabled: false
peers:
  - peerIP: {tor}
    asNumber: 65000
ipPools:
  - cidr: 10.244.0.0/16
blocks: [{block}]
"#
    )
}

#[test]
fn nodes_under_an_frr_tor_exchange_blocks_and_their_pods_ping_each_other() {
    if !require_root() {
        return;
    }
    let (tor, n1, n2) = ("tern-t-tor", "tern-t-tor-n1", "tern-t-tor-n2");
    let mut lab = Lab::new(&[tor, n1, n2]);
    lab.link((n1, "eth0", "10.0.1.11/24"), (tor, "eth1", "10.0.1.1/24"));
    lab.link((n2, "eth0", "10.0.2.12/24"), (tor, "eth2", "10.0.2.1/24"));
    for ns in [tor, n1, n2] {
        lab.forwarding(ns);
    }
    // Nodes have a default route, as real ones do (proxy ARP for pods relies on it).
    run(&["ip", "-n", n1, "route", "add", "default", "via", "10.0.1.1"]);
    run(&["ip", "-n", n2, "route", "add", "default", "via", "10.0.2.1"]);
    let frr = lab.start_frr(tor, FRR);
    lab.start(
        n1,
        &node("n1", "10.0.1.11", 64512, "10.0.1.1", "10.244.1.0/26"),
    );
    lab.start(
        n2,
        &node("n2", "10.0.2.12", 64513, "10.0.2.1", "10.244.2.0/26"),
    );
    lab.pod(n1, "tern-t-tor-pod1", "10.244.1.2", "cali1");
    lab.pod(n2, "tern-t-tor-pod2", "10.244.2.2", "cali2");

    eventually(60, "FRR learns both blocks", || {
        let table = vtysh(&frr, "show ip bgp");
        let ok = table.contains("10.244.1.0/26") && table.contains("10.244.2.0/26");
        if ok { Ok(()) } else { Err(table) }
    });
    let table = vtysh(&frr, "show ip bgp json");
    assert!(
        !table.contains("10.244.1.2/32") && !table.contains("10.244.2.2/32"),
        "nothing more specific: {table}"
    );
    assert!(
        table.contains("64512") && table.contains("64513"),
        "AS paths name the nodes: {table}"
    );
    eventually(30, "n1 installs n2's block via the ToR", || {
        let r = routes(n1);
        if r.contains("10.244.2.0/26 via 10.0.1.1") {
            Ok(())
        } else {
            Err(r)
        }
    });
    eventually(30, "n2 installs n1's block via the ToR", || {
        let r = routes(n2);
        if r.contains("10.244.1.0/26 via 10.0.2.1") {
            Ok(())
        } else {
            Err(r)
        }
    });
    // FRR installs the blocks in its own kernel (proto bgp), so pods reach each other.
    eventually(30, "the ToR's kernel has both blocks", || {
        let r = run(&["ip", "-n", tor, "route", "show", "proto", "bgp"]);
        if r.contains("10.244.1.0/26") && r.contains("10.244.2.0/26") {
            Ok(())
        } else {
            Err(r)
        }
    });
    let ping = run(&[
        "ip",
        "netns",
        "exec",
        "tern-t-tor-pod1",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "10.244.2.2",
    ]);
    assert!(ping.contains("3 received"), "{ping}");
}
