//! Conversions between the API's protobuf messages and tern's own types, all in one place: the
//! rest of the agent never sees a protobuf type, and the services never build one by hand.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use ipnetwork::IpNetwork;
use tern_bgp::wire::{Capability, Family, NextHop, Origin};
use tern_bgp::{
    Filter, MaxPrefixAction, Negotiated, Path, PeerConfig, PeerStatus, RouteEntry, SpeakerEvent,
    State,
};
use tern_proto::v1 as pb;
use tonic::Status;

use crate::config::{MAX_MD5_KEY, MaxPrefixes, MaxPrefixesAction, Seconds};
use crate::error::{BlockError, PasswordTooLong, PeerError};
use crate::filter::PrefixFilter;
use crate::handle::{AgentStatus, BlockSource};
use crate::reconcile::{DesiredPeer, PeerKind};
use crate::tunnel::DataPath;

/// Routes per `Resync` message of a Watch stream.
pub const RESYNC_CHUNK: usize = 1000;

/// Parses a prefix; an address without a length is a single address (/32 or /128).
pub fn prefix(field: &str, text: &str) -> Result<IpNetwork, Status> {
    text.trim().parse().map_err(|_| {
        Status::invalid_argument(format!(
            "{field}: {text:?} is not a prefix: write e.g. 10.244.1.0/26 or fd00:10:244::/122"
        ))
    })
}

/// Parses an address.
pub fn address(field: &str, text: &str) -> Result<IpAddr, Status> {
    text.trim().parse().map_err(|_| {
        Status::invalid_argument(format!(
            "{field}: {text:?} is not an IP address: write e.g. 10.0.5.12 or fd00::12"
        ))
    })
}

impl From<BlockError> for Status {
    /// A refused block, with its precise code.
    fn from(error: BlockError) -> Status {
        let message = error.to_string();
        match error {
            BlockError::HostBits { .. } | BlockError::WrongSize { .. } => {
                Status::invalid_argument(message)
            }
            BlockError::OutsidePools { .. }
            | BlockError::PoolDisabled { .. }
            | BlockError::FromConfig { .. } => Status::failed_precondition(message),
            BlockError::Overlaps { .. } => Status::already_exists(message),
            BlockError::NotSaved { .. } => Status::unavailable(message),
        }
    }
}

impl From<PeerError> for Status {
    /// A refused peer request, with its precise code.
    fn from(error: PeerError) -> Status {
        let message = error.to_string();
        match error {
            PeerError::NotFound(_) => Status::not_found(message),
            PeerError::AlreadyExists(_) => Status::already_exists(message),
            PeerError::OwnAddress(_) => Status::invalid_argument(message),
        }
    }
}

/// One block.
pub fn block(prefix: IpNetwork, source: BlockSource) -> pb::Block {
    pb::Block {
        prefix: prefix.to_string(),
        source: match source {
            BlockSource::Config => pb::BlockSource::Config,
            BlockSource::Api => pb::BlockSource::Api,
        } as i32,
    }
}

/// A wall-clock time.
pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

/// A monotonic instant as a wall-clock time (now minus the time elapsed since).
pub fn instant(at: Instant) -> prost_types::Timestamp {
    timestamp(SystemTime::now() - at.elapsed())
}

fn duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs() as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}

/// A session state.
pub fn session_state(state: State) -> pb::SessionState {
    match state {
        State::Idle => pb::SessionState::Idle,
        State::Connect => pb::SessionState::Connect,
        State::Active => pb::SessionState::Active,
        State::OpenSent => pb::SessionState::OpenSent,
        State::OpenConfirm => pb::SessionState::OpenConfirm,
        State::Established => pb::SessionState::Established,
    }
}

/// A family; families tern does not speak are unspecified.
pub fn family(family: Family) -> pb::AddressFamily {
    match family {
        Family::IPV4_UNICAST => pb::AddressFamily::Ipv4Unicast,
        Family::IPV6_UNICAST => pb::AddressFamily::Ipv6Unicast,
        _ => pb::AddressFamily::Unspecified,
    }
}

