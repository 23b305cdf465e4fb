//! Two ternd nodes in the `ternd-pair` lab (e2e/topologies/ternd-pair.clab.yml): they peer over the iBGP mesh,
//! announce their blocks, install each other's in the kernel tagged `proto bird`, and keep them
//! across a graceful restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tern_e2e::check::{route_lines, wait_route_line};
use tern_e2e::{Lab, require_root};

fn topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/ternd-pair.clab.yml")
}

fn ternd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ternd"))
}

/// `node`'s routes tagged `proto bird`, as `ip route` prints them.
fn routes(lab: &Lab, node: &str) -> String {
    route_lines(lab, node, "bird").unwrap()
}

/// Waits up to 30 s for `node` to hold a `proto bird` route line containing `wanted`.
fn wait_for_route(lab: &Lab, node: &str, wanted: &str) {
    wait_route_line(lab, node, "bird", wanted, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", lab.log(node, "ternd.log")));
}

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
    let (a, b) = ("a", "b");
    let mut lab = Lab::up(topology()).unwrap();
    let config_a = config(
        "node-a",
        "10.0.9.1",
        ("node-b", "10.0.9.2"),
        "10.244.1.0/26",
    );
    let node_a = lab.start_ternd(a, ternd(), &config_a).unwrap();
    lab.start_ternd(
        b,
        ternd(),
        &config(
            "node-b",
            "10.0.9.2",
            ("node-a", "10.0.9.1"),
            "10.244.2.0/26",
        ),
    )
    .unwrap();

    wait_for_route(&lab, a, "10.244.2.0/26 via 10.0.9.2");
    wait_for_route(&lab, b, "10.244.1.0/26 via 10.0.9.1");
    assert!(
        routes(&lab, a).contains("blackhole 10.244.1.0/26"),
        "{}",
        routes(&lab, a)
    );
    assert!(
        routes(&lab, b).contains("blackhole 10.244.2.0/26"),
        "{}",
        routes(&lab, b)
    );
    assert!(
        !routes(&lab, a).contains("10.244.1.0/26 via"),
        "our own block is never installed via a peer"
    );

    // A planned restart: SIGTERM closes the session without a Cease; both kernels keep the routes.
    lab.stop(node_a, "TERM", Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        routes(&lab, a).contains("10.244.2.0/26 via 10.0.9.2"),
        "kept in a's kernel: {}",
        routes(&lab, a)
    );
    assert!(
        routes(&lab, b).contains("10.244.1.0/26 via 10.0.9.1"),
        "b keeps a's routes: {}",
        routes(&lab, b)
    );
    lab.start_ternd(a, ternd(), &config_a).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    wait_for_route(&lab, a, "10.244.2.0/26 via 10.0.9.2");
    assert!(routes(&lab, b).contains("10.244.1.0/26 via 10.0.9.1"));
    assert!(
        lab.log(a, "ternd.log").contains("adopted kernel routes"),
        "{}",
        lab.log(a, "ternd.log")
    );

    // A changed configuration file is applied without a signal.
    let grown = config(
        "node-a",
        "10.0.9.1",
        ("node-b", "10.0.9.2"),
        "10.244.1.0/26, 10.244.5.0/26",
    );
    lab.write_ternd_config(a, &grown).unwrap();
    wait_for_route(&lab, b, "10.244.5.0/26 via 10.0.9.1");
}
