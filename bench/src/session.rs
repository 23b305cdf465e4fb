//! Just enough of a BGP session for the injector and the monitor: the OPEN exchange, framing of
//! what the peer sends, and keepalives. Not a state machine: any surprise ends the process, which
//! is what a benchmark wants.
//!
//! Both ends offer 4-octet AS numbers (RFC 6793) and IPv4 unicast (RFC 4760), and never extended
//! messages (RFC 8654): every device is held to 4096-octet UPDATEs.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tern_bgp::wire::{Capability, Context, Family, Message, Open, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The first address of the prefixes the injector announces: prefix `i` is `100.0.0.0 + i·256`,
/// a /24. 1,000,000 of them end below 116.0.0.0.
pub const FIRST_PREFIX: Ipv4Addr = Ipv4Addr::new(100, 0, 0, 0);
/// The most prefixes the address plan holds (up to 223.255.255.0/24).
pub const MAX_PREFIXES: u32 = (0xe000_0000 - 0x6400_0000) >> 8;

/// Who we are on a session.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The hold time we propose.
    pub hold_time: u16,
    /// The AS the peer must have; any when `None`.
    pub peer_asn: Option<u32>,
}

/// An established session.
#[derive(Debug)]
pub struct Session {
    /// The receiving half, with what was read but not yet decoded.
    pub reader: Reader,
    /// The sending half.
    pub write: OwnedWriteHalf,
    /// What the two OPENs negotiated.
    pub context: Context,
    /// The peer's AS.
    pub peer_asn: u32,
    /// Seconds between keepalives: a third of the negotiated hold time, `None` when it is 0.
    pub keepalive: Option<Duration>,
}

/// Reads whole messages off a connection.
#[derive(Debug)]
pub struct Reader {
    read: OwnedReadHalf,
    buffer: Vec<u8>,
    start: usize,
}

impl Reader {
    fn new(read: OwnedReadHalf) -> Reader {
        Reader {
            read,
            buffer: Vec::with_capacity(1 << 17),
            start: 0,
        }
    }

    /// The next message, decoded with `context`. Cancel-safe: the only await is a read into the
    /// buffer, which loses nothing when dropped.
    pub async fn next(&mut self, context: &Context) -> anyhow::Result<Message> {
        loop {
            let pending = self.buffer.get(self.start..).unwrap_or_default();
            if let Some(header) = frame(pending, context)? {
                let bytes = pending.get(..header.length).unwrap_or_default();
                let message = Message::decode(bytes, context)?;
                self.start += header.length;
                return Ok(message);
            }
            if self.start == self.buffer.len() {
                self.buffer.clear();
                self.start = 0;
            } else if self.start > (1 << 16) {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            if self.buffer.capacity() - self.buffer.len() < 8192 {
                self.buffer.reserve(1 << 16);
            }
            if self.read.read_buf(&mut self.buffer).await? == 0 {
                bail!("the peer closed the connection");
            }
        }
    }
}

/// Sends our OPEN, checks the peer's, and exchanges KEEPALIVEs.
pub async fn establish(stream: TcpStream, local: Local) -> anyhow::Result<Session> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = Reader::new(read);
    let open = Open::new(
        local.asn,
        local.hold_time,
        local.router_id,
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
    );
    let plain = Context::default();
    write
        .write_all(&Message::Open(open).to_bytes(&plain)?)
        .await?;
    let peer = match reader.next(&plain).await.context("waiting for OPEN")? {
        Message::Open(open) => open,
        Message::Notification(n) => bail!("the peer refused us: {n:?}"),
        other => bail!("expected OPEN, got {other:?}"),
    };
    let peer_asn = peer.asn();
    if let Some(expected) = local.peer_asn
        && expected != peer_asn
    {
        bail!("the peer is AS {peer_asn}, expected AS {expected}");
    }
    let context = Context {
        four_octet_as: peer
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_))),
        external: peer_asn != local.asn,
        ..Context::default()
    };
    let hold_time = local.hold_time.min(peer.hold_time);
    write
        .write_all(&Message::Keepalive.to_bytes(&context)?)
        .await?;
    // RFC 4271 section 8.2.2: OpenConfirm moves to Established on the peer's KEEPALIVE, which
    // comes before any UPDATE.
    match reader
        .next(&context)
        .await
        .context("waiting for KEEPALIVE")?
    {
        Message::Keepalive => {}
        Message::Notification(n) => bail!("the peer refused us: {n:?}"),
        other => bail!("expected KEEPALIVE, got {other:?}"),
    }
    Ok(Session {
        reader,
        write,
        context,
        peer_asn,
        keepalive: (hold_time > 0).then(|| Duration::from_secs(u64::from(hold_time / 3).max(1))),
    })
}

/// One KEEPALIVE on the wire.
pub fn keepalive_bytes() -> Vec<u8> {
    Message::Keepalive
        .to_bytes(&Context::default())
        .unwrap_or_default()
}

/// Wall-clock time in nanoseconds since the Unix epoch: the injector and the monitor run in
/// different processes, so only the shared clock compares their instants.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
