//! The two rumqttc APIs (MQTT 3.1.1 in `rumqttc`, MQTT 5 in `rumqttc::v5`)
//! behind one event loop type: options built from our settings, events and
//! failures in our own terms. Nothing outside `mqtt` sees either API.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{NetworkOptions, Outgoing, Proxy, ProxyAuth, ProxyType, TlsConfiguration, Transport};

use super::client::{Inner, Message, QoS};
use super::describe::{describe_v4, describe_v5};
use super::versions::{Remembered, Version};
use crate::config::{Broker, Carrier};
use crate::protocol::MAX_PACKET;

/// Requests (publishes, subscribes) queued towards the event loop. Session
/// tasks wait when it is full, which is the backpressure we want.
const REQUEST_CAPACITY: usize = 512;
/// QoS 1 publishes awaiting PUBACK. Above the sum of the sessions' windows
/// in chunks for typical use, so the windows, not this, limit throughput.
/// With MQTT 5 the broker's Receive Maximum lowers it.
const INFLIGHT: u16 = 512;
/// TCP (and TLS) connect timeout towards the broker, in seconds.
const CONNECT_TIMEOUT_SECS: u64 = 5;
/// How long an MQTT 5 attempt that may still fall back to 3.1.1 waits for
/// the broker's CONNACK (TCP, TLS and WebSocket setup included): long enough
/// for a broker across the world, short enough that a 3.1.1-only broker
/// that never answers costs each `mqtt-proxy` call only this much (set
/// `mqtt-version = "3.1.1"` for such a broker to skip it).
const V5_PROBE_TIMEOUT_SECS: u64 = 3;
/// Largest MQTT packet we publish over WebSocket, whatever the broker
/// allows. mosquitto's `protocol websockets` listener (Debian 12's 2.0.11,
/// libwebsockets 4.1.6 built in) sends a packet of up to 4112 bytes to a
/// WebSocket client at once, but a larger one only 4 KiB at a time, one
/// piece per pass of its main loop, which waits up to 100 ms for activity
/// on its other sockets: 40 KB/s whatever the link (strace shows one
/// 4116-byte `sendto` per 100 ms `epoll_wait` timeout;
/// eclipse-mosquitto/mosquitto#1390). With an independent client (paho-mqtt)
/// subscribed over WebSocket, QoS 0 messages of 4100 bytes (4112-byte
/// packets) arrived at 77 MB/s, of 4101 bytes at 0.04 MB/s. Since the packets
/// mosquitto sends our peer are the ones we publish, we keep them below
/// that, with some margin.
const WS_MAX_PACKET: u32 = 4096;

/// Largest packet we publish unless `--max-message-size` says otherwise.
/// mosquitto (on glibc, as every distribution builds it) holds a QoS 0
/// message about three times while it passes through (the packet read, the
/// stored payload, the packet written); freed together, more than glibc's
/// trim threshold (128 KiB) at the top of the heap is given back to the
/// kernel and the next message faults fresh pages in. With 64 KiB messages
/// a 64 MiB download made mosquitto call `brk` 3,306 times, with 40,000-byte
/// ones 9 times, and a 256 MiB scp download took 1.12-1.32 broker
/// CPU-seconds per GiB instead of 1.60-1.88 (5 alternating runs, same
/// build, `--max-message-size 40000` on the agent). Three such packets stay
/// below 128 KiB with room for mosquitto's own bookkeeping.
pub(super) const DEFAULT_MAX_PACKET: u32 = 40_000;

/// A last will, in our terms.
#[derive(Debug, Clone)]
pub(super) struct Will {
    pub(super) topic: String,
    pub(super) payload: Bytes,
    pub(super) qos: QoS,
    pub(super) retain: bool,
}

/// Everything needed to (re)build an event loop of either version.
#[derive(Clone)]
pub struct Options {
    pub(super) client_id: String,
    /// The broker being connected to, alone (no failover list).
    pub(super) broker: Broker,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    /// Every broker of the list, in order, each alone with its TLS
    /// configuration; `broker` and `tls` are one of them.
    pub(super) brokers: Vec<(Broker, Option<Arc<rustls::ClientConfig>>)>,
    pub(super) will: Option<Will>,
    /// MQTT keepalive; `mqtt::KEEP_ALIVE` (15 s) unless set.
    pub(super) keep_alive: Duration,
    /// Where the version each broker spoke is remembered, if anywhere.
    pub(super) remembered: Option<Remembered>,
}

