//! The receiving half: in-order delivery of the peer's chunks, the
//! out-of-order buffer bounded by our window, and when to acknowledge.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::Instant;

use super::rejected::Rejected;
use crate::protocol::{Fragment, MAX_CHUNK, MAX_INFLIGHT_CHUNKS};

/// Acknowledge at least every this many in-order chunks (a quarter of
/// [`MAX_INFLIGHT_CHUNKS`]; with fewer in flight, a sender asks for an ack
/// at once on every full chunk and on the one that fills its windows).
/// Every pure ACK is four packets at the broker (QoS 1, see
/// `protocol::delivery`), and on a broker with Nagle's algorithm on (a
/// stock mosquitto) it is a small message that holds back the next small
/// one to the same client until that client's TCP ack returns: during a
/// bulk transfer that next one is often ssh's channel window adjustment,
/// which ssh waits for. Over a 200 ms path, a 64 MiB upload sent 413 pure
/// ACKs at 4 and 43 at 16, and went from 0.87-0.90 of direct scp to
/// 0.96-0.97 (download 0.91-0.92 to 1.00); on loopback no A/B difference
/// beyond the spread.
pub const ACK_EVERY: u64 = 16;
/// Longest an acknowledgement of in-order data waits for a chance to ride on
/// a data frame, by default (`stream::Config::ack_delay`; the peer's
/// retransmission timeout allows for it, see `stream::rtt`). Long, because
/// on a broker with Nagle's algorithm on (a stock mosquitto) a pure ACK is a
/// small message that holds back the next small one the broker sends the
/// same client, a keystroke, until the client's TCP ack for it arrives: one
/// broker-to-peer round trip. So pure ACKs should be rare in interactive
/// use: the ack of an echo waits for the next keystroke to carry it. Any
/// delay leaves a band of typing pauses that suffer (keys that come between
/// this delay and it plus that round trip after the echo); measured with
/// `scripts/bench` over a 40 ms path, a 10 ms delay put 50 keys/s (20 ms
/// pauses) in it, +13 ms per keystroke. 200 ms, TCP's usual maximum, puts
/// the band at pauses rarer than typing's and still lets a peer recover a
/// lost chunk well within a second. Senders that wait for acks ask for them
/// at once (`FLAG_ACK_REQ`), and every `ACK_EVERY` chunks are acked at
/// once, so bulk transfers never wait for this delay.
pub const ACK_DELAY: Duration = Duration::from_millis(200);

/// Most separate pieces a chunk being reassembled may have. An honest
/// sender's fragments carry at least 464 bytes (`protocol::MIN_MESSAGE`
/// less the headers), so a 64 KiB chunk comes in at most 142 pieces, even
/// if sizes change between retransmissions; this bounds the bookkeeping a
/// hostile peer's one-byte fragments can cost.
const MAX_PIECES: usize = 256;

/// A chunk arriving in fragments: its bytes so far, and which ranges of it
/// they cover (sorted, disjoint, not touching).
#[derive(Debug)]
struct Partial {
    buf: BytesMut,
    pieces: Vec<(usize, usize)>,
}

impl Partial {
    fn new(total: usize) -> Partial {
        Partial {
            buf: BytesMut::zeroed(total),
            pieces: Vec::new(),
        }
    }

    /// Add a fragment (checked by the decoder to lie within the chunk);
    /// false, and nothing changed, if it would leave too many pieces.
    /// Overlaps are fine: a retransmission carries the same bytes, maybe
    /// cut at other places.
    fn add(&mut self, f: &Fragment) -> bool {
        let (mut start, mut end) = (f.offset, f.offset + f.data.len());
        let mut pieces = Vec::with_capacity(self.pieces.len() + 1);
        for &(s, e) in &self.pieces {
            if e < start || s > end {
                pieces.push((s, e));
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        pieces.push((start, end));
        if pieces.len() > MAX_PIECES {
            return false;
        }
        pieces.sort_unstable();
        self.pieces = pieces;
        self.buf[f.offset..f.offset + f.data.len()].copy_from_slice(&f.data);
        true
    }

    fn complete(&self) -> bool {
        self.pieces == [(0, self.buf.len())]
    }
}

/// Where the receiving direction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvStage {
    /// The peer may send more chunks.
    Open,
    /// The peer's FIN arrived in order: nothing follows it. The direction is
    /// closed for the local writer once everything before it was consumed.
    FinReceived,
}

/// The acknowledgement state an outgoing frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFields {
    /// Next chunk expected (everything before it arrived).
    pub ack: u64,
    /// Bit `i` set: chunk `ack + 1 + i` arrived out of order.
    pub sack: u64,
    /// Free receive buffer in bytes.
    pub window: u32,
}

