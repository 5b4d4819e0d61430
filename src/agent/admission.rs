//! Session admission: which open requests become sessions, decided without
//! I/O.
//!
//! [`Admission`] holds what admission needs of the session table (per
//! client id: the session id, when it was admitted, whether its client has
//! spoken, its life stage), the challenges awaiting an answer and the rate
//! limits. Its methods take the time and an event (a frame from a client, a
//! frame delivered, ACCEPT sent, a session ended) and return [`Action`]s for
//! the dispatcher to carry out, so every rule is a unit test on synthetic
//! instants (`admission/tests.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access::{self, Access, Identity};
use crate::auth::{self, TokenBucket};
use crate::config::Secret;
use crate::handshake::{self, Ephemeral, Role, SessionKeys, NEEDS_KEYS, NEEDS_PASSWORD, SHARE_LEN};
use crate::protocol::{Frame, Kind, RefuseCode};

/// A full session table makes room by evicting a session whose client has
/// not sent a single stream frame this long after it was admitted: a real
/// client speaks one broker round trip after ACCEPT (its ack of sshd's
/// banner, its own banner), so what stays silent is a forged or abandoned
/// open. Short, so a flood of forged opens cannot hold the table for long;
/// generous for slow links (a satellite round trip is ~0.6 s).
const EVICT_UNHEARD: Duration = Duration::from_secs(2);

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

/// A session admitted: its keys, the ACCEPT payload that goes (and is
/// repeated) to the client, and the client's first bytes, which came in
/// its OPEN.
pub(super) struct Admitted {
    pub(super) keys: SessionKeys,
    pub(super) accept: Bytes,
    pub(super) early: Bytes,
    /// Who proved an authorized ssh key, when the agent asks for one.
    pub(super) identity: Option<Identity>,
}

/// Shows what a test can predict: not the keys, nor the ACCEPT payload
/// (random shares).
impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("early", &self.early)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What admission enforces.
pub(super) struct Policy {
    /// This agent's node id: agent-password answers are bound to it.
    pub(super) node_id: String,
    /// Most sessions at once.
    pub(super) max_sessions: usize,
    /// If set, a client must answer a challenge with this password before
    /// its session starts.
    pub(super) password: Option<Secret>,
    /// If set, a client must also prove it holds a key these lists
    /// authorize (the newest version, as `access::watch` re-reads them).
    pub(super) access: Option<watch::Receiver<Arc<Access>>>,
    /// The wall clock, for certificates' validity windows.
    pub(super) clock: fn() -> SystemTime,
}

impl Policy {
    /// What a challenge asks for (0: no challenge).
    fn needs(&self) -> u8 {
        let mut needs = 0;
        if self.password.is_some() {
            needs |= NEEDS_PASSWORD;
        }
        if self.access.is_some() {
            needs |= NEEDS_KEYS;
        }
        needs
    }
}

/// What the dispatcher is to do, for the client whose frame it was unless
/// the action names another.
#[derive(Debug)]
pub(super) enum Action {
    /// Hand the frame to the client's session task.
    Deliver(Frame),
    /// Send CHALLENGE with this payload (the agent's key share).
    Challenge { sid: u64, payload: Bytes },
    /// Send ACCEPT (with this payload) again: the client repeated its
    /// request before it saw the first one.
    Accept { sid: u64, payload: Bytes },
    /// Start a session task; it takes the slot admission has reserved.
    Start {
        sid: u64,
        window: u32,
        session: Box<Admitted>,
    },
    /// End the session of client `cid` to make room; admission has
    /// forgotten it already.
    Evict { cid: String },
    /// Send REFUSE.
    Refuse {
        sid: u64,
        code: RefuseCode,
        reason: Cow<'static, str>,
    },
    /// Ignore the frame; the reason is for the debug log and its counter.
    Drop(&'static str),
}

/// What a full session table can do for a new open request.
#[derive(Debug, PartialEq, Eq)]
enum Room {
    /// There is a free slot, made by evicting a silent session if `evicted`
    /// names one.
    Made { evicted: Option<String> },
    /// Only young silent sessions: there will be room within
    /// [`EVICT_UNHEARD`], and the client repeats its OPEN every second.
    Soon,
    /// Every session is in use.
    Full,
}

/// A session's life stage, as far as admission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Admitted; its task is connecting to the target.
    Starting,
    /// ACCEPT went out: a repeated OPEN or AUTH gets it again.
    Accepted,
}

