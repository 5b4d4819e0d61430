//! The sending half's timers: the retransmission timeout, the zero-window
//! probe and the pace ([`Pacer`](crate::stream::pace::Pacer)).

use tokio::time::Instant;

use super::{ChunkState, SendHalf, SendStage};

impl SendHalf {
    /// When the oldest chunk in flight times out.
    pub fn retransmit_deadline(&self) -> Option<Instant> {
        let rto = self.rtt.rto();
        self.unacked
            .iter()
            .filter(|s| s.state == ChunkState::InFlight)
            .map(|s| s.sent_at + rto)
            .min()
    }

    /// When a zero window is probed next, if it is.
    pub fn probe_deadline(&self) -> Option<Instant> {
        self.probe_at
    }

    /// The retransmission timer: if a chunk in flight timed out, presume
    /// all of them lost, drop the congestion window to one chunk and back
    /// off the timeout. True when it fired (the caller retransmits and asks
    /// for an ack).
    pub fn on_rto(&mut self, now: Instant) -> bool {
        let rto = self.rtt.rto();
        let expired = self
            .unacked
            .iter()
            .any(|s| s.state == ChunkState::InFlight && s.sent_at + rto <= now);
        if expired {
            let largest = self
                .unacked
                .iter()
                .filter(|s| s.state == ChunkState::InFlight)
                .map(|s| s.message)
                .max()
                .unwrap_or(0);
            self.cwnd.on_timeout(self.pipe_bytes());
            self.mark_all_lost();
            if self.segment.on_timeout(largest) {
                // The losses were the size, not congestion: the smaller
                // retransmissions go at the measured timeout.
                self.rtt.reset_backoff();
            } else {
                self.rtt.back_off();
            }
        }
        expired
    }

    /// The zero-window probe timer: while the peer's window is closed with
    /// nothing in flight (and no FIN sent), arm it one timeout ahead; when
    /// due, back off and re-arm. True when a probe (an ACK asking for an
    /// ack) must go now.
    pub fn on_probe_timer(&mut self, now: Instant) -> bool {
        if !self.unacked.is_empty() || self.peer_window != 0 || self.stage == SendStage::FinSent {
            return false;
        }
        match self.probe_at {
            Some(t) if t <= now => {
                self.rtt.back_off();
                self.probe_at = Some(now + self.rtt.rto());
                true
            }
            Some(_) => false,
            None => {
                self.probe_at = Some(now + self.rtt.rto());
                false
            }
        }
    }

    /// Whether the pace lets a new chunk go at `now`
    /// ([`Pacer`](crate::stream::pace::Pacer)): always
    /// with nothing in flight, when the link may be idle (a traced upload
    /// over the 40 ms path at 256 KiB/s held a chunk 23 ms with nothing in
    /// flight).
    pub fn pace_allows(&self, now: Instant) -> bool {
        self.pipe() == 0 || self.pace.ready(now)
    }

    /// When a chunk held back by the pace may go.
    pub fn pace_deadline(&self) -> Option<Instant> {
        self.pace.deadline()
    }

    /// A timer fired at `now`.
    pub fn on_pace_timer(&mut self, now: Instant) {
        self.pace.on_timeout(now);
    }
}
