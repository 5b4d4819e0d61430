//! The reliable byte stream: sequencing, acknowledgement, flow-control
//! window, loss detection, retransmission and half-close, for one session in
//! both directions. No I/O and no clock of its own: the caller feeds frames,
//! local bytes and the current time, and takes frames to publish and bytes to
//! write. `tunnel.rs` drives it over real I/O.
//!
//! Why it exists: a broker acknowledges a QoS 1 publish and may still drop the
//! message when a subscriber's queue is full, drops everything in flight when
//! a clean-session client reconnects, and may duplicate across reconnects.
//!
//! Rules (see README "Protocol"):
//! - Every chunk of bytes, and the final FIN, takes the next sequence number.
//! - Every frame carries a cumulative ack (next chunk expected), a 64-bit
//!   selective-ack bitmap and the sender's free receive buffer (window).
//! - The sender keeps each chunk until it is acknowledged, limits chunks in
//!   flight by a congestion window and bytes in flight by the peer's window,
//!   and retransmits a chunk when a later one was acknowledged before it
//!   (broker order per topic makes that a loss) or when the retransmission
//!   timeout fires.
//! - The receiver drops duplicates, holds out-of-order chunks (bounded by
//!   its window) and acknowledges at once when it sees a gap.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::time::Instant;

use crate::protocol::{
    Frame, Kind, FLAG_ACK_REQ, FLAG_FIN, FLAG_PEER_LOST, FLAG_RESYNC, MAX_CHUNK,
    MAX_INFLIGHT_CHUNKS,
};

pub mod congestion;
pub mod rtt;

use congestion::CongestionWindow;
use rtt::RttEstimator;

/// Acknowledge at least every this many in-order chunks.
const ACK_EVERY: u64 = 4;
/// Longest an acknowledgement of in-order data waits for a chance to ride on
/// a data frame.
const ACK_DELAY: Duration = Duration::from_millis(10);
/// An idle session sends an ACK at least this often so the peer knows it is
/// alive; more often when the peer timeout is short (see
/// [`Stream::keepalive`]).
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// Keepalives per peer timeout when that timeout is short: three, so one or
/// two lost keepalives do not end an idle session.
const KEEPALIVES_PER_TIMEOUT: u32 = 3;
/// A session whose peer has not sent a single valid frame within this long
/// is dead (a forged or abandoned open); legitimate peers speak at once
/// (ssh banner, or an ACK within the delayed-ack time).
pub const FIRST_CONTACT: Duration = Duration::from_secs(10);

/// Per-session settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Bytes of the peer's data we are willing to buffer (advertised window).
    pub recv_window: u32,
    /// A peer not heard from for this long is dead.
    pub peer_timeout: Duration,
}

/// Default receive window: 1 MiB. Large enough to fill loopback and LAN
/// round trips through a broker (`scripts/bench`), small enough that 64
/// sessions stay within ~128 MiB of buffered data even when every reader
/// stalls, and at most 64 chunks in flight (16 when they are full) stay far
/// below a broker's default 1000-message queue.
pub const DEFAULT_RECV_WINDOW: u32 = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            recv_window: DEFAULT_RECV_WINDOW,
            peer_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a stream ended without a clean close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the peer reset the session")]
    Reset,
    #[error("no word from the peer for {0:?}")]
    PeerTimeout(Duration),
}

/// A frame the stream refused, for the caller's debug log and counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("frame for another session")]
    WrongSession,
    #[error("acknowledges chunk {ack} that was never sent (next is {next})")]
    AckBeyondSent { ack: u64, next: u64 },
    #[error("chunk {seq} outside the receive window")]
    OutsideWindow { seq: u64 },
    #[error("chunk {seq} after the peer's FIN")]
    AfterFin { seq: u64 },
    #[error("chunk {seq} would exceed the receive buffer")]
    BufferFull { seq: u64 },
    #[error("{0:?} frame is not part of the stream")]
    NotStream(Kind),
}

#[derive(Debug)]
struct Sent {
    seq: u64,
    data: Bytes,
    fin: bool,
    sent_at: Instant,
    /// Transmission order (bumped on every retransmission too): chunks sent
    /// in one burst share `sent_at`, so loss detection compares this.
    xmit: u64,
    retransmitted: bool,
    sacked: bool,
    lost: bool,
}

