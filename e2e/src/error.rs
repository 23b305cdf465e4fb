//! Errors of the lab runner and its test helpers. Topology files have their own error type
//! ([`crate::topology::TopologyError`]); everything that happens while a lab runs is an [`Error`].

use std::path::PathBuf;
use std::time::Duration;

use crate::topology::TopologyError;

/// Results of the lab runner.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while building, inspecting or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology file is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),

    /// A lab needs root (network namespaces, daemons binding port 179).
    #[error("building a lab needs root (network namespaces); run as root")]
    NotRoot,

    /// A program the lab needs is not installed.
    #[error("{program} is not installed ({why}); install it with: apt-get install {package}")]
    Missing {
        /// The program looked for.
        program: String,
        /// What needs it.
        why: String,
        /// The Debian package that has it.
        package: String,
    },

    /// A command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, as text.
        status: String,
        /// What it printed on stderr (or stdout when stderr was empty), trimmed.
        stderr: String,
    },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A node's daemon did not start or its config was refused.
    #[error("node {node}: {what}")]
    Daemon {
        /// The node.
        node: String,
        /// What happened, with the log lines that explain it when there are any.
        what: String,
    },

    /// A condition was not met in time.
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last observation, to tell why.
        last: String,
    },

    /// A lab, node, pod or peer that does not exist was named.
    #[error("{0}")]
    NotFound(String),

    /// The output of a tool could not be understood.
    #[error("cannot understand the output of `{command}`: {what}")]
    Parse {
        /// The command whose output this was.
        command: String,
        /// What was wrong.
        what: String,
    },

    /// The lab state file is unreadable.
    #[error("lab state {path}: {what}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },

    /// Teardown could not remove everything; each entry names what is left and why.
    #[error("teardown incomplete: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
