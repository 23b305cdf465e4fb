//! The gRPC control API (package `tern.v1`, see `proto/tern/v1/`): blocks, peers, routes, a
//! watch stream and status, served over the agent's [`AgentHandle`].
//!
//! Calls that change state go to the agent's loop as [`Command`]s, which owns the desired state
//! and answers one at a time, so every call is atomic and a refused one changes nothing. Reads
//! of the speaker (peers, route pages, events) go straight to the speaker, which answers them
//! between batches of UPDATEs. Protobuf types are made and taken apart in [`convert`] only.
//!
//! The API listens on a unix socket (mode 0600, removed on exit) and, when configured, on TCP
//! with mutual TLS (rustls): the client must present a certificate signed by the configured CA.
//! There is no plain TCP listener.

mod convert;

/// A client channel to the API on a unix socket (ternctl, tests and benchmarks use it).
pub async fn connect_unix(
    path: &Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_owned();
    tonic::transport::Endpoint::from_static("http://ternd.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use ipnetwork::{IpNetwork, Ipv4Network};
use tern_bgp::{Notice, RouteEntry};
use tern_proto::v1 as pb;
use tern_proto::v1::block_service_server::{BlockService, BlockServiceServer};
use tern_proto::v1::peer_service_server::{PeerService, PeerServiceServer};
use tern_proto::v1::route_service_server::{RouteService, RouteServiceServer};
use tern_proto::v1::status_service_server::{StatusService, StatusServiceServer};
use tern_proto::v1::watch_service_server::{WatchService, WatchServiceServer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::agent::{AgentHandle, Command};
use crate::config::{ApiTcp, Config};

/// Routes per streamed ListRoutes message unless the client asks otherwise.
const DEFAULT_PAGE: usize = 1000;
/// The largest page a client may ask for.
const MAX_PAGE: usize = 10_000;
/// Messages a Watch stream may hold for a client before the stream waits; a client slower than
/// that makes the speaker's subscription lag, which ends in a resync rather than a gap.
const WATCH_QUEUE: usize = 256;
/// How long in-flight calls (watch streams) may take to finish once ternd stops.
const DRAIN: Duration = Duration::from_secs(1);

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The API's services over the agent's handle.
#[derive(Debug, Clone)]
pub struct Api {
    handle: AgentHandle,
    /// Becomes true when ternd stops: open streams end with UNAVAILABLE instead of being cut.
    stopping: watch::Receiver<bool>,
}

fn stopping() -> Status {
    Status::unavailable("ternd is stopping")
}

impl Api {
    /// The services over `handle`; streams end when `stopping` becomes true.
    pub fn new(handle: AgentHandle, stopping: watch::Receiver<bool>) -> Api {
        Api { handle, stopping }
    }

    /// Every service on `server` (plain, or with TLS set up).
    pub fn router(self, mut server: tonic::transport::Server) -> Router {
        server
            .add_service(BlockServiceServer::new(self.clone()))
            .add_service(PeerServiceServer::new(self.clone()))
            .add_service(RouteServiceServer::new(self.clone()))
            .add_service(WatchServiceServer::new(self.clone()))
            .add_service(StatusServiceServer::new(self))
    }

    /// Sends the agent a command and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Status> {
        let (reply, answer) = oneshot::channel();
        self.handle
            .commands
            .send(command(reply))
            .await
            .map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())
    }

    async fn blocks(&self) -> Result<Vec<pb::Block>, Status> {
        let list = self.ask(Command::ListBlocks).await?;
        Ok(list
            .into_iter()
            .map(|(prefix, source)| convert::block(prefix, source))
            .collect())
    }

    async fn peers(&self) -> Result<Vec<tern_bgp::PeerStatus>, Status> {
        self.handle.speaker.peers().await.map_err(|_| stopping())
    }
}

#[tonic::async_trait]
impl BlockService for Api {
    async fn add_block(
        &self,
        request: Request<pb::AddBlockRequest>,
    ) -> Result<Response<pb::AddBlockResponse>, Status> {
        let block = convert::prefix("prefix", &request.into_inner().prefix)?;
        let changed = self
            .ask(|reply| Command::AddBlock(block, reply))
            .await?
            .map_err(Status::from)?;
        if changed {
            info!(prefix = %block, "block added through the API");
        }
        Ok(Response::new(pb::AddBlockResponse { changed }))
    }

    async fn remove_block(
        &self,
        request: Request<pb::RemoveBlockRequest>,
    ) -> Result<Response<pb::RemoveBlockResponse>, Status> {
        let block = convert::prefix("prefix", &request.into_inner().prefix)?;
        let changed = self
            .ask(|reply| Command::RemoveBlock(block, reply))
            .await?
            .map_err(Status::from)?;
        if changed {
            info!(prefix = %block, "block removed through the API");
        }
        Ok(Response::new(pb::RemoveBlockResponse { changed }))
    }

    async fn list_blocks(
        &self,
        _: Request<pb::ListBlocksRequest>,
    ) -> Result<Response<pb::ListBlocksResponse>, Status> {
        Ok(Response::new(pb::ListBlocksResponse {
            blocks: self.blocks().await?,
        }))
    }

    async fn set_blocks(
        &self,
        request: Request<pb::SetBlocksRequest>,
    ) -> Result<Response<pb::SetBlocksResponse>, Status> {
        let blocks = request
            .into_inner()
            .prefixes
            .iter()
            .map(|p| convert::prefix("prefixes", p))
            .collect::<Result<Vec<_>, _>>()?;
        let count = blocks.len();
        self.ask(|reply| Command::SetBlocks(blocks, reply))
            .await?
            .map_err(Status::from)?;
        info!(blocks = count, "blocks set through the API");
        Ok(Response::new(pb::SetBlocksResponse {
            blocks: self.blocks().await?,
        }))
    }
}

#[tonic::async_trait]
impl PeerService for Api {
    async fn list_peers(
        &self,
        _: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        let kinds = self.ask(Command::Status).await?.peer_kinds;
        let peers = self.peers().await?;
        Ok(Response::new(pb::ListPeersResponse {
            peers: peers
                .iter()
                .map(|p| convert::peer(p, kinds.get(&p.config.address).copied()))
                .collect(),
        }))
    }

    async fn add_peer(
        &self,
        request: Request<pb::AddPeerRequest>,
    ) -> Result<Response<pb::AddPeerResponse>, Status> {
        let peer = convert::desired_peer(request.into_inner().peer)?;
        self.ask(|reply| Command::AddPeer(peer, reply))
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(pb::AddPeerResponse {}))
    }

    async fn update_peer(
        &self,
        request: Request<pb::UpdatePeerRequest>,
    ) -> Result<Response<pb::UpdatePeerResponse>, Status> {
        let config = request.into_inner().peer;
        let keep_password = config
            .as_ref()
            .is_some_and(|c| c.has_password && c.password.is_empty());
        let mut peer = convert::desired_peer(config)?;
        if keep_password {
            // A configuration read back from ListPeers has no password but says it had one.
            peer.config.password = self
                .peers()
                .await?
                .into_iter()
                .find(|p| p.config.address == peer.config.address)
                .and_then(|p| p.config.password);
        }
        self.ask(|reply| Command::UpdatePeer(peer, reply))
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(pb::UpdatePeerResponse {}))
    }

    async fn remove_peer(
        &self,
        request: Request<pb::RemovePeerRequest>,
    ) -> Result<Response<pb::RemovePeerResponse>, Status> {
        let address = convert::address("address", &request.into_inner().address)?;
        self.ask(|reply| Command::RemovePeer(address, reply))
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(pb::RemovePeerResponse {}))
    }

    async fn reset_peer(
        &self,
        request: Request<pb::ResetPeerRequest>,
    ) -> Result<Response<pb::ResetPeerResponse>, Status> {
        let request = request.into_inner();
        let address = convert::address("address", &request.address)?;
        self.ask(|reply| Command::ResetPeer(address, request.hard, reply))
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(pb::ResetPeerResponse {}))
    }
}

