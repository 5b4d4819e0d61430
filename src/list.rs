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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::config::Broker;
use crate::mqtt::{self, Inbox, LinkState, Message, Mqtt, QoS};
use crate::protocol::{random_u64, Presence, Topics};

/// Longest wait for the broker connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(9);
/// Presence messages buffered between the MQTT task and the listing. The
/// MQTT task waits when it is full (nothing is dropped on our side); large
/// enough that it rarely has to, since a broker that cannot write to us
/// drops messages of its own (mosquitto's `max_queued_messages`).
const INBOX_CAPACITY: usize = 8192;
/// Longest silence while waiting for a pass's marker. Retained messages
/// stream without pauses, so after this much silence the marker was lost:
/// dropped with other messages by a broker whose queue for us was full (a
/// new one then gets through), or forbidden by the ACL (none ever does).
const MARKER_SILENCE: Duration = Duration::from_secs(1);
/// Markers sent per pass before concluding the ACL forbids them.
const MARKER_TRIES: u32 = 3;
/// Passes before giving up on two that agree: a broker that drops messages
/// for us in several passes does so in every one (too little room for the
/// listing in its queue for us, or a link too slow to empty it in time).
const MAX_PASSES: u32 = 4;
/// Longest a whole listing may take (100,000 nodes take a few seconds).
const LIST_MAX: Duration = Duration::from_secs(60);

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

impl Node {
    fn is_online(&self) -> bool {
        self.status == "online"
    }
}

/// Which nodes to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A shell glob on the node id (`*`, `?`, `[a-z]`, `[!0-9]`).
    pub pattern: Option<String>,
    /// Only nodes whose agent is online.
    pub online: bool,
}

impl Filter {
    pub fn keeps(&self, n: &Node) -> bool {
        (!self.online || n.is_online())
            && self.pattern.as_deref().map_or(true, |p| glob(p, &n.node))
    }
}

/// Connect, collect presence messages, print the ones `filter` keeps.
pub async fn run(broker: &Broker, json: bool, filter: &Filter) -> Result<()> {
    let nodes: Vec<Node> = collect(broker)
        .await?
        .into_iter()
        .filter(|n| filter.keeps(n))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print!("{}", table(&nodes));
    }
    Ok(())
}

/// Every node with a retained presence message under the prefix, by id.
pub async fn collect(broker: &Broker) -> Result<Vec<Node>> {
    let filter = format!("{}/+/presence", broker.topic_prefix);
    let mut conn = Conn::open(broker, &filter).await?;
    let result = conn.complete_listing(&filter).await;
    conn.mqtt.close().await;
    Ok(result?.nodes.into_values().collect())
}

/// Remove `node`'s retained presence (an empty retained publish), then check
/// that the broker did: over MQTT 3.1.1 a broker drops a publish its ACL
/// forbids without telling the publisher.
pub async fn forget(broker: &Broker, node: &str) -> Result<()> {
    let topic = Topics::new(&broker.topic_prefix, node).presence();
    let mut conn = Conn::open(broker, &topic).await?;
    let result = conn.forget(node, &topic).await;
    conn.mqtt.close().await;
    result
}

/// A connection for one listing: the presence subscription and our marker
/// topic, at QoS 0, with a lossless inbox.
struct Conn {
    mqtt: Mqtt,
    rx: mpsc::Receiver<Message>,
    state: watch::Receiver<LinkState>,
    prefix: String,
    marker_topic: String,
    /// Markers sent so far; each pass's marker carries its number.
    markers: u32,
    /// Random, so no other client's message can pass for our marker.
    nonce: u64,
    /// Messages that arrived before the connection was up (a broker may
    /// send retained messages before its SUBACK).
    early: Vec<Message>,
    deadline: Instant,
}

