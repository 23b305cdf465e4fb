//! Who may change state over TCP: `apiTcp.allowedClientNames`. A tower layer in front of every
//! service of the TCP listener lets reads through for any client the TLS handshake verified
//! (its certificate was signed by `clientCaFile`) and lets a call that changes state through
//! only when the client certificate carries an allowed name (see [`super::certificate`]);
//! otherwise the call is answered PERMISSION_DENIED, naming the certificate, and never reaches
//! the service. Deny by default: an RPC not listed in [`READ_ONLY`] (one added later too)
//! counts as changing state. The unix socket has no such layer: its mode (0600) already
//! limits it to root.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The RPCs that only read (`/package.Service/Method`, as in the HTTP/2 `:path`).
pub(super) const READ_ONLY: [&str; 5] = [
    "/tern.v1.BlockService/ListBlocks",
    "/tern.v1.PeerService/ListPeers",
    "/tern.v1.RouteService/ListRoutes",
    "/tern.v1.StatusService/GetStatus",
    "/tern.v1.WatchService/Watch",
];

/// The names that may change state, lowercased.
#[derive(Debug, Clone)]
pub(super) struct Authorize {
    allowed: Arc<[String]>,
}

impl Authorize {
    /// Only clients with one of `allowed` (compared ignoring ASCII case) may change state.
    pub(super) fn new(allowed: &[String]) -> Authorize {
        Authorize {
            allowed: allowed.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a client with `names` (its certificate's, `None` without one) may call `path`;
    /// the refusal to send otherwise.
    pub(super) fn check(&self, path: &str, names: Option<&[String]>) -> Result<(), Status> {
        if READ_ONLY.contains(&path) {
            return Ok(());
        }
        let Some(names) = names else {
            return Err(Status::permission_denied(format!(
                "{path} changes state and needs a client certificate named in \
                 apiTcp.allowedClientNames"
            )));
        };
        let allowed = names
            .iter()
            .any(|name| !name.is_empty() && self.allowed.contains(&name.to_ascii_lowercase()));
        if allowed {
            return Ok(());
        }
        let shown = names.first().map_or("(no name)", String::as_str);
        Err(Status::permission_denied(format!(
            "the client certificate {shown:?} may not call {path}: it changes state, and \
             apiTcp.allowedClientNames does not list that certificate"
        )))
    }
}

impl<S> tower::Layer<S> for Authorize {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            authorize: self.clone(),
        }
    }
}

/// A service behind [`Authorize`].
#[derive(Debug, Clone)]
pub(super) struct Authorized<S> {
    inner: S,
    authorize: Authorize,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let names: Option<Vec<String>> = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| chain.first().map(super::certificate::names));
        match self.authorize.check(request.uri().path(), names.as_deref()) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::server::NamedService;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn every_read_only_path_names_a_served_service() {
        use tern_proto::v1::*;
        let services = [
            block_service_server::BlockServiceServer::<crate::api::Api>::NAME,
            peer_service_server::PeerServiceServer::<crate::api::Api>::NAME,
            route_service_server::RouteServiceServer::<crate::api::Api>::NAME,
            status_service_server::StatusServiceServer::<crate::api::Api>::NAME,
            watch_service_server::WatchServiceServer::<crate::api::Api>::NAME,
        ];
        for path in READ_ONLY {
            let service = path.trim_start_matches('/').split('/').next().unwrap();
            assert!(services.contains(&service), "{path}");
        }
    }

    #[test]
    fn reads_are_open_to_every_verified_client_and_changes_only_to_allowed_names() {
        let authorize = Authorize::new(&names(&["Operator", "ops.example.net"]));
        let intruder = names(&["intruder", "intruder.example.net"]);
        for path in READ_ONLY {
            assert!(authorize.check(path, Some(&intruder)).is_ok(), "{path}");
        }
        let add = "/tern.v1.BlockService/AddBlock";
        let refused = authorize.check(add, Some(&intruder)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("\"intruder\""), "{refused:?}");
        assert!(authorize.check(add, Some(&names(&["operator"]))).is_ok());
        let by_san = names(&["someone", "OPS.example.net"]);
        assert!(authorize.check(add, Some(&by_san)).is_ok());
        assert!(authorize.check(add, None).is_err());
        assert!(authorize.check(add, Some(&[])).is_err());
    }

    #[test]
    fn an_rpc_that_is_not_known_to_read_counts_as_a_change() {
        let authorize = Authorize::new(&[]);
        let everyone = names(&["operator"]);
        for path in [
            "/tern.v1.PeerService/ResetPeer",
            "/tern.v1.BlockService/SetBlocks",
            "/tern.v1.BlockService/ListBlocksAndMore",
            "/tern.v1.Future/Anything",
        ] {
            assert!(authorize.check(path, Some(&everyone)).is_err(), "{path}");
        }
        let empty = Authorize::new(&names(&[""]));
        assert!(empty.check("/x/Y", Some(&names(&[""]))).is_err());
    }
}
