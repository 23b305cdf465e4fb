//! Encapsulation throughput: a bulk TCP transfer between pods on two nodes of the `mesh3` lab
//! (ternd on every node), over a plain routed path, over IP-in-IP (the userspace encapsulator
//! where the kernel has no ipip module, else the kernel's tunl0) and over VXLAN, switched at
//! runtime by rewriting the nodes' configuration. Runs of the three modes alternate; medians.
//!
//! `cargo build --release -p tern-agent --bins && cargo build --release -p tern-bench --bin
//! encap_throughput`, then as root `target/release/encap_throughput [SECONDS] [RUNS]` (defaults
//! 5 and 3). It uses the
//! ternd next to it (target/release/ternd). Everything happens in the lab's `tern-mesh3-*`
//! namespaces, which are removed at the end.
//!
//! The transfer is this program itself, run in the pods' namespaces: `serve PORT` reads and
//! discards until the peer closes; `send ADDRESS PORT SECONDS` writes 128 KiB buffers for that
//! long and prints the octets written.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_bench::harness::{median, sibling};
use tern_e2e::daemon::DaemonOptions;
use tern_e2e::lab::Lab;

const PORT: u16 = 5201;
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const SERVER_POD: &str = "10.244.2.2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Routed,
    Ipip,
    Vxlan,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Routed => "routed (no encapsulation)",
            Mode::Ipip => "IP-in-IP",
            Mode::Vxlan => "VXLAN",
        }
    }

    fn device(self) -> &'static str {
        match self {
            Mode::Routed => "eth1",
            Mode::Ipip => "tunl0",
            Mode::Vxlan => "vxlan.tern",
        }
    }
}

fn serve() {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("listen");
    let (mut stream, _) = listener.accept().expect("accept");
    let mut buffer = vec![0u8; 1 << 17];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
    }
}

fn send(address: IpAddr, seconds: u64) {
    let target = SocketAddr::new(address, PORT);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(stream) => break stream,
            Err(error) if Instant::now() > deadline => panic!("connect {target}: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let buffer = vec![0x5au8; 1 << 17];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        stream.write_all(&buffer).expect("write");
        sent += buffer.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("{sent} {elapsed}");
}

fn set_mode(lab: &Lab, mode: Mode) {
    let (ipip, vxlan) = match mode {
        Mode::Routed => ("Never", "Never"),
        Mode::Ipip => ("Always", "Never"),
        Mode::Vxlan => ("Never", "Always"),
    };
    for node in NODES {
        let path = lab.node_dir(node).join("ternd.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("ipipMode:") || trimmed.starts_with("vxlanMode:") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if trimmed.starts_with("blockSize:") {
                out.push_str(&format!("    ipipMode: {ipip}\n    vxlanMode: {vxlan}\n"));
            }
        }
        std::fs::write(&path, out).unwrap();
    }
    // Wait until n1 routes n2's block through the mode's device.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let routes = lab
            .exec(
                "n1",
                &["ip", "route", "show", "10.244.2.0/26", "proto", "bird"],
            )
            .unwrap_or_default();
        if routes.contains(&format!("dev {} ", mode.device())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: n1 never routed through {}: {routes}",
            mode.name(),
            mode.device()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One transfer from n1's pod to n2's pod; Gbit/s.
fn transfer(lab: &Lab, seconds: u64) -> f64 {
    let me = std::env::current_exe().unwrap();
    let server_ns = lab.netns("n2/pod-a").unwrap();
    let client_ns = lab.netns("n1/pod-a").unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &server_ns])
        .arg(&me)
        .arg("serve")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let output = Command::new("ip")
        .args(["netns", "exec", &client_ns])
        .arg(&me)
        .args(["send", SERVER_POD, &seconds.to_string()])
        .output()
        .unwrap();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let octets: f64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
    let elapsed: f64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(1.0);
    octets * 8.0 / elapsed / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => return serve(),
        Some("send") => {
            return send(
                args[2].parse().expect("address"),
                args[3].parse().expect("seconds"),
            );
        }
        _ => {}
    }
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let release = sibling("ternd").expect("ternd");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/mesh3.clab.yml");
    let options = DaemonOptions {
        start_ternd: true,
        ternd: release,
    };
    let lab = Lab::up_with(&file, &options).expect("lab");
    let modes = [Mode::Routed, Mode::Ipip, Mode::Vxlan];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for run in 0..runs {
        for (i, mode) in modes.iter().enumerate() {
            set_mode(&lab, *mode);
            let gbps = transfer(&lab, seconds);
            eprintln!("run {}: {}: {gbps:.2} Gbit/s", run + 1, mode.name());
            results[i].push(gbps);
        }
    }
    let detail = lab
        .exec("n1", &["ip", "-d", "link", "show", "tunl0"])
        .unwrap_or_default();
    let ipip_kind = if detail.contains("ipip ") {
        "kernel tunl0"
    } else {
        "userspace encapsulator (TUN + raw socket)"
    };
    let routed = median(&results[0]).unwrap_or(f64::NAN);
    println!(
        "Bulk TCP, one flow, pod on n1 to pod on n2 (mesh3), {seconds} s per run, {runs} runs, medians; IP-in-IP through the {ipip_kind}.\n"
    );
    println!("| path | median (Gbit/s) | vs routed | runs (Gbit/s) |");
    println!("|---|---:|---:|---|");
    for (i, mode) in modes.iter().enumerate() {
        let runs: Vec<String> = results[i].iter().map(|g| format!("{g:.2}")).collect();
        let value = median(&results[i]).unwrap_or(f64::NAN);
        println!(
            "| {} | {value:.2} | {:.2}x | {} |",
            mode.name(),
            value / routed,
            runs.join(", ")
        );
    }
    lab.down().expect("down");
}
