//! Helpers shared by the benchmark programs: a guard for a run's namespaces and processes (and
//! the programs it starts in them, with their output lines), `ip` in a namespace, a netlink route
//! listener inside a namespace, the median of a run's figures, ternd's view of one peer over its
//! API, and where the programs built beside this one are. Namespaces are made and deleted with tern-e2e's netns
//! helpers (the lab's), so every address lives inside `tern-*` namespaces and nothing of the
//! host's own network is touched.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tern_e2e::netns;
use tern_proto::v1 as pb;
use tern_proto::v1::peer_service_client::PeerServiceClient;

/// The namespaces of one run and the processes started in them: dropping the guard kills the
/// processes (this process's children, by their handles) and deletes the namespaces, with their
/// interfaces, even when the run fails.
#[derive(Debug)]
pub struct NamespaceGuard {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl NamespaceGuard {
    /// Creates the namespaces (`lo` up; see [`tern_e2e::netns::add`]), deleting first any left
    /// by a run that was killed outright: they are ours by name.
    pub fn create(names: &[&str]) -> anyhow::Result<NamespaceGuard> {
        let mut guard = NamespaceGuard {
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        for name in names {
            if !name.starts_with("tern-") {
                bail!("benchmark namespaces are named tern-*, not {name}");
            }
            if netns::exists(name) {
                eprintln!("deleting the namespace {name} left by an earlier run");
                netns::delete(name)?;
            }
            guard.namespaces.push((*name).to_owned());
            netns::add(name).with_context(|| format!("cannot create the namespace {name}"))?;
        }
        Ok(guard)
    }

    /// Makes a started process part of the run: it is killed when the guard drops.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Starts `program` in `ns` as part of the run, with stderr going to `log`; returns its PID
    /// and its stdout lines.
    pub fn start(
        &mut self,
        ns: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<(u32, mpsc::Receiver<String>)> {
        // `ip netns exec` execs the program, so the PID is the program's own.
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        self.adopt(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok((pid, rx))
    }
}

/// Runs `ip` with these arguments (`-n NS ...` inside a namespace).
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

/// Waits for the line of a started program's output that starts with `word`, and returns the
/// rest of it.
pub fn expect_line(
    lines: &mpsc::Receiver<String>,
    who: &str,
    word: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(word) {
                    return Ok(rest.trim().to_owned());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("{who}: no `{word}` in {timeout:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{who} exited before `{word}` (see its log)")
            }
        }
    }
}

/// ternd's entry for the peer at `address`, from ListPeers on its API.
pub async fn api_peer(
    client: &mut PeerServiceClient<tonic::transport::Channel>,
    address: &str,
) -> anyhow::Result<pb::Peer> {
    let peers = client
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner()
        .peers;
    peers
        .into_iter()
        .find(|p| p.config.as_ref().is_some_and(|c| c.address == address))
        .with_context(|| format!("ternd has no peer {address}"))
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self.namespaces.drain(..).rev() {
            if let Err(error) = netns::delete(&name) {
                eprintln!("cannot delete the namespace {name}: {error}");
            }
        }
    }
}

/// The median of a run's figures: the middle one once sorted (the upper middle of an even
/// count); `None` when there are none.
pub fn median<T: Copy + PartialOrd>(values: &[T]) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    sorted.get(sorted.len() / 2).copied()
}

/// A program built next to the running one: `target/release/ternd` beside
/// `target/release/block_latency` (or beside `target/release/examples/...`, one level up).
pub fn sibling(program: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let dir = exe.parent().context("this program has no folder")?;
    for candidate in [Some(dir), dir.parent()].into_iter().flatten() {
        let path = candidate.join(program);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "no {program} next to {}: build it first (cargo build --release -p tern-agent --bins, \
         cargo build --release -p tern-bench)",
        exe.display()
    )
}

/// One IPv4 route notification (RTM_NEWROUTE or RTM_DELROUTE) with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEvent {
    /// RTM_NEWROUTE (`true`) or RTM_DELROUTE.
    pub added: bool,
    /// The route's protocol (12 is `bird`, tern's tag).
    pub protocol: u8,
    /// RTA_DST.
    pub destination: Ipv4Addr,
    /// The destination's prefix length.
    pub prefix_len: u8,
}

/// RTMGRP_IPV4_ROUTE.
const ROUTE_GROUP: u32 = 0x40;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;

/// Listens to the IPv4 route notifications of namespace `namespace` on a thread of its own and
/// calls `on_event` for every added or deleted route with a destination, until it returns
/// `false`. The listener reads raw notifications into one buffer and looks only at the fields it
/// needs, so it takes as little CPU as it can from a device under test that shares the machine;
/// its socket has 512 MiB of buffer (root may force it), so a million events do not overflow it.
/// `on_event` takes its own timestamps.
pub fn listen_routes(
    namespace: &str,
    mut on_event: impl FnMut(RouteEvent) -> bool + Send + 'static,
) -> JoinHandle<()> {
    let namespace = namespace.to_owned();
    std::thread::spawn(move || {
        tern_e2e::inside(&namespace, move || {
            let mut socket = Socket::new(NETLINK_ROUTE).expect("netlink socket");
            socket
                .bind(&SocketAddr::new(0, ROUTE_GROUP))
                .expect("bind to RTMGRP_IPV4_ROUTE");
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBufForce,
                &(512 << 20),
            )
            .expect("a 512 MiB receive buffer");
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let Ok(length) = socket.recv(&mut &mut buffer[..], 0) else {
                    continue;
                };
                let data = &buffer[..length.min(buffer.len())];
                let mut offset = 0;
                while let Some(header) = data.get(offset..offset + 28) {
                    // nlmsghdr (16 octets), then rtmsg: family, dst_len, src_len, tos, table,
                    // protocol, scope, type, flags.
                    let size = u32::from_ne_bytes(header[0..4].try_into().unwrap()) as usize;
                    let kind = u16::from_ne_bytes(header[4..6].try_into().unwrap());
                    let (prefix_len, protocol) = (header[17], header[21]);
                    if size < 28 {
                        break;
                    }
                    if kind == RTM_NEWROUTE || kind == RTM_DELROUTE {
                        let attributes = data.get(offset + 28..offset + size).unwrap_or_default();
                        if let Some(destination) = destination(attributes) {
                            let event = RouteEvent {
                                added: kind == RTM_NEWROUTE,
                                protocol,
                                destination,
                                prefix_len,
                            };
                            if !on_event(event) {
                                return;
                            }
                        }
                    }
                    offset += (size + 3) & !3;
                }
            }
        })
    })
}

/// RTA_DST of an IPv4 route's attributes.
fn destination(mut attributes: &[u8]) -> Option<Ipv4Addr> {
    while let Some(header) = attributes.get(..4) {
        let size = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]);
        if size < 4 {
            return None;
        }
        if kind == RTA_DST {
            let value = attributes.get(4..8)?;
            return Some(Ipv4Addr::from(u32::from_be_bytes(value.try_into().ok()?)));
        }
        attributes = attributes.get((size + 3) & !3..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_figure_once_sorted() {
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median::<u32>(&[]), None);
    }

    #[test]
    fn a_route_destination_is_read_from_its_attributes() {
        // RTA_TABLE (4 + 4 octets), then RTA_DST 10.244.1.0.
        let attributes = [8, 0, 15, 0, 254, 0, 0, 0, 8, 0, 1, 0, 10, 244, 1, 0];
        assert_eq!(destination(&attributes), Some(Ipv4Addr::new(10, 244, 1, 0)));
        assert_eq!(destination(&attributes[..8]), None);
    }
}
