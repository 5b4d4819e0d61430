//! When a silent peer is a stalled one, decided without I/O.
//!
//! An idle session is not a stalled one: the peer only counts as not
//! answering while something of ours waits for it (data not yet
//! acknowledged, or a probe). A peer that was sending and went quiet is
//! probed once (unless we wait for it anyway, and retransmit), so an end
//! that only receives still puts something on its own broker connection, whose link timeout (`mqtt::socket`) then notices
//! if that link died. Time this process was stopped (SIGSTOP, a laptop's
//! sleep) is not silence: it does not count toward the peer timeout (the
//! driver tells, `tunnel::run`: its timer fired far later than it asked).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A peer that was sending and has been quiet this long is asked to
/// answer: longer than the gaps of a steady stream through a broker,
/// short enough that a dead link of ours is found (one probe plus the link
/// timeout, `--link-timeout`) within the 10 s a stall may last.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// Silence while we wait for the peer this long is worth telling the user
/// (`mqtt-proxy: no answer from …`).
pub const STALL_NOTICE: Duration = Duration::from_secs(5);
/// A timer that fires this much later than it was set for means the
/// process was stopped (nothing of ours can hold the runtime that long);
/// less is ordinary scheduling.
pub const PAUSE_SLACK: Duration = Duration::from_secs(5);

/// What the user may want to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Nothing from the peer for `silent` while we wait for an answer.
    Stalled { silent: Duration },
    /// The peer was heard again after a [`Notice::Stalled`].
    Back,
    /// This process was stopped for about `stopped` (a sleep): the network
    /// may have changed meanwhile.
    Woke { stopped: Duration },
}

/// The peer's liveness, as one end sees it.
#[derive(Debug)]
pub(super) struct Liveness {
    last_heard: Instant,
    heard_any: bool,
    /// The last frame heard carried data: quiet after it earns a probe.
    data_last: bool,
    /// When our probe went, while it is unanswered.
    probe: Option<Instant>,
    stalled: bool,
    /// What happened and was not taken yet (at most a few: one per kind).
    notices: VecDeque<Notice>,
}

impl Liveness {
    pub(super) fn new(now: Instant) -> Liveness {
        Liveness {
            last_heard: now,
            heard_any: false,
            data_last: false,
            probe: None,
            stalled: false,
            notices: VecDeque::new(),
        }
    }

    pub(super) fn last_heard(&self) -> Instant {
        self.last_heard
    }

    pub(super) fn heard_any(&self) -> bool {
        self.heard_any
    }

    /// Count from `now`, as if just heard, without it being news (the
    /// session was accepted).
    pub(super) fn restart(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A valid frame from the peer, carrying data or not.
    pub(super) fn on_heard(&mut self, now: Instant, data: bool) {
        self.last_heard = now;
        self.heard_any = true;
        self.data_last = data;
        self.probe = None;
        if std::mem::take(&mut self.stalled) {
            self.notices.push_back(Notice::Back);
        }
    }

    /// The process was stopped for `stopped`, until `now`: that time is not
    /// the peer's silence.
    pub(super) fn on_paused(&mut self, stopped: Duration, now: Instant) {
        self.last_heard = (self.last_heard + stopped).min(now);
        self.probe = self.probe.map(|p| (p + stopped).min(now));
        self.notices.push_back(Notice::Woke { stopped });
    }

    /// When to probe the peer, if it is worth it: not while we are
    /// `waiting` for an acknowledgement, since our retransmissions then put
    /// something on our link anyway.
    pub(super) fn probe_deadline(&self, waiting: bool) -> Option<Instant> {
        (self.data_last && self.probe.is_none() && !waiting).then(|| self.last_heard + PROBE_AFTER)
    }

    /// Whether to probe now; if so, the probe counts as sent.
    pub(super) fn probe_due(&mut self, now: Instant, waiting: bool) -> bool {
        let due = self.probe_deadline(waiting).is_some_and(|t| now >= t);
        if due {
            self.probe = Some(now);
        }
        due
    }

    /// When the user is to hear of a stall, if we are `waiting` for the
    /// peer (data of ours unacknowledged) and it is not said yet.
    pub(super) fn stall_deadline(&self, waiting: bool) -> Option<Instant> {
        (!self.stalled && (waiting || self.probe.is_some())).then(|| self.last_heard + STALL_NOTICE)
    }

    /// Decide at `now` whether the peer has stalled.
    pub(super) fn check_stall(&mut self, now: Instant, waiting: bool) {
        if self.stall_deadline(waiting).is_some_and(|t| now >= t) {
            self.stalled = true;
            self.notices.push_back(Notice::Stalled {
                silent: now - self.last_heard,
            });
        }
    }

    /// What happened, oldest first.
    pub(super) fn take_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }
}

#[cfg(test)]
mod tests;
