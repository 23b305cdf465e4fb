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

/// The FRR router `tor` and ternd on `n1` (AS 64512, block 10.244.1.0/26) and `n2` (AS 64513,
/// 10.244.2.0/26), each on a link of its own; returns the lab and FRR's folder.
fn two_nodes_under_frr(tor: &str, n1: &str, n2: &str) -> (Lab, std::path::PathBuf) {
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
    (lab, frr)
}

#[test]
fn nodes_under_an_frr_tor_exchange_blocks_and_their_pods_ping_each_other() {
    if !require_root() {
        return;
    }
    let (tor, n1, n2) = ("tern-t-tor", "tern-t-tor-n1", "tern-t-tor-n2");
    let (mut lab, frr) = two_nodes_under_frr(tor, n1, n2);
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

/// `ternctl` against a node whose peer is the FRR router: `node status` in calicoctl's layout,
/// and a block added through it reaching FRR and the other node's kernel.
fn ternctl(lab: &Lab, ns: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .arg("--socket")
        .arg(lab.dir.join(format!("{ns}.sock")))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn ternctl_shows_the_frr_session_and_its_blocks_reach_frr_and_the_other_node() {
    if !require_root() {
        return;
    }
    let (tor, n1, n2) = ("tern-t-torctl", "tern-t-torctl-n1", "tern-t-torctl-n2");
    let (lab, frr) = two_nodes_under_frr(tor, n1, n2);

    let mut status = String::new();
    eventually(60, "n1's session with FRR is up", || {
        let (ok, out) = ternctl(&lab, n1, &["node", "status"]);
        let line = out
            .lines()
            .find(|l| l.contains("10.0.1.1 "))
            .unwrap_or_default();
        if ok && line.contains("Established") {
            status = out;
            Ok(())
        } else {
            Err(out)
        }
    });
    assert!(status.starts_with("Tern process is running."), "{status}");
    assert!(status.contains("IPv4 BGP status"), "{status}");
    assert!(status.contains("IPv6 BGP status"), "{status}");
    for column in ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"] {
        assert!(status.contains(column), "{column}: {status}");
    }
    let line = status.lines().find(|l| l.contains("10.0.1.1 ")).unwrap();
    assert!(line.contains("global"), "a BGPPeer for every node: {line}");
    assert!(line.contains("| up "), "{line}");

    // A block added through ternctl reaches FRR and n2's kernel (via the ToR).
    let (ok, out) = ternctl(&lab, n1, &["blocks", "add", "10.244.7.0/26"]);
    assert!(ok, "{out}");
    eventually(30, "FRR learns the new block from n1", || {
        let table = vtysh(&frr, "show ip bgp 10.244.7.0/26");
        if table.contains("64512") {
            Ok(())
        } else {
            Err(table)
        }
    });
    eventually(30, "n2 installs it via the ToR", || {
        let r = routes(n2);
        if r.contains("10.244.7.0/26 via 10.0.2.1") {
            Ok(())
        } else {
            Err(r)
        }
    });
    // And removing it withdraws it everywhere.
    let (ok, out) = ternctl(&lab, n1, &["blocks", "remove", "10.244.7.0/26"]);
    assert!(ok, "{out}");
    eventually(30, "n2 drops it", || {
        let r = routes(n2);
        if r.contains("10.244.7.0/26") {
            Err(r)
        } else {
            Ok(())
        }
    });
    let table = vtysh(&frr, "show ip bgp json");
    assert!(
        !table.contains("10.244.7.0/26"),
        "FRR still has it: {table}"
    );
}
