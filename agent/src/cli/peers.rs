//! `ternctl peers`: BGP peers listed with their sessions and counters, and added, updated,
//! removed or reset.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::peer_service_client::PeerServiceClient;
use tonic::transport::Channel;

use super::Error;
use super::output::{Output, family_name, print, rfc3339, since, state_name, system_time, table};

/// `ternctl peers ...`.
#[derive(Debug, Subcommand)]
pub(super) enum PeersCommand {
    /// Lists every peer.
    List,
    /// Adds a peer (it lives until removed or ternd stops).
    Add(PeerArgs),
    /// Changes a peer: the options given replace its settings, the others stay.
    Update(PeerArgs),
    /// Removes a peer and its routes.
    Remove {
        /// The peer's address.
        #[arg(id = "peer", value_name = "ADDRESS")]
        address: String,
    },
    /// Resets a session: soft (ROUTE-REFRESH both ways) unless --hard.
    Reset {
        /// The peer's address.
        #[arg(id = "peer", value_name = "ADDRESS")]
        address: String,
        /// Close the session instead.
        #[arg(long)]
        hard: bool,
    },
}

/// The options of `peers add` and `peers update`.
#[derive(Debug, Args)]
pub(super) struct PeerArgs {
    /// The peer's address. Its id is not `address`, which the global `--address` (ternd's
    /// TCP endpoint) holds: with one id for both, every peer command took the TLS path.
    #[arg(id = "peer", value_name = "ADDRESS")]
    pub(super) address: String,
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
    /// Accept only the routes these rules match (repeat, or separate with commas): a CIDR
    /// matches exactly (`0.0.0.0/0`: the default route only), `10.0.0.0/8{16,24}` the prefixes
    /// inside it of lengths 16 to 24.
    #[arg(long = "import", value_delimiter = ',')]
    import_prefixes: Option<Vec<String>>,
    /// The most prefixes accepted from the peer (ternd's `maxPrefixes` when not given).
    #[arg(long)]
    max_prefixes: Option<u32>,
    /// Above the limit only warn, keeping the session (the default closes it and tries again).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    max_prefixes_warn_only: Option<bool>,
}

/// A peer as ternctl shows it, independent of the protobuf types.
#[derive(Debug, Serialize)]
pub(super) struct PeerView {
    pub(super) address: String,
    port: u32,
    asn: u32,
    #[serde(rename = "type")]
    pub(super) peer_type: &'static str,
    pub(super) state: &'static str,
    since: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) last_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    local_address: String,
    passive: bool,
    hold_time: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    import_prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_prefixes: Option<MaxPrefixesView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negotiated: Option<NegotiatedView>,
    prefixes_received: u64,
    prefixes_accepted: u64,
    prefixes_advertised: u64,
    updates_received: u64,
    updates_sent: u64,
    updates_treated_as_withdraw: u64,
    /// For the table only.
    #[serde(skip)]
    pub(super) since_time: Option<SystemTime>,
}

/// A peer's prefix limit.
#[derive(Debug, Serialize)]
struct MaxPrefixesView {
    limit: u32,
    warning_threshold_percent: u32,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_delay_seconds: Option<u32>,
}

/// What a session negotiated.
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
/// A peer type as calicoctl words it.
fn peer_type_name(value: i32) -> &'static str {
    match pb::PeerType::try_from(value) {
        Ok(pb::PeerType::NodeMesh) => "node-to-node mesh",
        Ok(pb::PeerType::Global) => "global",
        Ok(pb::PeerType::NodeSpecific) => "node specific",
        _ => "unknown",
    }
}

/// A peer from the API as ternctl shows it.
pub(super) fn peer_view(peer: pb::Peer) -> PeerView {
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
        max_prefixes: config.max_prefixes.map(|m| {
            let warn = m.action == pb::MaxPrefixesAction::Warn as i32;
            MaxPrefixesView {
                limit: m.limit,
                warning_threshold_percent: m.warning_threshold_percent,
                action: if warn { "warn" } else { "restart" },
                restart_delay_seconds: (!warn).then_some(m.restart_delay_seconds),
            }
        }),
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
        updates_treated_as_withdraw: counters.updates_treated_as_withdraw,
        since_time,
    }
}
/// `config` with the options of `args` applied (the password read from its file).
fn apply(args: PeerArgs, mut config: pb::PeerConfig) -> Result<pb::PeerConfig, Error> {
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
        let password = std::fs::read_to_string(&path).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
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
    if args.max_prefixes.is_some() || args.max_prefixes_warn_only.is_some() {
        let max = config.max_prefixes.get_or_insert(pb::MaxPrefixes {
            warning_threshold_percent: 75,
            ..Default::default()
        });
        if let Some(limit) = args.max_prefixes {
            max.limit = limit;
        }
        if let Some(warn) = args.max_prefixes_warn_only {
            max.action = if warn {
                pb::MaxPrefixesAction::Warn
            } else {
                pb::MaxPrefixesAction::Restart
            } as i32;
        }
    }
    Ok(config)
}

/// `ternctl peers [list|add|update|remove|reset]`.
pub(super) async fn run(
    channel: Channel,
    output: Output,
    command: Option<PeersCommand>,
) -> Result<(), Error> {
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
                return Err(Error::MissingAsn);
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
                .map_err(|_| Error::NotAnAddress(address.clone()))?;
            let current = client
                .list_peers(pb::ListPeersRequest {})
                .await?
                .into_inner()
                .peers
                .into_iter()
                .filter_map(|p| p.config)
                .find(|c| c.address.parse() == Ok(wanted))
                .ok_or_else(|| Error::NoPeer(address.clone()))?;
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
