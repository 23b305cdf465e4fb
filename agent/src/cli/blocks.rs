//! `ternctl blocks`: this node's address blocks, listed, added, removed or set.

use clap::Subcommand;
use serde::Serialize;
use tern_proto::v1 as pb;
use tern_proto::v1::block_service_client::BlockServiceClient;
use tonic::transport::Channel;

use super::Error;
use super::output::{Output, print, table};

/// `ternctl blocks ...`.
#[derive(Debug, Subcommand)]
pub(super) enum BlocksCommand {
    /// Lists every block with where it comes from.
    List,
    /// Adds a block (kept across restarts of ternd).
    Add {
        /// The prefix, e.g. 10.244.1.0/26.
        prefix: String,
    },
    /// Removes a block added through the API.
    Remove {
        /// The prefix.
        prefix: String,
    },
    /// Makes the API's blocks exactly these.
    Set {
        /// The prefixes (none: remove every API block).
        prefixes: Vec<String>,
    },
}

/// A block as ternctl shows it.
#[derive(Debug, Serialize)]
struct BlockView {
    prefix: String,
    source: &'static str,
}

/// Blocks from the API as ternctl shows them.
fn block_views(blocks: Vec<pb::Block>) -> Vec<BlockView> {
    blocks
        .into_iter()
        .map(|b| BlockView {
            prefix: b.prefix,
            source: match pb::BlockSource::try_from(b.source) {
                Ok(pb::BlockSource::Config) => "config",
                Ok(pb::BlockSource::Api) => "api",
                _ => "unknown",
            },
        })
        .collect()
}

/// Prints a block list (`blocks list` and `blocks set` answer alike).
fn print_blocks(output: Output, blocks: &[BlockView]) {
    print(output, &blocks, || {
        if blocks.is_empty() {
            return "No blocks.\n".to_owned();
        }
        let rows: Vec<Vec<String>> = blocks
            .iter()
            .map(|b| vec![b.prefix.clone(), b.source.to_owned()])
            .collect();
        table(&["BLOCK", "SOURCE"], &rows)
    });
}

/// `ternctl blocks list|add|remove|set`.
pub(super) async fn run(
    channel: Channel,
    output: Output,
    command: BlocksCommand,
) -> Result<(), Error> {
    let mut client = BlockServiceClient::new(channel);
    let changed = |what: &str, prefix: &str, changed: bool| {
        let text = if changed {
            format!("block {prefix} {what}")
        } else {
            format!("block {prefix} unchanged (already {what})")
        };
        print(
            output,
            &serde_json::json!({ "prefix": prefix, "changed": changed }),
            || format!("{text}\n"),
        );
    };
    match command {
        BlocksCommand::List => {
            let blocks = client
                .list_blocks(pb::ListBlocksRequest {})
                .await?
                .into_inner()
                .blocks;
            print_blocks(output, &block_views(blocks));
        }
        BlocksCommand::Add { prefix } => {
            let response = client
                .add_block(pb::AddBlockRequest {
                    prefix: prefix.clone(),
                })
                .await?
                .into_inner();
            changed("added", &prefix, response.changed);
        }
        BlocksCommand::Remove { prefix } => {
            let response = client
                .remove_block(pb::RemoveBlockRequest {
                    prefix: prefix.clone(),
                })
                .await?
                .into_inner();
            changed("removed", &prefix, response.changed);
        }
        BlocksCommand::Set { prefixes } => {
            let blocks = client
                .set_blocks(pb::SetBlocksRequest { prefixes })
                .await?
                .into_inner()
                .blocks;
            print_blocks(output, &block_views(blocks));
        }
    }
    Ok(())
}