/// Which prefixes a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every prefix.
    All,
    /// Prefixes equal to or inside this one.
    Inside(IpNetwork),
    /// Prefixes that contain this address, most specific first.
    Containing(IpAddr),
}

/// A ListRoutes request, checked.
#[derive(Debug, Clone)]
struct RouteQuery {
    scope: Scope,
    /// `Some(true)`: IPv4 only; `Some(false)`: IPv6 only.
    ipv4: Option<bool>,
    peer: Option<IpAddr>,
    page: usize,
    start_after: Option<IpNetwork>,
    limit: usize,
}

impl RouteQuery {
    fn parse(request: pb::ListRoutesRequest) -> Result<RouteQuery, Status> {
        let text = request.prefix.trim();
        let scope = if text.is_empty() {
            Scope::All
        } else if text.contains('/') {
            let prefix = convert::prefix("prefix", text)?;
            // Inside 10.244.1.7/24 means inside 10.244.1.0/24.
            Scope::Inside(
                IpNetwork::new(prefix.network(), prefix.prefix()).map_err(|_| {
                    Status::invalid_argument(format!("prefix: {text:?} is not a prefix"))
                })?,
            )
        } else {
            Scope::Containing(convert::address("prefix", text)?)
        };
        let ipv4 = match pb::AddressFamily::try_from(request.family) {
            Ok(pb::AddressFamily::Unspecified) => None,
            Ok(pb::AddressFamily::Ipv4Unicast) => Some(true),
            Ok(pb::AddressFamily::Ipv6Unicast) => Some(false),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "family: unknown value {}",
                    request.family
                )));
            }
        };
        let peer = match request.peer.trim() {
            "" => None,
            text => Some(convert::address("peer", text)?),
        };
        let start_after = match request.start_after.trim() {
            "" => None,
            text => Some(convert::prefix("start_after", text)?),
        };
        let page = match request.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        Ok(RouteQuery {
            scope,
            ipv4,
            peer,
            page,
            start_after,
            limit: request.limit as usize,
        })
    }

    /// Where the scan of the ordered table starts: after this prefix.
    fn start(&self) -> Option<IpNetwork> {
        let scope_start = match (self.scope, self.ipv4) {
            (Scope::Inside(net), _) => before(net),
            (_, Some(false)) => Some(LAST_IPV4),
            _ => None,
        };
        match (scope_start, self.start_after) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the scan may stop at `prefix`: nothing after it can match.
    fn past(&self, prefix: IpNetwork) -> bool {
        if self.ipv4 == Some(true) && prefix.is_ipv6() {
            return true;
        }
        match self.scope {
            Scope::Inside(net) => {
                net.is_ipv4() != prefix.is_ipv4() && net.is_ipv4()
                    || net.is_ipv4() == prefix.is_ipv4() && prefix.network() > net.broadcast()
            }
            _ => false,
        }
    }

    fn matches(&self, entry: &RouteEntry) -> bool {
        let prefix = entry.prefix;
        let family = self.ipv4.is_none_or(|v4| v4 == prefix.is_ipv4());
        let scope = match self.scope {
            Scope::All => true,
            Scope::Inside(net) => {
                net.is_ipv4() == prefix.is_ipv4()
                    && net.contains(prefix.network())
                    && prefix.prefix() >= net.prefix()
            }
            Scope::Containing(address) => prefix.contains(address),
        };
        let peer = self
            .peer
            .is_none_or(|peer| entry.sources.contains(&Some(peer)));
        family && scope && peer && self.start_after.is_none_or(|after| prefix > after)
    }
}

