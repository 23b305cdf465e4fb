//! The driver: builds the lab, runs every device at every prefix count, and prints the table.
//!
//! One run: the monitor starts listening, the device starts with a generated configuration and
//! connects to it, the injector starts once that session is up (at once for the floor, whose
//! session only exists end to end), and the run's time is the monitor's `done` instant minus the
//! injector's `start` instant. The device's peak memory is read from `/proc` a moment after,
//! then every process is stopped by its PID. Runs of different devices alternate, so a slow
//! drift of the machine spreads over all of them.

mod device;
mod lab;
mod process;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use device::{Device, Tools};
use lab::{
    DEVICE_AS, DEVICE_INJECTOR_SIDE, INJECTOR, INJECTOR_AS, INJECTOR_NS, Lab, MONITOR, MONITOR_AS,
    MONITOR_NS,
};
use process::{Process, Wait};
use report::{RunResult, Summary};

/// How long the device may take to bring up its session with the monitor.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after `done` the device's peak memory is read, so work still under way counts.
const SETTLE: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prefix counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    counts: Vec<u32>,
    /// Runs per device and count; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Devices to run, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,tern,bird,frr,gobgp"
    )]
    devices: Vec<Device>,
    /// Devices to leave out, comma separated.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<Device>,
    /// Seconds a run may take from the first UPDATE until the monitor holds every prefix.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// One device's own timeout, DEVICE=SECONDS (repeatable), such as gobgp=600.
    #[arg(long, value_parser = parse_device_timeout)]
    device_timeout: Vec<(Device, u64)>,
    /// Also write the table, as markdown, to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Keep the configurations and logs (their directory is printed).
    #[arg(long)]
    keep: bool,
}

fn parse_device_timeout(text: &str) -> anyhow::Result<(Device, u64)> {
    let Some((device, seconds)) = text.split_once('=') else {
        bail!("expected DEVICE=SECONDS");
    };
    let device = <Device as clap::ValueEnum>::from_str(device, true).map_err(anyhow::Error::msg)?;
    Ok((device, seconds.parse().context("bad seconds")?))
}

