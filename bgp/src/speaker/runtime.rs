//! The tokio runtime around the sans-IO [`Core`]: listeners, outbound connections, a reader and
//! a writer task per connection, timers, and the [`Speaker`] handle.
//!
//! Decoding happens in the reader tasks, in parallel; one core task owns all state and is fed by
//! a bounded channel, so a fast peer cannot outrun it without TCP pushing back. After an OPEN the
//! reader waits for the negotiated context before it decodes anything else, so UPDATEs are always
//! read with what the session agreed on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::config::{PeerConfig, SpeakerConfig};
use super::core::{ConnId, Core, Input, Output, PeerStatus, SpeakerEvent, TimerKey};
use crate::rib::table::Best;
use crate::sockopt;
use crate::wire::{Community, Context, Message, frame};

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

/// TTL handling for one peer's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TtlPolicy {
    /// The TTL (hop limit) we send with.
    ttl: u8,
    /// GTSM: the lowest TTL we accept.
    min_ttl: Option<u8>,
}

impl TtlPolicy {
    /// RFC 5082 with `ttl_security`; otherwise TTL 1 for directly connected eBGP (as FRR and
    /// BIRD do), the multihop TTL when set, and 64 for iBGP.
    fn of(peer: &PeerConfig, local_asn: u32) -> TtlPolicy {
        let hops = peer.multihop_ttl.unwrap_or(1).max(1);
        if peer.ttl_security {
            return TtlPolicy {
                ttl: 255,
                min_ttl: Some(255 - (hops - 1)),
            };
        }
        let ttl = match peer.multihop_ttl {
            Some(ttl) => ttl,
            None if peer.is_external(local_asn) => 1,
            None => 64,
        };
        TtlPolicy { ttl, min_ttl: None }
    }

    fn apply(&self, socket: &impl std::os::fd::AsFd, ipv6: bool) -> io::Result<()> {
        let sock = socket2::SockRef::from(socket);
        if ipv6 {
            sock.set_unicast_hops_v6(u32::from(self.ttl))?;
        } else {
            sock.set_ttl(u32::from(self.ttl))?;
        }
        if let Some(min) = self.min_ttl {
            sockopt::set_min_ttl(socket, ipv6, min)?;
        }
        Ok(())
    }
}

type TtlPolicies = Arc<std::sync::Mutex<HashMap<IpAddr, TtlPolicy>>>;

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

struct ConnHandle {
    writer: mpsc::UnboundedSender<WriterCommand>,
    context: watch::Sender<Option<Context>>,
}

enum WriterCommand {
    Write(Vec<u8>),
    Close,
}

/// A handle on a running speaker. Cloning it is cheap; the speaker stops when asked to.
#[derive(Debug, Clone)]
pub struct Speaker {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<SpeakerEvent>,
    /// Subscribers that must see every event (the node agent): unbounded queues, which hold
    /// memory only while their reader is behind.
    lossless: LosslessSenders,
}

