//! Asking a node's daemon anything, its output as text: vtysh, birdc, gobgp.

use crate::error::Result;
use crate::lab::Lab;
use crate::netns;

// ---------------------------------------------------------------------------------------------
// Asking a daemon.
// ---------------------------------------------------------------------------------------------

/// Runs a command in `node` and returns its stdout whatever its exit status (the daemons'
/// clients print their complaints there, and a test matches on them).
pub(super) fn output_of<S: AsRef<str>>(
    lab: &Lab,
    node: &str,
    argv: &[S],
) -> Result<(String, String)> {
    let out = netns::output(&mut lab.command(node, argv)?)?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `vtysh -c COMMAND` against `node`'s FRR: its output.
pub fn vtysh(lab: &Lab, node: &str, command: &str) -> Result<String> {
    Ok(output_of(lab, node, &["vtysh", "-c", command])?.0)
}

/// `birdc COMMAND` against `node`'s BIRD (the command's words as birdc's arguments): its output.
pub fn birdc(lab: &Lab, node: &str, command: &str) -> Result<String> {
    let mut argv = vec!["birdc"];
    argv.extend(command.split_whitespace());
    Ok(output_of(lab, node, &argv)?.0)
}

/// `gobgp ARGS` against `node`'s GoBGP (its API listens on the node's own loopback): stdout and
/// stderr together.
pub fn gobgp(lab: &Lab, node: &str, args: &str) -> Result<String> {
    let mut argv = vec!["gobgp"];
    argv.extend(args.split_whitespace());
    let (stdout, stderr) = output_of(lab, node, &argv)?;
    Ok(stdout + &stderr)
}
