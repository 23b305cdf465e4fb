//! `ternctl`: the command-line client of ternd's control API.
//!
//! It talks to ternd over its unix socket (`--socket`, default `/var/run/tern/tern.sock`) or, with
//! `--address https://HOST:PORT --cert --key --ca`, over TCP with mutual TLS. Every command
//! prints a table by default, or JSON or YAML with `-o`. `ternctl node status` prints what
//! `calicoctl node status` prints, so runbooks keep working.
//!
//! Exit codes: 0 on success, 1 when ternd cannot be reached or refuses the request, 2 for a
//! command line clap refuses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::block_service_client::BlockServiceClient;
use tern_proto::v1::peer_service_client::PeerServiceClient;
use tern_proto::v1::route_service_client::RouteServiceClient;
use tern_proto::v1::status_service_client::StatusServiceClient;
use tern_proto::v1::watch_service_client::WatchServiceClient;
use tonic::transport::{Channel, Endpoint};

const DEFAULT_SOCKET: &str = "/var/run/tern/tern.sock";

#[derive(Debug, Parser)]
#[command(
    name = "ternctl",
    version,
    about = "Inspect and control ternd, the tern node agent"
)]
struct Cli {
    /// ternd's API socket.
    #[arg(long, global = true, env = "TERN_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Reach ternd over TCP with mutual TLS instead of the socket (`https://HOST:PORT`).
    #[arg(long, global = true, requires_all = ["cert", "key", "ca"])]
    address: Option<String>,
    /// Our client certificate (PEM), for --address.
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// Our client key (PEM), for --address.
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// The CA that signed ternd's certificate (PEM), for --address.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// The name to check in ternd's certificate; the host of --address by default.
    #[arg(long, global = true)]
    server_name: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// This node (`ternctl node status`, as calicoctl's).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// ternd's version, identity, uptime, readiness and data path.
    Status,
    /// BGP peers: list them (the default), or add, update, remove or reset one.
    Peers {
        #[command(subcommand)]
        command: Option<PeersCommand>,
    },
    /// Routes of the Loc-RIB with their ECMP set and kernel state.
    Routes {
        /// Only routes inside this prefix; an address without a length gives the routes that
        /// contain it.
        prefix: Option<String>,
        /// Only routes with a path from this peer.
        #[arg(long)]
        peer: Option<String>,
        /// Only routes of this family.
        #[arg(long, value_enum)]
        family: Option<Family>,
        /// At most this many routes.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// This node's address blocks.
    Blocks {
        #[command(subcommand)]
        command: BlocksCommand,
    },
    /// Streams peer state and route changes until interrupted.
    Watch {
        /// Start with the whole table and every peer's state.
        #[arg(long)]
        initial: bool,
        /// Leave out route changes.
        #[arg(long)]
        no_routes: bool,
        /// Leave out peer state changes.
        #[arg(long)]
        no_peers: bool,
    },
    /// Prints a shell completion script (`ternctl completions bash > /etc/bash_completion.d/ternctl`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Whether ternd runs, and its BGP sessions, in calicoctl's layout.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Family {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Subcommand)]
enum PeersCommand {
    /// Lists every peer.
    List,
    /// Adds a peer (it lives until removed or ternd stops).
    Add(PeerArgs),
    /// Changes a peer: the options given replace its settings, the others stay.
    Update(PeerArgs),
    /// Removes a peer and its routes.
    Remove {
        /// The peer's address.
        address: String,
    },
    /// Resets a session: soft (ROUTE-REFRESH both ways) unless --hard.
    Reset {
        /// The peer's address.
        address: String,
        /// Close the session instead.
        #[arg(long)]
        hard: bool,
    },
}

#[derive(Debug, Args)]
struct PeerArgs {
    /// The peer's address.
    address: String,
    /// The peer's AS (required to add).
    #[arg(long = "as")]
    asn: Option<u32>,
    /// The TCP port to connect to.
    #[arg(long)]
    port: Option<u32>,
    /// Our address for the session.
    #[arg(long)]
    local_address: Option<String>,
    /// Never connect; wait for the peer.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    passive: Option<bool>,
    /// The hold time we propose, in seconds.
    #[arg(long)]
    hold_time: Option<u32>,
    /// eBGP multihop TTL.
    #[arg(long)]
    multihop: Option<u32>,
    /// GTSM (RFC 5082).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    ttl_security: Option<bool>,
    /// A file holding the TCP MD5 password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The peer is a route reflection client of ours.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    route_reflector_client: Option<bool>,
    /// Set the next hop to our address toward internal peers too.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    next_hop_self: Option<bool>,
    /// Keep the original next hop toward external peers.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    keep_original_next_hop: Option<bool>,
    /// Accept only routes inside these prefixes (repeat, or separate with commas).
    #[arg(long = "import", value_delimiter = ',')]
    import_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Subcommand)]
enum BlocksCommand {
    /// Lists every block with where it comes from.
    List,
    /// Adds a block (kept across restarts of ternd).
    Add {
        /// The prefix, e.g. 10.244.1.0/26.
        prefix: String,
    },
    /// Removes a block added through the API.
    Remove {
        /// The prefix.
        prefix: String,
    },
    /// Makes the API's blocks exactly these.
    Set {
        /// The prefixes (none: remove every API block).
        prefixes: Vec<String>,
    },
}

/// Why a command failed; printed as one line.
#[derive(Debug)]
struct Failure(String);

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        let code = format!("{:?}", status.code());
        Failure(format!("{} ({})", status.message(), words(&code)))
    }
}