/// One session's receiving direction.
#[derive(Debug)]
pub struct RecvHalf {
    /// Bytes of the peer's data we are willing to buffer.
    capacity: u32,
    stage: RecvStage,
    /// Next chunk expected in order.
    next: u64,
    /// Chunks that arrived ahead of a gap: seq → (payload, FIN).
    ooo: BTreeMap<u64, (Bytes, bool)>,
    /// Chunks arriving in fragments, within the window: seq → what came.
    partial: BTreeMap<u64, Partial>,
    /// Bytes of `ooo`, and the whole length of every chunk in `partial`
    /// (reserved when its first fragment arrives).
    ooo_bytes: usize,
    /// In-order bytes the local writer has not taken yet.
    deliver: VecDeque<Bytes>,
    deliver_bytes: usize,
    /// `next` as of the last acknowledgement we sent.
    acked_upto: u64,
    /// The window we last advertised.
    last_adv: u32,
    /// An acknowledgement must go at once (gap, duplicate, FIN, request...).
    ack_now: bool,
    /// When an owed acknowledgement of in-order data stops waiting for a
    /// data frame to ride on.
    ack_at: Option<Instant>,
    /// How long that is ([`ACK_DELAY`] unless set).
    ack_delay: Duration,
    bytes_received: u64,
}

impl RecvHalf {
    /// An empty receiver that buffers at most `capacity` bytes.
    pub fn new(capacity: u32) -> RecvHalf {
        RecvHalf {
            capacity,
            stage: RecvStage::Open,
            next: 0,
            ooo: BTreeMap::new(),
            partial: BTreeMap::new(),
            ooo_bytes: 0,
            deliver: VecDeque::new(),
            deliver_bytes: 0,
            acked_upto: 0,
            last_adv: capacity,
            ack_now: false,
            ack_at: None,
            ack_delay: ACK_DELAY,
            bytes_received: 0,
        }
    }

    /// Let acknowledgements of in-order data wait `d` instead of
    /// [`ACK_DELAY`] (longer under a publish rate cap, where each pure ACK
    /// costs a publish).
    pub fn set_ack_delay(&mut self, d: Duration) {
        self.ack_delay = d;
    }

    #[cfg(test)]
    pub fn stage(&self) -> RecvStage {
        self.stage
    }

    /// Bytes held: in order for the writer, and out of order.
    pub fn buffered(&self) -> usize {
        self.deliver_bytes + self.ooo_bytes
    }

    /// Bytes of the peer's data we are willing to buffer.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Buffer up to `capacity` bytes from now on (auto-tuning), and tell
    /// the peer at once.
    pub fn grow(&mut self, capacity: u32) {
        self.capacity = self.capacity.max(capacity);
        self.ack_now = true;
    }

    /// Our free receive buffer, as advertised to the peer.
    pub fn window(&self) -> u32 {
        (self.capacity as usize).saturating_sub(self.buffered()) as u32
    }

    /// Payload bytes accepted in order so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// A chunk from the peer. Duplicates are dropped (and re-acknowledged);
    /// chunks ahead of a gap wait, bounded by the window.
    pub fn on_data(&mut self, seq: u64, payload: Bytes, fin: bool) -> Result<(), Rejected> {
        if !self.is_new(seq)? {
            return Ok(());
        }
        if let Some(p) = self.partial.remove(&seq) {
            // Whole after all (sent before the sender's size shrank).
            self.ooo_bytes -= p.buf.len();
        }
        let len = payload.len();
        if self.buffered() + len > self.capacity as usize + MAX_CHUNK {
            self.ack_now = true;
            return Err(Rejected::BufferFull { seq });
        }
        if seq != self.next {
            self.ooo_bytes += len;
            self.ooo.insert(seq, (payload, fin));
            self.ack_now = true;
            return Ok(());
        }
        self.accept(payload, fin);
        let mut filled_gap = false;
        // Nothing follows a FIN: stop there (what a hostile peer sent
        // after it is forgotten below).
        while self.stage == RecvStage::Open {
            let Some((payload, fin)) = self.ooo.remove(&self.next) else {
                break;
            };
            self.ooo_bytes -= payload.len();
            self.accept(payload, fin);
            filled_gap = true;
        }
        let fin_received = self.stage == RecvStage::FinReceived;
        if fin_received {
            // Chunks beyond the FIN are bogus; forget them.
            self.ooo.clear();
            self.partial.clear();
            self.ooo_bytes = 0;
        }
        if filled_gap || fin_received || self.next - self.acked_upto >= ACK_EVERY {
            self.ack_now = true;
        }
        Ok(())
    }

