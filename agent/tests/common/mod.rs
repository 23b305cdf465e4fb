//! Helpers for the agent's tests: namespaces, daemons and kernel routes, all removed when a
//! test ends, even when it fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn require_root() -> bool {
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

pub fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Namespaces and processes of the test, removed when dropped even if the test fails.
pub struct Lab {
    /// The namespaces to delete.
    pub namespaces: Vec<String>,
    /// The processes to stop.
    pub daemons: Vec<Child>,
    /// A scratch folder for configs and logs.
    pub dir: PathBuf,
}

impl Lab {
    pub fn new(names: &[&str]) -> Lab {
        // One folder per lab: tests of one binary run in parallel in one process.
        static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tern-ternd-test-{}-{}",
            std::process::id(),
            LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
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

    pub fn start(&mut self, ns: &str, config: &str) -> usize {
        let path = self.write_config(ns, config);
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

    /// Writes `ns`'s ternd configuration (`config` plus a state file and API socket inside the
    /// test's folder, never on the host) and returns its path.
    pub fn write_config(&self, ns: &str, config: &str) -> PathBuf {
        let path = self.dir.join(format!("{ns}.yaml"));
        let config = format!(
            "{config}\nstateFile: {}\napiSocket: {}\n",
            self.dir.join(format!("{ns}.state.yaml")).display(),
            self.dir.join(format!("{ns}.sock")).display()
        );
        std::fs::write(&path, config).unwrap();
        path
    }

    pub fn signal(&mut self, index: usize, signal: &str) {
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

    /// Sends a signal to a daemon that keeps running (SIGHUP).
    pub fn signal_running(&self, index: usize, signal: &str) {
        let pid = self.daemons[index].id().to_string();
        run(&["kill", signal, &pid]);
    }

    pub fn log(&self, ns: &str) -> String {
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

pub fn routes(ns: &str) -> String {
    run(&["ip", "-n", ns, "route", "show", "proto", "bird"])
}

pub fn wait_for_route(lab: &Lab, ns: &str, wanted: &str) {
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

impl Lab {
    /// A veth pair straight between two namespaces (nothing appears in the host's namespace),
    /// with an address on each end, both up.
    pub fn link(&self, a: (&str, &str, &str), b: (&str, &str, &str)) {
        run(&[
            "ip", "-n", a.0, "link", "add", a.1, "type", "veth", "peer", "name", b.1, "netns", b.0,
        ]);
        for (ns, dev, address) in [a, b] {
            run(&["ip", "-n", ns, "addr", "add", address, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// Starts FRR's zebra and bgpd in `ns` with `bgpd_conf`, as user frr, with a runtime folder
    /// of their own so several FRRs can run at once.
    pub fn start_frr(&mut self, ns: &str, bgpd_conf: &str) -> PathBuf {
        let dir = self.dir.join(format!("frr-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("zebra.conf"), "hostname zebra\n").unwrap();
        std::fs::write(dir.join("bgpd.conf"), bgpd_conf).unwrap();
        run(&["chown", "-R", "frr:frr", dir.to_str().unwrap()]);
        for daemon in ["zebra", "bgpd"] {
            let d = dir.to_str().unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", ns, &format!("/usr/lib/frr/{daemon}")])
                .args([
                    "-f",
                    &format!("{d}/{daemon}.conf"),
                    "-i",
                    &format!("{d}/{daemon}.pid"),
                ])
                .args([
                    "-z",
                    &format!("{d}/zserv.api"),
                    "--vty_socket",
                    d,
                    "-P",
                    "0",
                ])
                .args(["--log", &format!("file:{d}/{daemon}.log")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            self.daemons.push(child);
            if daemon == "zebra" {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !dir.join("zserv.api").exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        dir
    }

    /// Enables forwarding in a namespace.
    pub fn forwarding(&self, ns: &str) {
        run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
    }

    /// A pod namespace behind `node`, Calico style: a /32 on eth0, default route via
    /// 169.254.1.1 onlink, and on the node a veth with proxy ARP and a host route.
    pub fn pod(&mut self, node: &str, pod: &str, address: &str, veth: &str) {
        let _ = Command::new("ip").args(["netns", "del", pod]).status();
        run(&["ip", "netns", "add", pod]);
        self.namespaces.push(pod.to_owned());
        run(&[
            "ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
            pod,
        ]);
        run(&[
            "ip",
            "-n",
            pod,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", pod, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", pod, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            pod,
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        run(&[
            "ip",
            "-n",
            pod,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", node, "link", "set", veth, "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{veth}.proxy_arp=1"),
        ]);
        run(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            &format!("{address}/32"),
            "dev",
            veth,
            "scope",
            "link",
        ]);
    }
}

/// Asks an FRR started with [`Lab::start_frr`] something through vtysh.
pub fn vtysh(dir: &std::path::Path, command: &str) -> String {
    let output = Command::new("vtysh")
        .args(["--vty_socket", dir.to_str().unwrap(), "-c", command])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` every 100 ms until it holds or `seconds` pass.
pub fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => panic!("{what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

impl Lab {
    /// A Linux bridge in a namespace of its own: one L2 segment for several nodes.
    pub fn bridge(&mut self, ns: &str) {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
        run(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_owned());
        run(&["ip", "-n", ns, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", ns, "link", "set", "br0", "up"]);
    }

    /// Plugs `node`'s interface `dev` (with `address`) into the bridge in `switch`.
    pub fn plug(&self, node: &str, dev: &str, address: &str, switch: &str, port: &str) {
        run(&[
            "ip", "-n", node, "link", "add", dev, "type", "veth", "peer", "name", port, "netns",
            switch,
        ]);
        run(&["ip", "-n", node, "addr", "add", address, "dev", dev]);
        run(&["ip", "-n", node, "link", "set", dev, "up"]);
        run(&["ip", "-n", switch, "link", "set", port, "master", "br0"]);
        run(&["ip", "-n", switch, "link", "set", port, "up"]);
    }
}

/// Starts `ping` from `ns` in the background: every `interval` seconds for `seconds`.
pub fn ping_in_background(ns: &str, target: &str, interval: &str, seconds: u32) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-q",
            "-i",
            interval,
            "-w",
            &seconds.to_string(),
            target,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for a background ping and returns (sent, received).
pub fn ping_result(child: Child) -> (u64, u64) {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    )
}

impl Lab {
    /// Starts BIRD 2 in `ns` with `conf`; returns its control socket.
    pub fn start_bird(&mut self, ns: &str, conf: &str) -> PathBuf {
        let dir = self.dir.join(format!("bird-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("bird.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let socket = dir.join("bird.ctl");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf_path)
            .arg("-s")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("bird.log")).unwrap())
            .spawn()
            .unwrap();
        self.daemons.push(child);
        socket
    }

    /// Starts GoBGP in `ns` with a TOML `conf`; its API listens inside the namespace only.
    pub fn start_gobgp(&mut self, ns: &str, conf: &str) {
        let dir = self.dir.join(format!("gobgp-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("gobgpd.toml");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "gobgpd",
                "-p",
                "--api-hosts",
                "127.0.0.1:50051",
                "-f",
            ])
            .arg(&conf_path)
            .stdout(std::fs::File::create(dir.join("gobgpd.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.daemons.push(child);
    }
}

/// Asks BIRD something through birdc.
pub fn birdc(socket: &std::path::Path, command: &str) -> String {
    let output = Command::new("birdc")
        .arg("-s")
        .arg(socket)
        .args(command.split_whitespace())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the gobgp client inside `ns`.
pub fn gobgp(ns: &str, args: &str) -> String {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
            "50051",
        ])
        .args(args.split_whitespace())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Runs `f` on a thread inside `ns` with a tokio runtime of its own, so sockets it opens (the
/// in-process speaker's) live in that namespace.
pub fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

impl Lab {
    /// A veth pair straight between two namespaces, up, without addresses.
    pub fn veth(&self, a: &str, a_dev: &str, b: &str, b_dev: &str) {
        run(&[
            "ip", "-n", a, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b,
        ]);
        run(&["ip", "-n", a, "link", "set", a_dev, "up"]);
        run(&["ip", "-n", b, "link", "set", b_dev, "up"]);
    }
}

/// Kills FRR's bgpd started by [`Lab::start_frr`] in `dir` with SIGKILL (a crash: no NOTIFICATION).
pub fn kill_bgpd(dir: &std::path::Path) {
    let pid = std::fs::read_to_string(dir.join("bgpd.pid")).unwrap();
    run(&["kill", "-KILL", pid.trim()]);
}

/// Starts bgpd again in `ns` from `dir` with a new configuration; it is not tracked by a [`Lab`],
/// so it is ended by PID with [`kill_bgpd`].
pub fn restart_bgpd(ns: &str, dir: &std::path::Path, conf: &str) {
    std::fs::write(dir.join("bgpd.conf"), conf).unwrap();
    let d = dir.to_str().unwrap();
    run(&["chown", "-R", "frr:frr", d]);
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "/usr/lib/frr/bgpd",
        "-d",
        "-f",
        &format!("{d}/bgpd.conf"),
        "-i",
        &format!("{d}/bgpd.pid"),
        "-z",
        &format!("{d}/zserv.api"),
        "--vty_socket",
        d,
        "-P",
        "0",
        "--log",
        &format!("file:{d}/bgpd.log"),
    ]);
}