/// One session in the table.
struct Slot {
    sid: u64,
    /// When the session was admitted.
    opened: Instant,
    /// The client has sent a stream frame since (see [`Admission::make_room`]).
    heard: bool,
    stage: Stage,
    /// The ACCEPT payload, for repeats.
    accept: Bytes,
}

/// A challenge sent, awaiting the client's AUTH.
struct Pending {
    sid: u64,
    /// The CHALLENGE payload (our key share, what we ask for).
    challenge: Bytes,
    window: u32,
    /// What the client's answer must be an HMAC of.
    transcript: [u8; 32],
    /// The keys, agreed already, for when the answer is right.
    keys: SessionKeys,
    early: Bytes,
    expires: Instant,
}

/// The session table as admission sees it, pending challenges and rate
/// limits. Keyed by client id: one session per client id.
pub(super) struct Admission {
    policy: Policy,
    sessions: HashMap<String, Slot>,
    pending: HashMap<String, Pending>,
    opens: TokenBucket,
    auth_failures: TokenBucket,
    /// Open requests dropped by the rate limit so far.
    rate_limited: u64,
    /// Where our key shares come from (fresh ones in production).
    shares: Box<dyn FnMut() -> Ephemeral + Send>,
}

impl Admission {
    pub(super) fn new(
        policy: Policy,
        now: Instant,
        shares: impl FnMut() -> Ephemeral + Send + 'static,
    ) -> Admission {
        Admission {
            policy,
            sessions: HashMap::new(),
            pending: HashMap::new(),
            opens: TokenBucket::new(OPEN_BURST, OPEN_RATE, now),
            auth_failures: TokenBucket::new(AUTH_FAIL_BURST, AUTH_FAIL_RATE, now),
            rate_limited: 0,
            shares: Box::new(shares),
        }
    }

    /// Sessions in the table.
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Every session in the table: client id and session id.
    pub(super) fn sessions(&self) -> impl Iterator<Item = (&str, u64)> {
        self.sessions.iter().map(|(cid, s)| (cid.as_str(), s.sid))
    }

    /// May an open request of another protocol version be answered now?
    /// It takes an open token, like any open request.
    pub(super) fn may_answer_foreign(&mut self, now: Instant) -> bool {
        self.opens.take(now)
    }

    /// A frame from client `cid`.
    pub(super) fn frame(&mut self, now: Instant, cid: &str, frame: Frame) -> Vec<Action> {
        match self.sessions.get(cid) {
            Some(s) if s.sid == frame.sid => match frame.kind {
                // The client did not see our answer yet; repeat it.
                Kind::Open | Kind::Auth if s.stage == Stage::Accepted => vec![Action::Accept {
                    sid: frame.sid,
                    payload: s.accept.clone(),
                }],
                // Not answered yet: the session task will.
                Kind::Open | Kind::Auth => Vec::new(),
                _ => vec![Action::Deliver(frame)],
            },
            Some(_) if frame.kind == Kind::Open => vec![Action::Refuse {
                sid: frame.sid,
                code: RefuseCode::Protocol,
                reason: "client id already has a session".into(),
            }],
            Some(_) => vec![Action::Drop("frame for another session of this client id")],
            None if frame.kind == Kind::Open => self.open(now, cid, &frame),
            None if frame.kind == Kind::Auth => self.auth(now, cid, &frame),
            None => vec![Action::Drop("frame for an unknown session")],
        }
    }

    /// The session task of `cid` took a frame of this kind from its queue
    /// (after [`Action::Deliver`]): a stream frame means its client spoke.
    pub(super) fn delivered(&mut self, cid: &str, kind: Kind) {
        if matches!(kind, Kind::Data | Kind::Ack) {
            if let Some(s) = self.sessions.get_mut(cid) {
                s.heard = true;
            }
        }
    }

    /// Session `sid` of `cid` sent its ACCEPT.
    pub(super) fn accepted(&mut self, cid: &str, sid: u64) {
        if let Some(s) = self.sessions.get_mut(cid).filter(|s| s.sid == sid) {
            s.stage = Stage::Accepted;
        }
    }

    /// Session `sid` of `cid` ended. True if it was still in the table (an
    /// evicted one is not, and the client id may have a newer session).
    pub(super) fn ended(&mut self, cid: &str, sid: u64) -> bool {
        if self.sessions.get(cid).is_some_and(|s| s.sid == sid) {
            self.sessions.remove(cid);
            true
        } else {
            false
        }
    }

