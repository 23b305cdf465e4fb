//! The speaker core: every peer's session machines, the Loc-RIB, import and export, as one
//! sans-IO state machine. The runtime feeds it [`Input`]s (commands, connection events, decoded
//! messages, timer expiries) and carries out the [`Output`]s it returns (connect, send bytes,
//! close, timers, events for subscribers). One owner, no locks: queries are answered from here
//! between batches.
//!
//! Connection collisions (RFC 4271 section 6.8): a peer has a primary session and, while the
//! primary is past Active, may accept a second (inbound) one; when both have seen the peer's
//! OPEN, the one initiated by the side with the lower BGP identifier is dumped.
//!
//! Graceful restart (RFC 4724) as helper: when a peer that advertised it loses its session
//! without a NOTIFICATION, its routes stay, marked stale, until its End-of-RIB after it comes
//! back, or its restart time runs out. Long-lived graceful restart (RFC 9494) then keeps them as
//! least preferred for the long-lived stale time.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use super::config::{MaxPrefixAction, PeerConfig, SpeakerConfig};
use super::policy::{self, ExportSource, ExportTarget, ImportRules};
use crate::fasthash::{FastMap, FastSet};
use crate::fsm::{self, Action, DownReason, Event, Fsm, Negotiated, State, Timer};
use crate::rib::table::{
    Attributes, Best, Change, Interner, Path, PeerId, PeerInfo, RouteAttributes, Table, path_flags,
};
use crate::wire::{
    Capability, Community, Context, Error as WireError, Family, GracefulRestart,
    GracefulRestartFamily, LongLivedGracefulRestartFamily, Message, NextHop, Nlri, Notification,
    Origin, PathAttributes, RefreshSubtype, RouteRefresh, Update, UpdateBuilder, cease_subcode,
    code,
};

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
    /// A timer fired.
    TimerExpired(TimerKey),
    /// Stop everything. A graceful stop (a planned restart) closes the connections without a
    /// NOTIFICATION, so peers keep our routes under graceful restart.
    Shutdown {
        /// Keep peers' copies of our routes.
        graceful: bool,
    },
}

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
    /// Close the connection once what was sent is written.
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
}

/// A snapshot of one peer, for status queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The configuration.
    pub config: PeerConfig,
    /// The session state.
    pub state: State,
    /// When it entered that state.
    pub since: Instant,
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
}

/// What decides the bytes a peer is sent for the same changes: peers with equal keys form an
/// update group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    asn: u32,
    external: bool,
    route_reflector_client: bool,
    next_hop_self: bool,
    keep_original_next_hop: bool,
    local: (
        Option<std::net::Ipv4Addr>,
        Option<std::net::Ipv6Addr>,
        Option<std::net::Ipv6Addr>,
    ),
    add_communities: Vec<Community>,
    filter: Option<super::config::Filter>,
    context: Context,
    families: Vec<Family>,
    long_lived: bool,
}

/// Encoded UPDATEs for a peer.
#[derive(Debug, Clone, Default)]
struct Encoded {
    bytes: Vec<u8>,
    messages: usize,
    advertised: u64,
}

/// Whether two outboxes hold the same changes (paths compared by identity).
fn same_outbox(a: &Outbox, b: &Outbox) -> bool {
    a.withdraw == b.withdraw
        && a.end_of_rib == b.end_of_rib
        && a.refresh_end == b.refresh_end
        && a.announce.len() == b.announce.len()
        && a.announce.iter().all(|(prefix, path)| {
            b.announce.get(prefix).is_some_and(|other| {
                Arc::ptr_eq(&path.attributes, &other.attributes)
                    && path.peer == other.peer
                    && path.flags == other.flags
            })
        })
}

/// What an export decision depends on when the target has no prefix filter.
#[derive(Debug, Clone)]
struct ExportKey {
    attributes: Attributes,
    source: PeerId,
    flags: u8,
    family: Family,
    target: IpAddr,
}

impl ExportKey {
    fn matches(&self, path: &Path, family: Family, target: IpAddr) -> bool {
        Arc::ptr_eq(&self.attributes, &path.attributes)
            && self.source == path.peer
            && self.flags == path.flags
            && self.family == family
            && self.target == target
    }
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
    max_prefix_warned: bool,
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
                since: p.since,
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
            Input::Withdraw(prefix) => {
                let edit = self.table.remove(prefix, PeerId::LOCAL, 0);
                if let Some(change) = edit.change {
                    self.propagate(prefix, change);
                }
            }
            Input::Accepted { conn, peer, local } => self.accepted(conn, peer, local, now),
            Input::Connected { conn, local } => {
                // A connection we gave up on (an inbound one won meanwhile) is closed at once.
                if !self.conns.contains_key(&conn) {
                    self.out.push(Output::Close { conn });
                }
                if let Some((address, session)) = self.conns.get(&conn).copied() {
                    if let Some(peer) = self.peers.get_mut(&address) {
                        peer.local = Some(local);
                    }
                    self.fsm_event(address, session, Event::TcpConnected, now);
                }
            }
            Input::ConnectFailed { conn } | Input::Closed { conn } => {
                if let Some((address, session)) = self.conns.remove(&conn) {
                    if let Some(s) = self
                        .peers
                        .get_mut(&address)
                        .and_then(|p| p.session_mut(session))
                        && s.conn == Some(conn)
                    {
                        s.conn = None;
                    }
                    self.fsm_event(address, session, Event::TcpConnectionFails, now);
                }
            }
            Input::Received { conn, message } => self.received(conn, message, now),
            Input::DecodeError { conn, error } => {
                if let Some((address, session)) = self.conns.get(&conn).copied() {
                    let event = Event::MessageError(error.notification);
                    self.fsm_event(address, session, event, now);
                }
            }
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

