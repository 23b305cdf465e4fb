//! Encapsulation in the `overlay` lab (e2e/topologies/overlay.clab.yml): the leaf-spine fabric
//! routes only the node subnets, the four nodes peer with each other (iBGP full mesh, multihop
//! across racks), and pods on every node reach each other through IP-in-IP Always, IP-in-IP
//! CrossSubnet and VXLAN, switched at runtime without restarting a session. The wire is checked
//! with tcpdump (protocol 4, plain packets inside a subnet, UDP for VXLAN) and the tunnel MTU
//! with DF pings one byte either side of it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tern_e2e::check::{Capture, PacketCounts, ip_protocol, kernel_routes, ping};
use tern_e2e::daemon::DaemonOptions;
use tern_e2e::lab::Lab;

/// (node, underlay address, pod address, block, rack).
const NODES: [(&str, &str, &str, &str, u8); 4] = [
    ("n1", "10.1.1.11", "10.244.1.2", "10.244.1.0/26", 1),
    ("n2", "10.1.1.12", "10.244.2.2", "10.244.2.0/26", 1),
    ("n3", "10.1.2.13", "10.244.3.2", "10.244.3.0/26", 2),
    ("n4", "10.1.2.14", "10.244.4.2", "10.244.4.0/26", 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    IpipAlways,
    IpipCrossSubnet,
    VxlanCrossSubnet,
    VxlanAlways,
}

/// Rewrites every node's running configuration (ternd applies a changed file by itself).
fn set_mode(lab: &Lab, mode: Mode) {
    let (ipip, vxlan) = match mode {
        Mode::IpipAlways => ("Always", "Never"),
        Mode::IpipCrossSubnet => ("CrossSubnet", "Never"),
        Mode::VxlanCrossSubnet => ("Never", "CrossSubnet"),
        Mode::VxlanAlways => ("Never", "Always"),
    };
    for (node, ..) in NODES {
        let path = lab.node_dir(node).join("ternd.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text: String = text
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("ipipMode:") {
                    format!("    ipipMode: {ipip}")
                } else if line.trim_start().starts_with("vxlanMode:") {
                    format!("    vxlanMode: {vxlan}")
                } else {
                    line.to_owned()
                }
            })
            .map(|line| line + "\n")
            .collect();
        std::fs::write(&path, text).unwrap();
    }
}

/// The (gateway, device) node `i` must use toward node `j`'s block in `mode`.
fn expected(mode: Mode, i: usize, j: usize) -> (IpAddr, &'static str) {
    let (_, address, _, block, rack) = NODES[j];
    let node: IpAddr = address.parse().unwrap();
    let same_rack = NODES[i].4 == rack;
    match mode {
        Mode::IpipAlways => (node, "tunl0"),
        Mode::IpipCrossSubnet if same_rack => (node, "eth1"),
        Mode::IpipCrossSubnet => (node, "tunl0"),
        Mode::VxlanCrossSubnet if same_rack => (node, "eth1"),
        Mode::VxlanCrossSubnet | Mode::VxlanAlways => {
            let block: ipnetwork::IpNetwork = block.parse().unwrap();
            (block.network(), "vxlan.tern")
        }
    }
}

