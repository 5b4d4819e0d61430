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
use crate::auth;
use crate::config::Secret;
use crate::mqtt::LinkState;
use crate::protocol::{self, Frame, Kind};

/// Longest a session open may take, connect to the broker included: ssh
/// users expect an answer within 10 s (docs/protocol.md, "Opening", promises it).
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(9);
/// Repeat the OPEN request this often until answered (it may be dropped).
pub(super) const OPEN_RETRY: Duration = Duration::from_secs(1);
/// With no presence message this long after subscribing, the node is
/// unknown: brokers deliver retained messages right after SUBACK.
pub(super) const PRESENCE_WAIT: Duration = Duration::from_secs(2);
/// The early bytes go only when connecting to the broker took at least
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
    /// overtook the retained "online").
    Presence {
        latest: Option<bool>,
        ever_online: bool,
    },
    /// A frame of this session from the agent.
    Frame(Frame),
    /// Only time passed (the driver woke at [`Opening::deadline`]).
    Tick,
}

/// What the driver is to do.
#[derive(Debug)]
pub(super) enum Action {
    /// Publish this encoded frame (OPEN or AUTH) on the session's up topic.
    Send(Bytes),
    /// The opening is over.
    Done(Result<Opened, ProxyError>),
}

/// A session the agent accepted.
#[derive(Debug)]
pub(super) struct Opened {
    /// The agent's receive window.
    pub(super) window: u32,
    /// A stream frame that overtook (or replaced a lost) ACCEPT.
    pub(super) first: Option<Frame>,
    /// The request was sent more than once, so what followed the first
    /// one (the early banner) may have been dropped with it.
    pub(super) repeated: bool,
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
    /// What is sent and repeated: OPEN until challenged, then AUTH.
    request: Bytes,
    /// When to send `request` (again).
    next_send: Instant,
    sent_any: bool,
    repeated: bool,
    /// The newest presence status, and whether the node was ever seen
    /// online (by the router, or while we opened).
    presence: Option<bool>,
    seen_online: bool,
    /// The early read of stdin may still be tried.
    early: bool,
}

impl Opening {
    /// Start opening at `now`; connecting to the broker began at
    /// `connecting`.
    pub(super) fn new(req: Request, connecting: Instant, now: Instant) -> Opening {
        let mut open = Frame::control(Kind::Open, req.sid, Bytes::new());
        open.window = req.recv_window;
        Opening {
            // A challenge comes first, and the agent drops data before the
            // answer: nothing to gain.
            early: req.password.is_none(),
            req,
            stage: Stage::Connecting,
            deadline: now + OPEN_TIMEOUT,
            connecting,
            request: open.encode(),
            next_send: now,
            sent_any: false,
            repeated: false,
            presence: None,
            seen_online: false,
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
            } => {
                self.presence = latest;
                self.seen_online |= ever_online;
                None
            }
            Event::Frame(f) => self.on_frame(f, now),
            Event::Tick => None,
        };
        let action = match decided {
            Some(result) => Some(Action::Done(result)),
            None => self.step(now),
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

    /// Whether the driver may read ssh's first bytes now and send them
    /// behind the OPEN. Once read (or failed), it tells [`Opening::early_done`].
    pub(super) fn early_wanted(&self) -> bool {
        self.early && matches!(self.stage, Stage::Asking { .. })
    }

    /// The early read happened (or was abandoned): not again.
    pub(super) fn early_done(&mut self) {
        self.early = false;
    }

    fn on_link(&mut self, state: &LinkState, now: Instant) -> Option<Result<Opened, ProxyError>> {
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
                        if now.saturating_duration_since(self.connecting) < EARLY_MIN_CONNECT {
                            self.early = false;
                        }
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

    fn on_frame(&mut self, f: Frame, now: Instant) -> Option<Result<Opened, ProxyError>> {
        let node = &self.req.node;
        match f.kind {
            Kind::Accept => Some(Ok(Opened {
                window: f.window,
                first: None,
                repeated: self.repeated,
            })),
            Kind::Refuse => Some(Err(ProxyError::Refused {
                node: node.clone(),
                reason: protocol::refuse_reason(&f.payload),
            })),
            Kind::Data | Kind::Ack => Some(Ok(Opened {
                window: f.window,
                first: Some(f),
                repeated: self.repeated,
            })),
            Kind::Reset => Some(Err(ProxyError::Reset(node.clone()))),
            Kind::Challenge => {
                let Some(secret) = &self.req.password else {
                    return Some(Err(ProxyError::Refused {
                        node: node.clone(),
                        reason: "authorization failed".into(),
                    }));
                };
                if f.payload.len() == auth::NONCE_LEN {
                    let r = &self.req;
                    let mac = auth::answer(secret, &r.node, &r.cid, r.sid, &f.payload);
                    self.request = Frame::control(Kind::Auth, r.sid, Bytes::from(mac)).encode();
                    self.next_send = now;
                } else {
                    tracing::debug!(len = f.payload.len(), "malformed challenge dropped");
                }
                None
            }
            other => {
                tracing::debug!(kind = ?other, "unexpected frame while opening");
                None
            }
        }
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
            self.repeated = self.sent_any;
            self.sent_any = true;
            self.next_send = now + OPEN_RETRY;
            return Some(Action::Send(self.request.clone()));
        }
        None
    }
}

#[cfg(test)]
mod tests;