/// `FailedPrecondition` as `failed precondition`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "ternctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ternctl: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(cli: &Cli) -> Result<Channel, Failure> {
    if let Some(address) = &cli.address {
        return connect_tls(cli, address).await;
    }
    let path = cli.socket.clone();
    // Try the socket first, to say plainly why it cannot be reached.
    if let Err(error) = tokio::net::UnixStream::connect(&path).await {
        return Err(Failure(match error.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot connect to ternd at {}: {error} (the socket is for root only)",
                path.display()
            ),
            _ => format!(
                "ternd is not running: cannot connect to {}: {error}",
                path.display()
            ),
        }));
    }
    tern_agent::api::connect_unix(&path).await.map_err(|error| {
        Failure(format!(
            "ternd is not running: cannot connect to {}: {error}",
            cli.socket.display()
        ))
    })
}

async fn connect_tls(cli: &Cli, address: &str) -> Result<Channel, Failure> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |path: &Option<PathBuf>| {
        let path = path.as_ref().expect("clap requires it");
        std::fs::read(path).map_err(|e| Failure(format!("ternctl: {}: {e}", path.display())))
    };
    let endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|e| Failure(format!("ternctl: --address {address:?}: {e}")))?;
    let host = endpoint.uri().host().unwrap_or_default().to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cli.ca)?))
        .identity(Identity::from_pem(read(&cli.cert)?, read(&cli.key)?))
        .domain_name(cli.server_name.clone().unwrap_or(host));
    endpoint
        .tls_config(tls)
        .map_err(|e| Failure(format!("ternctl: TLS: {e}")))?
        .connect()
        .await
        .map_err(|error| {
            let mut message = format!("cannot connect to ternd at {address}: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Failure(message)
        })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let channel = connect(&cli).await?;
    let output = cli.output;
    match cli.command {
        Command::Completions { .. } => Ok(()),
        Command::Node {
            command: NodeCommand::Status,
        } => node_status(channel, output).await,
        Command::Status => status(channel, output).await,
        Command::Peers { command } => peers(channel, output, command).await,
        Command::Routes {
            prefix,
            peer,
            family,
            limit,
        } => {
            let request = pb::ListRoutesRequest {
                prefix: prefix.unwrap_or_default(),
                family: match family {
                    None => pb::AddressFamily::Unspecified,
                    Some(Family::Ipv4) => pb::AddressFamily::Ipv4Unicast,
                    Some(Family::Ipv6) => pb::AddressFamily::Ipv6Unicast,
                } as i32,
                peer: peer.unwrap_or_default(),
                limit: limit.unwrap_or_default(),
                ..Default::default()
            };
            routes(channel, output, request).await
        }
        Command::Blocks { command } => blocks(channel, output, command).await,
        Command::Watch {
            initial,
            no_routes,
            no_peers,
        } => {
            let request = pb::WatchRequest {
                initial_state: initial,
                no_peers,
                no_routes,
            };
            watch(channel, output, request).await
        }
    }
}

