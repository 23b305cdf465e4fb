//! Connections that try to exhaust the speaker, over real TCP on loopback addresses: strangers,
//! connections that never send an OPEN, more pending connections than the cap, a peer that stops
//! reading, a TCP MD5 key the kernel refuses, and GTSM's TTL on the SYN-ACK.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnetwork::{IpNetwork, Ipv4Network};
use tern_bgp::wire::{Community, Context, Message, cease_subcode, code};
use tern_bgp::{ConnectionLimits, ConnectionStats, PeerConfig, Speaker, SpeakerConfig, State};
use tern_bgp::{SpeakerEvent, Subscription};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

mod common;

use common::{accept_session, read_message};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A speaker on `address` (AS 65001) with these limits; returns it with its port.
async fn speaker(address: &str, limits: ConnectionLimits) -> (Speaker, u16) {
    let mut config = SpeakerConfig::new(65001, address.parse().unwrap());
    config.connections = limits;
    let (speaker, bound) = Speaker::start(config, &[SocketAddr::new(ip(address), 0)])
        .await
        .unwrap();
    (speaker, bound[0].port())
}

/// A speaker on `address` with these limits and passive peers at `peers`, ready for them.
async fn speaker_with_peers(
    address: &str,
    limits: ConnectionLimits,
    peers: &[&str],
) -> (Speaker, u16) {
    let (speaker, port) = speaker(address, limits).await;
    for peer in peers {
        speaker.add_peer(passive_peer(peer)).await.unwrap();
    }
    speaker.peers().await.unwrap();
    (speaker, port)
}

/// A peer that waits for us to connect.
fn passive_peer(address: &str) -> PeerConfig {
    PeerConfig {
        passive: true,
        ..PeerConfig::new(ip(address), 65002)
    }
}

/// A socket bound to `from`, to reach the speaker from there.
fn socket_from(from: &str) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
    socket
}

async fn connect_from(from: &str, to: &str, port: u16) -> TcpStream {
    socket_from(from)
        .connect(SocketAddr::new(ip(to), port))
        .await
        .unwrap()
}

