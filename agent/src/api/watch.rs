//! WatchService: peer state and route changes streamed as they happen, optionally after a
//! snapshot of the whole table; a client that falls behind gets a resync, never a gap.

use tern_bgp::{Notice, RouteEntry};
use tern_proto::v1 as pb;
use tern_proto::v1::watch_service_server::WatchService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::convert;
use super::route::MAX_PAGE;
use super::server::{Api, Stream, stopping};

/// Messages a Watch stream may hold for a client before the stream waits; a client slower than
/// that makes the speaker's subscription lag, which ends in a resync rather than a gap.
const WATCH_QUEUE: usize = 256;

impl Api {
    /// The whole table and every peer's state, as Watch messages.
    async fn snapshot(
        &self,
        routes: Option<Vec<RouteEntry>>,
    ) -> Result<Vec<pb::WatchResponse>, Status> {
        let routes = match routes {
            Some(routes) => routes,
            None => {
                let mut all = Vec::new();
                let mut after = None;
                loop {
                    let page = self
                        .handle
                        .speaker
                        .routes(after, MAX_PAGE)
                        .await
                        .map_err(|_| stopping())?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.prefix);
                    all.extend(page);
                }
                all
            }
        };
        let mut messages = convert::resync(&routes);
        for peer in self.peers().await? {
            messages.push(convert::peer_state(
                peer.config.address,
                peer.state,
                peer.last_error,
            ));
        }
        Ok(messages)
    }

    /// Streams the events `request` asks for to `out` until the client goes or ternd stops.
    async fn stream_events(
        &self,
        request: pb::WatchRequest,
        out: &mpsc::Sender<Result<pb::WatchResponse, Status>>,
    ) -> Result<(), Status> {
        use pb::watch_response::Event;
        // Subscribe before the first snapshot so that nothing after it is missed.
        let mut events = self.handle.speaker.subscribe();
        let mut stop = self.stopping.clone();
        if request.initial_state {
            for message in self.snapshot(None).await? {
                if out.send(Ok(message)).await.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            let notice = tokio::select! {
                notice = events.next() => notice,
                () = out.closed() => return Ok(()),
                _ = stop.wait_for(|stopped| *stopped) => return Err(stopping()),
            };
            let messages = match notice {
                None => return Ok(()),
                Some(Notice::Resync(routes)) => {
                    warn!(
                        routes = routes.len(),
                        "a watch client fell behind: resynchronising it"
                    );
                    self.snapshot(Some(routes)).await?
                }
                Some(Notice::Event(event)) => {
                    let message = convert::event(event);
                    let wanted = match &message.event {
                        Some(Event::PeerState(_)) => !request.no_peers,
                        Some(Event::Route(_)) => !request.no_routes,
                        _ => true,
                    };
                    if !wanted {
                        continue;
                    }
                    vec![message]
                }
            };
            for message in messages {
                if out.send(Ok(message)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[tonic::async_trait]
impl WatchService for Api {
    type WatchStream = Stream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let (out, stream) = mpsc::channel(WATCH_QUEUE);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api.stream_events(request, &out).await {
                let _ = out.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use ipnetwork::{IpNetwork, Ipv4Network};
    use tern_bgp::{Speaker, SpeakerConfig};
    use tokio::sync::watch;

    use crate::handle::AgentHandle;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_client_that_falls_behind_gets_a_resync_not_a_gap() {
        let config = SpeakerConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1));
        let (speaker, _) = Speaker::start(config, &[]).await.unwrap();
        let (commands, _unused) = mpsc::channel(1);
        let (_stop, stopping) = watch::channel(false);
        let api = Api::new(
            AgentHandle {
                commands,
                speaker: speaker.clone(),
            },
            stopping,
        );
        let mut stream = api
            .watch(Request::new(pb::WatchRequest::default()))
            .await
            .unwrap()
            .into_inner();
        // Nobody reads while more routes change than a subscription holds (65,536 events).
        let count = 70_000u32;
        for i in 0..count {
            let prefix = Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap();
            speaker
                .originate(IpNetwork::V4(prefix), Vec::new())
                .await
                .unwrap();
        }
        use futures::StreamExt;
        let mut resynced = Vec::new();
        let mut changes = 0;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .expect("a resync within 60 s")
                .unwrap()
                .unwrap();
            match message.event {
                Some(pb::watch_response::Event::Route(_)) => changes += 1,
                Some(pb::watch_response::Event::Resync(part)) => {
                    assert_eq!(part.first, resynced.is_empty());
                    resynced.extend(part.routes);
                    if part.last {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(changes < count as usize, "the reader fell behind");
        assert_eq!(
            resynced.len(),
            count as usize,
            "the resync holds the whole table"
        );
        assert_eq!(resynced[0].prefix, "10.0.0.0/24");
    }
}