/// Prints `value` as JSON or YAML, or `table` for the table format.
fn print(output: Output, value: &impl Serialize, table: impl FnOnce() -> String) {
    match output {
        Output::Table => print!("{}", table()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => print!("{}", serde_yaml::to_string(value).unwrap_or_default()),
    }
}

// ---- Views: what ternctl prints, independent of the protobuf types. ----

#[derive(Debug, Serialize)]
struct PeerView {
    address: String,
    port: u32,
    asn: u32,
    #[serde(rename = "type")]
    peer_type: &'static str,
    state: &'static str,
    since: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    local_address: String,
    passive: bool,
    hold_time: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    import_prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negotiated: Option<NegotiatedView>,
    prefixes_received: u64,
    prefixes_accepted: u64,
    prefixes_advertised: u64,
    updates_received: u64,
    updates_sent: u64,
    /// For the table only.
    #[serde(skip)]
    since_time: Option<SystemTime>,
}

#[derive(Debug, Serialize)]
struct NegotiatedView {
    hold_time: u32,
    keepalive: u32,
    families: Vec<&'static str>,
    peer_router_id: String,
    peer_asn: u32,
    four_octet_as: bool,
    extended_messages: bool,
    route_refresh: bool,
    enhanced_route_refresh: bool,
    graceful_restart: bool,
    graceful_restart_time: u32,
    add_path_receive: Vec<&'static str>,
    add_path_send: Vec<&'static str>,
    capabilities: Vec<String>,
}

fn family_name(value: i32) -> &'static str {
    match pb::AddressFamily::try_from(value) {
        Ok(pb::AddressFamily::Ipv4Unicast) => "ipv4-unicast",
        Ok(pb::AddressFamily::Ipv6Unicast) => "ipv6-unicast",
        _ => "unknown",
    }
}

fn state_name(value: i32) -> &'static str {
    match pb::SessionState::try_from(value) {
        Ok(pb::SessionState::Idle) => "Idle",
        Ok(pb::SessionState::Connect) => "Connect",
        Ok(pb::SessionState::Active) => "Active",
        Ok(pb::SessionState::OpenSent) => "OpenSent",
        Ok(pb::SessionState::OpenConfirm) => "OpenConfirm",
        Ok(pb::SessionState::Established) => "Established",
        _ => "Unknown",
    }
}

fn peer_type_name(value: i32) -> &'static str {
    match pb::PeerType::try_from(value) {
        Ok(pb::PeerType::NodeMesh) => "node-to-node mesh",
        Ok(pb::PeerType::Global) => "global",
        Ok(pb::PeerType::NodeSpecific) => "node specific",
        _ => "unknown",
    }
}

fn system_time(timestamp: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let t = timestamp?;
    let seconds = u64::try_from(t.seconds).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, t.nanos.max(0) as u32))
}

fn peer_view(peer: pb::Peer) -> PeerView {
    let config = peer.config.unwrap_or_default();
    let counters = peer.counters.unwrap_or_default();
    let since_time = system_time(peer.since.as_ref());
    PeerView {
        address: config.address,
        port: config.port,
        asn: config.asn,
        peer_type: peer_type_name(peer.r#type),
        state: state_name(peer.state),
        since: since_time.map(rfc3339).unwrap_or_default(),
        last_error: peer.last_error,
        local_address: config.local_address,
        passive: config.passive,
        hold_time: config.hold_time,
        import_prefixes: config.import_prefixes,
        negotiated: peer.negotiated.map(|n| NegotiatedView {
            hold_time: n.hold_time,
            keepalive: n.keepalive,
            families: n.families.iter().map(|f| family_name(*f)).collect(),
            peer_router_id: n.peer_router_id,
            peer_asn: n.peer_asn,
            four_octet_as: n.four_octet_as,
            extended_messages: n.extended_messages,
            route_refresh: n.route_refresh,
            enhanced_route_refresh: n.enhanced_route_refresh,
            graceful_restart: n.graceful_restart,
            graceful_restart_time: n.graceful_restart_time,
            add_path_receive: n.add_path_receive.iter().map(|f| family_name(*f)).collect(),
            add_path_send: n.add_path_send.iter().map(|f| family_name(*f)).collect(),
            capabilities: n.capabilities,
        }),
        prefixes_received: counters.prefixes_received,
        prefixes_accepted: counters.prefixes_accepted,
        prefixes_advertised: counters.prefixes_advertised,
        updates_received: counters.updates_received,
        updates_sent: counters.updates_sent,
        since_time,
    }
}

// ---- Time, without a calendar crate: UTC. ----

/// (year, month, day, hour, minute, second) in UTC.
fn civil(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rest / 3600) as u32,
        (rest % 3600 / 60) as u32,
        (rest % 60) as u32,
    )
}

