//! The tokio runtime around the sans-IO [`Core`], and the [`Speaker`] handle on it.
//!
//! One task owns the core and all its state, fed by bounded channels: requests from handles
//! (commands, status and route queries, answered between batches of inputs) and inputs from
//! the connection tasks. It passes each input to the core with the time from tokio's clock
//! (which tests may pause), and carries out what the core returns: `listener` accepts
//! connections from configured peers only, within a cap, `connection` opens, reads and writes
//! TCP connections within the bounds of [`ConnectionLimits`](super::config::ConnectionLimits)
//! (decoding in the reader tasks, in parallel, so a fast peer cannot outrun the core without
//! TCP pushing back), `timers` runs the core's timers, and `subscription` hands events to
//! subscribers.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, info, warn};

use self::connection::{ConnHandle, Figures, Queued, Setup};
use self::listener::{Admit, Peers, TtlPolicy};
use self::subscription::LosslessSenders;
use self::timers::Timers;
use super::config::{PeerConfig, SpeakerConfig};
use super::core::{ConnId, Core, Input, Output, PeerStatus, SpeakerEvent};
use crate::fsm::State;
use crate::rib::table::Best;
use crate::wire::Community;

mod connection;
mod listener;
mod subscription;
mod timers;

pub use self::connection::ConnectionStats;
pub use self::subscription::{Notice, Subscription};

/// How many inputs may queue for the core before readers wait.
const INPUT_QUEUE: usize = 4096;
/// How many events a subscriber may fall behind before it is resynchronised, unless the
/// configuration says otherwise.
const EVENT_QUEUE: usize = 1 << 14;
/// While draining a burst of inputs, a waiting request is answered every this many inputs.
const READER_TURN: usize = 32;
/// Connection ids handed out by the runtime start here, apart from the core's.
const RUNTIME_CONN_BASE: u64 = 1 << 48;

/// One route in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The prefix.
    pub prefix: IpNetwork,
    /// Its ECMP set, best first, with the peers' addresses.
    pub best: Best,
    /// For each path of the set, the address of the peer it came from (`None`: local).
    pub sources: Vec<Option<IpAddr>>,
}

enum Request {
    Input(Box<Input>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes {
        after: Option<IpNetwork>,
        limit: usize,
        reply: oneshot::Sender<Vec<RouteEntry>>,
    },
}

enum Internal {
    Input(Box<Input>),
    Register { conn: ConnId, handle: ConnHandle },
}

/// A handle on a running speaker. Cloning it is cheap; the speaker stops when asked to.
#[derive(Debug, Clone)]
pub struct Speaker {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<SpeakerEvent>,
    /// Subscribers that must see every event (the node agent): unbounded queues, which hold
    /// memory only while their reader is behind.
    lossless: LosslessSenders,
    /// The connection figures, read without asking the core task.
    figures: Arc<Figures>,
}

/// Why a request to the speaker failed.
#[derive(Debug, thiserror::Error)]
#[error("the speaker has stopped")]
pub struct Stopped;

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl Speaker {
    /// Starts a speaker listening on `listen` (port 0 picks one); returns it with the addresses
    /// it is bound to.
    pub async fn start(
        config: SpeakerConfig,
        listen: &[SocketAddr],
    ) -> io::Result<(Speaker, Vec<SocketAddr>)> {
        let listeners = listener::listen(listen)?;
        let bound = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let (requests_tx, requests_rx) = mpsc::channel(1024);
        let (events_tx, _) = broadcast::channel(config.event_queue.unwrap_or(EVENT_QUEUE).max(16));
        let (internal_tx, internal_rx) = mpsc::channel(INPUT_QUEUE);
        let next_conn = Arc::new(AtomicU64::new(RUNTIME_CONN_BASE));
        let peers: Peers = Arc::default();
        let figures = Arc::new(Figures::default());
        let setup = Setup {
            internal: internal_tx.clone(),
            figures: figures.clone(),
            limits: config.connections,
        };
        for listener in &listeners {
            tokio::spawn(listener::accept_loop(
                listener.clone(),
                setup.clone(),
                next_conn.clone(),
                peers.clone(),
            ));
        }
        let lossless = LosslessSenders::default();
        let runtime = Runtime {
            peers,
            setup,
            deferred: Vec::new(),
            core: Core::new(config),
            conns: HashMap::new(),
            timers: Timers::default(),
            events: events_tx.clone(),
            lossless: lossless.clone(),
            lossless_now: Vec::new(),
            batch: Vec::new(),
            listeners,
            passwords: HashMap::new(),
        };
        tokio::spawn(runtime.run(requests_rx, internal_rx));
        Ok((
            Speaker {
                requests: requests_tx,
                events: events_tx,
                lossless,
                figures,
            },
            bound,
        ))
    }

    async fn input(&self, input: Input) -> Result<(), Stopped> {
        self.requests
            .send(Request::Input(Box::new(input)))
            .await
            .map_err(|_| Stopped)
    }

    /// Adds a peer, or changes it when it exists.
    pub async fn add_peer(&self, config: PeerConfig) -> Result<(), Stopped> {
        self.input(Input::AddPeer(config)).await
    }

    /// Changes a peer: policy changes keep the session, others restart it.
    pub async fn update_peer(&self, config: PeerConfig) -> Result<(), Stopped> {
        self.input(Input::UpdatePeer(config)).await
    }

    /// Removes a peer and its routes.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), Stopped> {
        self.input(Input::RemovePeer(address)).await
    }

