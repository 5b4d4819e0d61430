//! The path's own round trip and the queue on top of it, from round-trip
//! samples: what [`super::Congestion`]'s window reads.

use std::time::Duration;

use tokio::time::Instant;

use super::DRAIN_PERIOD;
use crate::stream::two_periods::TwoPeriods;

/// How long the smallest round trip seen is trusted: the path may have
/// changed (a laptop moved to another network, a broker's route changed).
/// The base delay is the smallest of this period's samples and the last
/// period's, so it is at most two periods old.
pub const BASE_PERIOD: Duration = Duration::from_secs(60);

/// The path's own round trip and the latest queueing, from round-trip
/// samples (only samples the peer answered at once: see `send.rs`).
#[derive(Debug, Clone)]
pub struct DelayFilter {
    /// The smallest sample of this [`BASE_PERIOD`] and the last.
    base: TwoPeriods<Duration>,
    /// The two latest samples: the queue is read off the smaller, so one
    /// sample delayed by a busy moment elsewhere does not shrink the window.
    recent: [Option<Duration>; 2],
    /// Until then no sample lowers the base: a drain measured it
    /// ([`DelayFilter::restart_base`]) or a later one kept it
    /// ([`DelayFilter::hold_base`]), and the next drain will. A sample
    /// below a drain's comes from a moment when other sessions' floors
    /// were out of the queue, as when one session leaves a drain before
    /// the other, and only that session sees it (two downloads over a
    /// relay paced to 1 MiB/s, traced: a sample of 7.3 ms just after a
    /// drain that measured 15.7 and 14.6 ms; the session that took it
    /// kept half the other's window until the next drain).
    held_until: Option<Instant>,
}

impl Default for DelayFilter {
    fn default() -> Self {
        DelayFilter {
            base: TwoPeriods::new(BASE_PERIOD, std::cmp::min),
            recent: [None; 2],
            held_until: None,
        }
    }
}

impl DelayFilter {
    /// A round trip of `rtt` measured at `now`.
    pub fn on_sample(&mut self, rtt: Duration, now: Instant) {
        self.recent = [Some(rtt), self.recent[0]];
        let floor = match (self.held_until, self.base.get()) {
            (Some(until), Some(base)) if now < until => base,
            _ => Duration::ZERO,
        };
        self.base.on_sample(rtt.max(floor), now);
    }

    /// The path's own round trip: the smallest sample of this period and
    /// the last.
    pub fn base(&self) -> Option<Duration> {
        self.base.get()
    }

    /// The round trip now: the smaller of the two latest samples.
    pub fn latest(&self) -> Option<Duration> {
        self.recent.iter().flatten().min().copied()
    }

    /// Queueing now: [`latest`](Self::latest) less the base.
    pub fn queue(&self) -> Option<Duration> {
        Some(self.latest()?.saturating_sub(self.base()?))
    }

    /// Measured while every session through the bottleneck drained the
    /// queue: `base` is the path's round trip from now on, until the next
    /// drain (or, with none within a [`DRAIN_PERIOD`], a smaller sample).
    pub fn restart_base(&mut self, base: Duration, now: Instant) {
        self.base.restart(base, now);
        self.held_until = Some(now + DRAIN_PERIOD);
    }

    /// Other sessions' drains measured `base` (`super::DrainsTogether`):
    /// the base is that from now on if it is lower, held as it was.
    pub fn lower_base(&mut self, base: Duration, now: Instant) {
        if self.base().is_some_and(|b| base < b) {
            self.base.restart(base, now);
        }
    }

    /// A drain did not measure the base (`Congestion::on_ack`): a base
    /// that an earlier drain measured stays, held until the next drain.
    pub fn hold_base(&mut self, now: Instant) {
        if self.held_until.is_some() {
            self.held_until = Some(now + DRAIN_PERIOD);
        }
    }

    /// Forget everything (the path may be another one now).
    pub fn reset(&mut self) {
        *self = DelayFilter::default();
    }
}
