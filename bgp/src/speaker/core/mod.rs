//! The speaker core: every peer's session machines, the Loc-RIB, import and export, as one
//! sans-IO state machine. The runtime feeds it [`Input`]s (commands, connection events, decoded
//! messages, timer expiries) with the time they happen at, and carries out the [`Output`]s it
//! returns (connect, send bytes, close, timers, events for subscribers). The core never reads a
//! clock and never touches a socket. One owner, no locks: queries are answered from here between
//! batches.
//!
//! This module holds the types, the dispatch of inputs and a few shared helpers; the work is in
//! - `peer`: configured peers and their sessions, collisions (RFC 4271 sections 6.8 and 8);
//! - `graceful_restart`: the helper side of RFC 4724 and RFC 9494 (stale routes, timers);
//! - `import`: UPDATEs in, local origination, max-prefix (RFC 4486), route refresh requests
//!   (RFC 2918, RFC 7313);
//! - `export`: what each peer is sent, update groups and packed UPDATEs.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::time::Instant;
use tracing::warn;

use self::export::ExportKey;
use super::config::{PeerConfig, SpeakerConfig};
use crate::fasthash::{FastMap, FastSet};
use crate::fsm::{Fsm, Negotiated, State, Timer};
use crate::rib::table::{Best, Interner, Path, PeerId, Table};
use crate::wire::{
    Community, Context, Error as WireError, Family, GracefulRestart, Message, NextHop,
};

mod export;
mod graceful_restart;
mod import;
mod peer;

/// Identifies one TCP connection.
pub type ConnId = u64;

/// Identifies one session machine (a peer may have two during a collision).
pub type SessionId = u64;

/// The timers the runtime runs for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// A session machine's timer.
    Fsm(SessionId, Timer),
    /// A restarting peer's restart time (RFC 4724).
    Restart(IpAddr),
    /// How long a peer that came back may take to send its End-of-RIB.
    StaleRoutes(IpAddr),
    /// The long-lived stale time (RFC 9494).
    LongLivedStale(IpAddr),
}

/// What the runtime and the agent tell the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Add a peer and start its session.
    AddPeer(PeerConfig),
    /// Change a peer: policy changes apply in place, others restart the session.
    UpdatePeer(PeerConfig),
    /// Remove a peer (Cease, peer de-configured) and its routes.
    RemovePeer(IpAddr),
    /// Restart a session (hard) or refresh routes both ways (soft).
    ResetPeer {
        /// The peer.
        address: IpAddr,
        /// Close and reopen the session rather than use route refresh.
        hard: bool,
    },
    /// Originate a prefix with these communities.
    Originate {
        /// The prefix.
        prefix: IpNetwork,
        /// Standard communities to attach.
        communities: Vec<Community>,
    },
    /// Stop originating a prefix.
    Withdraw(IpNetwork),
    /// An inbound connection was accepted from `peer`, on our address `local`.
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// The remote address.
        peer: IpAddr,
        /// Our end.
        local: SocketAddr,
    },
    /// Our outbound connection is up, on our address `local`.
    Connected {
        /// The connection from [`Output::Connect`].
        conn: ConnId,
        /// Our end.
        local: SocketAddr,
    },
    /// Our addresses on the interface that holds a connection's local address, both families
    /// and link-local ones included (the runtime reads them right after the connection is up).
    /// Toward a peer of the other family they are our next hops (RFC 2545, RFC 8950). At most
    /// [`MAX_LINK_ADDRESSES`] are kept.
    LinkAddresses {
        /// The connection.
        conn: ConnId,
        /// The interface's addresses.
        addresses: Vec<LinkAddress>,
    },
    /// Our outbound connection could not be made.
    ConnectFailed {
        /// The connection from [`Output::Connect`].
        conn: ConnId,
    },
    /// A connection closed or failed.
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// A message arrived.
    Received {
        /// The connection.
        conn: ConnId,
        /// The decoded message.
        message: Message,
    },
    /// A message could not be decoded and the session must be reset.
    DecodeError {
        /// The connection.
        conn: ConnId,
        /// The error, with its NOTIFICATION.
        error: WireError,
    },
    /// The peer on this connection stopped reading: its send queue reached its bound, or its
    /// socket took nothing for the write timeout. The session is reset with Cease, out of
    /// resources (RFC 4486 subcode 8); the runtime has already dropped the queue.
    SendStalled {
        /// The connection.
        conn: ConnId,
    },
    /// The kernel refused the peer's TCP MD5 key (RFC 2385), on the listener or on an outbound
    /// socket. The peer is held down rather than run unsigned, with `error` as its last error,
    /// until its configuration changes.
    PasswordRefused {
        /// The peer.
        address: IpAddr,
        /// The kernel's answer, as the operator reads it.
        error: String,
    },
    /// A timer fired.
    TimerExpired(TimerKey),
    /// Stop everything. A graceful stop (a planned restart) closes the connections without a
    /// NOTIFICATION, so peers keep our routes under graceful restart.
    Shutdown {
        /// Keep peers' copies of our routes.
        graceful: bool,
    },
}

