//! What the broker's Nagle does to our frames on their way to the peer.
//!
//! A stock mosquitto leaves Nagle's algorithm on: on its connection to the
//! peer, a partial segment waits while an earlier partial one is
//! unacknowledged (Linux's Minshall variant), that is for up to a round
//! trip of the peer's own link. Full segments go at once. Every frame we
//! publish ends in a partial segment, so a frame published less than that
//! round trip after the previous one waits, whole if it is small, unless
//! a PAD behind it fills its segments (`tunnel::pad_after`).
//!
//! [`BrokerNagle`] follows the one partial segment in flight and the one
//! held behind it, from the times we published and the peer's round trip
//! to the broker. It cannot see the broker's own packets to the peer (acks
//! of the peer's QoS 1 publishes); a guess that errs costs a PAD, or a
//! frame held as before.

use std::time::Duration;

use tokio::time::Instant;

#[cfg(test)]
mod tests;

/// The broker's connection to the peer, as our publishes leave it.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerNagle(Option<Tail>);

#[derive(Debug, Clone, Copy)]
struct Tail {
    /// When the partial segment in flight is acknowledged.
    acked_at: Instant,
    /// A later frame's partial segment waits for that, then leaves.
    waiting: bool,
    /// The peer's round trip to the broker when it was sent.
    peer_rtt: Duration,
}

impl Tail {
    /// As of `now`: a waiting segment left once the one in flight was
    /// acknowledged, and is itself in flight a round trip more.
    fn at(self, now: Instant) -> Tail {
        if self.waiting && now >= self.acked_at {
            Tail {
                acked_at: self.acked_at + self.peer_rtt,
                waiting: false,
                ..self
            }
        } else {
            self
        }
    }
}

impl BrokerNagle {
    /// Whether a frame published at `now` would wait: a partial segment of
    /// ours is still unacknowledged on the broker's connection to the peer.
    pub fn holds(&self, now: Instant) -> bool {
        self.0.is_some_and(|t| now < t.at(now).acked_at)
    }

    /// We published frames at `now` (a frame and the PAD behind it count
    /// as one); the peer is `peer_rtt` from the broker.
    pub fn published(&mut self, now: Instant, peer_rtt: Duration) {
        self.0 = Some(match self.0.map(|t| t.at(now)) {
            // Held: its partial segment waits (a later one joins it).
            Some(t) if now < t.acked_at => Tail { waiting: true, ..t },
            // Leaves at once.
            _ => Tail {
                acked_at: now + peer_rtt,
                waiting: false,
                peer_rtt,
            },
        });
    }
}
