//! The listening sockets and who gets past them: the set of configured peers an accepted
//! connection must come from, the cap on inbound connections not yet Established, and the
//! listeners' socket options, TTL and GTSM (RFC 5082) and TCP MD5 keys (RFC 2385), set through
//! [`crate::sockopt`].
//!
//! GTSM on the listener. Linux sends the SYN-ACK with the listener's TTL, and an accepted socket
//! starts with the listener's TTL and minimum TTL. So while any configured peer uses GTSM the
//! listeners send with TTL 255 (what FRR and Quagga do on every listener; harmless to other
//! peers, whose accepted sockets are set to their own TTL at once). The minimum TTL is a
//! filter on everything the listener receives, SYNs from other peers included, so the
//! listeners only get one when every configured peer of their family uses GTSM (the most
//! lenient of their minimums); otherwise each GTSM peer's accepted socket gets its own, as
//! FRR does, which guards everything after the handshake.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::connection::{Setup, spawn_connection};
use crate::sockopt;
use crate::speaker::config::PeerConfig;
use crate::speaker::core::Input;

/// How often a refused connection may be logged (with how many were refused since).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

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
pub(super) fn set_listener_password(
    listeners: &[Arc<TcpListener>],
    peer: IpAddr,
    key: &str,
) -> io::Result<()> {
    for listener in listeners {
        let family_matches = listener
            .local_addr()
            .is_ok_and(|a| a.is_ipv4() == peer.is_ipv4());
        if family_matches {
            sockopt::set_tcp_md5(listener.as_ref(), peer, key.as_bytes())?;
        }
    }
    Ok(())
}

/// Sets the listeners' TTL and minimum TTL for the peers configured now (see the module notes).
pub(super) fn set_listener_ttl(listeners: &[Arc<TcpListener>], peers: &Peers) {
    let Ok(peers) = peers.lock() else { return };
    for listener in listeners {
        let Ok(local) = listener.local_addr() else {
            continue;
        };
        let ipv6 = local.is_ipv6();
        let family: Vec<TtlPolicy> = peers
            .iter()
            .filter(|(address, _)| address.is_ipv6() == ipv6)
            .map(|(_, admit)| admit.ttl)
            .collect();
        let gtsm = peers.values().any(|admit| admit.ttl.min_ttl.is_some());
        let all_gtsm = family
            .iter()
            .map(|t| t.min_ttl)
            .collect::<Option<Vec<u8>>>();
        let min_ttl = all_gtsm.and_then(|m| m.into_iter().min()).unwrap_or(0);
        let result = sockopt::set_ttl(listener.as_ref(), ipv6, gtsm.then_some(255))
            .and_then(|()| sockopt::set_min_ttl(listener.as_ref(), ipv6, min_ttl));
        if let Err(error) = result {
            warn!(%local, %error, "cannot set the TTL of the listener");
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

    /// Sets the socket's TTL and minimum TTL (none without GTSM, whatever the listener had).
    pub(super) fn apply(&self, socket: &impl std::os::fd::AsFd, ipv6: bool) -> io::Result<()> {
        sockopt::set_ttl(socket, ipv6, Some(self.ttl))?;
        sockopt::set_min_ttl(socket, ipv6, self.min_ttl.unwrap_or(0))
    }
}

/// What the accept loops know of a configured peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Admit {
    pub(super) ttl: TtlPolicy,
    /// The kernel refused the peer's MD5 key on the listener: its connections would arrive
    /// unsigned, so they are refused.
    pub(super) password_refused: bool,
}

/// The configured peers, by address, as the accept loops see them.
pub(super) type Peers = Arc<Mutex<HashMap<IpAddr, Admit>>>;

/// Logs refused connections at debug, at most once per [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: IpAddr, why: &'static str) {
        self.unlogged += 1;
        let now = Instant::now();
        if self.last.is_some_and(|at| now < at + REFUSAL_LOG_EVERY) {
            return;
        }
        debug!(%peer, refused = self.unlogged, why, "refused inbound connections");
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// Closes an accepted connection at once, both ways, with a reset: nothing of it lingers.
fn refuse(stream: TcpStream, counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

pub(super) async fn accept_loop(
    listener: Arc<TcpListener>,
    setup: Setup,
    next_conn: Arc<AtomicU64>,
    peers: Peers,
) {
    let mut log = RefusalLog::default();
    let figures = setup.figures.clone();
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
        let peer = match remote.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let admit = peers.lock().ok().and_then(|map| map.get(&peer).copied());
        let Some(admit) = admit.filter(|a| !a.password_refused) else {
            refuse(stream, &figures.refused_not_peer);
            log.refused(peer, "not a configured peer");
            continue;
        };
        let pending = figures.pending.fetch_add(1, Ordering::Relaxed);
        if pending >= setup.limits.max_pending {
            figures.pending.fetch_sub(1, Ordering::Relaxed);
            refuse(stream, &figures.refused_at_cap);
            log.refused(peer, "too many connections not yet Established");
            continue;
        }
        if let Err(error) = admit.ttl.apply(&stream, local.is_ipv6()) {
            warn!(%peer, %error, "cannot set the TTL of an accepted connection");
        }
        let _ = stream.set_nodelay(true);
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let accepted = Input::Accepted { conn, peer, local };
        spawn_connection(conn, peer, stream, setup.clone(), accepted, true);
    }
}
