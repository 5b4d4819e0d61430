//! Drains shared by the sessions of one broker connection: what the
//! agent's downloads learn together ([`DrainsTogether`]).

use std::sync::Mutex;
use std::time::Duration;

use super::{MIN_CHUNK, MIN_WINDOW};

/// The least base that the drains begun at one moment left, across the
/// sessions of one broker connection: the agent's, since every
/// download of a node goes out through it, and so through the node's own
/// link when that is the bottleneck.
///
/// During a drain every session is at its floor ([`MIN_WINDOW`], and the
/// chunk it may send past it). Where the floors are more queue than the
/// target (two downloads over a link paced to 256 KiB/s: 62 ms against
/// 25), no drain empties the queue, and each session's least round trip
/// is its own chunk behind whichever of the others' chunks were queued
/// when it was sent. Two sessions then measured bases apart by up to two
/// of those chunks (traced: 36.3 ms, held, against 64), the one with the
/// higher base read the same queue as the shorter and kept the larger
/// window until the next drain, and about one run in ten split under 0.8
/// of each other. So each session takes the least base of all the
/// drains begun in the same epoch, though not lower than its own less the
/// others' floors at the rate all of them had before the drain: sessions
/// whose proxies' paths differ by more than that keep their own bases.
/// Over that relay, in turns, 32 runs each: 2 under 0.8 with each
/// session's own drains (0.65-1.00), none with them shared (0.90-1.00).
///
/// At every rate, since 2026-12-06: until then only where the others'
/// floors took longer than [`super::QUEUE_TARGET`] at that rate (two
/// sessions under 484 KB/s together), on the view that elsewhere a drain
/// empties the queue well enough. Over the 40 ms relay path paced to
/// 1 MiB/s it does, but a drain's least round trip is its few samples,
/// and two sessions' drains of one moment measured 0-16 ms apart
/// (traced: 50.4 against 66.8 ms), more than the own share of the target
/// ([`super::OWN_SHARE`]) evens out; two downloads split under 0.8 in 7
/// of 11 runs. The floors at 1 MiB/s bound the move to 12 ms; at a
/// loopback broker's rates to a fraction of a millisecond.
///
/// Each session offers the base it keeps after its drain, not the drain's
/// least round trip: a doubted drain (`drain::DOUBT_SLACK`) keeps its
/// base, and the others take that too.
#[derive(Debug, Default)]
pub struct DrainsTogether(Mutex<Option<Together>>);

/// The drains begun in one epoch (`drain::epoch`).
#[derive(Debug, Clone, Copy)]
struct Together {
    epoch: u64,
    /// The least base they left.
    least: Duration,
    /// How many sessions drained.
    sessions: u32,
    /// Their rates before the drain, summed (bytes/s).
    rate: f64,
}

impl DrainsTogether {
    /// A session's drain begun in `epoch`, at `rate` bytes/s before it,
    /// left it with `base`.
    pub(super) fn offer(&self, epoch: u64, base: Duration, rate: f64) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = Some(match *t {
            Some(t) if t.epoch == epoch => Together {
                epoch,
                least: t.least.min(base),
                sessions: t.sessions.saturating_add(1),
                rate: t.rate + rate,
            },
            // A later epoch's drains replace an earlier's; an earlier
            // epoch's (a drain that ended late) changes nothing.
            Some(t) if t.epoch > epoch => t,
            _ => Together {
                epoch,
                least: base,
                sessions: 1,
                rate,
            },
        });
    }

    /// The base a session whose drain began in `epoch` left it with
    /// (`own`) becomes, after the drains of that epoch: the least of
    /// them, at least `own` less the others' floors at the rate of all
    /// ([`DrainsTogether`]); `own` where no other session drained then.
    pub(super) fn base(&self, epoch: u64, own: Duration) -> Duration {
        let t = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = t.filter(|t| t.epoch == epoch && t.sessions > 1) else {
            return own;
        };
        let floors = f64::from(t.sessions - 1) * (MIN_WINDOW + MIN_CHUNK as f64);
        // (An infinite rate, or none: a lying peer's round trips of zero.
        // Nothing to share then.)
        let slack = if t.rate > 0.0 && t.rate.is_finite() {
            Duration::try_from_secs_f64(floors / t.rate).unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        };
        t.least.max(own.saturating_sub(slack)).min(own)
    }
}

#[cfg(test)]
mod tests;
