//! `mqtt-proxy <node>`: opens a session on a node's agent and carries it on
//! stdin/stdout, for OpenSSH's ProxyCommand.
//!
//! - `args`: the command line and the validated settings.
//! - `choice`: with a list of brokers, which one a session uses, decided
//!   without I/O from the node's presence on each; `lookup` asks them.
//! - `error`: why it failed, in the one line the user reads.
//! - `opening`: the opening handshake, decided without I/O.
//! - `session`: the session run: the broker connection, the driver of the
//!   opening, then the tunnel on stdin/stdout.

mod args;
mod choice;
mod error;
mod keys;
mod lookup;
mod opening;
mod session;

pub use args::{ProxyArgs, ProxyConfig};
pub use error::ProxyError;
pub use session::run;

/// What every line `mqtt-proxy` writes to stderr starts with: under ssh,
/// ours are mixed with ssh's own.
pub const PREFIX: &str = "mqtt-proxy";