impl Options {
    /// Start with the version `remembered` says the broker spoke last
    /// time, and remember what it speaks (only with `--mqtt-version` unset).
    pub fn remember_version(&mut self, remembered: Option<Remembered>) {
        self.remembered = remembered;
    }

    /// A keepalive other than the default (`mqtt::KEEP_ALIVE`).
    pub fn set_keep_alive(&mut self, keep_alive: Duration) {
        self.keep_alive = keep_alive;
    }

    /// The message the broker publishes when we vanish without DISCONNECT.
    pub fn set_last_will(
        &mut self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) {
        self.will = Some(Will {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
        });
    }
}

/// The broker's limits from its CONNACK (MQTT 5; none with 3.1.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Limits {
    /// The broker's Maximum Packet Size, lowered by what the transport
    /// carries well ([`WS_MAX_PACKET`]).
    pub(super) max_packet: Option<u32>,
    pub(super) receive_max: Option<u16>,
    pub(super) topic_alias_max: Option<u16>,
}

/// An event loop's events, in our terms.
pub(super) enum Ev {
    ConnAck(Limits),
    /// Per filter of our SUBSCRIBE: granted or not.
    SubAck(Vec<bool>),
    Publish(Message),
    /// Our DISCONNECT went out.
    Disconnected,
    /// Another packet from the broker.
    Read,
    /// Something we sent.
    Other,
}

/// How a poll failed.
pub(super) struct Failure {
    /// The one line a user reads.
    pub(super) reason: String,
    /// The client handles are all gone: stop.
    pub(super) done: bool,
    /// What it says about the broker's support of MQTT 5, if we were
    /// connecting with it.
    pub(super) v5: V5Verdict,
}

/// What a failed MQTT 5 connect attempt says about the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum V5Verdict {
    /// It refused the protocol version (a reason code, or a CONNACK in
    /// 3.1.1's format that MQTT 5 cannot parse).
    Refused,
    /// It closed the connection, or stayed silent, instead of answering
    /// (some 3.1.1-only brokers do either, amqtt 0.11 stays silent); so
    /// does a network fault.
    NoAnswer,
    /// Nothing about the version.
    Unrelated,
}