    fn fsm_config(&self, peer: &PeerConfig, passive: bool) -> fsm::Config {
        let mut config = fsm::Config::new(self.config.asn, self.config.router_id, peer.asn);
        config.hold_time = peer.hold_time;
        config.connect_retry = peer.connect_retry;
        config.passive = passive;
        if let Some(restart_time) = self.config.graceful_restart_time {
            let families = [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
                .into_iter()
                .map(|family| GracefulRestartFamily {
                    family,
                    forwarding_preserved: true,
                })
                .collect();
            config
                .capabilities
                .push(Capability::GracefulRestart(GracefulRestart {
                    restart_state: self.config.restarting,
                    notification: false,
                    restart_time,
                    families,
                }));
        }
        if let Some(stale_time) = self.config.long_lived_stale_time {
            let families = [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
                .into_iter()
                .map(|family| LongLivedGracefulRestartFamily {
                    family,
                    forwarding_preserved: true,
                    long_lived_stale_time: stale_time,
                })
                .collect();
            config
                .capabilities
                .push(Capability::LongLivedGracefulRestart(families));
        }
        config.jitter_seed ^= match peer.address {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a) as u64,
        };
        config
    }

    fn new_session(&mut self, config: fsm::Config, inbound: bool) -> Session {
        let id = self.next_session;
        self.next_session += 1;
        Session {
            id,
            fsm: Fsm::new(config),
            conn: None,
            inbound,
        }
    }

    fn add_peer(&mut self, config: PeerConfig, now: Instant) {
        self.export_cache = None;
        if self.peers.contains_key(&config.address) {
            return self.update_peer(config, now);
        }
        let id = PeerId(self.next_peer);
        self.next_peer = self.next_peer.wrapping_add(1).max(1);
        let fsm_config = self.fsm_config(&config, config.passive);
        let primary = self.new_session(fsm_config, false);
        let address = config.address;
        let peer = Peer {
            id,
            config,
            primary,
            secondary: None,
            local: None,
            negotiated: None,
            since: now,
            last_error: None,
            counters: Counters::default(),
            outbox: Outbox::default(),
            stale: false,
            eor_received: HashSet::new(),
            graceful_restart: None,
            long_lived: Vec::new(),
            max_prefix_warned: false,
            enabled: true,
        };
        let session = peer.primary.id;
        self.ids.insert(id, address);
        self.peers.insert(address, peer);
        self.fsm_event(address, session, Event::ManualStart, now);
    }

    fn update_peer(&mut self, config: PeerConfig, now: Instant) {
        self.export_cache = None;
        let address = config.address;
        let Some(peer) = self.peers.get_mut(&address) else {
            return self.add_peer(config, now);
        };
        if peer.config.needs_reset(&config) {
            self.remove_peer(address, now);
            return self.add_peer(config, now);
        }
        let old = std::mem::replace(&mut peer.config, config);
        if peer.is_established() {
            self.reexport(address, Some(&old));
        }
    }

    fn remove_peer(&mut self, address: IpAddr, now: Instant) {
        self.export_cache = None;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.enabled = false;
        let message = peer.config.shutdown_message.clone();
        let sessions: Vec<SessionId> = std::iter::once(peer.primary.id)
            .chain(peer.secondary.as_ref().map(|s| s.id))
            .collect();
        for session in sessions {
            self.fsm_event(
                address,
                session,
                Event::ManualStop {
                    message: message.clone(),
                },
                now,
            );
        }
        let Some(peer) = self.peers.remove(&address) else {
            return;
        };
        self.ids.remove(&peer.id);
        for timer in [
            TimerKey::Restart(address),
            TimerKey::StaleRoutes(address),
            TimerKey::LongLivedStale(address),
        ] {
            self.emit(Output::StopTimer(timer));
        }
        for session in std::iter::once(&peer.primary).chain(peer.secondary.as_ref()) {
            for timer in [
                Timer::ConnectRetry,
                Timer::Hold,
                Timer::Keepalive,
                Timer::IdleHold,
            ] {
                self.emit(Output::StopTimer(TimerKey::Fsm(session.id, timer)));
            }
        }
        self.conns.retain(|_, (a, _)| *a != address);
        self.drop_routes(peer.id, |_| true);
    }

    fn reset_peer(&mut self, address: IpAddr, hard: bool, now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if hard || !peer.is_established() {
            let session = peer.primary.id;
            let reset = Notification::cease(cease_subcode::ADMINISTRATIVE_RESET);
            self.fsm_event(address, session, Event::MessageError(reset), now);
            return;
        }
        // Soft: ask for the peer's routes again and send ours again.
        let families = peer
            .negotiated
            .as_ref()
            .map(|n| n.families.clone())
            .unwrap_or_default();
        let refresh = peer.negotiated.as_ref().is_some_and(|n| n.route_refresh);
        if let (true, Some(conn)) = (refresh, peer.primary.conn) {
            let mut bytes = Vec::new();
            for family in &families {
                let message = Message::RouteRefresh(RouteRefresh::request(*family));
                let _ = message.encode(&Context::default(), &mut bytes);
            }
            self.emit(Output::Send { conn, bytes });
        }
        self.reexport(address, None);
    }

    fn originate(&mut self, prefix: IpNetwork, communities: Vec<Community>) {
        let next_hop = match prefix {
            IpNetwork::V4(_) => NextHop::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpNetwork::V6(_) => NextHop::V6 {
                global: std::net::Ipv6Addr::UNSPECIFIED,
                link_local: None,
            },
        };
        let attributes = self.interner.intern(RouteAttributes {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(Default::default()),
                communities,
                ..PathAttributes::default()
            },
            next_hop,
        });
        let path = Path {
            attributes,
            peer: PeerId::LOCAL,
            path_id: 0,
            flags: 0,
        };
        let edit = self.table.insert(prefix, path);
        if let Some(change) = edit.change {
            self.propagate(prefix, change);
        }
    }

