//! Asking the peer for pads, and being asked (`protocol::PAD_ASK`).
//!
//! A broker with Nagle's algorithm on (a stock mosquitto) holds a small
//! segment to a client while an earlier small one is unacknowledged. The
//! agent's acknowledgements to the broker leave behind whatever the agent
//! itself sends: during a download over a slow uplink they wait the
//! uplink's queue, and each keystroke of another session waits with them
//! before it even reaches the agent. The agent knows when its link carries
//! a bulk transfer out; the keystrokes' sender knows when a keystroke is
//! small. So the agent asks the sessions that send it small frames to pad
//! them (`tunnel::pad_after`), and they do for a while.

use std::time::Duration;

use tokio::time::Instant;

/// How often a session asks its peer again while the reason lasts.
pub const ASK_PERIOD: Duration = Duration::from_secs(1);

/// How long the peer's latest ask holds: three of its periods, so one lost
/// ask does not stop the padding.
pub const ASKED_FOR: Duration = Duration::from_secs(3);

/// Both sides of the asking for one session.
#[derive(Debug, Clone, Copy, Default)]
pub struct PadAsks {
    /// The peer asked us to pad until then.
    asked_until: Option<Instant>,
    /// When we last asked the peer.
    asked_at: Option<Instant>,
    /// A small DATA frame came from the peer since we last asked.
    small_in: bool,
}

impl PadAsks {
    /// The peer asked for pads (an authenticated `PAD_ASK`).
    pub fn on_asked(&mut self, now: Instant) {
        if !self.asked(now) {
            tracing::debug!("the peer asks us to pad our small frames");
        }
        self.asked_until = Some(now + ASKED_FOR);
    }

    /// Whether the peer's latest ask still holds.
    pub fn asked(&self, now: Instant) -> bool {
        self.asked_until.is_some_and(|u| now < u)
    }

    /// A DATA frame came from the peer with `len` bytes of payload.
    pub fn on_data(&mut self, len: usize) {
        if len < crate::protocol::PAD_LEN {
            self.small_in = true;
        }
    }

    /// Whether to ask the peer now, given that our link carries a bulk
    /// transfer out: only a peer that sent small frames since the last
    /// ask, and at most once per [`ASK_PERIOD`]. Counts the ask.
    pub fn ask_due(&mut self, now: Instant) -> bool {
        let due = self.small_in
            && self
                .asked_at
                .is_none_or(|t| now.saturating_duration_since(t) >= ASK_PERIOD);
        if due {
            self.asked_at = Some(now);
            self.small_in = false;
        }
        due
    }
}

#[cfg(test)]
mod tests;
