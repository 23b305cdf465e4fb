//! Three ternd nodes on one L2 segment in an iBGP full mesh (one side of each pair passive, as in
//! Calico): every node holds exactly the other nodes' blocks and its own blackholes, pods ping
//! across, a removed block disappears everywhere, and pings every 10 ms lose nothing while a
//! node's ternd is killed and started again, or restarted with SIGTERM.

mod common;

use std::time::Duration;

use common::{Lab, eventually, ping_in_background, ping_result, require_root, routes, run};

const NODES: [(&str, &str, &str); 3] = [
    ("tern-t-mesh-n1", "10.0.5.11", "10.244.1.0/26"),
    ("tern-t-mesh-n2", "10.0.5.12", "10.244.2.0/26"),
    ("tern-t-mesh-n3", "10.0.5.13", "10.244.3.0/26"),
];

fn config(index: usize, blocks: &[&str]) -> String {
    let (_, address, _) = NODES[index];
    let others: String = NODES
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(i, (_, a, _))| format!("  - name: n{}\n    address: {a}\n", i + 1))
        .collect();
    format!(
        "nodeName: n{}\nnodeAddress: {address}/24\nasNumber: 64512\nnodes:\n{others}ipPools:\n  - cidr: 10.244.0.0/16\nblocks: [{}]\ngracefulRestartTime: 60s\n",
        index + 1,
        blocks.join(", ")
    )
}

/// The routes a node should hold: its own blocks as blackholes, the others' via their nodes.
fn expected(index: usize, blocks: &[Vec<&str>]) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, (_, address, _)) in NODES.iter().enumerate() {
        for block in &blocks[i] {
            if i == index {
                lines.push(format!("blackhole {block}"));
            } else {
                lines.push(format!("{block} via {address}"));
            }
        }
    }
    lines.sort();
    lines
}

fn actual(ns: &str) -> Vec<String> {
    let mut lines: Vec<String> = routes(ns)
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words[..] {
                ["blackhole", prefix, ..] => format!("blackhole {prefix}"),
                [prefix, "via", gateway, ..] => format!("{prefix} via {gateway}"),
                _ => l.to_owned(),
            }
        })
        .collect();
    lines.sort();
    lines
}

fn converge(blocks: &[Vec<&str>]) {
    for (i, (ns, _, _)) in NODES.iter().enumerate() {
        let want = expected(i, blocks);
        eventually(60, &format!("{ns} holds exactly its routes"), || {
            let got = actual(ns);
            if got == want {
                Ok(())
            } else {
                Err(format!("want {want:?}, got {got:?}"))
            }
        });
    }
}

#[test]
fn a_three_node_mesh_routes_pods_and_restarts_without_loss() {
    if !require_root() {
        return;
    }
    let switch = "tern-t-mesh-sw";
    let mut lab = Lab::new(&NODES.map(|n| n.0));
    lab.bridge(switch);
    let mut daemons = Vec::new();
    for (i, (ns, address, block)) in NODES.iter().enumerate() {
        lab.plug(
            ns,
            "eth0",
            &format!("{address}/24"),
            switch,
            &format!("p{}", i + 1),
        );
        lab.forwarding(ns);
        // Nodes have a default gateway, as real ones do (proxy ARP for pods relies on it).
        run(&["ip", "-n", ns, "route", "add", "default", "via", "10.0.5.1"]);
        let pod = format!("{ns}-pod");
        let pod_address = block.replace(".0/26", ".2");
        lab.pod(ns, &pod, &pod_address, "cali0");
        daemons.push(lab.start(ns, &config(i, &[block])));
    }
    let blocks: Vec<Vec<&str>> = NODES.iter().map(|n| vec![n.2]).collect();
    converge(&blocks);
    for target in ["10.244.2.2", "10.244.3.2"] {
        let ping = run(&[
            "ip",
            "netns",
            "exec",
            "tern-t-mesh-n1-pod",
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            target,
        ]);
        assert!(ping.contains("2 received"), "{ping}");
    }

    // ternd on n2 killed outright and started again: pings every 10 ms lose nothing.
    let pinger = ping_in_background("tern-t-mesh-n1-pod", "10.244.2.2", "0.01", 6);
    std::thread::sleep(Duration::from_millis(500));
    lab.signal(daemons[1], "-KILL");
    std::thread::sleep(Duration::from_millis(500));
    daemons[1] = lab.start(NODES[1].0, &config(1, &[NODES[1].2]));
    let (sent, received) = ping_result(pinger);
    assert!(sent > 300, "only {sent} pings sent");
    assert_eq!(sent, received, "pings lost across SIGKILL and restart");
    converge(&blocks);

    // A planned restart with SIGTERM: same.
    let pinger = ping_in_background("tern-t-mesh-n3-pod", "10.244.2.2", "0.01", 6);
    std::thread::sleep(Duration::from_millis(500));
    lab.signal(daemons[1], "-TERM");
    std::thread::sleep(Duration::from_millis(500));
    daemons[1] = lab.start(NODES[1].0, &config(1, &[NODES[1].2]));
    let (sent, received) = ping_result(pinger);
    assert_eq!(sent, received, "pings lost across SIGTERM and restart");
    converge(&blocks);

    // n3 gets a second block, then gives it back: every node follows.
    lab.write_config(NODES[2].0, &config(2, &[NODES[2].2, "10.244.4.0/26"]));
    lab.signal_running(daemons[2], "-HUP");
    let mut grown = blocks.clone();
    grown[2].push("10.244.4.0/26");
    converge(&grown);
    lab.write_config(NODES[2].0, &config(2, &[NODES[2].2]));
    lab.signal_running(daemons[2], "-HUP");
    converge(&blocks);
}
