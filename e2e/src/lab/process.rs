//! The processes of a running lab: starting and signalling programs inside its namespaces
//! (ternd among them, with its config and socket), crashing and restarting one FRR daemon for
//! graceful-restart tests, and the daemons' logs when a test fails. Every process started here
//! is recorded in the lab's state, so `Lab::down` ends it by PID.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Lab, make_dir};
use crate::daemon;
use crate::error::{Error, Result};

impl Lab {
    /// Starts `argv` in `node`'s namespace as one of the lab's processes (stopped at teardown
    /// like the daemons), its stdout and stderr in `<node dir>/<log>` (truncated). Returns its PID.
    pub fn spawn<S: AsRef<str>>(&mut self, node: &str, argv: &[S], log: &str) -> Result<u32> {
        let node = self.node(node)?.clone();
        let ns = self.topology.netns(&node.name);
        let dir = self.node_dir(&node.name);
        make_dir(&dir)?;
        let argv: Vec<String> = argv.iter().map(|a| a.as_ref().to_string()).collect();
        let mut spawned = Vec::new();
        let result = daemon::spawn(&node, &ns, &argv, &dir.join(log), &mut spawned);
        let pid = spawned.first().map(|p| p.record.pid);
        self.adopt(spawned)?;
        result?;
        pid.ok_or_else(|| Error::NotFound(format!("{} did not start", argv[0])))
    }

    /// Sends `signal` (`TERM`, `KILL`, `HUP`, ...) to one of the lab's processes, which keeps
    /// being the lab's (use [`Lab::stop`] for a signal that ends it).
    pub fn signal(&self, pid: u32, signal: &str) -> Result<()> {
        if !self.processes.iter().any(|p| p.record.pid == pid) {
            return Err(Error::NotFound(format!(
                "pid {pid} is no process of this lab"
            )));
        }
        if daemon::signal(pid, signal) {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "pid {pid} did not take SIG{signal}"
            )))
        }
    }

    /// Sends `signal` to one of the lab's processes and waits up to `timeout` for it to exit
    /// (a daemon's clean stop on `TERM`, a crash on `KILL`); the lab then forgets it.
    pub fn stop(&mut self, pid: u32, signal: &str, timeout: Duration) -> Result<()> {
        self.signal(pid, signal)?;
        let index = self
            .processes
            .iter()
            .position(|p| p.record.pid == pid)
            .expect("signal checked the pid");
        let start = Instant::now();
        loop {
            let process = &mut self.processes[index];
            let gone = match process.child.as_mut() {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                None => !daemon::is_alive(pid),
            };
            if gone {
                break;
            }
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: format!(
                        "pid {pid} ({}) to exit on SIG{signal}",
                        process.record.program
                    ),
                    waited: timeout,
                    last: "still running".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.processes.remove(index);
        self.state.processes.retain(|p| p.pid != pid);
        self.state.save()
    }

    /// The PIDs of the lab's processes called `program` (`ternd`, `bgpd`, ...) on `node`.
    pub fn pids(&self, node: &str, program: &str) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| p.record.node == node && p.record.program == program)
            .map(|p| p.record.pid)
            .collect()
    }

    /// The text of a log file in `node`'s runtime directory (empty when there is none).
    pub fn log(&self, node: &str, log: &str) -> String {
        std::fs::read_to_string(self.node_dir(node).join(log)).unwrap_or_default()
    }

    /// Writes `node`'s ternd configuration: `config` plus a state file and an API socket in the
    /// node's runtime directory (never on the host), as `<node dir>/ternd.yaml`; returns its path.
    /// A running ternd reads it again on SIGHUP.
    pub fn write_ternd_config(&self, node: &str, config: &str) -> Result<PathBuf> {
        let dir = self.node_dir(node);
        make_dir(&dir)?;
        let path = dir.join("ternd.yaml");
        let text = format!(
            "{config}\nstateFile: {}\napiSocket: {}\n",
            dir.join("ternd.state.yaml").display(),
            self.ternd_socket(node).display()
        );
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// The API socket of `node`'s ternd, as [`Lab::write_ternd_config`] sets it.
    pub fn ternd_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("ternd.sock")
    }

    /// Starts the `ternd` binary in `node` with `config` (see [`Lab::write_ternd_config`]), its
    /// log in `<node dir>/ternd.log` (read it with [`Lab::log`]). Returns its PID.
    pub fn start_ternd(&mut self, node: &str, ternd: &Path, config: &str) -> Result<u32> {
        let path = self.write_ternd_config(node, config)?;
        self.spawn(
            node,
            &[
                ternd.display().to_string(),
                "--config".into(),
                path.display().to_string(),
            ],
            "ternd.log",
        )
    }

    /// Kills FRR daemon `daemon` (`bgpd`) on `node` with SIGKILL: a crash, no NOTIFICATION.
    pub fn crash_frr_daemon(&mut self, node: &str, daemon: &str) -> Result<()> {
        let pids = self.pids(node, daemon);
        let pid = *pids
            .first()
            .ok_or_else(|| Error::NotFound(format!("node {node} runs no FRR daemon {daemon}")))?;
        self.stop(pid, "KILL", Duration::from_secs(10))
    }

    /// Starts FRR daemon `daemon` (`bgpd`) on `node` again, then applies `frr_conf` (a whole
    /// integrated config, which may differ from the topology's) through vtysh.
    pub fn restart_frr_daemon(&mut self, node: &str, daemon: &str, frr_conf: &str) -> Result<()> {
        let node = self.node(node)?.clone();
        let ns = self.topology.netns(&node.name);
        let dir = self.node_dir(&node.name);
        let mut spawned = Vec::new();
        let result = daemon::start_frr_daemon(&node, &ns, &dir, daemon, &mut spawned);
        self.adopt(spawned)?;
        result?;
        let config = dir.join(format!("{daemon}-restart.conf"));
        std::fs::write(&config, frr_conf).map_err(|e| Error::io(&config, e))?;
        daemon::chown_frr(&config)?;
        daemon::apply_frr_config(&node, &dir, &config)
    }

    /// Prints the end of every daemon log of the lab (for a failing test's output).
    pub fn dump_logs(&self) {
        for node in self.topology.nodes.keys() {
            let dir = self.node_dir(node);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut logs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                let tail = daemon::tail(&log, 40);
                if !tail.is_empty() {
                    eprintln!("----- {} -----\n{tail}", log.display());
                }
            }
        }
    }
}
