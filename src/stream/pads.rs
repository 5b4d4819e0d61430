//! What the stream knows for the PADs the tunnel publishes behind its
//! frames (`tunnel::pad_after`): which way a transfer goes, what the
//! broker's Nagle would hold back (`nagle`), what the peer paid for, and
//! the peer's asks (`pad_ask`).

use std::time::Duration;

use tokio::time::Instant;

use super::Stream;
#[cfg(doc)]
use super::{ASK_PERIOD, RECEIVER_RATIO};

/// The most PADs behind held frames ([`Stream::pad_credit`]) that the
/// peer's DATA frames can have paid for in advance: a typist's burst of
/// keys before the echoes come back.
pub const PAD_CREDIT_MAX: u8 = 8;

impl Stream {
    /// Whether this end has lately received at least [`RECEIVER_RATIO`]
    /// times what it sent: the receiving end of a bulk transfer now.
    pub fn receiving(&mut self, now: Instant) -> bool {
        let (sent, _, _) = self.send.counters();
        self.direction
            .receiving(now, sent, self.recv.bytes_received())
    }

    /// Whether a frame published now would wait on the broker's
    /// connection to the peer behind our previous one's last segment (a
    /// stock mosquitto leaves Nagle's algorithm on: `nagle`).
    pub fn broker_holds(&self, now: Instant) -> bool {
        self.nagle.holds(now)
    }

    /// Frames went out at `now` (a frame and its PAD), the peer
    /// `peer_rtt` from the broker ([`Stream::broker_holds`]).
    pub fn on_published(&mut self, now: Instant, peer_rtt: Duration) {
        self.nagle.published(now, peer_rtt);
    }

    /// The window is in a drain: it measures the path's round trip
    /// (`congestion::DRAIN_PERIOD`), so an agent's frames get a PAD behind
    /// them on a far path (`tunnel::pad_after`).
    pub fn draining(&self) -> bool {
        self.send.draining()
    }

    /// A bulk chunk (a DATA message of at least [`super::congestion::MIN_CHUNK`]
    /// bytes, as the tunnel counts it for its sink) went out at `now`.
    pub fn on_bulk_sent(&mut self, now: Instant) {
        self.last_bulk = Some(now);
    }

    /// How long ago the last bulk chunk went out ([`Stream::on_bulk_sent`]),
    /// if one did.
    pub fn since_bulk(&self, now: Instant) -> Option<Duration> {
        self.last_bulk.map(|t| now.saturating_duration_since(t))
    }

    /// Whether the peer's DATA frames have paid for a PAD behind a frame
    /// the broker would hold: each pays for one, up to [`PAD_CREDIT_MAX`]
    /// ahead, and each PAD spends one. So the PADs that make replies leave
    /// at once are bounded by what the peer sends, and output that answers
    /// nothing (a log scrolling by) gets at most that many.
    pub fn pad_credit(&self) -> bool {
        self.pad_credit > 0
    }

    /// A PAD frame went out behind the last frame (counted for the log; it
    /// spends a credit, if any).
    pub fn count_pad(&mut self) {
        self.pads += 1;
        self.pad_credit = self.pad_credit.saturating_sub(1);
    }

    /// Whether the peer asked us lately to pad our small frames
    /// (`protocol::PAD_ASK`, see `pad_ask`).
    pub fn pads_asked(&self, now: Instant) -> bool {
        self.pad_asks.asked(now)
    }

    /// Whether to ask the peer for pads now, given that our broker link
    /// carries a bulk transfer out: a peer that sent small DATA frames
    /// since the last ask, at most once per [`ASK_PERIOD`]. Counts the ask
    /// as sent.
    pub fn pad_ask_due(&mut self, now: Instant) -> bool {
        self.pad_asks.ask_due(now)
    }
}
