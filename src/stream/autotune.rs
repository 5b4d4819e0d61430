//! Receive-window auto-tuning: the window we advertise follows the path's
//! round trip, the way Linux tunes a TCP receive buffer (dynamic right
//! sizing): a peer that moves more than half our window per round trip
//! while our local writer keeps up is held back by the window, not by the
//! reader, so the window doubles, up to [`MAX_RECV_WINDOW`].
//!
//! The round trip is our own send half's estimate: ssh always sends
//! something back (channel window adjustments, acknowledgements), so both
//! ends of a bulk transfer have one. Without an estimate the window stays
//! where it started. It never shrinks: memory is committed only while the
//! local reader lags, and that is what the window bounds.

use std::time::Duration;

use tokio::time::Instant;

/// Largest receive window auto-tuning grows to: four times OpenSSH's own
/// channel window (2 MiB), so ssh's window, not ours, limits a transfer
/// over any path up to ~400 ms round trip at ssh's pace, and one stalled
/// reader on a far path holds at most this much.
pub const MAX_RECV_WINDOW: u32 = 8 << 20;

/// Decides when the receive window grows; no I/O.
#[derive(Debug, Clone)]
pub struct WindowTuner {
    max: u32,
    /// Start of the current measurement: when, and the bytes received by then.
    epoch: Option<(Instant, u64)>,
}

impl WindowTuner {
    /// A tuner that grows the window up to `max` bytes.
    pub fn new(max: u32) -> WindowTuner {
        WindowTuner { max, epoch: None }
    }

    /// Data arrived: `received` is the total of in-order bytes so far,
    /// `capacity` the current window, `buffered` what the local writer has
    /// not taken yet. Returns the new window when it should grow.
    pub fn on_data(
        &mut self,
        now: Instant,
        received: u64,
        srtt: Option<Duration>,
        capacity: u32,
        buffered: usize,
    ) -> Option<u32> {
        let rtt = srtt.filter(|r| !r.is_zero())?;
        let (start, base) = *self.epoch.get_or_insert((now, received));
        let elapsed = now.saturating_duration_since(start);
        if elapsed < rtt {
            return None;
        }
        self.epoch = Some((now, received));
        // Bytes per round trip over this measurement (it may span several
        // round trips when data came in bursts).
        let per_rtt = (received - base) as f64 * rtt.as_secs_f64() / elapsed.as_secs_f64();
        let keeps_up = buffered <= capacity as usize / 4;
        if capacity >= self.max || !keeps_up || per_rtt * 2.0 <= capacity as f64 {
            return None;
        }
        let grown = (capacity as f64 * 2.0).max(per_rtt * 2.0);
        Some((grown as u64).min(self.max as u64) as u32)
    }
}

#[cfg(test)]
mod tests;
