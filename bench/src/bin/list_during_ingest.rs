//! Listing during ingest: ternd holds N routes (set A) and receives N more (set B, disjoint) over
//! eBGP; the figure is the ingest time of set B, from its first UPDATE until a monitor peer of
//! ternd holds all of it, (a) with nothing else going on and (b) while a client runs ListRoutes
//! over the whole table in a loop on the control API (streamed pages, of ternd's default size
//! unless given), counting the routes it receives during the ingest. The goal is (b) / (a) at
//! most 1.1: a listing must not hold up UPDATE processing. Runs of (a) and (b) alternate, three
//! each by default; medians in a markdown table, each run on stderr (with ternd's CPU time and
//! whether cargo or rustc was running, which makes the figure noisy).
//!
//! The routes fall outside ternd's only IP pool and no peer has filters, so none is written to
//! the kernel: the figure is about UPDATE processing against the API, not about netlink.
//!
//! Lab, rebuilt for every run: injector A, injector B (both AS 65001, so ternd's sender-side loop
//! check sends neither the other's routes) and two `tern-bench monitor`s (AS 65002), in
//! namespaces wired to ternd's (AS 65000). Monitor 1 waits for set A alone and exits, which ends
//! the preload; monitor 2 waits for A and B and gives the end instant. Set B starts once ternd
//! has advertised all of A to monitor 2 and the machine has settled.
//!
//! `cargo build --release -p tern-agent --bins && cargo build --release -p tern-bench`, then as
//! root `target/release/list_during_ingest [COUNT] [RUNS] [PAGE_SIZE]` (1000000, 3 and ternd's default, 1000). Namespaces `tern-lri-a`,
//! `tern-lri-b`, `tern-lri-mon` and `tern-lri-dut` are created here and removed after each run,
//! also when it fails; every address lives inside them, and only processes started here are
//! stopped, by their PID.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tern_bench::harness::{NamespaceGuard, api_peer, expect_line, ip, median, sibling};
use tern_proto::v1 as pb;
use tern_proto::v1::peer_service_client::PeerServiceClient;
use tern_proto::v1::route_service_client::RouteServiceClient;

const A_NS: &str = "tern-lri-a";
const B_NS: &str = "tern-lri-b";
const MON_NS: &str = "tern-lri-mon";
const DUT_NS: &str = "tern-lri-dut";
const NAMESPACES: [&str; 4] = [A_NS, B_NS, MON_NS, DUT_NS];

const INJECTOR_A: &str = "10.253.21.1";
const DUT_A_SIDE: &str = "10.253.21.2";
const INJECTOR_B: &str = "10.253.22.1";
const DUT_B_SIDE: &str = "10.253.22.2";
/// Monitor 1 (set A only) and monitor 2 (A and B) share a namespace and a link.
const MONITOR_1: &str = "10.253.23.1";
const MONITOR_2: &str = "10.253.23.3";
const DUT_MON_SIDE: &str = "10.253.23.2";

const DUT_AS: u32 = 65000;
const INJECTOR_AS: u32 = 65001;
const MONITOR_AS: u32 = 65002;

/// How long sessions may take to come up.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the preload, or the ingest, may take.
const ROUTES_TIMEOUT: Duration = Duration::from_secs(600);
/// The pause between the end of the preload and set B, so both modes start from a quiet ternd.
const SETTLE: Duration = Duration::from_secs(2);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// With or without the concurrent listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Set B alone.
    Quiet,
    /// Set B while a client lists the whole table in a loop.
    Listing,
}

/// The namespaces and processes of one run, removed when dropped.
#[derive(Debug)]
struct Run {
    namespaces: NamespaceGuard,
}

impl Run {
    /// Builds the namespaces and links: one link from ternd's namespace to each other.
    fn build() -> anyhow::Result<Run> {
        let run = Run {
            namespaces: NamespaceGuard::create(&NAMESPACES)?,
        };
        for (ns, side, address, dut_address, prefix) in [
            (A_NS, "to-a", INJECTOR_A, DUT_A_SIDE, "/30"),
            (B_NS, "to-b", INJECTOR_B, DUT_B_SIDE, "/30"),
            (MON_NS, "to-mon", MONITOR_1, DUT_MON_SIDE, "/29"),
        ] {
            ip(&[
                "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", side, "netns",
                DUT_NS,
            ])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}{prefix}"),
                "dev",
                "eth0",
            ])?;
            ip(&[
                "-n",
                DUT_NS,
                "addr",
                "add",
                &format!("{dut_address}{prefix}"),
                "dev",
                side,
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", DUT_NS, "link", "set", side, "up"])?;
        }
        ip(&[
            "-n",
            MON_NS,
            "addr",
            "add",
            &format!("{MONITOR_2}/29"),
            "dev",
            "eth0",
        ])?;
        for ns in NAMESPACES {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(run)
    }
}

