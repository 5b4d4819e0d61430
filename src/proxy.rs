//! `mqtt-proxy <node>`: opens a session on a node's agent and carries it on
//! stdin/stdout, for OpenSSH's ProxyCommand.
//!
//! - `args`: the command line and the validated settings.
//! - `opening`: the opening handshake, decided without I/O.
//! - `session`: the session run: the broker connection, the driver of the
//!   opening, then the tunnel on stdin/stdout.

mod args;
mod opening;
mod session;

pub use args::{ProxyArgs, ProxyConfig};
pub use session::run;

use crate::mqtt;

/// Why the proxy failed; `Display` is the one line the user reads.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Broker(String),
    #[error(transparent)]
    TaskEnded(#[from] mqtt::TaskEnded),
    /// The node's presence says offline.
    #[error("node '{0}' is offline")]
    Offline(String),
    /// No presence at all: the node never announced itself on this broker
    /// (a typo, another broker or another topic prefix).
    #[error(
        "no node '{node}' on broker {broker} (never announced; mqtt-proxy --list shows the nodes)"
    )]
    Unknown { node: String, broker: String },
    #[error("node '{node}' refused: {reason}")]
    Refused { node: String, reason: String },
    #[error("node '{0}' did not answer")]
    NoAnswer(String),
    #[error("broker refused subscription to {0} (check the ACL for this user)")]
    Denied(String),
    #[error("node '{0}' reset the session")]
    Reset(String),
    #[error("node '{0}' went offline")]
    WentOffline(String),
    #[error("lost contact with node '{node}' for {secs} s")]
    LostContact { node: String, secs: u64 },
    #[error("node '{0}' restarted; the session is lost")]
    Restarted(String),
    #[error("{0}")]
    Local(String),
    /// ssh hung up on us (it does so when it exits): nobody is listening,
    /// so nothing is printed.
    #[error("interrupted")]
    Interrupted,
}