    fn accepted(&mut self, conn: ConnId, address: IpAddr, local: SocketAddr, now: Instant) {
        let Some(peer) = self.peers.get(&address) else {
            // Not a configured peer: refuse (RFC 4271 leaves unconfigured peers out).
            self.out.push(Output::Close { conn });
            return;
        };
        let primary_state = peer.primary.fsm.state();
        match primary_state {
            State::Connect | State::Active => {
                let session = peer.primary.id;
                if let Some(pending) = peer.primary.conn {
                    self.conns.remove(&pending);
                    self.out.push(Output::Close { conn: pending });
                }
                let peer = self.peers.get_mut(&address).expect("looked up above");
                peer.primary.conn = Some(conn);
                peer.primary.inbound = true;
                peer.local = Some(local);
                self.conns.insert(conn, (address, session));
                self.fsm_event(address, session, Event::TcpConnected, now);
            }
            State::OpenSent | State::OpenConfirm if peer.secondary.is_none() => {
                let config = self.fsm_config(&peer.config, true);
                let mut session = self.new_session(config, true);
                session.conn = Some(conn);
                let id = session.id;
                let peer = self.peers.get_mut(&address).expect("looked up above");
                peer.secondary = Some(session);
                self.conns.insert(conn, (address, id));
                self.fsm_event(address, id, Event::ManualStart, now);
                self.fsm_event(address, id, Event::TcpConnected, now);
            }
            _ => self.out.push(Output::Close { conn }),
        }
    }

    fn received(&mut self, conn: ConnId, message: Message, now: Instant) {
        let Some((address, session)) = self.conns.get(&conn).copied() else {
            return;
        };
        match message {
            Message::Open(open) => {
                self.fsm_event(address, session, Event::OpenReceived(open), now);
                self.resolve_collision(address, now);
                let Some(peer) = self.peers.get(&address) else {
                    return;
                };
                let current = [Some(&peer.primary), peer.secondary.as_ref()]
                    .into_iter()
                    .flatten()
                    .find(|s| s.id == session);
                if let Some(s) = current.filter(|s| s.fsm.state() == State::OpenConfirm)
                    && let Some(negotiated) = s.fsm.negotiated()
                {
                    self.out.push(Output::SetContext {
                        conn,
                        context: negotiated.context,
                    });
                }
            }
            Message::Keepalive => self.fsm_event(address, session, Event::KeepaliveReceived, now),
            Message::Notification(n) => {
                self.fsm_event(address, session, Event::NotificationReceived(n), now)
            }
            Message::RouteRefresh(refresh) => {
                self.fsm_event(address, session, Event::UpdateReceived, now);
                self.route_refresh(address, refresh);
            }
            Message::Update(update) => {
                self.fsm_event(address, session, Event::UpdateReceived, now);
                let established = self
                    .peers
                    .get(&address)
                    .is_some_and(|p| p.is_established() && p.primary.id == session);
                if established {
                    self.update(address, update, now);
                }
            }
        }
    }

