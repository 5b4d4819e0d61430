//! The MQTT connection owner: one task polls the rumqttc event loop, keeps
//! the connection up (reconnect with backoff, resubscribe) and hands incoming
//! publishes to one bounded channel, lossy for the tunnel and lossless for
//! the listing ([`Inbox`]).
//! Everything else talks to the broker through a cloned [`Client`].
//!
//! - `client`: the handle (publish, subscribe) and the message type, the
//!   same for either MQTT version.
//! - `engine`: rumqttc's two APIs (3.1.1 and 5) behind one event loop type,
//!   and the transports (TCP, TLS, WebSocket, HTTP proxy).
//! - `describe`: the one-line error messages.
//! - `pacer`: the per-connection rate caps (publishes and bytes per
//!   second), no I/O; every publish waits for it in `gate`.
//! - `schedule`: which publish waiting behind the caps goes next (small
//!   frames first, sessions in turn), no I/O; `gate` waits for both.
//! - `size`: a 3.1.1 broker's packet size limit, discovered from
//!   disconnects.
//! - `socket`: rumqttc's TCP socket, tuned: `TCP_QUICKACK` after every
//!   read, so a broker with Nagle's algorithm on does not wait for our
//!   delayed acks, and keepalive probes with a user timeout, so a link
//!   that died silently is replaced within seconds.
//! - `versions`: the MQTT version each broker spoke, remembered in the
//!   user's cache directory (`mqtt-proxy` only).
//! - `failover`: which broker of a list the connection uses, and when it
//!   moves to the next, without I/O.
//!
//! MQTT 5 is the default; a broker that refuses it gets 3.1.1 (decided
//! once per process, before the first connection is up).

mod client;
mod describe;
mod engine;
mod failover;
mod gate;
pub mod pacer;
mod schedule;
mod size;
mod socket;
mod versions;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Broker, MqttVersion};
use crate::protocol::Delivery;
pub use client::{Client, Message, QoS, TaskEnded};
pub use engine::Options;
use engine::{Engine, Ev, V5Verdict};
use failover::{Failover, Outcome};
use pacer::Caps;
pub use versions::Remembered;
use versions::Version;

/// Keepalive towards the broker: a silently dead TCP connection is noticed
/// within 2 × this (rumqttc gives up when the next ping is due and the last
/// one is unanswered); short enough to resume quickly, long enough for slow
/// links. The agent sets a longer one (`agent::KEEP_ALIVE`).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// First reconnect delay; doubles up to [`BACKOFF_MAX`], with jitter.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between reconnect attempts: an agent started before its
/// broker comes online within this of the broker starting.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a closing client waits for its last frames to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the rest of the program needs to know about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet.
    Connecting,
    /// Connected, and our SUBSCRIBE is queued ahead of anything published
    /// from now on; its SUBACK is still to come. A broker handles one
    /// connection's packets in order, so what we publish now is answered on
    /// topics we are subscribed to: a client need not wait a round trip
    /// for the SUBACK before it asks for a session.
    Subscribing,
    /// Connected and subscribed; `generation` counts successful connects.
    Up { generation: u64 },
    /// The last attempt failed or the connection dropped; retrying.
    Down {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// The broker refused a subscription (usually an ACL).
    SubscribeDenied { topics: Vec<String> },
}

/// How a connection subscribes and hands incoming publishes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbox {
    /// The QoS of every subscription.
    pub qos: QoS,
    /// Wait for room in the channel rather than drop a publish. Reading
    /// from the broker pauses meanwhile, so the reader must keep up.
    pub lossless: bool,
}

impl Inbox {
    /// Sessions and presence watching: QoS 1, and a full channel drops (the
    /// tunnel retransmits what it never acknowledged).
    pub const TUNNEL: Inbox = Inbox {
        qos: QoS::AtLeastOnce,
        lossless: false,
    };
}

