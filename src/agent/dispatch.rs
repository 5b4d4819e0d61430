//! Routes incoming frames to sessions: the async shell around
//! [`Admission`], carrying out its actions (publishing answers, spawning and
//! evicting session tasks).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::admission::{Action, Admission, Policy};
use super::ctx::{accept_frame, drop_msg, refuse, send, Ctx};
use super::session::{session, Note, SessionLinks};
use crate::auth;
use crate::mqtt::Message;
use crate::protocol::{Frame, Kind};

/// Frames buffered per session between dispatcher and session task: a full
/// window of chunks plus acknowledgements.
const SESSION_QUEUE: usize = 256;

/// The dispatcher's ends of its links with one session task.
struct Link {
    frames: mpsc::Sender<Frame>,
    /// Ends the session early (eviction).
    evict: oneshot::Sender<()>,
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
        };
        Dispatcher {
            admission: Admission::new(policy, Instant::now(), auth::nonce),
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
            send(
                &self.ctx,
                cid,
                Frame::control(Kind::Reset, sid, Bytes::new()),
            );
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
        let frame = match Frame::decode(p.payload) {
            // Padding has done its work by arriving.
            Ok(f) if f.kind == Kind::Pad => return,
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
            Action::Challenge { sid, nonce } => send(ctx, cid, challenge_frame(sid, &nonce)),
            Action::Accept { sid } => send(ctx, cid, accept_frame(sid, ctx.cfg.stream.recv_window)),
            Action::Start { sid, window } => self.start(cid, sid, window),
            Action::Evict { cid } => {
                if let Some(link) = self.links.remove(&cid) {
                    // Err: the session task has ended already.
                    let _ = link.evict.send(());
                }
            }
            Action::Refuse { sid, code, reason } => refuse(ctx, cid, sid, code, reason),
            Action::Drop(why) => drop_msg(topic, &why),
        }
    }

    fn start(&mut self, cid: &str, sid: u64, window: u32) {
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let (evict_tx, evict_rx) = oneshot::channel();
        self.links.insert(
            cid.to_owned(),
            Link {
                frames: tx,
                evict: evict_tx,
            },
        );
        let span = tracing::info_span!("session", node = %ctx.cfg.node_id, sid = %format!("{sid:016x}"), client = cid);
        tokio::spawn(
            session(
                ctx,
                cid.to_owned(),
                sid,
                window,
                SessionLinks {
                    frames: rx,
                    evicted: evict_rx,
                    notes: self.notes.clone(),
                },
            )
            .instrument(span),
        );
    }
}

fn challenge_frame(sid: u64, nonce: &[u8]) -> Frame {
    Frame::control(Kind::Challenge, sid, Bytes::copy_from_slice(nonce))
}