/// ternd's configuration: the injectors wait for us (they connect), the monitors listen; sessions
/// leave from whichever address faces the peer; a pool that holds none of the injected routes.
fn ternd_config(dir: &Path) -> String {
    let peer = |address: &str, asn: u32, passive: bool| {
        format!(
            "  - peerIP: {address}
    asNumber: {asn}
    passive: {passive}
    sourceAddress: None
"
        )
    };
    format!(
        "nodeName: dut
nodeAddress: {DUT_A_SIDE}/30
asNumber: {DUT_AS}
nodeToNodeMeshEnabled: false
peers:
{}{}{}{}ipPools:
  - cidr: 10.244.0.0/16
stateFile: {}
apiSocket: {}
# Each injector sends a full table: above the default prefix limit.
maxPrefixes: {{limit: 4000000}}
log:
  level: warn
",
        peer(INJECTOR_A, INJECTOR_AS, true),
        peer(INJECTOR_B, INJECTOR_AS, true),
        peer(MONITOR_1, MONITOR_AS, false),
        peer(MONITOR_2, MONITOR_AS, false),
        dir.join("state.yaml").display(),
        dir.join("tern.sock").display(),
    )
}

fn injector_args(address: &str, first: u32, count: u32) -> Vec<String> {
    [
        "inject",
        "--connect",
        &format!("{}:179", dut_side(address)),
        "--router-id",
        address,
        "--asn",
        &INJECTOR_AS.to_string(),
        "--peer-asn",
        &DUT_AS.to_string(),
        "--first",
        &first.to_string(),
        "--count",
        &count.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn dut_side(injector: &str) -> &'static str {
    if injector == INJECTOR_A {
        DUT_A_SIDE
    } else {
        DUT_B_SIDE
    }
}

fn monitor_args(address: &str, count: u32) -> Vec<String> {
    [
        "monitor",
        "--listen",
        &format!("{address}:179"),
        "--router-id",
        address,
        "--asn",
        &MONITOR_AS.to_string(),
        "--peer-asn",
        &DUT_AS.to_string(),
        "--count",
        &count.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// CPU seconds (user and system) a process has used so far.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // After the command, which may hold spaces: utime and stime, fields 14 and 15 of proc(5).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (tick(11), tick(12)) {
        (Some(user), Some(system)) => (user + system) / ticks,
        _ => f64::NAN,
    }
}

/// Whether cargo or rustc runs on the machine now (another engineer building).
fn compiler_running() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| matches!(comm.trim(), "cargo" | "rustc"))
    })
}

/// What the lister saw: after each page, the wall-clock time and the routes listed so far.
#[derive(Debug, Default)]
struct Listing {
    marks: Vec<(u128, u64)>,
    /// Whole-table listings finished.
    passes: u32,
}

impl Listing {
    /// Routes received between `from` and `to` (wall-clock nanoseconds).
    fn between(&self, from: u128, to: u128) -> u64 {
        let at = |t: u128| {
            let i = self.marks.partition_point(|(time, _)| *time <= t);
            i.checked_sub(1)
                .and_then(|i| self.marks.get(i))
                .map_or(0, |(_, n)| *n)
        };
        at(to) - at(from)
    }

    /// Routes per second from the first page until `to`.
    fn rate_until(&self, to: u128) -> f64 {
        let Some((first, _)) = self.marks.first() else {
            return 0.0;
        };
        let seconds = to.saturating_sub(*first) as f64 / 1e9;
        self.between(*first, to) as f64 / seconds
    }
}

