//! How the stream's chunks and acknowledgement state become frames: DATA,
//! whole or in fragments, and pure ACKs, each with the current ack, SACK,
//! window and receive limit and the flags the moment asks for; chunks
//! sealed where they were read, and opened again for a retransmission.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::recv::ACK_EVERY;
use super::send::Chunk;
use super::Stream;
use crate::protocol::{
    Fragment, Frame, Kind, FLAG_ACK_REQ, FLAG_FIN, FLAG_FRAG, FLAG_RESYNC, HEADER_LEN, MAX_CHUNK,
};
use crate::seal::{self, Sealer};

impl Stream {
    /// [`Stream::send`] for a chunk read into `buf` behind [`HEADER_LEN`]
    /// bytes of room (and with [`TAG_LEN`] bytes of spare capacity behind
    /// it): the DATA header is written into that room and `tx` seals the
    /// frame where it is, so the first transmission is `buf` itself rather
    /// than a copy (the MQTT client copies it once into its write buffer).
    /// The chunk is kept sealed; a retransmission opens a copy with `tx`
    /// and seals it afresh, with the acks of its time and a new counter.
    ///
    /// [`TAG_LEN`]: crate::protocol::TAG_LEN
    pub fn send_sealed(&mut self, mut buf: BytesMut, now: Instant, tx: &Arc<Sealer>) {
        debug_assert!(buf.len() > HEADER_LEN && buf.len() - HEADER_LEN <= MAX_CHUNK);
        let len = buf.len() - HEADER_LEN;
        if len > self.send.segment().max_chunk() {
            // Goes in fragments, which are encoded anyway.
            return self.send(buf.split_off(HEADER_LEN).freeze(), now);
        }
        debug_assert!(self.can_send());
        self.ack_req |= self.send.asks_for_sample(len);
        let mut f = self.frame(Kind::Data, now);
        f.seq = self.send.next_seq();
        // Decided as `emit_data` decides, for the state once this chunk
        // is in flight: the header is sealed before the chunk is pushed.
        if self.ack_request_due_after(len) {
            f.flags |= FLAG_ACK_REQ;
        }
        f.write_header(&mut buf);
        let wire = tx.seal_in_place(buf);
        let chunk = self.send.push_sealed(wire.clone(), now);
        debug_assert_eq!(chunk.seq, f.seq);
        if f.has(FLAG_ACK_REQ) {
            self.send.ack_requested(chunk.seq);
        }
        if self.sealer.is_none() {
            self.sealer = Some(tx.clone());
        }
        // The frame as the peer decodes it: its payload still sealed.
        f.counter = seal::counter_of(&wire);
        f.payload = wire.slice(HEADER_LEN..);
        self.out.push_back((f, Some(wire)));
    }

    /// A chunk again: opened first if it was kept sealed.
    pub(super) fn emit_retransmit(&mut self, mut chunk: Chunk, now: Instant) {
        if let Some(wire) = chunk.sealed.take() {
            chunk.data = self
                .sealer
                .as_ref()
                .and_then(|tx| tx.unseal_own(&wire))
                .expect("a chunk kept sealed opens with the sealer that sealed it");
        }
        self.emit_data(chunk, now);
    }

    pub(super) fn emit_data(&mut self, chunk: Chunk, now: Instant) {
        debug_assert!(
            chunk.sealed.is_none(),
            "a chunk kept sealed is opened first"
        );
        if chunk.data.len() > self.send.segment().max_chunk() {
            return self.emit_fragments(chunk, now);
        }
        let mut f = self.frame(Kind::Data, now);
        f.seq = chunk.seq;
        f.payload = chunk.data;
        if chunk.fin {
            f.flags |= FLAG_FIN;
        }
        if self.ack_request_due(f.payload.len()) {
            f.flags |= FLAG_ACK_REQ;
        }
        if f.has(FLAG_ACK_REQ) {
            self.send.ack_requested(f.seq);
        }
        self.out.push_back((f, None));
    }

    /// Whether the chunk of `len` bytes just pushed asks for an ack at
    /// once: too few chunks are in flight for the peer to ack at once on
    /// its own (every `ACK_EVERY`), and either the windows are full
    /// (without a request, we would wait the peer's whole ack delay for
    /// room) or it is a full chunk, a copy's ([`Stream::ack_request_for`]).
    pub(super) fn ack_request_due(&self, len: usize) -> bool {
        self.ack_request_for(len, self.send.can_send(), self.send.pipe())
    }

    /// [`Stream::ack_request_due`] for a chunk of `len` bytes about to be
    /// pushed: as things will be once it is in flight.
    pub(super) fn ack_request_due_after(&self, len: usize) -> bool {
        let (can_send, pipe) = self.send.after_push(len);
        self.ack_request_for(len, can_send, pipe)
    }

    /// Every full chunk asks, not only the one that fills the window: a
    /// copy's acks then come one per chunk, each making room for one more,
    /// and the link stays busy. When only the chunk that filled the window
    /// asked, an ack that freed several chunks (after a drain, or when the
    /// window grew by more than a chunk) had them sent at once, only the
    /// last asking; its ack freed them all again, and the copy went in
    /// bursts of a window, the link idle for part of each round trip (a
    /// 256 KiB/s link over a 40 ms path: idle 8-10 % of a copy, copies
    /// 0.81-0.85 of the link in three runs; asking on every full chunk:
    /// idle about 5 %, 0.87-0.88). A keystroke is no full chunk and keeps
    /// riding its echo's ack.
    fn ack_request_for(&self, len: usize, can_send: bool, pipe: usize) -> bool {
        (!can_send || len >= self.send.max_chunk()) && (pipe as u64) < ACK_EVERY
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
