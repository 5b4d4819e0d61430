//! How the stream's chunks and acknowledgement state become frames: DATA,
//! whole or in fragments, and pure ACKs, each with the current ack, SACK,
//! window and receive limit and the flags the moment asks for.

use bytes::Bytes;
use tokio::time::Instant;

use super::recv::ACK_EVERY;
use super::send::Chunk;
use super::Stream;
use crate::protocol::{Fragment, Frame, Kind, FLAG_ACK_REQ, FLAG_FIN, FLAG_FRAG, FLAG_RESYNC};

impl Stream {
    pub(super) fn emit_data(&mut self, chunk: Chunk, now: Instant) {
        if chunk.data.len() > self.send.segment().max_chunk() {
            return self.emit_fragments(chunk, now);
        }
        let mut f = self.frame(Kind::Data, now);
        f.seq = chunk.seq;
        f.payload = chunk.data;
        if chunk.fin {
            f.flags |= FLAG_FIN;
        }
        if self.ack_request_due() {
            f.flags |= FLAG_ACK_REQ;
        }
        self.out.push_back((f, None));
    }

    /// The windows are full and too few chunks are in flight for the peer
    /// to ack at once on its own (every `ACK_EVERY`): without a request, we
    /// would wait the peer's whole ack delay for room.
    pub(super) fn ack_request_due(&self) -> bool {
        !self.send.can_send() && (self.send.pipe() as u64) < ACK_EVERY
    }

    /// A chunk too large for one message, as fragments of the largest size
    /// that fits (a FIN is empty, so never one of these).
    fn emit_fragments(&mut self, chunk: Chunk, now: Instant) {
        debug_assert!(!chunk.fin);
        let total = chunk.data.len();
        let step = self.send.segment().max_fragment();
        for offset in (0..total).step_by(step) {
            let mut f = self.frame(Kind::Data, now);
            f.seq = chunk.seq;
            f.flags |= FLAG_FRAG;
            f.payload = Fragment {
                offset,
                total,
                data: chunk.data.slice(offset..total.min(offset + step)),
            }
            .encode();
            self.out.push_back((f, None));
        }
    }

    /// A frame of `kind` carrying our current acknowledgement state.
    pub(super) fn frame(&mut self, kind: Kind, now: Instant) -> Frame {
        let ack = self.recv.take_ack();
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
            ack: ack.ack,
            sack: ack.sack,
            window: ack.window,
            recv_limit: self.recv_limit,
            counter: 0,
            payload: Bytes::new(),
        }
    }

    pub(super) fn ack_frame(&mut self, now: Instant) -> Frame {
        self.pure_acks += 1;
        let resync = std::mem::take(&mut self.resync);
        let mut f = self.frame(Kind::Ack, now);
        if resync {
            f.flags |= FLAG_RESYNC;
        }
        f
    }
}
