//! Pings from a node or pod with a deadline, and in the background: Pinger.

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::daemon;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::netns;

// ---------------------------------------------------------------------------------------------
// Ping.
// ---------------------------------------------------------------------------------------------

/// What a ping run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReport {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
}

impl PingReport {
    /// Requests that got no reply.
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// Pings `destination` from `target` (a node or `node/pod`): `count` echo requests 200 ms apart,
/// stopping at `deadline` whatever happened; returns how many were answered.
pub fn ping(
    lab: &Lab,
    target: &str,
    destination: IpAddr,
    count: u32,
    deadline: Duration,
) -> Result<PingReport> {
    if daemon::find_program("ping").is_none() {
        return Err(Error::Missing {
            program: "ping".into(),
            why: "ping checks need it".into(),
            package: "iputils-ping".into(),
        });
    }
    let ns = lab.netns(target)?;
    let family = if destination.is_ipv6() { "-6" } else { "-4" };
    let argv = [
        "ping".to_string(),
        family.to_string(),
        "-n".into(),
        "-q".into(),
        "-c".into(),
        count.to_string(),
        "-i".into(),
        "0.2".into(),
        "-W".into(),
        "1".into(),
        "-w".into(),
        deadline.as_secs().max(1).to_string(),
        destination.to_string(),
    ];
    let mut command = netns::exec_command(&ns, &argv);
    let out = netns::output(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_ping(&text).ok_or_else(|| netns::failure(&command, &out))
}

/// A ping running in the background: an echo request every `interval` for `seconds` seconds,
/// from a node or pod, while the test does something else (restarts a daemon). Dropping it
/// unfinished kills the ping.
#[derive(Debug)]
pub struct Pinger {
    child: Option<Child>,
    command: String,
}

impl Pinger {
    /// Starts `ping -n -q -i INTERVAL -w SECONDS DESTINATION` in `target`.
    pub fn start(
        lab: &Lab,
        target: &str,
        destination: IpAddr,
        interval: Duration,
        seconds: u32,
    ) -> Result<Pinger> {
        let ns = lab.netns(target)?;
        let argv = [
            "ping".to_string(),
            "-n".into(),
            "-q".into(),
            "-i".into(),
            interval.as_secs_f64().to_string(),
            "-w".into(),
            seconds.to_string(),
            destination.to_string(),
        ];
        let mut command = netns::exec_command(&ns, &argv);
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let line = netns::command_line(&command);
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: line.clone(),
            source,
        })?;
        Ok(Pinger {
            child: Some(child),
            command: line,
        })
    }

    /// Waits for the ping to end and returns how many echo requests were sent and answered.
    pub fn finish(mut self) -> Result<PingReport> {
        let child = self.child.take().expect("finished once");
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            command: self.command.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping(&text).ok_or_else(|| Error::Parse {
            command: self.command.clone(),
            what: format!("no ping summary in {text:?}"),
        })
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `N packets transmitted, M received` from ping's summary.
pub(super) fn parse_ping(text: &str) -> Option<PingReport> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
    Some(PingReport {
        transmitted: numbers.next()?,
        received: numbers.next()?,
    })
}
