//! The sending half: sequence numbers, the chunks kept until acknowledged,
//! loss detection, retransmission and the zero-window probe, paced by the
//! congestion window, the peer's window and the retransmission timeout.
//! Its timers (the retransmission timeout, the zero-window probe and the
//! pace) are in [`timers`].

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::time::Instant;

use super::congestion::Congestion;
use super::pace::{self, Pacer};
use super::rate::{self, DeliveryRate, SendSnapshot};
use super::recv::ACK_EVERY;
use super::rtt::RttEstimator;
use super::segment::Segmenter;
use crate::protocol::{FRAME_OVERHEAD, HEADER_LEN, MAX_INFLIGHT_CHUNKS, TAG_LEN};

/// Where the sending direction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStage {
    /// Local bytes may still come.
    Open,
    /// The local side reached EOF; the FIN waits for room in the congestion
    /// window.
    FinQueued,
    /// The FIN took the last sequence number. It is acknowledged once no
    /// chunk is left unacknowledged.
    FinSent,
}

/// What a sent chunk is known to have become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Sent, no news yet: counts against the congestion window.
    InFlight,
    /// Presumed lost: waits for retransmission.
    Lost,
    /// Selectively acknowledged: arrived, waits for the cumulative ack.
    Sacked,
}

#[derive(Debug)]
struct Sent {
    seq: u64,
    data: Bytes,
    /// See [`Chunk::sealed`].
    sealed: Option<Bytes>,
    fin: bool,
    sent_at: Instant,
    /// Transmission order (bumped on every retransmission too): chunks sent
    /// in one burst share `sent_at`, so loss detection compares this.
    xmit: u64,
    /// Sent more than once: its acknowledgement is no round-trip sample
    /// (Karn's rule: which transmission it answers is unknown). Also set
    /// for a chunk sent before the session was accepted, whose timer
    /// restarted then.
    retransmitted: bool,
    state: ChunkState,
    /// Went with `FLAG_ACK_REQ`: the peer acknowledges it at once, so its
    /// round trip holds no ack delay and tells the queue (see
    /// [`SendHalf::on_ack`]).
    ack_req: bool,
    /// The largest message of its latest transmission (a whole frame, or
    /// its fragments): what its delivery or loss says about sizes.
    message: usize,
    /// The delivery rate's state when it (last) left.
    snap: SendSnapshot,
}

/// A chunk to put on the wire (first transmission or retransmission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub seq: u64,
    /// The chunk's bytes; when `sealed` is set, their sealed form (as long
    /// as the bytes themselves).
    pub data: Bytes,
    pub fin: bool,
    /// The frame the chunk was sealed into in place for its first
    /// transmission ([`SendHalf::push_sealed`]): a retransmission opens it
    /// again and seals it with a new counter.
    pub sealed: Option<Bytes>,
}

/// One session's sending direction.
#[derive(Debug)]
pub struct SendHalf {
    stage: SendStage,
    /// Sequence number of the next new chunk.
    next: u64,
    /// Transmissions so far (see [`Sent::xmit`]).
    xmit_count: u64,
    unacked: VecDeque<Sent>,
    unacked_bytes: usize,
    /// The peer's free receive buffer, from its latest frame.
    peer_window: u32,
    cwnd: Congestion,
    rtt: RttEstimator,
    /// How large a message may be.
    segment: Segmenter,
    rate: DeliveryRate,
    /// When the next chunk may go: at twice the window's rate, where
    /// chunks follow the rate.
    pace: Pacer,
    /// Chunks are cut to the window and the delivery rate
    /// ([`SendHalf::max_chunk`]).
    rate_chunks: bool,
    /// When to probe a zero window next.
    probe_at: Option<Instant>,
    bytes_sent: u64,
    chunks_sent: u64,
    retransmits: u64,
}

impl SendHalf {
    /// Nothing sent yet; `peer_window` is the peer's announced window.
    pub fn new(peer_window: u32) -> SendHalf {
        SendHalf {
            stage: SendStage::Open,
            next: 0,
            xmit_count: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            peer_window,
            cwnd: Congestion::new(),
            rtt: RttEstimator::new(),
            segment: Segmenter::new(),
            rate: DeliveryRate::default(),
            pace: Pacer::default(),
            rate_chunks: true,
            probe_at: None,
            bytes_sent: 0,
            chunks_sent: 0,
            retransmits: 0,
        }
    }

    #[cfg(test)]
    pub fn stage(&self) -> SendStage {
        self.stage
    }

    #[cfg(test)]
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    /// A round trip may take `d` longer than usual without a loss (rate
    /// caps): the retransmission timeout allows for it.
    pub fn allow_delay(&mut self, d: std::time::Duration) {
        self.rtt.allow_delay(d);
    }

