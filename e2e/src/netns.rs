//! Network namespace plumbing: namespaces, veth pairs, bridges, sysctls and commands run inside
//! a namespace, all through the `ip` command (iproute2).
//!
//! Every interface is created inside a namespace the lab owns: a veth pair is made in one node's
//! namespace with its peer placed straight into the other's (`ip -n A link add X type veth peer
//! name Y netns B`), so nothing ever appears in the host's own namespace.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::error::{Error, Result};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// A command as the shell would show it, for error messages.
pub fn command_line(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
            line.push_str(&format!("{arg:?}"));
        } else {
            line.push_str(&arg);
        }
    }
    line
}

/// Runs a command to completion and returns its output, whatever its exit status.
pub fn output(command: &mut Command) -> Result<Output> {
    command.output().map_err(|source| Error::Spawn {
        command: command_line(command),
        source,
    })
}

/// Runs a command; returns its stdout when it succeeds, an error with its stderr otherwise.
pub fn run(command: &mut Command) -> Result<String> {
    let out = output(command)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(failure(command, &out))
}

/// The error for a command that exited unsuccessfully.
pub fn failure(command: &Command, out: &Output) -> Error {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Error::Command {
        command: command_line(command),
        status: out.status.to_string(),
        stderr: text,
    }
}

/// `ip ARGS...` in the host context (only for `ip netns ...` and `ip -n NS ...`).
fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// `ip -n NS ARGS...`: an `ip` command inside namespace `ns`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut command = Command::new("ip");
    command.arg("-n").arg(ns).args(args);
    run(&mut command)
}

/// A command that runs `argv` inside namespace `ns` (`ip netns exec NS ARGV...`).
///
/// `ip netns exec` execs the program, so the child's PID is the program's.
pub fn exec_command<S: AsRef<std::ffi::OsStr>>(ns: &str, argv: &[S]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).args(argv);
    command
}

/// Runs `argv` inside `ns`, returning its stdout, or an error with its stderr.
pub fn exec<S: AsRef<std::ffi::OsStr>>(ns: &str, argv: &[S]) -> Result<String> {
    run(&mut exec_command(ns, argv))
}

/// The named namespaces that exist now.
pub fn list() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(NETNS_DIR, error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(NETNS_DIR, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Whether a named namespace exists.
pub fn exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Creates a namespace with `lo` up, DAD off (addresses usable at once) and forwarding on.
pub fn add(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    sysctls(
        ns,
        &[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    )
}

/// Deletes a namespace (its interfaces go with it); a missing one is not an error.
pub fn delete(ns: &str) -> Result<()> {
    if !exists(ns) {
        return Ok(());
    }
    ip(&["netns", "del", ns]).map(|_| ())
}

/// The processes living in a namespace.
pub fn pids(ns: &str) -> Result<Vec<u32>> {
    if !exists(ns) {
        return Ok(Vec::new());
    }
    let out = ip(&["netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// The inode identifying a named namespace.
pub fn inode(ns: &str) -> Option<u64> {
    std::fs::metadata(Path::new(NETNS_DIR).join(ns))
        .ok()
        .map(|m| m.ino())
}

/// The inode of the network namespace a process lives in.
pub fn process_inode(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let link = link.to_string_lossy();
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Sets `net.*` sysctls inside `ns`.
pub fn sysctls(ns: &str, settings: &[(&str, &str)]) -> Result<()> {
    let mut argv = vec!["sysctl".to_string(), "-qw".to_string()];
    argv.extend(settings.iter().map(|(key, value)| format!("{key}={value}")));
    exec(ns, &argv).map(|_| ())
}

/// A veth pair: `if_a` in `ns_a`, `if_b` in `ns_b`, both up.
pub fn veth(ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> Result<()> {
    ip_in(
        ns_a,
        &[
            "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b,
        ],
    )?;
    ip_in(ns_a, &["link", "set", if_a, "up"])?;
    ip_in(ns_b, &["link", "set", if_b, "up"])?;
    Ok(())
}

/// A Linux bridge `name` inside `ns`, up, without STP (ports forward at once).
pub fn bridge(ns: &str, name: &str) -> Result<()> {
    ip_in(
        ns,
        &[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ],
    )?;
    ip_in(ns, &["link", "set", name, "up"])?;
    Ok(())
}

/// Makes `iface` a port of `bridge` (both inside `ns`).
pub fn set_master(ns: &str, iface: &str, bridge: &str) -> Result<()> {
    ip_in(ns, &["link", "set", iface, "master", bridge]).map(|_| ())
}

/// Runs `f` on a thread of its own that has entered namespace `ns`, and returns what it returns
/// (a panic in `f` is passed on). Sockets `f` opens, and netlink sockets in particular, live in
/// that namespace: this is how a test runs tern's speaker or route programmer in-process inside
/// a lab node (`inside(&lab.netns("n1")?, || ...)`), with a tokio runtime built inside `f`.
pub fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("namespace {}: {e}", path.display()));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering namespace {}: {e}", path.display()));
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_words_with_spaces() {
        let mut command = Command::new("vtysh");
        command.args(["-c", "show bgp summary", ""]);
        assert_eq!(command_line(&command), r#"vtysh -c "show bgp summary" """#);
    }
}
