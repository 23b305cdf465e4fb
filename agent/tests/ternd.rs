//! Two ternd nodes in network namespaces this test creates: they peer over the iBGP mesh,
//! announce their blocks, install each other's in the kernel tagged `proto bird`, and keep them
//! across a graceful restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn require_root() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        assert!(
            std::env::var("TERN_REQUIRE_ROOT").as_deref() != Ok("1"),
            "this test needs root (TERN_REQUIRE_ROOT=1 is set)"
        );
        eprintln!("skipping: needs root");
    }
    root
}

fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Namespaces and processes of the test, removed when dropped even if the test fails.
struct Lab {
    namespaces: Vec<String>,
    daemons: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    fn new(names: &[&str]) -> Lab {
        let dir = std::env::temp_dir().join(format!("tern-ternd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            namespaces: Vec::new(),
            daemons: Vec::new(),
            dir,
        };
        for name in names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            run(&["ip", "netns", "add", name]);
            lab.namespaces.push((*name).to_owned());
            run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn start(&mut self, ns: &str, config: &str) -> usize {
        let path = self.dir.join(format!("{ns}.yaml"));
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("{ns}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ternd"), "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons.push(child);
        self.daemons.len() - 1
    }

    fn signal(&mut self, index: usize, signal: &str) {
        let pid = self.daemons[index].id().to_string();
        run(&["kill", signal, &pid]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.daemons[index].try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ternd did not stop on {signal}");
    }

    fn log(&self, ns: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{ns}.log"))).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn routes(ns: &str) -> String {
    run(&["ip", "-n", ns, "route", "show", "proto", "bird"])
}

fn wait_for_route(lab: &Lab, ns: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if routes(ns).contains(wanted) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{ns} never got {wanted:?}; it has:\n{}\nlog:\n{}",
        routes(ns),
        lab.log(ns)
    );
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
}
