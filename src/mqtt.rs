//! The MQTT connection owner: one task polls the rumqttc `EventLoop`, keeps
//! the connection up (reconnect with backoff, resubscribe) and hands incoming
//! publishes to one bounded channel, lossy for the tunnel and lossless for
//! the listing ([`Inbox`]).
//! Everything else talks to the broker through a cloned `AsyncClient`.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions,
    Outgoing, Packet, Publish, QoS, StateError, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Broker, BrokerAddr};
use crate::protocol::{Delivery, MAX_PACKET};

/// Keepalive towards the broker: a silently dead TCP connection is noticed
/// within 2 × this (rumqttc gives up when the next ping is due and the last
/// one is unanswered); short enough to resume quickly, long enough for slow
/// links. The agent sets a longer one (`agent::KEEP_ALIVE`).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Requests (publishes, subscribes) queued towards the event loop. Session
/// tasks wait when it is full, which is the backpressure we want.
const REQUEST_CAPACITY: usize = 512;
/// QoS 1 publishes awaiting PUBACK. Above the sum of the sessions' windows
/// in chunks for typical use, so the windows, not this, limit throughput.
const INFLIGHT: u16 = 512;
/// First reconnect delay; doubles up to [`BACKOFF_MAX`], with jitter.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between reconnect attempts: an agent started before its
/// broker comes online within this of the broker starting.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// TCP (and TLS) connect timeout towards the broker, in seconds.
const CONNECT_TIMEOUT_SECS: u64 = 5;
/// How long a closing client waits for its last frames to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the rest of the program needs to know about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet.
    Connecting,
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

/// The connection task is gone: the program is shutting down, or the task
/// ended with an error it logged. Every caller that waits on the connection
/// reports this one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the MQTT connection task ended")]
pub struct TaskEnded;

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
    pub client: AsyncClient,
    pub state: watch::Receiver<LinkState>,
    task: JoinHandle<()>,
}

