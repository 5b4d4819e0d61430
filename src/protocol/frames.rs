//! Frame layout: kinds, flags, the header fields, fragments; encoding,
//! decoding and validation; which QoS each frame goes at; PAD frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::limits::{
    HEADER_LEN, MAX_AUTH_PAYLOAD, MAX_CHUNK, MAX_CONTROL_PAYLOAD, MAX_FRAME, MIN_PACKET, TAG_LEN,
    V1_HEADER_LEN,
};

/// Version byte at the start of every frame. A peer that sees another
/// version drops the frame; the agent answers an OPEN of version 1 with a
/// version-1 REFUSE naming both versions ([`refuse_v1`]), and the client
/// reads the agent's version from its presence message before it opens.
/// Version 2 authenticates every frame after the opening (`seal`).
pub const VERSION: u8 = 2;

/// The unit of [`Frame::recv_limit`]: 256 bytes, so that one byte spans
/// what matters (mosquitto's WebSocket limit of 4096 bytes is 16 units).
pub const RECV_LIMIT_UNIT: usize = 256;

/// [`Frame::recv_limit`] for the largest MQTT packet we receive well, if
/// there is such a limit (0 for none, or one above what a unit count can
/// say, which no frame of ours reaches anyway).
pub fn recv_limit_units(packet: Option<usize>) -> u8 {
    packet
        .map(|p| p / RECV_LIMIT_UNIT)
        .and_then(|u| u8::try_from(u.max(1)).ok())
        .unwrap_or(0)
}

/// The largest MQTT packet a peer's [`Frame::recv_limit`] asks for, never
/// below [`MIN_PACKET`] (a peer asking for less only slows itself down to
/// that).
pub fn recv_limit_packet(units: u8) -> Option<usize> {
    (units != 0).then(|| (units as usize * RECV_LIMIT_UNIT).max(MIN_PACKET))
}

/// How a frame is published: the MQTT QoS, in our own words so that this
/// module stays free of the MQTT client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// QoS 0: no PUBACK from the broker, none from the subscriber.
    AtMostOnce,
    /// QoS 1: the broker answers with a PUBACK, and so does the subscriber.
    AtLeastOnce,
}

/// The delivery for an encoded frame.
///
/// The stream is reliable on its own (sequence numbers, acks,
/// retransmission; the opening handshake is repeated until answered), so
/// QoS only decides which MQTT packets cross each broker connection, and
/// that matters because a stock mosquitto leaves Nagle's algorithm on: a
/// small packet it sends while an earlier one is unacknowledged at the TCP
/// level waits for that TCP ack, and a receiver that has nothing to send
/// back delays its TCP ack by up to 40 ms. So every packet the broker sends
/// us should be one we answer at once, and a PUBACK is one nobody answers:
/// - DATA and the opening handshake (OPEN, CHALLENGE, AUTH, ACCEPT, REFUSE)
///   go at QoS 0: each is answered by the peer's next frame (its echo, its
///   ACK within the ack delay, the next step of the handshake), which
///   carries the TCP ack. Measured on a loopback stock mosquitto: a
///   keystroke round trip took 44 ms with DATA at QoS 1 and 0.3 ms at QoS 0;
///   subscribing to ACCEPT took 46 ms with OPEN and ACCEPT at QoS 1, 17 ms
///   at QoS 0.
/// - A pure ACK and RESET go at QoS 1: nothing answers them, so the
///   receiving client's PUBACK carries the TCP ack at once (a pure ACK at
///   QoS 0 stalled the next keystroke behind it by 31 ms).
///
/// MQTT keeps order only among messages of one QoS, so a pure ACK may
/// overtake or trail DATA on the same topic; acks are cumulative and SACK
/// bits only add, so a stale ack carries less news, never wrong news.
pub fn delivery(encoded: &[u8]) -> Delivery {
    match encoded.get(1).copied().and_then(Kind::from_u8) {
        Some(Kind::Ack | Kind::Reset) | None => Delivery::AtLeastOnce,
        Some(_) => Delivery::AtMostOnce,
    }
}

