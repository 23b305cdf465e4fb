//! One TCP connection's tasks: outbound connects, and a reader and a writer per connection, with
//! the bounds of [`ConnectionLimits`] and the speaker-wide figures of [`ConnectionStats`].
//!
//! A reader decodes every whole message it has buffered and hands it to the core task. After an
//! OPEN it waits for the negotiated context before it decodes anything else, so UPDATEs are
//! always read with what the session agreed on. A connection that sends no OPEN within the open
//! timeout is dropped.
//!
//! The writer takes whole messages from a queue bounded in bytes. A queue that would pass its
//! bound, or a socket that takes no byte for the write timeout, is reported to the core, which
//! answers with a NOTIFICATION (Cease, out of resources) and a close. A close is seen by both
//! tasks at once, not behind the queue: the writer keeps only the NOTIFICATIONs still queued,
//! drops the rest, writes what is left of the message it was in and those NOTIFICATIONs within
//! [`CLOSE_GRACE`], then closes the socket (with a reset when the peer would not take them, so
//! the kernel frees its buffers at once).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::Internal;
use super::listener::TtlPolicy;
use crate::sockopt;
use crate::speaker::config::{ConnectionLimits, PeerConfig};
use crate::speaker::core::{ConnId, Input};
use crate::wire::{Context, Message, MessageType, frame};

/// How long a closing connection may take to write the end of the message it was in and a
/// NOTIFICATION before it is reset.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Speaker-wide connection figures, as of when they were read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections closed at once because they came from no configured peer (or from a peer
    /// held down because the kernel refused its TCP MD5 key).
    pub refused_not_peer: u64,
    /// Connections closed at once because [`ConnectionLimits::max_pending`] inbound
    /// connections were already waiting to be Established.
    pub refused_at_cap: u64,
    /// Connections dropped for sending no OPEN within [`ConnectionLimits::open_timeout`].
    pub open_timeouts: u64,
    /// Sessions dropped because their peer stopped reading (send queue full or write timeout).
    pub send_stalls: u64,
    /// Inbound connections up now and not yet Established.
    pub pending: usize,
    /// Connections whose tasks are running now.
    pub open: usize,
    /// Bytes queued for all connections and not yet written.
    pub queued_bytes: usize,
}

/// The live counters behind [`ConnectionStats`], shared by the accept loops, the connection
/// tasks and the runtime.
#[derive(Debug, Default)]
pub(super) struct Figures {
    pub(super) refused_not_peer: AtomicU64,
    pub(super) refused_at_cap: AtomicU64,
    open_timeouts: AtomicU64,
    send_stalls: AtomicU64,
    pub(super) pending: AtomicUsize,
    open: AtomicUsize,
    queued_bytes: AtomicUsize,
}

impl Figures {
    pub(super) fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            refused_not_peer: self.refused_not_peer.load(Ordering::Relaxed),
            refused_at_cap: self.refused_at_cap.load(Ordering::Relaxed),
            open_timeouts: self.open_timeouts.load(Ordering::Relaxed),
            send_stalls: self.send_stalls.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What a connection's tasks and its handle share; the figures it counts in are given back
/// when the last of them lets go.
#[derive(Debug)]
struct Shared {
    figures: Arc<Figures>,
    /// Bytes queued for the writer and not yet written.
    queued: AtomicUsize,
    /// Counted in [`Figures::pending`]: inbound and not yet Established.
    pending: AtomicBool,
    /// The peer was reported as not reading; reported once.
    stalled: AtomicBool,
    /// Set once, when the connection is to close.
    closing: watch::Sender<bool>,
}

impl Shared {
    fn new(figures: Arc<Figures>, pending: bool) -> Arc<Shared> {
        figures.open.fetch_add(1, Ordering::Relaxed);
        Arc::new(Shared {
            figures,
            queued: AtomicUsize::new(0),
            pending: AtomicBool::new(pending),
            stalled: AtomicBool::new(false),
            closing: watch::channel(false).0,
        })
    }

