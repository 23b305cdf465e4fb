//! Configured peers and their sessions: adding, changing, resetting and removing peers; inbound
//! and outbound connections; feeding each session machine its events (RFC 4271 section 8) and
//! carrying out its actions; connection collisions (RFC 4271 section 6.8): while the primary
//! session is past Active a peer may have a second, inbound one, and once either has seen the
//! peer's OPEN, the one initiated by the side with the lower BGP identifier is dumped; what
//! happens when a session comes up or goes down.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;

use super::{
    ConnId, Core, Counters, LinkAddress, MAX_LINK_ADDRESSES, Outbox, Output, Peer, Session,
    SessionId, SpeakerEvent, TimerKey, append,
};
use crate::fsm::{self, Action, DownReason, Event, Fsm, Negotiated, State, Timer};
use crate::rib::table::{PeerId, PeerInfo};
use crate::speaker::config::PeerConfig;
use crate::wire::{
    Capability, Context, Error as WireError, Family, GracefulRestart, GracefulRestartFamily,
    LongLivedGracefulRestartFamily, Message, Notification, RouteRefresh, cease_subcode, code,
};

impl Core {
    pub(super) fn fsm_config(&self, peer: &PeerConfig, passive: bool) -> fsm::Config {
        let mut config = fsm::Config::new(self.config.asn, self.config.router_id, peer.asn);
        config.hold_time = peer.hold_time;
        config.connect_retry = peer.connect_retry;
        config.passive = passive;
        if let Some(restart_time) = self
            .config
            .graceful_restart_time
            .map(|time| peer.max_restart_time.unwrap_or(time))
        {
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

    pub(super) fn new_session(&mut self, config: fsm::Config, inbound: bool) -> Session {
        let id = self.next_session;
        self.next_session += 1;
        Session {
            id,
            fsm: Fsm::new(config),
            conn: None,
            inbound,
            link: Vec::new(),
        }
    }

    pub(super) fn add_peer(&mut self, config: PeerConfig, now: Instant) {
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
            max_prefix_threshold_warned: false,
            enabled: true,
        };
        let session = peer.primary.id;
        self.ids.insert(id, address);
        self.peers.insert(address, peer);
        self.fsm_event(address, session, Event::ManualStart, now);
    }

    pub(super) fn update_peer(&mut self, config: PeerConfig, now: Instant) {
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

    pub(super) fn remove_peer(&mut self, address: IpAddr, now: Instant) {
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

    pub(super) fn reset_peer(&mut self, address: IpAddr, hard: bool, now: Instant) {
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
            let mut failed = 0;
            for family in &families {
                let message = Message::RouteRefresh(RouteRefresh::request(*family));
                if !append(&message, &Context::default(), &mut bytes, address) {
                    failed += 1;
                }
            }
            peer.counters.messages_not_encoded += failed;
            if !bytes.is_empty() {
                self.emit(Output::Send { conn, bytes });
            }
        }
        self.reexport(address, None);
    }

    /// Our outbound connection is up.
    pub(super) fn connected(&mut self, conn: ConnId, local: SocketAddr, now: Instant) {
        // A connection we gave up on (an inbound one won meanwhile) is closed at once.
        let Some((address, session)) = self.conns.get(&conn).copied() else {
            self.out.push(Output::Close { conn });
            return;
        };
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.local = Some(local);
        }
        self.fsm_event(address, session, Event::TcpConnected, now);
    }

    /// The addresses of the interface a connection runs over.
    pub(super) fn link_addresses(&mut self, conn: ConnId, mut addresses: Vec<LinkAddress>) {
        let Some((address, session)) = self.conns.get(&conn).copied() else {
            return;
        };
        addresses.truncate(MAX_LINK_ADDRESSES);
        if let Some(s) = self
            .peers
            .get_mut(&address)
            .and_then(|p| p.session_mut(session))
            && s.conn == Some(conn)
        {
            s.link = addresses;
        }
    }

    /// A connection closed, failed, or could not be made.
    pub(super) fn closed(&mut self, conn: ConnId, now: Instant) {
        let Some((address, session)) = self.conns.remove(&conn) else {
            return;
        };
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

    /// What arrived could not be decoded: the session machine sends the NOTIFICATION.
    pub(super) fn decode_error(&mut self, conn: ConnId, error: WireError, now: Instant) {
        if let Some((address, session)) = self.conns.get(&conn).copied() {
            let event = Event::MessageError(error.notification);
            self.fsm_event(address, session, event, now);
        }
    }

    /// The peer stopped reading (see [`super::Input::SendStalled`]).
    pub(super) fn send_stalled(&mut self, conn: ConnId, now: Instant) {
        if let Some((address, session)) = self.conns.get(&conn).copied() {
            let cease = Notification::cease(cease_subcode::OUT_OF_RESOURCES);
            self.fsm_event(address, session, Event::MessageError(cease), now);
        }
    }

    /// The kernel refused the peer's MD5 key (see [`super::Input::PasswordRefused`]): every
    /// session stops and stays down, and subscribers hear why.
    pub(super) fn password_refused(&mut self, address: IpAddr, error: String, now: Instant) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let sessions: Vec<SessionId> = std::iter::once(peer.primary.id)
            .chain(peer.secondary.as_ref().map(|s| s.id))
            .collect();
        for session in sessions {
            self.fsm_event(address, session, Event::ManualStop { message: None }, now);
        }
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let error = format!("TCP MD5 key refused by the kernel: {error}");
        peer.last_error = Some(error.clone());
        let state = peer.primary.fsm.state();
        self.emit(Output::Event(SpeakerEvent::PeerState {
            address,
            state,
            error: Some(error),
        }));
    }

    pub(super) fn accepted(
        &mut self,
        conn: ConnId,
        address: IpAddr,
        local: SocketAddr,
        now: Instant,
    ) {
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

    pub(super) fn received(&mut self, conn: ConnId, message: Message, now: Instant) {
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
    pub(super) fn resolve_collision(&mut self, address: IpAddr, now: Instant) {
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
    pub(super) fn fsm_event(
        &mut self,
        address: IpAddr,
        session: SessionId,
        event: Event,
        now: Instant,
    ) {
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

    pub(super) fn apply(
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
                if append(&message, &context, &mut bytes, address) {
                    self.out.push(Output::Send { conn, bytes });
                } else if let Some(peer) = self.peers.get_mut(&address) {
                    peer.counters.messages_not_encoded += 1;
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

    /// A session machine's timer fired.
    pub(super) fn fsm_timer_expired(&mut self, session: SessionId, timer: Timer, now: Instant) {
        let Some(address) = self.peers.iter().find_map(|(a, p)| {
            let ours =
                p.primary.id == session || p.secondary.as_ref().is_some_and(|s| s.id == session);
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

    /// The session reached Established: the peer's routes and ours start to flow.
    pub(super) fn established(&mut self, address: IpAddr, negotiated: Negotiated, _now: Instant) {
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
        peer.max_prefix_threshold_warned = false;
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
            self.restarted(address, id, preserved);
        }
        self.warn_missing_next_hops(address);
        // Our routes go out at once, then End-of-RIB: we never wait for anyone's End-of-RIB.
        self.reexport(address, None);
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.outbox.end_of_rib = families;
        }
    }

    /// The session left Established (or failed before): why, and what becomes of its routes.
    pub(super) fn down(&mut self, address: IpAddr, reason: DownReason, _now: Instant) {
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
        self.keep_or_drop_routes(address, &reason);
    }

    /// Stops every session; see [`super::Input::Shutdown`].
    pub(super) fn shutdown(&mut self, graceful: bool, now: Instant) {
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
                cease_subcode::OUT_OF_RESOURCES => "out of resources",
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
