//! The wire format: topic layout, frame layout, limits, encode/decode.
//!
//! Everything that crosses the broker is defined here and nowhere else.
//! The README's "Protocol" section describes the same thing for humans.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Version byte at the start of every frame. A peer that sees another
/// version drops the frame (and the opener reports the mismatch).
pub const VERSION: u8 = 1;

/// Fixed header in front of every frame's payload:
/// version u8, kind u8, flags u8, recv_limit u8, sid u64, seq u64, ack u64,
/// sack u64, window u32 (all big-endian).
pub const HEADER_LEN: usize = 40;

/// Largest payload one DATA frame carries. One read of the local stream
/// becomes one chunk of at most this size. Chosen with `scripts/bench`
/// (256 MiB scp, best of 5, same machine): 64 KiB moved 225/266 MB/s
/// up/down against 211/226 MB/s with 32 KiB and 190/215 MB/s with 16 KiB;
/// a read then often takes two of OpenSSH's 32 KiB channel packets at once,
/// halving the messages per byte. Keystrokes still go out as they come.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Largest frame we send or accept.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_CHUNK;

/// The MQTT maximum packet size we configure on both directions: a frame
/// plus the topic and the MQTT fixed/variable header, with room to spare.
/// rumqttc's default of 10 KiB would silently cap chunks.
pub const MAX_PACKET: usize = MAX_FRAME + 2048;

/// Smallest message (MQTT publish payload, a whole frame) we cut data
/// into, and the least `--max-message-size` accepts: every control frame
/// we send fits (OPEN carries well under 200 bytes, presence about 150),
/// and a fragment still carries 464 bytes of data.
pub const MIN_MESSAGE: usize = 512;

/// Smallest MQTT packet limit we work under (`--max-message-size`, or
/// one discovered from disconnects): [`MIN_MESSAGE`] plus room for the
/// topic (`<prefix>/<node>/s/<cid>/up`, two ids of up to [`MAX_ID_LEN`])
/// and the PUBLISH headers.
pub const MIN_PACKET: usize = MIN_MESSAGE + 256;

/// The message sizes size discovery tries, largest first: a whole
/// [`MAX_FRAME`], then powers of two less 256 bytes, so that a broker limit
/// on the whole packet of a power of two (mosquitto's `max_packet_size
/// 16384`) leaves room for the topic and MQTT headers, down to
/// [`MIN_MESSAGE`].
pub const MESSAGE_STEPS: [usize; 8] = [MAX_FRAME, 32512, 16128, 7936, 3840, 1792, 768, MIN_MESSAGE];

/// The next size discovery tries below `size` (at least [`MIN_MESSAGE`]).
pub fn step_below(size: usize) -> usize {
    MESSAGE_STEPS
        .into_iter()
        .find(|&s| s < size)
        .unwrap_or(MIN_MESSAGE)
}

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

/// Largest control payload (refusal reason, open parameters).
pub const MAX_CONTROL_PAYLOAD: usize = 1024;

/// Most chunks in flight per direction; also the width of the SACK bitmap.
pub const MAX_INFLIGHT_CHUNKS: u64 = 64;

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

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// client -> agent: please open a session (payload: [`OpenParams`]).
    Open = 1,
    /// agent -> client: session open; `window` is the agent's receive window.
    Accept = 2,
    /// agent -> client: session refused (payload: reason code u8 + UTF-8 text).
    Refuse = 3,
    /// agent -> client: prove you know the agent password (payload: nonce).
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
        if offset
            .checked_add(data.len())
            .map_or(true, |end| end > total)
        {
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
            payload,
        }
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

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
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
    }

    /// Decode and validate a frame. The payload shares `buf`'s memory.
    pub fn decode(buf: Bytes) -> Result<Frame, DecodeError> {
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
        let len = frame.payload.len();
        let payload_ok = match kind {
            Kind::Data | Kind::Pad => len <= MAX_CHUNK,
            Kind::Ack | Kind::Reset | Kind::Accept => len == 0,
            Kind::Open | Kind::Refuse | Kind::Challenge | Kind::Auth => len <= MAX_CONTROL_PAYLOAD,
        };
        if !payload_ok {
            return Err(DecodeError::Payload(kind, len));
        }
        if frame.has(FLAG_FRAG) {
            Fragment::decode(&frame.payload)?;
        }
        Ok(frame)
    }
}

