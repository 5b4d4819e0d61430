//! With a list of brokers: ask every broker at once for the node's
//! presence, and pick the one to use (`proxy::choice` decides).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::choice::{choose, nowhere, Answer, Choice};
use super::error::ProxyError;
use crate::config::Broker;
use crate::{list, mqtt};

/// How long brokers still silent are waited for once one said the node is
/// online: a reachable broker answers a presence lookup within a few round
/// trips (connect, subscribe, our marker back), well under a second even
/// across continents; a broker that is down or cut off then costs a call
/// this much, not its connect timeout.
const GRACE: Duration = Duration::from_secs(1);

/// The index, in `broker`'s list, of the broker to use for `node`.
pub(super) async fn pick(broker: &Broker, node: &str) -> Result<usize, ProxyError> {
    let each = broker.each();
    let urls: Vec<String> = each.iter().map(|b| b.endpoint().url()).collect();
    let (tx, mut rx) = mpsc::channel(each.len());
    for (i, b) in each.into_iter().enumerate() {
        let tx = tx.clone();
        let node = node.to_owned();
        // Detached: a broker still answering when the choice is made
        // finishes, and closes its connection, on its own within its
        // timeouts.
        tokio::spawn(async move {
            let answer = match list::presence(&b, &node).await {
                Ok(Some(n)) if n.status == "online" => Answer::Online { since: n.since },
                Ok(Some(_)) => Answer::Offline,
                Ok(None) => Answer::Unknown,
                Err(e) => Answer::Unreachable(format!("{e:#}")),
            };
            // The receiver is gone once the choice is made: nobody to tell.
            let _ = tx.send((i, answer)).await;
        });
    }
    drop(tx);
    let mut answers = vec![Answer::Pending; urls.len()];
    let mut grace: Option<Instant> = None;
    loop {
        let over = grace.is_some_and(|g| Instant::now() >= g);
        match choose(&answers, over) {
            Choice::Use(i) => {
                tracing::debug!(broker = %urls[i], ?answers, "node found");
                return Ok(i);
            }
            Choice::Nowhere => {
                return Err(ProxyError::NotOnline {
                    node: node.to_owned(),
                    tried: nowhere(&urls, &answers),
                })
            }
            Choice::Wait => {}
        }
        tokio::select! {
            r = rx.recv() => match r {
                Some((i, answer)) => {
                    if matches!(answer, Answer::Online { .. }) && grace.is_none() {
                        grace = Some(Instant::now() + GRACE);
                    }
                    answers[i] = answer;
                }
                // Every task answers before it ends.
                None => return Err(mqtt::TaskEnded.into()),
            },
            () = sleep_until(grace.unwrap_or_else(Instant::now)), if grace.is_some() => {}
        }
    }
}
