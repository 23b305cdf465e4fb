//! Starting and stopping each node's daemon: FRR, BIRD 2, GoBGP or ternd, from the config its
//! `binds` name, isolated per node so that several of each run at once.
//!
//! Every daemon keeps its config copy, control socket, pid files and logs in the node's runtime
//! directory (`/run/tern-lab/<lab>/<node>/`) and runs inside the node's namespace:
//! - FRR: `zebra`, `staticd` (FRR always runs both), `bgpd` and whatever `/etc/frr/daemons` enables,
//!   each started with `-d` (it daemonizes and drops to user `frr`, so the directory belongs to
//!   `frr`), its own pid file (`-i`), zebra socket (`-z`), vty socket directory (`--vty_socket`),
//!   no vty TCP port (`-P 0`) and log. They boot from a two-line config; the bound `frr.conf` is
//!   then applied with `vtysh -f`, as FRR's integrated config is, so a mistake in it fails `up`
//!   with vtysh's message instead of being logged and skipped.
//! - BIRD: `bird -f` (foreground, logs to stderr, which goes to `bird.log`) with its own control
//!   socket (`-s`) and pid file (`-P`).
//! - GoBGP: `gobgpd` with its gRPC API on 127.0.0.1:50051 of the node's namespace (each namespace
//!   has its own loopback, so `gobgp` run inside the namespace reaches the right one).
//! - ternd: `ternd --config <copy>`, only when asked for (see [`DaemonOptions`]).
//!
//! Processes are stopped by PID only: children of this process through their handles, others
//! (after a restart of the runner) only when `/proc` shows the recorded program name in the
//! recorded namespace.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns;
use crate::state::ProcessRecord;
use crate::topology::{DaemonKind, Node};

/// Where Debian installs FRR's daemons.
pub const FRR_BIN: &str = "/usr/lib/frr";

/// How long a daemon may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How to treat ternd nodes.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Start ternd on nodes that ask for it; otherwise they stay plain hosts.
    pub start_ternd: bool,
    /// The ternd binary.
    pub ternd: PathBuf,
}

impl DaemonOptions {
    /// From the environment: `TERN_LAB_START_TERND=1` starts ternd, `TERN_TERND` names the
    /// binary (default: the workspace's `target/debug/ternd`).
    pub fn from_env() -> Self {
        let ternd = std::env::var_os("TERN_TERND")
            .map(PathBuf::from)
            .unwrap_or_else(default_ternd);
        DaemonOptions {
            start_ternd: std::env::var("TERN_LAB_START_TERND").as_deref() == Ok("1"),
            ternd,
        }
    }
}

fn default_ternd() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/ternd")
}

/// A process the lab started, with its handle when it is this process's child.
#[derive(Debug)]
pub struct Spawned {
    /// What to record in the lab state.
    pub record: ProcessRecord,
    /// The child handle, to signal and reap it (None for daemons that detach, like FRR's).
    pub child: Option<Child>,
}

/// What starting a node's daemon gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It runs.
    Started,
    /// Nothing was started, and why (shown in `status`).
    NotStarted(String),
}

/// Checks that the programs a daemon kind needs are installed.
pub fn check_installed(daemon: DaemonKind) -> Result<()> {
    let needs: &[(&str, &str)] = match daemon {
        DaemonKind::None | DaemonKind::Ternd => &[],
        DaemonKind::Frr => &[
            ("/usr/lib/frr/zebra", "frr"),
            ("/usr/lib/frr/bgpd", "frr"),
            ("/usr/lib/frr/staticd", "frr"),
            ("vtysh", "frr"),
        ],
        DaemonKind::Bird => &[("bird", "bird2"), ("birdc", "bird2")],
        DaemonKind::Gobgp => &[("gobgpd", "gobgpd"), ("gobgp", "gobgpd")],
    };
    for (program, package) in needs {
        if find_program(program).is_none() {
            return Err(Error::Missing {
                program: (*program).to_string(),
                why: format!("nodes running {daemon} need it"),
                package: (*package).to_string(),
            });
        }
    }
    Ok(())
}

