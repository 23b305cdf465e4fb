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
    };
    print(output, &view, || {
        format!(
            "ternd {} on node {} (AS {}, router id {})\n\
             started:     {} (up {})\n\
             ready:       {}\n\
             data path:   {} ({})\n\
             peers:       {} established of {}\n\
             blocks:      {}\n\
             kernel:      {} learned routes\n",
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
        )
    });
    Ok(())
}
