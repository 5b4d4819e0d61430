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
    /// The smallest of this [`BASE_PERIOD`]'s samples and the last's,
    /// each sample taken with the one before it: the larger of the two.
    /// One round trip alone can be a lucky moment of a busy machine. With
    /// two processes spinning on a 2-core machine, a copy's round trips
    /// through a loopback broker at the window's floor were 30-50 ms, and
    /// now and then 2-5 ms, when every process on the path happened to be
    /// awake (traced). Taken for the path's, such a sample read the
    /// machine's own delay as a queue of 30-40 ms, over the target, and
    /// the window stayed at its floor, where the round trip stays long:
    /// shrinking the window does not shorten a delay that is not its
    /// doing. A path whose queue empties shows its round trip twice in a
    /// row. (The same for drains: `drain::Drain::measured`.)
    ///
    /// `scp_upload_survives_cut_of_the_agent_connection` (a 64 MiB upload
    /// across a cut of the agent's connection, which drops the window to
    /// its floor) beside two `yes` processes: over 65 s in 6 of 23 runs
    /// before (65-79 s; the others 13-30 s), 1 of 23 with this and the
    /// drains' rule (72 s; the others 11-25 s).
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
        let pair = self.recent[0].map_or(rtt, |before| before.max(rtt));
        self.recent = [Some(rtt), self.recent[0]];
        let floor = match (self.held_until, self.base.get()) {
            (Some(until), Some(base)) if now < until => base,
            _ => Duration::ZERO,
        };
        self.base.on_sample(pair.max(floor), now);
    }

    /// The path's own round trip: the smallest of this period's and the
    /// last's samples, each taken with the one before it (see `base`).
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
