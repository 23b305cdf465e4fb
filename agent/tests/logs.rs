//! ternd's log as operators read it: in `mesh3` (three ternd nodes, iBGP full mesh), the log
//! n1 writes to a file (as under `kubectl logs` or journald) holds no terminal escape sequences,
//! and each session's change to Established is logged once.

use std::path::Path;
use std::time::{Duration, Instant};

use tern_e2e::daemon::DaemonOptions;
use tern_e2e::lab::Lab;

#[test]
fn a_log_written_to_a_file_is_plain_text_with_each_state_change_once() {
    if !tern_e2e::require_root() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/mesh3.clab.yml");
    let options = DaemonOptions {
        start_ternd: true,
        ternd: env!("CARGO_BIN_EXE_ternd").into(),
    };
    let lab = Lab::up_with(&file, &options).unwrap();
    let log = lab.node_dir("n1").join("ternd.log");
    let established = |text: &str, peer: &str| {
        text.lines()
            .filter(|l| l.contains("Established") && l.contains(peer))
            .count()
    };
    let start = Instant::now();
    let mut text = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if established(&text, "10.0.0.12") > 0 && established(&text, "10.0.0.13") > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give a second log line for the same change time to appear.
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    lab.down().unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences in a log file:\n{text}"
    );
    for peer in ["10.0.0.12", "10.0.0.13"] {
        assert_eq!(
            established(&text, peer),
            1,
            "the change to Established of {peer} is logged once:\n{text}"
        );
    }
}
