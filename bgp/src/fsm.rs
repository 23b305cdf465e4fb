//! One connection's BGP finite state machine (RFC 4271 section 8), sans-IO.
//!
//! The machine takes [`Event`]s (named after RFC 4271 section 8.1) with the current time and
//! returns [`Action`]s: connect, disconnect, send a message, start or stop a timer, session up,
//! session down. It owns no socket and reads no clock, so every transition is a plain unit test;
//! times are [`tokio::time::Instant`]s so that the runtime can hand it tokio's clock, which
//! tests may pause and advance.
//!
//! Beyond the RFC's mandatory parts it implements:
//! - connect-retry with exponential backoff and jitter (RFC 4271 section 10 asks for jitter);
//! - an idle hold time after an error that doubles while the peer keeps failing, so a flapping
//!   peer is damped (RFC 4271 section 8.1.1, DampPeerOscillations), and resets once a session
//!   stayed up for a while;
//! - capability negotiation (RFC 5492) with the precise NOTIFICATION for each failure: bad peer
//!   AS, bad BGP identifier (RFC 6286), unacceptable hold time, unsupported capability;
//! - the RFC 8203 shutdown communication on an administrative stop.
//!
//! Connection collisions (section 6.8) involve two connections, so they are resolved by the peer
//! that owns two machines, which sends [`Event::OpenCollisionDump`] to the loser.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::{
    AddPathFamily, Afi, Capability, Context, Families, Family, GracefulRestart,
    LongLivedGracefulRestartFamily, Message, Notification, Open, cease_subcode, code, open_subcode,
};

/// The hold time used while waiting for the peer's OPEN (RFC 4271 section 8: "a large value,
/// 4 minutes is suggested").
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// FSM Error subcodes (RFC 6608).
mod fsm_subcode {
    pub(super) const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub(super) const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub(super) const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// The session states of RFC 4271 section 8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refusing connections; waiting for a start.
    Idle,
    /// Waiting for our outgoing TCP connection.
    Connect,
    /// Listening for the peer's connection.
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Exchanging UPDATEs.
    Established,
}

impl State {
    /// The name operators know from BIRD and FRR.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// The machine's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// ConnectRetryTimer: when to try connecting again.
    ConnectRetry,
    /// HoldTimer: the peer must send something before it fires.
    Hold,
    /// KeepaliveTimer: when to send our next KEEPALIVE.
    Keepalive,
    /// IdleHoldTimer: how long to stay in Idle after an error before starting again.
    IdleHold,
}

/// Inputs (RFC 4271 section 8.1; numbers in parentheses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ManualStart (1), or with passive TCP establishment (4) when the peer is passive.
    ManualStart,
    /// ManualStop (2), with an optional RFC 8203 shutdown communication.
    ManualStop {
        /// Text for the peer's operator.
        message: Option<String>,
    },
    /// ConnectRetryTimer_Expires (9).
    ConnectRetryTimerExpires,
    /// HoldTimer_Expires (10).
    HoldTimerExpires,
    /// KeepaliveTimer_Expires (11).
    KeepaliveTimerExpires,
    /// IdleHoldTimer_Expires (13): the automatic restart after an error.
    IdleHoldTimerExpires,
    /// Tcp_CR_Acked (16) or TcpConnectionConfirmed (17): a TCP connection is up.
    TcpConnected,
    /// TcpConnectionFails (18).
    TcpConnectionFails,
    /// BGPOpen (19): the peer's OPEN.
    OpenReceived(Open),
    /// BGPHeaderErr (21), BGPOpenMsgErr (22) or UpdateMsgErr (28) that resets the session: the
    /// NOTIFICATION to send.
    MessageError(Notification),
    /// OpenCollisionDump (23): collision resolution chose to close this connection.
    OpenCollisionDump,
    /// NotifMsg (25) or NotifMsgVerErr (24).
    NotificationReceived(Notification),
    /// KeepAliveMsg (26).
    KeepaliveReceived,
    /// UpdateMsg (27), or a ROUTE-REFRESH: anything that proves the peer alive.
    UpdateReceived,
}

/// Outputs for the runtime to carry out, in order.
// Few actions exist at a time, and the machine sends only OPEN, KEEPALIVE and NOTIFICATION.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close the TCP connection (after sending what was queued).
    Disconnect,
    /// Send a message.
    Send(Message),
    /// Start (or restart) a timer.
    StartTimer(Timer, Duration),
    /// Stop a timer.
    StopTimer(Timer),
    /// The session reached Established with these negotiated parameters.
    Established(Box<Negotiated>),
    /// The session left Established (routes from it must be handled, e.g. kept as stale).
    Down(DownReason),
}

/// Why an Established session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// The TCP connection failed without a NOTIFICATION.
    ConnectionLost,
}

