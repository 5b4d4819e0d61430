//! What every part of the agent shares: the read-only context, and the
//! fire-and-forget control frames sent to clients.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::settings::AgentConfig;
use crate::mqtt::{self, Client, LinkState};
use crate::protocol::{self, Frame, Kind, RefuseCode, Topics};
use crate::seal::Sealer;

/// Shared, read-only context of all sessions.
pub(super) struct Ctx {
    pub cfg: AgentConfig,
    pub topics: Topics,
    pub client: Client,
    pub link: tokio::sync::watch::Receiver<LinkState>,
    /// The access lists sessions are checked against, kept current
    /// (`--authorized-keys`).
    pub access: Option<tokio::sync::watch::Receiver<std::sync::Arc<crate::access::Access>>>,
    /// When a session last sent a bulk chunk: while one does, the others
    /// ask their peers to pad small frames (`stream::pad_ask`).
    pub bulk: std::sync::Arc<crate::tunnel::BulkClock>,
    /// The sessions' drains, shared: every download goes out through the
    /// one broker connection (`stream::congestion::DrainsTogether`).
    pub drains: std::sync::Arc<crate::stream::congestion::DrainsTogether>,
    /// The drains of the sessions' uploads, as their clients report them:
    /// every upload comes in through the one broker connection
    /// (`Stream::gather_drains`).
    pub uploads: std::sync::Arc<crate::stream::congestion::DrainsTogether>,
}

/// Frames dropped by the dispatcher (malformed, unknown session, queue full).
static DROPPED: AtomicU64 = AtomicU64::new(0);

pub(super) fn drop_msg(topic: &str, why: &dyn std::fmt::Display) {
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::debug!(topic, %why, dropped_total = n, "dropped message");
}

/// Publish an encoded frame on client `cid`'s down topic without waiting,
/// at the QoS its kind goes at. Dropped if the request queue is full: the
/// client repeats its request, or times out.
pub(super) fn publish(ctx: &Ctx, cid: &str, frame: Bytes) {
    let qos = mqtt::qos(protocol::delivery(&frame));
    // Err: queue full or MQTT task gone; the client repeats or times out.
    let _ = ctx
        .client
        .try_publish(ctx.topics.down(cid), qos, false, frame);
}

/// Publish a handshake frame (unsealed) without waiting ([`publish`]).
pub(super) fn send(ctx: &Ctx, cid: &str, f: Frame) {
    publish(ctx, cid, f.encode());
}

pub(super) fn accept_frame(sid: u64, window: u32, payload: Bytes) -> Frame {
    let mut f = Frame::control(Kind::Accept, sid, payload);
    f.window = window;
    f
}

/// Publish a RESET of session `sid`, sealed, without waiting (best effort:
/// a client that misses it times out). `why`, if not empty, is what the
/// client prints (`mqtt-proxy: NODE: access revoked`).
pub(super) fn reset(ctx: &Ctx, cid: &str, sid: u64, tx: &Sealer, why: &str) {
    let why = Bytes::copy_from_slice(protocol::clip(why, protocol::MAX_CONTROL_PAYLOAD).as_bytes());
    let frame = tx.seal_frame(&Frame::control(Kind::Reset, sid, why));
    publish(ctx, cid, frame);
}

pub(super) fn refuse(ctx: &Ctx, cid: &str, sid: u64, code: RefuseCode, reason: &str) {
    send(
        ctx,
        cid,
        Frame::control(Kind::Refuse, sid, protocol::refuse_payload(code, reason)),
    );
}
