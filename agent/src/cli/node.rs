//! `ternctl node status`: whether ternd runs and its BGP sessions, in the layout of
//! `calicoctl node status` (which reads BIRD), so that runbooks written for Calico keep working.

use std::time::SystemTime;

use clap::Subcommand;
use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::peer_service_client::PeerServiceClient;
use tonic::transport::Channel;

use super::Error;
use super::output::{Output, print, since, table};
use super::peers::peer_view;

/// `ternctl node ...`.
#[derive(Debug, Subcommand)]
pub(super) enum NodeCommand {
    /// Whether ternd runs, and its BGP sessions, in calicoctl's layout.
    Status,
}

/// What `node status` shows.
#[derive(Debug, Serialize)]
struct NodeStatusView {
    running: bool,
    ipv4: Vec<NodeStatusPeer>,
    ipv6: Vec<NodeStatusPeer>,
}

/// One session row, as calicoctl words it (`up` or `start`).
#[derive(Debug, Serialize)]
struct NodeStatusPeer {
    peer_address: String,
    peer_type: &'static str,
    state: &'static str,
    since: String,
    info: String,
}

/// `ternctl node status`: the sessions in calicoctl's layout, IPv4 then IPv6.
pub(super) async fn status(channel: Channel, output: Output) -> Result<(), Error> {
    let peers = PeerServiceClient::new(channel)
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner()
        .peers;
    let now = SystemTime::now();
    let mut view = NodeStatusView {
        running: true,
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    for peer in peers.into_iter().map(peer_view) {
        let established = peer.state == "Established";
        let row = NodeStatusPeer {
            state: if established { "up" } else { "start" },
            since: peer.since_time.map(|t| since(t, now)).unwrap_or_default(),
            info: if established || peer.last_error.is_empty() {
                peer.state.to_owned()
            } else {
                format!("{} {}", peer.state, peer.last_error)
            },
            peer_type: peer.peer_type,
            peer_address: peer.address,
        };
        if row.peer_address.contains(':') {
            view.ipv6.push(row);
        } else {
            view.ipv4.push(row);
        }
    }
    print(output, &view, || {
        let mut out = String::from("Tern process is running.\n");
        for (family, rows) in [("IPv4", &view.ipv4), ("IPv6", &view.ipv6)] {
            out.push_str(&format!("\n{family} BGP status\n"));
            if rows.is_empty() {
                out.push_str(&format!("No {family} peers found.\n"));
                continue;
            }
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.peer_address.clone(),
                        r.peer_type.to_owned(),
                        r.state.to_owned(),
                        r.since.clone(),
                        r.info.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
        out.push('\n');
        out
    });
    Ok(())
}