/// Waits until every node's kernel routes every other block as `mode` says.
fn wait_routes(lab: &Lab, mode: Mode) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut wrong = Vec::new();
        for (i, (node, ..)) in NODES.iter().enumerate() {
            let routes = kernel_routes(lab, node, "bird").unwrap();
            for (j, (_, _, _, block, _)) in NODES.iter().enumerate() {
                let block: ipnetwork::IpNetwork = block.parse().unwrap();
                let route = routes.iter().find(|r| r.dst == block);
                if i == j {
                    if route.map(|r| r.kind.as_str()) != Some("blackhole") {
                        wrong.push(format!("{node}: {block} is not a blackhole: {route:?}"));
                    }
                    continue;
                }
                let (gateway, device) = expected(mode, i, j);
                let want = vec![(Some(gateway), Some(device.to_owned()))];
                if route.map(|r| &r.nexthops) != Some(&want) {
                    wrong.push(format!("{node}: {block} wants {want:?}, has {route:?}"));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            lab.dump_logs();
            panic!("{mode:?}: routes not as expected:\n{}", wrong.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every pod pings every pod on the other nodes, without loss once the path is warm.
fn ping_all(lab: &Lab, mode: Mode) {
    for (i, (from, ..)) in NODES.iter().enumerate() {
        for (j, (_, _, pod, ..)) in NODES.iter().enumerate() {
            if i == j {
                continue;
            }
            let source = format!("{from}/pod-a");
            let destination: IpAddr = pod.parse().unwrap();
            let _warm = ping(lab, &source, destination, 1, Duration::from_secs(3));
            let report = ping(lab, &source, destination, 3, Duration::from_secs(5)).unwrap();
            if report.lost() != 0 {
                lab.dump_logs();
                panic!("{mode:?}: {source} -> {pod}: {report:?}");
            }
        }
    }
}

/// Counts n1's underlay packets while `from`'s pod pings `to`'s pod.
fn capture(lab: &Lab, from: usize, to: usize) -> PacketCounts {
    let capture = Capture::start(lab, NODES[from].0, "eth1").unwrap();
    let destination: IpAddr = NODES[to].2.parse().unwrap();
    let source = format!("{}/pod-a", NODES[from].0);
    let report = ping(lab, &source, destination, 5, Duration::from_secs(5)).unwrap();
    assert_eq!(report.lost(), 0, "{source} -> {destination}: {report:?}");
    capture.stop().unwrap()
}

/// A DF ping of `size` octets of payload from n1's pod to n3's pod: Ok, or ping's output.
fn df_ping(lab: &Lab, size: u32) -> Result<(), String> {
    let output = lab
        .command(
            "n1/pod-a",
            &[
                "ping",
                "-n",
                "-M",
                "do",
                "-c",
                "1",
                "-W",
                "2",
                "-s",
                &size.to_string(),
                NODES[2].2,
            ],
        )
        .unwrap()
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

/// The largest DF payload gets through; one octet more gets "fragmentation needed" with the
/// tunnel's MTU (from the node, or as the pod's cached path MTU).
fn check_mtu(lab: &Lab, mtu: u32) {
    let largest = mtu - 28;
    // The first try may meet a path MTU learnt earlier in a bigger tunnel: warm up once.
    let _ = df_ping(lab, largest);
    if let Err(text) = df_ping(lab, largest) {
        panic!("{largest} octets with DF did not get through a {mtu} MTU tunnel: {text}");
    }
    let error = df_ping(lab, largest + 1).expect_err("one octet more must not fit");
    let said = [format!("mtu = {mtu}"), format!("mtu={mtu}")];
    assert!(
        said.iter().any(|s| error.contains(s.as_str())),
        "{} octets: wanted fragmentation needed with mtu {mtu}, got: {error}",
        largest + 1
    );
}

fn ternctl(lab: &Lab, node: &str, args: &[&str]) -> serde_json::Value {
    let socket = lab.node_dir(node).join("tern.sock");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ternctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["-o", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ternctl {args:?} on {node}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Each node's sessions: peer address -> (state, since).
fn sessions(lab: &Lab) -> BTreeMap<(String, String), (String, String)> {
    let mut all = BTreeMap::new();
    for (node, ..) in NODES {
        let peers = ternctl(lab, node, &["peers"]);
        for peer in peers.as_array().into_iter().flatten() {
            let field = |name: &str| peer.get(name).map(|v| v.to_string()).unwrap_or_default();
            all.insert(
                (node.to_owned(), field("address")),
                (field("state"), field("since")),
            );
        }
    }
    all
}

#[test]
fn pods_reach_each_other_through_ipip_and_vxlan_and_modes_change_at_runtime() {
    if !tern_e2e::require_root() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/overlay.clab.yml");
    let options = DaemonOptions {
        start_ternd: true,
        ternd: env!("CARGO_BIN_EXE_ternd").into(),
    };
    let lab = Lab::up_with(&file, &options).unwrap();

    // The fabric does not route pods: without encapsulation nothing would get across.
    for leaf in ["leaf1", "leaf2", "spine"] {
        let routes = kernel_routes(&lab, leaf, "all").unwrap();
        let pod: IpAddr = NODES[2].2.parse().unwrap();
        assert!(
            !routes.iter().any(|r| r.dst.contains(pod)),
            "{leaf} routes pods: {routes:?}"
        );
    }

    // IP-in-IP Always (the committed configuration).
    wait_routes(&lab, Mode::IpipAlways);
    ping_all(&lab, Mode::IpipAlways);
    let same_rack = capture(&lab, 0, 1);
    assert!(same_rack.count(ip_protocol::IPIP) >= 10, "{same_rack:?}");
    assert_eq!(same_rack.count(ip_protocol::ICMP), 0, "{same_rack:?}");
    check_mtu(&lab, 1480);
    let status = ternctl(&lab, "n1", &["status"]);
    let kernel_ipip = lab
        .exec("n1", &["ip", "-d", "link", "show", "tunl0"])
        .unwrap()
        .contains("ipip ");
    let path = status["data_path"].as_str().unwrap_or_default().to_owned();
    let detail = status["data_path_detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if kernel_ipip {
        assert!(
            path.contains("ipip") && !path.contains("userspace"),
            "{status}"
        );
    } else {
        assert!(path.contains("userspace"), "{status}");
        assert!(detail.contains("userspace"), "{status}");
    }
    let before = sessions(&lab);
    assert_eq!(before.len(), 12, "{before:?}");
    assert!(
        before
            .values()
            .all(|(state, _)| state.contains("Established")),
        "{before:?}"
    );

    // IP-in-IP CrossSubnet: plain inside a rack, protocol 4 between racks.
    set_mode(&lab, Mode::IpipCrossSubnet);
    wait_routes(&lab, Mode::IpipCrossSubnet);
    ping_all(&lab, Mode::IpipCrossSubnet);
    let same_rack = capture(&lab, 0, 1);
    assert!(same_rack.count(ip_protocol::ICMP) >= 10, "{same_rack:?}");
    assert_eq!(same_rack.count(ip_protocol::IPIP), 0, "{same_rack:?}");
    let across = capture(&lab, 0, 2);
    assert!(across.count(ip_protocol::IPIP) >= 10, "{across:?}");
    assert_eq!(across.count(ip_protocol::ICMP), 0, "{across:?}");

    // VXLAN CrossSubnet: plain inside a rack, UDP between racks; the userspace tunl0 goes.
    set_mode(&lab, Mode::VxlanCrossSubnet);
    wait_routes(&lab, Mode::VxlanCrossSubnet);
    ping_all(&lab, Mode::VxlanCrossSubnet);
    let same_rack = capture(&lab, 0, 1);
    assert!(same_rack.count(ip_protocol::ICMP) >= 10, "{same_rack:?}");
    assert_eq!(same_rack.count(ip_protocol::UDP), 0, "{same_rack:?}");
    let across = capture(&lab, 0, 2);
    assert!(across.count(ip_protocol::UDP) >= 10, "{across:?}");
    assert_eq!(across.count(ip_protocol::ICMP), 0, "{across:?}");
    assert_eq!(across.count(ip_protocol::IPIP), 0, "{across:?}");
    if !kernel_ipip {
        let gone = lab.exec("n1", &["ip", "link", "show", "tunl0"]);
        assert!(
            gone.is_err(),
            "the userspace tunl0 stays after IP-in-IP is off: {gone:?}"
        );
    }

    // VXLAN Always: UDP on the wire, nothing else.
    set_mode(&lab, Mode::VxlanAlways);
    wait_routes(&lab, Mode::VxlanAlways);
    ping_all(&lab, Mode::VxlanAlways);
    for to in [1, 2] {
        let counts = capture(&lab, 0, to);
        assert!(counts.count(ip_protocol::UDP) >= 10, "{counts:?}");
        assert_eq!(counts.count(ip_protocol::IPIP), 0, "{counts:?}");
        assert_eq!(counts.count(ip_protocol::ICMP), 0, "{counts:?}");
    }
    check_mtu(&lab, 1450);
    let fdb = lab
        .exec("n1", &["bridge", "fdb", "show", "dev", "vxlan.tern"])
        .unwrap();
    for (_, address, ..) in &NODES[1..] {
        assert!(fdb.contains(&format!("dst {address}")), "{fdb}");
    }

    // No session restarted through the mode changes.
    let after = sessions(&lab);
    assert_eq!(before, after, "sessions changed across mode changes");

    // Restart without loss over VXLAN: the data path is the kernel's, so a ping every 10 ms
    // between racks loses nothing while n1's ternd stops (SIGTERM) and starts again.
    let mut restarted = restart_without_loss(&lab);
    lab.down().unwrap();
    // The lab's teardown ended it with everything else in its namespaces.
    let _ = restarted.wait();
}

/// Restarts n1's ternd during a fast ping from its pod to n3's pod; asserts no loss. Returns
/// the new ternd, which the lab's teardown ends.
fn restart_without_loss(lab: &Lab) -> std::process::Child {
    let pod = lab.netns("n1/pod-a").unwrap();
    let node = lab.netns("n1").unwrap();
    let pinger = std::process::Command::new("ip")
        .args([
            "netns", "exec", &pod, "ping", "-n", "-q", "-i", "0.01", "-W", "1", "-w", "12",
        ])
        .arg(NODES[2].2)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Our ternd in n1's namespace: the only process there apart from the ping's namespace.
    let ternd: Vec<u32> = tern_e2e::netns::pids(&node).unwrap();
    assert_eq!(ternd.len(), 1, "one process in n1: {ternd:?}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &ternd[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while tern_e2e::netns::pids(&node).unwrap().contains(&ternd[0]) {
        assert!(Instant::now() < deadline, "ternd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = lab.node_dir("n1").join("ternd.yaml");
    let log = std::fs::File::create(lab.node_dir("n1").join("ternd-restarted.log")).unwrap();
    // Started in n1's namespace; the lab's teardown ends every process left in its namespaces.
    let restarted = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &node,
            env!("CARGO_BIN_EXE_ternd"),
            "--config",
        ])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let output = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "pings lost across a restart of n1's ternd over VXLAN: {text}"
    );
    // The new ternd is up: its sessions are back, and the routes are as before.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let socket = lab.node_dir("n1").join("tern.sock");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ternctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["-o", "json", "peers"])
            .output()
            .unwrap();
        let peers: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        let up = peers
            .as_array()
            .map(|list| list.iter().filter(|p| p["state"] == "Established").count());
        if up == Some(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted ternd has no sessions: {peers}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_routes(lab, Mode::VxlanAlways);
    restarted
}