/// Lists the whole table over and over until `stop` is set, as ternctl would.
fn list_in_a_loop(
    socket: PathBuf,
    page_size: u32,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<Listing>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let channel = tern_agent::api::connect_unix(&socket).await?;
            let mut client = RouteServiceClient::new(channel);
            let mut listing = Listing::default();
            let mut listed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut pages = client
                    .list_routes(pb::ListRoutesRequest {
                        page_size,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let mut whole = true;
                while let Some(page) = pages.message().await? {
                    listed += page.routes.len() as u64;
                    listing.marks.push((now_ns(), listed));
                    if stop.load(Ordering::Relaxed) {
                        whole = false;
                        break;
                    }
                }
                listing.passes += u32::from(whole);
            }
            Ok(listing)
        })
    })
}

/// Waits until `done` holds for the peer at `address`.
async fn wait_for_peer(
    client: &mut PeerServiceClient<tonic::transport::Channel>,
    address: &str,
    what: &str,
    done: impl Fn(&pb::Peer) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SESSION_TIMEOUT;
    while !done(&api_peer(client, address).await?) {
        if Instant::now() > deadline {
            bail!("peer {address}: {what} did not happen in {SESSION_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// What one run measured.
#[derive(Debug)]
struct Measured {
    ingest: Duration,
    /// Routes the lister received during the ingest (0 without it).
    listed: u64,
    /// Routes per second the lister received before set B started, when ternd was quiet.
    quiet_rate: f64,
    /// Whole-table listings it finished during the run.
    passes: u32,
    /// ternd's CPU seconds during the ingest.
    ternd_cpu: f64,
    /// This process's CPU seconds during the ingest (the lister's decoding).
    client_cpu: f64,
    /// cargo or rustc was running at the start or the end of the ingest.
    compiler: bool,
}

fn one_run(
    mode: Mode,
    count: u32,
    page_size: u32,
    bin: &Path,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    ticks: f64,
) -> anyhow::Result<Measured> {
    let mut run = Run::build()?;
    let bench = bin.join("tern-bench");
    let (_, monitor_1) = run.namespaces.start(
        MON_NS,
        &bench,
        &monitor_args(MONITOR_1, count),
        &dir.join("monitor1.log"),
    )?;
    let (_, monitor_2) = run.namespaces.start(
        MON_NS,
        &bench,
        &monitor_args(MONITOR_2, 2 * count),
        &dir.join("monitor2.log"),
    )?;
    expect_line(&monitor_1, "monitor 1", "listening", SESSION_TIMEOUT)?;
    expect_line(&monitor_2, "monitor 2", "listening", SESSION_TIMEOUT)?;

    let config = dir.join("ternd.yaml");
    std::fs::write(&config, ternd_config(dir))?;
    let socket = dir.join("tern.sock");
    let _ = std::fs::remove_file(&socket);
    let (ternd, _) = run.namespaces.start(
        DUT_NS,
        &bin.join("ternd"),
        &["--config".to_owned(), config.display().to_string()],
        &dir.join("ternd.log"),
    )?;
    expect_line(&monitor_1, "monitor 1", "established", SESSION_TIMEOUT)?;
    expect_line(&monitor_2, "monitor 2", "established", SESSION_TIMEOUT)?;

    // Preload set A; monitor 1 holding all of it ends the preload, and it exits.
    let (_, injector_a) = run.namespaces.start(
        A_NS,
        &bench,
        &injector_args(INJECTOR_A, 0, count),
        &dir.join("injector-a.log"),
    )?;
    expect_line(&injector_a, "injector A", "start", SESSION_TIMEOUT)?;
    expect_line(&monitor_1, "monitor 1", "done", ROUTES_TIMEOUT)?;
    runtime.block_on(async {
        let channel = tern_agent::api::connect_unix(&socket).await?;
        let mut peers = PeerServiceClient::new(channel);
        let established = pb::SessionState::Established as i32;
        wait_for_peer(&mut peers, MONITOR_1, "session down", |p| {
            p.state != established
        })
        .await?;
        wait_for_peer(&mut peers, MONITOR_2, "all of set A advertised", |p| {
            p.counters
                .as_ref()
                .is_some_and(|c| c.prefixes_advertised >= u64::from(count))
        })
        .await?;
        anyhow::Ok(())
    })?;
    std::thread::sleep(SETTLE);

    // Set B, timed, with the lister running from before its first UPDATE until after its end.
    let stop = Arc::new(AtomicBool::new(false));
    let lister =
        (mode == Mode::Listing).then(|| list_in_a_loop(socket.clone(), page_size, stop.clone()));
    if lister.is_some() {
        // Let the first pages flow before set B starts.
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, injector_b) = run.namespaces.start(
        B_NS,
        &bench,
        &injector_args(INJECTOR_B, count, count),
        &dir.join("injector-b.log"),
    )?;
    expect_line(&injector_b, "injector B", "established", SESSION_TIMEOUT)?;
    let compiler_before = compiler_running();
    let (ternd_before, client_before) = (
        cpu_seconds(ternd, ticks),
        cpu_seconds(std::process::id(), ticks),
    );
    let started: u128 =
        expect_line(&injector_b, "injector B", "start", SESSION_TIMEOUT)?.parse()?;
    let ended: u128 = expect_line(&monitor_2, "monitor 2", "done", ROUTES_TIMEOUT)?.parse()?;
    let (ternd_after, client_after) = (
        cpu_seconds(ternd, ticks),
        cpu_seconds(std::process::id(), ticks),
    );
    let compiler = compiler_before || compiler_running();
    stop.store(true, Ordering::Relaxed);
    let listing = match lister {
        Some(lister) => lister
            .join()
            .map_err(|_| anyhow::anyhow!("the lister panicked"))??,
        None => Listing::default(),
    };
    drop(run);
    Ok(Measured {
        ingest: Duration::from_nanos(u64::try_from(ended.saturating_sub(started))?),
        listed: listing.between(started, ended),
        quiet_rate: listing.rate_until(started),
        passes: listing.passes,
        ternd_cpu: ternd_after - ternd_before,
        client_cpu: client_after - client_before,
        compiler,
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u32 = args.next().map_or(Ok(1_000_000), |c| c.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    // 0 leaves the page size to ternd.
    let page_size: u32 = args.next().map_or(Ok(0), |p| p.parse())?;
    let bin: PathBuf = sibling("ternd")?
        .parent()
        .context("ternd has no folder")?
        .to_owned();
    sibling("tern-bench")?;
    let ticks: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0);
    let dir = std::env::temp_dir().join(format!("tern-lri-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut quiet = Vec::new();
    let mut listing = Vec::new();
    for run in 0..runs {
        for mode in [Mode::Quiet, Mode::Listing] {
            let measured = match one_run(mode, count, page_size, &bin, &dir, &runtime, ticks) {
                Ok(measured) => measured,
                Err(error) => {
                    eprintln!("run {} ({mode:?}) failed: {error:#}", run + 1);
                    eprintln!("logs are in {}", dir.display());
                    return Err(error);
                }
            };
            eprintln!(
                "run {} {mode:?}: ingest {:.2} s, listed {} routes ({:.0}/s; {:.0}/s before set B; {} whole passes), ternd CPU {:.2} s, client CPU {:.2} s{}",
                run + 1,
                measured.ingest.as_secs_f64(),
                measured.listed,
                measured.listed as f64 / measured.ingest.as_secs_f64(),
                measured.quiet_rate,
                measured.passes,
                measured.ternd_cpu,
                measured.client_cpu,
                if measured.compiler {
                    ", cargo/rustc running"
                } else {
                    ""
                },
            );
            match mode {
                Mode::Quiet => quiet.push(measured),
                Mode::Listing => listing.push(measured),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let seconds = |runs: &[Measured]| {
        median(
            &runs
                .iter()
                .map(|m| m.ingest.as_secs_f64())
                .collect::<Vec<_>>(),
        )
        .unwrap_or(f64::NAN)
    };
    let (a, b) = (seconds(&quiet), seconds(&listing));
    let listed = median(&listing.iter().map(|m| m.listed).collect::<Vec<_>>()).unwrap_or(0);
    let compiled = quiet.iter().chain(&listing).filter(|m| m.compiler).count();
    let page = match page_size {
        0 => "the default page size".to_owned(),
        n => format!("pages of {n}"),
    };
    println!("Ingest of {count} routes into a ternd holding {count}; listing with {page}:\n");
    println!("| mode | median ingest | runs | routes listed during the ingest | (b) / (a) |");
    println!("|---|---|---|---|---|");
    println!("| (a) nothing else | {a:.2} s | {} | - | |", quiet.len());
    println!(
        "| (b) ListRoutes in a loop | {b:.2} s | {} | {listed} (median) | {:.2} |",
        listing.len(),
        b / a
    );
    if compiled > 0 {
        println!(
            "\ncargo or rustc was running during {compiled} of {} runs: the figure may be noisy.",
            quiet.len() + listing.len()
        );
    }
    Ok(())
}