/// The path of a program: as given when it has a `/`, else searched in `PATH` and the sbin
/// directories.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// Starts `node`'s daemon in namespace `netns`, with runtime directory `dir` (which exists).
/// Every process started is pushed to `spawned` as soon as it is known, even when a later step
/// fails, so the caller can record and stop it.
pub fn start(
    node: &Node,
    netns: &str,
    dir: &Path,
    options: &DaemonOptions,
    spawned: &mut Vec<Spawned>,
) -> Result<Outcome> {
    match node.daemon {
        DaemonKind::None => Ok(Outcome::NotStarted("plain host".into())),
        DaemonKind::Frr => start_frr(node, netns, dir, spawned).map(|()| Outcome::Started),
        DaemonKind::Bird => start_bird(node, netns, dir, spawned).map(|()| Outcome::Started),
        DaemonKind::Gobgp => start_gobgp(node, netns, dir, spawned).map(|()| Outcome::Started),
        DaemonKind::Ternd => start_ternd(node, netns, dir, options, spawned),
    }
}

/// The command for a control program (`vtysh`, `birdc`, `gobgp`) or any other command, run in
/// the node's namespace and pointed at the node's own daemon: `vtysh` gets `--vty_socket`,
/// `birdc` gets `-s`.
pub fn control_command<S: AsRef<str>>(
    daemon: DaemonKind,
    netns: &str,
    dir: &Path,
    argv: &[S],
) -> Command {
    let mut words: Vec<String> = argv.iter().map(|a| a.as_ref().to_string()).collect();
    match (daemon, words.first().map(String::as_str)) {
        (DaemonKind::Frr, Some("vtysh")) => {
            words.splice(
                1..1,
                ["--vty_socket".to_string(), dir.display().to_string()],
            );
        }
        (DaemonKind::Bird, Some("birdc")) => {
            words.splice(
                1..1,
                ["-s".to_string(), bird_socket(dir).display().to_string()],
            );
        }
        _ => {}
    }
    netns::exec_command(netns, &words)
}

/// BIRD's control socket in a node's runtime directory.
pub fn bird_socket(dir: &Path) -> PathBuf {
    dir.join("bird.ctl")
}

/// The last `lines` lines of a log file (empty when it does not exist).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn daemon_error(node: &Node, what: impl Into<String>, log: Option<&Path>) -> Error {
    let mut what = what.into();
    if let Some(log) = log {
        let tail = tail(log, 15);
        if !tail.is_empty() {
            what.push_str(&format!("\n--- {} (last lines) ---\n{tail}", log.display()));
        }
    }
    Error::Daemon {
        node: node.name.clone(),
        what,
    }
}

/// A daemon's message about its config copy, naming the file the topology binds instead.
fn in_terms_of_bind(node: &Node, copy: &Path, message: &str) -> String {
    let message = message.trim();
    match node.config_bind() {
        Some(bind) => message.replace(
            &copy.display().to_string(),
            &bind.host.display().to_string(),
        ),
        None => message.to_string(),
    }
}

/// Copies the daemon's bound config into the runtime directory as `name`.
fn copy_config(node: &Node, dir: &Path, name: &str) -> Result<PathBuf> {
    let bind = node.config_bind().ok_or_else(|| Error::Daemon {
        node: node.name.clone(),
        what: format!("no bind gives the {} config", node.daemon),
    })?;
    let target = dir.join(name);
    std::fs::copy(&bind.host, &target).map_err(|e| Error::io(&bind.host, e))?;
    Ok(target)
}

/// Opens (truncating) a log file for a child's stdout and stderr.
fn log_stdio(path: &Path) -> Result<(Stdio, Stdio)> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let clone = file.try_clone().map_err(|e| Error::io(path, e))?;
    Ok((Stdio::from(file), Stdio::from(clone)))
}

/// Spawns a long-running program in the node's namespace, in a process group of its own (so a
/// terminal's Ctrl-C does not reach it), output to `log`, and pushes it to `spawned`.
pub fn spawn(
    node: &Node,
    netns: &str,
    argv: &[String],
    log: &Path,
    spawned: &mut Vec<Spawned>,
) -> Result<()> {
    let (stdout, stderr) = log_stdio(log)?;
    let mut command = netns::exec_command(netns, argv);
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .envs(&node.env)
        .process_group(0);
    let child = command.spawn().map_err(|source| Error::Spawn {
        command: netns::command_line(&command),
        source,
    })?;
    let program = Path::new(&argv[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| argv[0].clone());
    spawned.push(Spawned {
        record: ProcessRecord {
            node: node.name.clone(),
            program,
            pid: child.id(),
            netns: netns.to_string(),
        },
        child: Some(child),
    });
    Ok(())
}

/// Whether the last spawned child has exited (then its exit status as text).
fn exited(spawned: &mut [Spawned]) -> Option<String> {
    let child = spawned.last_mut()?.child.as_mut()?;
    match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(error) => Some(error.to_string()),
    }
}

