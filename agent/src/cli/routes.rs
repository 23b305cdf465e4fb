//! `ternctl routes`: routes of the Loc-RIB with their ECMP set, why the best path won and the
//! kernel state, filtered by prefix, peer and family.

use clap::ValueEnum;
use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::route_service_client::RouteServiceClient;
use tonic::transport::Channel;

use super::Error;
use super::output::{Output, family_name, print, table};

/// `--family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Family {
    Ipv4,
    Ipv6,
}

/// The ListRoutes request for the options of `ternctl routes`.
pub(super) fn request(
    prefix: Option<String>,
    peer: Option<String>,
    family: Option<Family>,
    limit: Option<u32>,
) -> pb::ListRoutesRequest {
    pb::ListRoutesRequest {
        prefix: prefix.unwrap_or_default(),
        family: match family {
            None => pb::AddressFamily::Unspecified,
            Some(Family::Ipv4) => pb::AddressFamily::Ipv4Unicast,
            Some(Family::Ipv6) => pb::AddressFamily::Ipv6Unicast,
        } as i32,
        peer: peer.unwrap_or_default(),
        limit: limit.unwrap_or_default(),
        ..Default::default()
    }
}

/// A route as ternctl shows it, independent of the protobuf types.
#[derive(Debug, Serialize)]
pub(super) struct RouteView {
    prefix: String,
    family: &'static str,
    reason: String,
    kernel: &'static str,
    pub(super) paths: Vec<PathView>,
}

/// One path of a route's ECMP set.
#[derive(Debug, Serialize)]
pub(super) struct PathView {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) peer: String,
    pub(super) next_hop: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    next_hop_link_local: String,
    origin: &'static str,
    as_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    med: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_pref: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    communities: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    large_communities: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extended_communities: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    originator_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cluster_list: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    atomic_aggregate: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stale: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    long_lived_stale: bool,
}

/// A route from the API as ternctl shows it.
pub(super) fn route_view(route: pb::Route) -> RouteView {
    RouteView {
        prefix: route.prefix,
        family: family_name(route.family),
        reason: route.reason,
        kernel: match pb::KernelState::try_from(route.kernel) {
            Ok(pb::KernelState::Installed) => "installed",
            Ok(pb::KernelState::Blackhole) => "blackhole",
            Ok(pb::KernelState::NotInstalled) => "not installed",
            _ => "",
        },
        paths: route
            .paths
            .into_iter()
            .map(|p| PathView {
                peer: p.peer,
                next_hop: p.next_hop,
                next_hop_link_local: p.next_hop_link_local,
                origin: match pb::Origin::try_from(p.origin) {
                    Ok(pb::Origin::Igp) => "igp",
                    Ok(pb::Origin::Egp) => "egp",
                    Ok(pb::Origin::Incomplete) => "incomplete",
                    _ => "",
                },
                as_path: p.as_path,
                med: p.med,
                local_pref: p.local_pref,
                communities: p.communities,
                large_communities: p.large_communities,
                extended_communities: p.extended_communities,
                originator_id: p.originator_id,
                cluster_list: p.cluster_list,
                atomic_aggregate: p.atomic_aggregate,
                stale: p.stale,
                long_lived_stale: p.long_lived_stale,
            })
            .collect(),
    }
}

/// The table rows of `routes`: one per path, the prefix and reason on its first.
fn route_rows(routes: &[RouteView]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for route in routes {
        for (i, path) in route.paths.iter().enumerate() {
            let first = i == 0;
            rows.push(vec![
                if first {
                    route.prefix.clone()
                } else {
                    String::new()
                },
                path.next_hop.clone(),
                if path.peer.is_empty() {
                    "local".to_owned()
                } else {
                    path.peer.clone()
                },
                path.as_path.clone(),
                path.local_pref.map(|v| v.to_string()).unwrap_or_default(),
                path.med.map(|v| v.to_string()).unwrap_or_default(),
                path.communities.join(" "),
                if first {
                    route.reason.clone()
                } else {
                    String::new()
                },
                if first {
                    route.kernel.to_owned()
                } else {
                    String::new()
                },
            ]);
        }
    }
    rows
}

/// `ternctl routes`: every route `request` asks for, gathered from the stream, then printed.
pub(super) async fn list(
    channel: Channel,
    output: Output,
    request: pb::ListRoutesRequest,
) -> Result<(), Error> {
    let mut stream = RouteServiceClient::new(channel)
        .list_routes(request)
        .await?
        .into_inner();
    let mut routes = Vec::new();
    while let Some(page) = stream.message().await? {
        routes.extend(page.routes.into_iter().map(route_view));
    }
    print(output, &routes, || {
        if routes.is_empty() {
            return "No routes.\n".to_owned();
        }
        table(
            &[
                "PREFIX",
                "NEXT HOP",
                "PEER",
                "AS PATH",
                "LOCAL PREF",
                "MED",
                "COMMUNITIES",
                "BEST BECAUSE",
                "KERNEL",
            ],
            &route_rows(&routes),
        )
    });
    Ok(())
}