impl Conn {
    async fn open(broker: &Broker, presence: &str) -> Result<Conn> {
        let client_id = format!("{}list-{:016x}", broker.client_id_prefix, random_u64());
        let marker_topic = marker_topic(&broker.topic_prefix, &client_id);
        let opts = mqtt::options(&client_id, broker)?;
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        // QoS 0: mosquitto sends a QoS 1 subscriber at most
        // max_inflight_messages + max_queued_messages (20 + 1000) of the
        // retained messages at once and silently drops the rest; QoS 0
        // messages are only dropped when we do not read fast enough.
        let inbox = Inbox {
            qos: QoS::AtMostOnce,
            lossless: true,
        };
        let subscriptions = vec![presence.to_owned(), marker_topic.clone()];
        let mqtt = Mqtt::spawn_with(opts, subscriptions, tx, inbox);
        let mut state = mqtt.state.clone();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut rx = rx;
        let mut early = Vec::new();
        let up = loop {
            match &*state.borrow_and_update() {
                LinkState::Up { .. } => break Ok(()),
                LinkState::Down { reason, .. } => break Err(anyhow::anyhow!("{reason}")),
                LinkState::SubscribeDenied { topics } => {
                    break Err(anyhow::anyhow!(
                        "broker refused subscription to {} (check the ACL for this user)",
                        topics.join(", ")
                    ))
                }
                LinkState::Connecting | LinkState::Subscribing => {}
            }
            tokio::select! {
                r = state.changed() => if r.is_err() { break Err(mqtt::TaskEnded.into()) },
                // Read on, or the MQTT task would wait for room in the inbox
                // and never see the SUBACK.
                Some(p) = rx.recv() => early.push(p),
                _ = sleep_until(deadline) => {
                    break Err(anyhow::anyhow!("could not reach broker {}: timed out", broker.addr))
                }
            }
        };
        if let Err(e) = up {
            mqtt.close().await;
            return Err(e);
        }
        Ok(Conn {
            mqtt,
            rx,
            state,
            prefix: broker.topic_prefix.clone(),
            marker_topic,
            markers: 0,
            nonce: random_u64(),
            early,
            deadline: Instant::now() + LIST_MAX,
        })
    }

    /// Passes until two agree; the result is the later one.
    async fn complete_listing(&mut self, filter: &str) -> Result<Pass> {
        let mut passes = vec![self.pass(None).await?];
        while passes.len() < MAX_PASSES as usize {
            let next = self.pass(Some(filter)).await?;
            if passes.iter().any(|p| p.disagreement(&next).is_none()) {
                return Ok(next);
            }
            tracing::debug!("the passes differ: the broker dropped messages");
            passes.push(next);
        }
        let most = passes.iter().map(|p| p.retained.len()).max().unwrap_or(0);
        bail!(
            "could not list the nodes completely: the broker dropped presence messages in \
             {MAX_PASSES} attempts (about {most} nodes; see \"Broker notes\" in the README)"
        )
    }

    /// One pass: (re)subscribe to `resubscribe` if given (the first pass uses
    /// the connection's own subscription), publish our marker, and collect
    /// what arrives until it comes back.
    async fn pass(&mut self, resubscribe: Option<&str>) -> Result<Pass> {
        if let Some(filter) = resubscribe {
            self.mqtt
                .client
                .subscribe(filter, QoS::AtMostOnce)
                .await
                .map_err(|_| mqtt::TaskEnded)?;
        }
        self.markers += 1;
        let marker = self.marker_payload(self.markers);
        self.send_marker(&marker).await?;
        let mut tries = 1;
        let mut pass = Pass::default();
        for p in std::mem::take(&mut self.early) {
            pass.apply(&self.prefix, &p);
        }
        let mut silent_until = Instant::now() + MARKER_SILENCE;
        loop {
            tokio::select! {
                p = self.rx.recv() => {
                    let Some(p) = p else { return Err(mqtt::TaskEnded.into()) };
                    silent_until = Instant::now() + MARKER_SILENCE;
                    if p.topic == self.marker_topic {
                        if p.payload == marker {
                            tracing::debug!(
                                pass = self.markers,
                                retained = pass.retained.len(),
                                live = pass.live.len(),
                                "end marker"
                            );
                            return Ok(pass);
                        }
                    } else {
                        pass.apply(&self.prefix, &p);
                    }
                }
                r = self.state.changed() => {
                    if r.is_err() {
                        return Err(mqtt::TaskEnded.into());
                    }
                    // A reconnect resubscribes and starts the retained
                    // messages over: this pass cannot be trusted.
                    if let LinkState::Down { reason, .. } = &*self.state.borrow_and_update() {
                        bail!("{reason}");
                    }
                }
                _ = sleep_until(silent_until.min(self.deadline)) => {
                    if Instant::now() < self.deadline && tries < MARKER_TRIES {
                        tracing::debug!(pass = self.markers, tries, "end marker lost; sending another");
                        self.send_marker(&marker).await?;
                        tries += 1;
                        silent_until = Instant::now() + MARKER_SILENCE;
                        continue;
                    }
                    if Instant::now() >= self.deadline {
                        bail!(
                            "could not list the nodes completely: no end in sight after {} s \
                             (presence messages keep changing)",
                            LIST_MAX.as_secs()
                        );
                    }
                    bail!(
                        "could not list the nodes completely: the broker did not deliver our \
                         end marker on {} (check the ACL for this user)",
                        self.marker_topic
                    );
                }
            }
        }
    }

