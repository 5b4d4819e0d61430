//! The congestion window: how many chunks may be in flight (sent and neither
//! acknowledged nor presumed lost). Reno-style (RFC 5681): slow start from
//! [`INITIAL_CWND`], additive increase above the slow-start threshold,
//! halving once per window of data on a loss, one chunk after a
//! retransmission timeout, never above [`MAX_INFLIGHT_CHUNKS`].
//!
//! Counted in chunks, not bytes: a broker's limits (queue length, in-flight
//! messages) count messages, and one chunk is one message.

use crate::protocol::MAX_INFLIGHT_CHUNKS;

/// Congestion window at start (chunks); grows by slow start up to
/// [`MAX_INFLIGHT_CHUNKS`]. Small enough for a broker with a tiny queue.
pub const INITIAL_CWND: f64 = 8.0;
/// Smallest slow-start threshold after a loss or timeout (chunks): with
/// fewer, a single further loss could only be found by the timeout.
pub const MIN_SSTHRESH: f64 = 2.0;
/// Window after a retransmission timeout (chunks): everything in flight is
/// presumed lost, so the path is probed again from a single chunk.
pub const LOSS_WINDOW: f64 = 1.0;

/// Chunks allowed in flight, and the slow-start and recovery state behind it.
#[derive(Debug, Clone)]
pub struct CongestionWindow {
    /// The window (chunks); fractional so congestion avoidance can add
    /// `1/cwnd` per acknowledged chunk.
    cwnd: f64,
    /// Slow-start threshold: below it the window grows by one per acked
    /// chunk, above it by one per window.
    ssthresh: f64,
    /// While recovering from a loss: the sequence number sent next when the
    /// loss was found. Further losses before it is acknowledged belong to
    /// the same window and do not halve again.
    recovery_until: Option<u64>,
}

impl Default for CongestionWindow {
    fn default() -> Self {
        CongestionWindow::new()
    }
}

impl CongestionWindow {
    /// [`INITIAL_CWND`] chunks, slow start up to the cap.
    pub fn new() -> CongestionWindow {
        CongestionWindow {
            cwnd: INITIAL_CWND,
            ssthresh: MAX_INFLIGHT_CHUNKS as f64,
            recovery_until: None,
        }
    }

    /// May one more chunk go out while `in_flight` chunks are outstanding?
    pub fn allows(&self, in_flight: usize) -> bool {
        (in_flight as f64) < self.cwnd
    }

    /// The window in chunks.
    pub fn window(&self) -> f64 {
        self.cwnd
    }

    /// The slow-start threshold in chunks.
    pub fn ssthresh(&self) -> f64 {
        self.ssthresh
    }

    /// Recovering from a loss (a further loss will not shrink the window).
    pub fn in_recovery(&self) -> bool {
        self.recovery_until.is_some()
    }

    /// The cumulative ack moved to `ack`, acknowledging `newly_acked` more
    /// chunks. Ends recovery once everything sent before the loss is
    /// acknowledged, then grows the window: by `newly_acked` in slow start,
    /// by `newly_acked / cwnd` above the threshold, at most
    /// [`MAX_INFLIGHT_CHUNKS`]. No progress (`newly_acked == 0`) changes
    /// nothing.
    pub fn on_ack(&mut self, ack: u64, newly_acked: u32) {
        if newly_acked == 0 {
            return;
        }
        if self.recovery_until.is_some_and(|r| ack >= r) {
            self.recovery_until = None;
        }
        let n = newly_acked as f64;
        self.cwnd += if self.cwnd < self.ssthresh {
            n
        } else {
            n / self.cwnd
        };
        self.cwnd = self.cwnd.min(MAX_INFLIGHT_CHUNKS as f64);
    }

    /// A chunk was found lost (a later one arrived first) while `next_seq`
    /// was the next sequence number to send. Outside recovery, halves the
    /// window (at least [`MIN_SSTHRESH`]) and starts recovery until
    /// `next_seq` is acknowledged; inside recovery, changes nothing.
    pub fn on_loss(&mut self, next_seq: u64) {
        if self.recovery_until.is_none() {
            self.ssthresh = (self.cwnd / 2.0).max(MIN_SSTHRESH);
            self.cwnd = self.ssthresh;
            self.recovery_until = Some(next_seq);
        }
    }

    /// The retransmission timeout fired with `in_flight` chunks outstanding:
    /// the threshold becomes half of them (at least [`MIN_SSTHRESH`]) and
    /// the window [`LOSS_WINDOW`]. Recovery, if any, carries on.
    pub fn on_timeout(&mut self, in_flight: usize) {
        self.ssthresh = (in_flight as f64 / 2.0).max(MIN_SSTHRESH);
        self.cwnd = LOSS_WINDOW;
    }
}

#[cfg(test)]
mod tests;
