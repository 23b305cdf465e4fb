//! Connecting to ternd: over its unix socket, or over TCP with mutual TLS when `--address` is
//! given. A socket that cannot be reached is told plainly, in one line ("ternd is not running").

use std::path::PathBuf;

use tonic::transport::{Channel, Endpoint};

use super::{Cli, Error};

/// A channel to the ternd that the command line names.
pub(super) async fn connect(cli: &Cli) -> Result<Channel, Error> {
    if let Some(address) = &cli.address {
        return connect_tls(cli, address).await;
    }
    let path = cli.socket.clone();
    // Try the socket first, to say plainly why it cannot be reached.
    if let Err(error) = tokio::net::UnixStream::connect(&path).await {
        return Err(match error.kind() {
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                path,
                source: error,
            },
            _ => Error::NotRunning {
                path,
                source: Box::new(error),
            },
        });
    }
    crate::api::connect_unix(&path)
        .await
        .map_err(|error| Error::NotRunning {
            path: cli.socket.clone(),
            source: Box::new(error),
        })
}

/// A channel over TCP with mutual TLS: our certificate and key, checked against `--ca`.
async fn connect_tls(cli: &Cli, address: &str) -> Result<Channel, Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |path: &Option<PathBuf>| {
        let path = path.as_ref().expect("clap requires it");
        std::fs::read(path).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })
    };
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|source| Error::Address {
        address: address.to_owned(),
        source,
    })?;
    let host = endpoint.uri().host().unwrap_or_default().to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cli.ca)?))
        .identity(Identity::from_pem(read(&cli.cert)?, read(&cli.key)?))
        .domain_name(cli.server_name.clone().unwrap_or(host));
    endpoint
        .tls_config(tls)
        .map_err(Error::Tls)?
        .connect()
        .await
        .map_err(|error| Error::Connect {
            address: address.to_owned(),
            error,
        })
}