    async fn forget(&mut self, node: &str, topic: &str) -> Result<()> {
        let before = self.pass(None).await?;
        if !before.retained.contains(node) {
            bail!("could not forget node '{node}': the broker has no presence message for it");
        }
        let old = before.nodes.get(node).cloned();
        if old.as_ref().is_some_and(Node::is_online) {
            bail!("could not forget node '{node}': it is online (stop its agent first)");
        }
        self.mqtt
            .client
            .publish(topic, QoS::AtLeastOnce, true, Vec::new())
            .await
            .map_err(|_| mqtt::TaskEnded)?;
        // Subscribing again delivers what the broker retains now.
        let after = self.pass(Some(topic)).await?;
        match after.nodes.get(node) {
            None if after.retained.is_empty() => Ok(()),
            Some(now) if Some(now) != old.as_ref() => {
                bail!("could not forget node '{node}': its agent announced itself again meanwhile")
            }
            _ => bail!(
                "could not forget node '{node}': the broker did not remove its presence \
                 (check the ACL for this user)"
            ),
        }
    }

    async fn send_marker(&self, marker: &Bytes) -> Result<()> {
        self.mqtt
            .client
            .publish(&self.marker_topic, QoS::AtLeastOnce, false, marker.clone())
            .await
            .map_err(|_| mqtt::TaskEnded.into())
    }

    fn marker_payload(&self, n: u32) -> Bytes {
        Bytes::from(format!("end of pass {n} {:016x}", self.nonce))
    }
}

/// Where a listing's end markers go: a level no node id can be (`$` is not
/// allowed in one), under the client id so an ACL can confine it (`%c`).
pub fn marker_topic(prefix: &str, client_id: &str) -> String {
    format!("{prefix}/$list/{client_id}")
}

