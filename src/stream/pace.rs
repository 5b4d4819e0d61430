//! Spacing a session's chunks at twice its window's rate, so that a
//! burst of data from the local side waits here, where a keystroke can go
//! ahead of it, and not in the bottleneck's queue.
//!
//! Without it, a window's worth of chunks leaves at once whenever the
//! window opens more than a chunk at a time: after the local side paused
//! (sftp's reads ramp up at a download's start) or when the peer's window
//! grew. A traced download over a 40 ms path paced to 1 MiB/s: sshd
//! paused for 140 ms, then five chunks, 171 KB, left within a millisecond;
//! the link took 163 ms to carry them, and the keystroke echo behind them
//! took 215 ms.
//!
//! The rate is twice the window over the smoothed round trip, as Linux
//! TCP paces in slow start (a window that doubles each round trip sends
//! twice what it sent in the last), so the window, not the pace, limits a
//! copy. Twice after slow start too: at Linux's 1.2 there, uploads at
//! 256 KiB/s over the 40 ms path reached 0.86-0.87 of the link against
//! 0.88-0.89 unpaced, and 0.89-0.90 at twice (not traced; most likely the
//! smoothed round trip lags a queue that drained, and 1.2 times the
//! window over it fell under the link's rate). Paced at twice the
//! delivery rate instead, as BBR does, an upload over that path reached
//! 0.46 of the link: chunks spaced wider than a round trip went alone, a
//! chunk alone gives no rate sample, and the rate stayed where the copy's
//! first round trips had left it.
//!
//! With [`PACE_CREDIT`] of credit: a timer cannot wait less than a
//! millisecond, and on a fast link the pacer must not be what limits a
//! copy.

use std::time::Duration;

use tokio::time::Instant;

/// The pace over the window's rate.
pub const PACE_GAIN: f64 = 2.0;

/// How far behind the pace a session may fall and then send at once: what
/// a chunk may go before its time. Two milliseconds: a timer's resolution
/// and then some.
pub const PACE_CREDIT: Duration = Duration::from_millis(2);

/// The longest one chunk holds back the next: a rate that some lie made
/// far too low slows its session at most to a chunk per this, and a
/// real link slower than a chunk per this is paced by its window anyway.
pub const MAX_SPACING: Duration = Duration::from_millis(100);

/// The pace for a window of `window` bytes over a smoothed round trip of
/// `srtt` (bytes per second), if one was measured.
pub fn rate(window: f64, srtt: Option<Duration>) -> Option<f64> {
    srtt.filter(|d| !d.is_zero())
        .map(|d| PACE_GAIN * window / d.as_secs_f64())
}

/// When the next chunk may go.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// The moment the chunks sent so far would have left at the pace.
    free_at: Option<Instant>,
    /// The next chunk must wait for `free_at`: the caller's timer.
    waiting: bool,
}

impl Pacer {
    /// A chunk of `bytes` left at `now`; `rate`: the pace in bytes per
    /// second ([`rate`]), if there is one.
    pub fn on_send(&mut self, bytes: usize, rate: Option<f64>, now: Instant) {
        let Some(rate) = rate.filter(|r| r.is_finite() && *r > 0.0) else {
            *self = Pacer::default();
            return;
        };
        // Capped before it becomes a Duration: a rate of 1e-300 would not
        // fit one.
        let spacing = Duration::from_secs_f64((bytes as f64 / rate).min(MAX_SPACING.as_secs_f64()));
        let earliest = now.checked_sub(PACE_CREDIT).unwrap_or(now);
        let free_at = self.free_at.map_or(earliest, |f| f.max(earliest)) + spacing;
        self.free_at = Some(free_at);
        self.waiting = free_at > now;
    }

    /// Whether a chunk may go at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        !self.waiting || self.free_at.is_none_or(|f| f <= now)
    }

    /// When a chunk that waits for the pace may go.
    pub fn deadline(&self) -> Option<Instant> {
        self.free_at.filter(|_| self.waiting)
    }

    /// The timer of [`Pacer::deadline`] fired (or any timer did) at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.free_at.is_some_and(|f| f <= now) {
            self.waiting = false;
        }
    }
}

#[cfg(test)]
mod tests;