impl Sent {
    fn outstanding(&self) -> bool {
        !self.sacked && !self.lost
    }
}

/// Counters for logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub chunks_sent: u64,
    pub retransmits: u64,
}

/// One session's reliable stream, both directions.
#[derive(Debug)]
pub struct Stream {
    cfg: Config,
    sid: u64,

    // Sending side.
    snd_next: u64,
    xmit_count: u64,
    unacked: VecDeque<Sent>,
    unacked_bytes: usize,
    fin_queued: bool,
    fin_assigned: bool,
    peer_window: u32,
    cwnd: CongestionWindow,
    rtt: RttEstimator,
    probe_at: Option<Instant>,

    // Receiving side.
    rcv_next: u64,
    ooo: BTreeMap<u64, (Bytes, bool)>,
    ooo_bytes: usize,
    deliver: VecDeque<Bytes>,
    deliver_bytes: usize,
    peer_fin: bool,
    acked_upto: u64,
    ack_now: bool,
    ack_req: bool,
    resync: bool,
    ack_at: Option<Instant>,
    last_adv: u32,

    // Liveness and outcome.
    last_heard: Instant,
    heard_any: bool,
    last_sent: Instant,
    peer_lost_hint: bool,
    error: Option<StreamError>,
    reset_queued: bool,
    out: VecDeque<Frame>,
    stats: Stats,
}