/// Why an agent refused a session (first byte of a REFUSE payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefuseCode {
    /// The agent could not connect to its target.
    Target = 1,
    /// The client failed the agent-password challenge.
    Auth = 2,
    /// Too many sessions, or too many open requests.
    Busy = 3,
    /// Incompatible or malformed request.
    Protocol = 4,
}

/// Encode a REFUSE payload.
pub fn refuse_payload(code: RefuseCode, reason: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + reason.len());
    b.put_u8(code as u8);
    let mut text = reason;
    while text.len() > MAX_CONTROL_PAYLOAD - 1 {
        // Truncate on a char boundary; reasons are short in practice.
        let mut end = MAX_CONTROL_PAYLOAD - 1;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    b.extend_from_slice(text.as_bytes());
    b.freeze()
}

/// Decode a REFUSE payload into its reason text (lossy: it is for humans).
pub fn refuse_reason(payload: &[u8]) -> String {
    match payload.split_first() {
        Some((_, text)) => String::from_utf8_lossy(text).into_owned(),
        None => "no reason given".to_owned(),
    }
}

/// The topics of one node. Layout:
///
/// ```text
/// <prefix>/<node>/presence        retained, agent -> everyone
/// <prefix>/<node>/s/<cid>/up      client -> agent (OPEN, DATA, ACK, RESET)
/// <prefix>/<node>/s/<cid>/down    agent -> client
/// ```
///
/// `cid` is the client's MQTT client id, so a broker ACL can confine a client
/// to `.../s/%c/...` and an agent to `<prefix>/<node>/#`.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, node: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{node}"),
        }
    }
    pub fn presence(&self) -> String {
        format!("{}/presence", self.base)
    }
    pub fn up(&self, cid: &str) -> String {
        format!("{}/s/{cid}/up", self.base)
    }
    pub fn down(&self, cid: &str) -> String {
        format!("{}/s/{cid}/down", self.base)
    }
    /// The agent's one subscription: every session's client->agent topic.
    pub fn all_up(&self) -> String {
        format!("{}/s/+/up", self.base)
    }
    /// The client id of an `up` topic of this node, if it is one.
    pub fn parse_up<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic
            .strip_prefix(self.base.as_str())?
            .strip_prefix("/s/")?;
        let cid = rest.strip_suffix("/up")?;
        valid_id(cid).then_some(cid)
    }
}

/// A random 64-bit value from the OS: session ids, and the random part of
/// client ids and agent instance ids.
pub fn random_u64() -> u64 {
    getrandom::u64().expect("the OS random number generator is available")
}

/// Longest node id or client id we accept: fits any broker's topic and
/// client-id limits.
pub const MAX_ID_LEN: usize = 64;

/// Node ids and client ids: letters, digits, `.`, `_`, `-`; never empty.
/// This keeps MQTT wildcards and separators (`+ # /`) out of topics.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A topic prefix: non-empty segments with no wildcards, no leading or
/// trailing `/`.
pub fn valid_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.split('/')
            .all(|seg| !seg.is_empty() && !seg.contains(['+', '#', '\0']))
}

/// The retained presence message an agent publishes on `<node>/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Presence {
    /// `online` or `offline`.
    pub status: String,
    /// Agent version.
    pub version: String,
    /// Unix time (seconds) of the change.
    pub since: u64,
    /// Random id of this agent process: a different instance means the
    /// agent restarted and its sessions are gone.
    pub instance: String,
    /// Sessions open when this was published (online messages only; the
    /// agent re-announces when the count changes, at most once a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
}

