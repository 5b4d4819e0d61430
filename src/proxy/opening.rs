//! Opening a session, decided without I/O.
//!
//! [`Opening`] holds the client's side of the opening handshake (see
//! `docs/protocol.md`, "Opening"): wait for the broker link, publish OPEN
//! and repeat it until answered, answer a CHALLENGE with AUTH, and read the
//! node's presence to tell "offline" from "went offline" from "never
//! announced" from "no answer". It takes the time and an [`Event`] and
//! returns what to do ([`Action`]); the driver (`proxy::session`) owns the
//! channels, the timer and stdin, so every rule is a unit test on a paused
//! clock (`opening/tests.rs`).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::error::ProxyError;
use crate::access::NO_AUTHORIZED_KEY;
use crate::config::Secret;
use crate::handshake::{
    self, Ephemeral, Role, SessionKeys, CONFIRM_LEN, NEEDS_KEYS, NEEDS_PASSWORD, SHARE_LEN,
};
use crate::mqtt::LinkState;
use crate::protocol::{self, Frame, Kind, RefuseCode, MAX_CONTROL_PAYLOAD, VERSION};

/// Longest a session open may take, connect to the broker included: ssh
/// users expect an answer within 10 s (docs/protocol.md, "Opening", promises it).
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(9);
/// Repeat the OPEN request this often until answered (it may be dropped).
pub(super) const OPEN_RETRY: Duration = Duration::from_secs(1);
/// With no presence message this long after subscribing, the node is
/// unknown: brokers deliver retained messages right after SUBACK.
pub(super) const PRESENCE_WAIT: Duration = Duration::from_secs(2);
/// Most of ssh's first bytes that ride in the OPEN request, behind our
/// key share: ssh's version banner is at most 255 bytes (RFC 4253).
pub(super) const EARLY_MAX: usize = MAX_CONTROL_PAYLOAD - SHARE_LEN;

/// The early bytes ride in the OPEN only when connecting to the broker took at least
/// this long (TCP and MQTT handshakes, about two round trips): they save
/// the path's round trip, and may cost up to 40 ms on a broker with
/// Nagle's algorithm on (it holds sshd's banner behind the ACCEPT until our
/// TCP ack of the ACCEPT, which our kernel delays while we have nothing to
/// send; sending our banner after the ACCEPT is what acks it at once).
/// A/B on a loopback broker, `ssh node true` over direct (30 rounds,
/// medians): the build before the early bytes 0 and 4 ms against early
/// bytes always 31 and 40 ms; 6 and 16 ms against this rule 39 and 28 ms.
/// Since `mqtt::socket` acks the ACCEPT at once, this rule +5 and -14 ms
/// against early bytes always +12 and -2 ms: kept, as neither is better
/// beyond the spread.
pub(super) const EARLY_MIN_CONNECT: Duration = Duration::from_millis(20);

/// Who opens what, and how.
pub(super) struct Request {
    /// The node id, for messages and the AUTH answer.
    pub(super) node: String,
    /// The broker's address, for messages.
    pub(super) broker: String,
    /// Our MQTT client id, bound into the AUTH answer.
    pub(super) cid: String,
    pub(super) sid: u64,
    /// Our receive window, announced in OPEN.
    pub(super) recv_window: u32,
    /// The agent password, if the node's agent asks for one.
    pub(super) password: Option<Secret>,
}

/// What happened.
#[derive(Debug)]
pub(super) enum Event {
    /// The broker link changed (or is as it was when we started).
    Link(LinkState),
    /// The node's presence: `latest` is its status in the newest presence
    /// message (`None` before any), `ever_online` whether any presence
    /// message so far said online (the newest may be a last will that
    /// overtook the retained "online"), `protocol` the frame protocol
    /// version the newest one names.
    Presence {
        latest: Option<bool>,
        ever_online: bool,
        protocol: u8,
    },
    /// A frame of this session from the agent.
    Frame(Frame),
    /// The driver signed what [`Action::Sign`] asked: the encoded proofs
    /// (`access::encode`), or why there are none; `tried` says what was
    /// offered (`2 from ssh-agent`), for a refusal.
    Signed {
        proofs: Result<Bytes, String>,
        tried: String,
    },
    /// Only time passed (the driver woke at [`Opening::deadline`]).
    Tick,
}

