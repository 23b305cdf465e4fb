//! `ternctl watch`: peer state and route changes streamed until interrupted, one line (or one
//! JSON object, or one YAML document) per event.

use std::time::SystemTime;

use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::watch_service_client::WatchServiceClient;
use tonic::transport::Channel;

use super::Error;
use super::output::{Output, family_name, rfc3339, state_name};
use super::routes::{RouteView, route_view};

/// One event as ternctl shows it, stamped with the time it arrived.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum EventView {
    PeerState {
        time: String,
        address: String,
        state: &'static str,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    },
    Route {
        time: String,
        prefix: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        route: Option<RouteView>,
    },
    EndOfRib {
        time: String,
        address: String,
        family: &'static str,
    },
    Resync {
        time: String,
        first: bool,
        last: bool,
        routes: Vec<RouteView>,
    },
    MaxPrefixExceeded {
        time: String,
        address: String,
        count: u64,
        limit: u32,
    },
}

/// An event as one line of text.
fn event_line(event: &EventView) -> String {
    match event {
        EventView::PeerState {
            time,
            address,
            state,
            error,
        } => {
            let error = if error.is_empty() {
                String::new()
            } else {
                format!(" ({error})")
            };
            format!("{time} peer {address} {state}{error}")
        }
        EventView::Route {
            time,
            prefix,
            route: None,
        } => format!("{time} route {prefix} withdrawn"),
        EventView::Route {
            time,
            prefix,
            route: Some(route),
        } => {
            let via: Vec<String> = route
                .paths
                .iter()
                .map(|p| {
                    if p.peer.is_empty() {
                        format!("{} (local)", p.next_hop)
                    } else {
                        format!("{} (peer {})", p.next_hop, p.peer)
                    }
                })
                .collect();
            format!("{time} route {prefix} via {}", via.join(", "))
        }
        EventView::EndOfRib {
            time,
            address,
            family,
        } => format!("{time} end-of-rib {address} {family}"),
        EventView::Resync {
            time,
            first,
            last,
            routes,
        } => format!(
            "{time} resync{}{}: {} routes",
            if *first { " (start)" } else { "" },
            if *last { " (end)" } else { "" },
            routes.len()
        ),
        EventView::MaxPrefixExceeded {
            time,
            address,
            count,
            limit,
        } => format!("{time} peer {address} over its prefix limit: {count} > {limit}"),
    }
}

/// `ternctl watch`: prints each event as it comes, until ternd ends the stream.
pub(super) async fn follow(
    channel: Channel,
    output: Output,
    request: pb::WatchRequest,
) -> Result<(), Error> {
    use pb::watch_response::Event;
    let mut stream = WatchServiceClient::new(channel)
        .watch(request)
        .await?
        .into_inner();
    while let Some(message) = stream.message().await? {
        let time = rfc3339(SystemTime::now());
        let view = match message.event {
            None => continue,
            Some(Event::PeerState(p)) => EventView::PeerState {
                time,
                address: p.address,
                state: state_name(p.state),
                error: p.error,
            },
            Some(Event::Route(r)) => EventView::Route {
                time,
                prefix: r.prefix,
                route: r.route.map(route_view),
            },
            Some(Event::EndOfRib(e)) => EventView::EndOfRib {
                time,
                address: e.address,
                family: family_name(e.family),
            },
            Some(Event::Resync(r)) => EventView::Resync {
                time,
                first: r.first,
                last: r.last,
                routes: r.routes.into_iter().map(route_view).collect(),
            },
            Some(Event::MaxPrefixExceeded(m)) => EventView::MaxPrefixExceeded {
                time,
                address: m.address,
                count: m.count,
                limit: m.limit,
            },
        };
        // One event per line in JSON (NDJSON), one document per event in YAML.
        match output {
            Output::Table => println!("{}", event_line(&view)),
            Output::Json => println!("{}", serde_json::to_string(&view).unwrap_or_default()),
            Output::Yaml => print!("---\n{}", serde_yaml::to_string(&view).unwrap_or_default()),
        }
    }
    Err(Error::WatchClosed)
}
