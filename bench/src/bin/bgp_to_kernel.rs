//! BGP to kernel: N /24s announced over eBGP to the device, which installs them in its kernel;
//! the figure is the time from the first UPDATE sent until the kernel holds all N (counted by a
//! netlink listener in the device's namespace). Devices: ternd, and BIRD 2 with its kernel
//! protocol, in the same run. Three runs each by default, medians.
//!
//! `cargo build --release -p tern-agent --bins && cargo build --release -p tern-bench`, then as
//! root `target/release/bgp_to_kernel [COUNTS] [RUNS] [DEVICES]`.
//! Namespaces `tern-b2k-inj` and `tern-b2k-dut` are created here and removed after each run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_bench::harness::{NamespaceGuard, listen_routes, median, sibling};

const INJ: &str = "tern-b2k-inj";
const DUT: &str = "tern-b2k-dut";
const FIRST: u32 = 0x6400_0000; // 100.0.0.0, where the injector starts

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ip {args:?}");
}

/// Counts distinct injected /24s appearing in the kernel of `DUT` with protocol 12 and sends the
/// wall-clock time when all `count` are there.
fn count_routes(count: u32, done: mpsc::Sender<u128>) {
    let mut seen = vec![false; count as usize];
    let mut held = 0u32;
    listen_routes(DUT, move |event| {
        if !(event.added && event.protocol == 12 && event.prefix_len == 24) {
            return true;
        }
        let index = u32::from(event.destination).wrapping_sub(FIRST) >> 8;
        if let Some(slot) = seen.get_mut(index as usize).filter(|s| !**s) {
            *slot = true;
            held += 1;
            if held == count {
                let _ = done.send(now_ns());
                return false;
            }
        }
        true
    });
}

fn start(ns: &str, program: &Path, args: &[&str], stdout: Stdio) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdout(stdout)
        .stderr(if std::env::var_os("B2K_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap()
}

fn one_run(device: &str, count: u32, ternd: &Path, bench: &Path, dir: &Path) -> Duration {
    let mut run = NamespaceGuard::create(&[INJ, DUT]).unwrap();
    ip(&[
        "-n", INJ, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", DUT,
    ]);
    ip(&["-n", INJ, "addr", "add", "10.253.1.1/30", "dev", "eth0"]);
    ip(&["-n", DUT, "addr", "add", "10.253.1.2/30", "dev", "eth0"]);
    for ns in [INJ, DUT] {
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let (done_tx, done_rx) = mpsc::channel();
    count_routes(count, done_tx);
    std::thread::sleep(Duration::from_millis(200));
    match device {
        "ternd" => {
            let config = dir.join("ternd.yaml");
            std::fs::write(
                &config,
                format!(
                    "nodeName: dut\nnodeAddress: 10.253.1.2/30\nasNumber: 65000\nnodeToNodeMeshEnabled: false\npeers:\n  - peerIP: 10.253.1.1\n    asNumber: 65001\n    filters: ['0.0.0.0/0{{0,32}}']\n    maxPrefixes: {{limit: 4000000}}\nstateFile: {}\napiSocket: {}\nlog:\n  level: warn\n",
                    dir.join("state.yaml").display(),
                    dir.join("tern.sock").display()
                ),
            )
            .unwrap();
            let config = config.to_str().unwrap().to_owned();
            run.adopt(start(DUT, ternd, &["--config", &config], Stdio::null()));
        }
        _ => {
            let config = dir.join("bird.conf");
            std::fs::write(
                &config,
                "router id 10.253.1.2;\nprotocol device {}\nprotocol kernel { ipv4 { import none; export all; }; }\nprotocol bgp inj { local 10.253.1.2 as 65000; neighbor 10.253.1.1 as 65001; ipv4 { import all; export none; }; }\n",
            )
            .unwrap();
            let socket = dir.join("bird.ctl");
            let (c, s) = (
                config.to_str().unwrap().to_owned(),
                socket.to_str().unwrap().to_owned(),
            );
            run.adopt(start(
                DUT,
                Path::new("/usr/sbin/bird"),
                &["-f", "-c", &c, "-s", &s],
                Stdio::null(),
            ));
        }
    }
    let mut injector = start(
        INJ,
        bench,
        &[
            "inject",
            "--connect",
            "10.253.1.2:179",
            "--router-id",
            "10.253.1.1",
            "--asn",
            "65001",
            "--peer-asn",
            "65000",
            "--count",
            &count.to_string(),
        ],
        Stdio::piped(),
    );
    let stdout = injector.stdout.take().unwrap();
    run.adopt(injector);
    let mut started = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(ns) = line.strip_prefix("start ") {
            started = Some(ns.trim().parse::<u128>().unwrap());
            break;
        }
    }
    let started = started.expect("the injector never started sending");
    let ended = done_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the kernel never held every route");
    if std::env::var_os("B2K_VERBOSE").is_some() {
        eprintln!(
            "{device}: first UPDATE {:.4}, all in the kernel {:.4}",
            started as f64 / 1e9,
            ended as f64 / 1e9
        );
    }
    Duration::from_nanos((ended - started) as u64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let counts: Vec<u32> = args
        .next()
        .unwrap_or_else(|| "100000,1000000".into())
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let runs: usize = args.next().map_or(3, |r| r.parse().unwrap());
    // An optional third argument names the devices to run (default: both).
    let devices = args.next().unwrap_or_else(|| "bird,ternd".into());
    let ternd = sibling("ternd").unwrap();
    let bench = sibling("tern-bench").unwrap();
    let dir = std::env::temp_dir().join(format!("tern-b2k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("| routes | BIRD (kernel protocol) | ternd | BIRD / ternd |");
    println!("|---|---|---|---|");
    for count in counts {
        let (mut bird, mut tern) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            if devices.contains("bird") {
                bird.push(one_run("bird", count, &ternd, &bench, &dir));
            }
            if devices.contains("ternd") {
                tern.push(one_run("ternd", count, &ternd, &bench, &dir));
            }
        }
        let seconds = |v: &[Duration]| median(v).map_or(f64::NAN, |d| d.as_secs_f64());
        let (b, t) = (seconds(&bird), seconds(&tern));
        println!("| {count} | {b:.2} s | {t:.2} s | {:.2}x |", b / t);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
