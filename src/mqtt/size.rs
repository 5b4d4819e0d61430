//! Discovering a broker's packet size limit from disconnects, without I/O.
//!
//! An MQTT 5 broker announces its Maximum Packet Size in CONNACK; a 3.1.1
//! broker cannot, and mosquitto's `max_packet_size` then closes the
//! connection of a client that sends a bigger packet. Every session on the
//! connection re-sends what was in flight after the reconnect, the big
//! packets go again, and the connection drops again, for ever. So: a
//! connection that drops within [`SIZE_DROP_WINDOW`] of coming up, after
//! packets larger than any limit we know were published on it, is a strike
//! against that size; [`STRIKES`] in a row for one size lower the limit to
//! the next of `protocol::MESSAGE_STEPS` below it. A connection that lived
//! longer, or saw no such packet, clears the strikes.
//!
//! A broker restart or network fault while large packets flow is one
//! strike at most, since the next connection lives on; a false shrink
//! costs speed, never data, and lasts as long as the process (the limit is
//! per connection and never grows back).

use std::time::Duration;

use crate::protocol::{step_below, MAX_FRAME, MIN_PACKET};

/// A drop this soon after the CONNACK may be about the size of what we
/// sent: mosquitto closes the connection as soon as it reads the header of
/// an oversized packet, and sessions re-send at once after a reconnect.
pub(super) const SIZE_DROP_WINDOW: Duration = Duration::from_secs(10);
/// Drops in a row, each after packets of one size, before the limit falls:
/// one could be a broker restart.
pub(super) const STRIKES: u32 = 2;
/// A connection up this long after the limit fell confirms the new limit
/// (logged at debug; the fall itself is logged at info when it happens).
pub(super) const CONFIRM_AFTER: Duration = Duration::from_secs(2);

/// A lowered packet size limit: packets of `failed` bytes broke the
/// connection, packets of at most `limit` are sent from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lowered {
    pub(super) failed: u32,
    pub(super) limit: u32,
}

/// The strikes and the limit not yet confirmed.
#[derive(Debug, Default)]
pub(super) struct DropSizer {
    strikes: u32,
    suspect: u32,
    unconfirmed: Option<Lowered>,
}

impl DropSizer {
    /// A connection that was up for `lived` dropped (not by our request);
    /// `largest` is the largest packet published since the previous drop.
    /// `Some` when the limit falls.
    pub(super) fn on_drop(&mut self, lived: Duration, largest: u32) -> Option<Lowered> {
        self.unconfirmed = None;
        if lived >= SIZE_DROP_WINDOW || largest as usize <= MIN_PACKET {
            self.strikes = 0;
            self.suspect = 0;
            return None;
        }
        if largest != self.suspect {
            self.suspect = largest;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes < STRIKES {
            return None;
        }
        self.strikes = 0;
        self.suspect = 0;
        // The first step below a whole frame: a packet of one is a little
        // larger (topic, headers), and almost the same size would fail too.
        let limit = step_below((largest as usize).min(MAX_FRAME)).max(MIN_PACKET) as u32;
        let lowered = Lowered {
            failed: largest,
            limit,
        };
        self.unconfirmed = Some(lowered);
        Some(lowered)
    }

    /// The connection has been up for `lived`: a lowered limit it survived
    /// with is confirmed, and returned once.
    pub(super) fn on_alive(&mut self, lived: Duration) -> Option<Lowered> {
        if lived >= CONFIRM_AFTER {
            self.unconfirmed.take()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