impl Presence {
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("presence serializes"))
    }
    pub fn decode(b: &[u8]) -> Option<Presence> {
        serde_json::from_slice(b).ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_frames_nobody_answers_go_at_qos_1() {
        use Kind::*;
        let cases = [
            (Open, Delivery::AtMostOnce),
            (Accept, Delivery::AtMostOnce),
            (Refuse, Delivery::AtMostOnce),
            (Challenge, Delivery::AtMostOnce),
            (Auth, Delivery::AtMostOnce),
            (Data, Delivery::AtMostOnce),
            (Ack, Delivery::AtLeastOnce),
            (Reset, Delivery::AtLeastOnce),
            (Pad, Delivery::AtMostOnce),
        ];
        for (kind, want) in cases {
            let f = Frame::control(kind, 7, Bytes::new()).encode();
            assert_eq!(delivery(&f), want, "{kind:?}");
        }
        assert_eq!(delivery(&[]), Delivery::AtLeastOnce, "not a frame");
    }

    #[test]
    fn a_pad_decodes_as_padding_for_its_session() {
        let f = Frame::decode(pad(9)).expect("valid");
        assert_eq!((f.kind, f.sid, f.payload.len()), (Kind::Pad, 9, PAD_LEN));
    }

    use super::*;
    use proptest::prelude::*;

    fn data(seq: u64, payload: &'static [u8]) -> Frame {
        Frame {
            kind: Kind::Data,
            flags: FLAG_FIN,
            sid: 0xdead_beef,
            seq,
            ack: 7,
            sack: 0b101,
            window: 12345,
            recv_limit: 16,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn recv_limits_in_units_of_256_bytes() {
        // (largest packet we receive well, units sent, what the peer reads)
        let cases = [
            (None, 0, None),
            (Some(4096), 16, Some(4096)),
            (Some(4100), 16, Some(4096)),
            // Below one unit: one unit, read as the least packet we send.
            (Some(100), 1, Some(MIN_PACKET)),
            (Some(255 * 256), 255, Some(255 * 256)),
            // Beyond what one byte says: no limit (above any frame of ours).
            (Some(256 * 256), 0, None),
        ];
        for (packet, units, read) in cases {
            assert_eq!(recv_limit_units(packet), units, "{packet:?}");
            assert_eq!(recv_limit_packet(units), read, "{packet:?}");
        }
    }

    #[test]
    fn roundtrip() {
        let f = data(42, b"hello");
        let enc = f.encode();
        assert_eq!(enc.len(), HEADER_LEN + 5);
        assert_eq!(Frame::decode(enc).unwrap(), f);
    }

    #[test]
    fn rejects_bad_frames() {
        let good = data(1, b"x").encode();
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (vec![], DecodeError::TooShort(0)),
            (good[..HEADER_LEN - 1].to_vec(), DecodeError::TooShort(39)),
            (
                {
                    let mut v = good.to_vec();
                    v[0] = 9;
                    v
                },
                DecodeError::Version(9),
            ),
            (
                {
                    let mut v = good.to_vec();
                    v[1] = 99;
                    v
                },
                DecodeError::Kind(99),
            ),
            (
                {
                    let mut v = good.to_vec();
                    v[2] = 0x80;
                    v
                },
                DecodeError::Flags {
                    kind: Kind::Data,
                    flags: 0x80,
                },
            ),
            (
                {
                    let mut v = good.to_vec();
                    v[1] = Kind::Ack as u8;
                    v
                },
                DecodeError::Flags {
                    kind: Kind::Ack,
                    flags: FLAG_FIN,
                },
            ),
            (vec![0; MAX_FRAME + 1], DecodeError::TooLong(MAX_FRAME + 1)),
        ];
        for (input, want) in cases {
            assert_eq!(Frame::decode(Bytes::from(input)), Err(want));
        }
        let mut ack = Frame::control(Kind::Ack, 1, Bytes::from_static(b"x")).encode();
        assert_eq!(
            Frame::decode(ack.split_to(ack.len())),
            Err(DecodeError::Payload(Kind::Ack, 1))
        );
    }

    #[test]
    fn fragments_roundtrip_and_bad_ones_are_refused() {
        let frag = |offset: usize, total: usize, len: usize| Frame {
            flags: FLAG_FRAG,
            payload: Fragment {
                offset,
                total,
                data: Bytes::from(vec![3u8; len]),
            }
            .encode(),
            ..data(5, b"")
        };
        let good = frag(100, 1000, 900);
        let decoded = Frame::decode(good.encode()).unwrap();
        assert_eq!(
            decoded.fragment(),
            Some(Fragment {
                offset: 100,
                total: 1000,
                data: Bytes::from(vec![3u8; 900])
            })
        );
        assert_eq!(data(5, b"abc").fragment(), None, "not a fragment");
        let bad = |f: Frame| Frame::decode(f.encode()).unwrap_err();
        let cases = [
            (frag(0, 10, 0), DecodeError::Fragment("no data")),
            (
                frag(5, 10, 6),
                DecodeError::Fragment("data beyond the total length"),
            ),
            (
                frag(u32::MAX as usize, 10, 1),
                DecodeError::Fragment("data beyond the total length"),
            ),
            (
                frag(0, MAX_CHUNK + 1, 10),
                DecodeError::Fragment("total length above the largest chunk"),
            ),
            (
                Frame {
                    flags: FLAG_FRAG | FLAG_FIN,
                    ..frag(0, 10, 10)
                },
                DecodeError::Flags {
                    kind: Kind::Data,
                    flags: FLAG_FRAG | FLAG_FIN,
                },
            ),
            (
                Frame {
                    kind: Kind::Ack,
                    ..frag(0, 10, 10)
                },
                DecodeError::Flags {
                    kind: Kind::Ack,
                    flags: FLAG_FRAG,
                },
            ),
        ];
        for (f, want) in cases {
            assert_eq!(bad(f.clone()), want, "{f:?}");
        }
        // A short prefix.
        let mut short = frag(0, 10, 10);
        short.payload = Bytes::from_static(&[0, 0, 0]);
        assert_eq!(bad(short), DecodeError::Fragment("no data"));
    }

    #[test]
    fn size_steps_go_down_to_the_floor() {
        assert_eq!(step_below(MAX_FRAME), 32512);
        assert_eq!(step_below(MAX_FRAME + 1), MAX_FRAME);
        assert_eq!(step_below(16129), 16128);
        assert_eq!(step_below(16128), 7936);
        assert_eq!(step_below(MIN_MESSAGE + 1), MIN_MESSAGE);
        assert_eq!(step_below(MIN_MESSAGE), MIN_MESSAGE);
        assert!(MESSAGE_STEPS.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn topics() {
        let t = Topics::new("mqtt-proxy", "db-1");
        assert_eq!(t.up("c1"), "mqtt-proxy/db-1/s/c1/up");
        assert_eq!(t.down("c1"), "mqtt-proxy/db-1/s/c1/down");
        assert_eq!(t.parse_up("mqtt-proxy/db-1/s/c1/up"), Some("c1"));
        assert_eq!(t.parse_up("mqtt-proxy/db-1/s/c1/down"), None);
        assert_eq!(t.parse_up("mqtt-proxy/db-2/s/c1/up"), None);
        assert_eq!(t.parse_up("mqtt-proxy/db-1/s/a/b/up"), None);
        assert_eq!(t.parse_up("mqtt-proxy/db-1/s//up"), None);
    }

    #[test]
    fn ids_and_prefixes() {
        for ok in ["a", "prod-db.eu_1", "X9"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "a/b", "a+b", "#", "a b", "ü", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(valid_prefix("mqtt-proxy"));
        assert!(valid_prefix("org/fleet"));
        for bad in ["", "/a", "a/", "a//b", "a/+", "#"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn refuse_payload_roundtrip_and_truncation() {
        let p = refuse_payload(RefuseCode::Target, "sshd at x refused");
        assert_eq!(refuse_reason(&p), "sshd at x refused");
        let long = "é".repeat(1000);
        let p = refuse_payload(RefuseCode::Target, &long);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert!(Frame::decode(Frame::control(Kind::Refuse, 1, p).encode()).is_ok());
    }

    /// Cases per decoder property: each is microseconds, so the suite can
    /// afford a real fuzzing run (about a second for all three in release).
    const FUZZ_CASES: u32 = 20_000;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::decode(Bytes::from(bytes));
        }

        #[test]
        fn control_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                        topic in "[a-z/+#.]{0,40}") {
            let _ = refuse_reason(&bytes);
            let _ = Presence::decode(&bytes);
            let _ = Topics::new("p", "n").parse_up(&topic);
            let _ = valid_id(&topic);
            let _ = valid_prefix(&topic);
        }

        #[test]
        fn decode_header_fuzz(header in proptest::collection::vec(any::<u8>(), HEADER_LEN..HEADER_LEN + 1),
                              len in 0usize..2000) {
            let mut v = header;
            v[0] = VERSION;
            v.resize(HEADER_LEN + len, 0);
            if let Ok(f) = Frame::decode(Bytes::from(v)) {
                prop_assert_eq!(Frame::decode(f.encode()), Ok(f));
            }
        }
    }
}