/// The senders of lossless subscriptions, shared between the handle and the runtime.
type LosslessSenders = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<Vec<SpeakerEvent>>>>>;

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
    /// Starts a speaker listening on `listen` (port 0 picks one; see [`Speaker::local_addrs`]).
    pub async fn start(
        config: SpeakerConfig,
        listen: &[SocketAddr],
    ) -> io::Result<(Speaker, Vec<SocketAddr>)> {
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for address in listen {
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            if address.is_ipv6() {
                socket2::SockRef::from(&socket).set_only_v6(true)?;
            }
            socket.bind(*address)?;
            let listener = socket.listen(1024)?;
            bound.push(listener.local_addr()?);
            listeners.push(Arc::new(listener));
        }
        let (requests_tx, requests_rx) = mpsc::channel(1024);
        let (events_tx, _) = broadcast::channel(config.event_queue.unwrap_or(EVENT_QUEUE).max(16));
        let (internal_tx, internal_rx) = mpsc::channel(INPUT_QUEUE);
        let next_conn = Arc::new(AtomicU64::new(RUNTIME_CONN_BASE));
        let ttl: TtlPolicies = Arc::default();
        for listener in &listeners {
            tokio::spawn(accept_loop(
                listener.clone(),
                internal_tx.clone(),
                next_conn.clone(),
                ttl.clone(),
            ));
        }
        let lossless = LosslessSenders::default();
        let runtime = Runtime {
            ttl,
            core: Core::new(config),
            conns: HashMap::new(),
            timers: Timers::default(),
            internal: internal_tx,
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

    /// Subscribes to peer and route events. A subscriber that falls more than the event queue
    /// behind gets a resync (the whole table) instead of the events it missed.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            speaker: self.clone(),
            receiver: Receiver::Broadcast(self.events.subscribe()),
            lagged: false,
        }
    }

    /// Subscribes to every event, however far behind the reader falls: for the one consumer
    /// that must apply each change (the node agent programming the kernel). Its queue holds
    /// memory only while the reader is behind; a resync never happens.
    pub fn subscribe_lossless(&self) -> Subscription {
        let (sender, receiver) = mpsc::unbounded_channel();
        if let Ok(mut senders) = self.lossless.lock() {
            senders.push(sender);
        }
        Subscription {
            speaker: self.clone(),
            receiver: Receiver::Lossless(receiver, Vec::new().into_iter()),
            lagged: false,
        }
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The next event.
    Event(SpeakerEvent),
    /// The subscriber fell behind and events were lost: here is the whole table to start again
    /// from (every prefix and its ECMP set).
    Resync(Vec<RouteEntry>),
}

/// A stream of speaker events that never loses one silently.
#[derive(Debug)]
pub struct Subscription {
    speaker: Speaker,
    receiver: Receiver,
    /// [`Subscription::try_next`] saw the subscriber fall behind; the next call to
    /// [`Subscription::next`] resynchronises.
    lagged: bool,
}

/// Where a subscription's events come from.
#[derive(Debug)]
enum Receiver {
    /// The shared, bounded queue: a reader that falls behind is resynchronised.
    Broadcast(broadcast::Receiver<SpeakerEvent>),
    /// A queue of its own that loses nothing: the events of one input per message, and those
    /// of the last message not handed out yet.
    Lossless(
        mpsc::UnboundedReceiver<Vec<SpeakerEvent>>,
        std::vec::IntoIter<SpeakerEvent>,
    ),
}

impl Subscription {
    /// The next event if one is ready, without waiting (for taking a batch); `None` when none
    /// is, or when the subscriber fell behind, which the next [`Subscription::next`] answers
    /// with a resync.
    pub fn try_next(&mut self) -> Option<Notice> {
        if self.lagged {
            return None;
        }
        let receiver = match &mut self.receiver {
            Receiver::Broadcast(receiver) => receiver,
            Receiver::Lossless(receiver, pending) => loop {
                if let Some(event) = pending.next() {
                    return Some(Notice::Event(event));
                }
                *pending = receiver.try_recv().ok()?.into_iter();
            },
        };
        match receiver.try_recv() {
            Ok(event) => Some(Notice::Event(event)),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                warn!(missed, "subscriber fell behind; resynchronising");
                self.lagged = true;
                None
            }
            Err(_) => None,
        }
    }

    /// The next notice; `None` once the speaker stopped.
    pub async fn next(&mut self) -> Option<Notice> {
        let receiver = match &mut self.receiver {
            Receiver::Broadcast(receiver) => receiver,
            Receiver::Lossless(receiver, pending) => loop {
                if let Some(event) = pending.next() {
                    return Some(Notice::Event(event));
                }
                *pending = receiver.recv().await?.into_iter();
            },
        };
        let received = if self.lagged {
            self.lagged = false;
            Err(broadcast::error::RecvError::Lagged(0))
        } else {
            receiver.recv().await
        };
        match received {
            Ok(event) => Some(Notice::Event(event)),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                if missed > 0 {
                    warn!(missed, "subscriber fell behind; resynchronising");
                }
                // Take a fresh receiver first, so nothing after the snapshot is missed.
                *receiver = receiver.resubscribe();
                self.speaker.all_routes().await.ok().map(Notice::Resync)
            }
        }
    }
}

#[derive(Default)]
struct Timers {
    deadlines: HashMap<TimerKey, Instant>,
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKey)>>,
    sequence: u64,
}

impl Timers {
    fn start(&mut self, key: TimerKey, after: Duration) {
        let at = Instant::now() + after;
        self.sequence += 1;
        self.deadlines.insert(key, at);
        self.heap.push(Reverse((at, self.sequence, key)));
    }