fn rfc3339(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// BIRD's (and so calicoctl's) SINCE: the time of day when it is today, the date otherwise.
fn since(time: SystemTime, now: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(time);
    let (ny, nmo, nd, ..) = civil(now);
    if (y, mo, d) == (ny, nmo, nd) {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02}")
    }
}

fn uptime(duration: Duration) -> String {
    let s = duration.as_secs();
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m{s}s"),
        (0, h, m, _) => format!("{h}h{m}m"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

// ---- Tables in calicoctl's style. ----

/// A table with a border, headers centred and cells left-aligned, as calicoctl prints them.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = line.clone();
    for (header, width) in headers.iter().zip(&widths) {
        let pad = width - header.chars().count();
        let left = pad / 2;
        out.push_str(&format!(
            "| {}{}{} ",
            " ".repeat(left),
            header,
            " ".repeat(pad - left)
        ));
    }
    out.push_str("|\n");
    out.push_str(&line);
    for row in rows {
        for (cell, width) in row.iter().zip(&widths) {
            out.push_str(&format!(
                "| {cell}{} ",
                " ".repeat(width - cell.chars().count())
            ));
        }
        out.push_str("|\n");
    }
    out.push_str(&line);
    out
}

// ---- Commands. ----

#[derive(Debug, Serialize)]
struct NodeStatusView {
    running: bool,
    ipv4: Vec<NodeStatusPeer>,
    ipv6: Vec<NodeStatusPeer>,
}

#[derive(Debug, Serialize)]
struct NodeStatusPeer {
    peer_address: String,
    peer_type: &'static str,
    state: &'static str,
    since: String,
    info: String,
}

async fn node_status(channel: Channel, output: Output) -> Result<(), Failure> {
    let peers = PeerServiceClient::new(channel)
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner()
        .peers;
    let now = SystemTime::now();
    let mut view = NodeStatusView {
        running: true,
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    for peer in peers.into_iter().map(peer_view) {
        let established = peer.state == "Established";
        let row = NodeStatusPeer {
            state: if established { "up" } else { "start" },
            since: peer.since_time.map(|t| since(t, now)).unwrap_or_default(),
            info: if established || peer.last_error.is_empty() {
                peer.state.to_owned()
            } else {
                format!("{} {}", peer.state, peer.last_error)
            },
            peer_type: peer.peer_type,
            peer_address: peer.address,
        };
        if row.peer_address.contains(':') {
            view.ipv6.push(row);
        } else {
            view.ipv4.push(row);
        }
    }
    print(output, &view, || {
        let mut out = String::from("Tern process is running.\n");
        for (family, rows) in [("IPv4", &view.ipv4), ("IPv6", &view.ipv6)] {
            out.push_str(&format!("\n{family} BGP status\n"));
            if rows.is_empty() {
                out.push_str(&format!("No {family} peers found.\n"));
                continue;
            }
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.peer_address.clone(),
                        r.peer_type.to_owned(),
                        r.state.to_owned(),
                        r.since.clone(),
                        r.info.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
        out.push('\n');
        out
    });
    Ok(())
}

#[derive(Debug, Serialize)]
struct StatusView {
    version: String,
    node: String,
    router_id: String,
    asn: u32,
    started: String,
    uptime: String,
    ready: bool,
    data_path: &'static str,
    data_path_detail: String,
    peers: u32,
    peers_established: u32,
    blocks: u32,
    kernel_routes: u64,
}

async fn status(channel: Channel, output: Output) -> Result<(), Failure> {
    let s = StatusServiceClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    let uptime_value = s
        .uptime
        .map(|d| Duration::from_secs(d.seconds.max(0) as u64))
        .unwrap_or_default();
    let view = StatusView {
        version: s.version,
        node: s.node,
        router_id: s.router_id,
        asn: s.asn,
        started: system_time(s.started.as_ref())
            .map(rfc3339)
            .unwrap_or_default(),
        uptime: uptime(uptime_value),
        ready: s.ready,
        data_path: match pb::DataPath::try_from(s.data_path) {
            Ok(pb::DataPath::Routed) => "routed",
            Ok(pb::DataPath::Ipip) => "ipip",
            Ok(pb::DataPath::IpipUserspace) => "ipip-userspace",
            Ok(pb::DataPath::Vxlan) => "vxlan",
            _ => "unknown",
        },
        data_path_detail: s.data_path_detail,
        peers: s.peers,
        peers_established: s.peers_established,
        blocks: s.blocks,
        kernel_routes: s.kernel_routes,
    };
    print(output, &view, || {
        format!(
            "ternd {} on node {} (AS {}, router id {})\n\
             started:     {} (up {})\n\
             ready:       {}\n\
             data path:   {} ({})\n\
             peers:       {} established of {}\n\
             blocks:      {}\n\
             kernel:      {} learned routes\n",
            view.version,
            view.node,
            view.asn,
            view.router_id,
            view.started,
            view.uptime,
            if view.ready {
                "yes"
            } else {
                "no (waiting for End-of-RIB)"
            },
            view.data_path,
            view.data_path_detail,
            view.peers_established,
            view.peers,
            view.blocks,
            view.kernel_routes,
        )
    });
    Ok(())
}

fn apply(args: PeerArgs, mut config: pb::PeerConfig) -> Result<pb::PeerConfig, Failure> {
    config.address = args.address;
    if let Some(asn) = args.asn {
        config.asn = asn;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if let Some(local) = args.local_address {
        config.local_address = local;
    }
    if let Some(passive) = args.passive {
        config.passive = passive;
    }
    if let Some(hold_time) = args.hold_time {
        config.hold_time = hold_time;
    }
    if let Some(ttl) = args.multihop {
        config.multihop_ttl = ttl;
    }
    if let Some(on) = args.ttl_security {
        config.ttl_security = on;
    }
    if let Some(path) = args.password_file {
        let password = std::fs::read_to_string(&path)
            .map_err(|e| Failure(format!("ternctl: {}: {e}", path.display())))?;
        config.password = password.trim_end_matches(['\n', '\r']).to_owned();
    }
    if let Some(on) = args.route_reflector_client {
        config.route_reflector_client = on;
    }
    if let Some(on) = args.next_hop_self {
        config.next_hop_self = on;
    }
    if let Some(on) = args.keep_original_next_hop {
        config.keep_original_next_hop = on;
    }
    if let Some(prefixes) = args.import_prefixes {
        config.import_prefixes = prefixes;
    }
    Ok(config)
}

async fn peers(
    channel: Channel,
    output: Output,
    command: Option<PeersCommand>,
) -> Result<(), Failure> {
    let mut client = PeerServiceClient::new(channel);
    let done = |what: String| {
        print(output, &serde_json::json!({ "result": what }), || {
            format!("{what}\n")
        })
    };
    match command.unwrap_or(PeersCommand::List) {
        PeersCommand::List => {
            let peers: Vec<PeerView> = client
                .list_peers(pb::ListPeersRequest {})
                .await?
                .into_inner()
                .peers
                .into_iter()
                .map(peer_view)
                .collect();
            let now = SystemTime::now();
            print(output, &peers, || {
                if peers.is_empty() {
                    return "No peers.\n".to_owned();
                }
                let rows: Vec<Vec<String>> = peers
                    .iter()
                    .map(|p| {
                        vec![
                            p.address.clone(),
                            p.asn.to_string(),
                            p.peer_type.to_owned(),
                            p.state.to_owned(),
                            p.since_time.map(|t| since(t, now)).unwrap_or_default(),
                            format!(
                                "{}/{}/{}",
                                p.prefixes_received, p.prefixes_accepted, p.prefixes_advertised
                            ),
                            p.last_error.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "PEER ADDRESS",
                        "AS",
                        "PEER TYPE",
                        "STATE",
                        "SINCE",
                        "RCVD/ACC/ADV",
                        "LAST ERROR",
                    ],
                    &rows,
                )
            });
        }
        PeersCommand::Add(args) => {
            if args.asn.is_none() {
                return Err(Failure("ternctl: peers add needs --as ASN".into()));
            }
            let address = args.address.clone();
            let peer = apply(args, pb::PeerConfig::default())?;
            client
                .add_peer(pb::AddPeerRequest { peer: Some(peer) })
                .await?;
            done(format!("peer {address} added"));
        }
        PeersCommand::Update(args) => {
            let address = args.address.clone();
            let wanted: std::net::IpAddr = address
                .parse()
                .map_err(|_| Failure(format!("ternctl: {address:?} is not an IP address")))?;
            let current = client
                .list_peers(pb::ListPeersRequest {})
                .await?
                .into_inner()
                .peers
                .into_iter()
                .filter_map(|p| p.config)
                .find(|c| c.address.parse() == Ok(wanted))
                .ok_or_else(|| Failure(format!("no peer {address} (not found)")))?;
            let peer = apply(args, current)?;
            client
                .update_peer(pb::UpdatePeerRequest { peer: Some(peer) })
                .await?;
            done(format!("peer {address} updated"));
        }
        PeersCommand::Remove { address } => {
            client
                .remove_peer(pb::RemovePeerRequest {
                    address: address.clone(),
                })
                .await?;
            done(format!("peer {address} removed"));
        }
        PeersCommand::Reset { address, hard } => {
            client
                .reset_peer(pb::ResetPeerRequest {
                    address: address.clone(),
                    hard,
                })
                .await?;
            done(format!(
                "peer {address} reset ({})",
                if hard { "hard" } else { "soft" }
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct RouteView {
    prefix: String,
    family: &'static str,
    reason: String,
    kernel: &'static str,
    paths: Vec<PathView>,
}

#[derive(Debug, Serialize)]
struct PathView {
    #[serde(skip_serializing_if = "String::is_empty")]
    peer: String,
    next_hop: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    next_hop_link_local: String,
    origin: &'static str,
    as_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    med: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_pref: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    communities: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    large_communities: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extended_communities: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    originator_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cluster_list: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    atomic_aggregate: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stale: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    long_lived_stale: bool,
}

fn route_view(route: pb::Route) -> RouteView {
    RouteView {
        prefix: route.prefix,
        family: family_name(route.family),
        reason: route.reason,
        kernel: match pb::KernelState::try_from(route.kernel) {
            Ok(pb::KernelState::Installed) => "installed",
            Ok(pb::KernelState::Blackhole) => "blackhole",
            Ok(pb::KernelState::NotInstalled) => "not installed",
            _ => "",
        },
        paths: route
            .paths
            .into_iter()
            .map(|p| PathView {
                peer: p.peer,
                next_hop: p.next_hop,
                next_hop_link_local: p.next_hop_link_local,
                origin: match pb::Origin::try_from(p.origin) {
                    Ok(pb::Origin::Igp) => "igp",
                    Ok(pb::Origin::Egp) => "egp",
                    Ok(pb::Origin::Incomplete) => "incomplete",
                    _ => "",
                },
                as_path: p.as_path,
                med: p.med,
                local_pref: p.local_pref,
                communities: p.communities,
                large_communities: p.large_communities,
                extended_communities: p.extended_communities,
                originator_id: p.originator_id,
                cluster_list: p.cluster_list,
                atomic_aggregate: p.atomic_aggregate,
                stale: p.stale,
                long_lived_stale: p.long_lived_stale,
            })
            .collect(),
    }
}

fn route_rows(routes: &[RouteView]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for route in routes {
        for (i, path) in route.paths.iter().enumerate() {
            let first = i == 0;
            rows.push(vec![
                if first {
                    route.prefix.clone()
                } else {
                    String::new()
                },
                path.next_hop.clone(),
                if path.peer.is_empty() {
                    "local".to_owned()
                } else {
                    path.peer.clone()
                },
                path.as_path.clone(),
                path.local_pref.map(|v| v.to_string()).unwrap_or_default(),
                path.med.map(|v| v.to_string()).unwrap_or_default(),
                path.communities.join(" "),
                if first {
                    route.reason.clone()
                } else {
                    String::new()
                },
                if first {
                    route.kernel.to_owned()
                } else {
                    String::new()
                },
            ]);
        }
    }
    rows
}

async fn routes(
    channel: Channel,
    output: Output,
    request: pb::ListRoutesRequest,
) -> Result<(), Failure> {
    let mut stream = RouteServiceClient::new(channel)
        .list_routes(request)
        .await?
        .into_inner();
    let mut routes = Vec::new();
    while let Some(page) = stream.message().await? {
        routes.extend(page.routes.into_iter().map(route_view));
    }
    print(output, &routes, || {
        if routes.is_empty() {
            return "No routes.\n".to_owned();
        }
        table(
            &[
                "PREFIX",
                "NEXT HOP",
                "PEER",
                "AS PATH",
                "LOCAL PREF",
                "MED",
                "COMMUNITIES",
                "BEST BECAUSE",
                "KERNEL",
            ],
            &route_rows(&routes),
        )
    });
    Ok(())
}

#[derive(Debug, Serialize)]
struct BlockView {
    prefix: String,
    source: &'static str,
}

fn block_views(blocks: Vec<pb::Block>) -> Vec<BlockView> {
    blocks
        .into_iter()
        .map(|b| BlockView {
            prefix: b.prefix,
            source: match pb::BlockSource::try_from(b.source) {
                Ok(pb::BlockSource::Config) => "config",
                Ok(pb::BlockSource::Api) => "api",
                _ => "unknown",
            },
        })
        .collect()
}

fn print_blocks(output: Output, blocks: &[BlockView]) {
    print(output, &blocks, || {
        if blocks.is_empty() {
            return "No blocks.\n".to_owned();
        }
        let rows: Vec<Vec<String>> = blocks
            .iter()
            .map(|b| vec![b.prefix.clone(), b.source.to_owned()])
            .collect();
        table(&["BLOCK", "SOURCE"], &rows)
    });
}

async fn blocks(channel: Channel, output: Output, command: BlocksCommand) -> Result<(), Failure> {
    let mut client = BlockServiceClient::new(channel);
    let changed = |what: &str, prefix: &str, changed: bool| {
        let text = if changed {
            format!("block {prefix} {what}")
        } else {
            format!("block {prefix} unchanged (already {what})")
        };
        print(
            output,
            &serde_json::json!({ "prefix": prefix, "changed": changed }),
            || format!("{text}\n"),
        );
    };
    match command {
        BlocksCommand::List => {
            let blocks = client
                .list_blocks(pb::ListBlocksRequest {})
                .await?
                .into_inner()
                .blocks;
            print_blocks(output, &block_views(blocks));
        }
        BlocksCommand::Add { prefix } => {
            let response = client
                .add_block(pb::AddBlockRequest {
                    prefix: prefix.clone(),
                })
                .await?
                .into_inner();
            changed("added", &prefix, response.changed);
        }
        BlocksCommand::Remove { prefix } => {
            let response = client
                .remove_block(pb::RemoveBlockRequest {
                    prefix: prefix.clone(),
                })
                .await?
                .into_inner();
            changed("removed", &prefix, response.changed);
        }
        BlocksCommand::Set { prefixes } => {
            let blocks = client
                .set_blocks(pb::SetBlocksRequest { prefixes })
                .await?
                .into_inner()
                .blocks;
            print_blocks(output, &block_views(blocks));
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum EventView {
    PeerState {
        time: String,
        address: String,
        state: &'static str,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    },
    Route {
        time: String,
        prefix: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        route: Option<RouteView>,
    },
    EndOfRib {
        time: String,
        address: String,
        family: &'static str,
    },
    Resync {
        time: String,
        first: bool,
        last: bool,
        routes: Vec<RouteView>,
    },
    MaxPrefixExceeded {
        time: String,
        address: String,
        count: u64,
        limit: u32,
    },
}

fn event_line(event: &EventView) -> String {
    match event {
        EventView::PeerState {
            time,
            address,
            state,
            error,
        } => {
            let error = if error.is_empty() {
                String::new()
            } else {
                format!(" ({error})")
            };
            format!("{time} peer {address} {state}{error}")
        }
        EventView::Route {
            time,
            prefix,
            route: None,
        } => format!("{time} route {prefix} withdrawn"),
        EventView::Route {
            time,
            prefix,
            route: Some(route),
        } => {
            let via: Vec<String> = route
                .paths
                .iter()
                .map(|p| {
                    if p.peer.is_empty() {
                        format!("{} (local)", p.next_hop)
                    } else {
                        format!("{} (peer {})", p.next_hop, p.peer)
                    }
                })
                .collect();
            format!("{time} route {prefix} via {}", via.join(", "))
        }
        EventView::EndOfRib {
            time,
            address,
            family,
        } => format!("{time} end-of-rib {address} {family}"),
        EventView::Resync {
            time,
            first,
            last,
            routes,
        } => format!(
            "{time} resync{}{}: {} routes",
            if *first { " (start)" } else { "" },
            if *last { " (end)" } else { "" },
            routes.len()
        ),
        EventView::MaxPrefixExceeded {
            time,
            address,
            count,
            limit,
        } => format!("{time} peer {address} over its prefix limit: {count} > {limit}"),
    }
}

async fn watch(channel: Channel, output: Output, request: pb::WatchRequest) -> Result<(), Failure> {
    use pb::watch_response::Event;
    let mut stream = WatchServiceClient::new(channel)
        .watch(request)
        .await?
        .into_inner();
    while let Some(message) = stream.message().await? {
        let time = rfc3339(SystemTime::now());
        let view = match message.event {
            None => continue,
            Some(Event::PeerState(p)) => EventView::PeerState {
                time,
                address: p.address,
                state: state_name(p.state),
                error: p.error,
            },
            Some(Event::Route(r)) => EventView::Route {
                time,
                prefix: r.prefix,
                route: r.route.map(route_view),
            },
            Some(Event::EndOfRib(e)) => EventView::EndOfRib {
                time,
                address: e.address,
                family: family_name(e.family),
            },
            Some(Event::Resync(r)) => EventView::Resync {
                time,
                first: r.first,
                last: r.last,
                routes: r.routes.into_iter().map(route_view).collect(),
            },
            Some(Event::MaxPrefixExceeded(m)) => EventView::MaxPrefixExceeded {
                time,
                address: m.address,
                count: m.count,
                limit: m.limit,
            },
        };
        // One event per line in JSON (NDJSON), one document per event in YAML.
        match output {
            Output::Table => println!("{}", event_line(&view)),
            Output::Json => println!("{}", serde_json::to_string(&view).unwrap_or_default()),
            Output::Yaml => print!("---\n{}", serde_yaml::to_string(&view).unwrap_or_default()),
        }
    }
    Err(Failure("ternd closed the watch stream (it stopped)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_centres_headers_and_left_aligns_cells_as_calicoctl_does() {
        let rows = vec![vec![
            "10.0.5.12".to_owned(),
            "node-to-node mesh".to_owned(),
            "up".to_owned(),
            "2026-11-29".to_owned(),
            "Established".to_owned(),
        ]];
        let text = table(
            &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
            &rows,
        );
        assert_eq!(
            text,
            "\
+--------------+-------------------+-------+------------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |    INFO     |
+--------------+-------------------+-------+------------+-------------+
| 10.0.5.12    | node-to-node mesh | up    | 2026-11-29 | Established |
+--------------+-------------------+-------+------------+-------------+
"
        );
    }

    #[test]
    fn dates_are_civil_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_910_400 + 3723);
        assert_eq!(rfc3339(t), "2026-11-29T01:02:03Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn since_is_a_time_today_and_a_date_before() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_910_400 + 7200);
        assert_eq!(since(now - Duration::from_secs(60), now), "01:59:00");
        assert_eq!(since(now - Duration::from_secs(86_400), now), "2026-11-28");
    }

    #[test]
    fn status_codes_read_as_words() {
        assert_eq!(words("FailedPrecondition"), "failed precondition");
        assert_eq!(words("NotFound"), "not found");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
