//! ternd on the `leaf-spine` lab (e2e/topologies/leaf-spine.clab.yml): four nodes in two racks,
//! each rack a different subnet behind an FRR leaf, AS per rack. Every node installs the other
//! blocks via its leaf, pods ping across racks, and the spine holds the blocks and nothing more
//! specific.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tern_e2e::check::{kernel_routes, ping, wait_kernel_route};
use tern_e2e::daemon::DaemonOptions;
use tern_e2e::lab::Lab;

#[test]
fn four_nodes_in_two_racks_reach_each_others_pods() {
    if !tern_e2e::require_root() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/leaf-spine.clab.yml");
    let options = DaemonOptions {
        start_ternd: true,
        ternd: env!("CARGO_BIN_EXE_ternd").into(),
    };
    let lab = Lab::up_with(&file, &options).unwrap();
    // (node, its address, its leaf): within a rack the leaf reflects the original next hop, so
    // nodes route straight to each other; across racks traffic goes via the leaf.
    let nodes = [
        ("n1", "10.1.1.11", "10.1.1.1"),
        ("n2", "10.1.1.12", "10.1.1.1"),
        ("n3", "10.1.2.13", "10.1.2.1"),
        ("n4", "10.1.2.14", "10.1.2.1"),
    ];
    let blocks = [
        "10.244.1.0/26",
        "10.244.2.0/26",
        "10.244.3.0/26",
        "10.244.4.0/26",
    ];
    for (i, (node, _, leaf)) in nodes.iter().enumerate() {
        for (j, block) in blocks.iter().enumerate() {
            let route = wait_kernel_route(
                &lab,
                node,
                "bird",
                block.parse().unwrap(),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| {
                lab.dump_logs();
                panic!("{node}: {e}")
            });
            let same_rack = nodes[j].2 == *leaf;
            let gateway: IpAddr = if same_rack { nodes[j].1 } else { leaf }.parse().unwrap();
            if i == j {
                assert_eq!(route.kind, "blackhole", "{node} {block}");
            } else {
                assert_eq!(route.gateways(), vec![gateway], "{node} {block}");
            }
        }
        let ours = kernel_routes(&lab, node, "bird").unwrap();
        assert_eq!(
            ours.len(),
            blocks.len(),
            "{node} holds exactly the four blocks: {ours:?}"
        );
    }
    for (from, to) in [
        ("n1/pod-a", "10.244.3.2"),
        ("n4/pod-a", "10.244.2.2"),
        ("n2/pod-a", "10.244.1.2"),
    ] {
        let report = ping(&lab, from, to.parse().unwrap(), 3, Duration::from_secs(10)).unwrap();
        assert_eq!(report.lost(), 0, "{from} -> {to}: {report:?}");
    }
    let spine = lab.exec("spine", &["vtysh", "-c", "show ip bgp"]).unwrap();
    for block in blocks {
        assert!(spine.contains(block), "spine lacks {block}: {spine}");
    }
    assert!(
        !spine.contains("10.244.1.2/32") && !spine.contains("/27"),
        "nothing more specific: {spine}"
    );
    lab.down().unwrap();
}