    /// Chunk `seq` actually left now (it may have waited for the
    /// connection's rate caps since it was queued): its round trip and its
    /// timeout count from here, so time spent in our own queue is neither
    /// taken for network delay nor a reason to retransmit.
    pub fn on_transmitted(&mut self, seq: u64, now: Instant) {
        let Some(first) = self.unacked.front().map(|s| s.seq) else {
            return;
        };
        let Some(s) = seq
            .checked_sub(first)
            .and_then(|i| self.unacked.get_mut(i as usize))
        else {
            return;
        };
        if s.seq == seq && s.state == ChunkState::InFlight {
            s.sent_at = s.sent_at.max(now);
        }
    }

    /// The session was accepted with this receive window (see
    /// [`crate::stream::Stream::on_accept`]).
    pub fn on_accept(&mut self, window: u32, now: Instant) {
        self.peer_window = window;
        for s in self
            .unacked
            .iter_mut()
            .filter(|s| s.state == ChunkState::InFlight)
        {
            s.sent_at = now;
            s.retransmitted = true;
        }
    }

    /// The round-trip estimator (its smoothed estimate tunes the receive
    /// window too).
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The message size estimate (the stream cuts frames by it).
    pub fn segment(&self) -> &Segmenter {
        &self.segment
    }

    pub fn segment_mut(&mut self) -> &mut Segmenter {
        &mut self.segment
    }

    /// The largest message a chunk of `len` bytes goes out in now.
    fn message_len(&self, len: usize) -> usize {
        (len + FRAME_OVERHEAD).min(self.segment.limit())
    }

    /// The window, to share its drains (`super::congestion::DrainsTogether`).
    pub fn cwnd_mut(&mut self) -> &mut Congestion {
        &mut self.cwnd
    }

    /// The window is in a drain ([`Congestion::draining`]).
    pub fn draining(&self) -> bool {
        self.cwnd.draining()
    }

    #[cfg(test)]
    pub fn cwnd(&self) -> &Congestion {
        &self.cwnd
    }

