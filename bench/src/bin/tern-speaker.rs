//! tern-speaker: tern's BGP speaker on its own, as the benchmark's device under test. It listens,
//! peers, and passes routes between its peers; it programs no kernel routes and has no API. It
//! runs until SIGTERM or SIGINT.
//!
//! ```text
//! tern-speaker --asn 65000 --router-id 10.254.1.2 --listen 10.254.1.2:179 \
//!     --peer 10.254.1.1,65001,passive --peer 10.254.2.2,65002
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, bail};
use clap::Parser;
use tern_bgp::{PeerConfig, Speaker, SpeakerConfig};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(about = "tern's BGP speaker alone: no kernel routes, no API")]
struct Args {
    /// Our AS.
    #[arg(long)]
    asn: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// An address to listen on, ADDRESS:PORT (repeatable).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// A peer, ADDRESS,ASN or ADDRESS,ASN,passive (repeatable).
    #[arg(long, value_parser = parse_peer)]
    peer: Vec<PeerConfig>,
}

fn parse_peer(text: &str) -> anyhow::Result<PeerConfig> {
    let mut fields = text.split(',');
    let (Some(address), Some(asn)) = (fields.next(), fields.next()) else {
        bail!("expected ADDRESS,ASN[,passive]");
    };
    let address: IpAddr = address.parse().context("bad peer address")?;
    let asn: u32 = asn.parse().context("bad peer AS")?;
    let mut peer = PeerConfig::new(address, asn);
    match fields.next() {
        None => {}
        Some("passive") => peer.passive = true,
        Some(other) => bail!("unknown peer option {other:?}"),
    }
    Ok(peer)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (speaker, bound) =
        Speaker::start(SpeakerConfig::new(args.asn, args.router_id), &args.listen)
            .await
            .context("cannot listen")?;
    for peer in args.peer {
        speaker.add_peer(peer).await?;
    }
    eprintln!("tern-speaker: AS {} listening on {bound:?}", args.asn);
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    speaker.shutdown(false).await?;
    Ok(())
}
