//! Why `mqtt-proxy` failed: each variant's `Display` is the one line the
//! user reads (the binary puts `mqtt-proxy: ` in front).

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
    /// With a list of brokers: on none is the node online; `tried` says
    /// what each said.
    #[error("node '{node}' is not online on any broker: {tried}")]
    NotOnline { node: String, tried: String },
    #[error("node '{node}' refused: {reason}")]
    Refused { node: String, reason: String },
    #[error("node '{0}' did not answer")]
    NoAnswer(String),
    #[error("broker refused subscription to {0} (check the ACL for this user)")]
    Denied(String),
    #[error("node '{0}' reset the session")]
    Reset(String),
    /// The agent ended the session and said why (`access revoked`).
    #[error("{node}: {reason}")]
    Closed { node: String, reason: String },
    /// The agent refused our ssh keys: `reason` is its reason, with what we
    /// offered when it is that none is authorized.
    #[error("{node} refused the session: {reason}")]
    AccessRefused { node: String, reason: String },
    /// The agent asks for ssh keys and we have none to offer.
    #[error("{node} refused the session: it asks for an ssh key and {why}")]
    NoIdentity { node: String, why: String },
    #[error("node '{0}' went offline")]
    WentOffline(String),
    #[error("lost contact with node '{node}' for {secs} s")]
    LostContact { node: String, secs: u64 },
    #[error("node '{0}' restarted; the session is lost")]
    Restarted(String),
    /// The agent speaks another frame protocol version (from its presence).
    #[error("node '{node}' runs an agent of protocol {agent} and this mqtt-proxy speaks protocol {}: {}", crate::protocol::VERSION, if *agent < crate::protocol::VERSION { "upgrade the agent" } else { "upgrade mqtt-proxy" })]
    Protocol { node: String, agent: u8 },
    /// The ACCEPT's key confirmation failed: someone else answered.
    #[error("node '{0}' answered with keys that do not match (someone else on the broker answering for it?)")]
    KeyCheck(String),
    /// We have an agent password and the agent accepted without asking.
    #[error("node '{0}' did not ask for the agent password, so it could not prove it knows it (its agent has none set?)")]
    NoChallenge(String),
    #[error("{0}")]
    Local(String),
    /// ssh hung up on us (it does so when it exits): nobody is listening,
    /// so nothing is printed.
    #[error("interrupted")]
    Interrupted,
}