fn prefix_family(prefix: IpNetwork) -> pb::AddressFamily {
    if prefix.is_ipv4() {
        pb::AddressFamily::Ipv4Unicast
    } else {
        pb::AddressFamily::Ipv6Unicast
    }
}

fn peer_type(kind: PeerKind) -> pb::PeerType {
    match kind {
        PeerKind::Mesh => pb::PeerType::NodeMesh,
        PeerKind::Global => pb::PeerType::Global,
        PeerKind::NodeSpecific => pb::PeerType::NodeSpecific,
    }
}

/// A peer's configuration as the API shows it (the password is never shown).
pub fn peer_config(config: &PeerConfig) -> pb::PeerConfig {
    pb::PeerConfig {
        address: config.address.to_string(),
        port: u32::from(config.port),
        asn: config.asn,
        local_address: config
            .local_address
            .map(|a| a.to_string())
            .unwrap_or_default(),
        passive: config.passive,
        hold_time: u32::from(config.hold_time),
        multihop_ttl: config.multihop_ttl.map(u32::from).unwrap_or_default(),
        ttl_security: config.ttl_security,
        password: String::new(),
        route_reflector_client: config.route_reflector_client,
        next_hop_self: config.next_hop_self,
        keep_original_next_hop: config.keep_original_next_hop,
        import_prefixes: config
            .import
            .iter()
            .flat_map(|f| f.ranges.iter().map(|r| PrefixFilter(*r).to_string()))
            .collect(),
        has_password: config.password.is_some(),
        max_prefixes: config.max_prefix.map(|max| pb::MaxPrefixes {
            limit: max.limit,
            warning_threshold_percent: max.warning.map_or(0, |w| {
                (u64::from(w) * 100)
                    .div_ceil(u64::from(max.limit.max(1)))
                    .min(100) as u32
            }),
            action: match max.action {
                MaxPrefixAction::Warn => pb::MaxPrefixesAction::Warn,
                MaxPrefixAction::Restart(_) => pb::MaxPrefixesAction::Restart,
            } as i32,
            restart_delay_seconds: match max.action {
                MaxPrefixAction::Warn => 0,
                MaxPrefixAction::Restart(delay) => delay.as_secs().min(u64::from(u32::MAX)) as u32,
            },
        }),
    }
}

/// A prefix limit from the API, checked as the configuration file's is.
fn max_prefixes(max: pb::MaxPrefixes) -> Result<MaxPrefixes, Status> {
    let action = match pb::MaxPrefixesAction::try_from(max.action) {
        Ok(pb::MaxPrefixesAction::Unspecified | pb::MaxPrefixesAction::Restart) => {
            MaxPrefixesAction::Restart
        }
        Ok(pb::MaxPrefixesAction::Warn) => MaxPrefixesAction::Warn,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "peer.max_prefixes.action: {} is not a MaxPrefixesAction",
                max.action
            )));
        }
    };
    let warning_threshold = u8::try_from(max.warning_threshold_percent).unwrap_or(u8::MAX);
    let defaults = MaxPrefixes::default();
    let limit = MaxPrefixes {
        limit: max.limit,
        warning_threshold,
        action,
        restart_delay: match max.restart_delay_seconds {
            0 => defaults.restart_delay,
            seconds => Seconds(Duration::from_secs(u64::from(seconds))),
        },
    };
    limit
        .check()
        .map_err(|e| Status::invalid_argument(format!("peer.max_prefixes: {e}")))?;
    Ok(limit)
}