/// Options common to agent and proxy.
pub fn options(client_id: &str, broker: &Broker) -> anyhow::Result<MqttOptions> {
    let addr = &broker.addr;
    let mut o = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    if let Some(files) = &broker.tls {
        let config = crate::tls::client_config(files)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    o.set_keep_alive(KEEP_ALIVE);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_inflight(INFLIGHT);
    o.set_request_channel_capacity(REQUEST_CAPACITY);
    o.set_clean_session(true);
    if let Some((u, p)) = broker.credentials() {
        o.set_credentials(u, p);
    }
    Ok(o)
}

impl Mqtt {
    /// Start the connection task. Incoming publishes go to `incoming`; when it
    /// is full they are dropped (the tunnel retransmits).
    pub fn spawn(
        options: MqttOptions,
        addr: BrokerAddr,
        subscriptions: Vec<String>,
        incoming: mpsc::Sender<Publish>,
    ) -> Mqtt {
        Mqtt::spawn_with(options, addr, subscriptions, incoming, Inbox::TUNNEL)
    }

    /// [`Mqtt::spawn`] with the subscription QoS and channel behaviour of
    /// `inbox`.
    pub fn spawn_with(
        options: MqttOptions,
        addr: BrokerAddr,
        subscriptions: Vec<String>,
        incoming: mpsc::Sender<Publish>,
        inbox: Inbox,
    ) -> Mqtt {
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let mut net = NetworkOptions::new();
        // Keystrokes and acks are small messages: never wait for Nagle.
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
        eventloop.set_network_options(net);
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let task = tokio::spawn(run(
            eventloop,
            client.clone(),
            addr,
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
    /// broker is down wait [`FLUSH_TIMEOUT`] longer for the error.
    pub async fn close(self) {
        let mut task = self.task;
        if !matches!(*self.state.borrow(), LinkState::Up { .. }) {
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

async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    addr: BrokerAddr,
    subscriptions: Vec<String>,
    incoming: mpsc::Sender<Publish>,
    inbox: Inbox,
    state: watch::Sender<LinkState>,
) {
    let mut generation = 0u64;
    let mut attempt = 0u32;
    let mut awaiting_suback = false;
    let mut dropped = 0u64;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                awaiting_suback = true;
                // Queue from another task: awaiting the request channel here
                // would deadlock, since only this loop drains it.
                let client = client.clone();
                let subs = subscriptions.clone();
                tokio::spawn(async move {
                    let filters = subs
                        .into_iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t, inbox.qos));
                    // An error means the event loop ended; nothing left to do.
                    let _ = client.subscribe_many(filters).await;
                });
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) if awaiting_suback => {
                awaiting_suback = false;
                let denied: Vec<String> = ack
                    .return_codes
                    .iter()
                    .zip(&subscriptions)
                    .filter(|(c, _)| matches!(c, SubscribeReasonCode::Failure))
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
            Ok(Event::Incoming(Packet::Publish(p))) if inbox.lossless => {
                if incoming.send(p).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => match incoming.try_send(p) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Safe to drop: the sender retransmits what we never ack.
                    dropped += 1;
                    tracing::debug!(dropped, "incoming queue full, dropped a message");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                attempt += 1;
                let reason = describe(&e, &addr);
                if matches!(e, ConnectionError::RequestsDone) {
                    return;
                }
                let delay = backoff(attempt);
                // Logged by whoever watches the state: the agent warns, the
                // proxy reports the first failure as its one-line error.
                tracing::debug!(broker = %addr, attempt, retry_in = ?delay, "{reason}");
                state.send_replace(LinkState::Down {
                    reason,
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

/// A one-line, user-facing description of a connection failure.
pub fn describe(e: &ConnectionError, addr: &BrokerAddr) -> String {
    if let Some(trust) = &addr.tls_trust {
        if let Some(why) = crate::tls::explain(e, &addr.host, trust) {
            return format!("could not connect to broker {addr}: {why}");
        }
    }
    match e {
        ConnectionError::Io(io) => io_reason(io, addr),
        ConnectionError::MqttState(StateError::Io(io)) => io_reason(io, addr),
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                // mosquitto 2 (and others) answer a wrong password with 5
                // "not authorized" instead of 4, so as not to tell which of
                // user and password was wrong.
                ConnectReturnCode::NotAuthorized if addr.login => "bad user name or password",
                ConnectReturnCode::NotAuthorized => {
                    "not authorized (the broker wants a user name and password: --user, MQTT_PASSWORD)"
                }
                ConnectReturnCode::BadClientId => "client id rejected",
                ConnectReturnCode::ServiceUnavailable => "server unavailable",
                ConnectReturnCode::RefusedProtocolVersion => "unsupported protocol version",
                ConnectReturnCode::Success => "unexpected success code",
            };
            format!("broker refused the connection: {why}")
        }
        ConnectionError::NetworkTimeout => format!("could not reach broker {addr}: timed out"),
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            format!("connection to broker {addr} closed")
        }
        ConnectionError::MqttState(StateError::AwaitPingResp) => {
            format!("broker {addr} stopped answering")
        }
        other => format!("connection to broker {addr} failed: {other}"),
    }
}

fn io_reason(io: &std::io::Error, addr: &BrokerAddr) -> String {
    use std::io::ErrorKind::*;
    let why = match io.kind() {
        ConnectionRefused => "connection refused".to_owned(),
        ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe => {
            return format!("connection to broker {addr} closed");
        }
        TimedOut => "timed out".to_owned(),
        _ => {
            let s = io.to_string();
            // rumqttc wraps resolver errors; keep the innermost text short.
            s.strip_prefix("failed to lookup address information: ")
                .map(|r| format!("cannot resolve host: {r}"))
                .unwrap_or(s)
        }
    };
    format!("could not reach broker {addr}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= BACKOFF_MIN && backoff(1) >= BACKOFF_MIN / 2);
        for a in 1..40 {
            assert!(backoff(a) <= BACKOFF_MAX);
        }
        assert!(backoff(30) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn messages_name_the_broker_and_the_cause() {
        let mut addr = BrokerAddr {
            host: "b.example".into(),
            port: 1883,
            tls_trust: None,
            login: false,
        };
        let refused =
            ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            describe(&refused, &addr),
            "could not reach broker b.example:1883: connection refused"
        );
        let refused = |code| describe(&ConnectionError::ConnectionRefused(code), &addr);
        let cases = [
            (
                ConnectReturnCode::BadUserNamePassword,
                "broker refused the connection: bad user name or password",
            ),
            (
                ConnectReturnCode::NotAuthorized,
                "broker refused the connection: not authorized (the broker wants a user name \
                 and password: --user, MQTT_PASSWORD)",
            ),
        ];
        for (code, line) in cases {
            assert_eq!(refused(code), line);
        }
        addr.login = true;
        let refused = |code| describe(&ConnectionError::ConnectionRefused(code), &addr);
        for code in [
            ConnectReturnCode::BadUserNamePassword,
            ConnectReturnCode::NotAuthorized,
        ] {
            assert_eq!(
                refused(code),
                "broker refused the connection: bad user name or password"
            );
        }
    }
}