/// What the driver is to do.
#[derive(Debug)]
pub(super) enum Action {
    /// Publish this encoded frame (OPEN or AUTH) on the session's up topic.
    Send(Bytes),
    /// Sign this transcript hash with our ssh keys (it blocks: ssh-agent),
    /// and tell [`Event::Signed`].
    Sign([u8; 32]),
    /// The opening is over.
    Done(Result<Box<Opened>, ProxyError>),
}

/// A session the agent accepted.
pub(super) struct Opened {
    /// The agent's receive window.
    pub(super) window: u32,
    /// The session's keys.
    pub(super) keys: SessionKeys,
    /// ssh's first bytes, read while opening: `in_open` if they rode in
    /// the OPEN request (the agent has them), else still to be sent.
    pub(super) early: Option<Bytes>,
    pub(super) in_open: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("window", &self.window)
            .field("early", &self.early)
            .field("in_open", &self.in_open)
            .finish_non_exhaustive()
    }
}

/// The opening's life stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the broker connection and our SUBSCRIBE.
    Connecting,
    /// Asking the agent; `subscribed_at` is when the SUBACK came, if it
    /// has (presence is due [`PRESENCE_WAIT`] after it).
    Asking { subscribed_at: Option<Instant> },
    /// Answered or failed: nothing more to do.
    Over,
}

/// The client's side of the opening handshake.
pub(super) struct Opening {
    req: Request,
    stage: Stage,
    /// When the whole opening gives up.
    deadline: Instant,
    /// When connecting to the broker began (see [`EARLY_MIN_CONNECT`]).
    connecting: Instant,
    /// What is sent and repeated: OPEN until challenged, then AUTH;
    /// `None` until the first OPEN is built.
    request: Option<Bytes>,
    /// When to send `request` (again).
    next_send: Instant,
    /// Our key share's private half, until the agent's share arrives.
    ours: Option<Ephemeral>,
    /// The OPEN payload sent (and repeated unchanged): it is part of the
    /// transcript.
    open_payload: Option<Bytes>,
    /// After a CHALLENGE: its payload, and the keys agreed with it.
    challenge: Option<(Bytes, SessionKeys)>,
    /// A CHALLENGE that asks for keys: the password's answer (if it asked
    /// for that too) waiting for the proofs, and the transcript to sign
    /// until the driver is asked to ([`Action::Sign`]).
    answer: Option<Bytes>,
    to_sign: Option<[u8; 32]>,
    /// What we offered, for a refusal's message.
    tried: Option<String>,
    /// The newest presence status, its protocol version, and whether the
    /// node was ever seen online (by the router, or while we opened).
    presence: Option<bool>,
    protocol: u8,
    seen_online: bool,
    /// ssh's first bytes.
    early: Early,
    /// Connecting took long enough for the early bytes to ride in the OPEN
    /// ([`EARLY_MIN_CONNECT`]).
    far: bool,
}

/// ssh's first bytes, as far as the opening got with them.
#[derive(Debug)]
enum Early {
    /// Not read yet: the driver may read them.
    Wanted,
    /// Not the opening's to read (a password: a challenge comes first,
    /// nothing to gain), or the OPEN went without them: the tunnel reads.
    Skipped,
    /// Read, to ride in the OPEN or to follow the ACCEPT.
    Read(Bytes),
    /// Sent inside the OPEN.
    InOpen(Bytes),
}

impl Opening {
    /// Start opening at `now`; connecting to the broker began at
    /// `connecting`.
    pub(super) fn new(req: Request, connecting: Instant, now: Instant) -> Opening {
        Opening {
            early: if req.password.is_none() {
                Early::Wanted
            } else {
                Early::Skipped
            },
            req,
            stage: Stage::Connecting,
            deadline: now + OPEN_TIMEOUT,
            connecting,
            request: None,
            next_send: now,
            ours: Some(Ephemeral::new()),
            open_payload: None,
            challenge: None,
            answer: None,
            to_sign: None,
            tried: None,
            presence: None,
            protocol: VERSION,
            seen_online: false,
            far: false,
        }
    }

