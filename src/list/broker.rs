//! The broker talk of `--list` and `--forget`: one connection, its
//! subscriptions, the end markers and the timers, carrying out what
//! `list::pass` decides.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::pass::{self, Collecting, OnSilence, Pass, Passes, LIST_MAX, MARKER_SILENCE};
use crate::config::Broker;
use crate::mqtt::{self, Inbox, LinkState, Message, Mqtt, QoS};
use crate::protocol::random_u64;

/// Longest wait for the broker connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(9);
/// Presence messages buffered between the MQTT task and the listing. The
/// MQTT task waits when it is full (nothing is dropped on our side); large
/// enough that it rarely has to, since a broker that cannot write to us
/// drops messages of its own (mosquitto's `max_queued_messages`).
const INBOX_CAPACITY: usize = 8192;

/// A connection for one listing: the presence subscription and our marker
/// topic, at QoS 0, with a lossless inbox.
pub(super) struct Conn {
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
    pub(super) async fn open(broker: &Broker, presence: &str) -> Result<Conn> {
        let client_id = format!("{}list-{:016x}", broker.client_id_prefix, random_u64());
        let marker_topic = pass::marker_topic(&broker.topic_prefix, &client_id);
        let mut opts = mqtt::options(&client_id, broker)?;
        opts.remember_version(mqtt::Remembered::in_cache_dir());
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

    pub(super) async fn close(self) {
        self.mqtt.close().await;
    }

    /// Passes until two agree; the result is the later one.
    pub(super) async fn complete_listing(&mut self, filter: &str) -> Result<Pass> {
        let mut passes = Passes::default();
        let mut resubscribe = None;
        loop {
            let next = self.pass(resubscribe).await?;
            if let Some(listing) = passes.add(next)? {
                return Ok(listing);
            }
            resubscribe = Some(filter);
        }
    }

    /// One pass: (re)subscribe to `resubscribe` if given (the first pass uses
    /// the connection's own subscription), publish our marker, and collect
    /// what arrives until it comes back.
    pub(super) async fn pass(&mut self, resubscribe: Option<&str>) -> Result<Pass> {
        if let Some(filter) = resubscribe {
            self.mqtt
                .client
                .subscribe(filter, QoS::AtMostOnce)
                .await
                .map_err(|_| mqtt::TaskEnded)?;
        }
        self.markers += 1;
        let marker = pass::marker_payload(self.markers, self.nonce);
        self.send_marker(&marker).await?;
        let mut pass = Collecting::new(&self.prefix, &self.marker_topic, marker);
        for p in std::mem::take(&mut self.early) {
            pass.on_message(&p);
        }
        let mut silent_until = Instant::now() + MARKER_SILENCE;
        loop {
            tokio::select! {
                p = self.rx.recv() => {
                    let Some(p) = p else { return Err(mqtt::TaskEnded.into()) };
                    silent_until = Instant::now() + MARKER_SILENCE;
                    if pass.on_message(&p) {
                        tracing::debug!(
                            pass = self.markers,
                            retained = pass.pass().retained.len(),
                            live = pass.pass().live.len(),
                            "end marker"
                        );
                        return Ok(pass.finish());
                    }
                }
                r = self.state.changed() => {
                    if r.is_err() {
                        return Err(mqtt::TaskEnded.into());
                    }
                    // A reconnect resubscribes and starts the retained
                    // messages over: this pass cannot be trusted.
                    if let LinkState::Down { reason, .. } = &*self.state.borrow_and_update() {
                        anyhow::bail!("{reason}");
                    }
                }
                _ = sleep_until(silent_until.min(self.deadline)) => {
                    match pass.on_silence(Instant::now(), self.deadline) {
                        OnSilence::Resend => {
                            tracing::debug!(
                                pass = self.markers,
                                tries = pass.tries() - 1,
                                "end marker lost; sending another"
                            );
                            self.send_marker(pass.marker()).await?;
                            silent_until = Instant::now() + MARKER_SILENCE;
                        }
                        OnSilence::Fail(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Remove `node`'s retained presence on `topic` if [`pass::may_forget`]
    /// allows it, and check that the broker did.
    pub(super) async fn forget(&mut self, node: &str, topic: &str) -> Result<()> {
        let before = self.pass(None).await?;
        let old = pass::may_forget(&before, node)?;
        self.mqtt
            .client
            .publish(topic, QoS::AtLeastOnce, true, Vec::new())
            .await
            .map_err(|_| mqtt::TaskEnded)?;
        // Subscribing again delivers what the broker retains now.
        let after = self.pass(Some(topic)).await?;
        Ok(pass::forgotten(&after, node, old.as_ref())?)
    }

    async fn send_marker(&self, marker: &Bytes) -> Result<()> {
        self.mqtt
            .client
            .publish(&self.marker_topic, QoS::AtLeastOnce, false, marker.clone())
            .await
            .map_err(|_| mqtt::TaskEnded.into())
    }
}
