//! BlockService: this node's address blocks, added, removed, listed and set through the API.

use tern_proto::v1 as pb;
use tern_proto::v1::block_service_server::BlockService;
use tonic::{Request, Response, Status};
use tracing::info;

use super::convert;
use super::server::Api;
use crate::handle::Command;

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
