//! Routes incoming frames to sessions and admits new ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::Publish;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::session::{session, SessionLinks};
use super::{accept_frame, drop_msg, refuse, send, Ctx};
use crate::auth;
use crate::protocol::{Frame, Kind, RefuseCode};

/// Frames buffered per session between dispatcher and session task: a full
/// window of chunks plus acknowledgements.
const SESSION_QUEUE: usize = 256;

struct Entry {
    sid: u64,
    frames: mpsc::Sender<Frame>,
    accepted: Arc<AtomicBool>,
    /// When the session was admitted.
    opened: Instant,
    /// The client has sent a stream frame since (see [`Dispatcher::make_room`]).
    heard: bool,
    /// Ends the session early (eviction).
    evict: oneshot::Sender<()>,
}

/// A full session table makes room by evicting a session whose client has
/// not sent a single stream frame this long after it was admitted: a real
/// client speaks one broker round trip after ACCEPT (its ack of sshd's
/// banner, its own banner), so what stays silent is a forged or abandoned
/// open. Short, so a flood of forged opens cannot hold the table for long;
/// generous for slow links (a satellite round trip is ~0.6 s).
const EVICT_UNHEARD: Duration = Duration::from_secs(2);

/// What a full session table can do for a new open request.
#[derive(Debug, PartialEq, Eq)]
enum Room {
    /// A silent session was evicted.
    Made,
    /// Only young silent sessions: there will be room within
    /// [`EVICT_UNHEARD`], and the client repeats its OPEN every second.
    Soon,
    /// Every session is in use.
    Full,
}

/// A challenge sent, awaiting the client's AUTH.
struct Pending {
    sid: u64,
    nonce: [u8; auth::NONCE_LEN],
    window: u32,
    expires: Instant,
}

/// Open requests accepted at once before rate limiting, and per second
/// after: enough for 50 sessions opened together by a script, while a flood
/// of opens cannot make the agent connect to its target more than this.
const OPEN_BURST: u32 = 64;
const OPEN_RATE: f64 = 20.0;
/// Failed authorizations allowed at once, and per second after.
const AUTH_FAIL_BURST: u32 = 5;
const AUTH_FAIL_RATE: f64 = 0.5;
/// Most challenges awaiting an answer (each is ~100 bytes).
const MAX_PENDING: usize = 256;

/// Routes incoming messages to sessions; owns the session table, pending
/// challenges and rate limits. Runs on the agent's main task only.
pub(super) struct Dispatcher {
    ctx: Arc<Ctx>,
    sessions: HashMap<String, Entry>,
    pending: HashMap<String, Pending>,
    opens: auth::TokenBucket,
    auth_failures: auth::TokenBucket,
    done_tx: mpsc::UnboundedSender<(String, u64)>,
    rate_limited: u64,
}

impl Dispatcher {
    pub(super) fn new(ctx: Arc<Ctx>, done_tx: mpsc::UnboundedSender<(String, u64)>) -> Dispatcher {
        let now = Instant::now();
        Dispatcher {
            ctx,
            sessions: HashMap::new(),
            pending: HashMap::new(),
            opens: auth::TokenBucket::new(OPEN_BURST, OPEN_RATE, now),
            auth_failures: auth::TokenBucket::new(AUTH_FAIL_BURST, AUTH_FAIL_RATE, now),
            done_tx,
            rate_limited: 0,
        }
    }

    /// Sessions in the table.
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Tell every client its session is gone (we are exiting), so it ends
    /// at once instead of waiting out its resume timeout.
    pub(super) fn reset_all(&self) {
        for (cid, e) in &self.sessions {
            send(
                &self.ctx,
                cid,
                Frame::control(Kind::Reset, e.sid, Bytes::new()),
            );
        }
    }

    pub(super) fn session_done(&mut self, cid: String, sid: u64) {
        if self.sessions.get(&cid).is_some_and(|e| e.sid == sid) {
            self.sessions.remove(&cid);
        }
    }

    pub(super) fn dispatch(&mut self, p: Publish) {
        let ctx = self.ctx.clone();
        let Some(cid) = ctx.topics.parse_up(&p.topic) else {
            return drop_msg(&p.topic, &"not a session topic");
        };
        let frame = match Frame::decode(p.payload) {
            Ok(f) => f,
            Err(e) => return drop_msg(&p.topic, &e),
        };
        let now = Instant::now();
        match self.sessions.get_mut(cid) {
            Some(e) if e.sid == frame.sid => {
                if matches!(frame.kind, Kind::Open | Kind::Auth) {
                    // The client did not see our answer yet; repeat it.
                    if e.accepted.load(Ordering::Acquire) {
                        let accept = accept_frame(frame.sid, ctx.cfg.stream.recv_window);
                        send(&ctx, cid, accept);
                    }
                    return;
                }
                let stream_frame = matches!(frame.kind, Kind::Data | Kind::Ack);
                match e.frames.try_send(frame) {
                    Ok(()) => e.heard |= stream_frame,
                    // Full: the client retransmits. Closed: the session is ending.
                    Err(err) => drop_msg(&p.topic, &err),
                }
            }
            Some(_) if frame.kind == Kind::Open => refuse(
                &ctx,
                cid,
                frame.sid,
                RefuseCode::Protocol,
                "client id already has a session",
            ),
            Some(_) => drop_msg(&p.topic, &"frame for another session of this client id"),
            None if frame.kind == Kind::Open => self.open(cid, frame, now),
            None if frame.kind == Kind::Auth => self.auth(cid, frame, now),
            None => drop_msg(&p.topic, &"frame for an unknown session"),
        }
    }

