//! ternd's state file and configuration reloads against a real ternd in a copy of the
//! `ternd-pair` lab (only node `a` runs ternd): a change the state file cannot hold is refused
//! and changes nothing; entries that fail the checks at start stay in the file; a configuration
//! edited in place is applied once complete, and settings a reload cannot apply are reported.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tern_e2e::check::{eventually, route_lines};
use tern_e2e::{DaemonOptions, Lab, require_root};
use tern_proto::v1 as pb;
use tern_proto::v1::block_service_client::BlockServiceClient;
use tonic::Code;

const CONFIG: &str = r#"
nodeName: node-a
nodeAddress: 10.0.9.1/24
asNumber: 64512
nodeToNodeMeshEnabled: false
ipPools:
  - cidr: 10.244.0.0/16
blocks: [10.244.1.0/26]
"#;

fn lab(name: &str) -> Lab {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/ternd-pair.clab.yml");
    Lab::up_as(file, name, &DaemonOptions::from_env()).unwrap()
}

fn ternd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ternd"))
}

async fn client(lab: &Lab) -> BlockServiceClient<tonic::transport::Channel> {
    let path = lab.ternd_socket("a");
    let channel = tern_agent::api::connect_unix_within(&path, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("nothing serves {}: {e}", path.display()));
    BlockServiceClient::new(channel)
}

async fn listed(client: &mut BlockServiceClient<tonic::transport::Channel>) -> Vec<String> {
    client
        .list_blocks(pb::ListBlocksRequest {})
        .await
        .unwrap()
        .into_inner()
        .blocks
        .into_iter()
        .map(|b| b.prefix)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_state_file_cannot_hold_is_refused_and_held_entries_are_kept() {
    if !require_root() {
        return;
    }
    let mut lab = lab("st-file");
    let state = lab.node_dir("a").join("ternd.state.yaml");
    std::fs::create_dir_all(lab.node_dir("a")).unwrap();
    // An entry of an earlier run that no longer passes the checks (no pool holds it).
    std::fs::write(&state, "blocks:\n- 10.244.5.0/26\n- 10.99.0.0/26\n").unwrap();
    lab.start_ternd("a", ternd(), CONFIG).unwrap();
    let mut client = client(&lab).await;
    assert_eq!(
        listed(&mut client).await,
        ["10.244.1.0/26", "10.244.5.0/26"]
    );
    let add = |prefix: &str| pb::AddBlockRequest {
        prefix: prefix.into(),
    };
    client.add_block(add("10.244.6.0/26")).await.unwrap();
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(
        text.contains("10.244.6.0/26") && text.contains("10.99.0.0/26"),
        "the held entry survives the save: {text}"
    );

    // The state file cannot be written: a folder where its temporary file goes.
    let blocker = lab.node_dir("a").join("ternd.state.yaml.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let status = client.add_block(add("10.244.7.0/26")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("ternd.state.yaml")
            && status.message().contains("nothing was changed"),
        "{}",
        status.message()
    );
    let status = client
        .remove_block(pb::RemoveBlockRequest {
            prefix: "10.244.6.0/26".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = client
        .set_blocks(pb::SetBlocksRequest { prefixes: vec![] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        listed(&mut client).await,
        ["10.244.1.0/26", "10.244.5.0/26", "10.244.6.0/26"],
        "nothing changed in memory"
    );
    let kernel = route_lines(&lab, "a", "bird").unwrap();
    assert!(
        !kernel.contains("10.244.7.0/26") && kernel.contains("10.244.6.0/26"),
        "nor in the kernel: {kernel}"
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), text);

    // Writable again: the same call goes through.
    std::fs::remove_dir(&blocker).unwrap();
    client.add_block(add("10.244.7.0/26")).await.unwrap();
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(
        text.contains("10.244.7.0/26") && text.contains("10.99.0.0/26"),
        "{text}"
    );
}

#[test]
fn a_file_edited_in_place_is_applied_once_complete_and_restart_only_settings_are_named() {
    if !require_root() {
        return;
    }
    let mut lab = lab("st-reload");
    lab.start_ternd("a", ternd(), CONFIG).unwrap();
    let path = lab.node_dir("a").join("ternd.yaml");
    let written = std::fs::read_to_string(&path).unwrap();
    eventually(Duration::from_secs(20), "ternd is up", || {
        let r = route_lines(&lab, "a", "bird").unwrap();
        if r.contains("10.244.1.0/26") {
            Ok(())
        } else {
            Err(r)
        }
    });
    // The new file: another block, and a new AS, which a reload cannot apply.
    let edited = written
        .replace(
            "blocks: [10.244.1.0/26]",
            "blocks: [10.244.1.0/26, 10.244.2.0/26]",
        )
        .replace("asNumber: 64512", "asNumber: 64513");
    assert_ne!(edited, written);
    // Written in place, slowly, as a editor or a config manager streaming it would: a piece
    // every half second, never parseable until the end.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let bytes = edited.as_bytes();
    let pieces = 10;
    let size = bytes.len().div_ceil(pieces);
    for piece in bytes.chunks(size) {
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(file);
    eventually(
        Duration::from_secs(20),
        "the complete file is applied",
        || {
            let r = route_lines(&lab, "a", "bird").unwrap();
            if r.contains("10.244.2.0/26") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    let log = lab.log("a", "ternd.log");
    assert!(
        !log.contains("changed configuration not applied"),
        "a half-written file was read as a configuration: {log}"
    );
    assert!(
        log.contains("take effect only when ternd restarts")
            && log.contains("asNumber (64512 to 64513)"),
        "the AS change is reported: {log}"
    );
}
