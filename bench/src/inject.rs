//! The injector: connects to the device under test, establishes an eBGP session, and sends N
//! distinct /24s packed into as few 4096-octet UPDATEs as fit, then an End-of-RIB. `--first`
//! starts at another prefix index, so two injectors can announce disjoint sets.
//!
//! All UPDATEs are encoded before the clock starts; the start time is taken just before the
//! first UPDATE octet is written and printed as `start NANOSECONDS`. The session then stays up
//! with keepalives until the process is killed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ipnetwork::{IpNetwork, Ipv4Network};
use tern_bgp::wire::{
    AsPath, Family, Message, NextHop, Nlri, Origin, PathAttributes, Update, UpdateBuilder, frame,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::session::{self, FIRST_PREFIX, Local, MAX_PREFIXES};

/// What to inject, and where.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device under test.
    #[arg(long)]
    connect: SocketAddr,
    /// Our AS.
    #[arg(long, default_value_t = 65001)]
    asn: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// The AS the device must have.
    #[arg(long)]
    peer_asn: Option<u32>,
    /// How many /24s to announce.
    #[arg(long)]
    count: u32,
    /// The index of the first /24 (see [`prefix`]), so that two injectors can announce
    /// disjoint sets.
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// The hold time we propose.
    #[arg(long, default_value_t = 180)]
    hold_time: u16,
    /// How long to keep trying to connect, in seconds.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
}

/// UPDATEs are handed to the socket in slices of about this size, so a keepalive can go between
/// them when a slow device holds the writer up for long.
const SLICE: usize = 1 << 16;

/// Runs the injector until killed.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.first.saturating_add(args.count) > MAX_PREFIXES {
        bail!("at most {MAX_PREFIXES} prefixes fit the address plan");
    }
    let local = Local {
        asn: args.asn,
        router_id: args.router_id,
        hold_time: args.hold_time,
        peer_asn: args.peer_asn,
    };
    // A device that is still starting may accept the connection and close it before it knows
    // us (its peer is not configured yet): try again, as a BGP speaker's connect retry would.
    let deadline = Instant::now() + Duration::from_secs(args.connect_timeout);
    let (session, local_address) = loop {
        let stream = connect(
            args.connect,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
        let IpAddr::V4(local_address) = stream.local_addr()?.ip() else {
            bail!("the injector speaks IPv4 only");
        };
        match session::establish(stream, local).await {
            Ok(session) => break (session, local_address),
            Err(error) if Instant::now() < deadline => {
                eprintln!("session not established ({error:#}); trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error),
        }
    };
    println!("established {}", session.peer_asn);

    let bytes = encode_routes(
        &session.context,
        args.asn,
        local_address,
        args.first..args.first + args.count,
    )?;
    let slices = slices(&bytes, &session.context)?;
    let mut reader = session.reader;
    let context = session.context;
    // Drain what the device sends (keepalives, perhaps routes) so it never blocks on us.
    tokio::spawn(async move {
        loop {
            match reader.next(&context).await {
                Ok(Message::Notification(n)) => {
                    eprintln!("the device sent a NOTIFICATION: {n:?}");
                    std::process::exit(1);
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("session ended: {error:#}");
                    std::process::exit(1);
                }
            }
        }
    });

    let mut write = session.write;
    let keepalive = session::keepalive_bytes();
    let interval = session.keepalive.unwrap_or(Duration::from_secs(3600));
    println!("start {}", session::now_ns());
    let mut last_keepalive = Instant::now();
    for slice in &slices {
        write.write_all(slice).await?;
        if last_keepalive.elapsed() >= interval {
            write.write_all(&keepalive).await?;
            last_keepalive = Instant::now();
        }
    }
    eprintln!(
        "sent {} prefixes in {} octets ({} writes)",
        args.count,
        bytes.len(),
        slices.len()
    );
    loop {
        tokio::time::sleep(interval).await;
        write.write_all(&keepalive).await?;
    }
}

async fn connect(address: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) if Instant::now() >= deadline => {
                return Err(error).with_context(|| format!("cannot connect to {address}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The `i`th benchmark prefix.
pub fn prefix(i: u32) -> Ipv4Network {
    let address = Ipv4Addr::from(u32::from(FIRST_PREFIX) + (i << 8));
    Ipv4Network::new(address, 24).unwrap_or_else(|_| unreachable!("24 is a valid length"))
}

/// Every UPDATE for the prefixes `indices`, then the End-of-RIB, back to back: ORIGIN IGP,
/// AS_PATH of our AS, NEXT_HOP of our address.
fn encode_routes(
    context: &tern_bgp::wire::Context,
    asn: u32,
    next_hop: Ipv4Addr,
    indices: std::ops::Range<u32>,
) -> anyhow::Result<Vec<u8>> {
    let count = indices.len();
    let routes: Vec<Nlri> = indices
        .map(|i| Nlri::new(IpNetwork::V4(prefix(i))))
        .collect();
    let attributes = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![asn])),
        next_hop: Some(next_hop),
        ..PathAttributes::default()
    };
    let mut bytes = Vec::with_capacity(count * 4 + 4096);
    UpdateBuilder::new(context).announce(
        Family::IPV4_UNICAST,
        &attributes,
        NextHop::V4(next_hop),
        &routes,
        &mut bytes,
    )?;
    Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)).encode(context, &mut bytes)?;
    Ok(bytes)
}