/// One event loop of either API.
pub(super) enum Engine {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// The largest packet `carrier` carries well: [`WS_MAX_PACKET`] over
/// WebSocket, in both directions (what mosquitto sends us is what our peer
/// published, so the peer must keep to it too: we tell it in our frames).
pub(super) fn carrier_max_packet(carrier: &Carrier) -> Option<u32> {
    match carrier {
        Carrier::Tcp => None,
        Carrier::WebSocket { .. } => Some(WS_MAX_PACKET),
    }
}

/// The packet size limit for our publishes: the broker's Maximum Packet
/// Size (MQTT 5, `None` if it announced none), lowered to
/// [`WS_MAX_PACKET`] over WebSocket.
fn max_packet(carrier: &Carrier, announced: Option<u32>) -> Option<u32> {
    let carrier = carrier_max_packet(carrier);
    match (announced, carrier) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// Host (or WebSocket URL), port and rumqttc transport for `o`.
fn endpoint(o: &Options) -> (String, u16, Transport) {
    let addr = &o.broker.addr;
    let tls = o.tls.clone().map(TlsConfiguration::Rustls);
    match (&o.broker.carrier, tls) {
        (Carrier::Tcp, None) => (addr.host.clone(), addr.port, Transport::Tcp),
        (Carrier::Tcp, Some(t)) => (addr.host.clone(), addr.port, Transport::Tls(t)),
        (Carrier::WebSocket { path }, tls) => {
            let host = if addr.host.contains(':') {
                format!("[{}]", addr.host)
            } else {
                addr.host.clone()
            };
            let scheme = if tls.is_some() { "wss" } else { "ws" };
            let url = format!("{scheme}://{host}:{}{path}", addr.port);
            let transport = match tls {
                Some(t) => Transport::Wss(t),
                None => Transport::Ws,
            };
            (url, addr.port, transport)
        }
    }
}

/// Round trips to the broker that connecting takes: TCP, then CONNECT and
/// CONNACK, plus one for TLS (1.3), one for the WebSocket upgrade and one
/// for an HTTP proxy's CONNECT. Dividing the connect time by it estimates
/// the round trip; name resolution and older TLS make that an
/// overestimate, never an underestimate.
pub(super) fn handshake_round_trips(broker: &Broker) -> u32 {
    2 + u32::from(broker.tls.is_some())
        + u32::from(matches!(broker.carrier, Carrier::WebSocket { .. }))
        + u32::from(broker.http_proxy.is_some())
}

fn proxy(o: &Options) -> Option<Proxy> {
    o.broker.http_proxy.as_ref().map(|p| Proxy {
        ty: ProxyType::Http,
        auth: match &p.credentials {
            Some((user, password)) => ProxyAuth::Basic {
                username: user.clone(),
                password: password.expose().to_owned(),
            },
            None => ProxyAuth::None,
        },
        addr: p.host.clone(),
        port: p.port,
    })
}

fn network() -> NetworkOptions {
    let mut net = NetworkOptions::new();
    // Keystrokes and acks are small messages: never wait for Nagle.
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    net
}

impl Engine {
    /// A new client and event loop speaking `version`. `probe`: MQTT 5 that
    /// falls back to 3.1.1 if the broker does not answer; it waits
    /// [`V5_PROBE_TIMEOUT_SECS`] for the CONNACK instead of the full connect
    /// timeout, since some 3.1.1-only brokers never answer an MQTT 5 CONNECT.
    pub(super) fn new(version: Version, o: &Options, probe: bool) -> (Inner, Engine) {
        let (host, port, transport) = endpoint(o);
        match version {
            Version::V311 => {
                let mut m = rumqttc::MqttOptions::new(&o.client_id, host, port);
                m.set_transport(transport);
                m.set_keep_alive(o.keep_alive);
                m.set_max_packet_size(MAX_PACKET, MAX_PACKET);
                m.set_inflight(INFLIGHT);
                m.set_request_channel_capacity(REQUEST_CAPACITY);
                m.set_clean_session(true);
                if let Some((u, p)) = o.broker.credentials() {
                    m.set_credentials(u, p);
                }
                if let Some(w) = &o.will {
                    let qos = match w.qos {
                        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
                        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                    };
                    m.set_last_will(rumqttc::LastWill::new(
                        &w.topic,
                        w.payload.clone(),
                        qos,
                        w.retain,
                    ));
                }
                if let Some(p) = proxy(o) {
                    m.set_proxy(p);
                }
                let (client, mut ev) = rumqttc::AsyncClient::new(m, REQUEST_CAPACITY);
                ev.set_network_options(network());
                (Inner::V4(client), Engine::V4(Box::new(ev)))
            }
            Version::V5 => {
                let mut m = rumqttc::v5::MqttOptions::new(&o.client_id, host, port);
                m.set_transport(transport);
                m.set_keep_alive(o.keep_alive);
                // Advertised in CONNECT: an MQTT 5 broker then never sends
                // us a packet above it (§3.1.2.11.4; rumqttc would drop the
                // connection over one). It is also rumqttc's incoming limit.
                m.set_max_packet_size(Some(MAX_PACKET as u32));
                // The broker's Receive Maximum lowers this further (rumqttc
                // takes the smaller of the two).
                m.set_outgoing_inflight_upper_limit(INFLIGHT);
                m.set_request_channel_capacity(REQUEST_CAPACITY);
                m.set_clean_start(true);
                m.set_connection_timeout(if probe {
                    V5_PROBE_TIMEOUT_SECS
                } else {
                    CONNECT_TIMEOUT_SECS
                });
                m.set_network_options(network());
                if let Some((u, p)) = o.broker.credentials() {
                    m.set_credentials(u, p);
                }
                if let Some(w) = &o.will {
                    let qos = match w.qos {
                        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    };
                    m.set_last_will(p5::LastWill::new(
                        &w.topic,
                        w.payload.clone(),
                        qos,
                        w.retain,
                        None,
                    ));
                }
                if let Some(p) = proxy(o) {
                    m.set_proxy(p);
                }
                let (client, ev) = rumqttc::v5::AsyncClient::new(m, REQUEST_CAPACITY);
                (Inner::V5(client), Engine::V5(Box::new(ev)))
            }
        }
    }

    pub(super) fn version(&self) -> Version {
        match self {
            Engine::V4(_) => Version::V311,
            Engine::V5(_) => Version::V5,
        }
    }

    /// The next event; progresses the connection (and reconnects) only
    /// while polled.
    pub(super) async fn poll(&mut self, broker: &Broker) -> Result<Ev, Failure> {
        match self {
            Engine::V4(ev) => {
                use rumqttc::{Event, Packet, SubscribeReasonCode};
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Ev::ConnAck(Limits {
                        max_packet: max_packet(&broker.carrier, None),
                        ..Limits::default()
                    })),
                    Ok(Event::Incoming(Packet::SubAck(ack))) => Ok(Ev::SubAck(
                        ack.return_codes
                            .iter()
                            .map(|c| !matches!(c, SubscribeReasonCode::Failure))
                            .collect(),
                    )),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Ok(Ev::Publish(Message::new(p.topic, p.payload, p.retain)))
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(Ev::Disconnected),
                    Ok(Event::Incoming(_)) => Ok(Ev::Read),
                    Ok(Event::Outgoing(_)) => Ok(Ev::Other),
                    Err(e) => Err(Failure {
                        done: matches!(e, rumqttc::ConnectionError::RequestsDone),
                        reason: describe_v4(&e, broker),
                        v5: V5Verdict::Unrelated,
                    }),
                }
            }
            Engine::V5(ev) => {
                use p5::{ConnectReturnCode as C, Packet};
                use rumqttc::v5::{ConnectionError as E, Event, StateError};
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        let limits = ack.properties.map_or(Limits::default(), |p| Limits {
                            max_packet: p.max_packet_size,
                            receive_max: p.receive_max,
                            topic_alias_max: p.topic_alias_max,
                        });
                        let limits = Limits {
                            max_packet: max_packet(&broker.carrier, limits.max_packet),
                            ..limits
                        };
                        Ok(Ev::ConnAck(limits))
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => Ok(Ev::SubAck(
                        ack.return_codes
                            .iter()
                            .map(|c| matches!(c, p5::SubscribeReasonCode::Success(_)))
                            .collect(),
                    )),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        match String::from_utf8(p.topic.to_vec()) {
                            Ok(topic) => Ok(Ev::Publish(Message::new(topic, p.payload, p.retain))),
                            // MQTT requires UTF-8 topics; a broker that
                            // breaks that has nothing for us.
                            Err(_) => Ok(Ev::Read),
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(Ev::Disconnected),
                    Ok(Event::Incoming(_)) => Ok(Ev::Read),
                    Ok(Event::Outgoing(_)) => Ok(Ev::Other),
                    Err(e) => {
                        let v5 = match &e {
                            E::ConnectionRefused(
                                C::UnsupportedProtocolVersion | C::RefusedProtocolVersion,
                            )
                            | E::MqttState(StateError::Deserialization(_))
                            | E::NotConnAck(_) => V5Verdict::Refused,
                            E::MqttState(StateError::ConnectionAborted) | E::Timeout(_) => {
                                V5Verdict::NoAnswer
                            }
                            E::Io(io) | E::MqttState(StateError::Io(io))
                                if matches!(
                                    io.kind(),
                                    std::io::ErrorKind::UnexpectedEof
                                        | std::io::ErrorKind::ConnectionReset
                                        | std::io::ErrorKind::BrokenPipe
                                        | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                V5Verdict::NoAnswer
                            }
                            _ => V5Verdict::Unrelated,
                        };
                        Err(Failure {
                            done: matches!(e, E::RequestsDone),
                            reason: describe_v5(&e, broker),
                            v5,
                        })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