impl Stream {
    /// A new stream for session `sid`; `peer_window` is the window the peer
    /// announced when the session was opened.
    pub fn new(sid: u64, cfg: Config, peer_window: u32, now: Instant) -> Stream {
        Stream {
            cfg,
            sid,
            snd_next: 0,
            xmit_count: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            fin_queued: false,
            fin_assigned: false,
            peer_window,
            cwnd: CongestionWindow::new(),
            rtt: RttEstimator::new(),
            probe_at: None,
            rcv_next: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            deliver: VecDeque::new(),
            deliver_bytes: 0,
            peer_fin: false,
            acked_upto: 0,
            ack_now: false,
            ack_req: false,
            resync: false,
            ack_at: None,
            last_adv: cfg.recv_window,
            last_heard: now,
            heard_any: false,
            last_sent: now,
            peer_lost_hint: false,
            error: None,
            reset_queued: false,
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn sid(&self) -> u64 {
        self.sid
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Our free receive buffer, as advertised to the peer.
    pub fn recv_window(&self) -> u32 {
        let used = self.deliver_bytes + self.ooo_bytes;
        (self.cfg.recv_window as usize).saturating_sub(used) as u32
    }

    /// The error that ended the stream, if any.
    pub fn error(&self) -> Option<&StreamError> {
        self.error.as_ref()
    }

    /// The peer's MQTT last will arrived: its connection broke. It may come
    /// back (resume), so this only colours the eventual error message.
    pub fn peer_lost_hint(&self) -> bool {
        self.peer_lost_hint
    }

    /// How long the peer may stay silent.
    fn silence_limit(&self) -> Duration {
        if self.heard_any {
            self.cfg.peer_timeout
        } else {
            self.cfg.peer_timeout.min(FIRST_CONTACT)
        }
    }

    /// How often an idle side speaks: [`KEEPALIVE`], or a third of the peer
    /// timeout if that is shorter, so a short `--resume-timeout` never
    /// expires on a session that is merely idle.
    fn keepalive(&self) -> Duration {
        KEEPALIVE.min(self.cfg.peer_timeout / KEEPALIVES_PER_TIMEOUT)
    }

    fn pipe(&self) -> usize {
        self.unacked.iter().filter(|s| s.outstanding()).count()
    }

    fn window_allows_chunk(&self) -> bool {
        (self.unacked.len() as u64) < MAX_INFLIGHT_CHUNKS && self.cwnd.allows(self.pipe())
    }

    /// May the caller read more local bytes and pass them to [`Stream::send`]?
    pub fn can_send(&self) -> bool {
        self.error.is_none()
            && !self.fin_queued
            && self.window_allows_chunk()
            && self.unacked_bytes < self.peer_window as usize
    }

    /// Send a chunk read from the local side (at most [`MAX_CHUNK`] bytes).
    /// Call only when [`Stream::can_send`] is true.
    pub fn send(&mut self, data: Bytes, now: Instant) {
        debug_assert!(!data.is_empty() && data.len() <= MAX_CHUNK);
        debug_assert!(self.can_send());
        self.stats.bytes_sent += data.len() as u64;
        self.push_chunk(data, false, now);
    }

    /// The local side reached EOF: send FIN once everything before it can go.
    pub fn close_write(&mut self, now: Instant) {
        self.fin_queued = true;
        self.pump(now);
    }

    /// Abort: tell the peer (best effort) and stop.
    pub fn abort(&mut self) {
        if !self.reset_queued {
            self.reset_queued = true;
            self.out
                .push_back(Frame::control(Kind::Reset, self.sid, Bytes::new()));
        }
    }

    fn push_chunk(&mut self, data: Bytes, fin: bool, now: Instant) {
        let seq = self.snd_next;
        self.snd_next += 1;
        self.unacked_bytes += data.len();
        self.unacked.push_back(Sent {
            seq,
            data: data.clone(),
            fin,
            sent_at: now,
            xmit: self.xmit_count,
            retransmitted: false,
            sacked: false,
            lost: false,
        });
        self.xmit_count += 1;
        self.stats.chunks_sent += 1;
        self.emit_data(seq, data, fin, now);
    }

    fn emit_data(&mut self, seq: u64, data: Bytes, fin: bool, now: Instant) {
        let mut f = self.frame(Kind::Data, now);
        f.seq = seq;
        f.payload = data;
        if fin {
            f.flags |= FLAG_FIN;
        }
        self.out.push_back(f);
    }

    /// A frame of `kind` carrying our current acknowledgement state.
    fn frame(&mut self, kind: Kind, now: Instant) -> Frame {
        let mut sack = 0u64;
        for &seq in self.ooo.range(self.rcv_next + 1..).map(|(k, _)| k) {
            let bit = seq - self.rcv_next - 1;
            if bit < 64 {
                sack |= 1 << bit;
            }
        }
        let window = self.recv_window();
        self.acked_upto = self.rcv_next;
        self.last_adv = window;
        self.ack_now = false;
        self.ack_at = None;
        self.last_sent = now;
        let mut flags = 0;
        if std::mem::take(&mut self.ack_req) {
            flags |= FLAG_ACK_REQ;
        }
        Frame {
            kind,
            flags,
            sid: self.sid,
            seq: 0,
            ack: self.rcv_next,
            sack,
            window,
            payload: Bytes::new(),
        }
    }

    /// Retransmit lost chunks and send a queued FIN, as the windows allow.
    fn pump(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        while self.cwnd.allows(self.pipe()) {
            let Some(i) = self.unacked.iter().position(|s| s.lost) else {
                break;
            };
            let s = &mut self.unacked[i];
            s.lost = false;
            s.retransmitted = true;
            s.sent_at = now;
            s.xmit = self.xmit_count;
            self.xmit_count += 1;
            let (seq, data, fin) = (s.seq, s.data.clone(), s.fin);
            self.stats.retransmits += 1;
            self.emit_data(seq, data, fin, now);
        }
        if self.fin_queued && !self.fin_assigned && self.window_allows_chunk() {
            self.fin_assigned = true;
            self.push_chunk(Bytes::new(), true, now);
        }
    }

    /// Handle a frame from the peer.
    pub fn on_frame(&mut self, f: Frame, now: Instant) -> Result<(), Rejected> {
        if f.sid != self.sid {
            return Err(Rejected::WrongSession);
        }
        match f.kind {
            Kind::Data | Kind::Ack => {}
            Kind::Reset => {
                if f.has(FLAG_PEER_LOST) {
                    self.peer_lost_hint = true;
                } else if self.error.is_none() {
                    self.error = Some(StreamError::Reset);
                }
                return Ok(());
            }
            other => return Err(Rejected::NotStream(other)),
        }
        if f.ack > self.snd_next {
            return Err(Rejected::AckBeyondSent {
                ack: f.ack,
                next: self.snd_next,
            });
        }
        self.last_heard = now;
        self.heard_any = true;
        self.peer_lost_hint = false;
        if f.has(FLAG_ACK_REQ) {
            self.ack_now = true;
        }
        self.on_ack(f.ack, f.sack, f.window, now);
        if f.has(FLAG_RESYNC) {
            self.mark_all_lost();
            self.ack_now = true;
        }
        if f.kind == Kind::Data {
            let fin = f.has(FLAG_FIN);
            self.on_data(f.seq, f.payload, fin)?;
        }
        self.pump(now);
        Ok(())
    }

    fn on_ack(&mut self, ack: u64, sack: u64, window: u32, now: Instant) {
        let snd_una = self.unacked.front().map_or(self.snd_next, |s| s.seq);
        if ack < snd_una {
            return; // An older frame overtaken by a newer one.
        }
        self.peer_window = window;
        if window > 0 {
            self.probe_at = None;
        }
        let mut newest_delivered: Option<u64> = None;
        let mut newly_acked = 0u32;
        while self.unacked.front().is_some_and(|s| s.seq < ack) {
            let s = self.unacked.pop_front().expect("front exists");
            self.unacked_bytes -= s.data.len();
            newly_acked += 1;
            if !s.sacked {
                newest_delivered = newest_delivered.max(Some(s.xmit));
            }
            if !s.retransmitted && !s.sacked && s.seq + 1 == ack {
                self.rtt.on_sample(now.saturating_duration_since(s.sent_at));
            }
        }
        for s in self.unacked.iter_mut().filter(|s| s.seq > ack) {
            let bit = s.seq - ack - 1;
            if bit < 64 && sack & (1 << bit) != 0 && !s.sacked {
                s.sacked = true;
                s.lost = false;
                newest_delivered = newest_delivered.max(Some(s.xmit));
            }
        }
        if newly_acked > 0 {
            self.rtt.reset_backoff();
            self.cwnd.on_ack(ack, newly_acked);
        }
        // A chunk sent before one that arrived is lost: a broker keeps the
        // order of messages on one topic, so it is not merely late.
        if let Some(newest) = newest_delivered {
            let mut lost_any = false;
            for s in self.unacked.iter_mut() {
                if s.outstanding() && s.xmit < newest {
                    s.lost = true;
                    lost_any = true;
                }
            }
            if lost_any {
                self.cwnd.on_loss(self.snd_next);
            }
        }
    }

    fn on_data(&mut self, seq: u64, payload: Bytes, fin: bool) -> Result<(), Rejected> {
        if seq < self.rcv_next || self.ooo.contains_key(&seq) {
            // Duplicate: the peer may have missed our ack.
            self.ack_now = true;
            return Ok(());
        }
        if seq >= self.rcv_next + MAX_INFLIGHT_CHUNKS {
            self.ack_now = true;
            return Err(Rejected::OutsideWindow { seq });
        }
        if self.peer_fin {
            return Err(Rejected::AfterFin { seq });
        }
        let len = payload.len();
        if self.deliver_bytes + self.ooo_bytes + len > self.cfg.recv_window as usize + MAX_CHUNK {
            self.ack_now = true;
            return Err(Rejected::BufferFull { seq });
        }
        if seq != self.rcv_next {
            self.ooo_bytes += len;
            self.ooo.insert(seq, (payload, fin));
            self.ack_now = true;
            return Ok(());
        }
        self.accept(payload, fin);
        let mut filled_gap = false;
        while let Some((payload, fin)) = self.ooo.remove(&self.rcv_next) {
            self.ooo_bytes -= payload.len();
            self.accept(payload, fin);
            filled_gap = true;
        }
        if self.peer_fin {
            // Chunks beyond the FIN are bogus; forget them.
            self.ooo.clear();
            self.ooo_bytes = 0;
        }
        if filled_gap || self.peer_fin || self.rcv_next - self.acked_upto >= ACK_EVERY {
            self.ack_now = true;
        }
        Ok(())
    }

    fn accept(&mut self, payload: Bytes, fin: bool) {
        self.rcv_next += 1;
        self.stats.bytes_received += payload.len() as u64;
        if !payload.is_empty() {
            self.deliver_bytes += payload.len();
            self.deliver.push_back(payload);
        }
        if fin {
            self.peer_fin = true;
        }
    }

    /// Our MQTT connection came back after an outage: ask the peer for its
    /// state and assume everything in flight was lost in both directions.
    pub fn on_reconnect(&mut self, now: Instant) {
        self.mark_all_lost();
        self.rtt.reset_backoff();
        self.ack_now = true;
        self.resync = true;
        self.pump(now);
    }

    fn mark_all_lost(&mut self) {
        for s in self.unacked.iter_mut().filter(|s| !s.sacked) {
            s.lost = true;
        }
    }

    /// Bytes ready for the local writer, in order.
    pub fn readable(&self) -> Option<&Bytes> {
        self.deliver.front()
    }

    /// The local writer took `n` bytes of [`Stream::readable`].
    pub fn consume(&mut self, mut n: usize) {
        self.deliver_bytes -= n;
        while n > 0 {
            let front = self
                .deliver
                .front_mut()
                .expect("consumed more than readable");
            let take = n.min(front.len());
            front.advance(take);
            n -= take;
            if front.is_empty() {
                self.deliver.pop_front();
            }
        }
        // Tell a stalled sender that the window opened.
        if self.recv_window().saturating_sub(self.last_adv) >= self.cfg.recv_window / 4 {
            self.ack_now = true;
        }
    }

    /// The peer closed its direction and everything before it was written.
    pub fn read_closed(&self) -> bool {
        self.peer_fin && self.deliver.is_empty()
    }

    /// Both directions closed and acknowledged: the session is over.
    pub fn is_done(&self) -> bool {
        self.fin_assigned && self.unacked.is_empty() && self.read_closed() && self.out.is_empty()
    }

    /// The next frame to publish, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        if let Some(f) = self.out.pop_front() {
            return Some(f);
        }
        if self.error.is_some() {
            return None;
        }
        let ack_owed = self.rcv_next > self.acked_upto;
        if self.ack_now || (ack_owed && self.ack_at.is_some_and(|t| t <= now)) {
            return Some(self.ack_frame(now));
        }
        if ack_owed && self.ack_at.is_none() {
            self.ack_at = Some(now + ACK_DELAY);
        }
        None
    }

    fn ack_frame(&mut self, now: Instant) -> Frame {
        let resync = std::mem::take(&mut self.resync);
        let mut f = self.frame(Kind::Ack, now);
        if resync {
            f.flags |= FLAG_RESYNC;
        }
        f
    }

    /// When [`Stream::on_timeout`] must next be called.
    pub fn poll_deadline(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        let rto = self.rtt.rto();
        let retransmit = self
            .unacked
            .iter()
            .filter(|s| s.outstanding())
            .map(|s| s.sent_at + rto)
            .min();
        [
            retransmit,
            self.ack_at,
            self.probe_at,
            Some(self.last_sent + self.keepalive()),
            Some(self.last_heard + self.silence_limit()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: retransmission, delayed ack, window probe, keepalive, peer
    /// timeout.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        if now >= self.last_heard + self.silence_limit() {
            self.error = Some(StreamError::PeerTimeout(self.silence_limit()));
            return;
        }
        let rto = self.rtt.rto();
        if self
            .unacked
            .iter()
            .any(|s| s.outstanding() && s.sent_at + rto <= now)
        {
            // Everything outstanding is presumed lost; restart from one chunk.
            self.cwnd.on_timeout(self.pipe());
            self.mark_all_lost();
            self.rtt.back_off();
            self.ack_req = true;
            self.pump(now);
        }
        if self.unacked.is_empty() && self.peer_window == 0 && !self.fin_assigned {
            match self.probe_at {
                Some(t) if t <= now => {
                    self.ack_req = true;
                    self.ack_now = true;
                    self.rtt.back_off();
                    self.probe_at = Some(now + self.rtt.rto());
                }
                Some(_) => {}
                None => self.probe_at = Some(now + self.rtt.rto()),
            }
        }
        if now >= self.last_sent + self.keepalive() {
            self.ack_now = true;
        }
    }
}

#[cfg(test)]
mod tests;
