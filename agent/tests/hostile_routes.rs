//! Import safety against a hostile peer: an FRR 8.4 router (the `hostile` lab,
//! e2e/topologies/hostile.clab.yml) announces what no node may install, to two ternd nodes:
//! - n1 takes it as a mesh peer and is sent its own block, more specifics of it, a pod /32
//!   inside it, a block added through the API and a pod /32 a CNI route holds (an address n1
//!   borrowed from another node's block): none of it enters n1's kernel, its pods stay
//!   reachable and the CNI's route stays as it was;
//! - n2 takes it as a top-of-rack router with the filter `0.0.0.0/0` and is sent 10.0.0.0/8 and
//!   the default route: only the default is installed.
//!
//! And the prefix limit: a peer over `maxPrefixes` is cut off (Restart) or warned about (Warn).

use std::path::Path;
use std::time::Duration;

use tern_e2e::check::{eventually, route_lines, vtysh};
use tern_e2e::{DaemonOptions, Lab, require_root};

/// The `hostile` lab as `name`, FRR up, no ternd yet.
fn lab(name: &str) -> Lab {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/hostile.clab.yml");
    Lab::up_as(file, name, &DaemonOptions::from_env()).unwrap()
}

/// Makes FRR originate `prefixes` (network statements; import-check is off).
fn announce(lab: &Lab, prefixes: &[&str]) {
    let mut argv = vec![
        "vtysh".to_owned(),
        "-c".into(),
        "configure terminal".into(),
        "-c".into(),
        "router bgp 65000".into(),
        "-c".into(),
        "address-family ipv4 unicast".into(),
    ];
    for prefix in prefixes {
        argv.push("-c".into());
        argv.push(format!("network {prefix}"));
    }
    lab.exec("tor", &argv).unwrap();
}

fn ternctl(lab: &Lab, node: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .arg("--socket")
        .arg(lab.ternd_socket(node))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ternctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `node`'s ternd shows `peer` with `prefixes_received` at least `count`.
fn wait_received(lab: &Lab, node: &str, peer: &str, count: u64) {
    eventually(
        Duration::from_secs(60),
        &format!("{node} receives {count} prefixes from {peer}"),
        || {
            let out = ternctl(lab, node, &["peers", "-o", "json"]);
            let peers: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let received = peers
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["address"] == peer)
                .and_then(|p| p["prefixes_received"].as_u64())
                .unwrap_or(0);
            if received >= count { Ok(()) } else { Err(out) }
        },
    );
}

