//! What the agent's loop and the control API share: the commands the API sends the loop, the
//! handle it holds, and the status the loop reports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use tern_bgp::Speaker;
use tokio::sync::{mpsc, oneshot};

pub use crate::error::{BlockError, PeerError};
use crate::reconcile::{DesiredPeer, PeerKind};
use crate::tunnel::DataPath;

/// Where a block came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlockSource {
    /// The configuration file.
    Config,
    /// The control API (kept in the state file).
    Api,
}

/// What the agent reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// The node's name.
    pub node: String,
    /// The BGP router id.
    pub router_id: std::net::Ipv4Addr,
    /// Our AS.
    pub asn: u32,
    /// When the agent started.
    pub started: std::time::SystemTime,
    /// Every peer sent its End-of-RIB (or the restart time passed) and stale routes were swept.
    pub ready: bool,
    /// How many learned routes are in the kernel.
    pub kernel_routes: usize,
    /// Each peer's type, by address (for `ternctl node status`).
    pub peer_kinds: BTreeMap<IpAddr, PeerKind>,
    /// How packets to other nodes' pods leave this node.
    pub data_path: DataPath,
    /// The data path in words, with why it was chosen.
    pub data_path_detail: String,
    /// What was refused to protect the node.
    pub refusals: Refusals,
}

/// What the node refused to protect itself, counted since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Learned routes not installed because another protocol holds the prefix.
    pub kernel_routes_held_by_others: u64,
    /// TCP connections to the BGP port from addresses that are no peer, closed at once.
    pub connections_from_non_peers: u64,
    /// Connections closed because too many were not yet Established.
    pub connections_over_the_cap: u64,
    /// Connections dropped for sending no OPEN in time.
    pub connections_without_open: u64,
    /// Sessions dropped because the peer stopped reading what we sent.
    pub sessions_stalled: u64,
    /// Decapsulated IP-in-IP packets dropped: from no known node.
    pub ipip_unknown_source: u64,
    /// From a known node with an inner source outside its blocks.
    pub ipip_foreign_source: u64,
    /// With an inner destination that is not this node's.
    pub ipip_not_local: u64,
}

/// Requests the control API sends the agent's loop.
#[derive(Debug)]
pub enum Command {
    /// Add a block (idempotent); answers whether anything changed.
    AddBlock(IpNetwork, oneshot::Sender<Result<bool, BlockError>>),
    /// Remove an API block (idempotent); answers whether anything changed.
    RemoveBlock(IpNetwork, oneshot::Sender<Result<bool, BlockError>>),
    /// Make the API blocks exactly these.
    SetBlocks(Vec<IpNetwork>, oneshot::Sender<Result<(), BlockError>>),
    /// Every block with its source.
    ListBlocks(oneshot::Sender<Vec<(IpNetwork, BlockSource)>>),
    /// The agent's status.
    Status(oneshot::Sender<AgentStatus>),
    /// Whether each of these prefixes has a learned route in the kernel.
    Installed(Vec<IpNetwork>, oneshot::Sender<Vec<bool>>),
    /// Add a peer at runtime (kept until removed or ternd stops; a reload leaves it alone).
    AddPeer(DesiredPeer, oneshot::Sender<Result<(), PeerError>>),
    /// Replace a peer's configuration; it keeps its kind.
    UpdatePeer(DesiredPeer, oneshot::Sender<Result<(), PeerError>>),
    /// Remove a peer (one from the configuration comes back on the next reload).
    RemovePeer(IpAddr, oneshot::Sender<Result<(), PeerError>>),
    /// Reset a peer's session: `true` closes it, `false` refreshes routes both ways.
    ResetPeer(IpAddr, bool, oneshot::Sender<Result<(), PeerError>>),
}

/// A handle for the control API: commands for the agent and the speaker itself.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    /// Commands to the agent's loop.
    pub commands: mpsc::Sender<Command>,
    /// The speaker, for peers, routes and events.
    pub speaker: Speaker,
}
