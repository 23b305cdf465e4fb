//! What the speaker and each of its peers are configured to do. Plain data: the agent builds it
//! from its YAML config or the API, and the speaker validates what it must.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::rib::decision::Options;
use crate::wire::Community;

/// The speaker as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The route reflection cluster id (RFC 4456); our router id when unset.
    pub cluster_id: Option<Ipv4Addr>,
    /// Decision process options (always-compare-med, maximum ECMP paths).
    pub decision: Options,
    /// Advertise graceful restart with this restart time (RFC 4724); `None` disables it.
    pub graceful_restart_time: Option<u16>,
    /// Set the restart state bit in our OPENs: we just restarted and peers should keep our
    /// routes until our End-of-RIB.
    pub restarting: bool,
    /// How long to keep a restarted peer's stale routes after it came back, waiting for its
    /// End-of-RIB, before sweeping them.
    pub stale_routes_time: Duration,
    /// Advertise long-lived graceful restart (RFC 9494) asking peers to keep our routes this
    /// many seconds after the restart time; `None` does not advertise it. We act as helper for
    /// peers that advertise it either way.
    pub long_lived_stale_time: Option<u32>,
    /// How many events subscribers may fall behind before they are resynchronised (16,384 when
    /// unset). The queue is allocated up front, so a speaker without subscribers keeps it small;
    /// an agent that takes every change (ternd) wants it large enough to ride out a full table.
    pub event_queue: Option<usize>,
    /// Bounds on what TCP connections may hold of the speaker.
    pub connections: ConnectionLimits,
}

/// Bounds on TCP connections, so that no address that can reach port 179 and no peer that stops
/// reading can make the speaker hold unbounded sockets, tasks or memory.
///
/// What happens at each bound:
/// - a connection from an address that is no configured peer is closed at once (reset, both
///   directions) and counted in [`ConnectionStats::refused_not_peer`](crate::ConnectionStats);
/// - an accepted connection that would make more than [`max_pending`](Self::max_pending)
///   inbound connections not yet Established is closed at once the same way and counted in
///   `refused_at_cap`; outbound connections are ours, one per configured peer, and not counted;
/// - a connection that has not sent an OPEN within [`open_timeout`](Self::open_timeout) of
///   coming up is closed and counted in `open_timeouts`;
/// - a connection whose unwritten bytes would pass [`send_queue_bytes`](Self::send_queue_bytes),
///   or whose socket takes no byte for [`write_timeout`](Self::write_timeout), is dropped with a
///   NOTIFICATION (Cease, out of resources; RFC 4486 subcode 8, best effort), its queue freed
///   at once, and counted in `send_stalls`. The core encodes a peer's whole backlog in one go
///   (a new session is sent the whole table at once), so the bound must exceed the encoded
///   size of the table a healthy peer is sent: 128 MiB hold tens of millions of IPv4 routes
///   packed by shared attributes, or about 2,000,000 routes that each have attributes of their
///   own (some 60 octets an UPDATE), twice a full Internet table. A healthy peer that reads slowly is not dropped: only a queue that
///   would pass the bound, or no progress at all for the write timeout, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a connection may take to send its OPEN (30 s). RFC 4271 leaves the OpenSent
    /// hold time at 4 minutes; a connection that has said nothing valid gets less.
    pub open_timeout: Duration,
    /// How many inbound connections may be up and not yet Established at once (2,048: two per
    /// peer of a 1,000-node mesh, as during connection collisions, and room to spare).
    pub max_pending: usize,
    /// The most unwritten bytes a connection may queue (128 MiB).
    pub send_queue_bytes: usize,
    /// How long a socket may accept no byte while we have bytes for it (60 s).
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            open_timeout: Duration::from_secs(30),
            max_pending: 2048,
            send_queue_bytes: 128 << 20,
            write_timeout: Duration::from_secs(60),
        }
    }
}

impl SpeakerConfig {
    /// A speaker with tern's defaults: graceful restart with a 120 s restart time, one path.
    pub fn new(asn: u32, router_id: Ipv4Addr) -> SpeakerConfig {
        SpeakerConfig {
            asn,
            router_id,
            cluster_id: None,
            decision: Options::default(),
            graceful_restart_time: Some(120),
            restarting: false,
            stale_routes_time: Duration::from_secs(360),
            long_lived_stale_time: None,
            event_queue: None,
            connections: ConnectionLimits::default(),
        }
    }

    /// The cluster id used when reflecting.
    pub fn cluster_id(&self) -> Ipv4Addr {
        self.cluster_id.unwrap_or(self.router_id)
    }
}

/// What to do when a peer sends more prefixes than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxPrefixAction {
    /// Log a warning (once per crossing) and keep the session.
    Warn,
    /// Close with Cease subcode 1 (RFC 4486) and try again after this delay.
    Restart(Duration),
}

