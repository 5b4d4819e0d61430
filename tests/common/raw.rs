//! A bare MQTT client, for what the binaries never do: eavesdrop, replay,
//! flood.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};

use super::process::wait_until;

/// rumqttc on a plain TCP connection to 127.0.0.1; received publishes go to
/// a channel, publish acknowledgements are counted.
pub struct Raw {
    client: Client,
    messages: mpsc::Receiver<(String, Vec<u8>)>,
    subacks: mpsc::Receiver<Vec<SubscribeReasonCode>>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl Raw {
    /// Connect as `client_id` (with `login` if given); panics unless the
    /// broker accepts within 10 s.
    pub fn connect(port: u16, client_id: &str, login: Option<(&str, &str)>) -> Raw {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        // Room for the oversized garbage of the flood test.
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_inflight(100);
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(opts, 256);
        let (msg_tx, messages) = mpsc::channel();
        let (sub_tx, subacks) = mpsc::channel();
        let (conn_tx, conn_rx) = mpsc::channel();
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let (acks, fail) = (acked.clone(), failed.clone());
        thread::spawn(move || {
            for event in connection.iter() {
                // Send errors below mean the test dropped the Raw; stop then.
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = conn_tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if msg_tx.send((p.topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let _ = sub_tx.send(ack.return_codes);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // One connection only: a test client that reconnects
                        // silently would hide what the broker did.
                        fail.store(true, Ordering::Relaxed);
                        let _ = conn_tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        match conn_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("test MQTT client {client_id}: {e}"),
            Err(_) => panic!("test MQTT client {client_id}: no CONNACK within 10 s"),
        }
        Raw {
            client,
            messages,
            subacks,
            acked,
            failed,
        }
    }

    /// Subscribe (QoS 1) and return the broker's answer per filter.
    pub fn subscribe(&self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce)),
            )
            .expect("queue SUBSCRIBE");
        self.subacks
            .recv_timeout(Duration::from_secs(10))
            .expect("SUBACK within 10 s")
    }

    /// Queue a QoS 1 publish (blocks while the request queue is full).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .expect("queue PUBLISH");
    }

    /// Wait until `n` publishes have been acknowledged by the broker.
    pub fn wait_acked(&self, n: u64, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.acked.load(Ordering::Relaxed) >= n || self.failed.load(Ordering::Relaxed)
        }) && !self.failed.load(Ordering::Relaxed)
    }

    /// Everything received within `window` from now.
    pub fn collect(&self, window: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.messages.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(_) => break,
            }
        }
        got
    }

    /// Everything received so far, without waiting.
    pub fn drain(&self) -> Vec<(String, Vec<u8>)> {
        self.messages.try_iter().collect()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // The event loop may be gone already; nothing to clean up then.
        let _ = self.client.disconnect();
    }
}
