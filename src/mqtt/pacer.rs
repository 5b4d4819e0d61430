//! Per-connection rate caps: how long a publish must wait so that the
//! connection never publishes more messages per second, or more bytes per
//! second, than the broker allows (AWS IoT Core: 100 publishes/s and
//! 512 KB/s per connection; EMQX Serverless: 10/s; Azure Event Grid:
//! 1,000/s and 1 MB/s). No I/O and no clock of its own: the caller passes
//! the time, and `client` waits.
//!
//! Two token buckets. A broker that enforces "N publishes in one second"
//! disconnects on the first window that holds N + 1, so the publish bucket
//! is sized from a budget below N: burst `b` plus rate `r` per second is at
//! most [`PUBLISH_FRACTION`] of N, which bounds every one-second window
//! (fixed or sliding) to `b + r` and leaves the rest as slack for packets
//! that left us spread out and reach the broker bunched together. The byte
//! bucket runs at [`BANDWIDTH_FRACTION`] of its cap with a small burst and
//! may go into debt by one packet (a packet larger than the burst must still
//! go), so over any stretch of time the bytes sent stay below the cap and
//! the queue builds here, where the stream sees it, not in the kernel's
//! buffers or the broker's.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Broker;
use crate::protocol::MAX_PACKET;

/// Share of the publish cap we plan to use in any one-second window: the
/// rest absorbs jitter between us and the broker's counter (one publish in
/// ten; at 10/s that is one publish, 1/8 s at the paced rate).
pub const PUBLISH_FRACTION: f64 = 0.9;
/// Publishes the bucket holds, as a share of the budget: a keystroke after
/// a pause goes at once, and a burst cannot eat the whole second's budget.
const PUBLISH_BURST_FRACTION: f64 = 0.1;
/// Share of the byte cap we send at: close enough to reach it (the goal is
/// 0.8 of it end to end), far enough that a broker measuring over a
/// slightly different window does not see us above it.
pub const BANDWIDTH_FRACTION: f64 = 0.95;
/// The byte bucket's burst, in seconds of the paced rate: short, so the
/// broker's own pacing never queues more than this behind us.
const BANDWIDTH_BURST: Duration = Duration::from_millis(50);

/// The caps of one broker connection, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Most PUBLISH packets per second (`--max-publish-rate`).
    pub publishes_per_sec: Option<u32>,
    /// Most bytes per second of MQTT packets (`--max-bandwidth`).
    pub bytes_per_sec: Option<u64>,
}

impl Caps {
    /// The caps configured for `broker`.
    pub fn of(broker: &Broker) -> Caps {
        Caps {
            publishes_per_sec: broker.max_publish_rate,
            bytes_per_sec: broker.max_bandwidth,
        }
    }

    /// No cap at all: publishes are never paced.
    pub fn is_none(&self) -> bool {
        self.publishes_per_sec.is_none() && self.bytes_per_sec.is_none()
    }
}

/// One token bucket: `tokens` refill at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }

    /// When the bucket holds `need` tokens (now, if it does).
    fn ready_at(&mut self, need: f64, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= need {
            return now;
        }
        // Rounded up to the next microsecond: waking a hair early would
        // find the bucket still short and wait again.
        let secs = (need - self.tokens) / self.rate;
        now + Duration::from_micros((secs * 1e6).ceil() as u64)
    }

    fn take(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n;
    }
}