/// A peer for AddPeer or UpdatePeer: checked, with tern's defaults for fields left at zero.
/// Peers added through the API are node-specific.
pub fn desired_peer(config: Option<pb::PeerConfig>) -> Result<DesiredPeer, Status> {
    let config = config.ok_or_else(|| Status::invalid_argument("peer: missing"))?;
    let peer_address = address("peer.address", &config.address)?;
    if peer_address.is_unspecified() || peer_address.is_multicast() {
        return Err(Status::invalid_argument(format!(
            "peer.address: {peer_address} cannot be a BGP peer"
        )));
    }
    if config.asn == 0 {
        return Err(Status::invalid_argument(
            "peer.asn: AS 0 is reserved (RFC 7607): give the peer's AS",
        ));
    }
    let mut peer = PeerConfig::new(peer_address, config.asn);
    if config.port != 0 {
        peer.port = u16::try_from(config.port)
            .map_err(|_| Status::invalid_argument("peer.port: at most 65535"))?;
    }
    if !config.local_address.is_empty() {
        let local = address("peer.local_address", &config.local_address)?;
        if local.is_ipv4() != peer_address.is_ipv4() {
            return Err(Status::invalid_argument(
                "peer.local_address: must be of the peer address's family",
            ));
        }
        peer.local_address = Some(local);
    }
    peer.passive = config.passive;
    match config.hold_time {
        0 => {}
        1 | 2 => {
            return Err(Status::invalid_argument(
                "peer.hold_time: must be at least 3 seconds (RFC 4271 section 4.2)",
            ));
        }
        seconds => {
            peer.hold_time = u16::try_from(seconds)
                .map_err(|_| Status::invalid_argument("peer.hold_time: at most 65535"))?;
        }
    }
    if config.multihop_ttl != 0 {
        peer.multihop_ttl = Some(
            u8::try_from(config.multihop_ttl)
                .map_err(|_| Status::invalid_argument("peer.multihop_ttl: at most 255"))?,
        );
    }
    peer.ttl_security = config.ttl_security;
    if config.password.len() > MAX_MD5_KEY {
        return Err(Status::invalid_argument(format!(
            "peer.password: {}",
            PasswordTooLong(config.password.len())
        )));
    }
    peer.password = (!config.password.is_empty()).then_some(config.password);
    peer.route_reflector_client = config.route_reflector_client;
    peer.next_hop_self = config.next_hop_self;
    peer.keep_original_next_hop = config.keep_original_next_hop;
    let ranges = config
        .import_prefixes
        .iter()
        .map(|p| {
            PrefixFilter::parse(p)
                .map(|f| f.0)
                .map_err(|e| Status::invalid_argument(format!("peer.import_prefixes: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !ranges.is_empty() {
        peer.import = Some(Filter { ranges });
    }
    if let Some(max) = config.max_prefixes {
        peer.max_prefix = Some(max_prefixes(max)?.speaker());
    }
    Ok(DesiredPeer {
        config: peer,
        kind: PeerKind::NodeSpecific,
    })
}

/// One peer with its session.
pub fn peer(status: &PeerStatus, kind: Option<PeerKind>) -> pb::Peer {
    let counters = status.counters;
    pb::Peer {
        config: Some(peer_config(&status.config)),
        r#type: kind.map_or(pb::PeerType::Unspecified, peer_type) as i32,
        state: session_state(status.state) as i32,
        since: Some(instant(status.since)),
        negotiated: (status.state == State::Established)
            .then_some(status.negotiated.as_ref())
            .flatten()
            .map(negotiated),
        last_error: status.last_error.clone().unwrap_or_default(),
        counters: Some(pb::PeerCounters {
            updates_received: counters.updates_received,
            updates_sent: counters.updates_sent,
            prefixes_received: counters.prefixes_received,
            prefixes_accepted: counters.prefixes_accepted as u64,
            prefixes_advertised: counters.prefixes_advertised,
            updates_treated_as_withdraw: counters.updates_treated_as_withdraw,
        }),
    }
}

fn families(list: impl Iterator<Item = Family>) -> Vec<i32> {
    list.map(|f| family(f) as i32).collect()
}

/// What a session negotiated.
pub fn negotiated(negotiated: &Negotiated) -> pb::Negotiated {
    let context = &negotiated.context;
    let supported = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    pb::Negotiated {
        hold_time: u32::from(negotiated.hold_time),
        keepalive: u32::from(negotiated.keepalive),
        families: families(negotiated.families.iter().copied()),
        peer_router_id: negotiated.peer_open.bgp_identifier.to_string(),
        peer_asn: negotiated.peer_open.asn(),
        four_octet_as: context.four_octet_as,
        extended_messages: context.extended_messages,
        route_refresh: negotiated.route_refresh,
        enhanced_route_refresh: negotiated.enhanced_route_refresh,
        graceful_restart: negotiated.graceful_restart.is_some(),
        graceful_restart_time: negotiated
            .graceful_restart
            .as_ref()
            .map_or(0, |g| u32::from(g.restart_time)),
        add_path_receive: families(
            supported
                .into_iter()
                .filter(|f| context.add_path_receive.contains(*f)),
        ),
        add_path_send: families(
            supported
                .into_iter()
                .filter(|f| context.add_path_send.contains(*f)),
        ),
        capabilities: negotiated
            .peer_open
            .capabilities
            .iter()
            .map(capability)
            .collect(),
    }
}

/// A capability in a few words.
fn capability(capability: &Capability) -> String {
    match capability {
        Capability::Multiprotocol(family) => format!("multiprotocol {family}"),
        Capability::RouteRefresh => "route-refresh".to_owned(),
        Capability::EnhancedRouteRefresh => "enhanced-route-refresh".to_owned(),
        Capability::ExtendedMessage => "extended-message".to_owned(),
        Capability::FourOctetAs(asn) => format!("4-octet-as {asn}"),
        Capability::GracefulRestart(gr) => {
            let families: Vec<String> = gr.families.iter().map(|f| f.family.to_string()).collect();
            format!(
                "graceful-restart {}s{}{}",
                gr.restart_time,
                if gr.restart_state { " restarting" } else { "" },
                if families.is_empty() {
                    String::new()
                } else {
                    format!(" {}", families.join(","))
                }
            )
        }
        Capability::LongLivedGracefulRestart(list) => {
            let families: Vec<String> = list
                .iter()
                .map(|f| format!("{} {}s", f.family, f.long_lived_stale_time))
                .collect();
            format!("long-lived-graceful-restart {}", families.join(","))
        }
        Capability::AddPath(list) => {
            let families: Vec<String> = list
                .iter()
                .map(|f| format!("{} {:?}", f.family, f.mode).to_lowercase())
                .collect();
            format!("add-path {}", families.join(","))
        }
        Capability::ExtendedNextHop(list) => {
            let entries: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "afi {}/safi {} via afi {}",
                        e.nlri_afi.0, e.nlri_safi, e.next_hop_afi.0
                    )
                })
                .collect();
            format!("extended-next-hop {}", entries.join(","))
        }
        Capability::Fqdn { hostname, domain } if domain.is_empty() => format!("fqdn {hostname}"),
        Capability::Fqdn { hostname, domain } => format!("fqdn {hostname}.{domain}"),
        Capability::Unknown { code, value } => format!("unknown {code} ({} octets)", value.len()),
    }
}

/// One path with its attributes; `source` is the peer it came from (`None`: originated here).
pub fn path(path: &Path, source: Option<IpAddr>) -> pb::Path {
    let attributes = &path.attributes.attributes;
    let (next_hop, link_local) = match path.attributes.next_hop {
        NextHop::V4(address) => (address.to_string(), String::new()),
        NextHop::V6 { global, link_local } => (
            global.to_string(),
            link_local.map(|a| a.to_string()).unwrap_or_default(),
        ),
    };
    pb::Path {
        peer: source.map(|a| a.to_string()).unwrap_or_default(),
        next_hop,
        next_hop_link_local: link_local,
        origin: match attributes.origin {
            None => pb::Origin::Unspecified,
            Some(Origin::Igp) => pb::Origin::Igp,
            Some(Origin::Egp) => pb::Origin::Egp,
            Some(Origin::Incomplete) => pb::Origin::Incomplete,
        } as i32,
        as_path: attributes
            .as_path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        med: attributes.med,
        local_pref: attributes.local_pref,
        communities: attributes
            .communities
            .iter()
            .map(|c| c.to_string())
            .collect(),
        large_communities: attributes
            .large_communities
            .iter()
            .map(|c| c.to_string())
            .collect(),
        extended_communities: attributes
            .extended_communities
            .iter()
            .map(|c| c.0.iter().map(|b| format!("{b:02x}")).collect())
            .collect(),
        originator_id: attributes
            .originator_id
            .map(|a| a.to_string())
            .unwrap_or_default(),
        cluster_list: attributes
            .cluster_list
            .iter()
            .map(|a| a.to_string())
            .collect(),
        atomic_aggregate: attributes.atomic_aggregate,
        path_id: path.path_id,
        stale: path.is_stale(),
        long_lived_stale: path.is_long_lived_stale(),
    }
}

/// One route of the Loc-RIB.
pub fn route(entry: &RouteEntry, kernel: pb::KernelState) -> pb::Route {
    pb::Route {
        prefix: entry.prefix.to_string(),
        family: prefix_family(entry.prefix) as i32,
        paths: entry
            .best
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| path(p, entry.sources.get(i).copied().flatten()))
            .collect(),
        reason: entry.best.reason.as_str().to_owned(),
        kernel: kernel as i32,
    }
}