    fn dequeued(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        self.figures
            .queued_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Marks the peer as not reading; `true` the first time.
    fn stall(&self) -> bool {
        let first = !self.stalled.swap(true, Ordering::Relaxed);
        if first {
            self.figures.send_stalls.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    fn release_pending(&self) {
        if self.pending.swap(false, Ordering::Relaxed) {
            self.figures.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.release_pending();
        self.figures.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves once the connection is closing.
async fn closing(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The runtime's end of a connection's tasks.
pub(super) struct ConnHandle {
    shared: Arc<Shared>,
    /// The peer's address, to find its connections when its session is Established.
    pub(super) peer: IpAddr,
    /// Whole messages to write.
    writer: mpsc::UnboundedSender<Vec<u8>>,
    /// The context the reader decodes with, once negotiated.
    context: watch::Sender<Option<Context>>,
}

/// What became of bytes handed to [`ConnHandle::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// Queued, or dropped because the connection is going anyway.
    Done,
    /// Over the bound: nothing was queued, the queue is being dropped, and the core must be
    /// told (this is said once per connection).
    Stalled,
}

impl ConnHandle {
    /// Queues whole messages for the writer. A NOTIFICATION is always queued; other bytes only
    /// while the queue stays within `limit`.
    pub(super) fn send(&self, bytes: Vec<u8>, limit: usize) -> Queued {
        let len = bytes.len();
        if self.shared.stalled.load(Ordering::Relaxed) && !is_notification(&bytes) {
            return Queued::Done;
        }
        let queued = self.shared.queued.fetch_add(len, Ordering::Relaxed) + len;
        if queued > limit && !is_notification(&bytes) {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            // The writer skips the rest of the backlog; the core answers with a NOTIFICATION
            // and a close.
            return if self.shared.stall() {
                Queued::Stalled
            } else {
                Queued::Done
            };
        }
        self.shared
            .figures
            .queued_bytes
            .fetch_add(len, Ordering::Relaxed);
        if self.writer.send(bytes).is_err() {
            self.shared.dequeued(len);
        }
        Queued::Done
    }

    /// Tells the reader what to decode with from now on.
    pub(super) fn set_context(&self, context: Context) {
        let _ = self.context.send(Some(context));
    }

    /// The session on this connection is Established: it no longer counts as pending.
    pub(super) fn established(&self) {
        self.shared.release_pending();
    }
}

/// Dropping the handle closes the connection: both tasks stop at once, and the queue is dropped
/// but for its NOTIFICATIONs (see the module notes).
impl Drop for ConnHandle {
    fn drop(&mut self) {
        let _ = self.shared.closing.send_replace(true);
    }
}

/// Whether `bytes` are exactly one NOTIFICATION.
fn is_notification(bytes: &[u8]) -> bool {
    matches!(
        frame(bytes, &Context::default()),
        Ok(Some(header)) if header.message_type == MessageType::Notification
            && header.length == bytes.len()
    )
}

/// What a connection's tasks need besides the socket.
#[derive(Clone)]
pub(super) struct Setup {
    pub(super) internal: mpsc::Sender<Internal>,
    pub(super) figures: Arc<Figures>,
    pub(super) limits: ConnectionLimits,
}

/// Why an outbound connection could not be made.
enum ConnectError {
    /// The kernel refused the MD5 key: the peer must not run unsigned.
    Password(io::Error),
    Other(io::Error),
}

pub(super) async fn connect(conn: ConnId, peer: Box<PeerConfig>, ttl: TtlPolicy, setup: Setup) {
    let input = match open_connection(&peer, ttl).await {
        Ok(stream) => match stream.local_addr() {
            Ok(local) => {
                let first = Input::Connected { conn, local };
                spawn_connection(conn, peer.address, stream, setup, first, false);
                return;
            }
            Err(_) => Input::ConnectFailed { conn },
        },
        Err(ConnectError::Password(failure)) => {
            error!(peer = %peer.address, error = %failure, "the kernel refused the TCP MD5 key; the peer stays down");
            let refused = Input::PasswordRefused {
                address: peer.address,
                error: failure.to_string(),
            };
            let _ = setup
                .internal
                .send(Internal::Input(Box::new(refused)))
                .await;
            Input::ConnectFailed { conn }
        }
        Err(ConnectError::Other(error)) => {
            debug!(peer = %peer.address, %error, "connect failed");
            Input::ConnectFailed { conn }
        }
    };
    let _ = setup.internal.send(Internal::Input(Box::new(input))).await;
}

async fn open_connection(peer: &PeerConfig, ttl: TtlPolicy) -> Result<TcpStream, ConnectError> {
    let remote = match peer.address {
        IpAddr::V6(v6) => {
            SocketAddr::V6(std::net::SocketAddrV6::new(v6, peer.port, 0, peer.scope_id))
        }
        v4 => SocketAddr::new(v4, peer.port),
    };
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ConnectError::Other)?;
    if let Some(local) = peer.local_address {
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(ConnectError::Other)?;
    }
    if let Some(password) = &peer.password {
        sockopt::set_tcp_md5(&socket, peer.address, password.as_bytes())
            .map_err(ConnectError::Password)?;
    }
    ttl.apply(&socket, remote.is_ipv6())
        .map_err(ConnectError::Other)?;
    let timeout = peer.connect_retry.max(Duration::from_secs(1));
    let stream = tokio::time::timeout(timeout, socket.connect(remote))
        .await
        .map_err(|_| {
            ConnectError::Other(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        })?
        .map_err(ConnectError::Other)?;
    stream.set_nodelay(true).map_err(ConnectError::Other)?;
    Ok(stream)
}

/// Starts a connection's writer and reader. The core hears of the connection (`first`) before
/// anything the reader decodes from it. An inbound connection counts as `pending` (already
/// counted in the figures by the accept loop) until its session is Established.
pub(super) fn spawn_connection(
    conn: ConnId,
    peer: IpAddr,
    stream: TcpStream,
    setup: Setup,
    first: Input,
    pending: bool,
) {
    // Our addresses on the connection's interface, for next hops of the other family.
    let link = stream.local_addr().ok().map(|local| {
        crate::ifaddrs::link_addresses(local.ip()).unwrap_or_else(|error| {
            warn!(%error, "cannot read the interface addresses");
            Vec::new()
        })
    });
    let (read, write) = stream.into_split();
    let shared = Shared::new(setup.figures.clone(), pending);
    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let (context_tx, context_rx) = watch::channel(None);
    tokio::spawn(writer(
        conn,
        write,
        writer_rx,
        shared.clone(),
        setup.clone(),
    ));
    let handle = ConnHandle {
        shared: shared.clone(),
        peer,
        writer: writer_tx,
        context: context_tx,
    };
    tokio::spawn(async move {
        let internal = &setup.internal;
        let registered = internal
            .send(Internal::Register { conn, handle })
            .await
            .is_ok();
        let link_sent = async {
            match link {
                Some(addresses) => internal
                    .send(Internal::Input(Box::new(Input::LinkAddresses {
                        conn,
                        addresses,
                    })))
                    .await
                    .is_ok(),
                None => true,
            }
        };
        if registered
            && internal
                .send(Internal::Input(Box::new(first)))
                .await
                .is_ok()
            && link_sent.await
        {
            let open_by = Instant::now() + setup.limits.open_timeout;
            reader(conn, read, context_rx, &shared, internal, open_by).await;
        }
    });
}

async fn reader(
    conn: ConnId,
    mut read: OwnedReadHalf,
    mut context_rx: watch::Receiver<Option<Context>>,
    shared: &Shared,
    internal: &mpsc::Sender<Internal>,
    open_by: Instant,
) {
    let mut closing_rx = shared.closing.subscribe();
    let report = |input: Input| internal.send(Internal::Input(Box::new(input)));
    let mut buffer: Vec<u8> = Vec::new();
    let mut start = 0usize;
    let mut context = Context::default();
    let mut open_seen = false;
    loop {
        // Decode every whole message buffered.
        loop {
            let pending = &buffer[start..];
            let decoded = frame(pending, &context).and_then(|header| match header {
                Some(header) => Message::decode(&pending[..header.length], &context)
                    .map(|message| Some((header.length, message))),
                None => Ok(None),
            });
            let (length, message) = match decoded {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(error) => {
                    let _ = report(Input::DecodeError { conn, error }).await;
                    return;
                }
            };
            start += length;
            let is_open = matches!(message, Message::Open(_));
            if report(Input::Received { conn, message }).await.is_err() {
                return;
            }
            if is_open {
                open_seen = true;
                // Nothing after an OPEN is read before the session's context is known.
                tokio::select! {
                    value = context_rx.wait_for(Option::is_some) => match value {
                        Ok(value) => context = value.unwrap_or_default(),
                        Err(_) => return,
                    },
                    () = closing(&mut closing_rx) => return,
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
            // Small until the peer has said something (an idle connection holds little).
            buffer.reserve(if buffer.is_empty() { 4096 } else { 1 << 16 });
        }
        let deadline = async {
            if open_seen {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(open_by).await;
        };
        tokio::select! {
            biased;
            () = closing(&mut closing_rx) => return,
            () = deadline => {
                shared.figures.open_timeouts.fetch_add(1, Ordering::Relaxed);
                debug!(conn, "no OPEN within the open timeout; closing");
                let _ = report(Input::Closed { conn }).await;
                return;
            }
            read = read.read_buf(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    let _ = report(Input::Closed { conn }).await;
                    return;
                }
                Ok(_) => {}
            },
        }
    }
}

/// How writing one chunk ended.
enum Written {
    All,
    /// The connection is closing; this much of the chunk went out.
    Closing(usize),
    /// The socket took nothing for the write timeout; this much went out.
    Stalled(usize),
    Failed,
}

async fn write_chunk(
    write: &mut OwnedWriteHalf,
    chunk: &[u8],
    timeout: Duration,
    closing_rx: &mut watch::Receiver<bool>,
) -> Written {
    let mut done = 0;
    while done < chunk.len() {
        tokio::select! {
            biased;
            () = closing(closing_rx) => return Written::Closing(done),
            written = tokio::time::timeout(timeout, write.write(&chunk[done..])) => match written {
                Ok(Ok(0) | Err(_)) => return Written::Failed,
                Ok(Ok(n)) => done += n,
                Err(_) => return Written::Stalled(done),
            },
        }
    }
    Written::All
}

async fn writer(
    conn: ConnId,
    mut write: OwnedWriteHalf,
    mut chunks: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
    setup: Setup,
) {
    let mut closing_rx = shared.closing.subscribe();
    let timeout = setup.limits.write_timeout;
    // The message in flight when the connection began to close, and how much of it went out.
    let mut in_flight: Option<(Vec<u8>, usize)> = None;
    loop {
        let chunk = tokio::select! {
            biased;
            () = closing(&mut closing_rx) => break,
            chunk = chunks.recv() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
        };
        if shared.stalled.load(Ordering::Relaxed) && !is_notification(&chunk) {
            // The peer stopped reading: the backlog goes unwritten.
            shared.dequeued(chunk.len());
            continue;
        }
        // The message counts as queued until it is written or dropped.
        match write_chunk(&mut write, &chunk, timeout, &mut closing_rx).await {
            Written::All => shared.dequeued(chunk.len()),
            Written::Closing(done) => {
                in_flight = Some((chunk, done));
                break;
            }
            Written::Stalled(done) => {
                in_flight = Some((chunk, done));
                if shared.stall() {
                    debug!(conn, "the peer took nothing for the write timeout");
                    let stalled = Input::SendStalled { conn };
                    let _ = setup
                        .internal
                        .send(Internal::Input(Box::new(stalled)))
                        .await;
                }
                // Wait for the core's NOTIFICATION and close (or for the handle to go).
                closing(&mut closing_rx).await;
                break;
            }
            Written::Failed => {
                shared.dequeued(chunk.len());
                let _ = setup
                    .internal
                    .send(Internal::Input(Box::new(Input::Closed { conn })))
                    .await;
                chunks.close();
                drain(&mut chunks, &shared, |_| {});
                return;
            }
        }
    }
    // Closing: the rest of the message in flight, then the NOTIFICATIONs still queued; the
    // rest of the queue is dropped.
    chunks.close();
    let mut notifications = Vec::new();
    drain(&mut chunks, &shared, |chunk| {
        if is_notification(&chunk) {
            notifications.push(chunk);
        }
    });
    let finish = async {
        if let Some((chunk, done)) = &in_flight {
            write
                .write_all(chunk.get(*done..).unwrap_or_default())
                .await?;
        }
        for notification in &notifications {
            write.write_all(notification).await?;
        }
        write.shutdown().await
    };
    let flushed = matches!(tokio::time::timeout(CLOSE_GRACE, finish).await, Ok(Ok(())));
    if let Some((chunk, _)) = in_flight {
        shared.dequeued(chunk.len());
    }
    if !flushed {
        // Reset: the kernel drops what the peer would not take instead of keeping it.
        let _ = socket2::SockRef::from(write.as_ref()).set_linger(Some(Duration::ZERO));
    }
}

/// Takes what is left in a closed queue, counting it out of the figures.
fn drain(
    chunks: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    shared: &Shared,
    mut keep: impl FnMut(Vec<u8>),
) {
    while let Ok(chunk) = chunks.try_recv() {
        shared.dequeued(chunk.len());
        keep(chunk);
    }
}