/// Cuts the encoded messages into slices of about [`SLICE`] octets on message boundaries.
fn slices<'a>(bytes: &'a [u8], context: &tern_bgp::wire::Context) -> anyhow::Result<Vec<&'a [u8]>> {
    let mut slices = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        let Some(header) = frame(rest, context)? else {
            bail!("the encoder left a partial message");
        };
        at += header.length;
        if at - start >= SLICE || at == bytes.len() {
            slices.push(bytes.get(start..at).unwrap_or_default());
            start = at;
        }
    }
    Ok(slices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_consecutive_slash_24s_from_100_0_0_0() {
        assert_eq!(prefix(0).to_string(), "100.0.0.0/24");
        assert_eq!(prefix(1).to_string(), "100.0.1.0/24");
        assert_eq!(prefix(999_999).to_string(), "115.66.63.0/24");
    }

    #[test]
    fn routes_fill_4096_octet_updates_and_slices_keep_messages_whole() {
        let context = tern_bgp::wire::Context {
            four_octet_as: true,
            external: true,
            ..Default::default()
        };
        let bytes =
            encode_routes(&context, 65001, Ipv4Addr::new(10, 254, 1, 1), 0..10_000).unwrap();
        let slices = slices(&bytes, &context).unwrap();
        assert_eq!(slices.concat(), bytes);
        let mut at = 0;
        let mut announced = 0;
        while at < bytes.len() {
            let header = frame(&bytes[at..], &context).unwrap().unwrap();
            assert!(header.length <= 4096);
            let message = Message::decode(&bytes[at..at + header.length], &context).unwrap();
            if let Message::Update(update) = message {
                announced += update.nlri.len();
            }
            at += header.length;
        }
        assert_eq!(announced, 10_000);
        // About 1,000 /24s per UPDATE: 10,000 prefixes take 10 or 11 of them plus End-of-RIB.
        assert!(bytes.len() < 12 * 4096);
    }

    #[test]
    fn a_first_index_announces_the_set_that_starts_there() {
        let context = tern_bgp::wire::Context {
            four_octet_as: true,
            external: true,
            ..Default::default()
        };
        let bytes = encode_routes(&context, 65001, Ipv4Addr::new(10, 254, 1, 1), 10..20).unwrap();
        let header = frame(&bytes, &context).unwrap().unwrap();
        let Message::Update(update) = Message::decode(&bytes[..header.length], &context).unwrap()
        else {
            panic!("the first message is an UPDATE");
        };
        let expected: Vec<Nlri> = (10..20)
            .map(|i| Nlri::new(IpNetwork::V4(prefix(i))))
            .collect();
        assert_eq!(update.nlri, expected);
    }
}
