//! What a listing decides, without I/O: which messages a pass counts, when
//! a pass is over, when passes make a complete listing, and whether a node
//! may be (and was) forgotten.
//!
//! [`Collecting`] takes the messages and silences of one pass and says
//! whether to wait, send another marker or give up; [`Passes`] takes
//! finished passes and says whether the listing is complete; [`may_forget`]
//! and [`forgotten`] judge `--forget`. `list::broker` carries the decisions
//! out over MQTT, so every rule is a unit test here (`pass/tests.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use crate::mqtt::Message;
use crate::protocol::Presence;

/// Longest silence while waiting for a pass's marker. Retained messages
/// stream without pauses, so after this much silence the marker was lost:
/// dropped with other messages by a broker whose queue for us was full (a
/// new one then gets through), or forbidden by the ACL (none ever does).
pub(super) const MARKER_SILENCE: Duration = Duration::from_secs(1);
/// Markers sent per pass before concluding the ACL forbids them.
const MARKER_TRIES: u32 = 3;
/// Passes before giving up on two that agree: a broker that drops messages
/// for us in several passes does so in every one (too little room for the
/// listing in its queue for us, or a link too slow to empty it in time).
const MAX_PASSES: u32 = 4;
/// Longest a whole listing may take (100,000 nodes take a few seconds).
pub(super) const LIST_MAX: Duration = Duration::from_secs(60);

/// Why a listing or `--forget` failed: never a shorter list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ListError {
    #[error(
        "could not list the nodes completely: the broker dropped presence messages in \
         {MAX_PASSES} attempts (about {most} nodes; see \"Broker notes\" in docs/brokers.md)"
    )]
    PassesDiffer { most: usize },
    #[error(
        "could not list the nodes completely: no end in sight after {} s \
         (presence messages keep changing)",
        LIST_MAX.as_secs()
    )]
    NoEndInSight,
    #[error(
        "could not list the nodes completely: the broker did not deliver our \
         end marker on {marker_topic} (check the ACL for this user)"
    )]
    MarkerLost { marker_topic: String },
    #[error("could not forget node '{node}': the broker has no presence message for it")]
    UnknownNode { node: String },
    #[error("could not forget node '{node}': it is online (stop its agent first)")]
    Online { node: String },
    #[error("could not forget node '{node}': its agent announced itself again meanwhile")]
    AnnouncedAgain { node: String },
    #[error(
        "could not forget node '{node}': the broker did not remove its presence \
         (check the ACL for this user)"
    )]
    NotRemoved { node: String },
}

/// One row of the listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Node {
    pub node: String,
    pub status: String,
    pub version: String,
    pub since: u64,
    pub instance: String,
    /// Open sessions, if the agent is online and announces them.
    pub sessions: Option<u32>,
    /// With a list of brokers: the broker this row comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
}

impl Node {
    pub(super) fn is_online(&self) -> bool {
        self.status == "online"
    }
}

/// Where a listing's end markers go: a level no node id can be (`$` is not
/// allowed in one), under the client id so an ACL can confine it (`%c`).
pub fn marker_topic(prefix: &str, client_id: &str) -> String {
    format!("{prefix}/$list/{client_id}")
}

/// Pass `number`'s marker; `nonce` is random, so no other client's message
/// can pass for it.
pub(super) fn marker_payload(number: u32, nonce: u64) -> Bytes {
    Bytes::from(format!("end of pass {number} {nonce:016x}"))
}

/// What one pass saw.
#[derive(Debug, Default)]
pub(super) struct Pass {
    /// The latest state of each node, in the order messages arrived.
    pub(super) nodes: BTreeMap<String, Node>,
    /// Nodes whose retained message this pass delivered.
    pub(super) retained: BTreeSet<String>,
    /// Nodes that changed during the pass (a live message arrived).
    pub(super) live: BTreeSet<String>,
}

impl Pass {
    fn apply(&mut self, prefix: &str, p: &Message) {
        let Some(node) = p
            .topic
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_suffix("/presence"))
        else {
            tracing::debug!(topic = %p.topic, "ignored message outside the presence topics");
            return;
        };
        // MQTT 3.1.1 §3.3.1.3: the retain flag is set exactly on the
        // messages sent because of a new subscription.
        if p.retain {
            self.retained.insert(node.to_owned());
        } else {
            self.live.insert(node.to_owned());
        }
        if p.payload.is_empty() {
            // The node's presence was removed (`--forget`).
            self.nodes.remove(node);
            return;
        }
        let Some(pr) = Presence::decode(&p.payload) else {
            tracing::debug!(topic = %p.topic, "ignored malformed presence message");
            return;
        };
        let sessions = pr.sessions.filter(|_| pr.is_online());
        self.nodes.insert(
            node.to_owned(),
            Node {
                node: node.to_owned(),
                status: pr.status,
                version: pr.version,
                since: pr.since,
                instance: pr.instance,
                sessions,
                broker: None,
            },
        );
    }

    /// How many nodes one of two consecutive passes delivered and the other
    /// did not, apart from those that changed meanwhile (a node that
    /// appeared or was removed between them). `None`: they agree.
    fn disagreement(&self, next: &Pass) -> Option<usize> {
        let differ = self
            .retained
            .symmetric_difference(&next.retained)
            .filter(|n| !self.live.contains(*n) && !next.live.contains(*n))
            .count();
        (differ > 0).then_some(differ)
    }
}

