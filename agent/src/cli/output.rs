//! Rendering: a value as JSON or YAML, or as text in calicoctl's style (bordered tables), plus
//! the words and times every command prints alike.

use std::time::{Duration, SystemTime};

use clap::ValueEnum;
use serde::Serialize;
use tern_proto::v1 as pb;

/// The `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML, or `table` for the table format.
pub(super) fn print(output: Output, value: &impl Serialize, table: impl FnOnce() -> String) {
    match output {
        Output::Table => print!("{}", table()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => print!("{}", serde_yaml::to_string(value).unwrap_or_default()),
    }
}

// ---- Protobuf enums in words. ----

/// A family as ternctl prints it.
pub(super) fn family_name(value: i32) -> &'static str {
    match pb::AddressFamily::try_from(value) {
        Ok(pb::AddressFamily::Ipv4Unicast) => "ipv4-unicast",
        Ok(pb::AddressFamily::Ipv6Unicast) => "ipv6-unicast",
        _ => "unknown",
    }
}

/// A session state as ternctl prints it (RFC 4271 names).
pub(super) fn state_name(value: i32) -> &'static str {
    match pb::SessionState::try_from(value) {
        Ok(pb::SessionState::Idle) => "Idle",
        Ok(pb::SessionState::Connect) => "Connect",
        Ok(pb::SessionState::Active) => "Active",
        Ok(pb::SessionState::OpenSent) => "OpenSent",
        Ok(pb::SessionState::OpenConfirm) => "OpenConfirm",
        Ok(pb::SessionState::Established) => "Established",
        _ => "Unknown",
    }
}
/// A protobuf timestamp as a time; none for a missing or pre-1970 one.
pub(super) fn system_time(timestamp: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let t = timestamp?;
    let seconds = u64::try_from(t.seconds).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, t.nanos.max(0) as u32))
}

// ---- Time, without a calendar crate: UTC. ----

/// (year, month, day, hour, minute, second) in UTC.
fn civil(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rest / 3600) as u32,
        (rest % 3600 / 60) as u32,
        (rest % 60) as u32,
    )
}

/// A time as RFC 3339 in UTC, to the second.
pub(super) fn rfc3339(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// BIRD's (and so calicoctl's) SINCE: the time of day when it is today, the date otherwise.
pub(super) fn since(time: SystemTime, now: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(time);
    let (ny, nmo, nd, ..) = civil(now);
    if (y, mo, d) == (ny, nmo, nd) {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02}")
    }
}

/// A duration in at most its two largest units (`3d4h`, `5m2s`).
pub(super) fn uptime(duration: Duration) -> String {
    let s = duration.as_secs();
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m{s}s"),
        (0, h, m, _) => format!("{h}h{m}m"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

// ---- Tables in calicoctl's style. ----

/// A table with a border, headers centred and cells left-aligned, as calicoctl prints them.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = line.clone();
    for (header, width) in headers.iter().zip(&widths) {
        let pad = width - header.chars().count();
        let left = pad / 2;
        out.push_str(&format!(
            "| {}{}{} ",
            " ".repeat(left),
            header,
            " ".repeat(pad - left)
        ));
    }
    out.push_str("|\n");
    out.push_str(&line);
    for row in rows {
        for (cell, width) in row.iter().zip(&widths) {
            out.push_str(&format!(
                "| {cell}{} ",
                " ".repeat(width - cell.chars().count())
            ));
        }
        out.push_str("|\n");
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_centres_headers_and_left_aligns_cells_as_calicoctl_does() {
        let rows = vec![vec![
            "10.0.5.12".to_owned(),
            "node-to-node mesh".to_owned(),
            "up".to_owned(),
            "2026-11-29".to_owned(),
            "Established".to_owned(),
        ]];
        let text = table(
            &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
            &rows,
        );
        assert_eq!(
            text,
            "\
+--------------+-------------------+-------+------------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |    INFO     |
+--------------+-------------------+-------+------------+-------------+
| 10.0.5.12    | node-to-node mesh | up    | 2026-11-29 | Established |
+--------------+-------------------+-------+------------+-------------+
"
        );
    }

    #[test]
    fn dates_are_civil_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_910_400 + 3723);
        assert_eq!(rfc3339(t), "2026-11-29T01:02:03Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn since_is_a_time_today_and_a_date_before() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_910_400 + 7200);
        assert_eq!(since(now - Duration::from_secs(60), now), "01:59:00");
        assert_eq!(since(now - Duration::from_secs(86_400), now), "2026-11-28");
    }
}
