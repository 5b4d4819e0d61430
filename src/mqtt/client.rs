//! What the rest of the program holds of the connection: a cloneable
//! [`Client`] that publishes and subscribes, and the messages it receives,
//! the same whichever MQTT version the connection speaks.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::gate::Gate;
use super::pacer::{self, Caps, Pacer};
use super::socket::BrokerSocket;

/// The connection task is gone: the program is shutting down, or the task
/// ended with an error it logged. Every caller that waits on the connection
/// reports this one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the MQTT connection task ended")]
pub struct TaskEnded;

/// The delivery guarantee of a publish or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoS {
    AtMostOnce,
    AtLeastOnce,
}

/// An incoming publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// Sent because of a new subscription (a retained message).
    pub retain: bool,
}

impl Message {
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            retain,
        }
    }
}

/// Bytes of a PUBLISH packet besides topic and payload, at most: fixed
/// header (1), remaining length (up to 4), topic length (2), packet id (2),
/// MQTT 5 property length (up to 4), rounded up.
pub(super) const PUBLISH_OVERHEAD: usize = 16;

/// One rumqttc client of either API.
#[derive(Clone)]
pub(super) enum Inner {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// What clients and the connection task share.
pub(super) struct Shared {
    /// The current rumqttc client; replaced when the connection falls back
    /// from MQTT 5 to 3.1.1 (before it was ever up).
    pub(super) inner: RwLock<Inner>,
    /// Bumped on every replacement, so a request that raced with one is
    /// sent again to the new client instead of failing.
    pub(super) epoch: AtomicU64,
    /// The broker's Maximum Packet Size (MQTT 5 CONNACK); 0: none announced.
    pub(super) broker_max_packet: AtomicU32,
    /// The rate caps of this connection, if any. Every publish waits its
    /// turn here before it is queued towards the event loop, small frames
    /// first (`mqtt::schedule`), so a keystroke does not wait behind the
    /// bulk chunks of other sessions.
    gate: Option<Gate>,
    /// The largest packet worth sending under the byte cap, if any.
    caps_max_packet: Option<usize>,
    /// The largest packet the transport brings us well, if it is limited.
    recv_max_packet: Option<usize>,
    /// With a pacer: publishes that must not wait ([`Client::try_publish`])
    /// queue here, for a task that sends them at the pacer's pace.
    control: Option<mpsc::Sender<Request>>,
    /// `--max-message-size`, or `engine::DEFAULT_MAX_PACKET` without it.
    pub(super) user_max_packet: AtomicU32,
    /// The packet size limit discovered from disconnects (`mqtt::size`);
    /// 0: none.
    pub(super) found_max_packet: AtomicU32,
    /// The largest packet published since the connection last dropped:
    /// what a disconnect may have been about.
    pub(super) largest_packet: AtomicU32,
    /// Our round trip to the broker in microseconds, estimated from the
    /// last connect (see `engine::handshake_round_trips`); 0 until then.
    pub(super) link_rtt_us: AtomicU64,
    /// The message size last logged as discovered, so each is logged once.
    logged_size: AtomicU32,
    /// The brokers of the list, as URLs, and which one is in use.
    broker_urls: Vec<String>,
    pub(super) broker: AtomicUsize,
    /// The connection's socket, when found: the connection task tunes it,
    /// [`Client::replace_after_stop`] ends it.
    pub(super) socket: std::sync::Mutex<BrokerSocket>,
}

/// A publish waiting in [`Shared::control`].
pub(super) struct Request {
    topic: String,
    qos: QoS,
    retain: bool,
    payload: Bytes,
    expiry: Option<u32>,
}

/// Publishes that did not want to wait (control frames, presence) queued
/// behind a pacer: the callers treat a full queue like a full request
/// queue (the client repeats its request, presence retries next tick).
const CONTROL_QUEUE: usize = 64;

impl Shared {
    /// `caps`: the connection's rate caps; with any, the caller runs
    /// [`send_control`] on the returned receiver. `recv_max_packet`: the
    /// largest packet the transport brings us well.
    pub(super) fn new(
        inner: Inner,
        caps: Caps,
        recv_max_packet: Option<u32>,
        broker_urls: Vec<String>,
    ) -> (Shared, Option<mpsc::Receiver<Request>>) {
        let pacer = Pacer::new(caps, Instant::now());
        let (control, rx) = match pacer {
            Some(_) => {
                let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Shared {
            inner: RwLock::new(inner),
            epoch: AtomicU64::new(0),
            broker_max_packet: AtomicU32::new(0),
            user_max_packet: AtomicU32::new(0),
            found_max_packet: AtomicU32::new(0),
            largest_packet: AtomicU32::new(0),
            link_rtt_us: AtomicU64::new(0),
            logged_size: AtomicU32::new(0),
            broker_urls,
            broker: AtomicUsize::new(0),
            socket: std::sync::Mutex::new(BrokerSocket::default()),
            gate: pacer.map(Gate::new),
            caps_max_packet: pacer::max_packet(caps),
            recv_max_packet: recv_max_packet.map(|p| p as usize),
            control,
        };
        (shared, rx)
    }

    pub(super) fn replace(&self, inner: Inner) {
        *self.inner.write().expect("no writer panics holding it") = inner;
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> (Inner, u64) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let inner = self
            .inner
            .read()
            .expect("no writer panics holding it")
            .clone();
        (inner, epoch)
    }
}

/// A handle on the connection: publish, subscribe, disconnect. Requests go
/// to the connection task through a bounded queue.
#[derive(Clone)]
pub struct Client {
    pub(super) shared: Arc<Shared>,
}

fn v4_qos(q: QoS) -> rumqttc::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
    }
}

fn v5_qos(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

impl Client {
    /// The packet size limit now: the least of the broker's Maximum Packet
    /// Size (MQTT 5), `--max-message-size`, the one discovered from
    /// disconnects and the one that keeps a byte cap prompt
    /// ([`pacer::max_packet`]), if any is known.
    fn max_packet(&self) -> Option<usize> {
        let s = &self.shared;
        [
            &s.broker_max_packet,
            &s.user_max_packet,
            &s.found_max_packet,
        ]
        .into_iter()
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|&max| max != 0)
        .map(|max| max as usize)
        .chain(s.caps_max_packet)
        .min()
    }

    /// The largest payload a publish on `topic` may carry under the packet
    /// size limit, if one is known.
    pub fn max_payload(&self, topic: &str) -> Option<usize> {
        self.max_payload_to(topic, None)
    }

    /// [`Client::max_payload`], and no more than a subscriber that receives
    /// packets of at most `peer_packet` bytes well can take.
    pub fn max_payload_to(&self, topic: &str, peer_packet: Option<usize>) -> Option<usize> {
        self.max_packet()
            .into_iter()
            .chain(peer_packet)
            .min()
            .map(|max| max.saturating_sub(topic.len() + PUBLISH_OVERHEAD))
    }

    /// The largest packet this connection's transport brings us well, if
    /// it is limited (WebSocket through mosquitto).
    pub fn recv_max_packet(&self) -> Option<usize> {
        self.shared.recv_max_packet
    }

    /// A session discovered that messages of `failed` bytes are dropped and
    /// ones of `size` bytes arrive: logged once per size per process.
    pub fn log_message_size(&self, failed: usize, size: usize) {
        let size32 = u32::try_from(size).unwrap_or(u32::MAX);
        if self.shared.logged_size.swap(size32, Ordering::Relaxed) != size32 {
            tracing::info!(
                "the broker drops messages of {failed} bytes; sending at most {size} bytes per message"
            );
        }
    }

    /// Note a publish that goes to the broker (for `mqtt::size`).
    fn note_sent(&self, topic: &str, len: usize) {
        let packet = u32::try_from(len + topic.len() + PUBLISH_OVERHEAD).unwrap_or(u32::MAX);
        self.shared
            .largest_packet
            .fetch_max(packet, Ordering::Relaxed);
    }

    /// A publish above the packet size limit, which the broker would refuse
    /// (and drop the connection over): dropped here instead, with a debug
    /// log. The stream re-sends its frames smaller.
    fn too_large(&self, topic: &str, len: usize) -> bool {
        let over = self.max_payload(topic).is_some_and(|max| len > max);
        if over {
            tracing::debug!(topic, len, "publish above the maximum packet size dropped");
        }
        over
    }

    /// The broker in use (or being tried) as a URL, for messages: with a
    /// list of brokers, the connection moves along it (`mqtt::failover`).
    pub fn broker_url(&self) -> String {
        let i = self.shared.broker.load(Ordering::Relaxed);
        self.shared.broker_urls.get(i).cloned().unwrap_or_default()
    }

    /// Whether the connection has rate caps (every publish counts).
    pub fn paced(&self) -> bool {
        self.shared.gate.is_some()
    }

    /// Our round trip to the broker, as estimated from the last connect
    /// (zero before one).
    pub fn link_rtt(&self) -> Duration {
        Duration::from_micros(self.shared.link_rtt_us.load(Ordering::Relaxed))
    }

    /// Wait until it is the turn of a publish of `payload` bytes on
    /// `topic` and the connection's rate caps let it go, and count it. At
    /// once without caps.
    async fn pace(&self, topic: &str, payload: usize) {
        if let Some(gate) = &self.shared.gate {
            gate.wait(topic, payload).await;
        }
    }

    /// Publish, waiting for the rate caps and for room in the request
    /// queue.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), TaskEnded> {
        let topic = topic.into();
        let payload = payload.into();
        if self.too_large(&topic, payload.len()) {
            return Ok(());
        }
        self.pace(&topic, payload.len()).await;
        self.enqueue(topic, qos, retain, payload, None).await
    }

