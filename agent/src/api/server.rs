//! Serving the API: the state every service shares ([`Api`]), the unix socket (mode 0600) and
//! the optional TCP listener with mutual TLS ([`Server`]), and the client side of the socket
//! ([`connect_unix`]).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use tern_proto::v1 as pb;
use tern_proto::v1::block_service_server::BlockServiceServer;
use tern_proto::v1::peer_service_server::PeerServiceServer;
use tern_proto::v1::route_service_server::RouteServiceServer;
use tern_proto::v1::status_service_server::StatusServiceServer;
use tern_proto::v1::watch_service_server::WatchServiceServer;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::server::Router;
use tracing::{info, warn};

use super::authorize::Authorize;
use super::convert;
use crate::config::{ApiTcp, Config};
use crate::handle::{AgentHandle, Command};

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

/// [`connect_unix`] once something serves `path`, trying every 50 ms for up to `within` (a ternd
/// that is starting); after that, the last attempt's error.
pub async fn connect_unix_within(
    path: &Path,
    within: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::net::UnixStream::connect(path).await.is_err()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connect_unix(path).await
}

/// How long in-flight calls (watch streams) may take to finish once ternd stops.
const DRAIN: Duration = Duration::from_secs(1);

/// A server stream of `T`s, as tonic wants it.
pub(super) type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The API's services over the agent's handle.
#[derive(Debug, Clone)]
pub struct Api {
    pub(super) handle: AgentHandle,
    /// Becomes true when ternd stops: open streams end with UNAVAILABLE instead of being cut.
    pub(super) stopping: watch::Receiver<bool>,
}

/// What a call gets once ternd stops.
pub(super) fn stopping() -> Status {
    Status::unavailable("ternd is stopping")
}

impl Api {
    /// The services over `handle`; streams end when `stopping` becomes true.
    pub fn new(handle: AgentHandle, stopping: watch::Receiver<bool>) -> Api {
        Api { handle, stopping }
    }

    /// Every service on `server` (plain, or with TLS and layers set up).
    pub fn router<L: Clone>(self, mut server: tonic::transport::Server<L>) -> Router<L> {
        server
            .add_service(BlockServiceServer::new(self.clone()))
            .add_service(PeerServiceServer::new(self.clone()))
            .add_service(RouteServiceServer::new(self.clone()))
            .add_service(WatchServiceServer::new(self.clone()))
            .add_service(StatusServiceServer::new(self))
    }

    /// Sends the agent a command and waits for its answer.
    pub(super) async fn ask<T>(
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

    /// Every block, as the API shows them.
    pub(super) async fn blocks(&self) -> Result<Vec<pb::Block>, Status> {
        let list = self.ask(Command::ListBlocks).await?;
        Ok(list
            .into_iter()
            .map(|(prefix, source)| convert::block(prefix, source))
            .collect())
    }

    /// Every peer with its session.
    pub(super) async fn peers(&self) -> Result<Vec<tern_bgp::PeerStatus>, Status> {
        self.handle.speaker.peers().await.map_err(|_| stopping())
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

/// Binds `path` as a unix socket readable and writable by its owner only, never reachable by
/// anyone else for a moment:
///
/// - its folder is created with mode 0700 when missing; an existing one must be owned by us
///   (or root) and writable by nobody else, or ternd refuses to start (whoever could write there
///   could swap the socket for their own). An existing folder is never chmod-ed: `apiSocket`
///   may point into a shared folder such as `/run`, which must stay as it is;
/// - the socket is bound inside a fresh folder of mode 0700 next to it (`.<name>.new`), made
///   0600 there and only then renamed into place. `bind` creates the socket with the process's
///   umask, but nobody else can reach into that folder, so the chmod that follows leaves no
///   window; and the umask, which is shared by every thread of the process, is never touched.
///
/// A stale socket left by a process that died is replaced.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let fail = |source| ServeError::Socket {
        path: path.to_owned(),
        source,
    };
    let refuse = |why: String| {
        fail(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why,
        ))
    };
    let Some(name) = path.file_name() else {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    private_folder(dir).map_err(refuse)?;
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
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(".new");
    let staging = dir.join(staging_name);
    // Left by a ternd that died while binding; only we (or root) can write in `dir`.
    if std::fs::symlink_metadata(&staging).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(&staging).map_err(fail)?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(fail)?;
    let temporary = staging.join("socket");
    let bound = tokio::net::UnixListener::bind(&temporary)
        .and_then(|listener| {
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&temporary, path)?;
            Ok(listener)
        })
        .map_err(fail);
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// Makes sure `dir` exists and only we (or root) can write in it: creates it with mode 0700
/// when missing; the reason otherwise.
fn private_folder(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the folder {shown}: {e}"))?;
            // The umask may have taken bits away, never added any.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot set the mode of the folder {shown}: {e}"))?;
            return Ok(());
        }
        Err(error) => return Err(format!("cannot read the folder {shown}: {error}")),
    };
    if !metadata.is_dir() {
        return Err(format!("{shown} is not a folder"));
    }
    let (owner, us) = (metadata.uid(), crate::sys::effective_uid());
    if owner != us && owner != 0 {
        return Err(format!(
            "the folder {shown} belongs to uid {owner}, not to us (uid {us}) or root: \
             the API socket needs a folder nobody else controls"
        ));
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "the folder {shown} (mode {mode:04o}) is writable by others: \
             the API socket needs a folder nobody else can write to (chmod go-w, or set \
             apiSocket in a folder of its own, which ternd creates with mode 0700)"
        ));
    }
    Ok(())
}

/// A TLS file's bytes.
fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsFile {
        path: path.to_owned(),
        source,
    })
}

/// Our certificate and key, and the CA that must have signed every client's certificate: a
/// client without a certificate, or with one the CA did not sign, fails the handshake.
fn tls(tcp: &ApiTcp) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(&tcp.cert_file)?,
            read(&tcp.key_file)?,
        ))
        .client_ca_root(Certificate::from_pem(read(&tcp.client_ca_file)?))
        .client_auth_optional(false))
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
            // Without a list every verified client may change state, as before the list
            // existed.
            let authorize = tcp.allowed_client_names.as_deref().map(Authorize::new);
            let router = api.router(
                tonic::transport::Server::builder()
                    .tls_config(tls)
                    .map_err(ServeError::Tls)?
                    .layer(tower::util::option_layer(authorize)),
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
