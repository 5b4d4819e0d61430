//! Drains shared across processes: the PAD payloads by which a client
//! tells the agent what its upload's drain measured, and the agent tells
//! it what all the drains of that moment measured
//! (`stream::congestion::DrainsTogether`).
//!
//! Both go in sealed PAD frames, so only the session's peer can send
//! them; a receiver that predates them drops every PAD it does not know
//! unopened, by its length (as it does [`super::PAD_ASK`]).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frames::{Frame, Kind};
use super::limits::TAG_LEN;

/// First byte of a [`DrainReport`]'s payload.
const REPORT: u8 = 2;
/// First byte of a [`DrainsShared`]'s payload.
const SHARED: u8 = 3;
/// Payload lengths: the first byte, epoch u64, a round trip in
/// microseconds u32, a rate in bytes/s u32; a [`DrainsShared`] adds the
/// sessions u32.
const REPORT_LEN: usize = 1 + 8 + 4 + 4;
const SHARED_LEN: usize = REPORT_LEN + 4;

/// client -> agent: the upload's drain begun in `epoch` left it with
/// `base`, at `rate` bytes/s before the drain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainReport {
    pub epoch: u64,
    pub base: Duration,
    pub rate: f64,
}

/// agent -> client: the drains of the client uploads begun in `epoch`
/// that the agent heard of: `sessions` of them, the least base they left
/// and their rates summed (bytes/s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainsShared {
    pub epoch: u64,
    pub least: Duration,
    pub sessions: u32,
    pub rate: f64,
}

fn put_head(b: &mut BytesMut, first: u8, epoch: u64, rtt: Duration, rate: f64) {
    b.put_u8(first);
    b.put_u64(epoch);
    b.put_u32(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
    // (A rate past 4 GB/s, or a lying peer's infinite one, saturates.)
    b.put_u32(rate as u32);
}

impl DrainReport {
    /// A PAD frame for session `sid` carrying this (to be sealed).
    pub fn frame(&self, sid: u64) -> Frame {
        let mut b = BytesMut::with_capacity(REPORT_LEN);
        put_head(&mut b, REPORT, self.epoch, self.base, self.rate);
        Frame::control(Kind::Pad, sid, b.freeze())
    }

    /// From an opened PAD's payload, if it is one.
    pub fn decode(payload: &Bytes) -> Option<DrainReport> {
        let mut p = &payload[..];
        (p.len() == REPORT_LEN && p.get_u8() == REPORT).then(|| DrainReport {
            epoch: p.get_u64(),
            base: Duration::from_micros(p.get_u32().into()),
            rate: p.get_u32().into(),
        })
    }
}

impl DrainsShared {
    /// A PAD frame for session `sid` carrying this (to be sealed).
    pub fn frame(&self, sid: u64) -> Frame {
        let mut b = BytesMut::with_capacity(SHARED_LEN);
        put_head(&mut b, SHARED, self.epoch, self.least, self.rate);
        b.put_u32(self.sessions);
        Frame::control(Kind::Pad, sid, b.freeze())
    }

    /// From an opened PAD's payload, if it is one.
    pub fn decode(payload: &Bytes) -> Option<DrainsShared> {
        let mut p = &payload[..];
        (p.len() == SHARED_LEN && p.get_u8() == SHARED).then(|| DrainsShared {
            epoch: p.get_u64(),
            least: Duration::from_micros(p.get_u32().into()),
            rate: p.get_u32().into(),
            sessions: p.get_u32(),
        })
    }
}

/// Whether `f`, a PAD as it came from the broker (sealed), may carry a
/// [`DrainReport`]: the agent opens those and drops other PADs unopened.
pub fn may_report_drain(f: &Frame) -> bool {
    f.kind == Kind::Pad && f.payload.len() == REPORT_LEN + TAG_LEN
}

/// Whether `f`, a PAD as it came from the broker (sealed), may carry a
/// [`DrainsShared`].
pub fn may_share_drains(f: &Frame) -> bool {
    f.kind == Kind::Pad && f.payload.len() == SHARED_LEN + TAG_LEN
}

#[cfg(test)]
mod tests;