/// Runs the benchmark. Whatever happens, the namespaces are deleted and every process started is
/// stopped before this returns.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark builds network namespaces: run it as root");
    }
    let tools = Tools::find()?;
    let dir = std::env::temp_dir().join(format!("tern-bench.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut terminate = signal(SignalKind::terminate())?;
    let result = tokio::select! {
        result = bench(&args, &tools, &dir) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    if args.keep || !matches!(result, Ok(true)) {
        eprintln!("configurations and logs are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|_| ())
}

/// Runs everything; `Ok(true)` when every run completed.
async fn bench(args: &Args, tools: &Tools, dir: &Path) -> anyhow::Result<bool> {
    let devices: Vec<Device> = Device::ALL
        .into_iter()
        .filter(|d| args.devices.contains(d) && !args.skip.contains(d))
        .collect();
    let mut versions = Vec::new();
    let mut results: BTreeMap<(u32, Device), Vec<RunResult>> = BTreeMap::new();
    let mut runnable = Vec::new();
    for device in devices {
        match device.probe(tools) {
            Ok(version) => {
                versions.push(format!("{}: {version}", device.name()));
                runnable.push(device);
            }
            Err(reason) => {
                eprintln!("{}: {reason}", device.name());
                for &count in &args.counts {
                    results.insert((count, device), vec![RunResult::Failed(reason.clone())]);
                }
            }
        }
    }

    let lab = Lab::create()?;
    for &count in &args.counts {
        for run in 1..=args.runs {
            for &device in &runnable {
                let previous = results.entry((count, device)).or_default();
                if previous
                    .iter()
                    .any(|r| !matches!(r, RunResult::Done { .. }))
                {
                    continue;
                }
                let run_dir = dir.join(format!("{device:?}-{count}-{run}").to_lowercase());
                std::fs::create_dir_all(&run_dir)?;
                let timeout = args
                    .device_timeout
                    .iter()
                    .rev()
                    .find(|(d, _)| *d == device)
                    .map_or(args.timeout, |(_, seconds)| *seconds);
                let result = run_once(
                    &lab,
                    tools,
                    device,
                    count,
                    Duration::from_secs(timeout),
                    &run_dir,
                )
                .await
                .unwrap_or_else(|error| RunResult::Failed(format!("{error:#}")));
                eprintln!(
                    "{:>13} N={count:<8} run {run}/{}: {}",
                    device.name(),
                    args.runs,
                    describe(&result)
                );
                results.entry((count, device)).or_default().push(result);
            }
        }
    }
    drop(lab);

    let summaries: BTreeMap<(u32, Device), Summary> = results
        .iter()
        .map(|(key, runs)| (*key, Summary::of(runs)))
        .collect();
    let table = report::table(&summaries);
    println!("\n{table}");
    if let Some(path) = &args.markdown {
        let text = format!(
            "Devices: {}. Machine: {} CPUs, {}. {} run(s) each; median seconds from the first \
             UPDATE sent to the monitor holding all N prefixes; peak RSS is VmHWM.\n\n{table}",
            versions.join(", "),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel(),
            args.runs,
        );
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(results
        .values()
        .flatten()
        .all(|r| matches!(r, RunResult::Done { .. })))
}

/// One run of one device at one prefix count.
async fn run_once(
    lab: &Lab,
    tools: &Tools,
    device: Device,
    count: u32,
    timeout: Duration,
    dir: &Path,
) -> anyhow::Result<RunResult> {
    let bench = tools.tern_bench.to_string_lossy().into_owned();
    // Through the relay the monitor talks to the injector itself.
    let (monitor_peer_as, injector_peer_as) = match device {
        Device::Floor => (INJECTOR_AS, MONITOR_AS),
        _ => (DEVICE_AS, DEVICE_AS),
    };
    let mut monitor = lab.command(MONITOR_NS, &bench);
    monitor.args([
        "monitor",
        "--listen",
        &format!("{MONITOR}:179"),
        "--asn",
        &MONITOR_AS.to_string(),
        "--router-id",
        &MONITOR.to_string(),
        "--peer-asn",
        &monitor_peer_as.to_string(),
        "--count",
        &count.to_string(),
    ]);
    let mut monitor = Process::spawn("monitor", monitor, &dir.join("monitor.log"), true)?;
    expect(&mut monitor, "listening", Duration::from_secs(10)).await?;

    let mut dut = device.start(lab, tools, dir)?;
    if device == Device::Floor {
        expect(&mut dut, "listening", Duration::from_secs(10)).await?;
    } else {
        tokio::select! {
            result = expect(&mut monitor, "established", SESSION_TIMEOUT) => { result?; }
            exit = dut.exited() => bail!("{exit} (see {})", dir.display()),
        }
    }

    let mut injector = lab.command(INJECTOR_NS, &bench);
    injector.args([
        "inject",
        "--connect",
        &format!("{DEVICE_INJECTOR_SIDE}:179"),
        "--asn",
        &INJECTOR_AS.to_string(),
        "--router-id",
        &INJECTOR.to_string(),
        "--peer-asn",
        &injector_peer_as.to_string(),
        "--count",
        &count.to_string(),
    ]);
    let mut injector = Process::spawn("injector", injector, &dir.join("injector.log"), true)?;
    let start: u128 = expect(&mut injector, "start", SESSION_TIMEOUT)
        .await?
        .parse()
        .context("bad start time")?;

    let deadline = Instant::now() + timeout;
    let done = tokio::select! {
        done = monitor.wait_line("done", deadline) => done?,
        exit = dut.exited() => bail!("{exit} (see {})", dir.display()),
        exit = injector.exited() => bail!("{exit} (see {})", dir.display()),
    };
    let result = match done {
        Wait::Timeout => RunResult::Timeout,
        Wait::Line(end) => {
            let end: u128 = end.parse().context("bad done time")?;
            tokio::time::sleep(SETTLE).await;
            RunResult::Done {
                seconds: end.saturating_sub(start) as f64 / 1e9,
                rss_kib: dut.peak_rss_kib(),
            }
        }
    };
    injector.stop().await;
    monitor.stop().await;
    dut.stop().await;
    Ok(result)
}

/// Waits for `word` from `process`, failing after `timeout`.
async fn expect(process: &mut Process, word: &str, timeout: Duration) -> anyhow::Result<String> {
    match process.wait_line(word, Instant::now() + timeout).await? {
        Wait::Line(rest) => Ok(rest),
        Wait::Timeout => bail!("no {word:?} within {} s", timeout.as_secs()),
    }
}

fn describe(result: &RunResult) -> String {
    match result {
        RunResult::Done { seconds, rss_kib } => format!(
            "{seconds:.4} s, peak RSS {}",
            rss_kib.map_or("unknown".to_owned(), |k| format!(
                "{:.1} MiB",
                k as f64 / 1024.0
            ))
        ),
        RunResult::Timeout => "timeout".to_owned(),
        RunResult::Failed(reason) => format!("failed: {reason}"),
    }
}

/// Whether we run as root (effective UID 0), from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            uids.split_whitespace().nth(1).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("Linux {}", r.trim()))
        .unwrap_or_else(|_| "Linux".to_owned())
}