/// PAD's payload: more than a TCP segment of the usual 1,448 to 1,460
/// bytes (Ethernet-sized paths, TCP timestamps on or off). A broker with
/// Nagle's algorithm on (a stock mosquitto) holds a small segment while an
/// earlier small one is unacknowledged, so a small frame that follows
/// another within a round trip of the broker's link to the peer waits that
/// round trip. With at least a full segment of bytes queued behind it, the
/// frame's bytes go in a full-sized segment at once; only the padding's
/// tail waits. Over a path emulator with end-to-end TCP (`scripts/bench-wan`:
/// 20 ms round trip, MTU 1500, stock mosquitto), 64 MiB scp against direct
/// ssh over the same path, medians of 3 rounds: with the proxy far from the
/// broker, upload 0.85 -> 0.99 (sftp's replies and ssh's window adjustments
/// no longer wait); with the agent far, download 1.16 -> 1.52 (sftp's read
/// requests); the other two directions unchanged (1.43 -> 1.46, 1.03 ->
/// 1.01). When a frame gets one: `tunnel::pad_after`.
pub const PAD_LEN: usize = 1460;

/// A PAD frame for session `sid`.
pub fn pad(sid: u64) -> Bytes {
    static ZEROS: [u8; PAD_LEN] = [0; PAD_LEN];
    Frame::control(Kind::Pad, sid, Bytes::from_static(&ZEROS)).encode()
}

/// The payload of a PAD that asks the peer to pad its own small frames
/// (sealed, so only the peer can ask): this end's acknowledgements to the
/// broker wait behind its own bulk sending, so the broker's Nagle holds
/// each small frame to it for that long. Any other PAD's payload is zeros,
/// and a receiver that predates this one drops every PAD unopened.
pub const PAD_ASK: &[u8] = &[1];

/// A PAD frame for session `sid` that asks for pads ([`PAD_ASK`]).
pub fn pad_ask(sid: u64) -> Bytes {
    Frame::control(Kind::Pad, sid, Bytes::from_static(PAD_ASK)).encode()
}

/// Whether `f`, a PAD as it came from the broker (sealed), may be a
/// [`PAD_ASK`]: only those are worth opening; padding is dropped unopened.
pub fn may_ask_for_pads(f: &Frame) -> bool {
    sealed_pad_of(f, PAD_ASK.len())
}

/// Whether `f`, as it came from the broker, is a PAD whose payload has
/// `len` bytes in the clear: the PADs that carry something are told from
/// padding, and from each other, by their length alone, so that padding
/// is dropped unopened.
pub(super) fn sealed_pad_of(f: &Frame, len: usize) -> bool {
    f.kind == Kind::Pad && f.payload.len() == len + TAG_LEN
}

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// client -> agent: please open a session (payload: the client's key
    /// share, then its first bytes, if any; see `handshake`).
    Open = 1,
    /// agent -> client: session open; `window` is the agent's receive
    /// window (payload: the agent's key share and its key confirmation).
    Accept = 2,
    /// agent -> client: session refused (payload: reason code u8 + UTF-8 text).
    Refuse = 3,
    /// agent -> client: prove you know the agent password (payload: nonce
    /// and the agent's key share).
    Challenge = 4,
    /// client -> agent: answer to a challenge (payload: MAC).
    Auth = 5,
    /// A chunk of the byte stream (`seq`), with piggybacked ack/sack/window.
    Data = 16,
    /// Acknowledgement only (no `seq`).
    Ack = 17,
    /// Abort the session. With [`FLAG_PEER_LOST`] it is the client's MQTT last
    /// will: a hint that the client's connection broke, not an abort.
    Reset = 18,
    /// Padding, ignored (payload: anything up to [`MAX_CHUNK`]). Published
    /// right behind a small frame on a far path, so that a broker with
    /// Nagle's algorithm on sends that frame at once (see [`PAD_LEN`]).
    Pad = 19,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Open,
            2 => Kind::Accept,
            3 => Kind::Refuse,
            4 => Kind::Challenge,
            5 => Kind::Auth,
            16 => Kind::Data,
            17 => Kind::Ack,
            18 => Kind::Reset,
            19 => Kind::Pad,
            _ => return None,
        })
    }
}

