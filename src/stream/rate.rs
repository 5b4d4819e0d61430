//! How fast the path delivers: the largest delivery rate seen lately, and
//! the chunk size that follows from it ([`DeliveryRate::chunk`]).
//!
//! A keystroke that reaches the bottleneck behind a chunk waits for the
//! whole chunk to cross it, so on a slow link chunks must be small (a
//! 64 KiB chunk takes 250 ms of a 256 KiB/s link). Small chunks starve a
//! path whose limit counts messages instead (a broker bridge with 20 in
//! flight and Nagle's algorithm on both ends: 0.6 MB/s with 4 KiB chunks,
//! 81 MB/s with full ones), and there the round trip does not grow with
//! what we send, so the congestion window alone cannot tell the two apart:
//! at its floor, a bridge that stalls each message 40 ms looks like a
//! 200 KB/s link with a queue. The delivery rate can: a byte-limited link
//! never delivers faster than its rate, while a message-limited path
//! delivers a whole window at once every so often. The rate asks for
//! what [`CHUNK_TIME`] of the fastest recent delivery carries, and a
//! session cuts the larger of that and a quarter of its window
//! (`SendHalf::max_chunk`): on a byte-limited link the quarter is the
//! larger, on a stalling path the rate's. The maximum over [`RATE_PERIOD`]
//! keeps a stalled moment from shrinking chunks on a fast path, where
//! small chunks would then stall more.
//!
//! Rate samples follow BBR's delivery rate estimation
//! (draft-cheng-iccrg-delivery-rate-estimation): bytes delivered between a
//! chunk's sending and its acknowledgement, over the longer of the send and
//! the ack intervals, so acknowledgements that arrive bunched together do
//! not inflate it. Unlike BBR, a chunk delivered with nothing else in its
//! interval gives no sample: that is one round trip, and a link that saves
//! credit while idle lets it through faster than the link's rate (a relay
//! that saved 5 ms showed a 4 KiB chunk crossing 1 MiB/s in 1.4 ms, 2.8
//! MB/s; the maximum is kept up to two [`RATE_PERIOD`]s, and the session
//! cut 11 KiB chunks for 20 s).

use std::time::Duration;

use tokio::time::Instant;

use super::congestion::{Congestion, MIN_CHUNK};
use super::two_periods::TwoPeriods;
use crate::protocol::MAX_INFLIGHT_CHUNKS;

/// How long one chunk may hold the bottleneck where the rate, not the
/// window, cuts it. Short beside the queue target: on a byte-limited link
/// the window (the link's rate times the round trip and the target) is
/// then always more than four of these chunks, and its quarter decides,
/// as fairness needs (with 16 KiB chunks cut by the rate alone, two copies
/// in the model of a 1 MiB/s link split it 1 to 3: a window of one or two
/// chunks can take only a few sizes). [`MIN_CHUNK`] up to 1 MiB/s, 16 KiB
/// at 4 MiB/s, full-size chunks from about 10 MB/s.
pub const CHUNK_TIME: Duration = Duration::from_millis(4);

/// The longest a chunk cut to the window may hold the bottleneck, at the
/// fastest delivery rate measured ([`DeliveryRate::longest`]): what
/// [`MIN_CHUNK`] takes at 256 KiB/s. A keystroke that reaches the
/// bottleneck behind a chunk waits for the rest of it, and a quarter of
/// the window was 20-31 ms of the link over the 40 ms paths paced to
/// 1 MiB/s and 256 KiB/s (traced: 5-7 KiB at 256 KiB/s up, 20-31 KiB at
/// 1 MiB/s down), where the issue leaves a keystroke 100 ms in all. It
/// cuts chunks only where the window holds more than four of these times
/// of the link: on slow links. At rates where
/// [`MAX_CHUNK`](crate::protocol::MAX_CHUNK) takes less (4 MB/s and up)
/// it changes nothing, and a path that delivers whole windows at once (a
/// bridge's stalls) measures a rate that asks for full chunks anyway.
///
/// Not in the first slow start: there the rate lags a window that doubles
/// each round trip, and over a far path the cap cut the chunks of the
/// whole ramp (64 MiB uploads over 200 ms with TCP end to end,
/// `scripts/bench-wan`: 0.93 and 0.89 of direct scp, against 0.98 and
/// 0.96 without the cap, same run).
pub const LONGEST_CHUNK: Duration = Duration::from_millis(16);

/// How long the fastest delivery is remembered: the estimate is the
/// largest sample of this period and the last.
pub const RATE_PERIOD: Duration = Duration::from_secs(10);

/// What the estimator knew when a chunk left: kept with the chunk.
#[derive(Debug, Clone, Copy)]
pub struct SendSnapshot {
    /// Bytes delivered by then.
    delivered: u64,
    /// When the latest of them was delivered (or the pipe last started
    /// from empty).
    delivered_at: Instant,
    /// When the chunk delivered latest by then had been sent.
    first_sent_at: Instant,
}

/// The delivery rate of one sending direction.
#[derive(Debug, Clone)]
pub struct DeliveryRate {
    delivered: u64,
    delivered_at: Option<Instant>,
    first_sent_at: Option<Instant>,
    /// The largest sample (bytes per second) of this [`RATE_PERIOD`] and
    /// the last.
    fastest: TwoPeriods<f64>,
}

impl Default for DeliveryRate {
    fn default() -> Self {
        DeliveryRate {
            delivered: 0,
            delivered_at: None,
            first_sent_at: None,
            fastest: TwoPeriods::new(RATE_PERIOD, f64::max),
        }
    }
}

