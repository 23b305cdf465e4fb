//! A running lab: [`Lab::up`] builds it from a topology file, dropping the [`Lab`] (or
//! [`Lab::down`]) tears it down, [`Lab::down_named`] tears down a lab another process built, and
//! [`Lab::status`] tells what runs.
//!
//! `up` goes: remove a stale lab of the same name; a namespace per node and per bridge; a bridge
//! `br0` in each bridge's namespace; a veth per link (bridge-side ends become ports of `br0`);
//! pods behind their nodes; the nodes' network `exec` lines (addresses, routes, sysctls); the
//! daemons; the daemons' `exec` lines (`vtysh`, `birdc`, `gobgp`). Each step is recorded in the
//! lab state before it happens, so a failed `up` and a later `down` both remove exactly what was
//! made. `down` stops the processes by PID, kills anything still inside the lab's namespaces (only
//! the lab's own processes can be there), then deletes the namespaces, which deletes their
//! interfaces.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod process;

use crate::daemon::{self, DaemonOptions, Outcome, Spawned};
use crate::error::{Error, Result};
use crate::netns;
use crate::state::{LabState, NodeState, RUN_DIR};
use crate::topology::{DaemonKind, ExecKind, Node, NodeKind, Pod, Topology};

/// The bridge device inside a bridge node's namespace.
pub const BRIDGE_DEVICE: &str = "br0";