/// One address of a local interface, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkAddress {
    /// The address.
    pub address: IpAddr,
    /// The length of the subnet it is configured with.
    pub prefix_len: u8,
}

impl LinkAddress {
    /// Whether `other` lies in this address's subnet.
    pub fn contains(&self, other: IpAddr) -> bool {
        IpNetwork::new(self.address, self.prefix_len).is_ok_and(|n| n.contains(other))
    }
}

/// The most interface addresses kept per session; the rest are ignored.
pub const MAX_LINK_ADDRESSES: usize = 32;

/// What the core asks of the runtime.
#[derive(Debug, Clone)]
pub enum Output {
    /// Open a TCP connection to the peer.
    Connect {
        /// The id to report back with.
        conn: ConnId,
        /// The peer's configuration (address, port, local address, MD5, TTL).
        peer: Box<PeerConfig>,
    },
    /// Write these bytes (whole messages) to the connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The messages.
        bytes: Vec<u8>,
    },
    /// Decode what follows on this connection with this context.
    SetContext {
        /// The connection.
        conn: ConnId,
        /// The negotiated context.
        context: Context,
    },
    /// Close the connection. A NOTIFICATION sent just before is written first (best effort,
    /// within a short bound); what else was queued and not yet written is dropped, so a close
    /// never waits behind a backlog.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Start or restart a timer.
    StartTimer(TimerKey, Duration),
    /// Stop a timer.
    StopTimer(TimerKey),
    /// Something for subscribers.
    Event(SpeakerEvent),
}

/// Events for the agent and other subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerEvent {
    /// A peer's session changed state.
    PeerState {
        /// The peer.
        address: IpAddr,
        /// Its new state.
        state: State,
        /// Why, when it left Established or failed.
        error: Option<String>,
    },
    /// A prefix's best path (ECMP set) changed; `None` when it became unreachable.
    BestPath {
        /// The prefix.
        prefix: IpNetwork,
        /// The new ECMP set.
        best: Option<Best>,
        /// For each path of the set, the address of the peer it came from (`None`: local).
        sources: Vec<Option<IpAddr>>,
    },
    /// A peer finished sending its routes of a family (RFC 4724 End-of-RIB).
    EndOfRib {
        /// The peer.
        address: IpAddr,
        /// The family.
        family: Family,
    },
    /// A peer sent more prefixes than its limit.
    MaxPrefixExceeded {
        /// The peer.
        address: IpAddr,
        /// Prefixes accepted.
        count: usize,
        /// The limit.
        limit: u32,
    },
}

/// Counters of one peer, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// UPDATE messages received.
    pub updates_received: u64,
    /// UPDATE messages sent.
    pub updates_sent: u64,
    /// Prefixes announced to us (before import policy), this session.
    pub prefixes_received: u64,
    /// Prefixes we hold from the peer now (after import policy).
    pub prefixes_accepted: usize,
    /// Prefixes we advertised, this session.
    pub prefixes_advertised: u64,
    /// Messages for the peer that could not be encoded and were not sent (for UPDATEs, the
    /// routes were withdrawn from the peer instead), this session.
    pub messages_not_encoded: u64,
    /// UPDATEs whose announced routes were all handled as withdrawn, this session: a malformed
    /// attribute (RFC 7606) or a next hop that is our own address on the session (RFC 4271
    /// section 6.3).
    pub updates_treated_as_withdraw: u64,
}

/// A snapshot of one peer, for status queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The configuration.
    pub config: PeerConfig,
    /// The session state.
    pub state: State,
    /// When it entered that state, on the clock the runtime drives the core with (tokio's),
    /// as a std instant.
    pub since: std::time::Instant,
    /// What was negotiated, once up.
    pub negotiated: Option<Negotiated>,
    /// The last error that brought the session down.
    pub last_error: Option<String>,
    /// Counters.
    pub counters: Counters,
}

