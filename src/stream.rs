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
//! Rules (see `docs/protocol.md`):
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
//!
//! - A chunk larger than the messages the broker lets through (see
//!   `segment`) goes as fragments of chunk size; the receiver reassembles it.
//!
//! Parts: `send::SendHalf` (sequencing, retransmission, with
//! [`congestion::Congestion`], [`rtt::RttEstimator`] and the message
//! size estimate `segment::Segmenter`) and
//! `recv::RecvHalf` (delivery, acknowledgement); this file joins them into
//! frames (built in `framing`) and owns the timers that concern the whole
//! session (keepalive, peer timeout, with `liveness` deciding when a silent
//! peer is probed or stalled) and its outcome.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::protocol::{
    self, Frame, Kind, FLAG_ACK_REQ, FLAG_FIN, FLAG_FRAG, FLAG_PEER_LOST, FLAG_RESYNC, MAX_CHUNK,
};
use crate::seal::Sealer;

mod autotune;
mod config;
pub mod congestion;
mod direction;
mod drains;
mod error;
mod framing;
mod liveness;
mod nagle;
mod pace;
mod pad_ask;
mod pads;
pub mod rate;
mod recv;
mod rejected;
pub mod rtt;
mod segment;
mod send;
mod two_periods;

use autotune::WindowTuner;
pub use autotune::MAX_RECV_WINDOW;
pub use config::{Config, DEFAULT_RECV_WINDOW};
use direction::Direction;
pub use direction::RECEIVER_RATIO;
use drains::Gathering;
pub use drains::REPORT_EPOCHS;
pub use error::StreamError;
use liveness::Liveness;
pub use liveness::{Notice, PAUSE_SLACK, STALL_NOTICE};
use nagle::BrokerNagle;
use pad_ask::PadAsks;
pub use pad_ask::{ASKED_FOR, ASK_PERIOD};
pub use pads::PAD_CREDIT_MAX;
use recv::RecvHalf;
pub use recv::ACK_DELAY;
pub use rejected::Rejected;
pub use segment::Discovery;
use send::SendHalf;

/// An idle session sends an ACK at least this often so the peer knows it is
/// alive; more often when the peer timeout is short (see
/// `Stream::keepalive`).
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// Keepalives per peer timeout when that timeout is short: three, so one or
/// two lost keepalives do not end an idle session.
const KEEPALIVES_PER_TIMEOUT: u32 = 3;
/// A session whose peer has not sent a single valid frame within this long
/// is dead (a forged or abandoned open); legitimate peers speak at once
/// (ssh banner, or an ACK within the delayed-ack time).
pub const FIRST_CONTACT: Duration = Duration::from_secs(10);

/// Counters for logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub chunks_sent: u64,
    /// Frames that carried only an acknowledgement.
    pub pure_acks: u64,
    pub retransmits: u64,
    /// PAD frames sent behind small frames (`tunnel::pad_after`).
    pub pads: u64,
}

/// One session's reliable stream, both directions.
#[derive(Debug)]
pub struct Stream {
    cfg: Config,
    sid: u64,
    send: SendHalf,
    recv: RecvHalf,
    /// Grows `recv`'s window to follow the round trip.
    tuner: WindowTuner,
    /// Pure ACK and PAD frames sent (for the session's closing log line).
    pure_acks: u64,
    pads: u64,
    /// Which way bytes have been going lately ([`Stream::receiving`]).
    direction: Direction,
    /// Pads the peer asked for, and our asking ([`Stream::pads_asked`]).
    pad_asks: PadAsks,
    /// The drains the peer reports, if we gather them ([`Stream::gather_drains`]).
    gathering: Gathering,
    /// Our frames' last segments on the broker's connection to the peer
    /// ([`Stream::broker_holds`]).
    nagle: BrokerNagle,
    /// PADs behind held frames that the peer's DATA frames paid for
    /// ([`Stream::pad_credit`]).
    pad_credit: u8,
    /// When the last bulk chunk was ([`Stream::since_bulk`]).
    last_bulk: Option<Instant>,

    // Flags for the next outgoing frame.
    /// Ask the peer to acknowledge at once (after a timeout or for a probe).
    ack_req: bool,
    /// Tell the peer we reconnected and assume everything in flight lost.
    resync: bool,
    /// Our [`Frame::recv_limit`], and the peer's latest.
    recv_limit: u8,
    peer_recv_limit: u8,

    // Liveness and outcome.
    liveness: Liveness,
    last_sent: Instant,
    peer_lost_hint: bool,
    error: Option<StreamError>,
    reset_queued: bool,
    /// Frames to publish, each with its sealed encoding when it was sealed
    /// in place ([`Stream::send_sealed`]).
    out: VecDeque<(Frame, Option<Bytes>)>,
    /// What sealed the chunks kept sealed: it opens them again for a
    /// retransmission.
    sealer: Option<Arc<Sealer>>,
}

