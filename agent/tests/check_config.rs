//! `ternd check-config FILE`, the dry run, as an operator runs it before a rollout: a good file
//! is described and exits 0; a bad one says what to fix and exits 2. Neither needs root, since
//! nothing is touched.

use std::path::Path;
use std::process::Command;

fn check(file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_lab_node_config_is_described() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/mesh3/n1/ternd.yaml");
    let (code, out, err) = check(&file);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("node n1 address 10.0.0.11/24 AS 64512"),
        "{out}"
    );
    assert!(
        out.contains("10.0.0.12 AS 64512 node-to-node mesh"),
        "{out}"
    );
    assert!(
        out.contains("10.244.1.0/26 from the file, blackholed, announced"),
        "{out}"
    );
}

#[test]
fn a_bad_config_names_the_field_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("tern-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "nodeName: n1\nnodeAddress: 10.0.0.11/24\nasNumber: 0\n",
    )
    .unwrap();
    let (code, out, err) = check(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("asNumber"), "{err}");
}
