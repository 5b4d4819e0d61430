//! The wire format: topic layout, frame layout, limits, encode/decode.
//!
//! Everything that crosses the broker is defined here and nowhere else.
//! `docs/protocol.md` describes the same thing for humans.
//!
//! Parts: `limits` (sizes), `frames` (frame layout, encode/decode, QoS,
//! PAD), `drains` (drains shared in PADs), `refuse` (REFUSE payloads),
//! `topics` (topic layout), `ids` (node and client ids, prefixes, random
//! ids), `presence` (the retained presence message). Everything is used
//! through the re-exports below.

mod drains;
mod frames;
mod ids;
mod limits;
mod presence;
mod refuse;
mod topics;

pub use drains::{may_report_drain, may_share_drains, DrainReport, DrainsShared};
pub use frames::{
    delivery, foreign_version, may_ask_for_pads, pad, pad_ask, recv_limit_packet, recv_limit_units,
    refuse_v1, DecodeError, Delivery, Fragment, Frame, Kind, FLAG_ACK_REQ, FLAG_FIN, FLAG_FRAG,
    FLAG_PEER_LOST, FLAG_RESYNC, FRAG_PREFIX_LEN, PAD_ASK, PAD_LEN, RECV_LIMIT_UNIT, VERSION,
};
pub use ids::{random_u64, valid_id, valid_prefix, MAX_ID_LEN};
pub use limits::{
    step_below, FRAME_OVERHEAD, HEADER_LEN, MAX_AUTH_PAYLOAD, MAX_CHUNK, MAX_CONTROL_PAYLOAD,
    MAX_FRAME, MAX_INFLIGHT_CHUNKS, MAX_PACKET, MESSAGE_STEPS, MIN_MESSAGE, MIN_PACKET, TAG_LEN,
};
pub use presence::Presence;
pub use refuse::{clip, refuse_code, refuse_payload, refuse_reason, RefuseCode};
pub use topics::Topics;

#[cfg(test)]
mod tests;
