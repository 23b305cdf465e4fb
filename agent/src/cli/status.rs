//! `ternctl status`: ternd's version, identity, uptime, readiness and data path.

use std::time::Duration;

use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::status_service_client::StatusServiceClient;
use tonic::transport::Channel;

use super::Error;
use super::output::{Output, print, rfc3339, system_time, uptime};

/// What `status` shows.
#[derive(Debug, Serialize)]
struct StatusView {
    version: String,
    node: String,
    router_id: String,
    asn: u32,
    started: String,
    uptime: String,
    ready: bool,
    data_path: &'static str,
    data_path_detail: String,
    peers: u32,
    peers_established: u32,
    blocks: u32,
    kernel_routes: u64,
    refusals: RefusalsView,
}

/// What ternd refused to protect the node.
#[derive(Debug, Default, Serialize)]
struct RefusalsView {
    kernel_routes_held_by_others: u64,
    connections_from_non_peers: u64,
    connections_over_the_cap: u64,
    connections_without_open: u64,
    sessions_stalled: u64,
    ipip_unknown_source: u64,
    ipip_foreign_source: u64,
    ipip_not_local: u64,
}

/// `ternctl status`: one screen about ternd itself.
pub(super) async fn show(channel: Channel, output: Output) -> Result<(), Error> {
    let s = StatusServiceClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    let uptime_value = s
        .uptime
        .map(|d| Duration::from_secs(d.seconds.max(0) as u64))
        .unwrap_or_default();
    let view = StatusView {
        version: s.version,
        node: s.node,
        router_id: s.router_id,
        asn: s.asn,
        started: system_time(s.started.as_ref())
            .map(rfc3339)
            .unwrap_or_default(),
        uptime: uptime(uptime_value),
        ready: s.ready,
        data_path: match pb::DataPath::try_from(s.data_path) {
            Ok(pb::DataPath::Routed) => "routed",
            Ok(pb::DataPath::Ipip) => "ipip",
            Ok(pb::DataPath::IpipUserspace) => "ipip-userspace",
            Ok(pb::DataPath::Vxlan) => "vxlan",
            _ => "unknown",
        },
        data_path_detail: s.data_path_detail,
        peers: s.peers,
        peers_established: s.peers_established,
        blocks: s.blocks,
        kernel_routes: s.kernel_routes,
        refusals: s
            .refusals
            .map(|r| RefusalsView {
                kernel_routes_held_by_others: r.kernel_routes_held_by_others,
                connections_from_non_peers: r.connections_from_non_peers,
                connections_over_the_cap: r.connections_over_the_cap,
                connections_without_open: r.connections_without_open,
                sessions_stalled: r.sessions_stalled,
                ipip_unknown_source: r.ipip_unknown_source,
                ipip_foreign_source: r.ipip_foreign_source,
                ipip_not_local: r.ipip_not_local,
            })
            .unwrap_or_default(),
    };
    print(output, &view, || {
        format!(
            "ternd {} on node {} (AS {}, router id {})\n\
             started:     {} (up {})\n\
             ready:       {}\n\
             data path:   {} ({})\n\
             peers:       {} established of {}\n\
             blocks:      {}\n\
             kernel:      {} learned routes\n\
             refused:     {} routes held by another protocol, {} connections from non-peers, \
             {} over the pending cap, {} without an OPEN, {} sessions that stopped reading, {} IP-in-IP packets (unknown node {}, forged source {}, \
             not local {})\n",
            view.version,
            view.node,
            view.asn,
            view.router_id,
            view.started,
            view.uptime,
            if view.ready {
                "yes"
            } else {
                "no (waiting for End-of-RIB)"
            },
            view.data_path,
            view.data_path_detail,
            view.peers_established,
            view.peers,
            view.blocks,
            view.kernel_routes,
            view.refusals.kernel_routes_held_by_others,
            view.refusals.connections_from_non_peers,
            view.refusals.connections_over_the_cap,
            view.refusals.connections_without_open,
            view.refusals.sessions_stalled,
            view.refusals.ipip_unknown_source
                + view.refusals.ipip_foreign_source
                + view.refusals.ipip_not_local,
            view.refusals.ipip_unknown_source,
            view.refusals.ipip_foreign_source,
            view.refusals.ipip_not_local,
        )
    });
    Ok(())
}
