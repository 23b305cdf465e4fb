//! Two ternd nodes under one FRR 8.4 top-of-rack router (eBGP, mesh off), as in Calico's
//! `mesh3-tor` setups: FRR learns both blocks and nothing more specific, each node installs the
//! other's block via the router, and pods on the two nodes ping each other. Copies of the
//! `ternd-tor` lab (e2e/topologies/ternd-tor.clab.yml), ternd started by the tests.

use std::path::Path;
use std::time::Duration;

use tern_e2e::check::{eventually, route_lines, vtysh};
use tern_e2e::{DaemonOptions, Lab, require_root};

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

/// `node`'s routes tagged `proto bird`, as `ip route` prints them.
fn routes(lab: &Lab, node: &str) -> String {
    route_lines(lab, node, "bird").unwrap()
}

/// A copy of the `ternd-tor` lab called `name`: the FRR router `tor` (e2e/topologies/ternd-tor/
/// tor/frr.conf) and ternd on `n1` (AS 64512, block 10.244.1.0/26) and `n2` (AS 64513,
/// 10.244.2.0/26), each on a link of its own.
fn two_nodes_under_frr(name: &str) -> Lab {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/ternd-tor.clab.yml");
    let mut lab = Lab::up_as(file, name, &DaemonOptions::from_env()).unwrap();
    let ternd = Path::new(env!("CARGO_BIN_EXE_ternd"));
    lab.start_ternd(
        "n1",
        ternd,
        &node("n1", "10.0.1.11", 64512, "10.0.1.1", "10.244.1.0/26"),
    )
    .unwrap();
    lab.start_ternd(
        "n2",
        ternd,
        &node("n2", "10.0.2.12", 64513, "10.0.2.1", "10.244.2.0/26"),
    )
    .unwrap();
    lab
}

#[test]
fn nodes_under_an_frr_tor_exchange_blocks_and_their_pods_ping_each_other() {
    if !require_root() {
        return;
    }
    let (tor, n1, n2) = ("tor", "n1", "n2");
    let lab = two_nodes_under_frr("ternd-tor");

    eventually(Duration::from_secs(60), "FRR learns both blocks", || {
        let table = vtysh(&lab, tor, "show ip bgp").unwrap();
        let ok = table.contains("10.244.1.0/26") && table.contains("10.244.2.0/26");
        if ok { Ok(()) } else { Err(table) }
    });
    let table = vtysh(&lab, tor, "show ip bgp json").unwrap();
    assert!(
        !table.contains("10.244.1.2/32") && !table.contains("10.244.2.2/32"),
        "nothing more specific: {table}"
    );
    assert!(
        table.contains("64512") && table.contains("64513"),
        "AS paths name the nodes: {table}"
    );
    eventually(
        Duration::from_secs(30),
        "n1 installs n2's block via the ToR",
        || {
            let r = routes(&lab, n1);
            if r.contains("10.244.2.0/26 via 10.0.1.1") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    eventually(
        Duration::from_secs(30),
        "n2 installs n1's block via the ToR",
        || {
            let r = routes(&lab, n2);
            if r.contains("10.244.1.0/26 via 10.0.2.1") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    // FRR installs the blocks in its own kernel (proto bgp), so pods reach each other.
    eventually(
        Duration::from_secs(30),
        "the ToR's kernel has both blocks",
        || {
            let r = route_lines(&lab, tor, "bgp").unwrap();
            if r.contains("10.244.1.0/26") && r.contains("10.244.2.0/26") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    let ping = lab
        .exec(
            "n1/pod1",
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.244.2.2"],
        )
        .unwrap();
    assert!(ping.contains("3 received"), "{ping}");
}

/// `ternctl` against a node whose peer is the FRR router: `node status` in calicoctl's layout,
/// and a block added through it reaching FRR and the other node's kernel.
fn ternctl(lab: &Lab, ns: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .arg("--socket")
        .arg(lab.ternd_socket(ns))
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
    let (tor, n1, n2) = ("tor", "n1", "n2");
    let lab = two_nodes_under_frr("ternd-torctl");

    let mut status = String::new();
    eventually(
        Duration::from_secs(60),
        "n1's session with FRR is up",
        || {
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
        },
    );
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
    eventually(
        Duration::from_secs(30),
        "FRR learns the new block from n1",
        || {
            let table = vtysh(&lab, tor, "show ip bgp 10.244.7.0/26").unwrap();
            if table.contains("64512") {
                Ok(())
            } else {
                Err(table)
            }
        },
    );
    eventually(
        Duration::from_secs(30),
        "n2 installs it via the ToR",
        || {
            let r = routes(&lab, n2);
            if r.contains("10.244.7.0/26 via 10.0.2.1") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    // And removing it withdraws it everywhere.
    let (ok, out) = ternctl(&lab, n1, &["blocks", "remove", "10.244.7.0/26"]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(30), "n2 drops it", || {
        let r = routes(&lab, n2);
        if r.contains("10.244.7.0/26") {
            Err(r)
        } else {
            Ok(())
        }
    });
    let table = vtysh(&lab, tor, "show ip bgp json").unwrap();
    assert!(
        !table.contains("10.244.7.0/26"),
        "FRR still has it: {table}"
    );
}