    /// Resets a session (hard) or refreshes its routes both ways (soft).
    pub async fn reset_peer(&self, address: IpAddr, hard: bool) -> Result<(), Stopped> {
        self.input(Input::ResetPeer { address, hard }).await
    }

    /// Originates a prefix.
    pub async fn originate(
        &self,
        prefix: IpNetwork,
        communities: Vec<Community>,
    ) -> Result<(), Stopped> {
        self.input(Input::Originate {
            prefix,
            communities,
        })
        .await
    }

    /// Stops originating a prefix.
    pub async fn withdraw(&self, prefix: IpNetwork) -> Result<(), Stopped> {
        self.input(Input::Withdraw(prefix)).await
    }

    /// Stops the speaker. A graceful stop closes sessions without a NOTIFICATION so that peers
    /// keep our routes under graceful restart.
    pub async fn shutdown(&self, graceful: bool) -> Result<(), Stopped> {
        self.input(Input::Shutdown { graceful }).await
    }

    /// The speaker-wide connection figures: refused and dropped connections, and what is
    /// pending and queued now. Read without waiting for the core.
    pub fn connection_stats(&self) -> ConnectionStats {
        self.figures.snapshot()
    }

    /// A snapshot of every peer.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Peers(reply))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// One page of the Loc-RIB in prefix order, starting after `after`. Pages are answered
    /// between batches of UPDATEs, so a large listing never holds up routing.
    pub async fn routes(
        &self,
        after: Option<IpNetwork>,
        limit: usize,
    ) -> Result<Vec<RouteEntry>, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Routes {
                after,
                limit,
                reply,
            })
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// The whole Loc-RIB, taken in pages so UPDATE processing goes on between them.
    pub async fn all_routes(&self) -> Result<Vec<RouteEntry>, Stopped> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.routes(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.prefix);
            all.extend(page);
        }
        Ok(all)
    }
}

struct Runtime {
    /// The configured peers, for the accept loops.
    peers: Peers,
    /// What connection tasks are started with.
    setup: Setup,
    /// Inputs the runtime itself raised while carrying out outputs, handled next.
    deferred: Vec<Input>,
    core: Core,
    conns: HashMap<ConnId, ConnHandle>,
    timers: Timers,
    events: broadcast::Sender<SpeakerEvent>,
    lossless: LosslessSenders,
    /// The lossless senders as of this input (taken from `lossless` once per input).
    lossless_now: Vec<mpsc::UnboundedSender<Vec<SpeakerEvent>>>,
    /// The events of the input being handled, for the lossless subscribers in one message.
    batch: Vec<SpeakerEvent>,
    listeners: Vec<Arc<TcpListener>>,
    passwords: HashMap<IpAddr, String>,
}

