//! Drains shared across processes, through the peer: a client reports its
//! upload's drains to the agent (`protocol::DrainReport`), and the agent
//! tells each client what the drains of that moment measured, across all
//! its sessions' uploads (`protocol::DrainsShared`). In one process the
//! sessions share them in memory ([`DrainsTogether`]); two uploads come
//! from two `mqtt-proxy` processes, often on two machines.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::congestion::{self, DrainsTogether};
use super::Stream;
use crate::protocol::{DrainReport, DrainsShared};

/// How many epochs (`congestion::FIRST_DRAIN_PERIOD`s) a reported drain
/// may be from the agent's own: a report ends a drain begun at most two
/// round trips before, and the two clocks agree when NTP keeps them. One
/// further away is a clock that is off, or a lie, and would hold off the
/// others' drains of the moment (a later epoch's replace them).
pub const REPORT_EPOCHS: u64 = 1;

/// The agent's side: the drains its sessions' peers report.
#[derive(Debug, Default)]
pub(super) struct Gathering {
    /// Every session's of the broker connection.
    uploads: Option<Arc<DrainsTogether>>,
    /// The epoch of the peer's latest report.
    reported: Option<u64>,
    /// How many sessions' drains of that epoch the peer has heard of.
    told: u32,
}

impl Stream {
    /// Report this session's drains to the peer, and share the drains it
    /// gathered (a client's: `congestion::Congestion::report_drains`).
    pub fn report_drains(&mut self) {
        self.send.cwnd_mut().report_drains();
    }

    /// Gather the drains the peer reports into `uploads`, which every
    /// session of the broker connection shares, and tell the peer what
    /// the drains of its moment measured (the agent's).
    pub fn gather_drains(&mut self, uploads: Arc<DrainsTogether>) {
        self.gathering.uploads = Some(uploads);
    }

    /// An opened PAD from the peer that is not an ask for pads.
    pub(super) fn on_drains_pad(&mut self, payload: &Bytes, now: Instant) {
        if let Some(shared) = DrainsShared::decode(payload) {
            tracing::debug!(?shared, "the peer's drains");
            self.send.cwnd_mut().adopt(shared);
            return;
        }
        let g = &mut self.gathering;
        let (Some(r), Some(uploads)) = (DrainReport::decode(payload), &g.uploads) else {
            return;
        };
        // One report per drain: a peer's reports counted again would
        // count as more sessions, whose floors move the others' bases.
        if r.epoch.abs_diff(congestion::epoch(now)) > REPORT_EPOCHS
            || g.reported.is_some_and(|e| r.epoch <= e)
        {
            tracing::debug!(epoch = r.epoch, "drain report out of its time dropped");
            return;
        }
        uploads.offer(r.epoch, r.base, r.rate);
        g.reported = Some(r.epoch);
        g.told = 1;
    }

    /// After a frame from the peer: a drain of ours for the peer to hear
    /// of, and news of the drains of the moment the peer reported.
    pub(super) fn drain_news(&mut self) {
        if let Some(r) = self.send.cwnd_mut().take_report() {
            self.out.push_back((r.frame(self.sid), None));
        }
        let g = &mut self.gathering;
        let (Some(uploads), Some(epoch)) = (&g.uploads, g.reported) else {
            return;
        };
        match uploads.shared() {
            Some(s) if s.epoch == epoch => {
                if s.sessions > g.told {
                    g.told = s.sessions;
                    self.out.push_back((s.frame(self.sid), None));
                }
            }
            // A later moment's drains: the peer's are over.
            _ => g.reported = None,
        }
    }
}

#[cfg(test)]
mod tests;
