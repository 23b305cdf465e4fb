//! TCP for the runtime: the listeners, outbound connections, and a reader and a writer task per
//! connection, with the socket options a BGP session needs: TTL or GTSM (RFC 5082) and TCP MD5
//! signatures (RFC 2385), set through [`crate::sockopt`].
//!
//! A reader decodes every whole message it has buffered and hands it to the core task. After an
//! OPEN it waits for the negotiated context before it decodes anything else, so UPDATEs are
//! always read with what the session agreed on.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::Internal;
use crate::sockopt;
use crate::speaker::config::PeerConfig;
use crate::speaker::core::{ConnId, Input};
use crate::wire::{Context, Message, frame};

/// Binds and listens on each address (IPv6 sockets take IPv6 only).
pub(super) fn listen(addresses: &[SocketAddr]) -> io::Result<Vec<Arc<TcpListener>>> {
    let mut listeners = Vec::new();
    for address in addresses {
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
        listeners.push(Arc::new(socket.listen(1024)?));
    }
    Ok(listeners)
}

/// Sets (or with an empty key, clears) the TCP MD5 key for `peer` on the listeners of its
/// address family.
pub(super) fn set_listener_password(listeners: &[Arc<TcpListener>], peer: IpAddr, key: &str) {
    for listener in listeners {
        let family_matches = listener
            .local_addr()
            .is_ok_and(|a| a.is_ipv4() == peer.is_ipv4());
        if family_matches
            && let Err(error) = sockopt::set_tcp_md5(listener.as_ref(), peer, key.as_bytes())
        {
            warn!(peer = %peer, %error, "cannot set the TCP MD5 key on the listener");
        }
    }
}

/// TTL handling for one peer's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TtlPolicy {
    /// The TTL (hop limit) we send with.
    ttl: u8,
    /// GTSM: the lowest TTL we accept.
    min_ttl: Option<u8>,
}

impl TtlPolicy {
    /// RFC 5082 with `ttl_security`; otherwise TTL 1 for directly connected eBGP (as FRR and
    /// BIRD do), the multihop TTL when set, and 64 for iBGP.
    pub(super) fn of(peer: &PeerConfig, local_asn: u32) -> TtlPolicy {
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

pub(super) type TtlPolicies = Arc<std::sync::Mutex<HashMap<IpAddr, TtlPolicy>>>;

/// The runtime's end of a connection's tasks.
pub(super) struct ConnHandle {
    /// Bytes to write, or the order to close.
    pub(super) writer: mpsc::UnboundedSender<WriterCommand>,
    /// The context the reader decodes with, once negotiated.
    pub(super) context: watch::Sender<Option<Context>>,
}

/// What a writer task is told.
pub(super) enum WriterCommand {
    Write(Vec<u8>),
    Close,
}

pub(super) async fn accept_loop(
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

pub(super) async fn connect(
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
pub(super) fn spawn_connection(
    conn: ConnId,
    stream: TcpStream,
    internal: mpsc::Sender<Internal>,
    first: Input,
) {
    // Our addresses on the connection's interface, for next hops of the other family.
    let link = stream.local_addr().ok().map(|local| {
        crate::ifaddrs::link_addresses(local.ip()).unwrap_or_else(|error| {
            warn!(%error, "cannot read the interface addresses");
            Vec::new()
        })
    });
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
        if let Some(addresses) = link
            && internal
                .send(Internal::Input(Box::new(Input::LinkAddresses {
                    conn,
                    addresses,
                })))
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
