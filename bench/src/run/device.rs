//! The devices under test and how each is configured and started: two eBGP neighbours, the
//! injector (passive) and the monitor (active), everything imported and exported, and nothing
//! written to the kernel.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;

use super::lab::{
    DEVICE_AS, DEVICE_INJECTOR_SIDE, DEVICE_MONITOR_SIDE, DEVICE_NS, INJECTOR, INJECTOR_AS, Lab,
    MONITOR, MONITOR_AS,
};
use super::process::Process;

const BIRD: &str = "bird";
const FRR_BGPD: &str = "/usr/lib/frr/bgpd";
const GOBGPD: &str = "gobgpd";

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Device {
    /// The harness's floor: a TCP relay that only forwards bytes.
    Floor,
    /// tern's speaker (`tern-speaker`).
    Tern,
    /// BIRD 2.
    Bird,
    /// FRR's bgpd alone, without zebra.
    Frr,
    /// GoBGP's gobgpd.
    Gobgp,
}

impl Device {
    /// Every device, in table order.
    pub const ALL: [Device; 5] = [
        Device::Floor,
        Device::Tern,
        Device::Bird,
        Device::Frr,
        Device::Gobgp,
    ];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Device::Floor => "floor (relay)",
            Device::Tern => "tern",
            Device::Bird => "BIRD",
            Device::Frr => "FRR",
            Device::Gobgp => "GoBGP",
        }
    }

    /// Whether it speaks BGP itself (everything but the floor).
    pub fn is_daemon(self) -> bool {
        self != Device::Floor
    }

    /// The program and its version, or why the device cannot run here.
    pub fn probe(self, tools: &Tools) -> Result<String, String> {
        let (program, args): (&str, &[&str]) = match self {
            Device::Floor => {
                return Ok(format!("tern-bench relay {}", env!("CARGO_PKG_VERSION")));
            }
            Device::Tern => {
                return if tools.tern_speaker.exists() {
                    Ok(format!("tern-speaker {}", env!("CARGO_PKG_VERSION")))
                } else {
                    Err(format!(
                        "{} not built (cargo build --release -p tern-bench)",
                        tools.tern_speaker.display()
                    ))
                };
            }
            Device::Bird => (BIRD, &["--version"]),
            Device::Frr => (FRR_BGPD, &["--version"]),
            Device::Gobgp => (GOBGPD, &["--version"]),
        };
        let output = std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("{program} not installed ({error})"))?;
        // BIRD prints its version on stderr, the others on stdout.
        let text = [output.stdout, output.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        Ok(text.lines().next().unwrap_or(program).trim().to_owned())
    }

    /// Writes the configuration into `dir` and starts the device in the device namespace.
    pub fn start(self, lab: &Lab, tools: &Tools, dir: &Path) -> anyhow::Result<Process> {
        let log = dir.join(format!("{self:?}.log").to_lowercase());
        let command = match self {
            Device::Floor => {
                let mut command = lab.command(DEVICE_NS, &tools.tern_bench.to_string_lossy());
                command.args([
                    "relay",
                    "--listen",
                    &format!("{DEVICE_INJECTOR_SIDE}:179"),
                    "--connect",
                    &format!("{MONITOR}:179"),
                ]);
                command
            }
            Device::Tern => {
                let mut command = lab.command(DEVICE_NS, &tools.tern_speaker.to_string_lossy());
                command.args([
                    "--asn",
                    &DEVICE_AS.to_string(),
                    "--router-id",
                    &DEVICE_INJECTOR_SIDE.to_string(),
                    "--listen",
                    &format!("{DEVICE_INJECTOR_SIDE}:179"),
                    "--listen",
                    &format!("{DEVICE_MONITOR_SIDE}:179"),
                    "--peer",
                    &format!("{INJECTOR},{INJECTOR_AS},passive"),
                    "--peer",
                    &format!("{MONITOR},{MONITOR_AS}"),
                ]);
                command
            }
            Device::Bird => {
                let config = dir.join("bird.conf");
                write(&config, &bird_config())?;
                let mut command = lab.command(DEVICE_NS, BIRD);
                command
                    .arg("-f")
                    .arg("-c")
                    .arg(&config)
                    .arg("-s")
                    .arg(dir.join("bird.ctl"))
                    .arg("-P")
                    .arg(dir.join("bird.pid"));
                command
            }
            Device::Frr => {
                let config = dir.join("bgpd.conf");
                write(&config, &frr_config())?;
                let mut command = lab.command(DEVICE_NS, FRR_BGPD);
                // -Z: no zebra, so no kernel routes; -S: stay root, no capability games;
                // -P 0: no vty TCP port; the vty socket and pid file stay in our directory.
                command
                    .args(["-Z", "-S", "-P", "0", "-p", "179"])
                    .arg("-f")
                    .arg(&config)
                    .arg("-i")
                    .arg(dir.join("bgpd.pid"))
                    .arg("--vty_socket")
                    .arg(dir);
                command
            }
            Device::Gobgp => {
                let config = dir.join("gobgpd.toml");
                write(&config, &gobgp_config())?;
                let mut command = lab.command(DEVICE_NS, GOBGPD);
                command.arg("-f").arg(&config).args([
                    "-t",
                    "toml",
                    "--api-hosts",
                    "127.0.0.1:50051",
                    "--pprof-disable",
                    "-l",
                    "warn",
                    "-p",
                ]);
                command
            }
        };
        Process::spawn(self.name(), command, &log, self == Device::Floor)
    }
}