/// One session machine and its connection.
#[derive(Debug)]
struct Session {
    id: SessionId,
    fsm: Fsm,
    conn: Option<ConnId>,
    inbound: bool,
    /// Our addresses on the interface of the connection's local address.
    link: Vec<LinkAddress>,
}

/// Routes waiting to be sent to a peer.
#[derive(Debug, Default)]
struct Outbox {
    /// Prefix to the best path to announce.
    announce: FastMap<IpNetwork, Path>,
    /// Prefixes to withdraw.
    withdraw: FastSet<IpNetwork>,
    /// End-of-RIB markers to send after the routes.
    end_of_rib: Vec<Family>,
    /// Enhanced route refresh markers to wrap around a refresh (RFC 7313).
    refresh_end: Vec<Family>,
}

#[derive(Debug)]
struct Peer {
    id: PeerId,
    config: PeerConfig,
    primary: Session,
    secondary: Option<Session>,
    /// Our address on the established connection.
    local: Option<SocketAddr>,
    negotiated: Option<Negotiated>,
    since: Instant,
    last_error: Option<String>,
    counters: Counters,
    outbox: Outbox,
    /// The peer restarted and its routes are stale (graceful restart helper).
    stale: bool,
    /// Families whose End-of-RIB arrived since the peer came back.
    eor_received: HashSet<Family>,
    /// The peer's graceful restart capability from its last session.
    graceful_restart: Option<GracefulRestart>,
    /// Long-lived stale time per family from its last session.
    long_lived: Vec<(Family, u32)>,
    /// Whether the peer's count is past its max-prefix limit (told once per crossing).
    max_prefix_warned: bool,
    /// Whether the peer's count is past its max-prefix warning threshold (logged once).
    max_prefix_threshold_warned: bool,
    /// Administratively enabled.
    enabled: bool,
}

impl Peer {
    fn is_established(&self) -> bool {
        self.primary.fsm.state() == State::Established
    }

    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        if self.primary.id == id {
            Some(&mut self.primary)
        } else {
            self.secondary.as_mut().filter(|s| s.id == id)
        }
    }
}

/// The speaker core.
#[derive(Debug)]
pub struct Core {
    config: SpeakerConfig,
    peers: FastMap<IpAddr, Peer>,
    ids: FastMap<PeerId, IpAddr>,
    conns: HashMap<ConnId, (IpAddr, SessionId)>,
    table: Table,
    interner: Interner,
    /// Timers started and not yet stopped or fired: expiries of others are stale.
    timers: HashSet<TimerKey>,
    next_conn: ConnId,
    next_session: SessionId,
    next_peer: u16,
    out: Vec<Output>,
    /// Paths changed since the last sweep of the interner.
    churn: usize,
    /// Established peers, in a stable order, kept up to date on state changes.
    established: Vec<IpAddr>,
    /// Whether anyone listens to best-path events (the runtime says); without listeners they are
    /// not built at all.
    report_best_paths: bool,
    /// The last export decision: (attributes, source peer, flags, family, target) and whether the
    /// path may go. Routes of one UPDATE share their attributes, so this spares the policy work
    /// for all but the first.
    /// The attributes are held, so their address cannot be reused while cached.
    export_cache: Option<(ExportKey, bool)>,
}

impl Core {
    /// A core with no peers.
    pub fn new(config: SpeakerConfig) -> Core {
        Core {
            table: Table::new(config.decision),
            config,
            peers: FastMap::default(),
            ids: FastMap::default(),
            conns: HashMap::new(),
            interner: Interner::default(),
            timers: HashSet::new(),
            next_conn: 1,
            next_session: 1,
            next_peer: 1,
            out: Vec::new(),
            churn: 0,
            established: Vec::new(),
            report_best_paths: true,
            export_cache: None,
        }
    }

    /// Whether best-path events are wanted (the runtime turns them off without subscribers).
    pub fn set_report_best_paths(&mut self, wanted: bool) {
        self.report_best_paths = wanted;
    }

    /// The speaker configuration.
    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    /// The Loc-RIB, for queries.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The address of the peer a path came from.
    pub fn peer_address(&self, id: PeerId) -> Option<IpAddr> {
        self.ids.get(&id).copied()
    }

