//! Drains shared by the sessions of one broker connection: what the
//! agent's downloads learn together ([`DrainsTogether`]), and what clients'
//! uploads learn through the agent ([`Congestion::report_drains`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Congestion, MIN_CHUNK, MIN_WINDOW};
use crate::protocol::{DrainReport, DrainsShared};

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
/// floors at the rate all of them had before the drain: sessions
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
/// of 11 runs.
///
/// The bound is every session's floor at the rate of all, its own too,
/// since 2026-12-07 (the others' until then): 23 ms for two sessions at
/// 1 MiB/s, a fraction of a millisecond at a loopback broker's rates. At
/// the floor a session's own chunks queue behind each other, and each
/// may wait for the broker's Nagle behind the other's (two uploads over
/// that path, traced: chunks sent together came back 25-30 ms apart); one
/// moment's two drains measured 54.7 and 78.7 ms, and the session lowered
/// to 66.8 held 8 times the other's window until the next drain.
///
/// Each session offers the base it keeps after its drain, not the drain's
/// least round trip: a doubted drain (`drain::DOUBT_SLACK`) keeps its
/// base, and the others take that too.
#[derive(Debug, Default)]
pub struct DrainsTogether(Mutex<Option<DrainsShared>>);

impl DrainsTogether {
    /// A session's drain begun in `epoch`, at `rate` bytes/s before it,
    /// left it with `base`.
    pub(crate) fn offer(&self, epoch: u64, base: Duration, rate: f64) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = Some(match *t {
            Some(t) if t.epoch == epoch => DrainsShared {
                epoch,
                least: t.least.min(base),
                sessions: t.sessions.saturating_add(1),
                rate: t.rate + rate,
            },
            // A later epoch's drains replace an earlier's; an earlier
            // epoch's (a drain that ended late) changes nothing.
            Some(t) if t.epoch > epoch => t,
            _ => DrainsShared {
                epoch,
                least: base,
                sessions: 1,
                rate,
            },
        });
    }

    /// The drains of the latest epoch offered, if any.
    pub fn shared(&self) -> Option<DrainsShared> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The drains of `shared.epoch`, as another process gathered them
    /// (the agent, of its uploads: `protocol::DrainsShared`), replace
    /// what this one has of that epoch or an earlier one.
    pub fn adopt(&self, shared: DrainsShared) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_none_or(|t| t.epoch <= shared.epoch) {
            *t = Some(shared);
        }
    }

    /// The rate of all the sessions that drained in `epoch` (bytes/s),
    /// if those are the latest drains offered; none for a rate of zero or
    /// an infinite one (a lying peer's round trips of zero).
    pub(super) fn rate(&self, epoch: u64) -> Option<f64> {
        let t = (*self.0.lock().unwrap_or_else(|e| e.into_inner()))?;
        usable(t.rate).filter(|_| t.epoch == epoch)
    }

    /// The base a session whose drain began in `epoch` left it with
    /// (`own`) becomes, after the drains of that epoch: the least of
    /// them, at least `own` less all sessions' floors at the rate of all
    /// ([`DrainsTogether`]); `own` where no other session drained then.
    pub(super) fn base(&self, epoch: u64, own: Duration) -> Duration {
        let t = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = t.filter(|t| t.epoch == epoch && t.sessions > 1) else {
            return own;
        };
        let floors = f64::from(t.sessions) * (MIN_WINDOW + MIN_CHUNK as f64);
        // (An infinite rate, or none: a lying peer's round trips of zero.
        // Nothing to share then.)
        let slack = usable(t.rate)
            .and_then(|rate| Duration::try_from_secs_f64(floors / rate).ok())
            .unwrap_or(Duration::ZERO);
        t.least.max(own.saturating_sub(slack)).min(own)
    }
}

/// A rate the drains offered (bytes/s), unless it is zero or infinite: a
/// lying peer's round trips of zero.
fn usable(rate: f64) -> Option<f64> {
    (rate > 0.0 && rate.is_finite()).then_some(rate)
}

/// A session's drains that its peer is to hear of
/// ([`Congestion::report_drains`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Reports {
    /// The latest drain, not yet taken ([`Congestion::take_report`]).
    pending: Option<DrainReport>,
}

impl Reports {
    /// A drain begun in `epoch`, at `rate` bytes/s before it, left the
    /// session with `base`.
    pub(super) fn drained(&mut self, epoch: u64, base: Duration, rate: f64) {
        self.pending = Some(DrainReport { epoch, base, rate });
    }
}

impl Congestion {
    /// Share drains with sessions of other processes, through the peer:
    /// a client's upload, since every upload to a node comes in through
    /// the agent's one broker connection, and so through the node's own
    /// link when that is the bottleneck. Each drain is reported
    /// ([`Congestion::take_report`]); what the peer gathered of the
    /// drains of that moment comes back ([`Congestion::adopt`]) and is
    /// shared as the drains of one process are ([`DrainsTogether`]).
    pub fn report_drains(&mut self) {
        self.together
            .get_or_insert_with(|| Arc::new(DrainsTogether::default()));
        self.reports.get_or_insert_with(Reports::default);
    }

    /// The latest drain the peer has not heard of, if drains are reported.
    pub fn take_report(&mut self) -> Option<DrainReport> {
        self.reports.as_mut()?.pending.take()
    }

    /// The drains of one moment as the peer gathered them (unless drains
    /// are not reported): from the next round trip on, the base is
    /// shared with them.
    pub fn adopt(&mut self, shared: DrainsShared) {
        if let (Some(_), Some(t)) = (&self.reports, &self.together) {
            t.adopt(shared);
        }
    }
}

#[cfg(test)]
mod tests;