    /// RFC 4271 section 6.8, once both sessions have the peer's OPEN.
    fn resolve_collision(&mut self, address: IpAddr, now: Instant) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let Some(secondary) = &peer.secondary else {
            return;
        };
        let (p, s) = (peer.primary.fsm.state(), secondary.fsm.state());
        let seen_open = |state| matches!(state, State::OpenConfirm | State::Established);
        // Decide as soon as either connection has the peer's OPEN: both sides then apply the same
        // rule to the same pair, which keeps them from dumping different connections.
        let remote_id = [peer.primary.fsm.negotiated(), secondary.fsm.negotiated()]
            .into_iter()
            .flatten()
            .map(|n| n.peer_open.bgp_identifier)
            .next();
        let loser = if p == State::Established {
            Some(secondary.id)
        } else if seen_open(p) || seen_open(s) {
            // The side with the higher identifier keeps the connection it initiated.
            let keep_ours = remote_id.is_some_and(|remote| self.config.router_id > remote);
            let primary_is_ours = !peer.primary.inbound;
            Some(if keep_ours == primary_is_ours {
                secondary.id
            } else {
                peer.primary.id
            })
        } else {
            None
        };
        let Some(loser) = loser else { return };
        self.fsm_event(address, loser, Event::OpenCollisionDump, now);
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(secondary) = peer.secondary.take() else {
            return;
        };
        let dropped = if loser == secondary.id {
            secondary
        } else {
            std::mem::replace(&mut peer.primary, secondary)
        };
        for timer in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ] {
            self.emit(Output::StopTimer(TimerKey::Fsm(dropped.id, timer)));
        }
    }

    /// Feeds an event to a session machine and carries out its actions.
    fn fsm_event(&mut self, address: IpAddr, session: SessionId, event: Event, now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let is_primary = peer.primary.id == session;
        let Some(s) = peer.session_mut(session) else {
            return;
        };
        let before = s.fsm.state();
        let actions = s.fsm.handle(event, now);
        let after = s.fsm.state();
        let context = s.fsm.negotiated().map(|n| n.context).unwrap_or_default();
        for action in actions {
            self.apply(address, session, action, context, now);
        }
        if is_primary && before != after {
            if let Some(peer) = self.peers.get_mut(&address) {
                peer.since = now;
            }
            self.established = self
                .peers
                .iter()
                .filter(|(_, p)| p.is_established())
                .map(|(a, _)| *a)
                .collect();
            self.established.sort();
            self.export_cache = None;
            let error = self.peers.get(&address).and_then(|p| p.last_error.clone());
            let error = if after == State::Idle { error } else { None };
            self.emit(Output::Event(SpeakerEvent::PeerState {
                address,
                state: after,
                error,
            }));
        }
    }

    fn apply(
        &mut self,
        address: IpAddr,
        session: SessionId,
        action: Action,
        context: Context,
        now: Instant,
    ) {
        match action {
            Action::Connect => {
                let conn = self.next_conn;
                self.next_conn += 1;
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                let config = Box::new(peer.config.clone());
                if let Some(s) = peer.session_mut(session) {
                    s.conn = Some(conn);
                    s.inbound = false;
                }
                self.conns.insert(conn, (address, session));
                self.out.push(Output::Connect { conn, peer: config });
            }
            Action::Disconnect => {
                let Some(s) = self
                    .peers
                    .get_mut(&address)
                    .and_then(|p| p.session_mut(session))
                else {
                    return;
                };
                if let Some(conn) = s.conn.take() {
                    self.conns.remove(&conn);
                    self.out.push(Output::Close { conn });
                }
            }
            Action::Send(message) => {
                let Some(conn) = self
                    .peers
                    .get_mut(&address)
                    .and_then(|p| p.session_mut(session))
                    .and_then(|s| s.conn)
                else {
                    return;
                };
                if let Message::Notification(n) = &message
                    && let Some(peer) = self.peers.get_mut(&address)
                {
                    peer.last_error = Some(describe(n, "sent"));
                }
                let mut bytes = Vec::new();
                if message.encode(&context, &mut bytes).is_ok() {
                    self.out.push(Output::Send { conn, bytes });
                }
            }
            Action::StartTimer(timer, duration) => {
                self.emit(Output::StartTimer(TimerKey::Fsm(session, timer), duration))
            }
            Action::StopTimer(timer) => self.emit(Output::StopTimer(TimerKey::Fsm(session, timer))),
            Action::Established(negotiated) => self.established(address, *negotiated, now),
            Action::Down(reason) => self.down(address, reason, now),
        }
    }

    fn timer_expired(&mut self, key: TimerKey, now: Instant) {
        match key {
            TimerKey::Fsm(session, timer) => {
                let Some(address) = self.peers.iter().find_map(|(a, p)| {
                    let ours = p.primary.id == session
                        || p.secondary.as_ref().is_some_and(|s| s.id == session);
                    ours.then_some(*a)
                }) else {
                    return;
                };
                let event = match timer {
                    Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
                    Timer::Hold => Event::HoldTimerExpires,
                    Timer::Keepalive => Event::KeepaliveTimerExpires,
                    Timer::IdleHold => Event::IdleHoldTimerExpires,
                };
                self.fsm_event(address, session, event, now);
            }
            TimerKey::Restart(address) => {
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if peer.is_established() {
                    return;
                }
                // RFC 9494: families with a long-lived stale time are kept, least preferred.
                let long_lived = peer.long_lived.clone();
                let id = peer.id;
                if let Some(longest) = long_lived.iter().map(|(_, t)| *t).max().filter(|t| *t > 0) {
                    let keep: Vec<Family> = long_lived
                        .iter()
                        .filter(|(_, t)| *t > 0)
                        .map(|(f, _)| *f)
                        .collect();
                    self.drop_routes(id, move |p| {
                        p.flags & path_flags::STALE != 0 && !keep.contains(&family_of(p))
                    });
                    self.emit(Output::StartTimer(
                        TimerKey::LongLivedStale(address),
                        Duration::from_secs(u64::from(longest)),
                    ));
                    for (prefix, change) in self.table.flag_peer_paths(id, path_flags::LLGR_STALE) {
                        if let Some(change) = change {
                            self.report_best(prefix, change.current);
                        }
                        self.reannounce(prefix);
                    }
                } else {
                    self.sweep_stale(address, None);
                }
            }
            TimerKey::StaleRoutes(address) | TimerKey::LongLivedStale(address) => {
                self.sweep_stale(address, None)
            }
        }
    }

    fn established(&mut self, address: IpAddr, negotiated: Negotiated, _now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let external = peer.config.is_external(self.config.asn);
        let info = PeerInfo {
            external,
            router_id: negotiated.peer_open.bgp_identifier,
            address,
        };
        peer.counters = Counters {
            prefixes_accepted: peer.counters.prefixes_accepted,
            ..Counters::default()
        };
        peer.last_error = None;
        peer.max_prefix_warned = false;
        peer.graceful_restart = negotiated.graceful_restart.clone();
        peer.long_lived = negotiated
            .long_lived_graceful_restart
            .iter()
            .map(|f| (f.family, f.long_lived_stale_time))
            .collect();
        peer.eor_received.clear();
        let families = negotiated.families.clone();
        let stale = peer.stale;
        // A restarted peer that did not keep forwarding state loses its stale routes now.
        let preserved: Vec<Family> = negotiated
            .graceful_restart
            .iter()
            .flat_map(|gr| {
                gr.families
                    .iter()
                    .filter(|f| f.forwarding_preserved)
                    .map(|f| f.family)
            })
            .collect();
        peer.negotiated = Some(negotiated);
        let id = peer.id;
        self.table.set_peer(id, info);
        if stale {
            self.emit(Output::StopTimer(TimerKey::Restart(address)));
            self.emit(Output::StopTimer(TimerKey::LongLivedStale(address)));
            self.drop_routes(id, move |p| {
                p.flags & path_flags::STALE != 0 && !preserved.contains(&family_of(p))
            });
            let stale_time = self.config.stale_routes_time;
            self.emit(Output::StartTimer(
                TimerKey::StaleRoutes(address),
                stale_time,
            ));
        }
        // Our routes go out at once, then End-of-RIB: we never wait for anyone's End-of-RIB.
        self.reexport(address, None);
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.outbox.end_of_rib = families;
        }
    }

    fn down(&mut self, address: IpAddr, reason: DownReason, _now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let error = match &reason {
            DownReason::NotificationSent(n) => describe(n, "sent"),
            DownReason::NotificationReceived(n) => describe(n, "received"),
            DownReason::ConnectionLost => "connection lost".to_owned(),
        };
        peer.last_error = Some(error);
        peer.negotiated = None;
        peer.outbox = Outbox::default();
        peer.counters.prefixes_advertised = 0;
        // RFC 4724 helper: keep the routes of a peer that can restart, unless it told us to drop
        // them (a NOTIFICATION) or we are tearing the session down on purpose.
        let restart_time = peer
            .graceful_restart
            .as_ref()
            .map_or(0, |gr| gr.restart_time);
        let graceful = peer.enabled
            && (restart_time > 0 || peer.long_lived.iter().any(|(_, t)| *t > 0))
            && match &reason {
                DownReason::ConnectionLost => true,
                DownReason::NotificationSent(n) => n.code == code::HOLD_TIMER_EXPIRED,
                DownReason::NotificationReceived(_) => false,
            };
        let id = peer.id;
        if graceful {
            peer.stale = true;
            self.table.flag_peer_paths(id, path_flags::STALE);
            self.emit(Output::StopTimer(TimerKey::StaleRoutes(address)));
            self.emit(Output::StartTimer(
                TimerKey::Restart(address),
                Duration::from_secs(u64::from(restart_time.max(1))),
            ));
        } else {
            peer.stale = false;
            self.drop_routes(id, |_| true);
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

    /// Drops stale paths of `family` (all families when `None`) after End-of-RIB or a timer.
    fn sweep_stale(&mut self, address: IpAddr, family: Option<Family>) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let id = peer.id;
        if family.is_none() {
            peer.stale = false;
        }
        self.drop_routes(id, |p| {
            p.flags & (path_flags::STALE | path_flags::LLGR_STALE) != 0
                && family.is_none_or(|f| family_of(p) == f)
        });
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if let Some(negotiated) = &peer.negotiated
            && negotiated
                .families
                .iter()
                .all(|f| peer.eor_received.contains(f))
        {
            peer.stale = false;
            self.emit(Output::StopTimer(TimerKey::StaleRoutes(address)));
        }
    }

    fn update(&mut self, address: IpAddr, update: Update, now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.counters.updates_received += 1;
        if let Some(family) = update.end_of_rib_family() {
            peer.eor_received.insert(family);
            let stale = peer.stale;
            self.emit(Output::Event(SpeakerEvent::EndOfRib { address, family }));
            if stale {
                self.sweep_stale(address, Some(family));
            }
            return;
        }
        let id = peer.id;
        let withdraw_all = update.treat_as_withdraw();
        let rules_peer = peer.config.clone();
        let external = rules_peer.is_external(self.config.asn);

        let mut withdrawn: Vec<Nlri> = update.withdrawn;
        if let Some(unreach) = update.mp_unreach {
            withdrawn.extend(unreach.withdrawn);
        }
        let mut announced: Vec<(Nlri, NextHop)> = Vec::new();
        let mut attributes = update.attributes;
        if let Some(next_hop) = attributes.next_hop.take() {
            announced.extend(update.nlri.iter().map(|n| (*n, NextHop::V4(next_hop))));
        } else {
            withdrawn.extend(update.nlri.iter().copied());
        }
        if let Some(reach) = update.mp_reach {
            announced.extend(reach.nlri.iter().map(|n| (*n, reach.next_hop)));
        }
        if withdraw_all {
            withdrawn.extend(announced.drain(..).map(|(n, _)| n));
        }
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.counters.prefixes_received += announced.len() as u64;
        }

        let mut accepted_delta: isize = 0;
        for nlri in withdrawn {
            let edit = self
                .table
                .remove(nlri.prefix, id, nlri.path_id.unwrap_or(0));
            accepted_delta -= edit.count as isize;
            if let Some(change) = edit.change {
                self.propagate(nlri.prefix, change);
            }
        }
        let mut interned: Option<(NextHop, Attributes)> = None;
        for (nlri, next_hop) in announced {
            let shared = match &interned {
                Some((hop, shared)) if *hop == next_hop => shared.clone(),
                _ => {
                    let shared = self.interner.intern(RouteAttributes {
                        attributes: attributes.clone(),
                        next_hop,
                    });
                    interned = Some((next_hop, shared.clone()));
                    shared
                }
            };
            let rules = ImportRules {
                speaker: &self.config,
                peer_asn: rules_peer.asn,
                external,
                allowas_in: rules_peer.allowas_in,
                filter: rules_peer.import.as_ref(),
            };
            let path_id = nlri.path_id.unwrap_or(0);
            let edit = if policy::import(nlri.prefix, &shared, &rules).is_ok() {
                let edit = self.table.insert(
                    nlri.prefix,
                    Path {
                        attributes: shared,
                        peer: id,
                        path_id,
                        flags: 0,
                    },
                );
                accepted_delta += edit.count as isize;
                edit
            } else {
                let edit = self.table.remove(nlri.prefix, id, path_id);
                accepted_delta -= edit.count as isize;
                edit
            };
            if let Some(change) = edit.change {
                self.churn += 1;
                self.propagate(nlri.prefix, change);
            }
        }
        attributes = PathAttributes::default();
        drop(attributes);

        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.counters.prefixes_accepted = peer
            .counters
            .prefixes_accepted
            .saturating_add_signed(accepted_delta);
        let count = peer.counters.prefixes_accepted;
        if let Some(max) = peer.config.max_prefix.filter(|m| count > m.limit as usize) {
            let warned = std::mem::replace(&mut peer.max_prefix_warned, true);
            let session = peer.primary.id;
            if !warned {
                self.emit(Output::Event(SpeakerEvent::MaxPrefixExceeded {
                    address,
                    count,
                    limit: max.limit,
                }));
            }
            if let MaxPrefixAction::Restart(delay) = max.action {
                // RFC 4486: Cease, maximum number of prefixes reached, with AFI/SAFI and limit.
                let mut data = vec![0, 1, 1];
                data.extend_from_slice(&max.limit.to_be_bytes());
                let notification =
                    Notification::new(code::CEASE, cease_subcode::MAXIMUM_PREFIXES_REACHED, data);
                self.fsm_event(address, session, Event::MessageError(notification), now);
                // The next attempt waits for the configured delay, not the damping time.
                let key = TimerKey::Fsm(session, Timer::IdleHold);
                if self.timers.contains(&key) {
                    self.emit(Output::StartTimer(key, delay));
                }
            }
        }
    }

    fn route_refresh(&mut self, address: IpAddr, refresh: RouteRefresh) {
        if refresh.subtype != RefreshSubtype::Request {
            return;
        }
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(negotiated) = &peer.negotiated else {
            return;
        };
        if !negotiated.families.contains(&refresh.family) {
            return;
        }
        let enhanced = negotiated.enhanced_route_refresh;
        let context = negotiated.context;
        if let (true, Some(conn)) = (enhanced, peer.primary.conn) {
            let begin = RouteRefresh {
                family: refresh.family,
                subtype: RefreshSubtype::Begin,
            };
            if let Ok(bytes) = Message::RouteRefresh(begin).to_bytes(&context) {
                self.out.push(Output::Send { conn, bytes });
            }
            peer.outbox.refresh_end.push(refresh.family);
        }
        self.reexport_family(address, Some(refresh.family));
    }

    /// Queues every route the peer should have; with `old`, withdraws what the old policy sent
    /// and the new one does not.
    fn reexport(&mut self, address: IpAddr, old: Option<&PeerConfig>) {
        if let Some(old) = old {
            let mut withdraw = Vec::new();
            let mut announce = Vec::new();
            let Some(peer) = self.peers.get(&address) else {
                return;
            };
            self.table.for_each_best(|prefix, paths| {
                let Some(best) = paths.first() else { return };
                let now_ok = self.exportable(prefix, best, peer, &peer.config);
                let was_ok = self.exportable(prefix, best, peer, old);
                if now_ok {
                    announce.push((prefix, best.clone()));
                } else if was_ok {
                    withdraw.push(prefix);
                }
            });
            let Some(peer) = self.peers.get_mut(&address) else {
                return;
            };
            for prefix in withdraw {
                peer.outbox.announce.remove(&prefix);
                peer.outbox.withdraw.insert(prefix);
            }
            for (prefix, path) in announce {
                peer.outbox.withdraw.remove(&prefix);
                peer.outbox.announce.insert(prefix, path);
            }
        } else {
            self.reexport_family(address, None);
        }
    }

    fn reexport_family(&mut self, address: IpAddr, family: Option<Family>) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let mut announce = Vec::new();
        self.table.for_each_best(|prefix, paths| {
            if family.is_some_and(|f| family_of_prefix(prefix) != f) {
                return;
            }
            if let Some(best) = paths.first()
                && self.exportable(prefix, best, peer, &peer.config)
            {
                announce.push((prefix, best.clone()));
            }
        });
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        for (prefix, path) in announce {
            peer.outbox.withdraw.remove(&prefix);
            peer.outbox.announce.insert(prefix, path);
        }
    }

    fn source_of(&self, path: &Path) -> ExportSource {
        if path.peer == PeerId::LOCAL {
            return ExportSource {
                local: true,
                external: false,
                route_reflector_client: false,
                router_id: self.config.router_id,
            };
        }
        let peer = self.ids.get(&path.peer).and_then(|a| self.peers.get(a));
        ExportSource {
            local: false,
            external: peer.is_some_and(|p| p.config.is_external(self.config.asn)),
            route_reflector_client: peer.is_some_and(|p| p.config.route_reflector_client),
            router_id: peer
                .and_then(|p| p.negotiated.as_ref())
                .map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| {
                    n.peer_open.bgp_identifier
                }),
        }
    }

    fn target_of<'a>(&self, peer: &'a Peer, config: &'a PeerConfig) -> ExportTarget<'a> {
        let (mut local_ipv4, mut local_ipv6, mut local_link_local) = (None, None, None);
        match peer.local.map(|l| l.ip()) {
            Some(IpAddr::V4(a)) => local_ipv4 = Some(a),
            Some(IpAddr::V6(a)) if a.is_unicast_link_local() => local_link_local = Some(a),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => local_ipv4 = Some(v4),
                None => local_ipv6 = Some(a),
            },
            None => {}
        }
        local_ipv4 = local_ipv4.or(config.next_hop_ipv4);
        local_ipv6 = local_ipv6.or(config.next_hop_ipv6);
        ExportTarget {
            asn: config.asn,
            external: config.is_external(self.config.asn),
            route_reflector_client: config.route_reflector_client,
            next_hop_self: config.next_hop_self,
            keep_original_next_hop: config.keep_original_next_hop,
            local_ipv4,
            local_ipv6,
            local_link_local,
            add_communities: &config.add_communities,
            filter: config.export.as_ref(),
        }
    }

    fn exportable(&self, prefix: IpNetwork, path: &Path, peer: &Peer, config: &PeerConfig) -> bool {
        if path.peer == peer.id {
            return false;
        }
        let family = family_of_prefix(prefix);
        let negotiated = peer.negotiated.as_ref();
        if !negotiated.is_some_and(|n| n.families.contains(&family)) {
            return false;
        }
        // Long-lived stale routes only go to peers that understand them (RFC 9494 section 4.5).
        if path.flags & path_flags::LLGR_STALE != 0
            && negotiated.is_some_and(|n| n.long_lived_graceful_restart.is_empty())
        {
            return false;
        }
        policy::may_export(
            prefix,
            &path.attributes,
            &self.source_of(path),
            &self.target_of(peer, config),
        )
    }

    /// Sends every established peer the current best of `prefix` again, or withdraws it where
    /// it may no longer go (a path turned long-lived stale).
    fn reannounce(&mut self, prefix: IpNetwork) {
        let best = self.table.paths(prefix).first().cloned();
        let targets: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_established())
            .map(|(a, _)| *a)
            .collect();
        for address in targets {
            let Some(peer) = self.peers.get(&address) else {
                continue;
            };
            let send = best
                .as_ref()
                .filter(|p| self.exportable(prefix, p, peer, &peer.config))
                .cloned();
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            match send {
                Some(path) => {
                    peer.outbox.withdraw.remove(&prefix);
                    peer.outbox.announce.insert(prefix, path);
                }
                None => {
                    peer.outbox.announce.remove(&prefix);
                    peer.outbox.withdraw.insert(prefix);
                }
            }
        }
    }

    fn report_best(&mut self, prefix: IpNetwork, best: Option<Best>) {
        if !self.report_best_paths {
            return;
        }
        let sources = best
            .iter()
            .flat_map(|b| b.paths.iter())
            .map(|p| self.ids.get(&p.peer).copied())
            .collect();
        self.out.push(Output::Event(SpeakerEvent::BestPath {
            prefix,
            best,
            sources,
        }));
    }

    /// Tells subscribers and queues the change for every established peer.
    fn propagate(&mut self, prefix: IpNetwork, change: Change) {
        let current = change
            .current
            .as_ref()
            .and_then(|b| b.paths.first())
            .cloned();
        for index in 0..self.established.len() {
            let Some(address) = self.established.get(index).copied() else {
                break;
            };
            let announce = current
                .as_ref()
                .filter(|p| self.exportable_cached(prefix, p, address))
                .cloned();
            let withdraw = announce.is_none()
                && change
                    .previous
                    .as_ref()
                    .is_some_and(|p| self.exportable_cached(prefix, p, address));
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            if let Some(path) = announce {
                peer.outbox.withdraw.remove(&prefix);
                peer.outbox.announce.insert(prefix, path);
            } else if withdraw {
                peer.outbox.announce.remove(&prefix);
                peer.outbox.withdraw.insert(prefix);
            }
        }
        self.report_best(prefix, change.current);
    }

    /// [`Core::exportable`], remembering the last answer per attributes, source and target when
    /// the target has no prefix filter (only then does the answer not depend on the prefix).
    fn exportable_cached(&mut self, prefix: IpNetwork, path: &Path, address: IpAddr) -> bool {
        let Some(peer) = self.peers.get(&address) else {
            return false;
        };
        if peer.config.export.is_some() {
            return self.exportable(prefix, path, peer, &peer.config);
        }
        let family = family_of_prefix(prefix);
        if let Some((key, answer)) = &self.export_cache
            && key.matches(path, family, address)
        {
            return *answer;
        }
        let answer = self.exportable(prefix, path, peer, &peer.config);
        let key = ExportKey {
            attributes: path.attributes.clone(),
            source: path.peer,
            flags: path.flags,
            family,
            target: address,
        };
        self.export_cache = Some((key, answer));
        answer
    }

    /// Turns every peer's outbox into packed UPDATEs.
    fn flush(&mut self) {
        let ready: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                let o = &p.outbox;
                p.is_established()
                    && (!o.announce.is_empty()
                        || !o.withdraw.is_empty()
                        || !o.end_of_rib.is_empty()
                        || !o.refresh_end.is_empty())
            })
            .map(|(a, _)| *a)
            .collect();
        // Update groups: peers that would be sent the same bytes (same export policy, session
        // context and our address on the session) and have the same changes pending are
        // encoded for once.
        let mut groups: HashMap<GroupKey, Vec<IpAddr>> = HashMap::new();
        for address in ready {
            if let Some(key) = self.group_key(address) {
                groups.entry(key).or_default().push(address);
            }
        }
        for members in groups.into_values() {
            let mut encoded: Vec<(Outbox, Encoded)> = Vec::new();
            for address in members {
                let Some(peer) = self.peers.get_mut(&address) else {
                    continue;
                };
                let outbox = std::mem::take(&mut peer.outbox);
                let result = match encoded.iter().find(|(o, _)| same_outbox(o, &outbox)) {
                    Some((_, done)) => done.clone(),
                    None => {
                        let done = self.encode_outbox(address, &outbox);
                        encoded.push((outbox, done.clone()));
                        done
                    }
                };
                self.send_encoded(address, result);
            }
        }
    }

    fn group_key(&self, address: IpAddr) -> Option<GroupKey> {
        let peer = self.peers.get(&address)?;
        let negotiated = peer.negotiated.as_ref()?;
        let target = self.target_of(peer, &peer.config);
        Some(GroupKey {
            asn: target.asn,
            external: target.external,
            route_reflector_client: target.route_reflector_client,
            next_hop_self: target.next_hop_self,
            keep_original_next_hop: target.keep_original_next_hop,
            local: (
                target.local_ipv4,
                target.local_ipv6,
                target.local_link_local,
            ),
            add_communities: target.add_communities.to_vec(),
            filter: target.filter.cloned(),
            context: negotiated.context,
            families: negotiated.families.clone(),
            long_lived: !negotiated.long_lived_graceful_restart.is_empty(),
        })
    }

    fn send_encoded(&mut self, address: IpAddr, encoded: Encoded) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.counters.updates_sent += encoded.messages as u64;
        peer.counters.prefixes_advertised += encoded.advertised;
        if let (Some(conn), false) = (peer.primary.conn, encoded.bytes.is_empty()) {
            self.out.push(Output::Send {
                conn,
                bytes: encoded.bytes,
            });
        }
    }

    /// Encodes a peer's pending changes into packed UPDATEs (and markers).
    fn encode_outbox(&self, address: IpAddr, outbox: &Outbox) -> Encoded {
        let Some(peer) = self.peers.get(&address) else {
            return Encoded::default();
        };
        let Some(negotiated) = peer.negotiated.as_ref() else {
            return Encoded::default();
        };
        let context = negotiated.context;
        let builder = UpdateBuilder::new(&context);
        let mut bytes = Vec::new();
        let mut messages = 0usize;

        let mut withdrawals: HashMap<Family, Vec<Nlri>> = HashMap::new();
        for prefix in &outbox.withdraw {
            withdrawals
                .entry(family_of_prefix(*prefix))
                .or_default()
                .push(Nlri::new(*prefix));
        }
        for (family, routes) in &withdrawals {
            messages += builder.withdraw(*family, routes, &mut bytes).unwrap_or(0);
        }

        // Group by source attributes, then export each group's attributes once.
        let mut groups: HashMap<(*const RouteAttributes, PeerId, Family), (Path, Vec<Nlri>)> =
            HashMap::new();
        for (prefix, path) in &outbox.announce {
            let key = (
                Arc::as_ptr(&path.attributes),
                path.peer,
                family_of_prefix(*prefix),
            );
            groups
                .entry(key)
                .or_insert_with(|| (path.clone(), Vec::new()))
                .1
                .push(Nlri {
                    path_id: context.add_path_send.contains(key.2).then_some(1),
                    prefix: *prefix,
                });
        }
        let target = self.target_of(peer, &peer.config);
        let mut advertised = 0u64;
        for ((_, _, family), (path, routes)) in &groups {
            let source = self.source_of(path);
            let Some(first) = routes.first() else {
                continue;
            };
            let mut exported = policy::export_attributes(
                first.prefix,
                &path.attributes,
                &source,
                &target,
                &self.config,
            );
            if path.flags & path_flags::LLGR_STALE != 0
                && !exported
                    .attributes
                    .communities
                    .contains(&Community::LLGR_STALE)
            {
                exported.attributes.communities.push(Community::LLGR_STALE);
            }
            match builder.announce(
                *family,
                &exported.attributes,
                exported.next_hop,
                routes,
                &mut bytes,
            ) {
                Ok(count) => {
                    messages += count;
                    advertised += routes.len() as u64;
                }
                Err(_) => continue,
            }
        }
        let mut markers = outbox.end_of_rib.clone();
        markers.sort();
        for family in markers {
            let _ = Message::Update(Update::end_of_rib(family)).encode(&context, &mut bytes);
            messages += 1;
        }
        for family in &outbox.refresh_end {
            let end = RouteRefresh {
                family: *family,
                subtype: RefreshSubtype::End,
            };
            let _ = Message::RouteRefresh(end).encode(&context, &mut bytes);
        }
        Encoded {
            bytes,
            messages,
            advertised,
        }
    }

    fn shutdown(&mut self, graceful: bool, now: Instant) {
        let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
        for address in addresses {
            if graceful {
                let Some(peer) = self.peers.get_mut(&address) else {
                    continue;
                };
                peer.enabled = false;
                for conn in [
                    peer.primary.conn.take(),
                    peer.secondary.as_mut().and_then(|s| s.conn.take()),
                ]
                .into_iter()
                .flatten()
                {
                    self.conns.remove(&conn);
                    self.out.push(Output::Close { conn });
                }
            } else {
                self.remove_peer(address, now);
            }
        }
        let timers: Vec<TimerKey> = self.timers.iter().copied().collect();
        for key in timers {
            self.emit(Output::StopTimer(key));
        }
    }
}