/// What this side of a session is configured to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our AS.
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The AS the peer must announce.
    pub peer_asn: u32,
    /// The hold time we propose: 0, or at least 3 seconds.
    pub hold_time: u16,
    /// The first connect retry interval; it doubles per failure up to `max_connect_retry`.
    pub connect_retry: Duration,
    /// The longest connect retry interval.
    pub max_connect_retry: Duration,
    /// The first idle hold time after an error; it doubles per consecutive failure.
    pub idle_hold: Duration,
    /// The longest idle hold time.
    pub max_idle_hold: Duration,
    /// Never connect; wait for the peer (Calico's passive side of a mesh pair).
    pub passive: bool,
    /// Capabilities we advertise (4-octet AS is added on its own).
    pub capabilities: Vec<Capability>,
    /// Capability codes the peer must advertise, or the session is refused.
    pub required_capabilities: Vec<u8>,
    /// Seed for the jitter, so runs are reproducible in tests.
    pub jitter_seed: u64,
}

impl Config {
    /// A configuration with tern's defaults: hold time 90 s, connect retry 5 s up to 120 s, idle
    /// hold 1 s up to 120 s, IPv4 and IPv6 unicast with route refresh.
    pub fn new(local_asn: u32, router_id: Ipv4Addr, peer_asn: u32) -> Config {
        Config {
            local_asn,
            router_id,
            peer_asn,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            max_connect_retry: Duration::from_secs(120),
            idle_hold: Duration::from_secs(1),
            max_idle_hold: Duration::from_secs(120),
            passive: false,
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::RouteRefresh,
                Capability::EnhancedRouteRefresh,
            ],
            required_capabilities: Vec::new(),
            jitter_seed: u64::from(u32::from(router_id)) << 32 | u64::from(peer_asn),
        }
    }

    /// Whether the peer is in another AS.
    pub fn is_external(&self) -> bool {
        self.local_asn != self.peer_asn
    }

    /// Our OPEN.
    pub fn open(&self) -> Open {
        Open::new(
            self.local_asn,
            self.hold_time,
            self.router_id,
            self.capabilities.clone(),
        )
    }
}

/// What both sides agreed on in their OPENs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's OPEN, as received.
    pub peer_open: Open,
    /// The hold time: the smaller of the two proposals (0 means no keepalives).
    pub hold_time: u16,
    /// The keepalive interval: a third of the hold time.
    pub keepalive: u16,
    /// The wire context for this session's UPDATEs.
    pub context: Context,
    /// Families both sides enabled (RFC 4760; IPv4 unicast when a side sent none).
    pub families: Vec<Family>,
    /// The peer accepts ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Both sides do enhanced route refresh.
    pub enhanced_route_refresh: bool,
    /// The peer's graceful restart capability.
    pub graceful_restart: Option<GracefulRestart>,
    /// The peer's long-lived graceful restart families.
    pub long_lived_graceful_restart: Vec<LongLivedGracefulRestartFamily>,
    /// The peer accepts IPv4 unicast routes with IPv6 next hops: it advertised the extended
    /// next hop capability for them (RFC 8950 section 4).
    pub ipv4_over_ipv6_next_hop: bool,
}

/// Works out the session parameters, or the NOTIFICATION that refuses the peer's OPEN.
pub fn negotiate(config: &Config, peer: &Open) -> Result<Negotiated, Notification> {
    let refuse = |subcode, data: Vec<u8>| Notification::new(code::OPEN_MESSAGE, subcode, data);
    if peer.asn() != config.peer_asn {
        return Err(refuse(
            open_subcode::BAD_PEER_AS,
            peer.my_as.to_be_bytes().to_vec(),
        ));
    }
    // RFC 6286 section 2.2: within one AS the identifiers must differ.
    if !config.is_external() && peer.bgp_identifier == config.router_id {
        return Err(refuse(
            open_subcode::BAD_BGP_IDENTIFIER,
            peer.bgp_identifier.octets().to_vec(),
        ));
    }
    let missing: Vec<u8> = config
        .required_capabilities
        .iter()
        .filter(|&&code| !peer.capabilities.iter().any(|c| c.code() == code))
        .flat_map(|&code| [code, 0])
        .collect();
    if !missing.is_empty() {
        return Err(refuse(open_subcode::UNSUPPORTED_CAPABILITY, missing));
    }

    let ours = &config.capabilities;
    let theirs = &peer.capabilities;
    let has = |caps: &[Capability], wanted: &Capability| caps.contains(wanted);
    let families_of = |caps: &[Capability]| -> Vec<Family> {
        let list: Vec<Family> = caps
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if list.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            list
        }
    };
    let their_families = families_of(theirs);
    let families: Vec<Family> = families_of(ours)
        .into_iter()
        .filter(|f| their_families.contains(f))
        .collect();

    let add_path_of = |caps: &[Capability]| -> Vec<AddPathFamily> {
        caps.iter()
            .flat_map(|c| match c {
                Capability::AddPath(list) => list.clone(),
                _ => Vec::new(),
            })
            .collect()
    };
    let (our_add_path, their_add_path) = (add_path_of(ours), add_path_of(theirs));
    let mut add_path_receive = Families::NONE;
    let mut add_path_send = Families::NONE;
    for family in &families {
        let mode =
            |list: &[AddPathFamily]| list.iter().find(|a| a.family == *family).map(|a| a.mode);
        if let (Some(our), Some(their)) = (mode(&our_add_path), mode(&their_add_path)) {
            if our.receives() && their.sends() {
                add_path_receive.insert(*family);
            }
            if our.sends() && their.receives() {
                add_path_send.insert(*family);
            }
        }
    }

    let hold_time = config.hold_time.min(peer.hold_time);
    let four_octet_as = theirs
        .iter()
        .any(|c| matches!(c, Capability::FourOctetAs(_)));
    Ok(Negotiated {
        peer_open: peer.clone(),
        hold_time,
        keepalive: hold_time / 3,
        context: Context {
            four_octet_as,
            extended_messages: has(ours, &Capability::ExtendedMessage)
                && has(theirs, &Capability::ExtendedMessage),
            add_path_receive,
            add_path_send,
            external: config.is_external(),
        },
        route_refresh: has(theirs, &Capability::RouteRefresh)
            || has(
                theirs,
                &Capability::Unknown {
                    code: 128,
                    value: Vec::new(),
                },
            ),
        enhanced_route_refresh: has(ours, &Capability::EnhancedRouteRefresh)
            && has(theirs, &Capability::EnhancedRouteRefresh),
        graceful_restart: theirs.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.clone()),
            _ => None,
        }),
        long_lived_graceful_restart: theirs
            .iter()
            .flat_map(|c| match c {
                Capability::LongLivedGracefulRestart(list) => list.clone(),
                _ => Vec::new(),
            })
            .filter(|f| families.contains(&f.family))
            .collect(),
        ipv4_over_ipv6_next_hop: theirs.iter().any(|c| match c {
            Capability::ExtendedNextHop(list) => list.iter().any(|e| {
                e.nlri_afi == Afi::IPV4 && e.nlri_safi == 1 && e.next_hop_afi == Afi::IPV6
            }),
            _ => false,
        }),
        families,
    })
}