/// The largest IPv4 key of the table: starting after it skips to IPv6.
const LAST_IPV4: IpNetwork = IpNetwork::V4(
    match Ipv4Network::new_checked(std::net::Ipv4Addr::BROADCAST, 32) {
        Some(n) => n,
        None => panic!("a valid prefix"),
    },
);

/// A key just before `net` in the table's order (address, then length), so that a page that
/// starts after it starts at `net` or the first prefix after it.
fn before(net: IpNetwork) -> Option<IpNetwork> {
    match net.prefix() {
        0 if net.is_ipv4() => None,
        0 => Some(LAST_IPV4),
        length => IpNetwork::new(net.network(), length - 1).ok(),
    }
}

impl Api {
    /// The kernel state of each entry of a page.
    async fn kernel_states(
        &self,
        entries: &[RouteEntry],
        blocks: &BTreeSet<IpNetwork>,
    ) -> Result<Vec<pb::KernelState>, Status> {
        let prefixes: Vec<IpNetwork> = entries.iter().map(|e| e.prefix).collect();
        let installed = self
            .ask(|reply| Command::Installed(prefixes, reply))
            .await?;
        Ok(entries
            .iter()
            .zip(installed)
            .map(|(entry, installed)| {
                if blocks.contains(&entry.prefix) {
                    pb::KernelState::Blackhole
                } else if installed {
                    pb::KernelState::Installed
                } else {
                    pb::KernelState::NotInstalled
                }
            })
            .collect())
    }

