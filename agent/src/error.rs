//! The agent's refusals, typed: what went wrong and what to fix. The control API maps each to a
//! precise gRPC code in one place (`api::convert`); nothing else compares error strings.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// A block the agent will not take, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The block's address has bits set below its length.
    #[error("{block} has host bits set: write {}/{}", block.network(), block.prefix())]
    HostBits {
        /// The block as given.
        block: IpNetwork,
    },
    /// No IP pool holds the block.
    #[error("{block} is inside no IP pool")]
    OutsidePools {
        /// The block as given.
        block: IpNetwork,
    },
    /// The pool that holds the block is disabled.
    #[error("pool {pool} is disabled: enable it before adding blocks")]
    PoolDisabled {
        /// The disabled pool.
        pool: IpNetwork,
    },
    /// The block is not of its pool's block size (nor a single address).
    #[error("{block} must be a /{block_size} block of pool {pool} (or a single address)")]
    WrongSize {
        /// The block as given.
        block: IpNetwork,
        /// The pool that holds it.
        pool: IpNetwork,
        /// The pool's block size.
        block_size: u8,
    },
    /// The block overlaps another block of this node.
    #[error("{block} overlaps block {other}")]
    Overlaps {
        /// The block as given.
        block: IpNetwork,
        /// The block it overlaps.
        other: IpNetwork,
    },
    /// The block comes from the configuration file, which the API cannot change.
    #[error("{block} comes from the configuration file: remove it there")]
    FromConfig {
        /// The block as given.
        block: IpNetwork,
    },
    /// The state file could not be written, so the change was not made.
    #[error("the state file {} cannot be written ({reason}): nothing was changed; fix the file or its folder and try again", path.display())]
    NotSaved {
        /// The state file.
        path: std::path::PathBuf,
        /// What the system said.
        reason: String,
    },
}

/// A peer request the agent refuses, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No peer has this address.
    #[error("no peer {0}")]
    NotFound(IpAddr),
    /// A peer with this address exists already.
    #[error("peer {0} exists: use UpdatePeer to change it")]
    AlreadyExists(IpAddr),
    /// The address is this node's own.
    #[error("{0} is this node's own address")]
    OwnAddress(IpAddr),
}

/// A peer entry of the configuration that cannot be turned into a session.
#[derive(Debug, thiserror::Error)]
pub enum DesiredPeerError {
    /// `peerIP` is neither an address nor address:port.
    #[error("peer {0}")]
    PeerIp(#[from] BadPeerIp),
    /// The password file holds a key the kernel cannot take.
    #[error("peer {peer}: passwordFile {}: {source}", path.display())]
    PasswordTooLong {
        /// The peer's `peerIP`.
        peer: String,
        /// The file.
        path: std::path::PathBuf,
        /// How long it is.
        #[source]
        source: PasswordTooLong,
    },
    /// The password file cannot be read.
    #[error("peer {peer}: passwordFile {}: {source}", path.display())]
    PasswordFile {
        /// The peer's `peerIP`.
        peer: String,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A TCP MD5 key longer than [`crate::config::MAX_MD5_KEY`] octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the TCP MD5 password is {0} octets; at most 80 fit (RFC 2385, the kernel's limit)")]
pub struct PasswordTooLong(pub usize);

/// Calico's `peerIP` that is neither an address nor address:port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or address:port (IPv6 with a port: [fd00::1]:179)")]
pub struct BadPeerIp(pub String);

/// Why the agent cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The kernel's routing socket cannot be opened or read.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// A system resource (socket, listener, signal handler) is not available.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A configured peer cannot be turned into a session.
    #[error(transparent)]
    Peer(#[from] DesiredPeerError),
    /// The speaker stopped under us.
    #[error("the BGP speaker stopped")]
    SpeakerStopped(#[from] tern_bgp::Stopped),
}

impl AgentError {
    /// An I/O failure while setting up `what`.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
        move |source| AgentError::Io { what, source }
    }
}
