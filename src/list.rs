//! `mqtt-proxy --list` (the nodes the broker holds a presence message for)
//! and `mqtt-proxy --forget NODE` (remove a retired node's presence).
//!
//! MQTT has no "end of retained messages" signal and a broker may drop
//! messages for a client whose queue is full (mosquitto does, silently), so a
//! listing is built from passes: subscribe (again), then publish a marker to
//! a topic we also subscribe to. A broker handles one connection's packets
//! in order and queues the retained messages when it handles the SUBSCRIBE,
//! so the marker comes back after all of them. Two consecutive passes that
//! agree make a complete listing; passes that keep differing, or a marker
//! that never comes back, are an error, never a shorter list.
//!
//! `pass` holds these rules without I/O (what a pass counts, when it is
//! over, when passes agree, whether a node may be forgotten), `broker` the
//! connection that carries them out, `merge` the listings of several
//! brokers, `filter` and `render` what is printed.

mod broker;
mod filter;
mod merge;
mod pass;
mod render;

use anyhow::{bail, Context, Result};

pub use filter::{Filter, Selection};
pub use pass::{marker_topic, Node};
pub use render::{table, utc};

use crate::config::Broker;
use crate::protocol::Topics;

/// Connect, collect presence messages, print the ones `filter` keeps.
pub async fn run(broker: &Broker, json: bool, filter: &Filter) -> Result<()> {
    // Before connecting: a bad pattern needs no broker to be reported.
    let keep = filter.compile()?;
    let nodes: Vec<Node> = collect_all(broker)
        .await?
        .into_iter()
        .filter(|n| keep.keeps(n))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print!("{}", table(&nodes));
    }
    Ok(())
}

/// With a list of brokers, every broker's listing at once, merged: one row
/// per node, the newest presence (`merge`). A broker that does not answer
/// is named in one warning line while another answers; if none does, that
/// is the error.
pub async fn collect_all(broker: &Broker) -> Result<Vec<Node>> {
    if broker.failover.is_empty() {
        return collect(broker).await;
    }
    let tasks: Vec<_> = broker
        .each()
        .into_iter()
        .map(|b| tokio::spawn(async move { (b.endpoint().url(), collect(&b).await) }))
        .collect();
    let mut listings = Vec::new();
    let mut failed = Vec::new();
    for task in tasks {
        let (url, result) = task.await.context("a broker's listing task failed")?;
        match result {
            Ok(nodes) => listings.push((url, nodes)),
            Err(e) => failed.push((url, format!("{e:#}"))),
        }
    }
    if listings.is_empty() {
        let all: Vec<String> = failed.iter().map(|(u, e)| format!("{u} ({e})")).collect();
        bail!("no broker answered: {}", all.join(", "));
    }
    for (url, e) in failed {
        tracing::warn!("broker {url} did not answer ({e}); listing the others");
    }
    Ok(merge::merge(listings))
}

/// Every node with a retained presence message under the prefix, by id,
/// on `broker` (its first broker only).
pub async fn collect(broker: &Broker) -> Result<Vec<Node>> {
    let broker = &broker.on(&broker.endpoint());
    let filter = format!("{}/+/presence", broker.topic_prefix);
    let mut conn = broker::Conn::open(broker, &filter).await?;
    let result = conn.complete_listing(&filter).await;
    conn.close().await;
    Ok(result?.nodes.into_values().collect())
}

/// `node`'s presence on `broker` (its first broker only), from one pass on
/// its presence topic: for `mqtt-proxy NODE` with a list of brokers.
pub async fn presence(broker: &Broker, node: &str) -> Result<Option<Node>> {
    let topic = Topics::new(&broker.topic_prefix, node).presence();
    let mut conn = broker::Conn::open(&broker.on(&broker.endpoint()), &topic).await?;
    let result = conn.pass(None).await;
    conn.close().await;
    Ok(result?.nodes.remove(node))
}

/// Remove `node`'s retained presence (an empty retained publish), then check
/// that the broker did: over MQTT 3.1.1 a broker drops a publish its ACL
/// forbids without telling the publisher.
/// With a list of brokers, on the first one only.
pub async fn forget(broker: &Broker, node: &str) -> Result<()> {
    let broker = &broker.on(&broker.endpoint());
    let topic = Topics::new(&broker.topic_prefix, node).presence();
    let mut conn = broker::Conn::open(broker, &topic).await?;
    let result = conn.forget(node, &topic).await;
    conn.close().await;
    result
}
