//! The processes the driver starts: each is stopped by its own PID (SIGTERM, then SIGKILL), and
//! killed by PID if dropped while running. Peak memory is read from `/proc`.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a process has to exit after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// A process we started.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    pid: u32,
    /// Its stdout lines, when it speaks the harness's line protocol.
    lines: Option<mpsc::UnboundedReceiver<String>>,
}

/// What waiting for a line came to.
#[derive(Debug)]
pub enum Wait {
    /// The line, without the word waited for.
    Line(String),
    /// The deadline passed.
    Timeout,
}

impl Process {
    /// Starts `command` with stderr (and stdout unless `lines`) going to `log`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        lines: bool,
    ) -> anyhow::Result<Process> {
        let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stderr(file.try_clone()?)
            .kill_on_drop(true);
        if lines {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(file);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        let receiver = child.stdout.take().map(|stdout| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            });
            receiver
        });
        Ok(Process {
            name: name.to_owned(),
            child,
            pid,
            lines: receiver,
        })
    }

    /// Waits until the process prints a line starting with `word`, skipping others.
    pub async fn wait_line(&mut self, word: &str, deadline: Instant) -> anyhow::Result<Wait> {
        let Some(lines) = self.lines.as_mut() else {
            bail!("{} prints no lines", self.name);
        };
        loop {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Err(_) => return Ok(Wait::Timeout),
                Ok(None) => {
                    let status = self.child.wait().await?;
                    bail!("{} exited ({status}) before saying {word:?}", self.name);
                }
                Ok(Some(line)) => {
                    if let Some(rest) = line.strip_prefix(word) {
                        return Ok(Wait::Line(rest.trim().to_owned()));
                    }
                }
            }
        }
    }

    /// Resolves when the process exits, with a description of how.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!("{} exited ({status})", self.name),
            Err(error) => format!("{} is gone: {error}", self.name),
        }
    }

    /// Its peak resident memory in KiB: VmHWM summed over it and its descendants.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let mut total = 0;
        let mut found = false;
        for pid in with_descendants(self.pid) {
            if let Some(kib) = vm_hwm_kib(pid) {
                total += kib;
                found = true;
            }
        }
        found.then_some(total)
    }

    /// Stops the process: SIGTERM, then SIGKILL after [`GRACE`].
    pub async fn stop(mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(GRACE, self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// `pid` and every process below it.
fn with_descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(parent) = parent_of(child) {
                parents.push((child, parent));
            }
        }
    }
    let mut all = vec![pid];
    let mut at = 0;
    while let Some(&current) = all.get(at) {
        all.extend(
            parents
                .iter()
                .filter(|(_, parent)| *parent == current)
                .map(|(child, _)| *child),
        );
        at += 1;
    }
    all
}

/// The parent PID, from `/proc/PID/stat` (the field after the parenthesised command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_peak_memory_and_parent_are_readable() {
        let me = std::process::id();
        assert!(vm_hwm_kib(me).is_some_and(|kib| kib > 0));
        assert!(parent_of(me).is_some());
        assert_eq!(with_descendants(me).first(), Some(&me));
    }
}
