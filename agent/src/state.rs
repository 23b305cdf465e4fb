//! The state file: the blocks added through the API, kept across restarts.
//!
//! Writes are atomic and durable: a temporary file beside the state file, fsynced, renamed into
//! place, and the folder fsynced so the rename itself survives a crash. A write that fails is
//! reported to the caller, which then changes nothing (the API call fails). Entries that do not
//! pass the checks at start (a pool removed since, a typo made by hand) are held: reported, left
//! out of the running blocks, and written back unchanged by every save, so nothing an operator
//! put there is erased. A file that cannot be read as YAML at all is moved aside, never
//! overwritten.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use tracing::{error, info, warn};

use crate::config::Config;

/// The file's form.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct File {
    /// The blocks, as text (so an entry that does not parse is kept as it is).
    #[serde(default)]
    blocks: Vec<String>,
}

/// The state file's contents as the agent uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Blocks that passed the checks.
    pub blocks: BTreeSet<IpNetwork>,
    /// Entries that did not, as written, with why: kept in the file, not used.
    pub held: Vec<(String, String)>,
}

impl Saved {
    /// Reads `config`'s state file and checks each entry against `config` (pools, sizes,
    /// overlaps with the file's blocks and each other). Problems are logged, not fatal.
    pub fn load(config: &Config) -> Saved {
        let path = &config.state_file;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Saved::default(),
            Err(e) => {
                error!(file = %path.display(), error = %e, "cannot read the state file: the blocks in it are not announced");
                return Saved::default();
            }
        };
        let file: File = match serde_yaml::from_str(&text) {
            Ok(file) => file,
            Err(e) => {
                let aside = aside(path);
                let moved = std::fs::rename(path, &aside);
                error!(
                    file = %path.display(),
                    error = %e,
                    moved_to = %aside.display(),
                    moved = moved.is_ok(),
                    "the state file is not valid YAML: it was moved aside, its blocks are not announced"
                );
                return Saved::default();
            }
        };
        let mut kept: Vec<IpNetwork> = config.blocks.clone();
        let mut saved = Saved::default();
        for entry in file.blocks {
            let checked = entry
                .trim()
                .parse::<IpNetwork>()
                .map_err(|e| format!("not a CIDR: {e}"))
                .and_then(|block| {
                    config
                        .check_block(block, &kept)
                        .map(|()| block)
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(block) => {
                    kept.push(block);
                    saved.blocks.insert(block);
                }
                Err(why) => {
                    warn!(block = %entry, %why, file = %path.display(), "a saved block is held: kept in the state file, not announced");
                    saved.held.push((entry, why));
                }
            }
        }
        if !saved.blocks.is_empty() {
            info!(
                blocks = saved.blocks.len(),
                "restored blocks added through the API"
            );
        }
        saved
    }

    /// Writes `blocks` and the held entries to `path`, durably.
    pub fn save(&self, path: &Path, blocks: &BTreeSet<IpNetwork>) -> std::io::Result<()> {
        let file = File {
            blocks: blocks
                .iter()
                .map(ToString::to_string)
                .chain(self.held.iter().map(|(entry, _)| entry.clone()))
                .collect(),
        };
        let text = serde_yaml::to_string(&file).map_err(std::io::Error::other)?;
        write_durably(path, text.as_bytes())
    }
}

/// Where an unreadable state file is moved.
fn aside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".unreadable");
    path.with_file_name(name)
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it into place and
/// fsyncs the folder, so a crash leaves either the old file or the new one.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
             ipPools:\n  - cidr: 10.244.0.0/16\nblocks: [10.244.1.0/26]\nstateFile: {}\n",
            dir.join("state.yaml").display()
        );
        Config::parse(&text, Path::new("t.yaml")).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn entries_that_fail_the_checks_are_held_and_written_back_by_every_save() {
        let dir = temp_dir("held");
        let config = config(&dir);
        std::fs::write(
            &config.state_file,
            "blocks:\n- 10.244.7.0/26\n- 10.99.0.0/26\n- not-a-block\n",
        )
        .unwrap();
        let saved = Saved::load(&config);
        assert_eq!(saved.blocks, ["10.244.7.0/26".parse().unwrap()].into());
        let held: Vec<&str> = saved.held.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(held, ["10.99.0.0/26", "not-a-block"]);
        assert!(
            saved.held[0].1.contains("inside no IP pool"),
            "{:?}",
            saved.held
        );
        let blocks: BTreeSet<IpNetwork> = ["10.244.8.0/26".parse().unwrap()].into();
        saved.save(&config.state_file, &blocks).unwrap();
        let again = Saved::load(&config);
        assert_eq!(again.blocks, blocks);
        assert_eq!(again.held, saved.held, "nothing is erased");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_and_a_failed_write_is_an_error() {
        let dir = temp_dir("bad");
        let config = config(&dir);
        std::fs::write(&config.state_file, "blocks: [unclosed\n").unwrap();
        assert_eq!(Saved::load(&config), Saved::default());
        assert_eq!(
            std::fs::read_to_string(dir.join("state.yaml.unreadable")).unwrap(),
            "blocks: [unclosed\n"
        );
        // A state file whose folder is a file cannot be written.
        let blocked = dir.join("not-a-dir");
        std::fs::write(&blocked, "").unwrap();
        let error = Saved::default()
            .save(&blocked.join("state.yaml"), &BTreeSet::new())
            .unwrap_err();
        assert!(matches!(
            error.kind(),
            std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