    /// [`Client::publish`] that waits at most `queue_wait` for room in the
    /// request queue (time spent waiting for the rate caps not included):
    /// `Ok(false)` when it gave up and dropped the publish.
    pub async fn publish_within(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        queue_wait: Duration,
    ) -> Result<bool, TaskEnded> {
        let topic = topic.into();
        let payload = payload.into();
        if self.too_large(&topic, payload.len()) {
            return Ok(true);
        }
        self.pace(&topic, payload.len()).await;
        let queued = self.enqueue(topic, qos, retain, payload, None);
        match tokio::time::timeout(queue_wait, queued).await {
            Ok(r) => r.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Hand a publish to the event loop, waiting for room in its queue.
    /// `expiry`: MQTT 5's Message Expiry Interval in seconds, if any.
    async fn enqueue(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Bytes,
        expiry: Option<u32>,
    ) -> Result<(), TaskEnded> {
        loop {
            // Checked again after a replacement: the limit may have fallen
            // while this waited for room (see `mqtt::size`).
            if self.too_large(&topic, payload.len()) {
                return Ok(());
            }
            self.note_sent(&topic, payload.len());
            let (inner, epoch) = self.shared.current();
            let sent = match inner {
                Inner::V4(c) => c
                    .publish_bytes(topic.clone(), v4_qos(qos), retain, payload.clone())
                    .await
                    .is_ok(),
                Inner::V5(c) => match expiry {
                    None => c
                        .publish_bytes(topic.clone(), v5_qos(qos), retain, payload.clone())
                        .await
                        .is_ok(),
                    Some(e) => c
                        .publish_with_properties(
                            topic.clone(),
                            v5_qos(qos),
                            retain,
                            payload.clone(),
                            expiring(e),
                        )
                        .await
                        .is_ok(),
                },
            };
            if sent {
                return Ok(());
            }
            if self.shared.epoch.load(Ordering::SeqCst) == epoch {
                return Err(TaskEnded);
            }
        }
    }

    /// Publish if the request queue has room; `Err` when it is full or the
    /// connection task is gone. Under rate caps it joins a short queue of
    /// its own that is sent at the caps' pace, in order, and like any small
    /// frame ahead of waiting bulk chunks (`Err` when full).
    pub fn try_publish(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), TaskEnded> {
        self.try_publish_expiring(topic, qos, retain, payload, None)
    }

    /// [`Client::try_publish`] with MQTT 5's Message Expiry Interval: the
    /// broker drops the message (a retained one too) `expiry` after it was
    /// published. Over MQTT 3.1.1 it never expires.
    pub fn try_publish_expiring(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        expiry: Option<Duration>,
    ) -> Result<(), TaskEnded> {
        let expiry = expiry.map(|e| u32::try_from(e.as_secs()).unwrap_or(u32::MAX));
        let topic = topic.into();
        let payload = payload.into();
        if self.too_large(&topic, payload.len()) {
            return Ok(());
        }
        if let Some(control) = &self.shared.control {
            let req = Request {
                topic,
                qos,
                retain,
                payload,
                expiry,
            };
            return control.try_send(req).map_err(|_| TaskEnded);
        }
        self.note_sent(&topic, payload.len());
        let sent = match self.shared.current().0 {
            Inner::V4(c) => c
                .try_publish(topic, v4_qos(qos), retain, payload.to_vec())
                .is_ok(),
            Inner::V5(c) => match expiry {
                None => c.try_publish(topic, v5_qos(qos), retain, payload).is_ok(),
                Some(e) => c
                    .try_publish_with_properties(topic, v5_qos(qos), retain, payload, expiring(e))
                    .is_ok(),
            },
        };
        sent.then_some(()).ok_or(TaskEnded)
    }

    /// Subscribe to one filter.
    pub async fn subscribe(&self, filter: impl Into<String>, qos: QoS) -> Result<(), TaskEnded> {
        self.subscribe_many(vec![filter.into()], qos).await
    }

    /// Subscribe to several filters in one SUBSCRIBE.
    pub async fn subscribe_many(&self, filters: Vec<String>, qos: QoS) -> Result<(), TaskEnded> {
        loop {
            let (inner, epoch) = self.shared.current();
            let sent = match inner {
                Inner::V4(c) => c.subscribe_many(v4_filters(&filters, qos)).await.is_ok(),
                Inner::V5(c) => c.subscribe_many(v5_filters(&filters, qos)).await.is_ok(),
            };
            if sent {
                return Ok(());
            }
            if self.shared.epoch.load(Ordering::SeqCst) == epoch {
                return Err(TaskEnded);
            }
        }
    }

    /// Queue one SUBSCRIBE for several filters if the request channel has
    /// room now; false if it has not (or the event loop is gone).
    pub fn try_subscribe_many(&self, filters: &[String], qos: QoS) -> bool {
        match self.shared.current().0 {
            Inner::V4(c) => c.try_subscribe_many(v4_filters(filters, qos)).is_ok(),
            Inner::V5(c) => c.try_subscribe_many(v5_filters(filters, qos)).is_ok(),
        }
    }

    /// This process was just stopped for `stopped` (a laptop's sleep): end
    /// the broker connection at once if it is older than the stop, so that
    /// a new one is made, since the old one may lead into a network that
    /// is gone and the link timeout would take seconds to find out. False
    /// if there is no such connection: the socket is not known (then the
    /// link timeout does it), or a newer one is up already (every session
    /// of an agent hears of the same stop; the first one replaces).
    pub fn replace_after_stop(&self, stopped: Duration) -> bool {
        let now = Instant::now();
        let began = now.checked_sub(stopped).unwrap_or(now);
        self.shared
            .socket
            .lock()
            .expect("no holder panics")
            .shut(began)
    }

    /// Queue a DISCONNECT behind everything already queued.
    pub async fn disconnect(&self) -> Result<(), TaskEnded> {
        let sent = match self.shared.current().0 {
            Inner::V4(c) => c.disconnect().await.is_ok(),
            Inner::V5(c) => c.disconnect().await.is_ok(),
        };
        sent.then_some(()).ok_or(TaskEnded)
    }
}

/// MQTT 5 publish properties with only a Message Expiry Interval.
fn expiring(secs: u32) -> rumqttc::v5::mqttbytes::v5::PublishProperties {
    rumqttc::v5::mqttbytes::v5::PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    }
}

fn v4_filters(filters: &[String], qos: QoS) -> impl Iterator<Item = rumqttc::SubscribeFilter> + '_ {
    filters
        .iter()
        .map(move |f| rumqttc::SubscribeFilter::new(f.clone(), v4_qos(qos)))
}

fn v5_filters(
    filters: &[String],
    qos: QoS,
) -> impl Iterator<Item = rumqttc::v5::mqttbytes::v5::Filter> + '_ {
    filters
        .iter()
        .map(move |f| rumqttc::v5::mqttbytes::v5::Filter::new(f, v5_qos(qos)))
}

/// Send what [`Client::try_publish`] queued behind the rate caps, in order,
/// until every client is gone (it holds none itself, so it does not keep
/// the connection alive).
pub(super) async fn send_control(shared: Weak<Shared>, mut queue: mpsc::Receiver<Request>) {
    while let Some(r) = queue.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let client = Client { shared };
        if client.too_large(&r.topic, r.payload.len()) {
            continue;
        }
        client.pace(&r.topic, r.payload.len()).await;
        let queued = client.enqueue(r.topic, r.qos, r.retain, r.payload, r.expiry);
        if queued.await.is_err() {
            return;
        }
    }
}
