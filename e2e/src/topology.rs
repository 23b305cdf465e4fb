//! Topology files in containerlab's format (`*.clab.yml`), read and validated.
//!
//! The same file deploys under containerlab on a machine with Docker; what this runner needs
//! beyond containerlab's own fields goes where containerlab tolerates it:
//! - `labels`: `tern.daemon` (which daemon the node runs, overriding the guess from `image`) and
//!   `tern.pods` (pod namespaces behind the node, Calico style);
//! - `exec`: addresses, routes and sysctls (`ip ...`, `sysctl net....`) run in the node once its
//!   links are up, and daemon commands (`vtysh ...`, `birdc ...`, `gobgp ...`) run once its daemon
//!   is up;
//! - `binds`: the daemon's config (`host/path:container/path`, host path relative to the file).
//!
//! Validation refuses anything the runner cannot do faithfully, naming the file, the node or link,
//! and what to change. `e2e/README.md` documents the format.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

mod parse;

pub use parse::{parse_pods, split_words};

/// A topology file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The topology file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML for a topology (unknown field, wrong type, ...).
    #[error("{file}: {source}")]
    Yaml {
        /// The topology file.
        file: PathBuf,
        /// serde_yaml's error, with line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// The file parses but asks for something the runner refuses.
    #[error("{file}: {what}")]
    Invalid {
        /// The topology file.
        file: PathBuf,
        /// What is wrong and what to change.
        what: String,
    },
}

/// The label that chooses a node's daemon, overriding the guess from its image.
pub const LABEL_DAEMON: &str = "tern.daemon";
/// The label that lists a node's pods: `name=IPv4[+IPv6],...`.
pub const LABEL_PODS: &str = "tern.pods";

/// A validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The lab name (`name:`); namespaces are called `tern-<name>-<node>`.
    pub name: String,
    /// The topology file, absolute.
    pub file: PathBuf,
    /// Nodes by name (bridges included).
    pub nodes: BTreeMap<String, Node>,
    /// Point-to-point links, in file order.
    pub links: Vec<Link>,
}

/// One node of the topology.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// A host (`linux`) or a multi-access segment (`bridge`).
    pub kind: NodeKind,
    /// The container image containerlab would run (only used to guess the daemon here).
    pub image: Option<String>,
    /// The daemon the runner starts on it.
    pub daemon: DaemonKind,
    /// Files bound into the container; the daemon's config is one of them.
    pub binds: Vec<Bind>,
    /// Commands run in the node after its links are up (network) or its daemon started (control).
    pub exec: Vec<ExecLine>,
    /// Environment for the node's daemon.
    pub env: BTreeMap<String, String>,
    /// containerlab labels, `tern.*` ones included.
    pub labels: BTreeMap<String, String>,
    /// Pod namespaces behind the node.
    pub pods: Vec<Pod>,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// containerlab `kind: linux`: a host, a network namespace here.
    Linux,
    /// containerlab `kind: bridge`: a Linux bridge, in a namespace of its own here.
    Bridge,
}

/// The daemon a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonKind {
    /// Nothing: a plain host.
    None,
    /// FRR (zebra, staticd, bgpd and whatever `/etc/frr/daemons` enables).
    Frr,
    /// BIRD 2.
    Bird,
    /// GoBGP (`gobgpd`).
    Gobgp,
    /// tern's own agent.
    Ternd,
}

impl DaemonKind {
    /// The label value naming this daemon.
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonKind::None => "none",
            DaemonKind::Frr => "frr",
            DaemonKind::Bird => "bird",
            DaemonKind::Gobgp => "gobgp",
            DaemonKind::Ternd => "ternd",
        }
    }

    fn from_label(value: &str) -> Option<Self> {
        Some(match value {
            "none" => DaemonKind::None,
            "frr" => DaemonKind::Frr,
            "bird" => DaemonKind::Bird,
            "gobgp" => DaemonKind::Gobgp,
            "ternd" => DaemonKind::Ternd,
            _ => return None,
        })
    }

    /// The daemon an image runs, guessed from its name.
    fn from_image(image: &str) -> Self {
        let image = image.to_ascii_lowercase();
        if image.contains("frr") {
            DaemonKind::Frr
        } else if image.contains("bird") {
            DaemonKind::Bird
        } else if image.contains("gobgp") {
            DaemonKind::Gobgp
        } else if image.contains("tern") {
            DaemonKind::Ternd
        } else {
            DaemonKind::None
        }
    }

    /// Where the daemon's config is bound in the container (what `binds` must name).
    pub fn config_paths(self) -> &'static [&'static str] {
        match self {
            DaemonKind::None => &[],
            DaemonKind::Frr => &["/etc/frr/frr.conf"],
            DaemonKind::Bird => &["/etc/bird/bird.conf", "/etc/bird.conf"],
            DaemonKind::Gobgp => &[
                "/etc/gobgp/gobgpd.conf",
                "/etc/gobgp/gobgpd.toml",
                "/etc/gobgp/gobgpd.yaml",
                "/etc/gobgp/gobgpd.yml",
                "/etc/gobgp/gobgpd.json",
            ],
            DaemonKind::Ternd => &["/etc/tern/ternd.yaml", "/etc/tern/ternd.yml"],
        }
    }
}

impl fmt::Display for DaemonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `binds` entry: `host:container[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The file on this machine, absolute.
    pub host: PathBuf,
    /// Where containerlab mounts it in the container.
    pub container: PathBuf,
}

/// A link between two interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The first end.
    pub a: Endpoint,
    /// The second end.
    pub b: Endpoint,
}

/// One end of a link: `node:interface`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The node.
    pub node: String,
    /// The interface name inside the node.
    pub iface: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.iface)
    }
}

/// A pod behind a node (label `tern.pods`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Its name.
    pub name: String,
    /// Its IPv4 address (a /32 on the pod's `eth0`).
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address (a /128), when dual-stack.
    pub ipv6: Option<Ipv6Addr>,
}

/// A command of a node's `exec` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLine {
    /// The words of the command, shell quoting removed.
    pub argv: Vec<String>,
    /// What kind of command it is, which decides when it runs.
    pub kind: ExecKind,
}

/// The commands `exec` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// `ip ...` in the node's namespace, once links are up.
    Ip,
    /// `sysctl ...` of `net.*` keys in the node's namespace, once links are up.
    Sysctl,
    /// `vtysh ...` against the node's FRR, once it runs.
    Vtysh,
    /// `birdc ...` against the node's BIRD, once it runs.
    Birdc,
    /// `gobgp ...` against the node's GoBGP, once it runs.
    Gobgp,
}

impl ExecKind {
    /// Whether the line configures the network (runs before daemons) rather than a daemon.
    pub fn is_network(self) -> bool {
        matches!(self, ExecKind::Ip | ExecKind::Sysctl)
    }
}

impl Node {
    /// The bind holding the daemon's config, if the node runs a daemon.
    pub fn config_bind(&self) -> Option<&Bind> {
        let paths = self.daemon.config_paths();
        self.binds
            .iter()
            .find(|bind| paths.iter().any(|p| bind.container == Path::new(p)))
    }

    /// The bind whose container path is `path`.
    pub fn bind_for(&self, path: &str) -> Option<&Bind> {
        self.binds
            .iter()
            .find(|bind| bind.container == Path::new(path))
    }

    /// The pod called `name`.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|pod| pod.name == name)
    }
}