    /// A snapshot of every peer.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let mut list: Vec<PeerStatus> = self
            .peers
            .values()
            .map(|p| PeerStatus {
                config: p.config.clone(),
                state: p.primary.fsm.state(),
                since: p.since.into_std(),
                negotiated: p.negotiated.clone(),
                last_error: p.last_error.clone(),
                counters: p.counters,
            })
            .collect();
        list.sort_by_key(|p| p.config.address);
        list
    }

    /// Handles one input at time `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        match input {
            Input::AddPeer(config) => self.add_peer(config, now),
            Input::UpdatePeer(config) => self.update_peer(config, now),
            Input::RemovePeer(address) => self.remove_peer(address, now),
            Input::ResetPeer { address, hard } => self.reset_peer(address, hard, now),
            Input::Originate {
                prefix,
                communities,
            } => self.originate(prefix, communities),
            Input::Withdraw(prefix) => self.withdraw_local(prefix),
            Input::Accepted { conn, peer, local } => self.accepted(conn, peer, local, now),
            Input::Connected { conn, local } => self.connected(conn, local, now),
            Input::LinkAddresses { conn, addresses } => self.link_addresses(conn, addresses),
            Input::ConnectFailed { conn } | Input::Closed { conn } => self.closed(conn, now),
            Input::Received { conn, message } => self.received(conn, message, now),
            Input::DecodeError { conn, error } => self.decode_error(conn, error, now),
            Input::SendStalled { conn } => self.send_stalled(conn, now),
            Input::PasswordRefused { address, error } => self.password_refused(address, error, now),
            Input::TimerExpired(key) => {
                if self.timers.remove(&key) {
                    self.timer_expired(key, now);
                }
            }
            Input::Shutdown { graceful } => self.shutdown(graceful, now),
        }
        self.flush();
        if self.churn > 100_000 {
            self.interner.sweep();
            self.churn = 0;
        }
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, output: Output) {
        match &output {
            Output::StartTimer(key, _) => {
                self.timers.insert(*key);
            }
            Output::StopTimer(key) if !self.timers.remove(key) => {
                return;
            }
            _ => {}
        }
        self.out.push(output);
    }

    fn timer_expired(&mut self, key: TimerKey, now: Instant) {
        match key {
            TimerKey::Fsm(session, timer) => self.fsm_timer_expired(session, timer, now),
            TimerKey::Restart(address) => self.restart_time_expired(address),
            TimerKey::StaleRoutes(address) | TimerKey::LongLivedStale(address) => {
                self.sweep_stale(address, None)
            }
        }
    }

    /// Removes a peer's paths selected by `select` and tells everyone.
    fn drop_routes(&mut self, id: PeerId, select: impl Fn(&Path) -> bool) {
        let mut changes = Vec::new();
        let removed = self
            .table
            .remove_peer_paths(id, select, |prefix, change| changes.push((prefix, change)));
        if let Some(address) = self.ids.get(&id).copied()
            && let Some(peer) = self.peers.get_mut(&address)
        {
            peer.counters.prefixes_accepted =
                peer.counters.prefixes_accepted.saturating_sub(removed);
        }
        self.churn += changes.len();
        for (prefix, change) in changes {
            self.propagate(prefix, change);
        }
    }
}

/// Appends `message` to `out` for `peer`. When it cannot be encoded, `out` is left as it was
/// (never half a message), the failure is logged, and `false` is returned for the caller to
/// count.
fn append(message: &Message, context: &Context, out: &mut Vec<u8>, peer: IpAddr) -> bool {
    let start = out.len();
    match message.encode(context, out) {
        Ok(()) => true,
        Err(error) => {
            out.truncate(start);
            let kind = match message {
                Message::Open(_) => "OPEN",
                Message::Update(_) => "UPDATE",
                Message::Notification(_) => "NOTIFICATION",
                Message::Keepalive => "KEEPALIVE",
                Message::RouteRefresh(_) => "ROUTE-REFRESH",
            };
            warn!(peer = %peer, %error, message = kind, "cannot encode a message; not sent");
            false
        }
    }
}

/// The family of a prefix (the core carries unicast only).
fn family_of_prefix(prefix: IpNetwork) -> Family {
    match prefix {
        IpNetwork::V4(_) => Family::IPV4_UNICAST,
        IpNetwork::V6(_) => Family::IPV6_UNICAST,
    }
}

/// The family a path was learnt in, from its next hop.
fn family_of(path: &Path) -> Family {
    match path.attributes.next_hop {
        NextHop::V4(_) => Family::IPV4_UNICAST,
        NextHop::V6 { .. } => Family::IPV6_UNICAST,
    }
}
