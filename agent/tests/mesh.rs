//! Three ternd nodes on one L2 segment (the `ternd-mesh` lab, e2e/topologies/ternd-mesh.clab.yml)
//! in an iBGP full mesh (one side of each pair passive, as in
//! Calico): every node holds exactly the other nodes' blocks and its own blackholes, pods ping
//! across, a removed block disappears everywhere, and pings every 10 ms lose nothing while a
//! node's ternd is killed and started again, or restarted with SIGTERM.

use std::path::Path;
use std::time::Duration;

use tern_e2e::check::{Pinger, eventually, route_lines};
use tern_e2e::{Lab, require_root};

const NODES: [(&str, &str, &str); 3] = [
    ("n1", "10.0.5.11", "10.244.1.0/26"),
    ("n2", "10.0.5.12", "10.244.2.0/26"),
    ("n3", "10.0.5.13", "10.244.3.0/26"),
];

fn ternd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ternd"))
}

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

fn actual(lab: &Lab, node: &str) -> Vec<String> {
    let mut lines: Vec<String> = route_lines(lab, node, "bird")
        .unwrap()
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

fn converge(lab: &Lab, blocks: &[Vec<&str>]) {
    for (i, (ns, _, _)) in NODES.iter().enumerate() {
        let want = expected(i, blocks);
        eventually(
            Duration::from_secs(60),
            &format!("{ns} holds exactly its routes"),
            || {
                let got = actual(lab, ns);
                if got == want {
                    Ok(())
                } else {
                    Err(format!("want {want:?}, got {got:?}"))
                }
            },
        );
    }
}

#[test]
fn a_three_node_mesh_routes_pods_and_restarts_without_loss() {
    if !require_root() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/ternd-mesh.clab.yml");
    let mut lab = Lab::up(file).unwrap();
    let mut daemons = Vec::new();
    for (i, (node, _, block)) in NODES.iter().enumerate() {
        daemons.push(
            lab.start_ternd(node, ternd(), &config(i, &[block]))
                .unwrap(),
        );
    }
    let blocks: Vec<Vec<&str>> = NODES.iter().map(|n| vec![n.2]).collect();
    converge(&lab, &blocks);
    for target in ["10.244.2.2", "10.244.3.2"] {
        let ping = lab
            .exec(
                "n1/pod",
                &["ping", "-c", "2", "-i", "0.2", "-W", "2", target],
            )
            .unwrap();
        assert!(ping.contains("2 received"), "{ping}");
    }

    // ternd on n2 killed outright and started again: pings every 10 ms lose nothing.
    let pinger = Pinger::start(
        &lab,
        "n1/pod",
        "10.244.2.2".parse().unwrap(),
        Duration::from_millis(10),
        6,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    lab.stop(daemons[1], "KILL", Duration::from_secs(10))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    daemons[1] = lab
        .start_ternd(NODES[1].0, ternd(), &config(1, &[NODES[1].2]))
        .unwrap();
    let report = pinger.finish().unwrap();
    let (sent, received) = (report.transmitted, report.received);
    assert!(sent > 300, "only {sent} pings sent");
    assert_eq!(sent, received, "pings lost across SIGKILL and restart");
    converge(&lab, &blocks);

    // A planned restart with SIGTERM: same.
    let pinger = Pinger::start(
        &lab,
        "n3/pod",
        "10.244.2.2".parse().unwrap(),
        Duration::from_millis(10),
        6,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    lab.stop(daemons[1], "TERM", Duration::from_secs(10))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    daemons[1] = lab
        .start_ternd(NODES[1].0, ternd(), &config(1, &[NODES[1].2]))
        .unwrap();
    let report = pinger.finish().unwrap();
    let (sent, received) = (report.transmitted, report.received);
    assert_eq!(sent, received, "pings lost across SIGTERM and restart");
    converge(&lab, &blocks);

    // n3 gets a second block, then gives it back: every node follows.
    lab.write_ternd_config(NODES[2].0, &config(2, &[NODES[2].2, "10.244.4.0/26"]))
        .unwrap();
    lab.signal(daemons[2], "HUP").unwrap();
    let mut grown = blocks.clone();
    grown[2].push("10.244.4.0/26");
    converge(&lab, &grown);
    lab.write_ternd_config(NODES[2].0, &config(2, &[NODES[2].2]))
        .unwrap();
    lab.signal(daemons[2], "HUP").unwrap();
    converge(&lab, &blocks);
}