/// What one pass saw.
#[derive(Debug, Default)]
struct Pass {
    /// The latest state of each node, in the order messages arrived.
    nodes: BTreeMap<String, Node>,
    /// Nodes whose retained message this pass delivered.
    retained: BTreeSet<String>,
    /// Nodes that changed during the pass (a live message arrived).
    live: BTreeSet<String>,
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

/// Shell-style match of `pattern` against all of `text`: `*` any run, `?`
/// any one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^…]`) one character
/// of (not of) a set. An unclosed `[` matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative with one backtrack point (the last `*`): linear in practice,
    // never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class(&p[pi..], t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (t[ti] == '[').then_some(1),
            },
            Some(c) => (*c == t[ti]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                pi += len;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at the start of `p` against `c`: whether it matches and
/// the class's length in pattern characters; `None` if it is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|hi| *hi != ']') {
            hit |= (lo..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
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

    fn publish(topic: &str, retain: bool, payload: &str) -> Message {
        Message::new(topic, payload.as_bytes().to_vec(), retain)
    }

    fn presence(status: &str, sessions: Option<u32>) -> String {
        let p = Presence {
            status: status.into(),
            version: "0.1.0".into(),
            since: 7,
            instance: "i".into(),
            sessions,
        };
        String::from_utf8(p.encode().to_vec()).expect("JSON is UTF-8")
    }

    #[test]
    fn a_pass_keeps_the_latest_state_and_tells_retained_from_live() {
        let mut pass = Pass::default();
        let on = presence("online", Some(2));
        let off = presence("offline", Some(5));
        for p in [
            publish("px/a/presence", true, &on),
            publish("px/b/presence", true, &off),
            publish("px/b/presence", false, &on),
            publish("px/c/presence", true, &on),
            publish("px/c/presence", false, ""),
            publish("px/d/presence", true, "junk"),
            publish("px/e/s/x/up", false, &on),
            publish("other/f/presence", true, &on),
        ] {
            pass.apply("px", &p);
        }
        let rows: Vec<(&str, &str, Option<u32>)> = pass
            .nodes
            .values()
            .map(|n| (n.node.as_str(), n.status.as_str(), n.sessions))
            .collect();
        // An offline node's session count is not shown; an emptied presence
        // removes the node; junk is no node but was delivered.
        assert_eq!(rows, [("a", "online", Some(2)), ("b", "online", Some(2))]);
        let set = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(set(&pass.retained), ["a", "b", "c", "d"]);
        assert_eq!(set(&pass.live), ["b", "c"]);
    }

    #[test]
    fn passes_agree_unless_a_node_is_missing_without_having_changed() {
        let pass = |retained: &[&str], live: &[&str]| Pass {
            nodes: BTreeMap::new(),
            retained: retained.iter().map(|s| s.to_string()).collect(),
            live: live.iter().map(|s| s.to_string()).collect(),
        };
        let cases: &[(Pass, Pass, Option<usize>)] = &[
            (pass(&["a", "b"], &[]), pass(&["a", "b"], &[]), None),
            (pass(&[], &[]), pass(&[], &[]), None),
            // Dropped by the broker in one pass or the other.
            (pass(&["a", "b"], &[]), pass(&["a"], &[]), Some(1)),
            (pass(&["a"], &[]), pass(&["b", "c"], &[]), Some(3)),
            // Removed, or newly announced, between the passes: the change
            // itself arrived as a live message.
            (pass(&["a", "b"], &["b"]), pass(&["a"], &[]), None),
            (pass(&["a"], &[]), pass(&["a", "n"], &["n"]), None),
            (pass(&["a", "b"], &["a"]), pass(&["a"], &[]), Some(1)),
        ];
        for (i, (a, b, differ)) in cases.iter().enumerate() {
            assert_eq!(a.disagreement(b), *differ, "case {i}");
            assert_eq!(b.disagreement(a), *differ, "case {i} reversed");
        }
    }

    #[test]
    fn glob_matches_like_a_shell() {
        let cases = [
            ("prod-*", "prod-db", true),
            ("prod-*", "prod-", true),
            ("prod-*", "web-prod-1", false),
            ("*", "", true),
            ("*-1", "web-1", true),
            ("*-1", "web-12", false),
            ("web-?", "web-1", true),
            ("web-?", "web-12", false),
            ("*db*", "prod-db-2", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("[pw]*", "prod", true),
            ("[pw]*", "db", false),
            ("node-[0-9][0-9]", "node-42", true),
            ("node-[0-9][0-9]", "node-4x", false),
            ("node-[!0-9]", "node-x", true),
            ("node-[^0-9]", "node-1", false),
            ("[]x]", "]", true),
            ("[-a]", "-", true),
            ("[a-]", "-", true),
            ("a[b", "a[b", true),
            ("a[b", "ab", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn filter_by_pattern_and_status() {
        let n = |node: &str, status: &str| Node {
            node: node.into(),
            status: status.into(),
            version: "0.1.0".into(),
            since: 0,
            instance: "i".into(),
            sessions: None,
        };
        let nodes = [
            n("prod-a", "online"),
            n("prod-b", "offline"),
            n("web-1", "online"),
        ];
        let kept = |f: Filter| -> Vec<String> {
            nodes
                .iter()
                .filter(|x| f.keeps(x))
                .map(|x| x.node.clone())
                .collect()
        };
        let pattern = |p: &str| Some(p.to_owned());
        assert_eq!(kept(Filter::default()), ["prod-a", "prod-b", "web-1"]);
        assert_eq!(
            kept(Filter {
                pattern: pattern("prod-*"),
                online: false
            }),
            ["prod-a", "prod-b"]
        );
        assert_eq!(
            kept(Filter {
                pattern: None,
                online: true
            }),
            ["prod-a", "web-1"]
        );
        assert_eq!(
            kept(Filter {
                pattern: pattern("prod-*"),
                online: true
            }),
            ["prod-a"]
        );
    }

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