impl Stream {
    /// A new stream for session `sid`; `peer_window` is the window the peer
    /// announced when the session was opened.
    pub fn new(sid: u64, cfg: Config, peer_window: u32, now: Instant) -> Stream {
        let mut send = SendHalf::new(peer_window);
        send.allow_delay(cfg.rto_allowance);
        let mut recv = RecvHalf::new(cfg.recv_window);
        recv.set_ack_delay(cfg.ack_delay);
        Stream {
            cfg,
            sid,
            send,
            recv,
            tuner: WindowTuner::new(cfg.max_recv_window),
            pure_acks: 0,
            pads: 0,
            direction: Direction::new(now),
            pad_asks: PadAsks::default(),
            gathering: Gathering::default(),
            nagle: BrokerNagle::default(),
            pad_credit: 0,
            last_bulk: None,
            ack_req: false,
            resync: false,
            recv_limit: 0,
            peer_recv_limit: 0,
            liveness: Liveness::new(now),
            last_sent: now,
            peer_lost_hint: false,
            error: None,
            reset_queued: false,
            out: VecDeque::new(),
            sealer: None,
        }
    }

    /// Share drains with the other sessions of the broker connection
    /// (the agent's: [`congestion::DrainsTogether`]).
    pub fn drain_with(&mut self, together: Arc<congestion::DrainsTogether>) {
        self.send.cwnd_mut().drain_with(together);
    }

    pub fn sid(&self) -> u64 {
        self.sid
    }

    pub fn stats(&self) -> Stats {
        let (bytes_sent, chunks_sent, retransmits) = self.send.counters();
        Stats {
            bytes_sent,
            bytes_received: self.recv.bytes_received(),
            chunks_sent,
            pure_acks: self.pure_acks,
            retransmits,
            pads: self.pads,
        }
    }

