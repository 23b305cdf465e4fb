//! PeerService: BGP peers listed with their sessions, and added, updated, removed or reset.

use tern_proto::v1 as pb;
use tern_proto::v1::peer_service_server::PeerService;
use tonic::{Request, Response, Status};

use super::convert;
use super::server::Api;
use crate::handle::Command;

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
