//! The lab's self-test, with no tern code in it: real FRR, BIRD and GoBGP peer with each other in
//! the `interop` lab, exchange routes and install them; the `mesh3-tor` lab's pods reach their
//! nodes; labs are removed by `down`, by a panicking test, by the next `up` after a crash, and by
//! the `tern-lab` command. Needs root (skips without it unless `TERN_REQUIRE_ROOT=1`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_e2e::check::{self, Capture, ip_protocol};
use tern_e2e::{Lab, netns, require_root};

/// Sessions come up in a few seconds; this only bounds a broken run.
const TIMEOUT: Duration = Duration::from_secs(60);

fn topology(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(format!("{name}.clab.yml"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn net(text: &str) -> IpNetwork {
    text.parse().expect("prefix")
}

/// The interop speakers: node, address, AS, the prefix it announces.
const SPEAKERS: [(&str, &str, u32, &str); 3] = [
    ("frr", "10.0.0.1", 65001, "198.51.100.0/24"),
    ("bird", "10.0.0.2", 65002, "203.0.113.0/24"),
    ("gobgp", "10.0.0.3", 65003, "192.0.2.0/24"),
];

#[test]
fn frr_bird_and_gobgp_peer_exchange_routes_and_install_them_in_the_kernel() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(topology("interop")).expect("interop lab up");

    for (node, ..) in SPEAKERS {
        for (peer, address, ..) in SPEAKERS.iter().filter(|s| s.0 != node) {
            check::wait_established(&lab, node, ip(address), TIMEOUT)
                .unwrap_or_else(|e| panic!("{node} with {peer}: {e}"));
        }
        let sessions = check::sessions(&lab, node).expect("sessions");
        assert_eq!(sessions.len(), 2, "{node}: {sessions:?}");
        assert!(
            sessions.values().all(|state| state == "Established"),
            "{node}: {sessions:?}"
        );
    }

    for (node, ..) in SPEAKERS {
        for (peer, address, asn, prefix) in SPEAKERS.iter().filter(|s| s.0 != node) {
            let route = check::wait_received_route(&lab, node, ip(address), net(prefix), TIMEOUT)
                .unwrap_or_else(|e| panic!("{node} from {peer}: {e}"));
            assert_eq!(route.as_path, [*asn], "{node} from {peer}: {route}");
        }
    }

    // FRR installs through zebra (proto bgp), BIRD through its kernel protocol (proto bird);
    // each route goes via the speaker that originated it (the shortest AS path).
    for (node, protocol) in [("frr", "bgp"), ("bird", "bird")] {
        for (origin, address, _, prefix) in SPEAKERS.iter().filter(|s| s.0 != node) {
            let what = format!("{node}: kernel route {prefix} proto {protocol} via {address}");
            check::wait_for(&what, TIMEOUT, || {
                let routes = check::kernel_routes(&lab, node, protocol)?;
                match routes.iter().find(|r| r.dst == net(prefix)) {
                    Some(route) if route.gateways() == [ip(address)] => Ok(Some(())),
                    _ => Err(tern_e2e::Error::NotFound(format!("{routes:?}"))),
                }
            })
            .unwrap_or_else(|e| panic!("route from {origin}: {e}"));
        }
    }

    lab.down().expect("teardown");
}

#[test]
fn mesh3_tor_pods_reach_their_node_and_down_leaves_no_namespace() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(topology("mesh3-tor")).expect("mesh3-tor lab up");
    let namespaces = lab.topology().namespaces();
    assert_eq!(namespaces.len(), 10, "{namespaces:?}");
    for ns in &namespaces {
        assert!(netns::exists(ns), "{ns} missing");
    }

    for (node, v4, v6) in [
        ("n1", "10.0.1.11", "fd00:1::11"),
        ("n2", "10.0.2.12", "fd00:2::12"),
        ("n3", "10.0.3.13", "fd00:3::13"),
    ] {
        for pod in ["pod-a", "pod-b"] {
            let from = format!("{node}/{pod}");
            for address in [v4, v6] {
                let report = check::ping(&lab, &from, ip(address), 3, Duration::from_secs(10))
                    .expect("ping");
                assert_eq!(report.transmitted, 3, "{from} -> {address}: {report:?}");
                assert_eq!(report.lost(), 0, "{from} -> {address}: {report:?}");
            }
        }
        // The pods' host routes are plain static routes (announcing them is tern's job).
        let routes = check::kernel_routes(&lab, node, "static").expect("routes");
        let pods = &lab.node(node).expect("node").pods;
        for pod in pods {
            assert!(
                routes.iter().any(|r| r.dst.ip() == IpAddr::V4(pod.ipv4)
                    && r.dst.prefix() == 32
                    && r.nexthops[0]
                        .1
                        .as_deref()
                        .is_some_and(|d| d.starts_with("cali"))),
                "{node}: no static route to {}: {routes:?}",
                pod.ipv4
            );
        }
    }

    // The ToR's FRR runs and waits for the nodes (no ternd yet).
    let sessions = check::sessions(&lab, "tor").expect("tor sessions");
    assert_eq!(sessions.len(), 3, "{sessions:?}");

    // Node to node across the ToR: every echo and reply crosses tor:eth1.
    let capture = Capture::start(&lab, "tor", "eth1").expect("capture");
    let report =
        check::ping(&lab, "n1", ip("10.0.2.12"), 4, Duration::from_secs(10)).expect("ping");
    assert_eq!(report.lost(), 0, "{report:?}");
    let counts = capture.stop().expect("counts");
    assert_eq!(counts.count(ip_protocol::ICMP), 8, "{counts:?}");

    lab.down().expect("teardown");
    for ns in &namespaces {
        assert!(!netns::exists(ns), "{ns} left behind");
    }
}

#[test]
fn a_stale_lab_is_removed_at_up_and_a_panicking_test_still_tears_its_lab_down() {
    if !require_root() {
        return;
    }
    // A run that died without tearing down: its lab stays up.
    let stale = Lab::up(topology("rr")).expect("first rr up");
    let stale_pids: Vec<u32> = Lab::status("rr")
        .expect("status")
        .nodes
        .iter()
        .flat_map(|n| n.processes.iter().map(|p| p.1))
        .collect();
    assert_eq!(stale_pids.len(), 6, "two FRRs of zebra, staticd, bgpd");
    stale.detach();

    let namespaces = std::panic::catch_unwind(|| {
        let lab = Lab::up(topology("rr")).expect("second rr up over the stale one");
        for pid in &stale_pids {
            assert!(
                !tern_e2e::daemon::is_alive(*pid),
                "stale pid {pid} still runs"
            );
        }
        let namespaces = lab.topology().namespaces();
        std::panic::panic_any(namespaces)
    })
    .expect_err("the closure panics")
    .downcast::<Vec<String>>()
    .expect("the namespaces");

    for ns in namespaces.iter() {
        assert!(!netns::exists(ns), "{ns} left behind after the panic");
    }
    assert!(Lab::list().expect("labs").iter().all(|l| l != "rr"));
}

#[test]
fn tern_lab_up_exec_status_and_down_leave_the_namespaces_as_they_were() {
    if !require_root() {
        return;
    }
    let file = topology("mesh3");
    let file = file.to_str().expect("utf-8 path");
    let ours = || -> Vec<String> {
        netns::list()
            .expect("netns list")
            .into_iter()
            .filter(|ns| ns.starts_with("tern-mesh3-") && !ns.starts_with("tern-mesh3-tor-"))
            .collect()
    };
    let before = ours();
    let tern_lab = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tern-lab"))
            .args(args)
            .output()
            .expect("tern-lab runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    let (ok, text) = tern_lab(&["up", file]);
    if !ok {
        tern_lab(&["down", file]);
        panic!("tern-lab up: {text}");
    }
    let result = std::panic::catch_unwind(|| {
        assert!(text.contains("tern-mesh3-n1-pod-a"), "{text}");
        let (ok, text) = tern_lab(&[
            "exec",
            "-t",
            "mesh3",
            "n2/pod-b",
            "ping",
            "-c1",
            "-W2",
            "10.0.0.12",
        ]);
        assert!(ok, "pod to node: {text}");
        let (ok, text) = tern_lab(&[
            "exec",
            "-t",
            "mesh3",
            "n1",
            "ping",
            "-c1",
            "-W2",
            "10.0.0.13",
        ]);
        assert!(ok, "node to node over the bridge: {text}");
        let (ok, text) = tern_lab(&["status", "mesh3"]);
        assert!(ok && text.contains("ternd not started"), "{text}");
        assert_eq!(ours().len(), 10);
    });
    let (ok, text) = tern_lab(&["down", "mesh3"]);
    assert!(ok, "tern-lab down: {text}");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(ours(), before);
    let (ok, text) = tern_lab(&["status", "mesh3"]);
    assert!(!ok && text.contains("no lab"), "{text}");
}