    /// The smallest round trip to the peer measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.send.rtt().min()
    }

    /// Our free receive buffer, as advertised to the peer.
    pub fn recv_window(&self) -> u32 {
        self.recv.window()
    }

    /// The agent accepted the session, announcing its receive window
    /// (a client that sent data before the answer assumed a small one).
    /// What went out before counts from now: its timeout, not the wait for
    /// the answer, and no round-trip sample. If the request was `repeated`,
    /// the agent may have dropped it and what followed it: that goes again
    /// at once.
    pub fn on_accept(&mut self, window: u32, repeated: bool, now: Instant) {
        self.liveness.restart(now);
        self.send.on_accept(window, now);
        if repeated {
            self.send.mark_all_lost();
            self.pump(now);
        }
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
        if self.liveness.heard_any() {
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

    /// May the caller read more local bytes and pass them to [`Stream::send`]?
    pub fn can_send(&self) -> bool {
        self.error.is_none() && self.send.can_send()
    }

    /// [`Stream::can_send`], and the pace lets a chunk go at `now`: chunks
    /// are spaced at twice the window's rate (`pace`), so that a burst
    /// from the local side waits here and not in the bottleneck's queue.
    pub fn may_read(&self, now: Instant) -> bool {
        self.can_send() && self.send.pace_allows(now)
    }

    /// The largest message (encoded frame) the connection lets through now:
    /// the broker's announced limit, `--max-message-size`, or what the
    /// connection discovered. The stream's own discovery may go lower.
    pub fn set_max_message(&mut self, max: usize) {
        self.send.segment_mut().set_ceiling(max);
    }

    /// The largest MQTT packet we receive well, in
    /// [`protocol::RECV_LIMIT_UNIT`]s (0: no limit): told to the peer in
    /// every frame ([`Frame::recv_limit`]).
    pub fn set_recv_limit(&mut self, units: u8) {
        self.recv_limit = units;
    }

    /// The largest MQTT packet the peer said it receives well, if it said.
    pub fn peer_recv_packet(&self) -> Option<usize> {
        protocol::recv_limit_packet(self.peer_recv_limit)
    }

    /// Whether chunks are cut to the window and the delivery rate (true at
    /// first: see [`rate`]) or only to the message size. Under rate caps
    /// every publish counts: behind AWS IoT Core's 100/s and 512 KiB/s,
    /// 7 KB chunks spent the publish budget first (copies at 0.62-0.72 of
    /// the byte cap, 0.91 with the caps' own size), and the pacer's
    /// scheduler puts keystrokes first there anyway. The tunnel turns it
    /// off under caps. Chunks are paced (`pace`) only where they follow
    /// the rate: under caps they wait in that pacer.
    pub fn set_chunks_follow_rate(&mut self, on: bool) {
        self.send.set_chunks_follow_rate(on);
    }

    /// The largest chunk to read from the local side now: it goes as one
    /// message, of a size that follows the window and the delivery rate when
    /// [`Stream::set_chunks_follow_rate`] is on.
    pub fn max_chunk(&self) -> usize {
        self.send.max_chunk()
    }

    /// The broker connection went down: until it is back, lost chunks say
    /// nothing about message sizes.
    pub fn on_link_down(&mut self) {
        self.send.segment_mut().set_link_up(false);
    }

    /// A message size this stream discovered and confirmed since the last
    /// call, for the caller to log.
    pub fn take_size_discovery(&mut self) -> Option<Discovery> {
        self.send.segment_mut().take_discovery()
    }

    /// The first chunk went inside the OPEN request (the handshake carries
    /// and authenticates it): it counts as sent, and goes again as DATA
    /// only if the agent does not acknowledge it.
    pub fn sent_in_open(&mut self, data: Bytes, now: Instant) {
        debug_assert_eq!(self.send.next_seq(), 0);
        self.send.push(data, false, now);
    }

    /// The client's first chunk, which came inside its OPEN request.
    pub fn received_in_open(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if let Err(why) = self.recv.on_data(0, data, false) {
            tracing::debug!(%why, "first bytes from the open request dropped");
        }
    }

    /// Send a chunk read from the local side (at most [`MAX_CHUNK`] bytes;
    /// above [`Stream::max_chunk`] it goes in fragments). Call only when
    /// [`Stream::can_send`] is true.
    pub fn send(&mut self, data: Bytes, now: Instant) {
        debug_assert!(!data.is_empty() && data.len() <= MAX_CHUNK);
        debug_assert!(self.can_send());
        self.ack_req |= self.send.asks_for_sample(data.len());
        let chunk = self.send.push(data, false, now);
        self.emit_data(chunk, now);
    }

    /// The local side reached EOF: send FIN once everything before it can go.
    pub fn close_write(&mut self, now: Instant) {
        self.send.close();
        self.pump(now);
    }

    /// Abort: tell the peer (best effort) and stop.
    pub fn abort(&mut self) {
        if !self.reset_queued {
            self.reset_queued = true;
            self.out
                .push_back((Frame::control(Kind::Reset, self.sid, Bytes::new()), None));
        }
    }

    /// Retransmit lost chunks and send a queued FIN, as the windows allow.
    fn pump(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        while let Some(chunk) = self.send.next_retransmit(now) {
            self.emit_retransmit(chunk, now);
        }
        if let Some(fin) = self.send.take_fin(now) {
            self.emit_data(fin, now);
        }
    }

    /// Handle a frame from the peer.
    pub fn on_frame(&mut self, f: Frame, now: Instant) -> Result<(), Rejected> {
        if f.sid != self.sid {
            return Err(Rejected::WrongSession);
        }
        match f.kind {
            Kind::Data | Kind::Ack => {}
            Kind::Pad => {
                // Opened, so it is the peer's: only an ask or drains
                // mean anything.
                if f.payload[..] == *protocol::PAD_ASK {
                    self.pad_asks.on_asked(now);
                } else {
                    self.on_drains_pad(&f.payload, now);
                    self.drain_news();
                }
                return Ok(());
            }
            Kind::Reset => {
                if f.has(FLAG_PEER_LOST) {
                    self.peer_lost_hint = true;
                } else if self.error.is_none() {
                    self.error = Some(StreamError::reset(&f.payload));
                }
                return Ok(());
            }
            other => return Err(Rejected::NotStream(other)),
        }
        if f.ack > self.send.next_seq() {
            return Err(Rejected::AckBeyondSent {
                ack: f.ack,
                next: self.send.next_seq(),
            });
        }
        self.liveness.on_heard(now, f.kind == Kind::Data);
        self.peer_recv_limit = f.recv_limit;
        self.peer_lost_hint = false;
        if f.has(FLAG_ACK_REQ) {
            self.recv.ack_immediately();
        }
        self.send.on_ack(f.ack, f.sack, f.window, now);
        if f.has(FLAG_RESYNC) {
            self.send.mark_all_lost();
            self.recv.ack_immediately();
        }
        if f.kind == Kind::Data {
            if !f.payload.is_empty() {
                self.pad_credit = (self.pad_credit + 1).min(PAD_CREDIT_MAX);
            }
            if f.has(FLAG_FRAG) {
                let frag = f.fragment().ok_or(Rejected::BadFragment { seq: f.seq })?;
                self.recv.on_fragment(f.seq, frag)?;
            } else {
                let fin = f.has(FLAG_FIN);
                self.pad_asks.on_data(f.payload.len());
                self.recv.on_data(f.seq, f.payload, fin)?;
            }
            let grown = self.tuner.on_data(
                now,
                self.recv.bytes_received(),
                self.send.rtt().srtt(),
                self.recv.capacity(),
                self.recv.buffered(),
            );
            if let Some(window) = grown {
                tracing::debug!(window, "receive window grows");
                self.recv.grow(window);
            }
        }
        self.drain_news();
        self.pump(now);
        Ok(())
    }

    /// Our MQTT connection came back after an outage: ask the peer for its
    /// state and assume everything in flight was lost in both directions.
    pub fn on_reconnect(&mut self, now: Instant) {
        self.send.segment_mut().set_link_up(true);
        self.send.on_reconnect();
        self.recv.ack_immediately();
        self.resync = true;
        self.pump(now);
    }

    /// Bytes ready for the local writer, in order.
    pub fn readable(&self) -> Option<&Bytes> {
        self.recv.readable()
    }

    /// The local writer took `n` bytes of [`Stream::readable`].
    pub fn consume(&mut self, n: usize) {
        self.recv.consume(n);
    }

    /// The peer closed its direction and everything before it was written.
    pub fn read_closed(&self) -> bool {
        self.recv.read_closed()
    }

    /// Both directions closed and acknowledged: the session is over.
    pub fn is_done(&self) -> bool {
        self.send.fin_acked() && self.read_closed() && self.out.is_empty()
    }

    /// `f`, taken from [`Stream::poll_transmit`], was handed to the broker
    /// connection now: a data chunk's round trip starts here, not when it
    /// was queued (it may have waited for the connection's rate caps).
    pub fn on_transmitted(&mut self, f: &Frame, now: Instant) {
        if f.kind == Kind::Data {
            self.send.on_transmitted(f.seq, now);
        }
    }

    /// The next frame to publish, if any (one sealed in place comes without
    /// its encoding: the tunnel takes [`Stream::poll_transmit_parts`]).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        self.next_frame(now).map(|(f, _)| f)
    }

    /// The next frame to publish, and its sealed encoding when
    /// [`Stream::send_sealed`] sealed it in place (the frame's payload is
    /// then sealed too, as [`Frame::decode`] leaves it).
    pub fn poll_transmit_parts(&mut self, now: Instant) -> Option<(Frame, Option<Bytes>)> {
        self.next_frame(now)
    }

    fn next_frame(&mut self, now: Instant) -> Option<(Frame, Option<Bytes>)> {
        if let Some(out) = self.out.pop_front() {
            return Some(out);
        }
        if self.error.is_some() {
            return None;
        }
        if self.recv.poll_ack(now) {
            return Some((self.ack_frame(now), None));
        }
        None
    }

    /// When [`Stream::on_timeout`] must next be called.
    pub fn poll_deadline(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        [
            self.send.retransmit_deadline(),
            self.recv.ack_deadline(),
            self.send.probe_deadline(),
            self.send.pace_deadline(),
            Some(self.last_sent + self.keepalive()),
            Some(self.liveness.last_heard() + self.silence_limit()),
            self.liveness.probe_deadline(self.send.outstanding()),
            self.liveness.stall_deadline(self.send.outstanding()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: retransmission, delayed ack, window probe, keepalive, the
    /// peer's liveness, peer timeout.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        if now >= self.liveness.last_heard() + self.silence_limit() {
            self.error = Some(StreamError::PeerTimeout(self.silence_limit()));
            return;
        }
        self.send.on_pace_timer(now);
        if self.send.on_rto(now) {
            // Everything outstanding is presumed lost; restart from one chunk.
            self.ack_req = true;
            self.pump(now);
        }
        if self.send.on_probe_timer(now) {
            self.ack_req = true;
            self.recv.ack_immediately();
        }
        if now >= self.last_sent + self.keepalive() {
            self.recv.ack_immediately();
        }
        if self.liveness.probe_due(now, self.send.outstanding()) {
            // The peer was sending and went quiet: ask it to answer, which
            // also puts something on our own link for its timeout to watch.
            self.ack_req = true;
            self.recv.ack_immediately();
        }
        self.liveness.check_stall(now, self.send.outstanding());
    }

    /// This process was stopped for `stopped` until `now` (a sleep): that
    /// is not the peer's silence.
    pub fn on_paused(&mut self, stopped: Duration, now: Instant) {
        self.liveness.on_paused(stopped, now);
    }

    /// Whether the peer stalled or came back since the last call.
    pub fn take_notice(&mut self) -> Option<Notice> {
        self.liveness.take_notice()
    }
}

#[cfg(test)]
mod tests;