/// Whether the speaker has closed the connection both ways within `within`: reads end, and
/// what we write (KEEPALIVEs, which a reader left open would take and ignore) is refused.
async fn closed_both_ways(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    let keepalive = Message::Keepalive.to_bytes(&Context::default()).unwrap();
    while Instant::now() < deadline {
        if stream.write_all(&keepalive).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Whether a connection from `from` is closed both ways at once: it is reset while the
/// handshake finishes, or soon after.
async fn refused_at_once(from: &str, to: &str, port: u16) -> bool {
    match socket_from(from)
        .connect(SocketAddr::new(ip(to), port))
        .await
    {
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(mut stream) => closed_both_ways(&mut stream, Duration::from_secs(2)).await,
    }
}

async fn stats_until(
    speaker: &Speaker,
    what: &str,
    pred: impl Fn(&ConnectionStats) -> bool,
) -> ConnectionStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = speaker.connection_stats();
        if pred(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(
    events: &mut Subscription,
    what: &str,
    within: Duration,
    mut pred: impl FnMut(&SpeakerEvent) -> bool,
) -> SpeakerEvent {
    let deadline = Instant::now() + within;
    loop {
        let notice = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("speaker stopped");
        if let tern_bgp::Notice::Event(event) = notice
            && pred(&event)
        {
            return event;
        }
    }
}

fn is_state(state: State) -> impl FnMut(&SpeakerEvent) -> bool {
    move |e| matches!(e, SpeakerEvent::PeerState { state: s, .. } if *s == state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_from_no_configured_peer_is_closed_at_once_both_ways_and_counted() {
    let (speaker, port) =
        speaker_with_peers("127.0.0.71", ConnectionLimits::default(), &["127.0.0.72"]).await;
    for _ in 0..3 {
        assert!(
            refused_at_once("127.0.0.73", "127.0.0.71", port).await,
            "a stranger's connection is closed both ways at once"
        );
    }
    let stats = stats_until(&speaker, "no connection left", |s| s.open == 0).await;
    assert_eq!(stats.refused_not_peer, 3);
    assert_eq!(stats.pending, 0);
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_open_is_dropped_after_the_open_timeout() {
    let limits = ConnectionLimits {
        open_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    };
    let (speaker, port) = speaker_with_peers("127.0.0.74", limits, &["127.0.0.75"]).await;
    let mut silent = connect_from("127.0.0.75", "127.0.0.74", port).await;
    let up = Instant::now();
    assert!(matches!(
        read_message(&mut silent).await,
        Some(Message::Open(_))
    ));
    // We say nothing. RFC 4271's OpenSent hold time would wait 4 minutes.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while read_message(&mut silent).await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the silent connection is dropped");
    let waited = up.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "not before the open timeout: {waited:?}"
    );
    let stats = stats_until(&speaker, "the connection freed", |s| s.open == 0).await;
    assert_eq!(stats.open_timeouts, 1);
    assert_eq!(stats.pending, 0);
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_of_pending_connections_new_ones_are_closed_at_once_and_counted() {
    let limits = ConnectionLimits {
        max_pending: 2,
        ..ConnectionLimits::default()
    };
    let peers = ["127.0.0.77", "127.0.0.78", "127.0.0.79"];
    let (speaker, port) = speaker_with_peers("127.0.0.76", limits, &peers).await;
    let mut first = connect_from("127.0.0.77", "127.0.0.76", port).await;
    let mut second = connect_from("127.0.0.78", "127.0.0.76", port).await;
    for stream in [&mut first, &mut second] {
        assert!(matches!(read_message(stream).await, Some(Message::Open(_))));
    }
    assert!(
        refused_at_once("127.0.0.79", "127.0.0.76", port).await,
        "the connection past the cap is closed at once, without an OPEN"
    );
    let stats = speaker.connection_stats();
    assert_eq!((stats.pending, stats.refused_at_cap), (2, 1));
    // A pending connection goes; there is room again.
    drop(first);
    stats_until(&speaker, "the slot freed", |s| s.pending == 1).await;
    let mut again = connect_from("127.0.0.79", "127.0.0.76", port).await;
    assert!(matches!(
        read_message(&mut again).await,
        Some(Message::Open(_))
    ));
    speaker.shutdown(false).await.unwrap();
}

/// Originates `count` /24s, each with attributes of its own (two communities that number it),
/// so that each is an UPDATE of its own: about 60 octets a route on the wire.
async fn originate_distinct(speaker: &Speaker, count: u32) {
    for i in 0..count {
        let network = Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap();
        let communities = vec![
            Community::new(65001, (i >> 16) as u16),
            Community::new(65002, i as u16),
        ];
        speaker
            .originate(IpNetwork::V4(network), communities)
            .await
            .unwrap();
    }
    assert_eq!(
        speaker.routes(None, usize::MAX).await.unwrap().len(),
        count as usize
    );
}

/// Plays an eBGP peer at `address` that takes the speaker's connection with a receive buffer
/// of a few kilobytes, reads the speaker's OPEN, answers with its own and a KEEPALIVE, and
/// then reads nothing more.
async fn peer_that_stops_reading(speaker: &Speaker, address: &str, local: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(SocketAddr::new(ip(address), 0)).unwrap();
    let listener = socket.listen(4).unwrap();
    let config = PeerConfig {
        port: listener.local_addr().unwrap().port(),
        local_address: Some(ip(local)),
        connect_retry: Duration::from_secs(1),
        ..PeerConfig::new(ip(address), 65002)
    };
    speaker.add_peer(config).await.unwrap();
    accept_session(&listener, 65002, 90).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_after_the_write_timeout_and_its_queue_freed() {
    let limits = ConnectionLimits {
        write_timeout: Duration::from_secs(2),
        send_queue_bytes: 256 << 20,
        ..ConnectionLimits::default()
    };
    let (speaker, _) = speaker("127.0.0.81", limits).await;
    originate_distinct(&speaker, 200_000).await;
    let mut events = speaker.subscribe();
    let _stream = peer_that_stops_reading(&speaker, "127.0.0.82", "127.0.0.81").await;
    wait_for(
        &mut events,
        "Established",
        Duration::from_secs(10),
        is_state(State::Established),
    )
    .await;
    let up = Instant::now();
    let down = wait_for(
        &mut events,
        "the drop",
        Duration::from_secs(20),
        is_state(State::Idle),
    )
    .await;
    let waited = up.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(8),
        "dropped after the 2 s write timeout, not before: {waited:?}"
    );
    let SpeakerEvent::PeerState { error, .. } = down else {
        unreachable!()
    };
    assert_eq!(
        error.as_deref(),
        Some("NOTIFICATION sent: out of resources")
    );
    let stats = stats_until(&speaker, "the queue freed", |s| {
        s.queued_bytes == 0 && s.open == 0
    })
    .await;
    assert_eq!(stats.send_stalls, 1);
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_the_send_queue_bound_drops_the_session_with_a_notification_first() {
    let limits = ConnectionLimits {
        send_queue_bytes: 1 << 20,
        ..ConnectionLimits::default()
    };
    let (speaker, _) = speaker("127.0.0.83", limits).await;
    // Some 12 MB of UPDATEs, more than the bound.
    originate_distinct(&speaker, 200_000).await;
    let mut events = speaker.subscribe();
    let mut stream = peer_that_stops_reading(&speaker, "127.0.0.84", "127.0.0.83").await;
    wait_for(
        &mut events,
        "the drop",
        Duration::from_secs(20),
        is_state(State::Idle),
    )
    .await;
    // The NOTIFICATION did not wait behind the backlog: it comes straight after the KEEPALIVE.
    let notification = loop {
        match read_message(&mut stream).await {
            Some(Message::Keepalive) => continue,
            Some(Message::Notification(n)) => break n,
            other => panic!("wanted the NOTIFICATION, got {other:?}"),
        }
    };
    assert_eq!(
        (notification.code, notification.subcode),
        (code::CEASE, cease_subcode::OUT_OF_RESOURCES)
    );
    let stats = stats_until(&speaker, "the queue freed", |s| {
        s.queued_bytes == 0 && s.open == 0
    })
    .await;
    assert_eq!(stats.send_stalls, 1);
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_md5_key_the_kernel_refuses_holds_the_peer_down_and_says_why() {
    let (speaker, port) = speaker("127.0.0.85", ConnectionLimits::default()).await;
    let mut events = speaker.subscribe();
    // The kernel keeps a listener's MD5 keys in its option memory (net.core.optmem_max,
    // 128 KiB by default, some 130 octets a key): a thousand peers fill it.
    for i in 0..1200u32 {
        let address = IpAddr::V4(Ipv4Addr::from(0x0ac8_0000 + i));
        let config = PeerConfig {
            password: Some(format!("key-{i}")),
            ..PeerConfig::new(address, 65002)
        };
        speaker
            .add_peer(PeerConfig {
                passive: true,
                ..config
            })
            .await
            .unwrap();
    }
    let last = PeerConfig {
        password: Some("the-last-key".to_owned()),
        ..passive_peer("127.0.0.86")
    };
    speaker.add_peer(last).await.unwrap();
    let event = wait_for(&mut events, "the refusal", Duration::from_secs(10), |e| {
        matches!(e, SpeakerEvent::PeerState { address, error: Some(_), .. }
            if *address == ip("127.0.0.86"))
    })
    .await;
    let SpeakerEvent::PeerState { state, error, .. } = event else {
        unreachable!()
    };
    assert_eq!(state, State::Idle);
    let error = error.unwrap_or_default();
    assert!(
        error.starts_with("TCP MD5 key refused by the kernel"),
        "the reason is given: {error}"
    );
    let status = speaker.peers().await.unwrap();
    let peer = status
        .iter()
        .find(|p| p.config.address == ip("127.0.0.86"))
        .unwrap();
    assert_eq!(peer.last_error.as_deref(), Some(error.as_str()));
    // The peer's connection, which the listener would take unsigned, is refused.
    assert!(
        refused_at_once("127.0.0.86", "127.0.0.85", port).await,
        "no session without MD5"
    );
    speaker.shutdown(false).await.unwrap();
}

/// A GTSM client socket bound to `from`: it sends with TTL 255 and has `IP_MINTTL` 255, so its
/// kernel drops a SYN-ACK that arrives with a lower TTL and the connection only comes up when
/// the SYN-ACK was sent with TTL 255.
#[allow(unsafe_code)]
fn gtsm_socket_from(from: &str) -> TcpSocket {
    use std::os::fd::AsRawFd;
    let socket = socket_from(from);
    socket2::SockRef::from(&socket).set_ttl(255).unwrap();
    let value: libc::c_int = 255;
    // SAFETY: `value` is a live c_int of the size passed, for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MINTTL,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_gtsm_peer_the_syn_ack_already_carries_ttl_255() {
    // No GTSM peer yet: the SYN-ACK has the default TTL and the strict client never connects.
    let (speaker, port) =
        speaker_with_peers("127.0.0.87", ConnectionLimits::default(), &["127.0.0.88"]).await;
    let to = SocketAddr::new(ip("127.0.0.87"), port);
    let strict = gtsm_socket_from("127.0.0.88");
    let early = tokio::time::timeout(Duration::from_millis(1500), strict.connect(to)).await;
    assert!(
        early.is_err(),
        "the SYN-ACK of a listener without GTSM peers is dropped"
    );
    // A GTSM peer: the listener sends with TTL 255.
    let gtsm = PeerConfig {
        ttl_security: true,
        ..passive_peer("127.0.0.89")
    };
    speaker.add_peer(gtsm).await.unwrap();
    speaker.peers().await.unwrap();
    let strict = gtsm_socket_from("127.0.0.89");
    let mut stream = tokio::time::timeout(Duration::from_secs(2), strict.connect(to))
        .await
        .expect("the SYN-ACK has TTL 255")
        .unwrap();
    assert!(matches!(
        read_message(&mut stream).await,
        Some(Message::Open(_))
    ));
    // A peer without GTSM still connects on the same listener.
    let mut plain = connect_from("127.0.0.88", "127.0.0.87", port).await;
    assert!(matches!(
        read_message(&mut plain).await,
        Some(Message::Open(_))
    ));
    speaker.shutdown(false).await.unwrap();
}