    /// Take `event` at `now`. At most one action results: a frame to
    /// send, or the end of the opening.
    pub(super) fn handle(&mut self, event: Event, now: Instant) -> Option<Action> {
        if self.stage == Stage::Over {
            return None;
        }
        let decided = match event {
            Event::Link(state) => self.on_link(&state, now),
            Event::Presence {
                latest,
                ever_online,
                protocol,
            } => {
                self.presence = latest;
                self.protocol = protocol;
                self.seen_online |= ever_online;
                None
            }
            Event::Frame(f) => self.on_frame(f, now),
            Event::Signed { proofs, tried } => self.on_signed(proofs, tried, now),
            Event::Tick => None,
        };
        let action = match decided {
            Some(result) => Some(Action::Done(result)),
            None => match self.to_sign.take() {
                Some(t) => Some(Action::Sign(t)),
                None => self.step(now),
            },
        };
        if matches!(action, Some(Action::Done(_))) {
            self.stage = Stage::Over;
        }
        action
    }

    /// When the driver must wake to call [`Opening::handle`] with
    /// [`Event::Tick`], if nothing else happens first.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::Connecting => Some(self.deadline),
            Stage::Asking { subscribed_at } => {
                let mut wake = self.next_send.min(self.deadline);
                if let Some(t) = subscribed_at.filter(|_| self.presence.is_none()) {
                    wake = wake.min(t + PRESENCE_WAIT);
                }
                Some(wake)
            }
            Stage::Over => None,
        }
    }

    /// Whether the driver may read ssh's first bytes (at most
    /// [`EARLY_MAX`]) now: they ride in the OPEN if it is not sent yet and
    /// the broker is far, else they go as the first DATA after ACCEPT.
    /// Once read (or failed), it tells [`Opening::early_read`].
    pub(super) fn early_wanted(&self) -> bool {
        matches!(self.early, Early::Wanted) && self.stage != Stage::Over
    }

    /// The early read happened (`None`: nothing read, or it failed, and the
    /// tunnel reads again and sees the same): not again.
    pub(super) fn early_read(&mut self, bytes: Option<Bytes>) {
        if matches!(self.early, Early::Wanted) {
            self.early = match bytes.filter(|b| !b.is_empty()) {
                Some(b) => Early::Read(b),
                None => Early::Skipped,
            };
        }
    }

    fn on_link(
        &mut self,
        state: &LinkState,
        now: Instant,
    ) -> Option<Result<Box<Opened>, ProxyError>> {
        match state {
            LinkState::Down { reason, .. } => return Some(Err(ProxyError::Broker(reason.clone()))),
            LinkState::SubscribeDenied { topics } => {
                return Some(Err(ProxyError::Denied(topics.join(", "))))
            }
            LinkState::Connecting => {}
            LinkState::Subscribing | LinkState::Up { .. } => {
                let up = matches!(state, LinkState::Up { .. }).then_some(now);
                match &mut self.stage {
                    Stage::Connecting => {
                        self.stage = Stage::Asking { subscribed_at: up };
                        // A near broker: our banner waits for the ACCEPT
                        // (see EARLY_MIN_CONNECT).
                        self.far =
                            now.saturating_duration_since(self.connecting) >= EARLY_MIN_CONNECT;
                    }
                    Stage::Asking { subscribed_at } => {
                        if subscribed_at.is_none() {
                            *subscribed_at = up;
                        }
                    }
                    Stage::Over => {}
                }
            }
        }
        None
    }

    fn on_frame(&mut self, f: Frame, now: Instant) -> Option<Result<Box<Opened>, ProxyError>> {
        let node = &self.req.node;
        match f.kind {
            Kind::Accept => self.on_accept(&f.payload, f.window),
            // Unauthenticated: someone on the broker can refuse for the
            // node, never open (see docs/security.md).
            Kind::Refuse if protocol::refuse_code(&f.payload) == Some(RefuseCode::Access as u8) => {
                let mut reason = protocol::refuse_reason(&f.payload);
                if reason == NO_AUTHORIZED_KEY {
                    if let Some(tried) = &self.tried {
                        reason = format!("{reason} (tried {tried})");
                    }
                }
                Some(Err(ProxyError::AccessRefused {
                    node: node.clone(),
                    reason,
                }))
            }
            Kind::Refuse => Some(Err(ProxyError::Refused {
                node: node.clone(),
                reason: protocol::refuse_reason(&f.payload),
            })),
            Kind::Challenge => self.on_challenge(f.payload, now),
            other => {
                // Stream frames before the ACCEPT cannot be opened yet: the
                // agent sends them again.
                tracing::debug!(kind = ?other, "unexpected frame while opening");
                None
            }
        }
    }

    /// ACCEPT: the agent's share and its key confirmation.
    fn on_accept(
        &mut self,
        payload: &[u8],
        window: u32,
    ) -> Option<Result<Box<Opened>, ProxyError>> {
        let node = self.req.node.clone();
        let (share, confirm) = match payload.len() {
            n if n == SHARE_LEN + CONFIRM_LEN => payload.split_at(SHARE_LEN),
            n => {
                tracing::debug!(len = n, "malformed accept dropped");
                return None;
            }
        };
        let keys = match self.challenge.take() {
            Some((challenge, keys)) => {
                if share != &challenge[..SHARE_LEN] || !keys.confirms(confirm) {
                    // Not made by who answered our AUTH: dropped, the real
                    // one may follow.
                    tracing::debug!("accept that does not confirm our keys dropped");
                    self.challenge = Some((challenge, keys));
                    return None;
                }
                keys
            }
            // A password, but the agent never asked for it: it has none,
            // or someone else answered for it.
            None if self.req.password.is_some() => return Some(Err(ProxyError::NoChallenge(node))),
            None => {
                let (Some(ours), Some(open)) = (self.ours.take(), self.open_payload.as_ref())
                else {
                    tracing::debug!("accept before our request dropped");
                    return None;
                };
                let t = handshake::transcript(
                    node.as_str(),
                    &self.req.cid,
                    self.req.sid,
                    open,
                    &[],
                    share,
                );
                match handshake::agree(ours, share, &t, None, Role::Client) {
                    Ok(keys) if keys.confirms(confirm) => keys,
                    _ => return Some(Err(ProxyError::KeyCheck(node))),
                }
            }
        };
        let (early, in_open) = match std::mem::replace(&mut self.early, Early::Skipped) {
            Early::Read(b) => (Some(b), false),
            Early::InOpen(b) => (Some(b), true),
            Early::Wanted | Early::Skipped => (None, false),
        };
        Some(Ok(Box::new(Opened {
            window,
            keys,
            early,
            in_open,
        })))
    }

    /// CHALLENGE: our keys are agreed with the agent's share; what it asks
    /// for (the password's answer, ssh-key proofs, or both) goes back in
    /// AUTH, bound to the transcript. Proofs are signed by the driver
    /// first ([`Action::Sign`]).
    fn on_challenge(
        &mut self,
        payload: Bytes,
        now: Instant,
    ) -> Option<Result<Box<Opened>, ProxyError>> {
        let node = &self.req.node;
        if payload.len() != SHARE_LEN + 1 {
            tracing::debug!(len = payload.len(), "malformed challenge dropped");
            return None;
        }
        let needs = payload[SHARE_LEN];
        if needs & !(NEEDS_PASSWORD | NEEDS_KEYS) != 0 || needs == 0 {
            return Some(Err(ProxyError::Refused {
                node: node.clone(),
                reason: format!("it asks for an authorization this mqtt-proxy does not know ({needs:#04x}): upgrade mqtt-proxy"),
            }));
        }
        let password = match (&self.req.password, needs & NEEDS_PASSWORD != 0) {
            (Some(secret), true) => Some(secret),
            (None, true) => {
                return Some(Err(ProxyError::Refused {
                    node: node.clone(),
                    reason: "it asks for the agent password and none is set (MQTT_AGENT_PASSWORD)"
                        .into(),
                }))
            }
            // We have a password and it did not ask: it has none, or
            // someone else answers for it (as for an ACCEPT unasked).
            (Some(_), false) => return Some(Err(ProxyError::NoChallenge(node.clone()))),
            (None, false) => None,
        };
        // Only the first challenge counts: our share agrees once.
        let (Some(ours), Some(open)) = (self.ours.take(), self.open_payload.as_ref()) else {
            tracing::debug!("repeated or early challenge ignored");
            return None;
        };
        let r = &self.req;
        let share = &payload[..SHARE_LEN];
        let t = handshake::transcript(&r.node, &r.cid, r.sid, open, &payload, share);
        let Ok(keys) = handshake::agree(ours, share, &t, password, Role::Client) else {
            return Some(Err(ProxyError::KeyCheck(node.clone())));
        };
        let answer = password.map_or_else(Bytes::new, |secret| {
            Bytes::copy_from_slice(&handshake::answer(secret, &t))
        });
        self.challenge = Some((payload, keys));
        if needs & NEEDS_KEYS != 0 {
            self.answer = Some(answer);
            self.to_sign = Some(t);
        } else {
            self.request = Some(Frame::control(Kind::Auth, r.sid, answer).encode());
            self.next_send = now;
        }
        None
    }

    /// The driver signed: AUTH carries the password's answer (if asked)
    /// and the proofs; without any proof there is nothing to offer.
    fn on_signed(
        &mut self,
        proofs: Result<Bytes, String>,
        tried: String,
        now: Instant,
    ) -> Option<Result<Box<Opened>, ProxyError>> {
        let Some(answer) = self.answer.take() else {
            tracing::debug!("signature nobody asked for ignored");
            return None;
        };
        self.tried = Some(tried);
        let proofs = match proofs {
            Ok(p) => p,
            Err(why) => {
                return Some(Err(ProxyError::NoIdentity {
                    node: self.req.node.clone(),
                    why,
                }))
            }
        };
        let Some((_, keys)) = &self.challenge else {
            tracing::debug!("signature without a challenge ignored");
            return None;
        };
        let mut payload = answer.to_vec();
        payload.extend_from_slice(&keys.seal_proofs(&proofs));
        self.request = Some(Frame::control(Kind::Auth, self.req.sid, payload.into()).encode());
        self.next_send = now;
        None
    }

    /// The OPEN request, built once: our share, then ssh's first bytes if
    /// they are here and the broker is far.
    fn open_request(&mut self) -> Bytes {
        let share = self
            .ours
            .as_ref()
            .expect("our share is kept until answered")
            .share();
        let mut payload = share.to_vec();
        self.early = match std::mem::replace(&mut self.early, Early::Skipped) {
            Early::Read(b) if self.far => {
                payload.extend_from_slice(&b);
                Early::InOpen(b)
            }
            // Read but the broker is near: it follows the ACCEPT.
            Early::Read(b) => Early::Read(b),
            // Not read by now: the tunnel reads it.
            _ => Early::Skipped,
        };
        let payload = Bytes::from(payload);
        self.open_payload = Some(payload.clone());
        let mut open = Frame::control(Kind::Open, self.req.sid, payload);
        open.window = self.req.recv_window;
        open.encode()
    }

    /// What time and the presence rules decide now.
    fn step(&mut self, now: Instant) -> Option<Action> {
        let node = &self.req.node;
        let fail = |e| Some(Action::Done(Err(e)));
        let subscribed_at = match self.stage {
            Stage::Connecting if now >= self.deadline => {
                return fail(ProxyError::Broker(format!(
                    "could not reach broker {}: timed out",
                    self.req.broker
                )))
            }
            Stage::Connecting | Stage::Over => return None,
            Stage::Asking { subscribed_at } => subscribed_at,
        };
        if now >= self.deadline {
            return fail(if self.presence == Some(false) {
                ProxyError::WentOffline(node.clone())
            } else {
                ProxyError::NoAnswer(node.clone())
            });
        }
        // An agent seen online that then goes offline while we open may
        // only be reconnecting (its last will fired): keep asking until the
        // deadline. Offline from the start means the node is down: say so
        // at once.
        match self.presence {
            Some(true) if self.protocol != VERSION => {
                return fail(ProxyError::Protocol {
                    node: node.clone(),
                    agent: self.protocol,
                })
            }
            Some(true) => self.seen_online = true,
            Some(false) if !self.seen_online => return fail(ProxyError::Offline(node.clone())),
            Some(false) => {}
            None if subscribed_at.is_some_and(|t| now >= t + PRESENCE_WAIT) => {
                return fail(ProxyError::Unknown {
                    node: node.clone(),
                    broker: self.req.broker.clone(),
                })
            }
            None => {}
        }
        if now >= self.next_send {
            self.next_send = now + OPEN_RETRY;
            let request = match &self.request {
                Some(r) => r.clone(),
                None => {
                    let r = self.open_request();
                    self.request = Some(r.clone());
                    r
                }
            };
            return Some(Action::Send(request));
        }
        None
    }
}

#[cfg(test)]
mod tests;
