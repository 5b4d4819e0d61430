//! What the rest of the program holds of the connection: a cloneable
//! [`Client`] that publishes and subscribes, and the messages it receives,
//! the same whichever MQTT version the connection speaks.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

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
}

impl Shared {
    pub(super) fn new(inner: Inner) -> Shared {
        Shared {
            inner: RwLock::new(inner),
            epoch: AtomicU64::new(0),
            broker_max_packet: AtomicU32::new(0),
        }
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
    /// The largest payload a publish on `topic` may carry under the broker's
    /// Maximum Packet Size, if it announced one.
    pub fn max_payload(&self, topic: &str) -> Option<usize> {
        match self.shared.broker_max_packet.load(Ordering::Relaxed) {
            0 => None,
            max => Some((max as usize).saturating_sub(topic.len() + PUBLISH_OVERHEAD)),
        }
    }

    /// A publish the broker would refuse (and rumqttc would drop the
    /// connection over): dropped here instead, with a debug log.
    fn too_large(&self, topic: &str, len: usize) -> bool {
        let over = self.max_payload(topic).is_some_and(|max| len > max);
        if over {
            tracing::debug!(
                topic,
                len,
                "publish above the broker's maximum packet size dropped"
            );
        }
        over
    }

    /// Publish, waiting for room in the request queue.
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
        loop {
            let (inner, epoch) = self.shared.current();
            let sent = match inner {
                Inner::V4(c) => c
                    .publish_bytes(topic.clone(), v4_qos(qos), retain, payload.clone())
                    .await
                    .is_ok(),
                Inner::V5(c) => c
                    .publish_bytes(topic.clone(), v5_qos(qos), retain, payload.clone())
                    .await
                    .is_ok(),
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
    /// connection task is gone.
    pub fn try_publish(
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
        let sent = match self.shared.current().0 {
            Inner::V4(c) => c
                .try_publish(topic, v4_qos(qos), retain, payload.to_vec())
                .is_ok(),
            Inner::V5(c) => c.try_publish(topic, v5_qos(qos), retain, payload).is_ok(),
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
                Inner::V4(c) => c
                    .subscribe_many(
                        filters
                            .iter()
                            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), v4_qos(qos))),
                    )
                    .await
                    .is_ok(),
                Inner::V5(c) => c
                    .subscribe_many(
                        filters
                            .iter()
                            .map(|f| rumqttc::v5::mqttbytes::v5::Filter::new(f, v5_qos(qos))),
                    )
                    .await
                    .is_ok(),
            };
            if sent {
                return Ok(());
            }
            if self.shared.epoch.load(Ordering::SeqCst) == epoch {
                return Err(TaskEnded);
            }
        }
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
