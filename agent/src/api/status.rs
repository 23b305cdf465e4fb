//! StatusService: the agent's identity, uptime, readiness and data path, with counts of peers,
//! blocks and kernel routes.

use tern_proto::v1 as pb;
use tern_proto::v1::status_service_server::StatusService;
use tonic::{Request, Response, Status};

use super::convert;
use super::server::Api;
use crate::handle::Command;

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
