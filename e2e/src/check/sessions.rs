//! BGP session states as each daemon (FRR, BIRD, GoBGP) reports them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::wait_for;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::topology::DaemonKind;

// ---------------------------------------------------------------------------------------------
// Sessions.
// ---------------------------------------------------------------------------------------------

/// The BGP state a node's daemon reports for each of its peers, by peer address, spelled as
/// RFC 4271 does (`Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`, `Established`).
pub fn sessions(lab: &Lab, node: &str) -> Result<BTreeMap<IpAddr, String>> {
    match running(lab, node)? {
        DaemonKind::Frr => {
            let json = json_of(lab, node, &["vtysh", "-c", "show bgp neighbors json"])?;
            Ok(frr_sessions(&json))
        }
        DaemonKind::Bird => {
            let text = lab.exec(node, &["birdc", "show", "protocols", "all"])?;
            Ok(bird_protocols(&text)
                .into_iter()
                .filter_map(|p| Some((p.neighbor?, p.state)))
                .collect())
        }
        DaemonKind::Gobgp => {
            let json = json_of(lab, node, &["gobgp", "neighbor", "-j"])?;
            Ok(gobgp_sessions(&json))
        }
        other => Err(unsupported(node, other, "session checks")),
    }
}

/// Waits until `node`'s daemon has its session with `peer` Established.
pub fn wait_established(lab: &Lab, node: &str, peer: IpAddr, timeout: Duration) -> Result<()> {
    wait_for(
        &format!("node {node}: session with {peer} Established"),
        timeout,
        || {
            let all = sessions(lab, node)?;
            match all.get(&peer) {
                Some(state) if state == "Established" => Ok(Some(())),
                Some(state) => Err(Error::NotFound(format!("{peer} is {state}"))),
                None => Err(Error::NotFound(format!(
                    "{node} has no session with {peer} (it has {all:?})"
                ))),
            }
        },
    )
}

pub(super) fn running(lab: &Lab, node: &str) -> Result<DaemonKind> {
    lab.running_daemon(node)?
        .ok_or_else(|| Error::NotFound(format!("node {node} runs no daemon")))
}

pub(super) fn unsupported(node: &str, daemon: DaemonKind, what: &str) -> Error {
    Error::NotFound(format!(
        "node {node} runs {daemon}: {what} are not available for it"
    ))
}

pub(super) fn json_of<S: AsRef<str>>(lab: &Lab, node: &str, argv: &[S]) -> Result<Value> {
    let text = lab.exec(node, argv)?;
    serde_json::from_str(&text).map_err(|error| Error::Parse {
        command: argv.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "),
        what: format!("{error}: {}", text.chars().take(300).collect::<String>()),
    })
}

/// Normalizes a state name to RFC 4271's spelling.
pub(super) fn rfc_state(state: &str) -> String {
    match state.to_ascii_lowercase().as_str() {
        "idle" => "Idle",
        "connect" => "Connect",
        "active" => "Active",
        "opensent" => "OpenSent",
        "openconfirm" => "OpenConfirm",
        "established" => "Established",
        _ => return state.to_string(),
    }
    .to_string()
}

/// `show bgp neighbors json`: `{ "<peer>": { "bgpState": "Established", ... }, ... }`.
pub(super) fn frr_sessions(json: &Value) -> BTreeMap<IpAddr, String> {
    let Some(peers) = json.as_object() else {
        return BTreeMap::new();
    };
    peers
        .iter()
        .filter_map(|(peer, info)| {
            let addr = peer.parse().ok()?;
            Some((addr, rfc_state(info.get("bgpState")?.as_str()?)))
        })
        .collect()
}

/// `gobgp neighbor -j`: `[{ "state": { "neighbor_address": ..., "session_state": 6 } }]`.
pub(super) fn gobgp_sessions(json: &Value) -> BTreeMap<IpAddr, String> {
    const STATES: [&str; 7] = [
        "Unknown",
        "Idle",
        "Connect",
        "Active",
        "OpenSent",
        "OpenConfirm",
        "Established",
    ];
    let Some(peers) = json.as_array() else {
        return BTreeMap::new();
    };
    peers
        .iter()
        .filter_map(|peer| {
            let state = peer.get("state")?;
            let addr = state
                .get("neighbor_address")
                .or_else(|| peer.pointer("/conf/neighbor_address"))?
                .as_str()?
                .parse()
                .ok()?;
            let session = match state.get("session_state") {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| STATES.get(n as usize))
                    .map_or_else(|| n.to_string(), |s| (*s).to_string()),
                Some(Value::String(s)) => rfc_state(s),
                _ => "Unknown".to_string(),
            };
            Some((addr, session))
        })
        .collect()
}

/// A BGP protocol in `birdc show protocols all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BirdProtocol {
    pub(super) name: String,
    pub(super) neighbor: Option<IpAddr>,
    pub(super) state: String,
}

/// The BGP protocols of `birdc show protocols all`, with their neighbor and BGP state.
pub(super) fn bird_protocols(text: &str) -> Vec<BirdProtocol> {
    let mut protocols: Vec<BirdProtocol> = Vec::new();
    let mut in_bgp = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            in_bgp = fields.get(1) == Some(&"BGP");
            if in_bgp {
                protocols.push(BirdProtocol {
                    name: fields[0].to_string(),
                    neighbor: None,
                    state: fields.get(5).map_or("Idle", |s| s).to_string(),
                });
            }
            continue;
        }
        let Some(protocol) = protocols.last_mut().filter(|_| in_bgp) else {
            continue;
        };
        let line = line.trim();
        if let Some(state) = line.strip_prefix("BGP state:") {
            protocol.state = rfc_state(state.trim());
        } else if let Some(addr) = line.strip_prefix("Neighbor address:") {
            // "10.0.0.1" or "fe80::1%eth1".
            let addr = addr.trim().split('%').next().unwrap_or_default();
            protocol.neighbor = addr.parse().ok();
        }
    }
    protocols
}