/// DATA: this chunk ends the stream in this direction (half-close).
pub const FLAG_FIN: u8 = 0x01;
/// DATA/ACK: the receiver should acknowledge at once (probe, resume).
pub const FLAG_ACK_REQ: u8 = 0x02;
/// RESET: sent by the broker as the client's last will.
pub const FLAG_PEER_LOST: u8 = 0x04;
/// ACK: the sender just reconnected to the broker; everything it has not
/// acknowledged is lost and must be retransmitted now.
pub const FLAG_RESYNC: u8 = 0x08;
/// DATA: the payload is one fragment of chunk `seq`: a [`FRAG_PREFIX_LEN`]
/// prefix (offset u32, total length u32, big-endian) and the chunk's bytes
/// `offset..offset + len`. Sent when a chunk is larger than the messages
/// the broker lets through (a retransmission after size discovery shrank
/// them); the receiver reassembles the chunk before it counts as received.
pub const FLAG_FRAG: u8 = 0x10;
const KNOWN_FLAGS: u8 = FLAG_FIN | FLAG_ACK_REQ | FLAG_PEER_LOST | FLAG_RESYNC | FLAG_FRAG;

/// Bytes in front of a fragment's data: offset u32, total u32.
pub const FRAG_PREFIX_LEN: usize = 8;

/// One fragment of a chunk, from a DATA frame with [`FLAG_FRAG`]. Decoding
/// guarantees `0 < data.len()`, `offset + data.len() <= total` and
/// `total <= MAX_CHUNK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub offset: usize,
    pub total: usize,
    pub data: Bytes,
}

impl Fragment {
    /// The payload of a DATA frame with [`FLAG_FRAG`] carrying this.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(FRAG_PREFIX_LEN + self.data.len());
        b.put_u32(self.offset as u32);
        b.put_u32(self.total as u32);
        b.extend_from_slice(&self.data);
        b.freeze()
    }

    /// Parse and check a fragment payload.
    fn decode(payload: &Bytes) -> Result<Fragment, DecodeError> {
        if payload.len() <= FRAG_PREFIX_LEN {
            return Err(DecodeError::Fragment("no data"));
        }
        let mut h = &payload[..FRAG_PREFIX_LEN];
        let offset = h.get_u32() as usize;
        let total = h.get_u32() as usize;
        let data = payload.slice(FRAG_PREFIX_LEN..);
        if total > MAX_CHUNK {
            return Err(DecodeError::Fragment(
                "total length above the largest chunk",
            ));
        }
        if offset.checked_add(data.len()).is_none_or(|end| end > total) {
            return Err(DecodeError::Fragment("data beyond the total length"));
        }
        Ok(Fragment {
            offset,
            total,
            data,
        })
    }
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub flags: u8,
    /// Random per session, chosen by the client; guards against a stale frame
    /// for an earlier session under the same topic.
    pub sid: u64,
    /// DATA: chunk sequence number (0, 1, 2, … per direction; FIN takes one).
    pub seq: u64,
    /// Cumulative acknowledgement: the next chunk sequence number expected.
    pub ack: u64,
    /// Selective ack: bit i set = chunk `ack + 1 + i` has been received.
    pub sack: u64,
    /// Receive window: bytes the sender of this frame can still buffer.
    pub window: u32,
    /// Sealed frames: the sender's frame counter in this direction, the
    /// AEAD nonce and the replay window's index (`seal`); 0 otherwise.
    pub counter: u64,
    /// The largest MQTT packet the sender of this frame receives well, in
    /// [`RECV_LIMIT_UNIT`]s; 0: no limit. A broker may deliver larger
    /// packets to it only slowly (mosquitto to a WebSocket client: 4 KiB per
    /// 100 ms), a limit its peer cannot see from its own connection. In the
    /// header byte version 1 first left reserved; a peer that ignores it
    /// still works, only slowly through such a broker.
    pub recv_limit: u8,
    pub payload: Bytes,
}