/// What to do after a silence while a pass waits for its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OnSilence {
    /// Publish the marker again (it was lost) and keep waiting.
    Resend,
    /// Give up on the listing.
    Fail(ListError),
}

/// A pass in progress: what arrives until our marker comes back. The first
/// marker is sent as it starts.
#[derive(Debug)]
pub(super) struct Collecting {
    prefix: String,
    marker_topic: String,
    marker: Bytes,
    /// Markers sent so far in this pass.
    tries: u32,
    pass: Pass,
}

impl Collecting {
    pub(super) fn new(prefix: &str, marker_topic: &str, marker: Bytes) -> Collecting {
        Collecting {
            prefix: prefix.to_owned(),
            marker_topic: marker_topic.to_owned(),
            marker,
            tries: 1,
            pass: Pass::default(),
        }
    }

    /// The payload this pass waits for.
    pub(super) fn marker(&self) -> &Bytes {
        &self.marker
    }

    /// Takes one message; true when it is this pass's marker (the pass is
    /// over). An earlier pass's marker is ignored.
    pub(super) fn on_message(&mut self, p: &Message) -> bool {
        if p.topic == self.marker_topic {
            return p.payload == self.marker;
        }
        self.pass.apply(&self.prefix, p);
        false
    }

    /// The marker has not come back after [`MARKER_SILENCE`] of silence, or
    /// the listing's `deadline` came.
    pub(super) fn on_silence(&mut self, now: Instant, deadline: Instant) -> OnSilence {
        if now >= deadline {
            return OnSilence::Fail(ListError::NoEndInSight);
        }
        if self.tries < MARKER_TRIES {
            self.tries += 1;
            return OnSilence::Resend;
        }
        OnSilence::Fail(ListError::MarkerLost {
            marker_topic: self.marker_topic.clone(),
        })
    }

    /// Markers sent so far (for logs).
    pub(super) fn tries(&self) -> u32 {
        self.tries
    }

    /// What the pass saw so far.
    pub(super) fn pass(&self) -> &Pass {
        &self.pass
    }

    pub(super) fn finish(self) -> Pass {
        self.pass
    }
}

/// The finished passes of one listing.
#[derive(Debug, Default)]
pub(super) struct Passes {
    passes: Vec<Pass>,
}

impl Passes {
    /// Takes a finished pass: `Ok(Some(listing))` when it agrees with an
    /// earlier one (the listing is the later pass), `Ok(None)` when another
    /// pass is needed, an error when [`MAX_PASSES`] never agreed.
    pub(super) fn add(&mut self, next: Pass) -> Result<Option<Pass>, ListError> {
        if !self.passes.is_empty() {
            if self.passes.iter().any(|p| p.disagreement(&next).is_none()) {
                return Ok(Some(next));
            }
            tracing::debug!("the passes differ: the broker dropped messages");
        }
        self.passes.push(next);
        if self.passes.len() < MAX_PASSES as usize {
            return Ok(None);
        }
        let most = self.passes.iter().map(|p| p.retained.len()).max();
        Err(ListError::PassesDiffer {
            most: most.unwrap_or(0),
        })
    }
}

/// `--forget node`, before removing it: its presence as a pass found it, or
/// why it may not be forgotten.
pub(super) fn may_forget(before: &Pass, node: &str) -> Result<Option<Node>, ListError> {
    if !before.retained.contains(node) {
        return Err(ListError::UnknownNode {
            node: node.to_owned(),
        });
    }
    let old = before.nodes.get(node).cloned();
    if old.as_ref().is_some_and(Node::is_online) {
        return Err(ListError::Online {
            node: node.to_owned(),
        });
    }
    Ok(old)
}

/// `--forget node`, after removing it: whether a pass subscribed again (to
/// the node's topic alone) shows the broker did; `old` is what
/// [`may_forget`] found.
pub(super) fn forgotten(after: &Pass, node: &str, old: Option<&Node>) -> Result<(), ListError> {
    let node = node.to_owned();
    match after.nodes.get(&node) {
        None if after.retained.is_empty() => Ok(()),
        Some(now) if Some(now) != old => Err(ListError::AnnouncedAgain { node }),
        _ => Err(ListError::NotRemoved { node }),
    }
}

#[cfg(test)]
mod tests;