/// The MQTT QoS for a frame's [`Delivery`].
pub fn qos(d: Delivery) -> QoS {
    match d {
        Delivery::AtMostOnce => QoS::AtMostOnce,
        Delivery::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// A running connection.
pub struct Mqtt {
    pub client: Client,
    pub state: watch::Receiver<LinkState>,
    task: JoinHandle<()>,
}

/// Options common to agent and proxy. Fails on unusable TLS files, before
/// anything connects.
/// With a list of brokers, the connection starts on `broker`'s first and
/// moves along the list when it fails (`failover`).
pub fn options(client_id: &str, broker: &Broker) -> anyhow::Result<Options> {
    let mut brokers = Vec::new();
    for b in broker.each() {
        let tls = b.tls.as_ref().map(crate::tls::client_config).transpose()?;
        brokers.push((b, tls));
    }
    let (first, tls) = brokers[0].clone();
    Ok(Options {
        client_id: client_id.to_owned(),
        broker: first,
        tls,
        brokers,
        will: None,
        keep_alive: KEEP_ALIVE,
        remembered: None,
    })
}

impl Mqtt {
    /// Start the connection task. Incoming publishes go to `incoming`; when it
    /// is full they are dropped (the tunnel retransmits).
    pub fn spawn(
        options: Options,
        subscriptions: Vec<String>,
        incoming: mpsc::Sender<Message>,
    ) -> Mqtt {
        Mqtt::spawn_with(options, subscriptions, incoming, Inbox::TUNNEL)
    }

    /// [`Mqtt::spawn`] with the subscription QoS and channel behaviour of
    /// `inbox`.
    pub fn spawn_with(
        options: Options,
        subscriptions: Vec<String>,
        incoming: mpsc::Sender<Message>,
        inbox: Inbox,
    ) -> Mqtt {
        let version = first_version(&options.broker, options.remembered.as_ref());
        let probe = options.broker.mqtt_version == MqttVersion::Auto && version == Version::V5;
        let (inner, engine) = Engine::new(version, &options, probe);
        // What every broker of the list carries well: the peer is told
        // once, in the opening.
        let recv_max_packet = options
            .brokers
            .iter()
            .filter_map(|(b, _)| engine::carrier_max_packet(&b.carrier))
            .min();
        let urls = options
            .brokers
            .iter()
            .map(|(b, _)| b.endpoint().url())
            .collect();
        let (shared, control) =
            client::Shared::new(inner, Caps::of(&options.broker), recv_max_packet, urls);
        let client = Client {
            shared: Arc::new(shared),
        };
        if let Some(queue) = control {
            tokio::spawn(client::send_control(Arc::downgrade(&client.shared), queue));
        }
        client.shared.user_max_packet.store(
            options
                .broker
                .max_message_size
                .unwrap_or(engine::DEFAULT_MAX_PACKET),
            Ordering::Relaxed,
        );
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let task = tokio::spawn(run(
            engine,
            options,
            client.clone(),
            subscriptions,
            incoming,
            inbox,
            state_tx,
        ));
        Mqtt {
            client,
            state,
            task,
        }
    }

    /// Send DISCONNECT after everything already queued, and wait (bounded)
    /// until it was written, so the last frames reach the broker and the
    /// broker does not publish our last will. Without a broker connection
    /// there is nothing to flush: stop at once rather than make a user whose
    /// broker is down wait `FLUSH_TIMEOUT` longer for the error.
    pub async fn close(self) {
        let mut task = self.task;
        if !matches!(
            *self.state.borrow(),
            LinkState::Up { .. } | LinkState::Subscribing
        ) {
            task.abort();
            return;
        }
        // An error means the event loop is gone already; nothing to flush.
        let _ = self.client.disconnect().await;
        if tokio::time::timeout(FLUSH_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// The version to try first on `broker`: a broker known to speak only
/// 3.1.1 is not probed again.
fn first_version(broker: &Broker, remembered: Option<&Remembered>) -> Version {
    match broker.mqtt_version {
        MqttVersion::Auto => remembered
            .and_then(|r| r.get(broker))
            .unwrap_or(Version::V5),
        MqttVersion::V5 => Version::V5,
        MqttVersion::V311 => Version::V311,
    }
}

/// Which protocol version the connection uses, and whether that may still
/// change: with [`MqttVersion::Auto`], until a connection was up.
struct VersionChoice {
    current: Version,
    /// Settled: forced by the user, or a connection was up with `current`,
    /// or the broker refused MQTT 5 outright.
    settled: bool,
    /// The fallback was logged (once per process).
    logged: bool,
}

impl VersionChoice {
    /// After a failed connect attempt (no CONNACK): the version to try
    /// next, and whether to try it at once (a fallback) rather than after
    /// the backoff.
    fn after_failure(&mut self, verdict: V5Verdict) -> (Version, bool) {
        if self.settled {
            return (self.current, false);
        }
        match (self.current, verdict) {
            (Version::V5, V5Verdict::Refused | V5Verdict::NoAnswer) => {
                // A broker that refused MQTT 5 by code is a 3.1.1 broker; one
                // that closed the connection or stayed silent may have been a
                // network fault, so 5 gets another chance if 3.1.1 fails too.
                self.settled = verdict == V5Verdict::Refused;
                self.current = Version::V311;
                (Version::V311, true)
            }
            (Version::V311, _) => {
                self.current = Version::V5;
                (Version::V5, false)
            }
            (Version::V5, V5Verdict::Unrelated) => (Version::V5, false),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut engine: Engine,
    mut options: Options,
    client: Client,
    subscriptions: Vec<String>,
    incoming: mpsc::Sender<Message>,
    inbox: Inbox,
    state: watch::Sender<LinkState>,
) {
    let brokers = options.brokers.clone();
    let mut failover = Failover::new(brokers.len());
    // One per broker of the list: each may speak another version.
    let mut versions: Vec<VersionChoice> = brokers
        .iter()
        .enumerate()
        .map(|(i, (b, _))| VersionChoice {
            current: if i == 0 {
                engine.version()
            } else {
                first_version(b, options.remembered.as_ref())
            },
            settled: b.mqtt_version != MqttVersion::Auto,
            logged: false,
        })
        .collect();
    let mut generation = 0u64;
    let mut attempt = 0u32;
    let mut connected = false;
    let mut connected_at = Instant::now();
    let mut sizer = size::DropSizer::default();
    let mut awaiting_suback = false;
    let mut dropped = 0u64;
    let socket = || client.shared.socket.lock().expect("no holder panics");
    let probing = socket::Probing {
        interval: options.broker.probe_interval,
        timeout: options.broker.link_timeout,
    };
    let mut attempt_started = Instant::now();
    loop {
        if !connected {
            attempt_started = Instant::now();
        }
        let broker = &options.broker;
        let addr = &broker.addr;
        let version = &mut versions[failover.current()];
        let polled = engine.poll(broker).await;
        match &polled {
            Ok(Ev::ConnAck(_)) => {
                let mut s = socket();
                s.attach(socket::dialled(broker), probing);
                s.after_read();
            }
            Ok(Ev::Other | Ev::Disconnected) => {}
            Ok(_) => socket().after_read(),
            Err(_) => socket().detach(),
        }
        if connected {
            if let Some(l) = sizer.on_alive(connected_at.elapsed()) {
                tracing::debug!(broker = %addr, failed = l.failed, limit = l.limit,
                    "the connection lives with the lowered packet size");
            }
        }
        match polled {
            Ok(Ev::ConnAck(limits)) => {
                let rtt = attempt_started.elapsed() / engine::handshake_round_trips(broker);
                client
                    .shared
                    .link_rtt_us
                    .store(rtt.as_micros() as u64, Ordering::Relaxed);
                attempt = 0;
                connected = true;
                failover.on(Outcome::Up);
                connected_at = Instant::now();
                if !version.settled {
                    if let Some(r) = &options.remembered {
                        r.put(broker, version.current);
                    }
                }
                version.settled = true;
                awaiting_suback = true;
                client
                    .shared
                    .broker_max_packet
                    .store(limits.max_packet.unwrap_or(0), Ordering::Relaxed);
                tracing::debug!(broker = %addr, version = ?version.current,
                    max_packet = ?limits.max_packet, receive_max = ?limits.receive_max,
                    topic_alias_max = ?limits.topic_alias_max, "connected");
                // Queued without waiting if there is room (a fresh
                // connection's request channel is empty), so what is
                // published after the state change goes behind it.
                // Otherwise from another task: awaiting the channel here
                // would deadlock, since only this loop drains it.
                if client.try_subscribe_many(&subscriptions, inbox.qos) {
                    state.send_replace(LinkState::Subscribing);
                } else {
                    let client = client.clone();
                    let subs = subscriptions.clone();
                    tokio::spawn(async move {
                        // An error means the event loop ended; nothing left to do.
                        let _ = client.subscribe_many(subs, inbox.qos).await;
                    });
                }
            }
            Ok(Ev::SubAck(granted)) if awaiting_suback => {
                awaiting_suback = false;
                let denied: Vec<String> = granted
                    .iter()
                    .zip(&subscriptions)
                    .filter(|(ok, _)| !**ok)
                    .map(|(_, t)| t.clone())
                    .collect();
                if denied.is_empty() {
                    generation += 1;
                    tracing::debug!(broker = %addr, generation, "connected and subscribed");
                    state.send_replace(LinkState::Up { generation });
                } else {
                    tracing::error!(broker = %addr, ?denied, "broker refused subscription");
                    state.send_replace(LinkState::SubscribeDenied { topics: denied });
                }
            }
            Ok(Ev::Publish(p)) if inbox.lossless => {
                if incoming.send(p).await.is_err() {
                    return;
                }
            }
            Ok(Ev::Publish(p)) => match incoming.try_send(p) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Safe to drop: the sender retransmits what we never ack.
                    dropped += 1;
                    tracing::debug!(dropped, "incoming queue full, dropped a message");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Ok(Ev::Disconnected) => return,
            Ok(Ev::SubAck(_) | Ev::Read | Ev::Other) => {}
            Err(f) => {
                if f.done {
                    return;
                }
                let was_connected = std::mem::take(&mut connected);
                // A new event loop is needed: for a lower packet size, a
                // version to try, or another broker.
                let mut fresh = false;
                let outcome = if was_connected {
                    let largest = client.shared.largest_packet.swap(0, Ordering::Relaxed);
                    if let Some(l) = sizer.on_drop(connected_at.elapsed(), largest) {
                        // Logged when the limit falls rather than once
                        // confirmed: a short transfer may end before the
                        // confirmation, and the line would never show.
                        tracing::info!(broker = %addr,
                            "the broker closes the connection on packets of {} bytes; sending \
                             packets of at most {} bytes", l.failed, l.limit);
                        client
                            .shared
                            .found_max_packet
                            .store(l.limit, Ordering::Relaxed);
                        // A fresh event loop: the old one's request queue
                        // still holds packets above the new limit, and would
                        // send them first.
                        fresh = true;
                    }
                    Outcome::Lost
                } else {
                    let before = version.current;
                    let (next, at_once) = version.after_failure(f.v5);
                    if next != before {
                        if at_once && !version.logged {
                            version.logged = true;
                            tracing::debug!(broker = %addr, why = %f.reason,
                                "the broker refused MQTT 5; falling back to MQTT 3.1.1");
                        }
                        fresh = true;
                    }
                    if next != before && at_once {
                        Outcome::VersionFallback
                    } else {
                        Outcome::Failed
                    }
                };
                if let Some(i) = failover.on(outcome) {
                    tracing::debug!(from = %addr, to = %brokers[i].0.addr, why = %f.reason,
                        "trying the next broker of the list");
                    (options.broker, options.tls) = brokers[i].clone();
                    client.shared.broker.store(i, Ordering::Relaxed);
                    fresh = true;
                }
                if fresh {
                    let v = &versions[failover.current()];
                    let (inner, e) = Engine::new(v.current, &options, !v.settled);
                    engine = e;
                    client.shared.replace(inner);
                }
                if outcome == Outcome::VersionFallback {
                    continue;
                }
                attempt += 1;
                let delay = backoff(attempt);
                // Logged by whoever watches the state: the agent warns, the
                // proxy reports the first failure as its one-line error.
                tracing::debug!(broker = %options.broker.addr, attempt, retry_in = ?delay, "{}", f.reason);
                state.send_replace(LinkState::Down {
                    reason: f.reason,
                    attempt,
                    retry_in: delay,
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Exponential backoff with jitter in [d/2, d].
fn backoff(attempt: u32) -> Duration {
    let d = BACKOFF_MIN
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let jitter = getrandom::u64().unwrap_or(0) % 1000;
    d / 2 + d / 2 * jitter as u32 / 1000
}

#[cfg(test)]
mod tests;