impl DeliveryRate {
    /// A chunk leaves at `now`; `pipe_empty`: nothing else is in flight
    /// (the interval then starts now, not at the last delivery: idle time
    /// is no slowness of the path).
    pub fn on_send(&mut self, pipe_empty: bool, now: Instant) -> SendSnapshot {
        if pipe_empty || self.delivered_at.is_none() {
            self.delivered_at = Some(now);
            self.first_sent_at = Some(now);
        }
        SendSnapshot {
            delivered: self.delivered,
            delivered_at: self.delivered_at.unwrap_or(now),
            first_sent_at: self.first_sent_at.unwrap_or(now),
        }
    }

    /// `bytes` of a chunk sent at `sent_at` with `snap` arrived (acked or
    /// selectively acked), learnt at `now`.
    pub fn on_delivered(
        &mut self,
        bytes: usize,
        snap: SendSnapshot,
        sent_at: Instant,
        now: Instant,
    ) {
        self.delivered += bytes as u64;
        self.delivered_at = Some(now);
        self.first_sent_at = Some(sent_at);
        let send = sent_at.saturating_duration_since(snap.first_sent_at);
        let ack = now.saturating_duration_since(snap.delivered_at);
        let interval = send.max(ack).as_secs_f64();
        let bytes_since = self.delivered - snap.delivered;
        // A chunk that was alone in flight measures its own round trip, not
        // a rate: on a link it is slower than the link (the path's delay
        // counts), and where it is faster the link let it through from
        // credit saved while idle (a token bucket's burst), once.
        if interval <= 0.0 || bytes_since == bytes as u64 {
            return;
        }
        let rate = bytes_since as f64 / interval;
        self.fastest.on_sample(rate, now);
    }

    /// The largest delivery rate of this period and the last (bytes per
    /// second), if any was measured.
    pub fn max(&self) -> Option<f64> {
        self.fastest.get()
    }

    /// The chunk to cut: [`CHUNK_TIME`] of [`DeliveryRate::max`], at least
    /// [`MIN_CHUNK`]; `MIN_CHUNK` until a rate is measured, so that a copy
    /// starting on a slow link does not put a large chunk ahead of a
    /// keystroke. (The message size limits apply on top.)
    pub fn chunk(&self) -> usize {
        self.carries(CHUNK_TIME).unwrap_or(MIN_CHUNK)
    }

    /// The largest chunk the window may ask for: [`LONGEST_CHUNK`] of
    /// [`DeliveryRate::max`], at least [`MIN_CHUNK`]; no limit until a rate
    /// is measured (the window is small then).
    pub fn longest(&self) -> usize {
        self.carries(LONGEST_CHUNK).unwrap_or(usize::MAX)
    }

    /// What `time` of [`DeliveryRate::max`] carries, at least
    /// [`MIN_CHUNK`], if a rate was measured.
    fn carries(&self, time: Duration) -> Option<usize> {
        self.max()
            .map(|r| ((r * time.as_secs_f64()) as usize).max(MIN_CHUNK))
    }

    /// The connection came back, perhaps over another network.
    pub fn reset(&mut self) {
        *self = DeliveryRate::default();
    }
}

/// The chunk a session cuts (before the message size limits): the larger
/// of a quarter of its window ([`Congestion::chunk`]), at most
/// [`LONGEST_CHUNK`] of the link once the first slow start has ended
/// ([`DeliveryRate::longest`]; but enough to fill the window within
/// [`MAX_INFLIGHT_CHUNKS`] chunks), and what its delivery rate asks for
/// ([`DeliveryRate::chunk`]). On a byte-limited link the window's quarter
/// is the larger; where the window is held small by round trips that do
/// not grow with what we send (a bridge's stalls), the rate is.
///
/// During a drain, [`MIN_CHUNK`]: the drain measures the path's round trip
/// with the session's floor, and every session of the link drains at the
/// same moment, so each sample holds the other sessions' floors queued
/// ahead of it, and its own chunk's time at the link. Cut by the rate
/// ([`CHUNK_TIME`] of it), a floor at 4 MiB/s held 3 ms or more, and
/// the bases two sessions measured were 1-3 ms apart: the one with the
/// higher base reads the queue they share as shorter, and over a far
/// path its target, a share of its base, is higher too. Its window kept
/// growing while the other's shrank, with their targets within half a
/// millisecond (the model, 4 MiB/s, 20 ms each way: windows 139 / 138 KB
/// at 8 s, 199 / 80 KB at 24 s). Two copies at 4 MiB/s over a 40 ms
/// path (TUN, cubic) split under 0.8 of each other in 6 of 8 directions
/// before, none of 8 after, in turns (and 1 of 8 in four more rounds
/// after: fewer, not none). Where the path stalls small
/// messages (a bridge), a drain's two round trips carry next to nothing
/// with either floor, and copies through bridged brokers measured the
/// same within their wide spread.
pub fn cut(window: &Congestion, rate: &DeliveryRate) -> usize {
    if window.draining() {
        return MIN_CHUNK;
    }
    let quarter = if window.slow_start_ended() {
        window.chunk().min(rate.longest().max(fills(window)))
    } else {
        window.chunk()
    };
    quarter.max(rate.chunk())
}

/// The smallest chunk that lets the window be full within
/// [`MAX_INFLIGHT_CHUNKS`] chunks in flight. [`LONGEST_CHUNK`] of the rate
/// is less where the window holds more than 64 of those, 1.024 s of the
/// link (a round trip over a second): cut that small, the chunk count,
/// not the link, would hold the copy back, and the rate it measured would
/// shrink the chunks further.
fn fills(window: &Congestion) -> usize {
    (window.window() / MAX_INFLIGHT_CHUNKS as f64).ceil() as usize
}

#[cfg(test)]
pub(crate) mod tests;
