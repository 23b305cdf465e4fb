//! The results table: per device and prefix count, the median time, the time above the floor,
//! the peak resident memory, and ratios against the fastest other daemon and BIRD's memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::device::Device;

/// How one run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    /// The monitor held every prefix this many seconds after the first UPDATE; the device peaked
    /// at this many KiB.
    Done {
        /// Seconds from the first UPDATE octet to the monitor holding all prefixes.
        seconds: f64,
        /// Peak resident memory of the device, KiB.
        rss_kib: Option<u64>,
    },
    /// The monitor did not hold every prefix in time.
    Timeout,
    /// Something broke; the reason.
    Failed(String),
}

/// What the table says for one device and prefix count.
#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    /// Every run completed.
    Measured {
        /// Each run's seconds, in run order.
        runs: Vec<f64>,
        /// Their median.
        median: f64,
        /// The median of the runs' peak memory, KiB.
        rss_kib: Option<u64>,
    },
    /// A run timed out.
    Timeout,
    /// A run failed, or the device cannot run here.
    Failed(String),
}

impl Summary {
    /// Sums up a device's runs at one prefix count.
    pub fn of(results: &[RunResult]) -> Summary {
        let mut runs = Vec::new();
        let mut memory = Vec::new();
        for result in results {
            match result {
                RunResult::Done { seconds, rss_kib } => {
                    runs.push(*seconds);
                    memory.extend(rss_kib);
                }
                RunResult::Timeout => return Summary::Timeout,
                RunResult::Failed(reason) => return Summary::Failed(reason.clone()),
            }
        }
        let Some(median) = median(&runs) else {
            return Summary::Failed("no runs".to_owned());
        };
        memory.sort_unstable();
        let rss_kib = memory.get(memory.len().saturating_sub(1) / 2).copied();
        Summary::Measured {
            runs,
            median,
            rss_kib,
        }
    }

    fn median(&self) -> Option<f64> {
        match self {
            Summary::Measured { median, .. } => Some(*median),
            _ => None,
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        match self {
            Summary::Measured { rss_kib, .. } => *rss_kib,
            _ => None,
        }
    }
}

/// The median; the lower middle value for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// Renders the table as markdown.
pub fn table(results: &BTreeMap<(u32, Device), Summary>) -> String {
    let mut out = String::new();
    out.push_str(
        "| Device | N | Median (s) | Above floor (s) | Peak RSS (MiB) | Time vs fastest other \
         daemon | RSS vs BIRD | Runs (s) |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---|---:|---|\n");
    for (&(count, device), summary) in results {
        let at = |other: Device| results.get(&(count, other));
        let floor = at(Device::Floor).and_then(Summary::median);
        let cells = match summary {
            Summary::Measured {
                runs,
                median,
                rss_kib,
            } => {
                let above = match floor {
                    Some(floor) if device.is_daemon() => format!("{:.4}", median - floor),
                    _ => "–".to_owned(),
                };
                let rss = rss_kib.map_or("–".to_owned(), |kib| format!("{:.1}", mib(kib)));
                let fastest = Device::ALL
                    .into_iter()
                    .filter(|d| d.is_daemon() && *d != device)
                    .filter_map(|d| Some((at(d)?.median()?, d)))
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                let versus_fastest = match fastest {
                    Some((other, name)) if device.is_daemon() => {
                        format!("{:.2}× ({})", median / other, name.name())
                    }
                    _ => "–".to_owned(),
                };
                let bird_rss = at(Device::Bird).and_then(Summary::rss_kib);
                let versus_bird = match (rss_kib, bird_rss) {
                    (Some(own), Some(bird)) if device.is_daemon() && bird > 0 => {
                        format!("{:.2}×", *own as f64 / bird as f64)
                    }
                    _ => "–".to_owned(),
                };
                let runs: Vec<String> = runs.iter().map(|s| format!("{s:.4}")).collect();
                [
                    format!("{median:.4}"),
                    above,
                    rss,
                    versus_fastest,
                    versus_bird,
                    runs.join(", "),
                ]
            }
            Summary::Timeout => blank("timeout"),
            Summary::Failed(reason) => blank(&format!("failed: {}", reason.replace('|', "/"))),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            device.name(),
            thousands(count),
            cells.join(" | ")
        );
    }
    out
}

fn blank(what: &str) -> [String; 6] {
    [
        what.to_owned(),
        "–".to_owned(),
        "–".to_owned(),
        "–".to_owned(),
        "–".to_owned(),
        "–".to_owned(),
    ]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// 1000000 as 1,000,000.
fn thousands(value: u32) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(seconds: f64, mib: u64) -> RunResult {
        RunResult::Done {
            seconds,
            rss_kib: Some(mib * 1024),
        }
    }

    #[test]
    fn the_median_of_three_runs_is_the_middle_one() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn one_timeout_makes_the_whole_entry_a_timeout() {
        assert_eq!(
            Summary::of(&[done(1.0, 10), RunResult::Timeout]),
            Summary::Timeout
        );
    }

    #[test]
    fn the_table_gives_time_above_the_floor_and_ratios_against_the_others() {
        let mut results = BTreeMap::new();
        results.insert((1000, Device::Floor), Summary::of(&[done(0.1, 5)]));
        results.insert((1000, Device::Tern), Summary::of(&[done(0.5, 50)]));
        results.insert((1000, Device::Bird), Summary::of(&[done(1.0, 100)]));
        results.insert((1000, Device::Gobgp), Summary::of(&[RunResult::Timeout]));
        let table = table(&results);
        assert!(table.contains("| tern | 1,000 | 0.5000 | 0.4000 | 50.0 | 0.50× (BIRD) | 0.50× |"));
        assert!(
            table.contains("| BIRD | 1,000 | 1.0000 | 0.9000 | 100.0 | 2.00× (tern) | 1.00× |")
        );
        assert!(table.contains("| GoBGP | 1,000 | timeout |"));
    }
}