/// Where the harness's own programs are.
#[derive(Debug)]
pub struct Tools {
    /// This program (the injector, monitor and relay).
    pub tern_bench: PathBuf,
    /// tern's speaker, built beside it.
    pub tern_speaker: PathBuf,
}

impl Tools {
    /// Finds the programs beside the running one. Under `cargo run`, which builds only the binary
    /// it runs, a missing `tern-speaker` is built first with the same profile.
    pub fn find() -> anyhow::Result<Tools> {
        let tern_bench = std::env::current_exe().context("cannot find our own program")?;
        let tern_speaker = tern_bench.with_file_name("tern-speaker");
        if !tern_speaker.exists()
            && let Some(cargo) = std::env::var_os("CARGO")
        {
            let release = tern_bench
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|profile| profile == "release");
            let mut build = std::process::Command::new(cargo);
            build.args(["build", "-p", "tern-bench", "--bin", "tern-speaker"]);
            if release {
                build.arg("--release");
            }
            eprintln!("building tern-speaker");
            let status = build.status().context("cannot run cargo")?;
            anyhow::ensure!(status.success(), "cargo could not build tern-speaker");
        }
        Ok(Tools {
            tern_bench,
            tern_speaker,
        })
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// BIRD 2: the device protocol (it only reads interfaces, so BIRD knows the neighbours are on
/// link) and two eBGP sessions; no kernel protocol.
fn bird_config() -> String {
    format!(
        "router id {DEVICE_INJECTOR_SIDE};
log stderr {{ warning, error, fatal }};
protocol device {{ }}
protocol bgp injector {{
  local {DEVICE_INJECTOR_SIDE} as {DEVICE_AS};
  neighbor {INJECTOR} as {INJECTOR_AS};
  passive on;
  ipv4 {{ import all; export all; }};
}}
protocol bgp monitor {{
  local {DEVICE_MONITOR_SIDE} as {DEVICE_AS};
  neighbor {MONITOR} as {MONITOR_AS};
  connect delay time 1;
  ipv4 {{ import all; export all; }};
}}
"
    )
}

/// FRR 8: bgpd alone; no policy required on eBGP, no import check.
fn frr_config() -> String {
    format!(
        "hostname tern-bench-dut
log stdout errors
!
router bgp {DEVICE_AS}
 bgp router-id {DEVICE_INJECTOR_SIDE}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {INJECTOR} remote-as {INJECTOR_AS}
 neighbor {INJECTOR} passive
 neighbor {MONITOR} remote-as {MONITOR_AS}
 neighbor {MONITOR} timers connect 1
 !
 address-family ipv4 unicast
  neighbor {INJECTOR} activate
  neighbor {MONITOR} activate
 exit-address-family
!
"
    )
}

/// GoBGP: two neighbours, IPv4 unicast, the default accept-all policies; gRPC on loopback inside
/// the namespace.
fn gobgp_config() -> String {
    format!(
        "[global.config]
  as = {DEVICE_AS}
  router-id = \"{DEVICE_INJECTOR_SIDE}\"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{INJECTOR}\"
    peer-as = {INJECTOR_AS}
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"

[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{MONITOR}\"
    peer-as = {MONITOR_AS}
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
"
    )
}