fn response(event: pb::watch_response::Event) -> pb::WatchResponse {
    pb::WatchResponse { event: Some(event) }
}

/// A peer's current state, as a Watch message.
pub fn peer_state(address: IpAddr, state: State, error: Option<String>) -> pb::WatchResponse {
    response(pb::watch_response::Event::PeerState(pb::PeerStateChange {
        address: address.to_string(),
        state: session_state(state) as i32,
        error: error.unwrap_or_default(),
    }))
}

/// A speaker event as a Watch message.
pub fn event(event: SpeakerEvent) -> pb::WatchResponse {
    use pb::watch_response::Event;
    match event {
        SpeakerEvent::PeerState {
            address,
            state,
            error,
        } => peer_state(address, state, error),
        SpeakerEvent::BestPath {
            prefix,
            best,
            sources,
        } => response(Event::Route(pb::RouteChange {
            prefix: prefix.to_string(),
            route: best.map(|best| {
                route(
                    &RouteEntry {
                        prefix,
                        best,
                        sources,
                    },
                    pb::KernelState::Unspecified,
                )
            }),
        })),
        SpeakerEvent::EndOfRib { address, family: f } => response(Event::EndOfRib(pb::EndOfRib {
            address: address.to_string(),
            family: family(f) as i32,
        })),
        SpeakerEvent::MaxPrefixExceeded {
            address,
            count,
            limit,
        } => response(Event::MaxPrefixExceeded(pb::MaxPrefixExceeded {
            address: address.to_string(),
            count: count as u64,
            limit,
        })),
    }
}