/// Polls `ready` every 100 ms until it holds, the last spawned child exits, or the timeout.
fn wait_ready(
    node: &Node,
    what: &str,
    log: &Path,
    spawned: &mut [Spawned],
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = exited(spawned) {
            return Err(daemon_error(
                node,
                format!("{what} exited ({status})"),
                Some(log),
            ));
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(daemon_error(
                node,
                format!("{what} not ready after {READY_TIMEOUT:?}"),
                Some(log),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// FRR
// ---------------------------------------------------------------------------------------------

/// The FRR daemons a node runs: zebra and staticd always (as FRR's own init does), then those
/// the bound `/etc/frr/daemons` enables (`bgpd=yes`), or bgpd alone without that file.
fn frr_daemons(node: &Node) -> Result<Vec<String>> {
    const KNOWN: &[&str] = &[
        "bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "ldpd", "nhrpd", "eigrpd",
        "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd",
    ];
    let mut daemons = vec!["zebra".to_string(), "staticd".to_string()];
    let Some(bind) = node.bind_for("/etc/frr/daemons") else {
        daemons.push("bgpd".to_string());
        return Ok(daemons);
    };
    let text = std::fs::read_to_string(&bind.host).map_err(|e| Error::io(&bind.host, e))?;
    for line in text.lines() {
        let Some((name, value)) = line.trim().split_once('=') else {
            continue;
        };
        if value.trim() == "yes" && KNOWN.contains(&name.trim()) {
            daemons.push(name.trim().to_string());
        }
    }
    Ok(daemons)
}

/// The uid and gid of user `name`, from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// Gives a file to user `frr` (FRR's daemons drop to it and must read their configs).
pub fn chown_frr(path: &Path) -> Result<()> {
    let (uid, gid) = user_ids("frr").ok_or_else(|| Error::Missing {
        program: "user frr".into(),
        why: "FRR's daemons drop to it".into(),
        package: "frr".into(),
    })?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| Error::io(path, e))
}

fn start_frr(node: &Node, netns: &str, dir: &Path, spawned: &mut Vec<Spawned>) -> Result<()> {
    let (uid, gid) = user_ids("frr").ok_or_else(|| Error::Missing {
        program: "user frr".into(),
        why: "FRR's daemons drop to it".into(),
        package: "frr".into(),
    })?;
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| Error::io(path, e))
    };
    chown(dir)?;
    let config = copy_config(node, dir, "frr.conf")?;
    chown(&config)?;
    let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
    let profile = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("frr defaults "))
        .unwrap_or("traditional")
        .trim()
        .to_string();
    let boot = dir.join("boot.conf");
    std::fs::write(
        &boot,
        format!("frr defaults {profile}\nhostname {}\n", node.name),
    )
    .map_err(|e| Error::io(&boot, e))?;
    chown(&boot)?;

    for daemon in frr_daemons(node)? {
        start_frr_daemon(node, netns, dir, &daemon, spawned)?;
    }
    apply_frr_config(node, dir, &config)
}