    fn open(&mut self, cid: &str, frame: Frame, now: Instant) {
        let ctx = self.ctx.clone();
        if let Some(p) = self
            .pending
            .get(cid)
            .filter(|p| p.sid == frame.sid && p.expires > now)
        {
            // A repeated OPEN: repeat the same challenge.
            return send(&ctx, cid, challenge_frame(p.sid, &p.nonce));
        }
        if !self.opens.take(now) {
            self.rate_limited += 1;
            if self.rate_limited.is_power_of_two() {
                tracing::warn!(
                    dropped = self.rate_limited,
                    "open requests arrive too fast; dropping some"
                );
            }
            return drop_msg(cid, &"open rate limit");
        }
        match self.make_room(now) {
            Room::Made => {}
            Room::Soon => return drop_msg(cid, &"session table full of new sessions"),
            Room::Full => return refuse_busy(&ctx, cid, frame.sid),
        }
        if ctx.cfg.agent_password.is_none() {
            return self.start(cid, frame.sid, frame.window);
        }
        self.pending.retain(|_, p| p.expires > now);
        if self.pending.len() >= MAX_PENDING {
            return refuse(
                &ctx,
                cid,
                frame.sid,
                RefuseCode::Busy,
                "too many pending requests",
            );
        }
        let nonce = auth::nonce();
        self.pending.insert(
            cid.to_owned(),
            Pending {
                sid: frame.sid,
                nonce,
                window: frame.window,
                expires: now + auth::CHALLENGE_TTL,
            },
        );
        send(&ctx, cid, challenge_frame(frame.sid, &nonce));
    }

    fn auth(&mut self, cid: &str, frame: Frame, now: Instant) {
        let ctx = self.ctx.clone();
        let Some(secret) = &ctx.cfg.agent_password else {
            return drop_msg(cid, &"AUTH but this agent has no password");
        };
        // A nonce answers once: remove it whatever the outcome.
        let pending = match self.pending.remove(cid) {
            Some(p) if p.sid == frame.sid && p.expires > now => p,
            _ => {
                tracing::warn!(
                    client = cid,
                    "authorization without a valid challenge (replay?)"
                );
                return refuse(
                    &ctx,
                    cid,
                    frame.sid,
                    RefuseCode::Auth,
                    "authorization failed",
                );
            }
        };
        if !self.auth_failures.available(now) {
            tracing::warn!(client = cid, "too many failed authorizations; refusing");
            return refuse(
                &ctx,
                cid,
                frame.sid,
                RefuseCode::Busy,
                "too many failed authorizations; try again later",
            );
        }
        let ok = auth::verify(
            secret,
            &ctx.cfg.node_id,
            cid,
            frame.sid,
            &pending.nonce,
            &frame.payload,
        );
        if !ok {
            self.auth_failures.take(now);
            tracing::warn!(client = cid, "authorization failed");
            return refuse(
                &ctx,
                cid,
                frame.sid,
                RefuseCode::Auth,
                "authorization failed",
            );
        }
        // The table may have filled while the client answered; its nonce is
        // spent, so refuse rather than let it wait.
        if self.make_room(now) != Room::Made {
            return refuse_busy(&ctx, cid, frame.sid);
        }
        self.start(cid, frame.sid, pending.window);
    }

    /// Room for one more session: `Made` if the table has a free slot or a
    /// silent session older than [`EVICT_UNHEARD`] was evicted for it.
    fn make_room(&mut self, now: Instant) -> Room {
        if self.sessions.len() < self.ctx.cfg.max_sessions {
            return Room::Made;
        }
        let oldest_silent = self
            .sessions
            .iter()
            .filter(|(_, e)| !e.heard)
            .min_by_key(|(_, e)| e.opened)
            .map(|(cid, e)| (cid.clone(), e.opened));
        match oldest_silent {
            Some((cid, opened)) if now >= opened + EVICT_UNHEARD => {
                if let Some(e) = self.sessions.remove(&cid) {
                    // Err: the session task has ended already.
                    let _ = e.evict.send(());
                }
                tracing::info!(client = %cid, "session table full; evicting a session whose client never spoke");
                Room::Made
            }
            Some(_) => Room::Soon,
            None => Room::Full,
        }
    }

    fn start(&mut self, cid: &str, sid: u64, window: u32) {
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let (evict_tx, evict_rx) = oneshot::channel();
        let accepted = Arc::new(AtomicBool::new(false));
        self.sessions.insert(
            cid.to_owned(),
            Entry {
                sid,
                frames: tx,
                accepted: accepted.clone(),
                opened: Instant::now(),
                heard: false,
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
                    accepted,
                    evicted: evict_rx,
                    done: self.done_tx.clone(),
                },
            )
            .instrument(span),
        );
    }
}

fn challenge_frame(sid: u64, nonce: &[u8]) -> Frame {
    Frame::control(Kind::Challenge, sid, Bytes::copy_from_slice(nonce))
}

/// Refuse an open because every session slot is in use.
fn refuse_busy(ctx: &Ctx, cid: &str, sid: u64) {
    tracing::warn!(
        client = cid,
        max = ctx.cfg.max_sessions,
        "too many sessions, refusing"
    );
    refuse(ctx, cid, sid, RefuseCode::Busy, "too many sessions");
}