/// The gateway pods route through, answered by the node (Calico's choice).
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The MAC of the node side of every pod veth (Calico's choice).
pub const POD_GATEWAY_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// The node side's IPv6 link-local address, derived from [`POD_GATEWAY_MAC`].
pub const POD_GATEWAY_V6: &str = "fe80::ecee:eeff:feee:eeee";

/// How long stopped daemons get before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running lab. Dropping it tears the lab down unless it was [`detach`](Lab::detach)ed; when
/// the drop happens during a panic, the tail of every daemon log is printed first.
#[derive(Debug)]
pub struct Lab {
    topology: Topology,
    state: LabState,
    /// Every process started, with child handles where this process is the parent.
    processes: Vec<Spawned>,
    /// Tear down on drop.
    owner: bool,
    /// Already torn down.
    down: bool,
}

impl Lab {
    /// Builds the lab a topology file describes, with options from the environment
    /// ([`DaemonOptions::from_env`]). A stale lab of the same name is removed first.
    pub fn up(file: impl AsRef<Path>) -> Result<Lab> {
        Self::up_with(file, &DaemonOptions::from_env())
    }

    /// [`Lab::up`] with explicit daemon options.
    pub fn up_with(file: impl AsRef<Path>, options: &DaemonOptions) -> Result<Lab> {
        Self::up_topology(Topology::load(file)?, options)
    }

    /// The lab a topology file describes, built under the lab name `name` instead of the
    /// file's (see [`Topology::renamed`]): tests running in parallel each get their own copy.
    pub fn up_as(file: impl AsRef<Path>, name: &str, options: &DaemonOptions) -> Result<Lab> {
        Self::up_topology(Topology::load(file)?.renamed(name)?, options)
    }

    /// Builds a lab from a loaded topology.
    pub fn up_topology(topology: Topology, options: &DaemonOptions) -> Result<Lab> {
        if !netns::is_root() {
            return Err(Error::NotRoot);
        }
        check_tools(&topology)?;
        Self::clean(&topology.name, Some(&topology))?;

        let run_dir = Path::new(RUN_DIR);
        make_dir(run_dir)?;
        let state = LabState::new(&topology.name, &topology.file);
        make_dir(&state.dir())?;
        let mut lab = Lab {
            topology,
            state,
            processes: Vec::new(),
            owner: true,
            down: false,
        };
        lab.state.save()?;
        if let Err(error) = lab.build(options) {
            if let Err(teardown) = lab.teardown() {
                eprintln!("tern-lab: {teardown}");
            }
            return Err(error);
        }
        Ok(lab)
    }

    /// A handle on a lab that is up (built by this or another process), named by its name or
    /// its topology file. Dropping it leaves the lab running.
    pub fn attach(lab: &str) -> Result<Lab> {
        let (name, file) = resolve(lab)?;
        let state = LabState::load(&name)?.ok_or_else(|| {
            Error::NotFound(format!(
                "no lab {name:?} is up (no {}/{name}/state.json)",
                RUN_DIR
            ))
        })?;
        let topology = Topology::load(file.as_deref().unwrap_or(&state.file))?;
        let processes = state
            .processes
            .iter()
            .map(|record| Spawned {
                record: record.clone(),
                child: None,
            })
            .collect();
        Ok(Lab {
            topology,
            state,
            processes,
            owner: false,
            down: false,
        })
    }

    /// Leaves the lab running when this handle is dropped (`tern-lab up` does this).
    pub fn detach(mut self) {
        self.owner = false;
    }

    /// Tears the lab down now, reporting anything that could not be removed.
    pub fn down(mut self) -> Result<()> {
        self.teardown()
    }

    /// Tears down the lab called `lab` (a name or a topology file), built by any process;
    /// returns the namespaces it removed. A lab that is not up is not an error.
    pub fn down_named(lab: &str) -> Result<Vec<String>> {
        let (name, file) = resolve(lab)?;
        let topology = file.map(Topology::load).transpose()?;
        Self::clean(&name, topology.as_ref())
    }

    /// What a lab that is up looks like now.
    pub fn status(lab: &str) -> Result<Status> {
        let (name, _) = resolve(lab)?;
        let state = LabState::load(&name)?
            .ok_or_else(|| Error::NotFound(format!("no lab {name:?} is up")))?;
        let nodes = state
            .nodes
            .iter()
            .map(|(node, node_state)| NodeStatus {
                name: node.clone(),
                netns: node_state.netns.clone(),
                netns_exists: netns::exists(&node_state.netns),
                daemon: node_state.daemon,
                started: node_state.started,
                note: node_state.note.clone(),
                processes: state
                    .processes
                    .iter()
                    .filter(|p| &p.node == node)
                    .map(|p| {
                        (
                            p.program.clone(),
                            p.pid,
                            daemon::is_alive(p.pid) && daemon::is_ours(p),
                        )
                    })
                    .collect(),
                pods: node_state
                    .pods
                    .iter()
                    .map(|ns| (ns.clone(), netns::exists(ns)))
                    .collect(),
            })
            .collect();
        Ok(Status {
            name: state.name,
            file: state.file,
            nodes,
        })
    }

    /// The labs that are up on this machine.
    pub fn list() -> Result<Vec<String>> {
        LabState::list()
    }

    /// The lab name.
    pub fn name(&self) -> &str {
        &self.topology.name
    }

    /// The topology the lab was built from.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.topology.node(name).ok_or_else(|| {
            Error::NotFound(format!(
                "lab {} has no node {name:?} (it has: {})",
                self.topology.name,
                self.topology
                    .nodes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The namespace of `target`: a node (`n1`) or a pod (`n1/pod-a`).
    pub fn netns(&self, target: &str) -> Result<String> {
        match target.split_once('/') {
            Some((node, pod)) => {
                let node = self.node(node)?;
                node.pod(pod).ok_or_else(|| {
                    Error::NotFound(format!("node {} has no pod {pod:?}", node.name))
                })?;
                Ok(self.topology.pod_netns(&node.name, pod))
            }
            None => Ok(self.topology.netns(&self.node(target)?.name)),
        }
    }

    /// The runtime directory of a node (its daemon's sockets, pid files and logs).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state.dir().join(node)
    }

    /// The lab's runtime directory.
    pub fn dir(&self) -> PathBuf {
        self.state.dir()
    }

    /// The daemon a node runs, if it was started.
    pub fn running_daemon(&self, node: &str) -> Result<Option<DaemonKind>> {
        let daemon = self.node(node)?.daemon;
        let started = self.state.nodes.get(node).is_some_and(|n| n.started);
        Ok(started.then_some(daemon))
    }

    /// A command running `argv` in `target` (a node or `node/pod`); `vtysh` and `birdc` are
    /// pointed at the node's own daemon.
    pub fn command<S: AsRef<str>>(&self, target: &str, argv: &[S]) -> Result<Command> {
        let ns = self.netns(target)?;
        if target.contains('/') {
            let words: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
            return Ok(netns::exec_command(&ns, &words));
        }
        let daemon = self.node(target)?.daemon;
        Ok(daemon::control_command(
            daemon,
            &ns,
            &self.node_dir(target),
            argv,
        ))
    }

    /// Runs `argv` in `target` and returns its stdout; an error with its stderr if it fails.
    pub fn exec<S: AsRef<str>>(&self, target: &str, argv: &[S]) -> Result<String> {
        netns::run(&mut self.command(target, argv)?)
    }

    // -----------------------------------------------------------------------------------------
    // Driving a running lab from a test: processes it starts, stops and restarts itself.
    // -----------------------------------------------------------------------------------------

    /// Records processes started outside `build` as the lab's.
    fn adopt(&mut self, spawned: Vec<Spawned>) -> Result<()> {
        for process in spawned {
            self.state.processes.push(process.record.clone());
            self.processes.push(process);
        }
        self.state.save()
    }

    // -----------------------------------------------------------------------------------------
    // Building.
    // -----------------------------------------------------------------------------------------

    fn build(&mut self, options: &DaemonOptions) -> Result<()> {
        let topology = self.topology.clone();
        for node in topology.nodes.values() {
            let ns = topology.netns(&node.name);
            let dir = self.node_dir(&node.name);
            let note = match node.kind {
                NodeKind::Bridge => format!("bridge {BRIDGE_DEVICE}"),
                NodeKind::Linux => String::new(),
            };
            self.state.nodes.insert(
                node.name.clone(),
                NodeState {
                    netns: ns.clone(),
                    daemon: node.daemon,
                    started: false,
                    note,
                    dir,
                    pods: node
                        .pods
                        .iter()
                        .map(|pod| topology.pod_netns(&node.name, &pod.name))
                        .collect(),
                },
            );
            self.add_netns(&ns)?;
            if node.kind == NodeKind::Bridge {
                netns::bridge(&ns, BRIDGE_DEVICE)?;
            }
        }

        for link in &topology.links {
            let (ns_a, ns_b) = (topology.netns(&link.a.node), topology.netns(&link.b.node));
            netns::veth(&ns_a, &link.a.iface, &ns_b, &link.b.iface)?;
            for end in [&link.a, &link.b] {
                if topology.nodes[&end.node].kind == NodeKind::Bridge {
                    netns::set_master(&topology.netns(&end.node), &end.iface, BRIDGE_DEVICE)?;
                }
            }
        }

        for node in topology.nodes.values() {
            for pod in &node.pods {
                self.add_pod(node, pod)?;
            }
        }

        for node in topology.nodes.values() {
            let ns = topology.netns(&node.name);
            for line in node.exec.iter().filter(|line| line.kind.is_network()) {
                let mut command = match line.kind {
                    ExecKind::Ip => {
                        let mut command = Command::new("ip");
                        command.arg("-n").arg(&ns).args(&line.argv[1..]);
                        command
                    }
                    _ => netns::exec_command(&ns, &line.argv),
                };
                netns::run(&mut command).map_err(|error| Error::Daemon {
                    node: node.name.clone(),
                    what: format!("exec line {:?}: {error}", line.argv.join(" ")),
                })?;
            }
        }

        for node in topology.nodes.values() {
            if node.kind == NodeKind::Bridge {
                continue;
            }
            let ns = topology.netns(&node.name);
            let dir = self.node_dir(&node.name);
            make_dir(&dir)?;
            let mut spawned = Vec::new();
            let result = daemon::start(node, &ns, &dir, options, &mut spawned);
            for process in spawned {
                self.state.processes.push(process.record.clone());
                self.processes.push(process);
            }
            self.state.save()?;
            let outcome = result?;
            if let Some(node_state) = self.state.nodes.get_mut(&node.name) {
                match outcome {
                    Outcome::Started => node_state.started = true,
                    Outcome::NotStarted(note) => node_state.note = note,
                }
            }
            self.state.save()?;
        }

        for node in topology.nodes.values() {
            for line in node.exec.iter().filter(|line| !line.kind.is_network()) {
                self.exec(&node.name, &line.argv)
                    .map_err(|error| Error::Daemon {
                        node: node.name.clone(),
                        what: format!("exec line {:?}: {error}", line.argv.join(" ")),
                    })?;
            }
        }
        Ok(())
    }

    /// Records a namespace, then creates it.
    fn add_netns(&mut self, ns: &str) -> Result<()> {
        self.state.namespaces.push(ns.to_string());
        self.state.save()?;
        netns::add(ns)
    }

    /// A pod, Calico style: its own namespace with `eth0` holding a /32 (and /128), a default
    /// route via 169.254.1.1 (and the node side's link-local address); on the node, `cali<hash>`
    /// with MAC ee:ee:ee:ee:ee:ee, proxy ARP, and a host route to the pod (`proto static`).
    ///
    /// Calico relies on proxy ARP to answer for 169.254.1.1, which Linux does only when the node
    /// has a route to that address (usually its default route); lab nodes may have none, so the
    /// pod also gets a permanent neighbour entry for its gateway.
    fn add_pod(&mut self, node: &Node, pod: &Pod) -> Result<()> {
        let node_ns = self.topology.netns(&node.name);
        let pod_ns = self.topology.pod_netns(&node.name, &pod.name);
        let cali = cali_name(&self.topology.name, &node.name, &pod.name);
        self.add_netns(&pod_ns)?;
        netns::ip_in(
            &node_ns,
            &[
                "link", "add", &cali, "type", "veth", "peer", "name", "eth0", "netns", &pod_ns,
            ],
        )?;
        netns::ip_in(
            &node_ns,
            &["link", "set", &cali, "address", POD_GATEWAY_MAC],
        )?;
        netns::sysctls(
            &node_ns,
            &[
                (&format!("net.ipv4.conf.{cali}.proxy_arp"), "1"),
                (&format!("net.ipv4.neigh.{cali}.proxy_delay"), "0"),
                (&format!("net.ipv6.conf.{cali}.proxy_ndp"), "1"),
            ],
        )?;
        netns::ip_in(&node_ns, &["link", "set", &cali, "up"])?;
        netns::ip_in(&pod_ns, &["link", "set", "eth0", "up"])?;

        let gateway = POD_GATEWAY_V4.to_string();
        let v4 = format!("{}/32", pod.ipv4);
        netns::ip_in(&pod_ns, &["addr", "add", &v4, "dev", "eth0"])?;
        netns::ip_in(
            &pod_ns,
            &["route", "add", &gateway, "dev", "eth0", "scope", "link"],
        )?;
        netns::ip_in(
            &pod_ns,
            &["route", "add", "default", "via", &gateway, "dev", "eth0"],
        )?;
        netns::ip_in(
            &pod_ns,
            &[
                "neigh",
                "add",
                &gateway,
                "lladdr",
                POD_GATEWAY_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )?;
        netns::ip_in(
            &node_ns,
            &[
                "route", "add", &v4, "dev", &cali, "scope", "link", "proto", "static",
            ],
        )?;
        if let Some(ipv6) = pod.ipv6 {
            let v6 = format!("{ipv6}/128");
            netns::ip_in(&pod_ns, &["-6", "addr", "add", &v6, "dev", "eth0", "nodad"])?;
            netns::ip_in(
                &pod_ns,
                &[
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    POD_GATEWAY_V6,
                    "dev",
                    "eth0",
                ],
            )?;
            netns::ip_in(
                &node_ns,
                &["-6", "route", "add", &v6, "dev", &cali, "proto", "static"],
            )?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Tearing down.
    // -----------------------------------------------------------------------------------------

    fn teardown(&mut self) -> Result<()> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let mut problems = daemon::stop(&mut self.processes, STOP_GRACE);
        let (_, more) = remove_namespaces(&self.state.namespaces);
        problems.extend(more);
        let dir = self.state.dir();
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("{}: {error}", dir.display()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(problems))
        }
    }

    /// Removes lab `name`: what its state file lists, and, when the topology is known, every
    /// namespace it would create (a lab whose state was lost). Returns the namespaces removed.
    fn clean(name: &str, topology: Option<&Topology>) -> Result<Vec<String>> {
        let state = LabState::load(name)?;
        let mut problems = Vec::new();
        let mut namespaces = Vec::new();
        if let Some(state) = &state {
            let mut processes: Vec<Spawned> = state
                .processes
                .iter()
                .map(|record| Spawned {
                    record: record.clone(),
                    child: None,
                })
                .collect();
            problems.extend(daemon::stop(&mut processes, STOP_GRACE));
            namespaces.extend(state.namespaces.iter().cloned());
        }
        if let Some(topology) = topology {
            for ns in topology.namespaces() {
                if !namespaces.contains(&ns) {
                    namespaces.push(ns);
                }
            }
        }
        let (removed, more) = remove_namespaces(&namespaces);
        problems.extend(more);
        let dir = LabState::dir_of(name);
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("{}: {error}", dir.display()));
        }
        if problems.is_empty() {
            Ok(removed)
        } else {
            Err(Error::Teardown(problems))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owner || self.down {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "lab {} torn down after a panic; daemon logs:",
                self.topology.name
            );
            self.dump_logs();
        }
        if let Err(error) = self.teardown() {
            eprintln!("lab {}: {error}", self.topology.name);
        }
    }
}

/// Removes namespaces (in reverse order, so pods go before their nodes): first anything still
/// running inside them (only the lab's own processes can be there), then the namespaces.
/// Returns those removed and the problems met.
fn remove_namespaces(namespaces: &[String]) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let present: Vec<&String> = namespaces
        .iter()
        .rev()
        .filter(|ns| netns::exists(ns))
        .collect();
    let mut leftovers = Vec::new();
    for ns in &present {
        match netns::pids(ns) {
            Ok(pids) => {
                for pid in pids {
                    daemon::signal(pid, "KILL");
                    leftovers.push(pid);
                }
            }
            Err(error) => problems.push(format!("{ns}: {error}")),
        }
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        leftovers.retain(|&pid| daemon::is_alive(pid));
        if leftovers.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut removed = Vec::new();
    for ns in present {
        match netns::delete(ns) {
            Ok(()) => removed.push(ns.clone()),
            Err(error) => problems.push(format!("{ns}: {error}")),
        }
    }
    (removed, problems)
}

/// The node side of a pod's veth: `cali` and 11 hex digits of a hash of the pod's identity
/// (Calico hashes the workload endpoint likewise), 15 characters, Linux's limit.
pub fn cali_name(lab: &str, node: &str, pod: &str) -> String {
    // FNV-1a, 64 bits: stable across runs and Rust versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{lab}/{node}/{pod}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("cali{:011x}", hash & 0x0fff_ffff_ffff)
}

/// A lab argument: a topology file (its `name:`) or a lab name.
fn resolve(lab: &str) -> Result<(String, Option<PathBuf>)> {
    let path = Path::new(lab);
    if path.is_file() {
        let topology = Topology::load(path)?;
        return Ok((topology.name, Some(path.to_path_buf())));
    }
    let plain = !lab.is_empty()
        && lab
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        return Err(Error::NotFound(format!(
            "{lab:?} is neither a topology file nor a lab name"
        )));
    }
    Ok((lab.to_string(), None))
}

fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(dir, e))
}

/// Every program a topology needs, checked before anything is created.
fn check_tools(topology: &Topology) -> Result<()> {
    for (program, package) in [("ip", "iproute2"), ("sysctl", "procps")] {
        if daemon::find_program(program).is_none() {
            return Err(Error::Missing {
                program: program.into(),
                why: "the lab plumbing needs it".into(),
                package: package.into(),
            });
        }
    }
    for node in topology.nodes.values() {
        daemon::check_installed(node.daemon)?;
    }
    Ok(())
}

/// A lab as `tern-lab status` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The lab name.
    pub name: String,
    /// Its topology file.
    pub file: PathBuf,
    /// Its nodes.
    pub nodes: Vec<NodeStatus>,
}

/// A node as `tern-lab status` shows it.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Whether the namespace exists.
    pub netns_exists: bool,
    /// The daemon the topology asks for.
    pub daemon: DaemonKind,
    /// Whether it was started.
    pub started: bool,
    /// Why not, or what else to know.
    pub note: String,
    /// Its processes: program, PID, running.
    pub processes: Vec<(String, u32, bool)>,
    /// Its pods' namespaces and whether they exist.
    pub pods: Vec<(String, bool)>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lab {} ({})", self.name, self.file.display())?;
        let name_width = self.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
        let ns_width = self.nodes.iter().map(|n| n.netns.len()).max().unwrap_or(0);
        for node in &self.nodes {
            let what = if node.started {
                let procs: Vec<String> = node
                    .processes
                    .iter()
                    .map(|(program, pid, running)| {
                        format!(
                            "{program}[{pid}]{}",
                            if *running { "" } else { " stopped!" }
                        )
                    })
                    .collect();
                format!("{}: {}", node.daemon, procs.join(" "))
            } else if node.note.is_empty() {
                "plain host".to_string()
            } else {
                node.note.clone()
            };
            let missing = if node.netns_exists {
                ""
            } else {
                " (namespace missing!)"
            };
            writeln!(
                f,
                "  {:<name_width$}  {:<ns_width$}  {what}{missing}",
                node.name, node.netns
            )?;
            for (pod, exists) in &node.pods {
                let missing = if *exists { "" } else { " (namespace missing!)" };
                writeln!(f, "  {:<name_width$}  {pod}  pod{missing}", "")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_interfaces_are_cali_and_eleven_hex_digits() {
        let name = cali_name("mesh3", "n1", "pod-a");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("cali"));
        assert_eq!(name, cali_name("mesh3", "n1", "pod-a"));
        assert_ne!(name, cali_name("mesh3", "n1", "pod-b"));
    }

    #[test]
    fn a_lab_argument_is_a_file_or_a_plain_name() {
        assert_eq!(resolve("mesh3").expect("name").0, "mesh3");
        assert!(resolve("../etc").is_err());
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/mesh3-tor.clab.yml");
        let (name, path) = resolve(file.to_str().expect("utf-8")).expect("file");
        assert_eq!(name, "mesh3-tor");
        assert!(path.is_some());
    }
}