/// Why a frame was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame too short ({0} bytes)")]
    TooShort(usize),
    #[error("frame too long ({0} bytes)")]
    TooLong(usize),
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("invalid flags {flags:#x} for {kind:?}")]
    Flags { kind: Kind, flags: u8 },
    #[error("{0:?} frame with a payload of {1} bytes")]
    Payload(Kind, usize),
    #[error("malformed fragment: {0}")]
    Fragment(&'static str),
}

/// Whether frames of this kind and flags are sealed (authenticated, their
/// payload encrypted, a tag of [`TAG_LEN`] bytes behind it): everything
/// after the opening handshake, except the client's last will (a RESET
/// with [`FLAG_PEER_LOST`], which the broker publishes and which exists
/// before any session key does).
fn sealed(kind: Kind, flags: u8) -> bool {
    match kind {
        Kind::Data | Kind::Ack | Kind::Pad => true,
        Kind::Reset => flags & FLAG_PEER_LOST == 0,
        Kind::Open | Kind::Accept | Kind::Refuse | Kind::Challenge | Kind::Auth => false,
    }
}

/// A version-1 REFUSE for an old client's OPEN: version-1 clients read
/// only version-1 frames, and print the reason.
pub fn refuse_v1(sid: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(V1_HEADER_LEN + payload.len());
    b.put_u8(1);
    b.put_u8(Kind::Refuse as u8);
    b.put_u8(0);
    b.put_u8(0);
    b.put_u64(sid);
    b.put_bytes(0, V1_HEADER_LEN - 12);
    b.extend_from_slice(payload);
    b.freeze()
}

/// A frame of another version: its version, kind byte and session id, if
/// it is long enough to say (the agent answers an old client's OPEN).
pub fn foreign_version(buf: &[u8]) -> Option<(u8, u8, u64)> {
    let version = *buf.first()?;
    let sid = buf.get(4..12)?;
    (version != VERSION).then(|| {
        (
            version,
            buf[1],
            u64::from_be_bytes(sid.try_into().expect("8 bytes")),
        )
    })
}

impl Frame {
    /// A frame with every field but kind, flags and sid zero.
    pub fn control(kind: Kind, sid: u64, payload: Bytes) -> Frame {
        Frame {
            kind,
            flags: 0,
            sid,
            seq: 0,
            ack: 0,
            sack: 0,
            window: 0,
            recv_limit: 0,
            counter: 0,
            payload,
        }
    }

