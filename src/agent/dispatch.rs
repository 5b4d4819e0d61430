//! Routes incoming frames to sessions: the async shell around
//! [`Admission`], carrying out its actions (publishing answers, spawning and
//! evicting session tasks).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::admission::{Action, Admission, Admitted, Policy};
use super::ctx::{accept_frame, drop_msg, publish, refuse, reset, send, Ctx};
use super::session::{session, Note, SessionLinks};
use crate::handshake::Ephemeral;
use crate::mqtt::Message;
use crate::protocol::{self, Frame, Kind, RefuseCode};
use crate::seal::Sealer;

/// Frames buffered per session between dispatcher and session task: a full
/// window of chunks plus acknowledgements.
const SESSION_QUEUE: usize = 256;

/// The dispatcher's ends of its links with one session task.
struct Link {
    frames: mpsc::Sender<Frame>,
    /// Ends the session early (eviction).
    evict: oneshot::Sender<()>,
    /// Seals the RESET sent when the agent stops.
    tx: Arc<Sealer>,
}

/// Routes incoming messages to sessions; admission decides, this carries
/// it out. Runs on the agent's main task only.
pub(super) struct Dispatcher {
    ctx: Arc<Ctx>,
    admission: Admission,
    /// One per session in the admission table, by client id.
    links: HashMap<String, Link>,
    notes: mpsc::UnboundedSender<Note>,
}

impl Dispatcher {
    pub(super) fn new(ctx: Arc<Ctx>, notes: mpsc::UnboundedSender<Note>) -> Dispatcher {
        let policy = Policy {
            node_id: ctx.cfg.node_id.clone(),
            max_sessions: ctx.cfg.max_sessions,
            password: ctx.cfg.agent_password.clone(),
            access: ctx.access.clone(),
            clock: std::time::SystemTime::now,
        };
        Dispatcher {
            admission: Admission::new(policy, Instant::now(), Ephemeral::new),
            ctx,
            links: HashMap::new(),
            notes,
        }
    }

    /// Sessions in the table.
    pub(super) fn len(&self) -> usize {
        self.admission.len()
    }

    /// Tell every client its session is gone (we are exiting), so it ends
    /// at once instead of waiting out its resume timeout.
    pub(super) fn reset_all(&self) {
        for (cid, sid) in self.admission.sessions() {
            if let Some(link) = self.links.get(cid) {
                reset(&self.ctx, cid, sid, &link.tx, "");
            }
        }
    }

    /// What a session task reported.
    pub(super) fn note(&mut self, note: Note) {
        match note {
            Note::Accepted { cid, sid } => self.admission.accepted(&cid, sid),
            Note::Ended { cid, sid } => {
                if self.admission.ended(&cid, sid) {
                    self.links.remove(&cid);
                }
            }
        }
    }

    pub(super) fn dispatch(&mut self, p: Message) {
        let ctx = self.ctx.clone();
        let Some(cid) = ctx.topics.parse_up(&p.topic) else {
            return drop_msg(&p.topic, &"not a session topic");
        };
        if let Some((version, kind, sid)) = protocol::foreign_version(&p.payload) {
            return self.foreign(cid, &p.topic, version, kind, sid);
        }
        let frame = match Frame::decode(p.payload) {
            // Padding has done its work by arriving (unopened: it carries
            // nothing, so there is nothing to forge); a drain report goes
            // to the session, which opens it.
            Ok(f) if f.kind == Kind::Pad && !protocol::may_report_drain(&f) => return,
            Ok(f) => f,
            Err(e) => return drop_msg(&p.topic, &e),
        };
        for action in self.admission.frame(Instant::now(), cid, frame) {
            self.carry_out(cid, &p.topic, action);
        }
    }

    fn carry_out(&mut self, cid: &str, topic: &str, action: Action) {
        let ctx = &self.ctx;
        match action {
            Action::Deliver(frame) => {
                let Some(link) = self.links.get(cid) else {
                    return drop_msg(topic, &"no task for this session");
                };
                let kind = frame.kind;
                match link.frames.try_send(frame) {
                    Ok(()) => self.admission.delivered(cid, kind),
                    // Full: the client retransmits. Closed: the session is ending.
                    Err(err) => drop_msg(topic, &err),
                }
            }
            Action::Challenge { sid, payload } => {
                send(ctx, cid, Frame::control(Kind::Challenge, sid, payload))
            }
            Action::Accept { sid, payload } => send(
                ctx,
                cid,
                accept_frame(sid, ctx.cfg.stream.recv_window, payload),
            ),
            Action::Start {
                sid,
                window,
                session,
            } => self.start(cid, sid, window, *session),
            Action::Evict { cid } => {
                if let Some(link) = self.links.remove(&cid) {
                    // Err: the session task has ended already.
                    let _ = link.evict.send(());
                }
            }
            Action::Refuse { sid, code, reason } => refuse(ctx, cid, sid, code, &reason),
            Action::Drop(why) => drop_msg(topic, &why),
        }
    }

    fn start(&mut self, cid: &str, sid: u64, window: u32, admitted: Admitted) {
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let (evict_tx, evict_rx) = oneshot::channel();
        self.links.insert(
            cid.to_owned(),
            Link {
                frames: tx,
                evict: evict_tx,
                tx: admitted.keys.tx.clone(),
            },
        );
        let span = tracing::info_span!("session", node = %ctx.cfg.node_id, sid = %format!("{sid:016x}"), client = cid);
        tokio::spawn(
            session(
                ctx,
                cid.to_owned(),
                sid,
                window,
                admitted,
                SessionLinks {
                    frames: rx,
                    evicted: evict_rx,
                    notes: self.notes.clone(),
                },
            )
            .instrument(span),
        );
    }

    /// A frame of another protocol version. An old client's OPEN gets a
    /// REFUSE it can read, naming both versions, so it fails at once
    /// instead of waiting for an answer; anything else is dropped.
    fn foreign(&mut self, cid: &str, topic: &str, version: u8, kind: u8, sid: u64) {
        if version != 1 || kind != Kind::Open as u8 {
            return drop_msg(topic, &format!("frame of protocol version {version}"));
        }
        if !self.admission.may_answer_foreign(Instant::now()) {
            return drop_msg(topic, &"open rate limit");
        }
        let reason = format!(
            "the agent speaks protocol {} and this mqtt-proxy protocol {version}: upgrade mqtt-proxy",
            protocol::VERSION
        );
        tracing::warn!(client = cid, %reason, "session refused");
        let payload = protocol::refuse_payload(RefuseCode::Protocol, &reason);
        publish(&self.ctx, cid, protocol::refuse_v1(sid, &payload));
    }
}
