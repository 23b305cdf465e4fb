//! The monitor: listens for the device under test, establishes an eBGP session, and counts the
//! benchmark prefixes it holds in a bitmap over the N expected /24s. When it holds all N it
//! prints `done NANOSECONDS` (the wall-clock time) and exits.
//!
//! Announcements set a prefix's bit, withdrawals clear it; anything outside the expected /24s is
//! ignored. Lines on stdout: `listening ADDRESS`, `established PEER_AS`, `done NANOSECONDS`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::bail;
use tern_bgp::wire::{Message, Nlri, Update};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use crate::session::{self, FIRST_PREFIX, Local, MAX_PREFIXES};

/// Where to listen and what to wait for.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Our AS.
    #[arg(long, default_value_t = 65002)]
    asn: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// The AS the device must have (the injector's, when a relay stands in for the device).
    #[arg(long)]
    peer_asn: Option<u32>,
    /// How many /24s to wait for.
    #[arg(long)]
    count: u32,
    /// The hold time we propose.
    #[arg(long, default_value_t = 180)]
    hold_time: u16,
}

/// The set of benchmark prefixes held.
#[derive(Debug)]
pub struct Held {
    bits: Vec<u64>,
    expected: u32,
    count: u32,
}

impl Held {
    /// An empty set over `expected` prefixes.
    pub fn new(expected: u32) -> Held {
        Held {
            bits: vec![0; (expected as usize).div_ceil(64)],
            expected,
            count: 0,
        }
    }

    /// The index of `nlri` among the expected prefixes.
    fn index(&self, nlri: &Nlri) -> Option<usize> {
        let IpAddr::V4(address) = nlri.prefix.ip() else {
            return None;
        };
        let offset = u32::from(address).checked_sub(u32::from(FIRST_PREFIX))?;
        let index = offset >> 8;
        (nlri.prefix.prefix() == 24 && offset & 0xff == 0 && index < self.expected)
            .then_some(index as usize)
    }

    /// Applies one UPDATE's announcements and withdrawals.
    pub fn apply(&mut self, update: &Update) {
        let withdraw_all = update.treat_as_withdraw();
        let reach = update.mp_reach.iter().flat_map(|m| m.nlri.iter());
        for nlri in update.nlri.iter().chain(reach) {
            self.set(nlri, !withdraw_all);
        }
        let unreach = update.mp_unreach.iter().flat_map(|m| m.withdrawn.iter());
        for nlri in update.withdrawn.iter().chain(unreach) {
            self.set(nlri, false);
        }
    }

    fn set(&mut self, nlri: &Nlri, held: bool) {
        let Some(index) = self.index(nlri) else {
            return;
        };
        let Some(word) = self.bits.get_mut(index / 64) else {
            return;
        };
        let bit = 1u64 << (index % 64);
        if held && *word & bit == 0 {
            *word |= bit;
            self.count += 1;
        } else if !held && *word & bit != 0 {
            *word &= !bit;
            self.count -= 1;
        }
    }

    /// Whether every expected prefix is held.
    pub fn is_complete(&self) -> bool {
        self.count == self.expected
    }
}

/// Runs the monitor until it holds every prefix.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.count > MAX_PREFIXES {
        bail!("at most {MAX_PREFIXES} prefixes fit the address plan");
    }
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(16)?;
    println!("listening {}", listener.local_addr()?);
    let (stream, _) = listener.accept().await?;
    // One session is all we serve; later connection attempts are closed at once.
    tokio::spawn(async move {
        while let Ok((extra, _)) = listener.accept().await {
            drop(extra);
        }
    });
    let local = Local {
        asn: args.asn,
        router_id: args.router_id,
        hold_time: args.hold_time,
        peer_asn: args.peer_asn,
    };
    let session::Session {
        mut reader,
        mut write,
        context,
        peer_asn,
        keepalive,
    } = session::establish(stream, local).await?;
    println!("established {peer_asn}");
    if let Some(interval) = keepalive {
        tokio::spawn(async move {
            let bytes = session::keepalive_bytes();
            loop {
                tokio::time::sleep(interval).await;
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut held = Held::new(args.count);
    while !held.is_complete() {
        match reader.next(&context).await? {
            Message::Update(update) => held.apply(&update),
            Message::Notification(n) => bail!("the device sent a NOTIFICATION: {n:?}"),
            _ => {}
        }
    }
    println!("done {}", session::now_ns());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::prefix;
    use ipnetwork::IpNetwork;

    fn nlri(text: &str) -> Nlri {
        Nlri::new(text.parse().unwrap())
    }

    fn announce(prefixes: &[Nlri]) -> Update {
        Update {
            nlri: prefixes.to_vec(),
            ..Update::default()
        }
    }

    #[test]
    fn the_set_completes_once_every_expected_prefix_is_announced() {
        let mut held = Held::new(3);
        let all: Vec<Nlri> = (0..3)
            .map(|i| Nlri::new(IpNetwork::V4(prefix(i))))
            .collect();
        held.apply(&announce(&all[..2]));
        assert!(!held.is_complete());
        held.apply(&announce(&all[1..]));
        assert!(held.is_complete());
    }

    #[test]
    fn withdrawals_clear_and_other_prefixes_do_not_count() {
        let mut held = Held::new(2);
        held.apply(&announce(&[
            nlri("100.0.0.0/24"),
            nlri("100.0.2.0/24"),
            nlri("100.0.1.0/25"),
            nlri("99.0.0.0/24"),
        ]));
        assert_eq!(held.count, 1);
        held.apply(&Update {
            withdrawn: vec![nlri("100.0.0.0/24")],
            ..Update::default()
        });
        assert_eq!(held.count, 0);
    }
}