    /// The sequence number the next new chunk takes: no valid ack exceeds it.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// (payload bytes, chunks including FIN, retransmissions) sent so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.bytes_sent, self.chunks_sent, self.retransmits)
    }

    /// Something sent (or to be resent) awaits the peer's acknowledgement.
    pub fn outstanding(&self) -> bool {
        !self.unacked.is_empty()
    }

    /// Chunks in flight: sent, neither acknowledged nor presumed lost.
    pub fn pipe(&self) -> usize {
        self.in_flight().count()
    }

    /// Bytes in flight: of the chunks [`SendHalf::pipe`] counts.
    pub fn pipe_bytes(&self) -> usize {
        self.in_flight().map(|s| s.data.len()).sum()
    }

    fn in_flight(&self) -> impl Iterator<Item = &Sent> {
        self.unacked
            .iter()
            .filter(|s| s.state == ChunkState::InFlight)
    }

    fn window_allows_chunk(&self) -> bool {
        (self.unacked.len() as u64) < MAX_INFLIGHT_CHUNKS && self.cwnd.allows(self.pipe_bytes())
    }

    /// The largest chunk to read now: what the message size allows, and no
    /// more than the window and the delivery rate cut ([`rate::cut`]).
    pub fn max_chunk(&self) -> usize {
        if self.rate_chunks {
            self.segment
                .max_chunk()
                .min(rate::cut(&self.cwnd, &self.rate))
        } else {
            self.segment.max_chunk()
        }
    }

    /// See [`crate::stream::Stream::set_chunks_follow_rate`].
    pub fn set_chunks_follow_rate(&mut self, on: bool) {
        self.rate_chunks = on;
        if !on {
            self.pace = Pacer::default();
        }
    }

    /// Whether a chunk of `len` bytes, sent now, asks for an ack at once,
    /// to time a round trip the window can read. Only full chunks (a copy,
    /// not a keystroke), in two cases:
    /// - Nothing is in flight: the start of a copy measures the path's own
    ///   round trip (the base delay). Otherwise its first sample would be
    ///   the one that closes the first window, and the window's own queue
    ///   would pass for the path.
    /// - [`ACK_EVERY`] chunks or more are in flight and none of them asked:
    ///   one per round trip then. (With fewer in flight, every full chunk
    ///   asks anyway: `Stream::ack_request_due`.) With more, the peer
    ///   would ack every [`ACK_EVERY`] chunks at once on its own, but a
    ///   peer with data of its own to send (ssh's window adjustments) acks
    ///   on that data, at moments we cannot tell from delayed acks, and
    ///   seldom gets there. A copy over a far path then got no sample
    ///   after slow start and its window froze (a 128 MiB upload over a
    ///   40 ms path with end-to-end TCP, `scripts/bench-wan`: 0.62-0.67
    ///   of direct scp; asking: 0.97-0.98).
    pub fn asks_for_sample(&self, len: usize) -> bool {
        if len < self.max_chunk() {
            return false;
        }
        let pipe = self.pipe() as u64;
        pipe == 0 || (pipe >= ACK_EVERY && !self.in_flight().any(|s| s.ack_req))
    }

    /// Chunk `seq` went (or goes) with `FLAG_ACK_REQ`.
    pub fn ack_requested(&mut self, seq: u64) {
        if let Some(s) = self.unacked.iter_mut().rev().find(|s| s.seq == seq) {
            s.ack_req = true;
        }
    }

    /// May a new data chunk go: still open, room in the congestion window
    /// and in the peer's window.
    pub fn can_send(&self) -> bool {
        self.can_send_holding(0, 0)
    }

    /// [`SendHalf::can_send`] and [`SendHalf::pipe`] as they will be once
    /// a chunk of `len` bytes more is in flight: a sealed frame's header
    /// is written before its chunk is pushed.
    pub fn after_push(&self, len: usize) -> (bool, usize) {
        (self.can_send_holding(1, len), self.pipe() + 1)
    }

    /// [`SendHalf::can_send`] with `chunks` more chunks of `bytes` bytes in
    /// all in flight (the congestion window counts the bytes, the chunk cap
    /// the chunks).
    fn can_send_holding(&self, chunks: usize, bytes: usize) -> bool {
        self.stage == SendStage::Open
            && ((self.unacked.len() + chunks) as u64) < MAX_INFLIGHT_CHUNKS
            && self.cwnd.allows(self.pipe_bytes() + bytes)
            && self.unacked_bytes + bytes < self.peer_window as usize
    }

    /// Give `data` the next sequence number and keep it until acknowledged.
    pub fn push(&mut self, data: Bytes, fin: bool, now: Instant) -> Chunk {
        self.keep(data, None, fin, now)
    }

    /// [`SendHalf::push`] for a chunk sealed in place into `wire`, a DATA
    /// frame of [`HEADER_LEN`] + chunk + [`TAG_LEN`] bytes with this chunk's
    /// sequence number: kept as that frame (see [`Chunk::sealed`]).
    pub fn push_sealed(&mut self, wire: Bytes, now: Instant) -> Chunk {
        debug_assert!(wire.len() > HEADER_LEN + TAG_LEN);
        let data = wire.slice(HEADER_LEN..wire.len() - TAG_LEN);
        self.keep(data, Some(wire), false, now)
    }

    fn keep(&mut self, data: Bytes, sealed: Option<Bytes>, fin: bool, now: Instant) -> Chunk {
        let seq = self.next;
        self.next += 1;
        self.unacked_bytes += data.len();
        let message = self.message_len(data.len());
        let snap = self.rate.on_send(self.pipe() == 0, now);
        if self.rate_chunks {
            let rate = pace::rate(self.cwnd.window(), self.rtt.srtt());
            self.pace.on_send(data.len(), rate, now);
        }
        self.unacked.push_back(Sent {
            seq,
            data: data.clone(),
            sealed: sealed.clone(),
            fin,
            sent_at: now,
            xmit: self.xmit_count,
            retransmitted: false,
            state: ChunkState::InFlight,
            ack_req: false,
            message,
            snap,
        });
        self.xmit_count += 1;
        self.bytes_sent += data.len() as u64;
        self.chunks_sent += 1;
        Chunk {
            seq,
            data,
            fin,
            sealed,
        }
    }

    /// The local side reached EOF: a FIN follows the data.
    pub fn close(&mut self) {
        if self.stage == SendStage::Open {
            self.stage = SendStage::FinQueued;
        }
    }

    /// The oldest lost chunk, marked as in flight again, if the congestion
    /// window has room for it.
    pub fn next_retransmit(&mut self, now: Instant) -> Option<Chunk> {
        let limit = self.segment.limit();
        let pipe = self.pipe_bytes();
        let s = self
            .unacked
            .iter_mut()
            .find(|s| s.state == ChunkState::Lost)?;
        if !self.cwnd.allows(pipe) {
            return None;
        }
        let pipe_empty = pipe == 0;
        s.snap = self.rate.on_send(pipe_empty, now);
        s.message = s.message.min(limit);
        s.state = ChunkState::InFlight;
        s.retransmitted = true;
        s.ack_req = false;
        s.sent_at = now;
        s.xmit = self.xmit_count;
        self.xmit_count += 1;
        self.retransmits += 1;
        Some(Chunk {
            seq: s.seq,
            data: s.data.clone(),
            fin: s.fin,
            sealed: s.sealed.clone(),
        })
    }

    /// The FIN, once it is queued and the windows have room for it.
    pub fn take_fin(&mut self, now: Instant) -> Option<Chunk> {
        if self.stage != SendStage::FinQueued || !self.window_allows_chunk() {
            return None;
        }
        self.stage = SendStage::FinSent;
        Some(self.push(Bytes::new(), true, now))
    }

    /// Our FIN was sent and everything up to it acknowledged.
    pub fn fin_acked(&self) -> bool {
        self.stage == SendStage::FinSent && self.unacked.is_empty()
    }

    /// The acknowledgement state from a peer's frame: cumulative `ack`,
    /// selective `sack` bitmap (bit `i` is chunk `ack + 1 + i`) and its
    /// window. The caller has checked that `ack` is at most
    /// [`SendHalf::next_seq`].
    pub fn on_ack(&mut self, ack: u64, sack: u64, window: u32, now: Instant) {
        let snd_una = self.unacked.front().map_or(self.next, |s| s.seq);
        if ack < snd_una {
            return; // An older frame overtaken by a newer one.
        }
        self.peer_window = window;
        if window > 0 {
            self.probe_at = None;
        }
        let mut newest_delivered: Option<u64> = None;
        let mut newly_acked = 0u32;
        let mut acked_bytes = 0;
        // The window was full when this ack came: what the window allows
        // was in flight, give or take a chunk.
        let limited = self.pipe_bytes() + self.max_chunk() > self.cwnd.window() as usize;
        let mut sample = None;
        while self.unacked.front().is_some_and(|s| s.seq < ack) {
            let s = self.unacked.pop_front().expect("front exists");
            self.unacked_bytes -= s.data.len();
            acked_bytes += s.data.len();
            newly_acked += 1;
            let sacked = s.state == ChunkState::Sacked;
            if !sacked {
                newest_delivered = newest_delivered.max(Some(s.xmit));
                self.segment.on_delivered(s.message);
                self.rate.on_delivered(s.data.len(), s.snap, s.sent_at, now);
            }
            // Only the chunk that moved the ack to here times a round trip:
            // an older one may have waited for a gap to fill.
            if !s.retransmitted && !sacked && s.seq + 1 == ack {
                let rtt = now.saturating_duration_since(s.sent_at);
                self.rtt.on_sample(rtt);
                sample = Some((rtt, s.ack_req));
            }
        }
        // The queue is read only off round trips the peer answered at once:
        // asked to, or on its every-ACK_EVERY-chunks rule. Any other ack may
        // have waited up to the peer's ack delay for data to ride on.
        let delay_sample = sample
            .filter(|&(_, asked)| asked || u64::from(newly_acked) >= ACK_EVERY)
            .map(|(rtt, _)| rtt);
        for s in self.unacked.iter_mut().filter(|s| s.seq > ack) {
            let bit = s.seq - ack - 1;
            if bit < 64 && sack & (1 << bit) != 0 && s.state != ChunkState::Sacked {
                s.state = ChunkState::Sacked;
                newest_delivered = newest_delivered.max(Some(s.xmit));
                self.segment.on_delivered(s.message);
                self.rate.on_delivered(s.data.len(), s.snap, s.sent_at, now);
            }
        }
        if newly_acked > 0 {
            self.rtt.reset_backoff();
            self.cwnd
                .on_ack(ack, acked_bytes, delay_sample, limited, now);
        }
        // A chunk sent before one that arrived is lost: a broker keeps the
        // order of messages on one topic, so it is not merely late.
        if let Some(newest) = newest_delivered {
            let mut lost_any = false;
            for s in self.unacked.iter_mut() {
                if s.state == ChunkState::InFlight && s.xmit < newest {
                    s.state = ChunkState::Lost;
                    lost_any = true;
                }
            }
            if lost_any {
                self.cwnd.on_loss(self.next);
            }
        }
    }

    /// Presume every chunk not known to have arrived lost (the peer asked
    /// to resynchronise, or the retransmission timeout fired).
    pub fn mark_all_lost(&mut self) {
        for s in self
            .unacked
            .iter_mut()
            .filter(|s| s.state != ChunkState::Sacked)
        {
            s.state = ChunkState::Lost;
        }
    }

    /// Our broker connection came back: everything in flight is lost, and
    /// the timeout starts again from the measured one.
    pub fn on_reconnect(&mut self) {
        self.mark_all_lost();
        self.rtt.reset_backoff();
        self.cwnd.on_reconnect();
        self.rate.reset();
        self.pace = Pacer::default();
    }
}

mod timers;

#[cfg(test)]
mod tests;
