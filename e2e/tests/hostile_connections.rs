//! 2,000 TCP connections to port 179 from an address that is no peer (issue 12): ternd stays up,
//! its session with a real FRR router stays Established, its open descriptors stay bounded and
//! its log does not fill with them. The `ternd-tor` lab (e2e/topologies/ternd-tor.clab.yml):
//! ternd on `n1` peers with FRR on `tor`; `n2`, routed through `tor`, plays the stranger.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use tern_e2e::check::{eventually, sessions, wait_established};
use tern_e2e::{DaemonOptions, Lab, inside, require_root};

/// How many connections the stranger opens, and holds open until the checks are done.
const CONNECTIONS: usize = 2000;

const N1: &str = "
nodeName: n1
nodeAddress: 10.0.1.11/24
asNumber: 64512
nodeToNodeMeshEnabled: false
peers:
  - peerIP: 10.0.1.1
    asNumber: 65000
ipPools:
  - cidr: 10.244.0.0/16
blocks: [10.244.1.0/26]
";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// How many descriptors process `pid` has open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Whether the other end has closed `stream` both ways: a read ends, and a KEEPALIVE written
/// afterwards is refused.
fn closed_both_ways(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = [0u8; 512];
    match stream.read(&mut buffer) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
        _ => return false,
    }
    let mut keepalive = vec![0xff; 16];
    keepalive.extend_from_slice(&[0, 19, 4]);
    (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        stream.write_all(&keepalive).is_err()
    })
}

#[test]
fn two_thousand_connections_from_a_stranger_leave_ternd_and_its_frr_session_alone() {
    if !require_root() {
        return;
    }
    let options = DaemonOptions::from_env();
    assert!(
        options.ternd.is_file(),
        "no ternd at {}: build it with `cargo build -p tern-agent`, or name it with TERN_TERND",
        options.ternd.display()
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/ternd-tor.clab.yml");
    let mut lab = Lab::up_as(file, "hostile-conn", &options).unwrap();
    let pid = lab.start_ternd("n1", &options.ternd, N1).unwrap();
    wait_established(&lab, "tor", ip("10.0.1.11"), Duration::from_secs(60)).unwrap();
    let descriptors_before = open_descriptors(pid);
    let log_before = lab.log("n1", "ternd.log").lines().count();

    // The stranger connects again and again, and holds every connection it got.
    let stranger = lab.netns("n2").unwrap();
    let mut held = inside(&stranger, || {
        let ternd = SocketAddr::new(ip("10.0.1.11"), 179);
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            match TcpStream::connect_timeout(&ternd, Duration::from_secs(5)) {
                Ok(stream) => held.push(stream),
                // Reset before the handshake was over for us.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                Err(e) => panic!("connecting to ternd: {e}"),
            }
        }
        held
    });
    let descriptors = open_descriptors(pid);
    assert!(
        descriptors <= descriptors_before + 16,
        "ternd's descriptors stay bounded: {descriptors_before} before, {descriptors} with \
         {CONNECTIONS} connections made and held"
    );
    // Every connection was closed at once, both ways (a sample of them, checked after all
    // were made).
    let open = held
        .iter_mut()
        .step_by(50)
        .map(closed_both_ways)
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 0, "connections left open by ternd, of a sample of 40");
    assert!(
        tern_e2e::daemon::is_alive(pid),
        "ternd is up: {}",
        lab.log("n1", "ternd.log")
    );
    // The session with FRR never went down.
    let frr = sessions(&lab, "tor").unwrap();
    assert_eq!(
        frr.get(&ip("10.0.1.11")).map(String::as_str),
        Some("Established"),
        "{frr:?}"
    );
    eventually(Duration::from_secs(5), "FRR still has n1's block", || {
        let table = tern_e2e::check::vtysh(&lab, "tor", "show ip bgp 10.244.1.0/26").unwrap();
        if table.contains("64512") {
            Ok(())
        } else {
            Err(table)
        }
    });
    let log = lab.log("n1", "ternd.log");
    let added = log.lines().count().saturating_sub(log_before);
    assert!(
        added < 20,
        "no line per refused connection: {added} new lines\n{log}"
    );
    drop(held);
    let _ = lab.stop(pid, "TERM", Duration::from_secs(10));
}
