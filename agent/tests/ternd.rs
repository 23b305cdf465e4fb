//! Two ternd nodes in network namespaces this test creates: they peer over the iBGP mesh,
//! announce their blocks, install each other's in the kernel tagged `proto bird`, and keep them
//! across a graceful restart.

mod common;

use std::time::Duration;

use common::{Lab, require_root, routes, run, wait_for_route};

fn config(name: &str, address: &str, other: (&str, &str), block: &str) -> String {
    format!(
        r#"
nodeName: {name}
nodeAddress: {address}/24
asNumber: 64512
nodes:
  - name: {}
    address: {}
ipPools:
  - cidr: 10.244.0.0/16
blocks: [{block}]
gracefulRestartTime: 60s
"#,
        other.0, other.1
    )
}

#[test]
fn two_nodes_exchange_blocks_and_keep_them_across_a_graceful_restart() {
    if !require_root() {
        return;
    }
    let (a, b) = ("tern-t-ternd-a", "tern-t-ternd-b");
    let mut lab = Lab::new(&[a, b]);
    run(&[
        "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
    ]);
    run(&["ip", "-n", a, "addr", "add", "10.0.9.1/24", "dev", "eth0"]);
    run(&["ip", "-n", b, "addr", "add", "10.0.9.2/24", "dev", "eth0"]);
    run(&["ip", "-n", a, "link", "set", "eth0", "up"]);
    run(&["ip", "-n", b, "link", "set", "eth0", "up"]);
    let config_a = config(
        "node-a",
        "10.0.9.1",
        ("node-b", "10.0.9.2"),
        "10.244.1.0/26",
    );
    let node_a = lab.start(a, &config_a);
    lab.start(
        b,
        &config(
            "node-b",
            "10.0.9.2",
            ("node-a", "10.0.9.1"),
            "10.244.2.0/26",
        ),
    );

    wait_for_route(&lab, a, "10.244.2.0/26 via 10.0.9.2");
    wait_for_route(&lab, b, "10.244.1.0/26 via 10.0.9.1");
    assert!(
        routes(a).contains("blackhole 10.244.1.0/26"),
        "{}",
        routes(a)
    );
    assert!(
        routes(b).contains("blackhole 10.244.2.0/26"),
        "{}",
        routes(b)
    );
    assert!(
        !routes(a).contains("10.244.1.0/26 via"),
        "our own block is never installed via a peer"
    );

    // A planned restart: SIGTERM closes the session without a Cease; both kernels keep the routes.
    lab.signal(node_a, "-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        routes(a).contains("10.244.2.0/26 via 10.0.9.2"),
        "kept in a's kernel: {}",
        routes(a)
    );
    assert!(
        routes(b).contains("10.244.1.0/26 via 10.0.9.1"),
        "b keeps a's routes: {}",
        routes(b)
    );
    lab.start(a, &config_a);
    std::thread::sleep(Duration::from_secs(2));
    wait_for_route(&lab, a, "10.244.2.0/26 via 10.0.9.2");
    assert!(routes(b).contains("10.244.1.0/26 via 10.0.9.1"));
    assert!(
        lab.log(a).contains("adopted kernel routes"),
        "{}",
        lab.log(a)
    );

    // A changed configuration file is applied without a signal.
    let grown = config(
        "node-a",
        "10.0.9.1",
        ("node-b", "10.0.9.2"),
        "10.244.1.0/26, 10.244.5.0/26",
    );
    lab.write_config(a, &grown);
    wait_for_route(&lab, b, "10.244.5.0/26 via 10.0.9.1");
}
