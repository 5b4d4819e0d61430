//! Sizes: the frame header, chunks, frames and MQTT packets, the smallest
//! message we cut data into and the steps size discovery takes, control
//! payloads, chunks in flight.

/// Fixed header in front of every frame's payload:
/// version u8, kind u8, flags u8, recv_limit u8, sid u64, seq u64, ack u64,
/// sack u64, window u32, counter u64 (all big-endian).
pub const HEADER_LEN: usize = 48;

/// The header of protocol version 1 (no counter): what an old client
/// reads (`frames::refuse_v1`).
pub const V1_HEADER_LEN: usize = 40;

/// The authentication tag behind a sealed frame's payload (AES-256-GCM).
pub const TAG_LEN: usize = 16;

/// What a frame adds to the bytes it carries, sealed: header and tag.
pub const FRAME_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest payload one DATA frame carries. One read of the local stream
/// becomes one chunk of at most this size. Chosen with `scripts/bench`
/// (256 MiB scp, best of 5, same machine): 64 KiB moved 225/266 MB/s
/// up/down against 211/226 MB/s with 32 KiB and 190/215 MB/s with 16 KiB;
/// a read then often takes two of OpenSSH's 32 KiB channel packets at once,
/// halving the messages per byte. Keystrokes still go out as they come.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Largest frame we send or accept.
pub const MAX_FRAME: usize = FRAME_OVERHEAD + MAX_CHUNK;

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
/// topic (`<prefix>/<node>/s/<cid>/up`, two ids of up to
/// [`MAX_ID_LEN`](super::MAX_ID_LEN)) and the PUBLISH headers.
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

/// Largest control payload (refusal reason, open parameters, the reason
/// a sealed RESET may carry).
pub const MAX_CONTROL_PAYLOAD: usize = 1024;

/// Largest AUTH payload: the agent-password answer and the ssh-key proofs
/// (`access::proof`). An ed25519 key's proof is about 200 bytes, with its
/// certificate 500; an RSA-2048 one with its certificate 1.2 KiB. A client
/// sends the proofs that fit.
pub const MAX_AUTH_PAYLOAD: usize = 16 * 1024;

/// Most chunks in flight per direction; also the width of the SACK bitmap.
pub const MAX_INFLIGHT_CHUNKS: u64 = 64;

#[cfg(test)]
mod tests;