    fn open(&mut self, now: Instant, cid: &str, frame: &Frame) -> Vec<Action> {
        if let Some(p) = self
            .pending
            .get(cid)
            .filter(|p| p.sid == frame.sid && p.expires > now)
        {
            // A repeated OPEN: repeat the same challenge.
            return vec![Action::Challenge {
                sid: p.sid,
                payload: p.challenge.clone(),
            }];
        }
        if !self.opens.take(now) {
            self.rate_limited += 1;
            if self.rate_limited.is_power_of_two() {
                tracing::warn!(
                    dropped = self.rate_limited,
                    "open requests arrive too fast; dropping some"
                );
            }
            return vec![Action::Drop("open rate limit")];
        }
        let mut actions: Vec<Action> = match self.make_room(now) {
            Room::Made { evicted } => evicted
                .map(|cid| Action::Evict { cid })
                .into_iter()
                .collect(),
            Room::Soon => return vec![Action::Drop("session table full of new sessions")],
            Room::Full => return vec![self.refuse_busy(cid, frame.sid)],
        };
        if frame.payload.len() < SHARE_LEN {
            return vec![Action::Refuse {
                sid: frame.sid,
                code: RefuseCode::Protocol,
                reason: "malformed open request (no key share)".into(),
            }];
        }
        let (share, early) = (
            &frame.payload[..SHARE_LEN],
            frame.payload.slice(SHARE_LEN..),
        );
        let needs = self.policy.needs();
        if needs != 0 {
            self.pending.retain(|_, p| p.expires > now);
            if self.pending.len() >= MAX_PENDING {
                actions.push(Action::Refuse {
                    sid: frame.sid,
                    code: RefuseCode::Busy,
                    reason: "too many pending requests".into(),
                });
                return actions;
            }
        }
        let ours = (self.shares)();
        let our_share = Bytes::copy_from_slice(ours.share());
        let password = self.policy.password.as_ref();
        // With a challenge our share goes in it, followed by what we ask
        // for, and the transcript holds both there too.
        let challenge = if needs != 0 {
            let mut c = BytesMut::with_capacity(SHARE_LEN + 1);
            c.extend_from_slice(&our_share);
            c.extend_from_slice(&[needs]);
            c.freeze()
        } else {
            Bytes::new()
        };
        let transcript = handshake::transcript(
            &self.policy.node_id,
            cid,
            frame.sid,
            &frame.payload,
            &challenge,
            &our_share,
        );
        let Ok(keys) = handshake::agree(ours, share, &transcript, password, Role::Agent) else {
            return vec![Action::Refuse {
                sid: frame.sid,
                code: RefuseCode::Protocol,
                reason: "malformed key share".into(),
            }];
        };
        if needs == 0 {
            let session = Admitted {
                accept: accept_payload(&our_share, &keys),
                keys,
                early,
                identity: None,
            };
            actions.push(self.admit(now, cid, frame.sid, frame.window, session));
            return actions;
        }
        self.pending.insert(
            cid.to_owned(),
            Pending {
                sid: frame.sid,
                challenge: challenge.clone(),
                window: frame.window,
                transcript,
                keys,
                early,
                expires: now + auth::CHALLENGE_TTL,
            },
        );
        actions.push(Action::Challenge {
            sid: frame.sid,
            payload: challenge,
        });
        actions
    }