#[test]
fn nothing_a_peer_announces_for_our_blocks_or_a_cni_route_enters_the_kernel() {
    if !require_root() {
        return;
    }
    let mut lab = lab("hostile");
    let ternd = Path::new(env!("CARGO_BIN_EXE_ternd"));
    // n1 meshes with the router as if it were another node (so its pool routes are admitted).
    lab.start_ternd(
        "n1",
        ternd,
        r#"
nodeName: n1
nodeAddress: 10.0.1.11/24
asNumber: 64512
nodes:
  - name: rogue
    address: 10.0.1.1
    asNumber: 65000
ipPools:
  - cidr: 10.244.0.0/16
blocks: [10.244.1.0/26]
"#,
    )
    .unwrap();
    // n2 takes a default route from its top-of-rack router, and nothing else.
    lab.start_ternd(
        "n2",
        ternd,
        r#"
nodeName: n2
nodeAddress: 10.0.2.12/24
asNumber: 64513
nodeToNodeMeshEnabled: false
peers:
  - peerIP: 10.0.2.1
    asNumber: 65000
    filters: [0.0.0.0/0]
ipPools:
  - cidr: 10.244.0.0/16
blocks: [10.244.2.0/26]
"#,
    )
    .unwrap();
    eventually(Duration::from_secs(20), "n1 serves its API", || {
        if lab.ternd_socket("n1").exists() {
            Ok(())
        } else {
            Err("no socket yet".into())
        }
    });
    ternctl(&lab, "n1", &["blocks", "add", "10.244.7.0/26"]);
    let before_cni = route_lines(&lab, "n1", "static").unwrap();
    assert!(before_cni.contains("10.244.9.5 dev"), "{before_cni}");

    let hostile = [
        "10.244.1.0/26", // n1's block
        "10.244.1.0/27", // more specific of it
        "10.244.1.2/32", // n1's own pod
        "10.244.7.0/26", // the block added through the API
        "10.244.7.8/32", // inside it
        "10.244.9.5/32", // held by the CNI's /32 dev veth route (a borrowed address)
        "10.0.0.0/8",    // neither in a pool nor named by n2's filter
        "0.0.0.0/0",     // named exactly by n2's filter
    ];
    announce(&lab, &hostile);
    // The control: a block of another node, which n1 must install.
    announce(&lab, &["10.244.9.0/26"]);
    wait_received(&lab, "n1", "10.0.1.1", hostile.len() as u64 + 1);
    wait_received(&lab, "n2", "10.0.2.1", hostile.len() as u64 + 1);

    eventually(
        Duration::from_secs(30),
        "n1 installs the other node's block",
        || {
            let r = route_lines(&lab, "n1", "bird").unwrap();
            if r.contains("10.244.9.0/26 via 10.0.1.1") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    eventually(Duration::from_secs(30), "n2 installs the default", || {
        let r = route_lines(&lab, "n2", "bird").unwrap();
        if r.contains("default via 10.0.2.1") {
            Ok(())
        } else {
            Err(r)
        }
    });
    // Give a wrong install every chance to land.
    std::thread::sleep(Duration::from_secs(2));
    let n1 = route_lines(&lab, "n1", "bird").unwrap();
    for prefix in ["10.244.1.0/27", "10.244.1.2 ", "10.244.7.8 ", "10.244.9.5 "] {
        assert!(!n1.contains(prefix), "n1 installed {prefix}: {n1}");
    }
    for block in ["10.244.1.0/26", "10.244.7.0/26"] {
        let line = n1.lines().find(|l| l.contains(block));
        assert!(
            line.is_some_and(|l| l.starts_with("blackhole")),
            "n1's block {block} keeps its blackhole: {n1}"
        );
    }
    assert_eq!(
        route_lines(&lab, "n1", "static").unwrap(),
        before_cni,
        "the CNI's pod routes are untouched"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ternctl(&lab, "n1", &["status", "-o", "json"])).unwrap();
    assert_eq!(
        status["refusals"]["kernel_routes_held_by_others"], 1,
        "the pod /32 the CNI holds is counted: {status}"
    );
    let n2 = route_lines(&lab, "n2", "bird").unwrap();
    assert!(
        !n2.contains("10.0.0.0/8") && !n2.contains("10.244.9.0/26"),
        "the filter 0.0.0.0/0 names the default route only: {n2}"
    );
    // n1's pods, the own one and the borrowed one, are still reached through their veths.
    for pod in ["10.244.1.2", "10.244.9.5"] {
        let ping = lab
            .exec("n1", &["ping", "-c", "2", "-i", "0.2", "-W", "2", pod])
            .unwrap();
        assert!(ping.contains("2 received"), "{pod}: {ping}");
    }
}

/// `FRR`'s view of its session with `neighbor`, as JSON text.
fn frr_neighbor(lab: &Lab, neighbor: &str) -> String {
    vtysh(lab, "tor", &format!("show bgp neighbors {neighbor} json")).unwrap()
}

#[test]
fn a_peer_over_its_prefix_limit_is_cut_off_or_warned_about_as_configured() {
    if !require_root() {
        return;
    }
    let mut lab = lab("hostmax");
    let ternd = Path::new(env!("CARGO_BIN_EXE_ternd"));
    let node = |name: &str, address: &str, asn: u32, tor: &str, action: &str| {
        format!(
            r#"
nodeName: {name}
nodeAddress: {address}/24
asNumber: {asn}
nodeToNodeMeshEnabled: false
peers:
  - peerIP: {tor}
    asNumber: 65000
    maxPrefixes: {{limit: 3, warningThreshold: 50, action: {action}, restartDelay: 10m}}
ipPools:
  - cidr: 10.244.0.0/16
"#
        )
    };
    lab.start_ternd(
        "n1",
        ternd,
        &node("n1", "10.0.1.11", 64512, "10.0.1.1", "Restart"),
    )
    .unwrap();
    lab.start_ternd(
        "n2",
        ternd,
        &node("n2", "10.0.2.12", 64513, "10.0.2.1", "Warn"),
    )
    .unwrap();
    for neighbor in ["10.0.1.11", "10.0.2.12"] {
        eventually(Duration::from_secs(60), "FRR's sessions are up", || {
            let json = frr_neighbor(&lab, neighbor);
            if json.contains("\"bgpState\":\"Established\"") {
                Ok(())
            } else {
                Err(json)
            }
        });
    }
    let prefixes = [
        "10.244.31.0/26",
        "10.244.32.0/26",
        "10.244.33.0/26",
        "10.244.34.0/26",
    ];
    announce(&lab, &prefixes);

    // Restart: n1 closes the session with Cease, maximum number of prefixes reached, and stays
    // away for the delay; its routes from the router go.
    eventually(
        Duration::from_secs(30),
        "n1 closes the session over the limit",
        || {
            let json = frr_neighbor(&lab, "10.0.1.11");
            if json.contains("Maximum Number of Prefixes Reached")
                && !json.contains("\"bgpState\":\"Established\"")
            {
                Ok(())
            } else {
                Err(json)
            }
        },
    );
    eventually(Duration::from_secs(30), "n1 drops the routes", || {
        let r = route_lines(&lab, "n1", "bird").unwrap();
        if r.contains("10.244.3") {
            Err(r)
        } else {
            Ok(())
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !frr_neighbor(&lab, "10.0.1.11").contains("\"bgpState\":\"Established\""),
        "the session stays down for the restart delay"
    );

    // Warn: n2 keeps the session and every route, and says so.
    eventually(Duration::from_secs(30), "n2 installs all four", || {
        let r = route_lines(&lab, "n2", "bird").unwrap();
        if prefixes.iter().all(|p| r.contains(p)) {
            Ok(())
        } else {
            Err(r)
        }
    });
    assert!(frr_neighbor(&lab, "10.0.2.12").contains("\"bgpState\":\"Established\""));
    let log = lab.log("n2", "ternd.log");
    assert!(
        log.contains("max-prefix warning threshold"),
        "the threshold (2 of 3) is logged: {log}"
    );
    let peers = ternctl(&lab, "n2", &["peers", "-o", "json"]);
    assert!(
        peers.contains("\"limit\": 3") && peers.contains("\"action\": \"warn\""),
        "ternctl shows the limit in force: {peers}"
    );
}