/// Starts one FRR daemon (`zebra`, `bgpd`, ...) of `node` from the boot config in `dir` (written
/// by the node's first start), and waits for its pid file and vty socket. A stale pid file or
/// socket (from a daemon that was killed) is removed first.
pub fn start_frr_daemon(
    node: &Node,
    netns: &str,
    dir: &Path,
    daemon: &str,
    spawned: &mut Vec<Spawned>,
) -> Result<()> {
    let boot = dir.join("boot.conf");
    let zserv = dir.join("zserv.api");
    let binary = Path::new(FRR_BIN).join(daemon);
    if !binary.is_file() {
        return Err(daemon_error(
            node,
            format!(
                "{} is not installed (enabled in /etc/frr/daemons)",
                binary.display()
            ),
            None,
        ));
    }
    let pid_file = dir.join(format!("{daemon}.pid"));
    let vty = dir.join(format!("{daemon}.vty"));
    for stale in [&pid_file, &vty] {
        if let Err(error) = std::fs::remove_file(stale)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io(stale, error));
        }
    }
    let log = dir.join(format!("{daemon}.log"));
    let out = dir.join(format!("{daemon}.out"));
    let (stdout, stderr) = log_stdio(&out)?;
    let mut command = netns::exec_command(
        netns,
        &[
            binary.display().to_string(),
            "-d".into(),
            "-f".into(),
            boot.display().to_string(),
            "-i".into(),
            pid_file.display().to_string(),
            "-z".into(),
            zserv.display().to_string(),
            "--vty_socket".into(),
            dir.display().to_string(),
            "-P".into(),
            "0".into(),
            "--log".into(),
            format!("file:{}", log.display()),
        ],
    );
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .envs(&node.env);
    let status = command.status().map_err(|source| Error::Spawn {
        command: netns::command_line(&command),
        source,
    })?;
    if !status.success() {
        return Err(daemon_error(
            node,
            format!("{daemon} did not start ({status}): {}", tail(&out, 10)),
            Some(&log),
        ));
    }
    // The daemonized process writes its pid file; wait for it and for its vty socket.
    let start = Instant::now();
    let pid = loop {
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && vty.exists()
            && (daemon != "zebra" || zserv.exists())
        {
            break pid;
        }
        if start.elapsed() > READY_TIMEOUT {
            if let Some(pid) = pid {
                spawned.push(frr_record(node, netns, daemon, pid));
            }
            return Err(daemon_error(
                node,
                format!("{daemon} not ready after {READY_TIMEOUT:?}"),
                Some(&log),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    spawned.push(frr_record(node, netns, daemon, pid));
    Ok(())
}

/// Applies an integrated FRR config to the node's running daemons (`vtysh -f`), as FRR's own
/// init does; a config FRR refuses is an error with vtysh's message.
pub fn apply_frr_config(node: &Node, dir: &Path, config: &Path) -> Result<()> {
    let mut command = Command::new("vtysh");
    command.arg("--vty_socket").arg(dir).arg("-f").arg(config);
    let out = netns::output(&mut command)?;
    if !out.status.success() {
        let bind = node.config_bind().map(|b| b.host.display().to_string());
        return Err(daemon_error(
            node,
            format!(
                "FRR refused its config {}:\n{}{}",
                bind.unwrap_or_default(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        ));
    }
    Ok(())
}

fn frr_record(node: &Node, netns: &str, daemon: &str, pid: u32) -> Spawned {
    Spawned {
        record: ProcessRecord {
            node: node.name.clone(),
            program: daemon.to_string(),
            pid,
            netns: netns.to_string(),
        },
        child: None,
    }
}

// ---------------------------------------------------------------------------------------------
// BIRD
// ---------------------------------------------------------------------------------------------

fn start_bird(node: &Node, netns: &str, dir: &Path, spawned: &mut Vec<Spawned>) -> Result<()> {
    let config = copy_config(node, dir, "bird.conf")?;
    let mut check = Command::new("bird");
    check.arg("-p").arg("-c").arg(&config);
    let out = netns::output(&mut check)?;
    if !out.status.success() {
        return Err(daemon_error(
            node,
            format!(
                "BIRD refused its config: {}",
                in_terms_of_bind(node, &config, &String::from_utf8_lossy(&out.stderr))
            ),
            None,
        ));
    }
    let socket = bird_socket(dir);
    let log = dir.join("bird.log");
    spawn(
        node,
        netns,
        &[
            "bird".into(),
            "-f".into(),
            "-c".into(),
            config.display().to_string(),
            "-s".into(),
            socket.display().to_string(),
            "-P".into(),
            dir.join("bird.pid").display().to_string(),
        ],
        &log,
        spawned,
    )?;
    wait_ready(node, "bird", &log, spawned, || {
        socket.exists()
            && Command::new("birdc")
                .arg("-s")
                .arg(&socket)
                .arg("show status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

// ---------------------------------------------------------------------------------------------
// GoBGP
// ---------------------------------------------------------------------------------------------

fn start_gobgp(node: &Node, netns: &str, dir: &Path, spawned: &mut Vec<Spawned>) -> Result<()> {
    let host = node
        .config_bind()
        .map(|b| b.host.clone())
        .unwrap_or_default();
    let format = match host.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => "yaml",
        Some("json") => "json",
        _ => "toml",
    };
    let config = copy_config(node, dir, &format!("gobgpd.{format}"))?;
    let mut check = Command::new("gobgpd");
    check.arg("-d").arg("-t").arg(format).arg("-f").arg(&config);
    let out = netns::output(&mut check)?;
    if !out.status.success() {
        return Err(daemon_error(
            node,
            format!(
                "GoBGP refused its config: {}",
                in_terms_of_bind(
                    node,
                    &config,
                    &format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    )
                )
            ),
            None,
        ));
    }
    let log = dir.join("gobgpd.log");
    spawn(
        node,
        netns,
        &[
            "gobgpd".into(),
            "-f".into(),
            config.display().to_string(),
            "-t".into(),
            format.into(),
            "--api-hosts".into(),
            "127.0.0.1:50051".into(),
            "--pprof-disable".into(),
            "-p".into(),
        ],
        &log,
        spawned,
    )?;
    wait_ready(node, "gobgpd", &log, spawned, || {
        netns::exec_command(netns, &["gobgp", "global"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

// ---------------------------------------------------------------------------------------------
// ternd
// ---------------------------------------------------------------------------------------------

fn start_ternd(
    node: &Node,
    netns: &str,
    dir: &Path,
    options: &DaemonOptions,
    spawned: &mut Vec<Spawned>,
) -> Result<Outcome> {
    if !options.start_ternd {
        return Ok(Outcome::NotStarted(
            "plain host: ternd not started (set TERN_LAB_START_TERND=1 to start it)".into(),
        ));
    }
    if !options.ternd.is_file() {
        return Err(daemon_error(
            node,
            format!(
                "TERN_LAB_START_TERND=1 but there is no ternd at {}: build it with \
                 `cargo build -p tern-agent`, or name it with TERN_TERND",
                options.ternd.display()
            ),
            None,
        ));
    }
    let config = copy_config(node, dir, "ternd.yaml")?;
    let log = dir.join("ternd.log");
    spawn(
        node,
        netns,
        &[
            options.ternd.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ],
        &log,
        spawned,
    )?;
    // ternd has no readiness signal of its own yet: only make sure it did not exit at once.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        if let Some(status) = exited(spawned) {
            return Err(daemon_error(
                node,
                format!("ternd exited ({status})"),
                Some(&log),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Outcome::Started)
}

// ---------------------------------------------------------------------------------------------
// Stopping
// ---------------------------------------------------------------------------------------------

/// Whether a PID is a live (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Whether `record` still names the process the lab started: same program name, same namespace.
pub fn is_ours(record: &ProcessRecord) -> bool {
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", record.pid)) else {
        return false;
    };
    let expected: String = record.program.chars().take(15).collect();
    comm.trim() == expected
        && netns::inode(&record.netns).is_some()
        && netns::process_inode(record.pid) == netns::inode(&record.netns)
}

/// Sends a signal (`TERM`, `KILL`, `INT`) to one PID.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops processes: SIGTERM, up to `grace` to exit, then SIGKILL. Children are signalled and
/// reaped through their handles; other PIDs only when [`is_ours`] holds. Returns what could not
/// be stopped.
pub fn stop(processes: &mut [Spawned], grace: Duration) -> Vec<String> {
    let mut targets: Vec<usize> = Vec::new();
    for (index, process) in processes.iter_mut().enumerate() {
        let ours = match process.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => is_ours(&process.record),
        };
        if ours {
            signal(process.record.pid, "TERM");
            targets.push(index);
        }
    }
    let alive = |process: &mut Spawned| match process.child.as_mut() {
        Some(child) => matches!(child.try_wait(), Ok(None)),
        None => is_alive(process.record.pid) && is_ours(&process.record),
    };
    let start = Instant::now();
    while start.elapsed() < grace {
        targets.retain(|&i| alive(&mut processes[i]));
        if targets.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut problems = Vec::new();
    for &index in &targets {
        let process = &mut processes[index];
        signal(process.record.pid, "KILL");
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        targets.retain(|&i| alive(&mut processes[i]));
        if targets.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for &index in &targets {
        let record = &processes[index].record;
        problems.push(format!(
            "{} (pid {}) on node {} did not stop",
            record.program, record.pid, record.node
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_pid_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX - 1));
    }

    #[test]
    fn control_commands_point_at_the_nodes_own_daemon() {
        let dir = Path::new("/run/tern-lab/x/tor");
        let command = control_command(
            DaemonKind::Frr,
            "tern-x-tor",
            dir,
            &["vtysh", "-c", "show bgp summary"],
        );
        assert_eq!(
            netns::command_line(&command),
            "ip netns exec tern-x-tor vtysh --vty_socket /run/tern-lab/x/tor -c \"show bgp summary\""
        );
        let command = control_command(
            DaemonKind::Bird,
            "tern-x-b",
            dir,
            &["birdc", "show", "protocols"],
        );
        assert_eq!(
            netns::command_line(&command),
            "ip netns exec tern-x-b birdc -s /run/tern-lab/x/tor/bird.ctl show protocols"
        );
        let command = control_command(DaemonKind::None, "tern-x-n", dir, &["vtysh"]);
        assert_eq!(
            netns::command_line(&command),
            "ip netns exec tern-x-n vtysh"
        );
    }
}