    fn auth(&mut self, now: Instant, cid: &str, frame: &Frame) -> Vec<Action> {
        let needs = self.policy.needs();
        if needs == 0 {
            return vec![Action::Drop("AUTH but this agent asks for nothing")];
        }
        let sid = frame.sid;
        let node = self.policy.node_id.as_str();
        let failed = || Action::Refuse {
            sid,
            code: RefuseCode::Auth,
            reason: "authorization failed".into(),
        };
        // A nonce answers once: remove it whatever the outcome.
        let pending = match self.pending.remove(cid) {
            Some(p) if p.sid == sid && p.expires > now => p,
            _ => {
                tracing::warn!(
                    client = cid,
                    node,
                    sid = %format!("{sid:016x}"),
                    "authorization without a valid challenge (replay?)"
                );
                return vec![failed()];
            }
        };
        // Failed answers to the password are limited (each is a guess at
        // it); key proofs are not guesses, and the open rate limit bounds
        // the signatures checked.
        if self.policy.password.is_some() && !self.auth_failures.available(now) {
            tracing::warn!(client = cid, "too many failed authorizations; refusing");
            return vec![Action::Refuse {
                sid,
                code: RefuseCode::Busy,
                reason: "too many failed authorizations; try again later".into(),
            }];
        }
        // The answer to the password comes first, then the key proofs.
        let mut proofs = &frame.payload[..];
        if let Some(secret) = &self.policy.password {
            let (mac, rest) = proofs.split_at(proofs.len().min(handshake::ANSWER_LEN));
            proofs = rest;
            if !handshake::verify_answer(secret, &pending.transcript, mac) {
                self.auth_failures.take(now);
                tracing::warn!(
                    client = cid,
                    node,
                    sid = %format!("{sid:016x}"),
                    "authorization failed"
                );
                return vec![failed()];
            }
        }
        let identity = match &self.policy.access {
            Some(lists) => {
                // Sealed with the session's keys: proofs sealed for another
                // session (a replay) do not open, and prove nothing.
                let proofs = match pending.keys.open_proofs(proofs).map(|p| access::decode(&p)) {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        tracing::debug!(client = cid, error = %e, "malformed key proofs");
                        Vec::new()
                    }
                    None => {
                        tracing::debug!(client = cid, "key proofs not sealed for this session");
                        Vec::new()
                    }
                };
                let checked =
                    lists
                        .borrow()
                        .check(&proofs, node, &pending.transcript, (self.policy.clock)());
                match checked {
                    Ok(identity) => Some(identity),
                    Err(denial) => {
                        let offered: Vec<String> = proofs
                            .iter()
                            .map(|p| access::fingerprint(p.key()))
                            .collect();
                        tracing::info!(
                            client = cid,
                            node,
                            sid = %format!("{sid:016x}"),
                            keys = %offered.join(","),
                            reason = %denial,
                            "session refused"
                        );
                        return vec![Action::Refuse {
                            sid,
                            code: RefuseCode::Access,
                            reason: denial.for_client().into(),
                        }];
                    }
                }
            }
            None => None,
        };
        // The table may have filled while the client answered; its nonce is
        // spent, so refuse rather than let it wait.
        let mut actions: Vec<Action> = match self.make_room(now) {
            Room::Made { evicted } => evicted
                .map(|cid| Action::Evict { cid })
                .into_iter()
                .collect(),
            Room::Soon | Room::Full => return vec![self.refuse_busy(cid, sid)],
        };
        let session = Admitted {
            accept: accept_payload(&pending.challenge[..SHARE_LEN], &pending.keys),
            keys: pending.keys,
            early: pending.early,
            identity,
        };
        actions.push(self.admit(now, cid, sid, pending.window, session));
        actions
    }

    /// Room for one more session: `Made` if the table has a free slot or a
    /// silent session older than [`EVICT_UNHEARD`] was evicted for it.
    fn make_room(&mut self, now: Instant) -> Room {
        if self.sessions.len() < self.policy.max_sessions {
            return Room::Made { evicted: None };
        }
        let oldest_silent = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.heard)
            .min_by_key(|(_, s)| s.opened)
            .map(|(cid, s)| (cid.clone(), s.opened));
        match oldest_silent {
            Some((cid, opened)) if now >= opened + EVICT_UNHEARD => {
                self.sessions.remove(&cid);
                tracing::info!(client = %cid, "session table full; evicting a session whose client never spoke");
                Room::Made { evicted: Some(cid) }
            }
            Some(_) => Room::Soon,
            None => Room::Full,
        }
    }

    /// Refuse an open because every session slot is in use.
    fn refuse_busy(&self, cid: &str, sid: u64) -> Action {
        tracing::warn!(
            client = cid,
            max = self.policy.max_sessions,
            "too many sessions, refusing"
        );
        Action::Refuse {
            sid,
            code: RefuseCode::Busy,
            reason: "too many sessions".into(),
        }
    }

    /// Take a slot for session `sid` of `cid`.
    fn admit(
        &mut self,
        now: Instant,
        cid: &str,
        sid: u64,
        window: u32,
        session: Admitted,
    ) -> Action {
        self.sessions.insert(
            cid.to_owned(),
            Slot {
                sid,
                opened: now,
                heard: false,
                stage: Stage::Starting,
                accept: session.accept.clone(),
            },
        );
        Action::Start {
            sid,
            window,
            session: Box::new(session),
        }
    }
}

/// ACCEPT's payload: our key share and the key confirmation.
fn accept_payload(share: &[u8], keys: &SessionKeys) -> Bytes {
    let mut b = BytesMut::with_capacity(SHARE_LEN + handshake::CONFIRM_LEN);
    b.extend_from_slice(share);
    b.extend_from_slice(&keys.confirmation());
    b.freeze()
}

#[cfg(test)]
mod tests;
