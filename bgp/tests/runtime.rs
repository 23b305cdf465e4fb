//! Two speakers on loopback addresses talk real BGP over TCP through the tokio runtime.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::fsm::State;
use tern_bgp::speaker::config::{PeerConfig, SpeakerConfig};
use tern_bgp::speaker::core::SpeakerEvent;
use tern_bgp::speaker::runtime::{Notice, Speaker, Subscription};
use tern_bgp::wire::{Community, Message, NextHop, code};
use tokio::net::TcpListener;

mod common;

use common::{accept_session, read_message};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn wait_for(
    sub: &mut Subscription,
    what: &str,
    mut pred: impl FnMut(&SpeakerEvent) -> bool,
) -> SpeakerEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let notice = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("speaker stopped");
        if let Notice::Event(event) = notice
            && pred(&event)
        {
            return event;
        }
    }
}

/// Starts a speaker on `address` and returns it with its port.
async fn speaker(asn: u32, address: &str) -> (Speaker, u16) {
    let id: Ipv4Addr = address.parse().unwrap();
    let (speaker, bound) = Speaker::start(
        SpeakerConfig::new(asn, id),
        &[SocketAddr::new(ip(address), 0)],
    )
    .await
    .unwrap();
    (speaker, bound[0].port())
}

fn peer(address: &str, port: u16, asn: u32, local: &str) -> PeerConfig {
    PeerConfig {
        port,
        local_address: Some(ip(local)),
        connect_retry: Duration::from_secs(1),
        ..PeerConfig::new(ip(address), asn)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_establish_and_exchange_a_route_with_its_communities() {
    let (a, port_a) = speaker(65001, "127.0.0.11").await;
    let (b, port_b) = speaker(65002, "127.0.0.12").await;
    let mut events_b = b.subscribe();
    a.add_peer(peer("127.0.0.12", port_b, 65002, "127.0.0.11"))
        .await
        .unwrap();
    b.add_peer(peer("127.0.0.11", port_a, 65001, "127.0.0.12"))
        .await
        .unwrap();
    wait_for(&mut events_b, "Established", |e| {
        matches!(
            e,
            SpeakerEvent::PeerState {
                state: State::Established,
                ..
            }
        )
    })
    .await;

    let block: IpNetwork = "10.65.3.0/26".parse().unwrap();
    a.originate(block, vec![Community::new(65001, 42)])
        .await
        .unwrap();
    let event = wait_for(
        &mut events_b,
        "the route",
        |e| matches!(e, SpeakerEvent::BestPath { prefix, best: Some(_), .. } if *prefix == block),
    )
    .await;
    let SpeakerEvent::BestPath {
        best: Some(best), ..
    } = event
    else {
        unreachable!()
    };
    let path = &best.paths[0].attributes;
    assert_eq!(path.next_hop, NextHop::V4(Ipv4Addr::new(127, 0, 0, 11)));
    assert_eq!(path.attributes.communities, vec![Community::new(65001, 42)]);
    assert_eq!(
        path.attributes.as_path.as_ref().unwrap().to_string(),
        "65001"
    );

    let routes = b.routes(None, 100).await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].sources, vec![Some(ip("127.0.0.11"))]);
    let peers = b.peers().await.unwrap();
    assert_eq!(peers[0].state, State::Established);
    assert_eq!(peers[0].counters.prefixes_accepted, 1);

    a.withdraw(block).await.unwrap();
    wait_for(
        &mut events_b,
        "the withdrawal",
        |e| matches!(e, SpeakerEvent::BestPath { prefix, best: None, .. } if *prefix == block),
    )
    .await;
    a.shutdown(false).await.unwrap();
    b.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_the_routes_with_the_peer() {
    let (a, port_a) = speaker(65001, "127.0.0.21").await;
    let (b, port_b) = speaker(65002, "127.0.0.22").await;
    let mut events_b = b.subscribe();
    a.add_peer(peer("127.0.0.22", port_b, 65002, "127.0.0.21"))
        .await
        .unwrap();
    b.add_peer(peer("127.0.0.21", port_a, 65001, "127.0.0.22"))
        .await
        .unwrap();
    let block: IpNetwork = "10.65.4.0/26".parse().unwrap();
    a.originate(block, vec![]).await.unwrap();
    wait_for(&mut events_b, "the route", |e| {
        matches!(e, SpeakerEvent::BestPath { best: Some(_), .. })
    })
    .await;
    a.shutdown(true).await.unwrap();
    wait_for(&mut events_b, "the session to drop", |e| {
        matches!(
            e,
            SpeakerEvent::PeerState {
                state: State::Idle,
                ..
            }
        )
    })
    .await;
    let routes = b.routes(None, 10).await.unwrap();
    assert_eq!(routes.len(), 1, "kept under graceful restart");
    b.shutdown(false).await.unwrap();
}

/// Originates `count` /24s (more changes than the event queue holds, while subscribers read
/// nothing) and waits until the last one went through.
async fn originate_many(speaker: &Speaker, count: u32) {
    for i in 0..count {
        let prefix = IpNetwork::V4(
            ipnetwork::Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap(),
        );
        speaker.originate(prefix, vec![]).await.unwrap();
    }
    let all = speaker.routes(None, usize::MAX).await.unwrap();
    assert_eq!(all.len(), count as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_gets_a_full_resync_not_a_gap() {
    let (speaker, _) = speaker(65001, "127.0.0.31").await;
    let mut slow = speaker.subscribe();
    // More changes than the event queue holds, while the subscriber reads nothing.
    let count = 70_000u32;
    originate_many(&speaker, count).await;
    let mut resynced = None;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(20), slow.next())
            .await
            .unwrap()
        {
            Some(Notice::Resync(all)) => {
                resynced = Some(all);
                break;
            }
            Some(Notice::Event(_)) => continue,
            None => break,
        }
    }
    let all = resynced.expect("a resync after falling behind");
    assert_eq!(all.len(), count as usize, "the resync holds every route");
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falling_behind_while_taking_a_batch_leads_to_a_resync_too() {
    let (speaker, _) = speaker(65001, "127.0.0.32").await;
    let mut slow = speaker.subscribe();
    let count = 70_000u32;
    originate_many(&speaker, count).await;
    // The batch reader sees the gap as "nothing ready" and stops...
    assert!(slow.try_next().is_none(), "no event after a gap");
    assert!(slow.try_next().is_none(), "still none until next() resyncs");
    // ...and the next wait answers it with the whole table.
    match tokio::time::timeout(Duration::from_secs(20), slow.next())
        .await
        .unwrap()
    {
        Some(Notice::Resync(all)) => assert_eq!(all.len(), count as usize),
        other => panic!("wanted a resync, got {other:?}"),
    }
    // Afterwards, batches work again.
    let prefix = IpNetwork::V4("192.0.2.0/24".parse().unwrap());
    speaker.originate(prefix, vec![]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while std::time::Instant::now() < deadline && !seen {
        while let Some(notice) = slow.try_next() {
            if let Notice::Event(SpeakerEvent::BestPath { prefix: p, .. }) = notice {
                seen |= p == prefix;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the next change arrives through try_next");
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossless_subscriber_gets_every_event_however_far_behind() {
    let (speaker, _) = speaker(65001, "127.0.0.33").await;
    let mut agent = speaker.subscribe_lossless();
    let count = 70_000u32;
    originate_many(&speaker, count).await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < count as usize {
        match tokio::time::timeout(Duration::from_secs(20), agent.next())
            .await
            .unwrap()
        {
            Some(Notice::Event(SpeakerEvent::BestPath { prefix, best, .. })) => {
                assert!(best.is_some());
                seen.insert(prefix);
            }
            Some(Notice::Event(_)) => {}
            Some(Notice::Resync(_)) => panic!("a lossless subscriber is never resynchronised"),
            None => panic!("the speaker stopped"),
        }
    }
    assert!(agent.try_next().is_none(), "nothing more than the changes");
    speaker.shutdown(false).await.unwrap();
}

fn is_state(state: State) -> impl FnMut(&SpeakerEvent) -> bool {
    move |e| matches!(e, SpeakerEvent::PeerState { state: s, .. } if *s == state)
}

/// A speaker whose only peer is played by the test on `address`, listening on a port of its
/// own.
async fn speaker_with_scripted_peer(address: &str, local: &str) -> (Speaker, TcpListener) {
    let (speaker, _) = speaker(65001, local).await;
    let listener = TcpListener::bind((ip(address), 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = PeerConfig {
        connect_retry: Duration::from_secs(5),
        ..peer(address, port, 65002, local)
    };
    speaker.add_peer(config).await.unwrap();
    (speaker, listener)
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_with_a_notification_when_its_hold_timer_expires() {
    let (speaker, listener) = speaker_with_scripted_peer("127.0.0.62", "127.0.0.61").await;
    let mut events = speaker.subscribe();
    let mut stream = accept_session(&listener, 65002, 3).await;
    wait_for(&mut events, "Established", is_state(State::Established)).await;
    let up = tokio::time::Instant::now();
    // The peer says nothing more; the speaker's KEEPALIVEs come each second, then the end.
    let notification = loop {
        match read_message(&mut stream).await {
            Some(Message::Notification(n)) => break n,
            Some(_) => continue,
            None => panic!("the connection closed without a NOTIFICATION"),
        }
    };
    assert_eq!(notification.code, code::HOLD_TIMER_EXPIRED);
    let waited = up.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "the hold time is 3 s, waited {waited:?}"
    );
    let down = wait_for(&mut events, "Idle", is_state(State::Idle)).await;
    let SpeakerEvent::PeerState { error, .. } = down else {
        unreachable!()
    };
    assert_eq!(
        error.as_deref(),
        Some("NOTIFICATION sent: hold timer expired")
    );
    speaker.shutdown(false).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_session_that_stayed_up_for_minutes_restarts_without_flap_damping() {
    let (speaker, listener) = speaker_with_scripted_peer("127.0.0.64", "127.0.0.63").await;
    let mut events = speaker.subscribe();
    // A flap: up and straight down, which doubles the idle hold time (1 s, then 2 s).
    let stream = accept_session(&listener, 65002, 0).await;
    wait_for(&mut events, "Established", is_state(State::Established)).await;
    drop(stream);
    wait_for(&mut events, "Idle", is_state(State::Idle)).await;
    // Up again, this time for five minutes (hold time 0: no KEEPALIVEs needed), past the
    // two-minute damping ceiling, so the session counts as stable.
    let stream = accept_session(&listener, 65002, 0).await;
    wait_for(&mut events, "Established", is_state(State::Established)).await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    drop(stream);
    wait_for(&mut events, "Idle", is_state(State::Idle)).await;
    let down = tokio::time::Instant::now();
    let (_stream, _) = listener.accept().await.unwrap();
    let waited = down.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "the idle hold time is back to 1 s, not the damped 2 s: waited {waited:?}"
    );
    speaker.shutdown(false).await.unwrap();
}
