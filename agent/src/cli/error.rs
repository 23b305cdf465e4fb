//! Why a ternctl command failed. Each error prints as the one line ternctl writes on stderr
//! before it exits with 1.

use std::path::PathBuf;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The async runtime could not start.
    #[error("ternctl: cannot start: {0}")]
    Runtime(#[source] std::io::Error),
    /// ternd answered with an error (or the call broke off).
    #[error("{} ({})", .0.message(), words(&format!("{:?}", .0.code())))]
    Status(Box<tonic::Status>),
    /// Nothing answers on the socket: ternd is not running (or the socket is stale).
    #[error("ternd is not running: cannot connect to {}: {source}", path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// Why the connection failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The socket is there, but we may not use it.
    #[error(
        "cannot connect to ternd at {}: {source} (the socket is for root only)",
        path.display()
    )]
    PermissionDenied {
        /// The socket.
        path: PathBuf,
        /// The refusal.
        #[source]
        source: std::io::Error,
    },
    /// ternd could not be reached over TCP with TLS.
    #[error("cannot connect to ternd at {address}: {}", chain(error))]
    Connect {
        /// `--address`.
        address: String,
        /// Why, printed with its whole chain of causes.
        error: tonic::transport::Error,
    },
    /// A file named on the command line could not be read.
    #[error("ternctl: {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--address` is not a URI.
    #[error("ternctl: --address {address:?}: {source}")]
    Address {
        /// What was given.
        address: String,
        /// Why it was refused.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS settings were refused.
    #[error("ternctl: TLS: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// `peers add` without `--as`.
    #[error("ternctl: peers add needs --as ASN")]
    MissingAsn,
    /// A peer address that is not an IP address.
    #[error("ternctl: {0:?} is not an IP address")]
    NotAnAddress(String),
    /// `peers update` of a peer ternd does not have.
    #[error("no peer {0} (not found)")]
    NoPeer(String),
    /// The watch stream ended: ternd stopped.
    #[error("ternd closed the watch stream (it stopped)")]
    WatchClosed,
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        Error::Status(Box::new(status))
    }
}

/// `FailedPrecondition` as `failed precondition`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// An error followed by each of its causes, separated by `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_read_as_words() {
        assert_eq!(words("FailedPrecondition"), "failed precondition");
        assert_eq!(words("NotFound"), "not found");
    }
}
