//! Message size discovery for one session's sending direction, without
//! I/O: how large a message (a whole encoded frame, the MQTT publish
//! payload) may be.
//!
//! Some brokers drop messages above a size limit without telling anyone
//! (mosquitto's `message_size_limit` acknowledges a QoS 1 publish and drops
//! it; at QoS 0, which DATA uses, nothing is said at all). The stream then
//! sees large chunks lost again and again while its small frames and the
//! peer's get through. This is the idea of packetization-layer path MTU
//! discovery (RFC 4821): after [`STRIKES`] retransmission timeouts in a row
//! whose largest lost message is larger than any message delivered so far,
//! the size shrinks to the next of [`MESSAGE_STEPS`] below it (never below
//! the largest message known to arrive), and the lost chunks go again as
//! fragments of the new size (`protocol::FLAG_FRAG`). The first delivery of
//! a message of the new size confirms it, once.
//!
//! Ordinary loss seldom looks like this: once a message of some size was
//! delivered, losses of messages up to that size never shrink; timeouts
//! while the broker connection is down do not count. A false shrink costs
//! speed, not correctness, and lasts only as long as the session: each
//! session discovers on its own (a new session starts at the full size).
//!
//! [`MESSAGE_STEPS`]: crate::protocol::MESSAGE_STEPS

use crate::protocol::{step_below, FRAG_PREFIX_LEN, FRAME_OVERHEAD, MAX_FRAME, MIN_MESSAGE};

/// Timeouts in a row on messages of one size before the size shrinks: one
/// timeout is too common on a lossy path (a whole window lost, a broker
/// queue overflowing), two in a row with nothing of that size delivered in
/// between is what a size limit looks like. It costs each step two
/// timeouts (the backoff restarts at each step).
pub const STRIKES: u32 = 2;

/// A size that discovery settled on: messages of `failed` bytes were lost,
/// messages of `size` bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    pub failed: usize,
    pub size: usize,
}

/// The size estimate of one sending direction.
#[derive(Debug, Clone)]
pub struct Segmenter {
    /// What the connection allows: the broker's announced maximum packet
    /// size, `--max-message-size`, or what the connection discovered from
    /// disconnects; [`MAX_FRAME`] when nothing is known.
    ceiling: usize,
    /// What this direction discovered from losses.
    estimate: usize,
    /// The largest message known to have arrived.
    confirmed: usize,
    /// The message size the current strikes are about.
    suspect: usize,
    strikes: u32,
    /// Whether the broker connection is up: timeouts while it is down say
    /// nothing about sizes.
    link_up: bool,
    /// After a shrink, until its size is confirmed: the size that failed.
    shrunk_from: Option<usize>,
    /// A confirmed discovery not yet taken by the caller.
    discovery: Option<Discovery>,
}

impl Default for Segmenter {
    fn default() -> Self {
        Segmenter::new()
    }
}

impl Segmenter {
    /// Nothing known: whole frames of up to [`MAX_FRAME`] bytes.
    pub fn new() -> Segmenter {
        Segmenter {
            ceiling: MAX_FRAME,
            estimate: MAX_FRAME,
            confirmed: 0,
            suspect: 0,
            strikes: 0,
            link_up: true,
            shrunk_from: None,
            discovery: None,
        }
    }

    /// The connection's limit (see [`Segmenter::ceiling`]), kept within
    /// [`MIN_MESSAGE`]..=[`MAX_FRAME`].
    pub fn set_ceiling(&mut self, max_message: usize) {
        self.ceiling = max_message.clamp(MIN_MESSAGE, MAX_FRAME);
    }

    /// The broker connection went down or came back.
    pub fn set_link_up(&mut self, up: bool) {
        self.link_up = up;
        self.strikes = 0;
    }

    /// The largest message to send now.
    pub fn limit(&self) -> usize {
        self.ceiling.min(self.estimate)
    }

    /// The largest chunk that goes as one frame now.
    pub fn max_chunk(&self) -> usize {
        self.limit() - FRAME_OVERHEAD
    }

    /// The most chunk bytes one fragment carries now.
    pub fn max_fragment(&self) -> usize {
        self.limit() - FRAME_OVERHEAD - FRAG_PREFIX_LEN
    }

    /// A chunk whose messages were at most `message` bytes arrived.
    pub fn on_delivered(&mut self, message: usize) {
        self.confirmed = self.confirmed.max(message);
        if message >= self.suspect {
            self.strikes = 0;
        }
        if let Some(failed) = self.shrunk_from {
            if message >= self.estimate {
                self.shrunk_from = None;
                self.discovery = Some(Discovery {
                    failed,
                    size: self.estimate,
                });
            }
        }
    }

    /// The retransmission timeout fired; the largest message among the
    /// chunks it presumes lost was `largest` bytes. True when the size
    /// shrank (the caller restarts its timeout backoff: the losses were the
    /// size, not congestion).
    pub fn on_timeout(&mut self, largest: usize) -> bool {
        if !self.link_up
            || largest <= self.confirmed
            || largest <= MIN_MESSAGE
            || largest > self.limit()
        {
            // Known to pass, nothing smaller to try, the connection is down,
            // or sent before the limit fell (it goes again smaller anyway).
            return false;
        }
        if largest != self.suspect {
            self.suspect = largest;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes < STRIKES {
            return false;
        }
        self.estimate = step_below(largest).max(self.confirmed);
        self.strikes = 0;
        self.suspect = 0;
        // The report names the smallest size that failed.
        self.shrunk_from = Some(largest);
        true
    }

    /// A discovery confirmed since the last call (at most one per shrink).
    pub fn take_discovery(&mut self) -> Option<Discovery> {
        self.discovery.take()
    }
}

#[cfg(test)]
mod tests;
