//! What a running lab owns, kept on disk in `/run/tern-lab/<lab>/state.json` and rewritten after
//! every step of `up`, so that `tern-lab down` in another process (or the next `up` after a
//! crash) removes exactly what was created: the namespaces, and the processes by PID.
//!
//! Each node's daemons keep their config copies, control sockets, pid files and logs in
//! `/run/tern-lab/<lab>/<node>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::topology::DaemonKind;

/// Where labs keep their state and runtime files.
pub const RUN_DIR: &str = "/run/tern-lab";

/// Everything a lab owns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    /// The lab name.
    pub name: String,
    /// The topology file it was built from.
    pub file: PathBuf,
    /// Namespaces, in creation order (each recorded just before it is created).
    pub namespaces: Vec<String>,
    /// Processes started, to stop by PID.
    pub processes: Vec<ProcessRecord>,
    /// Per node: where it lives and what runs there.
    pub nodes: BTreeMap<String, NodeState>,
}

/// A process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The node it serves.
    pub node: String,
    /// Its program name, as `/proc/<pid>/comm` shows it (checked before signalling it).
    pub program: String,
    /// Its PID.
    pub pid: u32,
    /// The namespace it runs in (checked before signalling it).
    pub netns: String,
}

/// A node of a running lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// Its namespace.
    pub netns: String,
    /// The daemon the topology asks for.
    pub daemon: DaemonKind,
    /// Whether that daemon was started.
    pub started: bool,
    /// Why not, or anything else worth showing in `status`.
    pub note: String,
    /// Its runtime directory (config copies, sockets, pid files, logs).
    pub dir: PathBuf,
    /// Its pods' namespaces.
    pub pods: Vec<String>,
}

impl LabState {
    /// A fresh state for lab `name` built from `file`.
    pub fn new(name: &str, file: &Path) -> Self {
        LabState {
            name: name.to_string(),
            file: file.to_path_buf(),
            ..LabState::default()
        }
    }

    /// The runtime directory of lab `name`.
    pub fn dir_of(name: &str) -> PathBuf {
        Path::new(RUN_DIR).join(name)
    }

    /// This lab's runtime directory.
    pub fn dir(&self) -> PathBuf {
        Self::dir_of(&self.name)
    }

    fn path_of(name: &str) -> PathBuf {
        Self::dir_of(name).join("state.json")
    }

    /// The state of lab `name`, if it has one.
    pub fn load(name: &str) -> Result<Option<Self>> {
        let path = Self::path_of(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io(path, error)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| Error::State {
                path,
                what: error.to_string(),
            })
    }

    /// Writes the state (to a temporary file, then renamed over the old one).
    pub fn save(&self) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = Self::path_of(&self.name);
        let tmp = dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|error| Error::State {
            path: path.clone(),
            what: error.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// The labs that have a state on this machine.
    pub fn list() -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(RUN_DIR) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io(RUN_DIR, error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(RUN_DIR, e))?;
            if entry.path().join("state.json").exists() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}