/// The pacer of one connection.
#[derive(Debug, Clone)]
pub struct Pacer {
    publishes: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Pacer {
    /// A pacer for `caps`, full (a first burst may go at once); `None` when
    /// nothing is capped.
    pub fn new(caps: Caps, now: Instant) -> Option<Pacer> {
        if caps.is_none() {
            return None;
        }
        let publishes = caps.publishes_per_sec.map(|n| {
            let (rate, burst) = publish_bucket(n);
            Bucket::new(rate, burst, now)
        });
        let bytes = caps.bytes_per_sec.map(|b| {
            let rate = b as f64 * BANDWIDTH_FRACTION;
            Bucket::new(rate, rate * BANDWIDTH_BURST.as_secs_f64(), now)
        });
        Some(Pacer { publishes, bytes })
    }

    /// When a packet of `len` bytes may go: both buckets allow it. The byte
    /// bucket needs `len` tokens, or a full bucket for a packet larger than
    /// its burst (which then leaves it in debt).
    pub fn ready_at(&mut self, len: usize, now: Instant) -> Instant {
        let mut at = now;
        if let Some(p) = &mut self.publishes {
            at = at.max(p.ready_at(1.0, now));
        }
        if let Some(b) = &mut self.bytes {
            let need = (len as f64).min(b.burst);
            at = at.max(b.ready_at(need, now));
        }
        at
    }

    /// A packet of `len` bytes went at `now` (call when [`Pacer::ready_at`]
    /// said it may).
    pub fn take(&mut self, len: usize, now: Instant) {
        if let Some(p) = &mut self.publishes {
            p.take(1.0, now);
        }
        if let Some(b) = &mut self.bytes {
            b.take(len as f64, now);
        }
    }

    /// Take the tokens for a packet of `len` bytes if it may go now.
    pub fn try_take(&mut self, len: usize, now: Instant) -> bool {
        let ok = self.ready_at(len, now) <= now;
        if ok {
            self.take(len, now);
        }
        ok
    }
}

/// Pure acknowledgements wait this many publish intervals (at the paced
/// rate) for data to ride on, or for more data to acknowledge in one go:
/// under a cap of 10 publishes/s an acknowledgement per chunk would take
/// most of the budget, one per four intervals takes a quarter at most.
const ACK_DELAY_INTERVALS: u32 = 4;
/// Longest delay of a pure acknowledgement under a publish cap: the peer's
/// retransmission timeout allows for it (`stream::Config::ack_delay`), and
/// a window of 1 MiB at 512 KiB/s still keeps the sender busy for 2 s.
const MAX_ACK_DELAY: Duration = Duration::from_millis(500);

/// How long a pure acknowledgement may wait under `caps`: `None` without a
/// publish cap (the stream's default applies).
pub fn ack_delay(caps: Caps) -> Option<Duration> {
    let n = caps.publishes_per_sec?;
    let (rate, _) = publish_bucket(n);
    Some(Duration::from_secs_f64(ACK_DELAY_INTERVALS as f64 / rate).min(MAX_ACK_DELAY))
}

/// The stream's ack delay under `caps`: [`ack_delay`] where that is longer
/// than the stream's `default` (a cap never makes acks more frequent).
pub fn stream_ack_delay(caps: Caps, default: Duration) -> Duration {
    ack_delay(caps).map_or(default, |d| d.max(default))
}

/// Legs of a round trip that may each wait one paced packet's time (one
/// largest packet at the byte cap, or one publish interval, whichever is
/// longer): our chunk through our capped link and through the peer's; the
/// peer's acknowledgement waiting in its pacer behind one of its own frames
/// (twice: the ack a chunk carries was taken when the chunk was queued);
/// and the chunk it rides on through both capped links back.
const PACED_LEGS: u32 = 6;

/// How much longer than usual a round trip may take under `caps` with
/// nothing lost: the acknowledgement delay beyond `default_ack_delay`, plus
/// `PACED_LEGS` paced packets. The retransmission timeout waits that much
/// more, so our own pacing (and the peer's, on the same kind of broker)
/// never looks like a loss. Zero without caps.
pub fn rto_allowance(caps: Caps, default_ack_delay: Duration) -> Duration {
    let acks = ack_delay(caps).map_or(Duration::ZERO, |d| d.saturating_sub(default_ack_delay));
    let packet = caps
        .bytes_per_sec
        .map_or(0.0, |b| MAX_PACKET as f64 / (b as f64 * BANDWIDTH_FRACTION));
    let publish = caps
        .publishes_per_sec
        .map_or(0.0, |n| 1.0 / publish_bucket(n).0);
    acks + Duration::from_secs_f64(packet.max(publish) * PACED_LEGS as f64)
}

/// Under a byte cap, the longest one message may take to go at the paced
/// rate: a keystroke of another session (or the echo of one) waits behind
/// at most one such message in the pacer's queue. Measured behind 512 KiB/s
/// (`scripts/bench-caps`): a keystroke during a download waited 164 ms
/// behind a 64 KiB chunk.
const MESSAGE_TIME: Duration = Duration::from_millis(50);

/// Share of the publish budget that bulk data may need at the byte cap with
/// messages of [`max_packet`]'s size: the rest is left for acks,
/// keystrokes and control frames.
const BULK_PUBLISH_SHARE: f64 = 0.5;

/// The largest MQTT packet worth sending under `caps`: one that goes in
/// `MESSAGE_TIME` at the byte cap, but no smaller than what lets bulk data
/// reach the byte cap with `BULK_PUBLISH_SHARE` of the publish budget.
/// `None` without a byte cap (the packet size limits alone apply).
pub fn max_packet(caps: Caps) -> Option<usize> {
    let bytes = caps.bytes_per_sec? as f64 * BANDWIDTH_FRACTION;
    let prompt = bytes * MESSAGE_TIME.as_secs_f64();
    let enough = caps
        .publishes_per_sec
        .map_or(0.0, |n| bytes / (publish_bucket(n).0 * BULK_PUBLISH_SHARE));
    Some((prompt.max(enough).ceil() as usize).min(MAX_PACKET))
}

/// (rate per second, burst) of the publish bucket for a cap of `n` per
/// second: the budget is [`PUBLISH_FRACTION`] of `n` (at least one), the
/// burst `PUBLISH_BURST_FRACTION` of that (at least one) and the rate the
/// rest, so that no one-second window holds more than the budget. With a
/// budget of one, the rate is half a publish per second: a window of one
/// second then never holds two.
pub fn publish_bucket(n: u32) -> (f64, f64) {
    let budget = (n as f64 * PUBLISH_FRACTION).floor().max(1.0);
    let burst = (budget * PUBLISH_BURST_FRACTION).floor().max(1.0);
    let rate = (budget - burst).max(budget / 2.0);
    (rate, burst)
}

#[cfg(test)]
mod tests;
