//! `--list` with a list of brokers (issue 25): one listing per broker that
//! answered, merged into one row per node, without I/O.
//!
//! An agent is on one broker at a time and announces itself with a fresh
//! `since` on every connect; a broker it left keeps an older presence (its
//! last "online" until the agent's keepalive expires there, then the
//! offline will, whose `since` is the agent's start). So the newest `since`
//! is the node's current state, and its broker is where the agent is.
//! Equal ones go to the earlier broker of the list.

use std::collections::BTreeMap;

use super::pass::Node;

/// Merge `listings` (per broker in list order: its URL and its nodes) into
/// one row per node, by node id, each with the broker it came from.
pub(super) fn merge(listings: Vec<(String, Vec<Node>)>) -> Vec<Node> {
    let mut rows: BTreeMap<String, Node> = BTreeMap::new();
    for (url, nodes) in listings {
        for mut n in nodes {
            n.broker = Some(url.clone());
            match rows.get(&n.node) {
                Some(kept) if kept.since >= n.since => {}
                _ => {
                    rows.insert(n.node.clone(), n);
                }
            }
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests;
