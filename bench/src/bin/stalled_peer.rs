//! A peer that stops reading (issue 12): ternd holds N routes from an injector, then a peer
//! establishes, reads the first UPDATEs and stops reading, with a receive buffer of a few
//! kilobytes. The figures are the time from the peer's last read to ternd dropping the session
//! (ternd's write timeout, 60 s, unless the send queue's bound, 128 MiB, comes first), and ternd's
//! memory: its peak RSS (VmHWM, reset just before the peer connects) while it feeds the peer,
//! and its RSS before the peer and after the drop.
//!
//! The Linux send buffer ternd's kernel keeps for the socket takes the first few megabytes
//! (net.ipv4.tcp_wmem, 4 MiB at most by default): only what is left waits in ternd. For a small
//! N to stall at all (scripts/test), the third argument caps ternd's namespace's tcp_wmem.
//!
//! `cargo build --release -p tern-agent --bins && cargo build --release -p tern-bench`, then as
//! root `target/release/stalled_peer [COUNT] [RUNS] [WMEM_MAX]` (1000000, 1, the kernel's
//! default). Namespaces `tern-stall-inj`, `tern-stall-peer` and `tern-stall-dut` are created
//! here and removed after each run, also when it fails; every address lives inside them, and
//! only processes started here are stopped, by their PID.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tern_bench::harness::{NamespaceGuard, api_peer, expect_line, ip, median, sibling};
use tern_bgp::wire::{Capability, Context, Family, HEADER_LEN, Message, Open};
use tern_proto::v1 as pb;
use tern_proto::v1::peer_service_client::PeerServiceClient;

const INJ_NS: &str = "tern-stall-inj";
const PEER_NS: &str = "tern-stall-peer";
const DUT_NS: &str = "tern-stall-dut";
const NAMESPACES: [&str; 3] = [INJ_NS, PEER_NS, DUT_NS];

const INJECTOR: &str = "10.253.31.1";
const DUT_INJ_SIDE: &str = "10.253.31.2";
const PEER: &str = "10.253.32.1";
const DUT_PEER_SIDE: &str = "10.253.32.2";

const DUT_AS: u32 = 65000;
const INJECTOR_AS: u32 = 65001;
const PEER_AS: u32 = 65002;

/// How long sessions may take to come up, and the preload to arrive.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
const ROUTES_TIMEOUT: Duration = Duration::from_secs(600);
/// How long ternd may take to drop the peer: its write timeout and some.
const DROP_TIMEOUT: Duration = Duration::from_secs(180);
/// What the peer reads after the session is up before it stops reading.
const READ_BEFORE_STALL: usize = 4 << 10;
/// The peer's receive buffer.
const PEER_RCVBUF: usize = 4096;

/// The namespaces and processes of one run, removed when dropped.
#[derive(Debug)]
struct Run {
    namespaces: NamespaceGuard,
}