    /// Whether this frame is sealed on the wire (`sealed`).
    pub fn is_sealed(&self) -> bool {
        sealed(self.kind, self.flags)
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The fragment a DATA frame with [`FLAG_FRAG`] carries (checked by
    /// [`Frame::decode`]); `None` for any other frame.
    pub fn fragment(&self) -> Option<Fragment> {
        if self.kind != Kind::Data || !self.has(FLAG_FRAG) {
            return None;
        }
        Fragment::decode(&self.payload).ok()
    }

    /// The frame in the clear: a sealed kind still has to be sealed
    /// (`seal::Sealer`), which needs room for the tag.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.payload.len() + TAG_LEN);
        b.resize(HEADER_LEN, 0);
        self.write_header(&mut b);
        b.extend_from_slice(&self.payload);
        b.freeze()
    }

    /// Write the header into the first [`HEADER_LEN`] bytes of `out` (for
    /// a payload that already sits right behind them). Panics if `out` is
    /// shorter.
    pub fn write_header(&self, out: &mut [u8]) {
        let mut b = &mut out[..HEADER_LEN];
        b.put_u8(VERSION);
        b.put_u8(self.kind as u8);
        b.put_u8(self.flags);
        b.put_u8(self.recv_limit);
        b.put_u64(self.sid);
        b.put_u64(self.seq);
        b.put_u64(self.ack);
        b.put_u64(self.sack);
        b.put_u32(self.window);
        b.put_u64(self.counter);
    }

    /// Decode and validate a frame. The payload shares `buf`'s memory. A
    /// sealed frame (`sealed`) keeps its payload sealed (ciphertext and
    /// tag) for `seal::Opener::open`, which checks the rest.
    pub fn decode(buf: Bytes) -> Result<Frame, DecodeError> {
        let frame = Frame::decode_header(buf)?;
        if frame.is_sealed() {
            let len = frame.payload.len();
            if len < TAG_LEN {
                return Err(DecodeError::Payload(frame.kind, len));
            }
            return Ok(frame);
        }
        frame.check_payload()?;
        Ok(frame)
    }

    /// Decode a frame as [`Frame::encode`] makes it, every kind in the
    /// clear: for tests of what runs below the sealing.
    pub fn decode_clear(buf: Bytes) -> Result<Frame, DecodeError> {
        let frame = Frame::decode_header(buf)?;
        frame.check_payload()?;
        Ok(frame)
    }

    fn decode_header(buf: Bytes) -> Result<Frame, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(buf.len()));
        }
        if buf.len() > MAX_FRAME {
            return Err(DecodeError::TooLong(buf.len()));
        }
        let mut h = &buf[..HEADER_LEN];
        let version = h.get_u8();
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let kind_byte = h.get_u8();
        let kind = Kind::from_u8(kind_byte).ok_or(DecodeError::Kind(kind_byte))?;
        let flags = h.get_u8();
        let recv_limit = h.get_u8();
        let frame = Frame {
            kind,
            flags,
            recv_limit,
            sid: h.get_u64(),
            seq: h.get_u64(),
            ack: h.get_u64(),
            sack: h.get_u64(),
            window: h.get_u32(),
            counter: h.get_u64(),
            payload: buf.slice(HEADER_LEN..),
        };
        let allowed = match kind {
            // A FIN is an empty chunk: never fragmented.
            Kind::Data if flags & FLAG_FRAG != 0 => FLAG_ACK_REQ | FLAG_FRAG,
            Kind::Data => FLAG_FIN | FLAG_ACK_REQ,
            Kind::Ack => FLAG_ACK_REQ | FLAG_RESYNC,
            Kind::Reset => FLAG_PEER_LOST,
            _ => 0,
        };
        if flags & !allowed & KNOWN_FLAGS != 0 || flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::Flags { kind, flags });
        }
        Ok(frame)
    }

    /// The payload rules of a frame whose payload is in the clear (decoded
    /// unsealed, or opened).
    pub fn check_payload(&self) -> Result<(), DecodeError> {
        let (kind, len) = (self.kind, self.payload.len());
        let payload_ok = match kind {
            Kind::Data | Kind::Pad => len <= MAX_CHUNK,
            Kind::Ack => len == 0,
            // A sealed RESET may say why (`access revoked`); the last will
            // (unsealed) carries nothing.
            Kind::Reset => len == 0 || (!self.has(FLAG_PEER_LOST) && len <= MAX_CONTROL_PAYLOAD),
            Kind::Auth => len <= MAX_AUTH_PAYLOAD,
            Kind::Open | Kind::Accept | Kind::Refuse | Kind::Challenge => {
                len <= MAX_CONTROL_PAYLOAD
            }
        };
        if !payload_ok {
            return Err(DecodeError::Payload(kind, len));
        }
        if self.has(FLAG_FRAG) {
            Fragment::decode(&self.payload)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