impl Runtime {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut internal: mpsc::Receiver<Internal>,
    ) {
        loop {
            let deadline = self.timers.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    Some(request) => {
                        if self.serve(request).await {
                            return;
                        }
                    }
                    None => return,
                },
                message = internal.recv() => match message {
                    Some(Internal::Register { conn, handle }) => {
                        self.conns.insert(conn, handle);
                    }
                    Some(Internal::Input(input)) => {
                        self.input(*input);
                        // Take what else is queued before flushing work to the sockets, and
                        // answer a waiting request every few inputs, so readers (ListRoutes,
                        // ListPeers) move on during a full-table ingest without holding it up.
                        for taken in 1..=64 {
                            if taken % READER_TURN == 0
                                && let Ok(request) = requests.try_recv()
                                && self.serve(request).await
                            {
                                return;
                            }
                            match internal.try_recv() {
                                Ok(Internal::Input(input)) => self.input(*input),
                                Ok(Internal::Register { conn, handle }) => {
                                    self.conns.insert(conn, handle);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    None => return,
                },
                () = sleep => {
                    for key in self.timers.expired(Instant::now()) {
                        self.input(Input::TimerExpired(key));
                    }
                }
            }
        }
    }

    /// Answers one request from a handle; `true` when the speaker must stop.
    async fn serve(&mut self, request: Request) -> bool {
        match request {
            Request::Input(input) => {
                let stop = matches!(*input, Input::Shutdown { .. });
                self.input(*input);
                if stop {
                    // Let the writers drain before the process goes.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                stop
            }
            Request::Peers(reply) => {
                let _ = reply.send(self.core.peers());
                false
            }
            Request::Routes {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.page(after, limit));
                false
            }
        }
    }

    fn page(&self, after: Option<IpNetwork>, limit: usize) -> Vec<RouteEntry> {
        self.core
            .table()
            .page(after, limit)
            .into_iter()
            .map(|(prefix, best)| RouteEntry {
                prefix,
                sources: best
                    .paths
                    .iter()
                    .map(|p| self.core.peer_address(p.peer))
                    .collect(),
                best,
            })
            .collect()
    }

    /// Handles an input and whatever the runtime raises while carrying it out.
    fn input(&mut self, input: Input) {
        self.handle(input);
        while let Some(next) = self.deferred.pop() {
            self.handle(next);
        }
    }

    fn handle(&mut self, input: Input) {
        let mut gone = None;
        match &input {
            Input::AddPeer(config) | Input::UpdatePeer(config) => {
                let admit = Admit {
                    ttl: TtlPolicy::of(config, self.core.config().asn),
                    password_refused: false,
                };
                if let Ok(mut map) = self.peers.lock() {
                    map.insert(config.address, admit);
                }
                self.set_password(config.address, config.password.as_deref());
                listener::set_listener_ttl(&self.listeners, &self.peers);
            }
            Input::RemovePeer(address) => {
                if let Ok(mut map) = self.peers.lock() {
                    map.remove(address);
                }
                self.set_password(*address, None);
                listener::set_listener_ttl(&self.listeners, &self.peers);
            }
            Input::PasswordRefused { address, .. } => {
                // Its connections would arrive unsigned: the accept loops refuse them.
                if let Ok(mut map) = self.peers.lock()
                    && let Some(admit) = map.get_mut(address)
                {
                    admit.password_refused = true;
                }
            }
            Input::Closed { conn } => gone = Some(*conn),
            _ => {}
        }
        if let Ok(mut senders) = self.lossless.lock() {
            senders.retain(|s| !s.is_closed());
            self.lossless_now.clone_from(&senders);
        }
        self.core.set_report_best_paths(
            self.events.receiver_count() > 0 || !self.lossless_now.is_empty(),
        );
        let outputs = self.core.handle(input, Instant::now());
        for output in outputs {
            self.output(output);
        }
        if let Some(conn) = gone {
            // Its tasks are ending: dropping the handle stops the other one.
            self.conns.remove(&conn);
        }
        if !self.batch.is_empty() {
            // One message per input for each lossless subscriber; the last one takes the
            // events themselves.
            let batch = std::mem::take(&mut self.batch);
            if let Some((last, others)) = self.lossless_now.split_last() {
                for sender in others {
                    let _ = sender.send(batch.clone());
                }
                let _ = last.send(batch);
            }
        }
    }

    /// Keeps the listeners' MD5 keys in step with the peers' passwords. A key the kernel
    /// refuses holds the peer down (it would otherwise be accepted unsigned).
    fn set_password(&mut self, address: IpAddr, password: Option<&str>) {
        let key = password.unwrap_or_default();
        let old = self.passwords.get(&address).map_or("", String::as_str);
        if key == old {
            return;
        }
        match listener::set_listener_password(&self.listeners, address, key) {
            Ok(()) if key.is_empty() => {
                self.passwords.remove(&address);
            }
            Ok(()) => {
                self.passwords.insert(address, key.to_owned());
            }
            Err(failure) if key.is_empty() => {
                warn!(peer = %address, error = %failure, "cannot clear the TCP MD5 key on the listener");
            }
            Err(failure) => {
                error!(peer = %address, error = %failure, "the kernel refused the TCP MD5 key on the listener; the peer stays down");
                self.passwords.remove(&address);
                self.deferred.push(Input::PasswordRefused {
                    address,
                    error: failure.to_string(),
                });
            }
        }
    }

    fn output(&mut self, output: Output) {
        match output {
            Output::Connect { conn, peer } => {
                let policy = TtlPolicy::of(&peer, self.core.config().asn);
                tokio::spawn(connection::connect(conn, peer, policy, self.setup.clone()));
            }
            Output::Send { conn, bytes } => {
                let limit = self.setup.limits.send_queue_bytes;
                if let Some(handle) = self.conns.get(&conn)
                    && handle.send(bytes, limit) == Queued::Stalled
                {
                    self.deferred.push(Input::SendStalled { conn });
                }
            }
            Output::SetContext { conn, context } => {
                if let Some(handle) = self.conns.get(&conn) {
                    handle.set_context(context);
                }
            }
            Output::Close { conn } => {
                // Dropping the handle closes the connection.
                self.conns.remove(&conn);
            }
            Output::StartTimer(key, after) => self.timers.start(key, after),
            Output::StopTimer(key) => self.timers.stop(key),
            Output::Event(event) => {
                if let SpeakerEvent::PeerState {
                    address,
                    state,
                    error,
                } = &event
                {
                    info!(peer = %address, state = state.as_str(), error = error.as_deref().unwrap_or(""), "peer state");
                    if *state == State::Established {
                        for handle in self.conns.values().filter(|h| h.peer == *address) {
                            handle.established();
                        }
                    }
                }
                if self.events.receiver_count() > 0 {
                    if self.lossless_now.is_empty() {
                        let _ = self.events.send(event);
                        return;
                    }
                    let _ = self.events.send(event.clone());
                }
                if !self.lossless_now.is_empty() {
                    self.batch.push(event);
                }
            }
        }
    }
}
