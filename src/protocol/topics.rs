//! The topic layout of a node.

use super::ids::valid_id;

/// The topics of one node. Layout:
///
/// ```text
/// <prefix>/<node>/presence        retained, agent -> everyone
/// <prefix>/<node>/s/<cid>/up      client -> agent (OPEN, DATA, ACK, RESET)
/// <prefix>/<node>/s/<cid>/down    agent -> client
/// ```
///
/// `cid` is the client's MQTT client id, so a broker ACL can confine a client
/// to `.../s/%c/...` and an agent to `<prefix>/<node>/#`.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, node: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{node}"),
        }
    }
    pub fn presence(&self) -> String {
        format!("{}/presence", self.base)
    }
    pub fn up(&self, cid: &str) -> String {
        format!("{}/s/{cid}/up", self.base)
    }
    pub fn down(&self, cid: &str) -> String {
        format!("{}/s/{cid}/down", self.base)
    }
    /// The agent's one subscription: every session's client->agent topic.
    pub fn all_up(&self) -> String {
        format!("{}/s/+/up", self.base)
    }
    /// The client id of an `up` topic of this node, if it is one.
    pub fn parse_up<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic
            .strip_prefix(self.base.as_str())?
            .strip_prefix("/s/")?;
        let cid = rest.strip_suffix("/up")?;
        valid_id(cid).then_some(cid)
    }
}

#[cfg(test)]
mod tests;