impl Run {
    /// Builds the namespaces and a link from ternd's to each other one.
    fn build(wmem_max: Option<u32>) -> anyhow::Result<Run> {
        let run = Run {
            namespaces: NamespaceGuard::create(&NAMESPACES)?,
        };
        for (ns, side, address, dut_address) in [
            (INJ_NS, "to-inj", INJECTOR, DUT_INJ_SIDE),
            (PEER_NS, "to-peer", PEER, DUT_PEER_SIDE),
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
                &format!("{address}/30"),
                "dev",
                "eth0",
            ])?;
            ip(&[
                "-n",
                DUT_NS,
                "addr",
                "add",
                &format!("{dut_address}/30"),
                "dev",
                side,
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", DUT_NS, "link", "set", side, "up"])?;
        }
        for ns in NAMESPACES {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        if let Some(max) = wmem_max {
            let value = format!("4096 {} {max}", max.min(16384));
            tern_e2e::netns::sysctls(DUT_NS, &[("net.ipv4.tcp_wmem", &value)])?;
        }
        Ok(run)
    }
}

/// ternd's configuration: the injector connects to ternd, ternd connects to the peer.
fn ternd_config(dir: &Path) -> String {
    format!(
        "nodeName: dut
nodeAddress: {DUT_INJ_SIDE}/30
asNumber: {DUT_AS}
nodeToNodeMeshEnabled: false
peers:
  - peerIP: {INJECTOR}
    asNumber: {INJECTOR_AS}
    passive: true
    sourceAddress: None
  - peerIP: {PEER}
    asNumber: {PEER_AS}
    sourceAddress: None
ipPools:
  - cidr: 10.244.0.0/16
stateFile: {}
apiSocket: {}
# The injector sends a full table: above the default prefix limit.
maxPrefixes: {{limit: 4000000}}
log:
  level: warn
",
        dir.join("state.yaml").display(),
        dir.join("tern.sock").display(),
    )
}

fn injector_args(count: u32) -> Vec<String> {
    [
        "inject",
        "--connect",
        &format!("{DUT_INJ_SIDE}:179"),
        "--router-id",
        INJECTOR,
        "--asn",
        &INJECTOR_AS.to_string(),
        "--peer-asn",
        &DUT_AS.to_string(),
        "--count",
        &count.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for {pid}"))
}

/// Reads one whole message, blocking.
fn read_message(stream: &mut TcpStream) -> anyhow::Result<Message> {
    let mut bytes = vec![0u8; HEADER_LEN];
    stream.read_exact(&mut bytes)?;
    let length = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    bytes.resize(length.max(HEADER_LEN), 0);
    stream.read_exact(&mut bytes[HEADER_LEN..])?;
    Ok(Message::decode(&bytes, &Context::default())?)
}

/// The stalled peer, on its listening socket: takes ternd's connection, establishes, reads
/// [`READ_BEFORE_STALL`] more octets and stops reading. Returns the connection (held, and
/// kept alive with KEEPALIVEs by the caller) and the instant of its last read.
fn stall(listener: &TcpListener) -> anyhow::Result<(TcpStream, Instant)> {
    let (mut stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(SESSION_TIMEOUT))?;
    let Message::Open(_) = read_message(&mut stream)? else {
        bail!("ternd did not start with an OPEN");
    };
    let open = Open::new(
        PEER_AS,
        90,
        PEER.parse()?,
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
    );
    let plain = Context::default();
    let mut bytes = Message::Open(open).to_bytes(&plain)?;
    bytes.extend(Message::Keepalive.to_bytes(&plain)?);
    stream.write_all(&bytes)?;
    let Message::Keepalive = read_message(&mut stream)? else {
        bail!("ternd did not answer with a KEEPALIVE");
    };
    let mut buffer = vec![0u8; 4096];
    let mut read = 0;
    while read < READ_BEFORE_STALL {
        match stream.read(&mut buffer)? {
            0 => bail!("ternd closed the session"),
            n => read += n,
        }
    }
    Ok((stream, Instant::now()))
}

/// What one run measured.
#[derive(Debug)]
struct Measured {
    /// From the peer's last read to the session leaving Established.
    to_drop: Duration,
    /// ternd's peak RSS while it fed the peer, kB.
    peak_kb: u64,
    /// ternd's RSS before the peer, and a few seconds after the drop, kB.
    before_kb: u64,
    after_kb: u64,
}

fn one_run(
    count: u32,
    wmem_max: Option<u32>,
    bin: &Path,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Measured> {
    let mut run = Run::build(wmem_max)?;
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
    let (_, injector) = run.namespaces.start(
        INJ_NS,
        &bin.join("tern-bench"),
        &injector_args(count),
        &dir.join("injector.log"),
    )?;
    expect_line(&injector, "the injector", "start", SESSION_TIMEOUT)?;
    let established = pb::SessionState::Established as i32;
    let mut client = runtime.block_on(async {
        let channel = tern_agent::api::connect_unix(&socket).await?;
        let mut client = PeerServiceClient::new(channel);
        let deadline = Instant::now() + ROUTES_TIMEOUT;
        loop {
            let accepted = api_peer(&mut client, INJECTOR)
                .await?
                .counters
                .map_or(0, |c| c.prefixes_accepted);
            if accepted >= u64::from(count) {
                return anyhow::Ok(client);
            }
            if Instant::now() > deadline {
                bail!("ternd holds {accepted} of {count} routes after {ROUTES_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let before_kb = status_kb(ternd, "VmRSS:")?;
    // Peak RSS from here on (proc(5): writing 5 to clear_refs resets VmHWM).
    std::fs::write(format!("/proc/{ternd}/clear_refs"), "5")?;

    // The peer listens only now, so ternd's connection comes with the whole table to send.
    let listener = tern_e2e::inside(PEER_NS, || -> anyhow::Result<TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_recv_buffer_size(PEER_RCVBUF)?;
        socket.bind(&SocketAddr::new(PEER.parse()?, 179).into())?;
        socket.listen(4)?;
        Ok(socket.into())
    })?;
    let (mut stream, last_read) = stall(&listener)?;
    let keepalive = Message::Keepalive.to_bytes(&Context::default())?;
    let mut peak_kb = 0;
    let mut kept_alive = Instant::now();
    let to_drop = runtime.block_on(async {
        loop {
            peak_kb = peak_kb.max(status_kb(ternd, "VmHWM:")?);
            let state = api_peer(&mut client, PEER).await?.state;
            if state != established {
                return anyhow::Ok(last_read.elapsed());
            }
            if last_read.elapsed() > DROP_TIMEOUT {
                bail!("ternd still feeds the stalled peer after {DROP_TIMEOUT:?}");
            }
            if kept_alive.elapsed() > Duration::from_secs(20) {
                // The peer still speaks, it only stopped listening.
                let _ = stream.write_all(&keepalive);
                kept_alive = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })?;
    peak_kb = peak_kb.max(status_kb(ternd, "VmHWM:")?);
    std::thread::sleep(Duration::from_secs(3));
    let after_kb = status_kb(ternd, "VmRSS:")?;
    drop(stream);
    drop(run);
    Ok(Measured {
        to_drop,
        peak_kb,
        before_kb,
        after_kb,
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u32 = args.next().map_or(Ok(1_000_000), |c| c.parse())?;
    let runs: usize = args.next().map_or(Ok(1), |r| r.parse())?;
    let wmem_max: Option<u32> = args.next().map(|w| w.parse()).transpose()?;
    let bin: PathBuf = sibling("ternd")?
        .parent()
        .context("ternd has no folder")?
        .to_owned();
    sibling("tern-bench")?;
    let dir = std::env::temp_dir().join(format!("tern-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut measured = Vec::new();
    for run in 0..runs {
        let m = match one_run(count, wmem_max, &bin, &dir, &runtime) {
            Ok(m) => m,
            Err(error) => {
                eprintln!("run {} failed: {error:#}", run + 1);
                eprintln!("logs are in {}", dir.display());
                return Err(error);
            }
        };
        let mib = |kb: u64| kb as f64 / 1024.0;
        eprintln!(
            "run {}: dropped {:.2} s after the last read; ternd RSS {:.0} MiB before, peak {:.0} MiB, {:.0} MiB after",
            run + 1,
            m.to_drop.as_secs_f64(),
            mib(m.before_kb),
            mib(m.peak_kb),
            mib(m.after_kb),
        );
        measured.push(m);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mid = |f: fn(&Measured) -> f64| {
        median(&measured.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let wmem = wmem_max.map_or("the kernel's default".to_owned(), |w| format!("{w} octets"));
    println!(
        "A peer that stops reading while ternd holds {count} routes to send it (tcp_wmem max: {wmem}), median of {runs}:\n"
    );
    println!("| last read to drop | ternd peak RSS | RSS before the peer | RSS after the drop |");
    println!("|---|---|---|---|");
    println!(
        "| {:.2} s | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
        mid(|m| m.to_drop.as_secs_f64()),
        mid(|m| m.peak_kb as f64 / 1024.0),
        mid(|m| m.before_kb as f64 / 1024.0),
        mid(|m| m.after_kb as f64 / 1024.0),
    );
    Ok(())
}