    /// Converts and sends one page; false once the client is gone.
    async fn send_page(
        &self,
        entries: Vec<RouteEntry>,
        blocks: &BTreeSet<IpNetwork>,
        out: &mpsc::Sender<Result<pb::ListRoutesResponse, Status>>,
    ) -> Result<bool, Status> {
        if entries.is_empty() {
            return Ok(true);
        }
        let states = self.kernel_states(&entries, blocks).await?;
        let routes = entries
            .iter()
            .zip(states)
            .map(|(e, state)| convert::route(e, state))
            .collect();
        Ok(out
            .send(Ok(pb::ListRoutesResponse { routes }))
            .await
            .is_ok())
    }

    /// Streams the routes `query` asks for in pages.
    async fn stream_routes(
        &self,
        query: RouteQuery,
        out: &mpsc::Sender<Result<pb::ListRoutesResponse, Status>>,
    ) -> Result<(), Status> {
        let blocks: BTreeSet<IpNetwork> = self
            .ask(Command::ListBlocks)
            .await?
            .into_iter()
            .map(|(prefix, _)| prefix)
            .collect();
        let speaker = &self.handle.speaker;
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        if let Scope::Containing(address) = query.scope {
            // At most one prefix per length contains the address: look each up, longest first.
            let mut found = Vec::new();
            let longest = if address.is_ipv4() { 32 } else { 128 };
            for length in (0..=longest).rev() {
                let Ok(candidate) = IpNetwork::new(address, length) else {
                    continue;
                };
                let candidate = IpNetwork::new(candidate.network(), length).unwrap_or(candidate);
                let page = speaker
                    .routes(before(candidate), 1)
                    .await
                    .map_err(|_| stopping())?;
                if let Some(entry) = page.into_iter().next()
                    && entry.prefix == candidate
                    && query.matches(&entry)
                {
                    found.push(entry);
                }
            }
            found.truncate(limit);
            for chunk in found.chunks(query.page) {
                if !self.send_page(chunk.to_vec(), &blocks, out).await? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let mut after = query.start();
        let mut sent = 0;
        loop {
            let page = speaker
                .routes(after, query.page)
                .await
                .map_err(|_| stopping())?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.prefix);
            let full = page.len() == query.page;
            let mut done = !full;
            let mut wanted = Vec::new();
            for entry in page {
                if query.past(entry.prefix) || sent + wanted.len() >= limit {
                    done = true;
                    break;
                }
                if query.matches(&entry) {
                    wanted.push(entry);
                }
            }
            sent += wanted.len();
            if !self.send_page(wanted, &blocks, out).await? || done {
                return Ok(());
            }
        }
    }
}

#[tonic::async_trait]
impl RouteService for Api {
    type ListRoutesStream = Stream<pb::ListRoutesResponse>;