fn family_of_prefix(prefix: IpNetwork) -> Family {
    match prefix {
        IpNetwork::V4(_) => Family::IPV4_UNICAST,
        IpNetwork::V6(_) => Family::IPV6_UNICAST,
    }
}

fn family_of(path: &Path) -> Family {
    match path.attributes.next_hop {
        NextHop::V4(_) => Family::IPV4_UNICAST,
        NextHop::V6 { .. } => Family::IPV6_UNICAST,
    }
}

/// A NOTIFICATION as an operator reads it.
fn describe(n: &Notification, direction: &str) -> String {
    let what = match (n.code, n.subcode) {
        (code::HOLD_TIMER_EXPIRED, _) => "hold timer expired".to_owned(),
        (code::CEASE, s) => {
            let why = match s {
                cease_subcode::MAXIMUM_PREFIXES_REACHED => "maximum prefixes reached",
                cease_subcode::ADMINISTRATIVE_SHUTDOWN => "administrative shutdown",
                cease_subcode::PEER_DECONFIGURED => "peer de-configured",
                cease_subcode::ADMINISTRATIVE_RESET => "administrative reset",
                cease_subcode::CONNECTION_REJECTED => "connection rejected",
                cease_subcode::CONNECTION_COLLISION_RESOLUTION => "connection collision resolution",
                _ => "cease",
            };
            match n.shutdown_message() {
                Some(text) => format!("{why}: {text}"),
                None => why.to_owned(),
            }
        }
        (c, s) => format!("error {c}/{s}"),
    };
    format!("NOTIFICATION {direction}: {what}")
}