/// The whole table as Watch messages of at most [`RESYNC_CHUNK`] routes: the first says to
/// forget what came before, the last says the table is complete (one message when it is empty).
pub fn resync(entries: &[RouteEntry]) -> Vec<pb::WatchResponse> {
    let chunks: Vec<&[RouteEntry]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(RESYNC_CHUNK).collect()
    };
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            response(pb::watch_response::Event::Resync(pb::Resync {
                first: i == 0,
                last: i + 1 == count,
                routes: chunk
                    .iter()
                    .map(|e| route(e, pb::KernelState::Unspecified))
                    .collect(),
            }))
        })
        .collect()
}

fn data_path(path: DataPath) -> pb::DataPath {
    match path {
        DataPath::Routed => pb::DataPath::Routed,
        DataPath::Ipip => pb::DataPath::Ipip,
        DataPath::IpipUserspace => pb::DataPath::IpipUserspace,
        DataPath::Vxlan => pb::DataPath::Vxlan,
    }
}

/// The agent's status with counts from the speaker.
pub fn status(status: AgentStatus, peers: &[PeerStatus], blocks: usize) -> pb::GetStatusResponse {
    pb::GetStatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        node: status.node,
        router_id: status.router_id.to_string(),
        asn: status.asn,
        started: Some(timestamp(status.started)),
        uptime: Some(duration(
            SystemTime::now()
                .duration_since(status.started)
                .unwrap_or_default(),
        )),
        ready: status.ready,
        data_path: data_path(status.data_path) as i32,
        data_path_detail: status.data_path_detail,
        kernel_routes: status.kernel_routes as u64,
        peers: peers.len() as u32,
        peers_established: peers
            .iter()
            .filter(|p| p.state == State::Established)
            .count() as u32,
        blocks: blocks as u32,
        refusals: Some(pb::Refusals {
            kernel_routes_held_by_others: status.refusals.kernel_routes_held_by_others,
            connections_from_non_peers: status.refusals.connections_from_non_peers,
            connections_over_the_cap: status.refusals.connections_over_the_cap,
            ipip_unknown_source: status.refusals.ipip_unknown_source,
            ipip_foreign_source: status.refusals.ipip_foreign_source,
            ipip_not_local: status.refusals.ipip_not_local,
            connections_without_open: status.refusals.connections_without_open,
            sessions_stalled: status.refusals.sessions_stalled,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tern_bgp::wire::{AsPath, Community, PathAttributes};
    use tern_bgp::{Best, PeerId, Reason, RouteAttributes, path_flags};

    fn entry(prefix: &str) -> RouteEntry {
        let attributes = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000, 65001])),
            med: Some(5),
            communities: vec![Community::new(64512, 100)],
            ..PathAttributes::default()
        };
        RouteEntry {
            prefix: prefix.parse().unwrap(),
            best: Best {
                paths: vec![Path {
                    attributes: Arc::new(RouteAttributes {
                        attributes,
                        next_hop: NextHop::V4("10.0.5.12".parse().unwrap()),
                    }),
                    peer: PeerId(1),
                    path_id: 0,
                    flags: path_flags::STALE,
                }],
                reason: Reason::OnlyPath,
            },
            sources: vec![Some("10.0.5.12".parse().unwrap())],
        }
    }

    #[test]
    fn a_route_carries_its_attributes_source_and_kernel_state() {
        let route = route(&entry("10.244.2.0/26"), pb::KernelState::Installed);
        assert_eq!(route.prefix, "10.244.2.0/26");
        assert_eq!(route.family, pb::AddressFamily::Ipv4Unicast as i32);
        assert_eq!(route.reason, "only path");
        assert_eq!(route.kernel, pb::KernelState::Installed as i32);
        let path = &route.paths[0];
        assert_eq!(path.peer, "10.0.5.12");
        assert_eq!(path.next_hop, "10.0.5.12");
        assert_eq!(path.as_path, "65000 65001");
        assert_eq!(path.med, Some(5));
        assert_eq!(path.local_pref, None);
        assert_eq!(path.communities, vec!["64512:100"]);
        assert_eq!(path.origin, pb::Origin::Igp as i32);
        assert!(path.stale);
        assert!(!path.long_lived_stale);
    }

    #[test]
    fn a_resync_comes_in_chunks_marked_first_and_last() {
        let entries: Vec<RouteEntry> = (0..2500)
            .map(|i| entry(&format!("10.{}.{}.0/24", i / 256, i % 256)))
            .collect();
        let messages = resync(&entries);
        let parts: Vec<(bool, bool, usize)> = messages
            .iter()
            .map(|m| match &m.event {
                Some(pb::watch_response::Event::Resync(r)) => (r.first, r.last, r.routes.len()),
                other => panic!("not a resync: {other:?}"),
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (true, false, 1000),
                (false, false, 1000),
                (false, true, 500)
            ]
        );
    }

    #[test]
    fn an_empty_table_resyncs_in_one_message() {
        let messages = resync(&[]);
        assert_eq!(messages.len(), 1);
        assert!(matches!(
            &messages[0].event,
            Some(pb::watch_response::Event::Resync(pb::Resync {
                first: true,
                last: true,
                ..
            }))
        ));
    }

    #[test]
    fn block_errors_map_to_precise_codes() {
        let block: IpNetwork = "10.244.1.1/26".parse().unwrap();
        let pool: IpNetwork = "10.244.0.0/16".parse().unwrap();
        let cases = [
            (BlockError::HostBits { block }, tonic::Code::InvalidArgument),
            (
                BlockError::WrongSize {
                    block,
                    pool,
                    block_size: 26,
                },
                tonic::Code::InvalidArgument,
            ),
            (
                BlockError::OutsidePools { block },
                tonic::Code::FailedPrecondition,
            ),
            (
                BlockError::PoolDisabled { pool },
                tonic::Code::FailedPrecondition,
            ),
            (
                BlockError::FromConfig { block },
                tonic::Code::FailedPrecondition,
            ),
            (
                BlockError::Overlaps { block, other: pool },
                tonic::Code::AlreadyExists,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn peer_errors_map_to_precise_codes() {
        let address: IpAddr = "10.0.5.1".parse().unwrap();
        assert_eq!(
            Status::from(PeerError::NotFound(address)).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            Status::from(PeerError::AlreadyExists(address)).code(),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            Status::from(PeerError::OwnAddress(address)).code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_peer_from_the_api_gets_defaults_and_its_filters() {
        let peer = desired_peer(Some(pb::PeerConfig {
            address: "10.0.5.1".into(),
            asn: 65000,
            import_prefixes: vec!["0.0.0.0/0".into(), "10.0.0.0/8{16,24}".into()],
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(peer.config.port, 179);
        assert_eq!(peer.config.hold_time, 90);
        assert_eq!(peer.kind, PeerKind::NodeSpecific);
        let import = peer.config.import.as_ref().unwrap();
        assert!(import.accepts("0.0.0.0/0".parse().unwrap()));
        assert!(
            !import.accepts("10.0.0.0/8".parse().unwrap()),
            "neither exactly named nor in the range"
        );
        assert!(import.accepts("10.1.0.0/16".parse().unwrap()));
        let shown = peer_config(&peer.config);
        assert_eq!(
            shown.import_prefixes,
            vec!["0.0.0.0/0", "10.0.0.0/8{16,24}"]
        );
        assert_eq!(
            peer.config.max_prefix, None,
            "the agent fills in its default"
        );
    }

    #[test]
    fn a_prefix_limit_from_the_api_is_checked_and_shown_back() {
        let limited = |max: pb::MaxPrefixes| {
            desired_peer(Some(pb::PeerConfig {
                address: "10.0.5.1".into(),
                asn: 65000,
                max_prefixes: Some(max),
                ..Default::default()
            }))
        };
        let peer = limited(pb::MaxPrefixes {
            limit: 1000,
            warning_threshold_percent: 80,
            action: pb::MaxPrefixesAction::Restart as i32,
            restart_delay_seconds: 0,
        })
        .unwrap();
        let max = peer.config.max_prefix.unwrap();
        assert_eq!((max.limit, max.warning), (1000, Some(800)));
        assert_eq!(
            max.action,
            MaxPrefixAction::Restart(Duration::from_secs(60))
        );
        let shown = peer_config(&peer.config).max_prefixes.unwrap();
        assert_eq!(shown.warning_threshold_percent, 80);
        assert_eq!(shown.restart_delay_seconds, 60);
        for (bad, says) in [
            (
                pb::MaxPrefixes {
                    limit: 0,
                    ..Default::default()
                },
                "peer.max_prefixes: limit 0",
            ),
            (
                pb::MaxPrefixes {
                    limit: 10,
                    warning_threshold_percent: 101,
                    ..Default::default()
                },
                "percentage",
            ),
            (
                pb::MaxPrefixes {
                    limit: 10,
                    action: 9,
                    ..Default::default()
                },
                "9 is not a MaxPrefixesAction",
            ),
        ] {
            let status = limited(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(says), "{}", status.message());
        }
    }

    #[test]
    fn a_bad_peer_is_refused_as_an_invalid_argument() {
        for bad in [
            pb::PeerConfig {
                address: "10.0.5.300".into(),
                asn: 65000,
                ..Default::default()
            },
            pb::PeerConfig {
                address: "10.0.5.1".into(),
                asn: 0,
                ..Default::default()
            },
            pb::PeerConfig {
                address: "10.0.5.1".into(),
                asn: 65000,
                hold_time: 2,
                ..Default::default()
            },
            pb::PeerConfig {
                address: "10.0.5.1".into(),
                asn: 65000,
                local_address: "fd00::1".into(),
                ..Default::default()
            },
            pb::PeerConfig {
                address: "10.0.5.1".into(),
                asn: 65000,
                password: "k".repeat(81),
                ..Default::default()
            },
        ] {
            let error = desired_peer(Some(bad.clone())).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        let longest = desired_peer(Some(pb::PeerConfig {
            address: "10.0.5.1".into(),
            asn: 65000,
            password: "k".repeat(80),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(longest.config.password.map(|p| p.len()), Some(80));
    }
}
