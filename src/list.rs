//! `mqtt-proxy --list`: the nodes the broker holds a presence message for.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::config::Broker;
use crate::mqtt::{self, LinkState, Mqtt};
use crate::protocol::{random_u64, Presence};

/// Longest wait for the broker connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(9);
/// Retained messages follow the SUBACK at once; stop after this much quiet…
const QUIET: Duration = Duration::from_millis(300);
/// …or this long after subscribing, whichever comes first.
const COLLECT_MAX: Duration = Duration::from_secs(2);

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
}

/// Connect, collect presence messages, print them.
pub async fn run(broker: &Broker, json: bool) -> Result<()> {
    let nodes = collect(broker).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print!("{}", table(&nodes));
    }
    Ok(())
}

/// The nodes with a retained presence message under the prefix.
pub async fn collect(broker: &Broker) -> Result<Vec<Node>> {
    let client_id = format!("{}list-{:016x}", broker.client_id_prefix, random_u64());
    let opts = mqtt::options(&client_id, broker)?;
    let filter = format!("{}/+/presence", broker.topic_prefix);
    let (tx, mut rx) = mpsc::channel(1024);
    let mqtt = Mqtt::spawn(opts, broker.addr.clone(), vec![filter], tx);
    let mut state = mqtt.state.clone();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match &*state.borrow_and_update() {
            LinkState::Up { .. } => break,
            LinkState::Down { reason, .. } => bail!("{reason}"),
            LinkState::SubscribeDenied { topics } => {
                bail!(
                    "broker refused subscription to {} (check the ACL for this user)",
                    topics.join(", ")
                )
            }
            LinkState::Connecting => {}
        }
        tokio::select! {
            r = state.changed() => if r.is_err() { return Err(mqtt::TaskEnded.into()) },
            _ = sleep_until(deadline) => bail!("could not reach broker {}: timed out", broker.addr),
        }
    }
    let end = Instant::now() + COLLECT_MAX;
    let mut quiet_until = Instant::now() + QUIET;
    let mut nodes = BTreeMap::new();
    loop {
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { break };
                quiet_until = Instant::now() + QUIET;
                let node = p
                    .topic
                    .strip_prefix(&format!("{}/", broker.topic_prefix))
                    .and_then(|r| r.strip_suffix("/presence"));
                match (node, Presence::decode(&p.payload)) {
                    (Some(node), Some(pr)) => {
                        let sessions = pr.sessions.filter(|_| pr.is_online());
                        nodes.insert(node.to_owned(), Node {
                            node: node.to_owned(),
                            status: pr.status,
                            version: pr.version,
                            since: pr.since,
                            instance: pr.instance,
                            sessions,
                        });
                    }
                    // An emptied retained message (node removed) or junk.
                    _ => tracing::debug!(topic = %p.topic, "ignored presence message"),
                }
            }
            _ = sleep_until(quiet_until.min(end)) => break,
        }
    }
    mqtt.close().await;
    Ok(nodes.into_values().collect())
}

/// A human-readable table.
pub fn table(nodes: &[Node]) -> String {
    let rows: Vec<[String; 5]> = nodes
        .iter()
        .map(|n| {
            [
                n.node.clone(),
                n.status.clone(),
                n.sessions.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                n.version.clone(),
                utc(n.since),
            ]
        })
        .collect();
    let header = ["NODE", "STATUS", "SESSIONS", "VERSION", "SINCE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if nodes.is_empty() {
        out.push_str("(no nodes)\n");
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds (civil-from-days, H. Hinnant).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_340_901), "2026-11-22 09:48:21 UTC");
    }

    #[test]
    fn table_aligns_columns() {
        let n = |node: &str, status: &str, sessions| Node {
            node: node.into(),
            status: status.into(),
            version: "0.1.0".into(),
            since: 0,
            instance: "i".into(),
            sessions,
        };
        let t = table(&[n("a", "online", Some(12)), n("long-name", "offline", None)]);
        assert_eq!(
            t,
            "NODE       STATUS   SESSIONS  VERSION  SINCE\n\
             a          online   12        0.1.0    1970-01-01 00:00:00 UTC\n\
             long-name  offline  -         0.1.0    1970-01-01 00:00:00 UTC\n"
        );
        assert_eq!(
            table(&[]),
            "NODE  STATUS  SESSIONS  VERSION  SINCE\n(no nodes)\n"
        );
    }
}
