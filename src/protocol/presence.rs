//! The retained presence message: whether an agent is online, since when,
//! and which instance.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The retained presence message an agent publishes on `<node>/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Presence {
    /// `online` or `offline`.
    pub status: String,
    /// Agent version.
    pub version: String,
    /// Unix time (seconds) of the change.
    pub since: u64,
    /// Random id of this agent process: a different instance means the
    /// agent restarted and its sessions are gone.
    pub instance: String,
    /// Sessions open when this was published (online messages only; the
    /// agent re-announces when the count changes, at most once a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
    /// The frame protocol version the agent speaks (`protocol::VERSION`); agents
    /// of version 1 did not say. A client reads it before it opens, so a
    /// mismatch fails at once, naming both versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// From an agent with an agent password: an HMAC under it of the node,
    /// the status, `since` and the instance (hex). Another agent of the
    /// same node honours an "online" only with a valid one
    /// (`handshake::presence_proof`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

impl Presence {
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }

    /// The agent's protocol version (1 when it did not say).
    pub fn protocol(&self) -> u8 {
        self.protocol.unwrap_or(1)
    }
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("presence serializes"))
    }
    pub fn decode(b: &[u8]) -> Option<Presence> {
        serde_json::from_slice(b).ok()
    }
}