    async fn list_routes(
        &self,
        request: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<Self::ListRoutesStream>, Status> {
        let query = RouteQuery::parse(request.into_inner())?;
        let (out, stream) = mpsc::channel(2);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api.stream_routes(query, &out).await {
                let _ = out.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

impl Api {
    /// The whole table and every peer's state, as Watch messages.
    async fn snapshot(
        &self,
        routes: Option<Vec<RouteEntry>>,
    ) -> Result<Vec<pb::WatchResponse>, Status> {
        let routes = match routes {
            Some(routes) => routes,
            None => {
                let mut all = Vec::new();
                let mut after = None;
                loop {
                    let page = self
                        .handle
                        .speaker
                        .routes(after, MAX_PAGE)
                        .await
                        .map_err(|_| stopping())?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.prefix);
                    all.extend(page);
                }
                all
            }
        };
        let mut messages = convert::resync(&routes);
        for peer in self.peers().await? {
            messages.push(convert::peer_state(
                peer.config.address,
                peer.state,
                peer.last_error,
            ));
        }
        Ok(messages)
    }

    async fn stream_events(
        &self,
        request: pb::WatchRequest,
        out: &mpsc::Sender<Result<pb::WatchResponse, Status>>,
    ) -> Result<(), Status> {
        use pb::watch_response::Event;
        // Subscribe before the first snapshot so that nothing after it is missed.
        let mut events = self.handle.speaker.subscribe();
        let mut stop = self.stopping.clone();
        if request.initial_state {
            for message in self.snapshot(None).await? {
                if out.send(Ok(message)).await.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            let notice = tokio::select! {
                notice = events.next() => notice,
                () = out.closed() => return Ok(()),
                _ = stop.wait_for(|stopped| *stopped) => return Err(stopping()),
            };
            let messages = match notice {
                None => return Ok(()),
                Some(Notice::Resync(routes)) => {
                    warn!(
                        routes = routes.len(),
                        "a watch client fell behind: resynchronising it"
                    );
                    self.snapshot(Some(routes)).await?
                }
                Some(Notice::Event(event)) => {
                    let message = convert::event(event);
                    let wanted = match &message.event {
                        Some(Event::PeerState(_)) => !request.no_peers,
                        Some(Event::Route(_)) => !request.no_routes,
                        _ => true,
                    };
                    if !wanted {
                        continue;
                    }
                    vec![message]
                }
            };
            for message in messages {
                if out.send(Ok(message)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[tonic::async_trait]
impl WatchService for Api {
    type WatchStream = Stream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let (out, stream) = mpsc::channel(WATCH_QUEUE);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api.stream_events(request, &out).await {
                let _ = out.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

#[tonic::async_trait]
impl StatusService for Api {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let status = self.ask(Command::Status).await?;
        let blocks = self.ask(Command::ListBlocks).await?.len();
        let peers = self.peers().await?;
        Ok(Response::new(convert::status(status, &peers, blocks)))
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process answers on the socket.
    #[error("{0}: another ternd is serving the API there; stop it first")]
    InUse(PathBuf),
    /// The socket could not be made.
    #[error("{path}: {source}")]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("apiTcp: {path}: {source}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS setup was refused.
    #[error("apiTcp: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// The TCP address could not be bound.
    #[error("apiTcp: cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running API listeners.
#[derive(Debug)]
pub struct Server {
    socket: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds `path` as a unix socket readable and writable by its owner only: its folder is made,
/// and a stale socket left by a process that died is removed first.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let fail = |source| ServeError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !std::os::unix::fs::FileTypeExt::is_socket(&metadata.file_type()) {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket: remove it or set apiSocket elsewhere",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(fail)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(listener)
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsFile {
        path: path.to_owned(),
        source,
    })
}

fn tls(tcp: &ApiTcp) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(&tcp.cert_file)?,
            read(&tcp.key_file)?,
        ))
        .client_ca_root(Certificate::from_pem(read(&tcp.client_ca_file)?)))
}

impl Server {
    /// Starts serving `handle` on the configured unix socket and, when `apiTcp` is set, on TCP
    /// with mutual TLS. Everything is bound before this returns, so errors show at start.
    pub async fn start(handle: AgentHandle, config: &Config) -> Result<Server, ServeError> {
        let (shutdown, stop) = watch::channel(false);
        let api = Api::new(handle, stop.clone());
        let signal = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let listener = bind_unix(&config.api_socket)?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let router = api.clone().router(tonic::transport::Server::builder());
        let socket = config.api_socket.clone();
        let mut tasks = vec![tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(error) = router
                    .serve_with_incoming_shutdown(incoming, signal(stop))
                    .await
                {
                    warn!(%error, "the API on the unix socket stopped");
                }
            }
        })];
        info!(socket = %socket.display(), "serving the API");
        if let Some(tcp) = &config.api_tcp {
            let tls = tls(tcp)?;
            let listener = tokio::net::TcpListener::bind(tcp.address)
                .await
                .map_err(|source| ServeError::Bind {
                    address: tcp.address,
                    source,
                })?;
            let router = api.router(
                tonic::transport::Server::builder()
                    .tls_config(tls)
                    .map_err(ServeError::Tls)?,
            );
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            tasks.push(tokio::spawn(async move {
                if let Err(error) = router
                    .serve_with_incoming_shutdown(incoming, signal(stop))
                    .await
                {
                    warn!(%error, "the API on TCP stopped");
                }
            }));
            info!(address = %tcp.address, "serving the API over TCP with mutual TLS");
        }
        Ok(Server {
            socket,
            shutdown,
            tasks,
        })
    }

    /// Stops serving: calls in flight get a moment to finish, and the socket file is removed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN, task).await.is_err() {
                abort.abort();
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tern_bgp::{Speaker, SpeakerConfig};

    fn query(request: pb::ListRoutesRequest) -> RouteQuery {
        RouteQuery::parse(request).unwrap()
    }

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    #[test]
    fn a_listing_inside_a_prefix_starts_just_before_it_and_stops_past_it() {
        let q = query(pb::ListRoutesRequest {
            prefix: "10.244.10.7/24".into(),
            ..Default::default()
        });
        assert_eq!(q.scope, Scope::Inside(net("10.244.10.0/24")));
        let start = q.start().unwrap();
        assert!(start < net("10.244.10.0/24") && start > net("10.244.9.255/32"));
        assert!(!q.past(net("10.244.10.192/26")));
        assert!(q.past(net("10.244.11.0/26")));
        assert!(q.past(net("fd00::/64")));
    }

    #[test]
    fn an_ipv6_listing_skips_every_ipv4_route() {
        let q = query(pb::ListRoutesRequest {
            family: pb::AddressFamily::Ipv6Unicast as i32,
            ..Default::default()
        });
        assert_eq!(q.start(), Some(LAST_IPV4));
        let v4 = query(pb::ListRoutesRequest {
            family: pb::AddressFamily::Ipv4Unicast as i32,
            ..Default::default()
        });
        assert_eq!(v4.start(), None);
        assert!(v4.past(net("::/0")));
        let everything_v6 = query(pb::ListRoutesRequest {
            prefix: "::/0".into(),
            ..Default::default()
        });
        assert_eq!(everything_v6.start(), Some(LAST_IPV4));
    }

    #[test]
    fn a_bare_address_asks_for_the_routes_that_contain_it() {
        let q = query(pb::ListRoutesRequest {
            prefix: "10.244.10.70".into(),
            ..Default::default()
        });
        assert_eq!(q.scope, Scope::Containing("10.244.10.70".parse().unwrap()));
    }

    #[test]
    fn page_sizes_have_a_default_and_a_ceiling() {
        assert_eq!(query(pb::ListRoutesRequest::default()).page, DEFAULT_PAGE);
        let big = query(pb::ListRoutesRequest {
            page_size: 1_000_000,
            ..Default::default()
        });
        assert_eq!(big.page, MAX_PAGE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_client_that_falls_behind_gets_a_resync_not_a_gap() {
        let config = SpeakerConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1));
        let (speaker, _) = Speaker::start(config, &[]).await.unwrap();
        let (commands, _unused) = mpsc::channel(1);
        let (_stop, stopping) = watch::channel(false);
        let api = Api::new(
            AgentHandle {
                commands,
                speaker: speaker.clone(),
            },
            stopping,
        );
        let mut stream = api
            .watch(Request::new(pb::WatchRequest::default()))
            .await
            .unwrap()
            .into_inner();
        // Nobody reads while more routes change than a subscription holds (65,536 events).
        let count = 70_000u32;
        for i in 0..count {
            let prefix = Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap();
            speaker
                .originate(IpNetwork::V4(prefix), Vec::new())
                .await
                .unwrap();
        }
        use futures::StreamExt;
        let mut resynced = Vec::new();
        let mut changes = 0;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .expect("a resync within 60 s")
                .unwrap()
                .unwrap();
            match message.event {
                Some(pb::watch_response::Event::Route(_)) => changes += 1,
                Some(pb::watch_response::Event::Resync(part)) => {
                    assert_eq!(part.first, resynced.is_empty());
                    resynced.extend(part.routes);
                    if part.last {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(changes < count as usize, "the reader fell behind");
        assert_eq!(
            resynced.len(),
            count as usize,
            "the resync holds the whole table"
        );
        assert_eq!(resynced[0].prefix, "10.0.0.0/24");
    }
}
