//! The floor: a plain TCP relay in the device's place. Every connection accepted is joined byte
//! for byte to a new connection to the monitor, so the injector and the monitor talk BGP to each
//! other through it. What the benchmark measures through the relay is the cost of the lab itself:
//! two TCP hops over veth pairs, the injector's writes and the monitor's decoding.

use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

/// Where to listen and where to relay to.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on (the device's address toward the injector).
    #[arg(long)]
    listen: SocketAddr,
    /// The address to relay to (the monitor).
    #[arg(long)]
    connect: SocketAddr,
}

/// Buffer size each way; large enough that the relay is never the narrow part.
const BUFFER: usize = 1 << 16;

/// Relays connections until killed.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(16)?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let target = args.connect;
        tokio::spawn(async move {
            let mut outbound = match TcpStream::connect(target).await {
                Ok(stream) => stream,
                Err(error) => {
                    eprintln!("cannot connect to {target}: {error}");
                    return;
                }
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut inbound,
                &mut outbound,
                BUFFER,
                BUFFER,
            )
            .await;
        });
    }
}
