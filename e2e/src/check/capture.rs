//! Packet captures on a link (tcpdump), counted by IP protocol from the pcap.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::wait_for;
use crate::daemon;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::netns;

// ---------------------------------------------------------------------------------------------
// Captures.
// ---------------------------------------------------------------------------------------------

/// IP protocol numbers worth counting.
pub mod ip_protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IP-in-IP (RFC 2003).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP (VXLAN rides on it).
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// Packets of a capture, counted by IP protocol (IPv4's protocol, IPv6's next header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// Packets per IP protocol number.
    pub by_protocol: BTreeMap<u8, u64>,
    /// Frames that are not IP (ARP, ...).
    pub not_ip: u64,
}

impl PacketCounts {
    /// Packets of IP protocol `protocol` (see [`ip_protocol`]).
    pub fn count(&self, protocol: u8) -> u64 {
        self.by_protocol.get(&protocol).copied().unwrap_or(0)
    }

    /// All IP packets.
    pub fn ip_total(&self) -> u64 {
        self.by_protocol.values().sum()
    }
}

pub(super) static CAPTURES: AtomicU32 = AtomicU32::new(0);

/// A tcpdump running on one interface of a node or pod; [`Capture::stop`] ends it and counts.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    what: String,
}

impl Capture {
    /// Starts capturing on `iface` of `target` (a node or `node/pod`) and returns once tcpdump
    /// listens.
    pub fn start(lab: &Lab, target: &str, iface: &str) -> Result<Capture> {
        if daemon::find_program("tcpdump").is_none() {
            return Err(Error::Missing {
                program: "tcpdump".into(),
                why: "captures need it".into(),
                package: "tcpdump".into(),
            });
        }
        let ns = lab.netns(target)?;
        let dir = lab.dir().join("captures");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let n = CAPTURES.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{}-{iface}-{n}", target.replace('/', "-"));
        let file = dir.join(format!("{stem}.pcap"));
        let log = dir.join(format!("{stem}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
        let argv = [
            "tcpdump".to_string(),
            "-i".into(),
            iface.into(),
            "-n".into(),
            "-U".into(),
            "--immediate-mode".into(),
            "-s".into(),
            "128".into(),
            "-Z".into(),
            "root".into(),
            "-w".into(),
            file.display().to_string(),
        ];
        let mut command = netns::exec_command(&ns, &argv);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: netns::command_line(&command),
            source,
        })?;
        let mut capture = Capture {
            child: Some(child),
            file,
            what: format!("{target}:{iface}"),
        };
        wait_for(
            &format!("tcpdump listening on {}", capture.what),
            Duration::from_secs(10),
            || {
                if let Some(child) = capture.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(Error::Command {
                        command: netns::command_line(&command),
                        status: status.to_string(),
                        stderr: daemon::tail(&log, 5),
                    });
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(text.contains("listening on").then_some(()))
            },
        )?;
        Ok(capture)
    }

    /// Stops tcpdump and counts what it captured.
    pub fn stop(mut self) -> Result<PacketCounts> {
        self.end();
        let bytes = std::fs::read(&self.file).map_err(|e| Error::io(&self.file, e))?;
        count_protocols(&bytes).map_err(|what| Error::Parse {
            command: format!("tcpdump on {}", self.what),
            what,
        })
    }

    fn end(&mut self) {
        if let Some(mut child) = self.child.take() {
            // tcpdump drops what it has not written yet when interrupted: let the file settle
            // (no growth for 150 ms, at most 2 s) first.
            let size = |file: &PathBuf| std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let start = Instant::now();
            let (mut last, mut quiet) = (size(&self.file), 0);
            while quiet < 3 && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(50));
                let now = size(&self.file);
                quiet = if now == last { quiet + 1 } else { 0 };
                last = now;
            }
            daemon::signal(child.id(), "INT");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.end();
    }
}

/// Counts the packets of a pcap file (Ethernet, Linux cooked v1/v2 or raw IP) by IP protocol.
pub fn count_protocols(pcap: &[u8]) -> std::result::Result<PacketCounts, String> {
    if pcap.len() < 24 {
        return Err(format!("{} bytes is too short for a pcap file", pcap.len()));
    }
    let magic = [pcap[0], pcap[1], pcap[2], pcap[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
    };
    let u32_at = |bytes: &[u8], at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link_type = u32_at(pcap, 20);
    let mut counts = PacketCounts::default();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let captured = u32_at(pcap, at + 8) as usize;
        let start = at + 16;
        let end = (start + captured).min(pcap.len());
        let frame = &pcap[start..end];
        at = start + captured;
        let (ethertype, payload) = match link_type {
            1 => {
                let mut offset = 12;
                let mut ethertype = read_u16(frame, offset);
                while matches!(ethertype, Some(0x8100 | 0x88a8)) {
                    offset += 4;
                    ethertype = read_u16(frame, offset);
                }
                (ethertype, offset + 2)
            }
            113 => (read_u16(frame, 14), 16),
            276 => (read_u16(frame, 0), 20),
            101 | 12 | 14 => match frame.first().map(|b| b >> 4) {
                Some(4) => (Some(0x0800), 0),
                Some(6) => (Some(0x86dd), 0),
                _ => (None, 0),
            },
            other => return Err(format!("link type {other} is not supported")),
        };
        let protocol = match ethertype {
            Some(0x0800) => frame.get(payload + 9).copied(),
            Some(0x86dd) => frame.get(payload + 6).copied(),
            _ => None,
        };
        match protocol {
            Some(protocol) => *counts.by_protocol.entry(protocol).or_default() += 1,
            None => counts.not_ip += 1,
        }
    }
    Ok(counts)
}

pub(super) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}