/// One connection's state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: Config,
    state: State,
    /// Consecutive failed connection attempts, for the connect retry backoff.
    connect_retry_counter: u32,
    /// The idle hold time to use after the next error.
    idle_hold: Duration,
    /// False after ManualStop: no automatic restart.
    enabled: bool,
    negotiated: Option<Negotiated>,
    established_at: Option<Instant>,
    rng: u64,
}

impl Fsm {
    /// A machine in Idle.
    pub fn new(config: Config) -> Fsm {
        let rng = config.jitter_seed | 1;
        let idle_hold = config.idle_hold;
        Fsm {
            config,
            state: State::Idle,
            connect_retry_counter: 0,
            idle_hold,
            enabled: false,
            negotiated: None,
            established_at: None,
            rng,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What was negotiated, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The idle hold time the next error will impose.
    pub fn idle_hold(&self) -> Duration {
        self.idle_hold
    }

    /// Handles one event at time `now` and returns what to do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match (self.state, event) {
            (_, Event::ManualStop { message }) => {
                self.enabled = false;
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    let subcode = cease_subcode::ADMINISTRATIVE_SHUTDOWN;
                    let notification = match message {
                        Some(text) => Notification::shutdown(subcode, &text),
                        None => Notification::cease(subcode),
                    };
                    self.fail(&mut actions, Some(notification), None, now);
                } else {
                    self.enter_idle(&mut actions, None, now);
                }
                self.connect_retry_counter = 0;
            }
            (State::Idle, Event::ManualStart) => {
                self.enabled = true;
                self.start(&mut actions);
            }
            (State::Idle, Event::IdleHoldTimerExpires) if self.enabled => self.start(&mut actions),
            (State::Idle, _) => {}

            (State::Connect | State::Active, Event::ConnectRetryTimerExpires) => {
                if self.config.passive {
                    self.start_connect_retry(&mut actions);
                    self.state = State::Active;
                } else {
                    actions.push(Action::Disconnect);
                    self.start_connect_retry(&mut actions);
                    actions.push(Action::Connect);
                    self.state = State::Connect;
                }
            }
            (State::Connect | State::Active, Event::TcpConnected) => {
                actions.push(Action::StopTimer(Timer::ConnectRetry));
                actions.push(Action::Send(Message::Open(self.config.open())));
                actions.push(Action::StartTimer(Timer::Hold, OPEN_HOLD_TIME));
                self.state = State::OpenSent;
            }
            (State::Connect | State::Active, Event::TcpConnectionFails) => {
                self.connect_retry_counter += 1;
                self.start_connect_retry(&mut actions);
                self.state = State::Active;
            }
            // Stale timers and repeated starts change nothing here.
            (
                State::Connect | State::Active,
                Event::ManualStart
                | Event::IdleHoldTimerExpires
                | Event::HoldTimerExpires
                | Event::KeepaliveTimerExpires,
            ) => {}
            (State::Connect | State::Active, _) => {
                // Nothing else can arrive without a connection; RFC 4271 says go to Idle.
                self.fail(&mut actions, None, None, now);
            }

            (State::OpenSent, Event::OpenReceived(open)) => match negotiate(&self.config, &open) {
                Ok(negotiated) => {
                    actions.push(Action::StopTimer(Timer::ConnectRetry));
                    actions.push(Action::Send(Message::Keepalive));
                    let hold = negotiated.hold_time;
                    if hold > 0 {
                        actions.push(Action::StartTimer(
                            Timer::Keepalive,
                            Duration::from_secs(u64::from(negotiated.keepalive)),
                        ));
                        actions.push(Action::StartTimer(
                            Timer::Hold,
                            Duration::from_secs(u64::from(hold)),
                        ));
                    } else {
                        actions.push(Action::StopTimer(Timer::Hold));
                    }
                    self.negotiated = Some(negotiated);
                    self.state = State::OpenConfirm;
                }
                Err(notification) => self.fail(&mut actions, Some(notification), None, now),
            },
            (State::OpenSent, Event::TcpConnectionFails) => {
                actions.push(Action::Disconnect);
                self.connect_retry_counter += 1;
                self.start_connect_retry(&mut actions);
                actions.push(Action::StopTimer(Timer::Hold));
                self.state = State::Active;
            }

            (State::OpenConfirm, Event::KeepaliveReceived) => {
                self.restart_hold_timer(&mut actions);
                self.connect_retry_counter = 0;
                self.established_at = Some(now);
                self.state = State::Established;
                if let Some(negotiated) = &self.negotiated {
                    actions.push(Action::Established(Box::new(negotiated.clone())));
                }
            }

            (State::OpenConfirm | State::Established, Event::KeepaliveTimerExpires) => {
                actions.push(Action::Send(Message::Keepalive));
                if let Some(negotiated) = &self.negotiated {
                    actions.push(Action::StartTimer(
                        Timer::Keepalive,
                        Duration::from_secs(u64::from(negotiated.keepalive)),
                    ));
                }
            }
            (State::Established, Event::KeepaliveReceived | Event::UpdateReceived) => {
                self.restart_hold_timer(&mut actions);
            }

            (State::OpenSent | State::OpenConfirm | State::Established, event) => {
                let notification = match event {
                    Event::HoldTimerExpires => {
                        Some(Notification::new(code::HOLD_TIMER_EXPIRED, 0, []))
                    }
                    Event::MessageError(notification) => Some(notification),
                    Event::OpenCollisionDump => Some(Notification::cease(
                        cease_subcode::CONNECTION_COLLISION_RESOLUTION,
                    )),
                    Event::NotificationReceived(notification) => {
                        self.fail(&mut actions, None, Some(notification), now);
                        return actions;
                    }
                    Event::TcpConnectionFails => None,
                    // Anything else is unexpected here (RFC 6608 subcodes).
                    Event::OpenReceived(_)
                    | Event::KeepaliveReceived
                    | Event::UpdateReceived
                    | Event::ConnectRetryTimerExpires
                    | Event::KeepaliveTimerExpires
                    | Event::TcpConnected => {
                        let subcode = match self.state {
                            State::OpenSent => fsm_subcode::UNEXPECTED_IN_OPEN_SENT,
                            State::OpenConfirm => fsm_subcode::UNEXPECTED_IN_OPEN_CONFIRM,
                            _ => fsm_subcode::UNEXPECTED_IN_ESTABLISHED,
                        };
                        Some(Notification::new(code::FSM, subcode, []))
                    }
                    Event::ManualStart | Event::IdleHoldTimerExpires | Event::ManualStop { .. } => {
                        return actions;
                    }
                };
                self.fail(&mut actions, notification, None, now);
            }
        }
        actions
    }

    /// Leaves Idle: listen (passive) or connect.
    fn start(&mut self, actions: &mut Vec<Action>) {
        self.start_connect_retry(actions);
        if self.config.passive {
            self.state = State::Active;
        } else {
            actions.push(Action::Connect);
            self.state = State::Connect;
        }
    }

    /// Tears the connection down after an error, sending `sent` if given, and goes to Idle.
    fn fail(
        &mut self,
        actions: &mut Vec<Action>,
        sent: Option<Notification>,
        received: Option<Notification>,
        now: Instant,
    ) {
        if let Some(notification) = &sent {
            actions.push(Action::Send(Message::Notification(notification.clone())));
        }
        let reason = match (sent, received) {
            (Some(sent), _) => DownReason::NotificationSent(sent),
            (None, Some(received)) => DownReason::NotificationReceived(received),
            (None, None) => DownReason::ConnectionLost,
        };
        self.enter_idle(actions, Some(reason), now);
    }

    /// Enters Idle: stops every timer, drops the connection, reports the session down if it was
    /// up, and schedules the automatic restart with the damped idle hold time.
    fn enter_idle(&mut self, actions: &mut Vec<Action>, reason: Option<DownReason>, now: Instant) {
        let was = self.state;
        for timer in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ] {
            actions.push(Action::StopTimer(timer));
        }
        if was != State::Idle {
            actions.push(Action::Disconnect);
        }
        if was == State::Established {
            actions.push(Action::Down(reason.unwrap_or(DownReason::ConnectionLost)));
            // A session that stayed up longer than the damping ceiling was not flapping.
            let stable = self
                .established_at
                .is_some_and(|at| now - at >= self.config.max_idle_hold);
            if stable {
                self.idle_hold = self.config.idle_hold;
            }
        }
        self.negotiated = None;
        self.established_at = None;
        self.state = State::Idle;
        if self.enabled {
            actions.push(Action::StartTimer(Timer::IdleHold, self.idle_hold));
            self.idle_hold = (self.idle_hold * 2).min(self.config.max_idle_hold);
        }
    }

    fn restart_hold_timer(&self, actions: &mut Vec<Action>) {
        if let Some(negotiated) = self.negotiated.as_ref().filter(|n| n.hold_time > 0) {
            actions.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(negotiated.hold_time)),
            ));
        }
    }

    /// Starts the connect retry timer: the base interval doubled per consecutive failure, capped,
    /// times a jitter factor between 0.75 and 1 (RFC 4271 section 10).
    fn start_connect_retry(&mut self, actions: &mut Vec<Action>) {
        let doubled = self
            .config
            .connect_retry
            .saturating_mul(1u32 << self.connect_retry_counter.min(16))
            .min(self.config.max_connect_retry);
        // xorshift64: enough for jitter, reproducible from the seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.75 + (self.rng % 1000) as f64 / 4000.0;
        actions.push(Action::StartTimer(
            Timer::ConnectRetry,
            doubled.mul_f64(factor),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn config() -> Config {
        Config::new(65001, LOCAL, 65002)
    }

    fn peer_open() -> Open {
        Open::new(
            65002,
            30,
            REMOTE,
            vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
        )
    }

    fn timer(actions: &[Action], wanted: Timer) -> Option<Duration> {
        actions.iter().find_map(|a| match a {
            Action::StartTimer(t, d) if *t == wanted => Some(*d),
            _ => None,
        })
    }

    fn sent(actions: &[Action]) -> Vec<&Message> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn sent_notification(actions: &[Action]) -> Option<&Notification> {
        sent(actions).into_iter().find_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
    }

    /// Drives a machine to the given state through the normal path.
    fn machine_in(state: State) -> (Fsm, Instant) {
        let now = Instant::now();
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now);
        if state == State::Connect {
            return (fsm, now);
        }
        fsm.handle(Event::TcpConnected, now);
        if state == State::OpenSent {
            return (fsm, now);
        }
        fsm.handle(Event::OpenReceived(peer_open()), now);
        if state == State::OpenConfirm {
            return (fsm, now);
        }
        fsm.handle(Event::KeepaliveReceived, now);
        assert_eq!(fsm.state(), State::Established);
        (fsm, now)
    }

    #[test]
    fn manual_start_on_an_active_peer_connects_and_starts_the_connect_retry_timer() {
        let mut fsm = Fsm::new(config());
        let actions = fsm.handle(Event::ManualStart, Instant::now());
        assert_eq!(fsm.state(), State::Connect);
        assert!(actions.contains(&Action::Connect));
        let retry = timer(&actions, Timer::ConnectRetry).unwrap();
        assert!(retry >= Duration::from_millis(3750) && retry <= Duration::from_secs(5));
    }

    #[test]
    fn manual_start_on_a_passive_peer_listens_without_connecting() {
        let mut fsm = Fsm::new(Config {
            passive: true,
            ..config()
        });
        let actions = fsm.handle(Event::ManualStart, Instant::now());
        assert_eq!(fsm.state(), State::Active);
        assert!(!actions.contains(&Action::Connect));
    }

    #[test]
    fn a_passive_peer_never_connects_when_its_retry_timer_fires() {
        let mut fsm = Fsm::new(Config {
            passive: true,
            ..config()
        });
        let now = Instant::now();
        fsm.handle(Event::ManualStart, now);
        let actions = fsm.handle(Event::ConnectRetryTimerExpires, now);
        assert_eq!(fsm.state(), State::Active);
        assert!(!actions.contains(&Action::Connect));
    }

    #[test]
    fn events_other_than_start_are_ignored_in_idle() {
        let mut fsm = Fsm::new(config());
        let now = Instant::now();
        for event in [
            Event::TcpConnected,
            Event::KeepaliveReceived,
            Event::HoldTimerExpires,
        ] {
            assert!(fsm.handle(event, now).is_empty());
            assert_eq!(fsm.state(), State::Idle);
        }
    }

    #[test]
    fn connect_retry_expiry_in_connect_drops_and_reconnects() {
        let (mut fsm, now) = machine_in(State::Connect);
        let actions = fsm.handle(Event::ConnectRetryTimerExpires, now);
        assert_eq!(fsm.state(), State::Connect);
        assert_eq!(actions.first(), Some(&Action::Disconnect));
        assert!(actions.contains(&Action::Connect));
    }

    #[test]
    fn a_failed_connection_backs_off_exponentially_with_jitter() {
        let (mut fsm, now) = machine_in(State::Connect);
        let mut previous = Duration::ZERO;
        for attempt in 1..=6u32 {
            let actions = fsm.handle(Event::TcpConnectionFails, now);
            assert_eq!(fsm.state(), State::Active);
            let retry = timer(&actions, Timer::ConnectRetry).unwrap();
            let base = Duration::from_secs(5 * 2u64.pow(attempt)).min(Duration::from_secs(120));
            assert!(
                retry <= base && retry >= base.mul_f64(0.75),
                "attempt {attempt}: {retry:?}"
            );
            assert!(retry >= previous.mul_f64(0.75));
            previous = retry;
            fsm.handle(Event::ConnectRetryTimerExpires, now);
        }
    }

    #[test]
    fn a_tcp_connection_in_connect_sends_open_and_waits_four_minutes_for_the_peers() {
        let (mut fsm, now) = machine_in(State::Connect);
        let actions = fsm.handle(Event::TcpConnected, now);
        assert_eq!(fsm.state(), State::OpenSent);
        assert!(matches!(sent(&actions)[..], [Message::Open(open)] if open.asn() == 65001));
        assert_eq!(timer(&actions, Timer::Hold), Some(Duration::from_secs(240)));
        assert!(actions.contains(&Action::StopTimer(Timer::ConnectRetry)));
    }

    #[test]
    fn an_inbound_connection_in_active_sends_open() {
        let mut fsm = Fsm::new(Config {
            passive: true,
            ..config()
        });
        let now = Instant::now();
        fsm.handle(Event::ManualStart, now);
        let actions = fsm.handle(Event::TcpConnected, now);
        assert_eq!(fsm.state(), State::OpenSent);
        assert!(matches!(sent(&actions)[..], [Message::Open(_)]));
    }

    #[test]
    fn an_acceptable_open_moves_to_open_confirm_and_sends_keepalive() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let actions = fsm.handle(Event::OpenReceived(peer_open()), now);
        assert_eq!(fsm.state(), State::OpenConfirm);
        assert_eq!(sent(&actions), vec![&Message::Keepalive]);
    }

    #[test]
    fn hold_time_negotiation_uses_the_smaller_proposal_and_keepalive_a_third_of_it() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let actions = fsm.handle(Event::OpenReceived(peer_open()), now);
        assert_eq!(timer(&actions, Timer::Hold), Some(Duration::from_secs(30)));
        assert_eq!(
            timer(&actions, Timer::Keepalive),
            Some(Duration::from_secs(10))
        );
        assert_eq!(fsm.negotiated().unwrap().hold_time, 30);
    }

    #[test]
    fn a_hold_time_of_zero_disables_keepalives_and_the_hold_timer() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let mut open = peer_open();
        open.hold_time = 0;
        let actions = fsm.handle(Event::OpenReceived(open), now);
        assert_eq!(timer(&actions, Timer::Keepalive), None);
        assert!(actions.contains(&Action::StopTimer(Timer::Hold)));
        let actions = fsm.handle(Event::KeepaliveReceived, now);
        assert_eq!(timer(&actions, Timer::Hold), None);
    }

    #[test]
    fn an_open_from_the_wrong_as_is_refused_with_bad_peer_as() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let actions = fsm.handle(
            Event::OpenReceived(Open::new(65099, 90, REMOTE, vec![])),
            now,
        );
        let notification = sent_notification(&actions).unwrap();
        assert_eq!(
            (notification.code, notification.subcode),
            (2, open_subcode::BAD_PEER_AS)
        );
        assert_eq!(fsm.state(), State::Idle);
        assert!(actions.contains(&Action::Disconnect));
    }

    #[test]
    fn an_internal_peer_with_our_identifier_is_refused_with_bad_bgp_identifier() {
        let mut fsm = Fsm::new(Config::new(65001, LOCAL, 65001));
        let now = Instant::now();
        fsm.handle(Event::ManualStart, now);
        fsm.handle(Event::TcpConnected, now);
        let actions = fsm.handle(
            Event::OpenReceived(Open::new(65001, 90, LOCAL, vec![])),
            now,
        );
        let notification = sent_notification(&actions).unwrap();
        assert_eq!(notification.subcode, open_subcode::BAD_BGP_IDENTIFIER);
    }

    #[test]
    fn an_external_peer_may_share_our_identifier() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        fsm.handle(
            Event::OpenReceived(Open::new(65002, 90, LOCAL, vec![])),
            now,
        );
        assert_eq!(fsm.state(), State::OpenConfirm);
    }

    #[test]
    fn a_missing_required_capability_is_refused_naming_it() {
        let required = Config {
            required_capabilities: vec![64],
            ..config()
        };
        let mut fsm = Fsm::new(required);
        let now = Instant::now();
        fsm.handle(Event::ManualStart, now);
        fsm.handle(Event::TcpConnected, now);
        let actions = fsm.handle(Event::OpenReceived(peer_open()), now);
        let notification = sent_notification(&actions).unwrap();
        assert_eq!(notification.subcode, open_subcode::UNSUPPORTED_CAPABILITY);
        assert_eq!(notification.data, vec![64, 0]);
    }

    #[test]
    fn keepalive_in_open_confirm_establishes_the_session() {
        let (mut fsm, now) = machine_in(State::OpenConfirm);
        let actions = fsm.handle(Event::KeepaliveReceived, now);
        assert_eq!(fsm.state(), State::Established);
        let Some(Action::Established(negotiated)) =
            actions.iter().find(|a| matches!(a, Action::Established(_)))
        else {
            panic!("no Established action in {actions:?}")
        };
        assert!(negotiated.context.four_octet_as);
        assert!(negotiated.context.external);
        assert_eq!(negotiated.families, vec![Family::IPV4_UNICAST]);
        assert_eq!(timer(&actions, Timer::Hold), Some(Duration::from_secs(30)));
    }

    #[test]
    fn keepalive_timer_expiry_sends_a_keepalive_and_restarts_the_timer() {
        for state in [State::OpenConfirm, State::Established] {
            let (mut fsm, now) = machine_in(state);
            let actions = fsm.handle(Event::KeepaliveTimerExpires, now);
            assert_eq!(sent(&actions), vec![&Message::Keepalive]);
            assert_eq!(
                timer(&actions, Timer::Keepalive),
                Some(Duration::from_secs(10))
            );
            assert_eq!(fsm.state(), state);
        }
    }

    #[test]
    fn updates_and_keepalives_restart_the_hold_timer_in_established() {
        let (mut fsm, now) = machine_in(State::Established);
        for event in [Event::UpdateReceived, Event::KeepaliveReceived] {
            let actions = fsm.handle(event, now);
            assert_eq!(timer(&actions, Timer::Hold), Some(Duration::from_secs(30)));
        }
    }

    #[test]
    fn hold_timer_expiry_sends_hold_timer_expired_and_reports_the_session_down() {
        let (mut fsm, now) = machine_in(State::Established);
        let actions = fsm.handle(Event::HoldTimerExpires, now);
        let notification = sent_notification(&actions).unwrap();
        assert_eq!(notification.code, code::HOLD_TIMER_EXPIRED);
        assert_eq!(fsm.state(), State::Idle);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Down(DownReason::NotificationSent(_))))
        );
    }

    #[test]
    fn hold_timer_expiry_while_waiting_for_open_goes_enter_idle() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let actions = fsm.handle(Event::HoldTimerExpires, now);
        assert_eq!(
            sent_notification(&actions).unwrap().code,
            code::HOLD_TIMER_EXPIRED
        );
        assert_eq!(fsm.state(), State::Idle);
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Down(_))),
            "never was up"
        );
    }

    #[test]
    fn a_received_notification_closes_without_answering() {
        let (mut fsm, now) = machine_in(State::Established);
        let cease = Notification::cease(cease_subcode::ADMINISTRATIVE_RESET);
        let actions = fsm.handle(Event::NotificationReceived(cease.clone()), now);
        assert!(sent(&actions).is_empty());
        assert!(actions.contains(&Action::Down(DownReason::NotificationReceived(cease))));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn a_message_error_sends_its_notification() {
        let (mut fsm, now) = machine_in(State::Established);
        let error = Notification::new(code::UPDATE_MESSAGE, 1, []);
        let actions = fsm.handle(Event::MessageError(error.clone()), now);
        assert_eq!(sent_notification(&actions), Some(&error));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn a_lost_connection_in_established_reports_the_session_down_without_a_notification() {
        let (mut fsm, now) = machine_in(State::Established);
        let actions = fsm.handle(Event::TcpConnectionFails, now);
        assert!(sent(&actions).is_empty());
        assert!(actions.contains(&Action::Down(DownReason::ConnectionLost)));
    }

    #[test]
    fn a_lost_connection_in_open_sent_falls_back_to_active() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let actions = fsm.handle(Event::TcpConnectionFails, now);
        assert_eq!(fsm.state(), State::Active);
        assert!(timer(&actions, Timer::ConnectRetry).is_some());
    }

    #[test]
    fn an_update_before_established_is_an_fsm_error() {
        let (mut fsm, now) = machine_in(State::OpenSent);
        let actions = fsm.handle(Event::UpdateReceived, now);
        let notification = sent_notification(&actions).unwrap();
        assert_eq!((notification.code, notification.subcode), (code::FSM, 1));
        let (mut fsm, now) = machine_in(State::OpenConfirm);
        let actions = fsm.handle(Event::UpdateReceived, now);
        assert_eq!(sent_notification(&actions).unwrap().subcode, 2);
    }

    #[test]
    fn a_second_open_in_established_is_an_fsm_error() {
        let (mut fsm, now) = machine_in(State::Established);
        let actions = fsm.handle(Event::OpenReceived(peer_open()), now);
        let notification = sent_notification(&actions).unwrap();
        assert_eq!((notification.code, notification.subcode), (code::FSM, 3));
    }

    #[test]
    fn collision_dump_closes_the_connection_with_cease_collision_resolution() {
        let (mut fsm, now) = machine_in(State::OpenConfirm);
        let actions = fsm.handle(Event::OpenCollisionDump, now);
        let notification = sent_notification(&actions).unwrap();
        assert_eq!(
            notification.subcode,
            cease_subcode::CONNECTION_COLLISION_RESOLUTION
        );
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn manual_stop_sends_the_rfc_8203_shutdown_text_and_does_not_restart() {
        let (mut fsm, now) = machine_in(State::Established);
        let message = Some("maintenance".to_owned());
        let actions = fsm.handle(Event::ManualStop { message }, now);
        let notification = sent_notification(&actions).unwrap();
        assert_eq!(notification.shutdown_message(), Some("maintenance"));
        assert_eq!(timer(&actions, Timer::IdleHold), None);
        assert!(fsm.handle(Event::IdleHoldTimerExpires, now).is_empty());
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn manual_stop_before_open_closes_without_a_notification() {
        let (mut fsm, now) = machine_in(State::Connect);
        let actions = fsm.handle(Event::ManualStop { message: None }, now);
        assert!(sent(&actions).is_empty());
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn an_error_schedules_an_automatic_restart_after_the_idle_hold_time() {
        let (mut fsm, now) = machine_in(State::Established);
        let actions = fsm.handle(Event::HoldTimerExpires, now);
        assert_eq!(
            timer(&actions, Timer::IdleHold),
            Some(Duration::from_secs(1))
        );
        let actions = fsm.handle(Event::IdleHoldTimerExpires, now);
        assert_eq!(fsm.state(), State::Connect);
        assert!(actions.contains(&Action::Connect));
    }

    #[test]
    fn a_flapping_peer_is_damped_by_a_doubling_idle_hold_time() {
        let (mut fsm, now) = machine_in(State::Established);
        let mut holds = Vec::new();
        for _ in 0..9 {
            let actions = fsm.handle(Event::TcpConnectionFails, now);
            holds.push(timer(&actions, Timer::IdleHold).unwrap().as_secs());
            fsm.handle(Event::IdleHoldTimerExpires, now);
            fsm.handle(Event::TcpConnected, now);
            fsm.handle(Event::OpenReceived(peer_open()), now);
            fsm.handle(Event::KeepaliveReceived, now);
        }
        assert_eq!(holds, vec![1, 2, 4, 8, 16, 32, 64, 120, 120]);
    }

    #[test]
    fn a_session_that_stayed_up_resets_the_damping() {
        let (mut fsm, now) = machine_in(State::Established);
        fsm.handle(Event::TcpConnectionFails, now);
        fsm.handle(Event::IdleHoldTimerExpires, now);
        fsm.handle(Event::TcpConnected, now);
        fsm.handle(Event::OpenReceived(peer_open()), now);
        fsm.handle(Event::KeepaliveReceived, now);
        assert_eq!(fsm.idle_hold(), Duration::from_secs(2));
        let later = now + Duration::from_secs(600);
        let actions = fsm.handle(Event::TcpConnectionFails, later);
        assert_eq!(
            timer(&actions, Timer::IdleHold),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn negotiation_keeps_only_families_both_sides_enabled() {
        let mut open = peer_open();
        open.capabilities = vec![
            Capability::FourOctetAs(65002),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::Multiprotocol(Family::new(25, 70)),
        ];
        let negotiated = negotiate(&config(), &open).unwrap();
        assert_eq!(negotiated.families, vec![Family::IPV6_UNICAST]);
    }

    #[test]
    fn ipv6_next_hops_for_ipv4_routes_go_only_to_a_peer_that_asked_for_them() {
        assert!(
            !negotiate(&config(), &peer_open())
                .unwrap()
                .ipv4_over_ipv6_next_hop
        );
        let mut open = peer_open();
        open.capabilities.push(Capability::ExtendedNextHop(vec![
            crate::wire::ExtendedNextHop {
                nlri_afi: Afi::IPV4,
                nlri_safi: 1,
                next_hop_afi: Afi::IPV6,
            },
        ]));
        assert!(negotiate(&config(), &open).unwrap().ipv4_over_ipv6_next_hop);
    }

    #[test]
    fn a_peer_without_multiprotocol_capabilities_gets_ipv4_unicast() {
        let open = Open::new(65002, 90, REMOTE, vec![]);
        assert_eq!(
            negotiate(&config(), &open).unwrap().families,
            vec![Family::IPV4_UNICAST]
        );
    }

    #[test]
    fn add_path_is_negotiated_per_family_and_direction() {
        let ours = Config {
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::AddPath(vec![
                    AddPathFamily {
                        family: Family::IPV4_UNICAST,
                        mode: AddPathMode::Both,
                    },
                    AddPathFamily {
                        family: Family::IPV6_UNICAST,
                        mode: AddPathMode::Receive,
                    },
                ]),
            ],
            ..config()
        };
        let theirs = Open::new(
            65002,
            90,
            REMOTE,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::AddPath(vec![
                    AddPathFamily {
                        family: Family::IPV4_UNICAST,
                        mode: AddPathMode::Send,
                    },
                    AddPathFamily {
                        family: Family::IPV6_UNICAST,
                        mode: AddPathMode::Both,
                    },
                ]),
            ],
        );
        let context = negotiate(&ours, &theirs).unwrap().context;
        assert!(context.add_path_receive.contains(Family::IPV4_UNICAST));
        assert!(
            !context.add_path_send.contains(Family::IPV4_UNICAST),
            "they only send"
        );
        assert!(context.add_path_receive.contains(Family::IPV6_UNICAST));
        assert!(
            !context.add_path_send.contains(Family::IPV6_UNICAST),
            "we only receive"
        );
    }

    #[test]
    fn a_two_octet_peer_negotiates_two_octet_as_paths() {
        let mut open = Open::new(65002, 90, REMOTE, vec![]);
        open.capabilities.clear();
        assert!(!negotiate(&config(), &open).unwrap().context.four_octet_as);
    }

    use crate::wire::AddPathMode;
}