/// A limit on the prefixes accepted from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPrefix {
    /// The most prefixes accepted.
    pub limit: u32,
    /// Log a warning (once per crossing) when the accepted prefixes pass this many, before the
    /// limit is reached (FRR's threshold); none when `None`.
    pub warning: Option<u32>,
    /// What happens above the limit.
    pub action: MaxPrefixAction,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address (with an interface scope for IPv6 link-local peers).
    pub address: IpAddr,
    /// The interface index for a link-local IPv6 peer.
    pub scope_id: u32,
    /// The TCP port to connect to.
    pub port: u16,
    /// The peer's AS.
    pub asn: u32,
    /// Our address for this session (bind before connecting); chosen by the kernel when unset.
    pub local_address: Option<IpAddr>,
    /// Never connect; wait for the peer.
    pub passive: bool,
    /// The hold time we propose.
    pub hold_time: u16,
    /// The first connect retry interval.
    pub connect_retry: Duration,
    /// TCP MD5 signature key (RFC 2385).
    pub password: Option<String>,
    /// GTSM (RFC 5082): require TTL 255 on received packets and send with 255.
    pub ttl_security: bool,
    /// eBGP multihop: the TTL we send with (1 for directly connected eBGP by default).
    pub multihop_ttl: Option<u8>,
    /// The peer is a route reflection client of ours (RFC 4456).
    pub route_reflector_client: bool,
    /// Set the next hop to our address even toward internal peers.
    pub next_hop_self: bool,
    /// Keep the original next hop even toward external peers (Calico's keepOriginalNextHop).
    pub keep_original_next_hop: bool,
    /// Our IPv4 next hop for IPv4 routes when the session runs over IPv6.
    pub next_hop_ipv4: Option<Ipv4Addr>,
    /// Our global IPv6 next hop for IPv6 routes when the session runs over IPv4 or link-local.
    pub next_hop_ipv6: Option<Ipv6Addr>,
    /// Accept paths holding our own AS up to this many times.
    pub allowas_in: u8,
    /// A prefix limit.
    pub max_prefix: Option<MaxPrefix>,
    /// Calico's `maxRestartTime`: the graceful restart time advertised to this peer instead of
    /// the speaker's, and the longest we keep the peer's routes after its session drops (its
    /// own restart time when shorter).
    pub max_restart_time: Option<u16>,
    /// Communities added to every route we send this peer.
    pub add_communities: Vec<Community>,
    /// Accept only what `import` allows; everything when `None`.
    pub import: Option<Filter>,
    /// Send only what `export` allows; everything when `None`.
    pub export: Option<Filter>,
    /// Shutdown text sent when the peer is removed or disabled.
    pub shutdown_message: Option<String>,
}

impl PeerConfig {
    /// A peer with defaults: port 179, hold time 90 s, connect retry 5 s.
    pub fn new(address: IpAddr, asn: u32) -> PeerConfig {
        PeerConfig {
            address,
            scope_id: 0,
            port: 179,
            asn,
            local_address: None,
            passive: false,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            password: None,
            ttl_security: false,
            multihop_ttl: None,
            route_reflector_client: false,
            next_hop_self: false,
            keep_original_next_hop: false,
            next_hop_ipv4: None,
            next_hop_ipv6: None,
            allowas_in: 0,
            max_prefix: None,
            max_restart_time: None,
            add_communities: Vec::new(),
            import: None,
            export: None,
            shutdown_message: None,
        }
    }

    /// Whether the peer is in another AS than `local_asn`.
    pub fn is_external(&self, local_asn: u32) -> bool {
        self.asn != local_asn
    }

    /// Whether a change from `self` to `other` needs the session to be reset: everything but
    /// the policy fields does.
    pub fn needs_reset(&self, other: &PeerConfig) -> bool {
        let strip = |c: &PeerConfig| PeerConfig {
            import: None,
            export: None,
            add_communities: Vec::new(),
            max_prefix: None,
            shutdown_message: None,
            ..c.clone()
        };
        strip(self) != strip(other)
    }
}

/// A prefix filter: accept routes whose prefix falls inside one of the ranges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The ranges.
    pub ranges: Vec<PrefixRange>,
}

/// A prefix and the lengths of the more specific prefixes it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixRange {
    /// The covering prefix.
    pub prefix: ipnetwork::IpNetwork,
    /// The shortest matching length.
    pub min_length: u8,
    /// The longest matching length.
    pub max_length: u8,
}

impl Filter {
    /// Whether `prefix` is accepted.
    pub fn accepts(&self, prefix: ipnetwork::IpNetwork) -> bool {
        self.ranges.iter().any(|r| {
            let same_family = r.prefix.is_ipv4() == prefix.is_ipv4();
            same_family
                && r.prefix.contains(prefix.network())
                && prefix.prefix() >= r.prefix.prefix()
                && (r.min_length..=r.max_length).contains(&prefix.prefix())
        })
    }
}
