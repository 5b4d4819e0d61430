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

use super::frames::{sealed_pad_of, Frame, Kind};

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

/// The fields both carry: the epoch, a round trip and a rate.
type Head = (u64, Duration, f64);

/// A payload of `len` bytes: `first`, then `head`'s fields.
fn put_head(len: usize, first: u8, (epoch, rtt, rate): Head) -> BytesMut {
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(first);
    b.put_u64(epoch);
    b.put_u32(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
    // (A rate past 4 GB/s, or a lying peer's infinite one, saturates.)
    b.put_u32(rate as u32);
    b
}

/// `payload`'s head and what follows it, if it has `len` bytes and
/// begins with `first`.
fn get_head(payload: &[u8], len: usize, first: u8) -> Option<(Head, &[u8])> {
    let mut p = payload;
    (p.len() == len && p.get_u8() == first).then(|| {
        let head = (
            p.get_u64(),
            Duration::from_micros(p.get_u32().into()),
            p.get_u32().into(),
        );
        (head, p)
    })
}

impl DrainReport {
    /// A PAD frame for session `sid` carrying this (to be sealed).
    pub fn frame(&self, sid: u64) -> Frame {
        let b = put_head(REPORT_LEN, REPORT, (self.epoch, self.base, self.rate));
        Frame::control(Kind::Pad, sid, b.freeze())
    }

    /// From an opened PAD's payload, if it is one.
    pub fn decode(payload: &Bytes) -> Option<DrainReport> {
        let ((epoch, base, rate), _) = get_head(payload, REPORT_LEN, REPORT)?;
        Some(DrainReport { epoch, base, rate })
    }
}

impl DrainsShared {
    /// A PAD frame for session `sid` carrying this (to be sealed).
    pub fn frame(&self, sid: u64) -> Frame {
        let mut b = put_head(SHARED_LEN, SHARED, (self.epoch, self.least, self.rate));
        b.put_u32(self.sessions);
        Frame::control(Kind::Pad, sid, b.freeze())
    }

    /// From an opened PAD's payload, if it is one.
    pub fn decode(payload: &Bytes) -> Option<DrainsShared> {
        let ((epoch, least, rate), mut rest) = get_head(payload, SHARED_LEN, SHARED)?;
        Some(DrainsShared {
            epoch,
            least,
            sessions: rest.get_u32(),
            rate,
        })
    }
}

/// Whether `f`, a PAD as it came from the broker (sealed), may carry a
/// [`DrainReport`]: the agent opens those and drops other PADs unopened.
pub fn may_report_drain(f: &Frame) -> bool {
    sealed_pad_of(f, REPORT_LEN)
}

/// Whether `f`, a PAD as it came from the broker (sealed), may carry a
/// [`DrainsShared`].
pub fn may_share_drains(f: &Frame) -> bool {
    sealed_pad_of(f, SHARED_LEN)
}

#[cfg(test)]
mod tests;