    fn stop(&mut self, key: TimerKey) {
        self.deadlines.remove(&key);
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, _, key))) = self.heap.peek() {
            if self.deadlines.get(key) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    fn expired(&mut self, now: Instant) -> Vec<TimerKey> {
        let mut fired = Vec::new();
        while let Some(Reverse((at, _, key))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.deadlines.get(&key) == Some(&at) {
                self.deadlines.remove(&key);
                fired.push(key);
            }
        }
        fired
    }
}

struct Runtime {
    ttl: TtlPolicies,
    core: Core,
    conns: HashMap<ConnId, ConnHandle>,
    timers: Timers,
    internal: mpsc::Sender<Internal>,
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

    fn input(&mut self, input: Input) {
        match &input {
            Input::AddPeer(config) | Input::UpdatePeer(config) => {
                self.set_password(config);
                let policy = TtlPolicy::of(config, self.core.config().asn);
                if let Ok(mut map) = self.ttl.lock() {
                    map.insert(config.address, policy);
                }
            }
            _ => {}
        }
        if let Ok(mut senders) = self.lossless.lock() {
            senders.retain(|s| !s.is_closed());
            self.lossless_now.clone_from(&senders);
        }
        self.core.set_report_best_paths(
            self.events.receiver_count() > 0 || !self.lossless_now.is_empty(),
        );
        let outputs = self.core.handle(input, std::time::Instant::now());
        for output in outputs {
            self.output(output);
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

    /// Keeps the listeners' MD5 keys in step with the peers' passwords.
    fn set_password(&mut self, config: &PeerConfig) {
        let key = config.password.clone().unwrap_or_default();
        let old = self
            .passwords
            .get(&config.address)
            .cloned()
            .unwrap_or_default();
        if key == old {
            return;
        }
        for listener in &self.listeners {
            let family_matches = listener
                .local_addr()
                .is_ok_and(|a| a.is_ipv4() == config.address.is_ipv4());
            if family_matches
                && let Err(error) =
                    sockopt::set_tcp_md5(listener.as_ref(), config.address, key.as_bytes())
            {
                warn!(peer = %config.address, %error, "cannot set the TCP MD5 key on the listener");
            }
        }
        self.passwords.insert(config.address, key);
    }

    fn output(&mut self, output: Output) {
        match output {
            Output::Connect { conn, peer } => {
                let policy = TtlPolicy::of(&peer, self.core.config().asn);
                tokio::spawn(connect(conn, peer, policy, self.internal.clone()));
            }
            Output::Send { conn, bytes } => {
                if let Some(handle) = self.conns.get(&conn) {
                    let _ = handle.writer.send(WriterCommand::Write(bytes));
                }
            }
            Output::SetContext { conn, context } => {
                if let Some(handle) = self.conns.get(&conn) {
                    let _ = handle.context.send(Some(context));
                }
            }
            Output::Close { conn } => {
                if let Some(handle) = self.conns.remove(&conn) {
                    let _ = handle.writer.send(WriterCommand::Close);
                }
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

async fn accept_loop(
    listener: Arc<TcpListener>,
    internal: mpsc::Sender<Internal>,
    next_conn: Arc<AtomicU64>,
    ttl: TtlPolicies,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let peer = match remote.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let policy = ttl.lock().ok().and_then(|map| map.get(&peer).copied());
        if let Some(policy) = policy
            && let Err(error) = policy.apply(&stream, local.is_ipv6())
        {
            warn!(%peer, %error, "cannot set the TTL of an accepted connection");
        }
        let _ = stream.set_nodelay(true);
        let accepted = Input::Accepted { conn, peer, local };
        spawn_connection(conn, stream, internal.clone(), accepted);
    }
}

async fn connect(
    conn: ConnId,
    peer: Box<PeerConfig>,
    ttl: TtlPolicy,
    internal: mpsc::Sender<Internal>,
) {
    let result = open_connection(&peer, ttl).await;
    let input = match result {
        Ok(stream) => match stream.local_addr() {
            Ok(local) => {
                spawn_connection(
                    conn,
                    stream,
                    internal.clone(),
                    Input::Connected { conn, local },
                );
                return;
            }
            Err(_) => Input::ConnectFailed { conn },
        },
        Err(error) => {
            debug!(peer = %peer.address, %error, "connect failed");
            Input::ConnectFailed { conn }
        }
    };
    let _ = internal.send(Internal::Input(Box::new(input))).await;
}

async fn open_connection(peer: &PeerConfig, ttl: TtlPolicy) -> io::Result<TcpStream> {
    let remote = match peer.address {
        IpAddr::V6(v6) => {
            SocketAddr::V6(std::net::SocketAddrV6::new(v6, peer.port, 0, peer.scope_id))
        }
        v4 => SocketAddr::new(v4, peer.port),
    };
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(local) = peer.local_address {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    if let Some(password) = &peer.password {
        sockopt::set_tcp_md5(&socket, peer.address, password.as_bytes())?;
    }
    ttl.apply(&socket, remote.is_ipv6())?;
    let timeout = peer.connect_retry.max(Duration::from_secs(1));
    let stream = tokio::time::timeout(timeout, socket.connect(remote))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Starts a connection's writer and reader. The core hears of the connection (`first`) before
/// anything the reader decodes from it.
fn spawn_connection(
    conn: ConnId,
    stream: TcpStream,
    internal: mpsc::Sender<Internal>,
    first: Input,
) {
    let (read, write) = stream.into_split();
    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let (context_tx, context_rx) = watch::channel(None);
    tokio::spawn(writer(conn, write, writer_rx, internal.clone()));
    let handle = ConnHandle {
        writer: writer_tx,
        context: context_tx,
    };
    tokio::spawn(async move {
        if internal
            .send(Internal::Register { conn, handle })
            .await
            .is_err()
        {
            return;
        }
        if internal
            .send(Internal::Input(Box::new(first)))
            .await
            .is_err()
        {
            return;
        }
        reader(conn, read, context_rx, internal).await;
    });
}

async fn reader(
    conn: ConnId,
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut context_rx: watch::Receiver<Option<Context>>,
    internal: mpsc::Sender<Internal>,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut start = 0usize;
    let mut context = Context::default();
    loop {
        // Decode every whole message buffered.
        loop {
            let pending = &buffer[start..];
            let header = match frame(pending, &context) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(error) => {
                    let _ = internal
                        .send(Internal::Input(Box::new(Input::DecodeError {
                            conn,
                            error,
                        })))
                        .await;
                    return;
                }
            };
            let bytes = &pending[..header.length];
            let message = match Message::decode(bytes, &context) {
                Ok(message) => message,
                Err(error) => {
                    let _ = internal
                        .send(Internal::Input(Box::new(Input::DecodeError {
                            conn,
                            error,
                        })))
                        .await;
                    return;
                }
            };
            start += header.length;
            let is_open = matches!(message, Message::Open(_));
            if internal
                .send(Internal::Input(Box::new(Input::Received { conn, message })))
                .await
                .is_err()
            {
                return;
            }
            if is_open {
                // Nothing after an OPEN is read before the session's context is known.
                match context_rx.wait_for(Option::is_some).await {
                    Ok(value) => context = value.unwrap_or_default(),
                    Err(_) => return,
                }
            }
        }
        if start > 0 && start == buffer.len() {
            buffer.clear();
            start = 0;
        } else if start > (1 << 16) {
            buffer.drain(..start);
            start = 0;
        }
        if buffer.capacity() - buffer.len() < 4096 {
            buffer.reserve(1 << 16);
        }
        match read.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = internal
                    .send(Internal::Input(Box::new(Input::Closed { conn })))
                    .await;
                return;
            }
            Ok(_) => {}
        }
    }
}

async fn writer(
    conn: ConnId,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut commands: mpsc::UnboundedReceiver<WriterCommand>,
    internal: mpsc::Sender<Internal>,
) {
    while let Some(command) = commands.recv().await {
        match command {
            WriterCommand::Write(bytes) => {
                if write.write_all(&bytes).await.is_err() {
                    let _ = internal
                        .send(Internal::Input(Box::new(Input::Closed { conn })))
                        .await;
                    return;
                }
            }
            WriterCommand::Close => {
                let _ = write.shutdown().await;
                return;
            }
        }
    }
}