    /// A fragment of chunk `seq`. The chunk is received (and goes on as
    /// [`RecvHalf::on_data`]) once its fragments cover it; until then it
    /// holds its whole length of the buffer. Fragments of chunks already
    /// received are duplicates; one whose total length contradicts earlier
    /// fragments of its chunk is refused.
    pub fn on_fragment(&mut self, seq: u64, f: Fragment) -> Result<(), Rejected> {
        if !self.is_new(seq)? {
            return Ok(());
        }
        match self.partial.get(&seq) {
            Some(p) if p.buf.len() != f.total => {
                return Err(Rejected::FragmentMismatch {
                    seq,
                    total: f.total,
                    earlier: p.buf.len(),
                })
            }
            Some(_) => {}
            None => {
                if self.buffered() + f.total > self.capacity as usize + MAX_CHUNK {
                    self.ack_now = true;
                    return Err(Rejected::BufferFull { seq });
                }
                self.ooo_bytes += f.total;
                self.partial.insert(seq, Partial::new(f.total));
            }
        }
        let p = self.partial.get_mut(&seq).expect("inserted above");
        if !p.add(&f) {
            return Err(Rejected::TooFragmented { seq });
        }
        if !p.complete() {
            return Ok(());
        }
        let p = self.partial.remove(&seq).expect("present");
        self.ooo_bytes -= p.buf.len();
        self.on_data(seq, p.buf.freeze(), false)
    }

    /// Whether chunk `seq` (or a fragment of it) is news: `Ok(false)` for a
    /// duplicate (re-acknowledged: the peer may have missed our ack), an
    /// error for one outside the window or after the peer's FIN.
    fn is_new(&mut self, seq: u64) -> Result<bool, Rejected> {
        if seq < self.next || self.ooo.contains_key(&seq) {
            self.ack_now = true;
            return Ok(false);
        }
        if seq >= self.next + MAX_INFLIGHT_CHUNKS {
            self.ack_now = true;
            return Err(Rejected::OutsideWindow { seq });
        }
        if self.stage == RecvStage::FinReceived {
            return Err(Rejected::AfterFin { seq });
        }
        Ok(true)
    }

    fn accept(&mut self, payload: Bytes, fin: bool) {
        self.next += 1;
        self.bytes_received += payload.len() as u64;
        if !payload.is_empty() {
            self.deliver_bytes += payload.len();
            self.deliver.push_back(payload);
        }
        if fin {
            self.stage = RecvStage::FinReceived;
        }
    }

    /// Bytes ready for the local writer, in order.
    pub fn readable(&self) -> Option<&Bytes> {
        self.deliver.front()
    }

    /// The local writer took `n` bytes of [`RecvHalf::readable`].
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
        if self.window().saturating_sub(self.last_adv) >= self.capacity / 4 {
            self.ack_now = true;
        }
    }

    /// The peer closed its direction and everything before it was consumed.
    pub fn read_closed(&self) -> bool {
        self.stage == RecvStage::FinReceived && self.deliver.is_empty()
    }

    /// Send an acknowledgement at once, whether or not data is owed one.
    pub fn ack_immediately(&mut self) {
        self.ack_now = true;
    }

    /// Must a bare ACK frame go now? True when one is wanted at once, or
    /// when in-order data has waited the ack delay for a data frame to ride
    /// on; otherwise arms that delay if data is owed an acknowledgement.
    pub fn poll_ack(&mut self, now: Instant) -> bool {
        let ack_owed = self.next > self.acked_upto;
        if self.ack_now || (ack_owed && self.ack_at.is_some_and(|t| t <= now)) {
            return true;
        }
        if ack_owed && self.ack_at.is_none() {
            self.ack_at = Some(now + self.ack_delay);
        }
        false
    }

    /// When the delayed acknowledgement is due, if one is waiting.
    pub fn ack_deadline(&self) -> Option<Instant> {
        self.ack_at
    }

    /// The acknowledgement for an outgoing frame (any kind); records it as
    /// sent, so nothing is owed until more data arrives.
    pub fn take_ack(&mut self) -> AckFields {
        let mut sack = 0u64;
        for &seq in self.ooo.range(self.next + 1..).map(|(k, _)| k) {
            let bit = seq - self.next - 1;
            if bit < 64 {
                sack |= 1 << bit;
            }
        }
        let window = self.window();
        self.acked_upto = self.next;
        self.last_adv = window;
        self.ack_now = false;
        self.ack_at = None;
        AckFields {
            ack: self.next,
            sack,
            window,
        }
    }
}

#[cfg(test)]
mod tests;
