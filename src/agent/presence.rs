//! The agent's presence: its retained announcement, and what another agent
//! with the same node id announcing itself means.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

use super::ctx::{drop_msg, Ctx};
use crate::config::Secret;
use crate::handshake;
use crate::mqtt::{Client, Message, QoS};
use crate::protocol::Presence;

/// Fewest seconds between two warnings about presence messages that name
/// another instance of our node without proof: a flood of them costs one
/// log line a minute.
const UNPROVEN_WARN_EVERY: u64 = 60;

/// Shortest interval between two presence updates for a changed session
/// count: a burst of 50 opens costs one retained publish, not 50.
pub(super) const PRESENCE_UPDATE: Duration = Duration::from_secs(1);
/// How long a broker keeps the agent's "online" once the agent stops
/// renewing it (MQTT 5's Message Expiry Interval; over MQTT 3.1.1 it never
/// expires). A broker the agent left (a list of brokers, issue 25) normally
/// replaces it with the agent's last will within 1.5 × the keepalive; one
/// that crashed with persistence on comes back with the "online" and no
/// will to publish, and drops it within this. Renewed every
/// [`PRESENCE_RENEW`]: one retained publish per agent every 15 min, where
/// the keepalive already costs one ping a minute.
pub(super) const PRESENCE_EXPIRY: Duration = Duration::from_secs(30 * 60);
/// How often the agent renews its "online": half the expiry, so one lost
/// renewal does not let it expire.
pub(super) const PRESENCE_RENEW: Duration = Duration::from_secs(15 * 60);

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The agent's retained presence message and what the broker last got.
pub(super) struct Announcer {
    pub(super) topic: String,
    pub(super) instance: String,
    /// When the current status began (Unix seconds).
    pub(super) since: u64,
    /// The session count last published.
    pub(super) announced: Option<usize>,
    /// When "online" was last published.
    pub(super) published_at: Option<Instant>,
    /// The node id and the agent password, for the presence proof.
    pub(super) node: String,
    pub(super) password: Option<Secret>,
}

impl Announcer {
    pub(super) fn payload(&self, status: &str, sessions: Option<usize>) -> Bytes {
        Presence {
            status: status.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            since: self.since,
            instance: self.instance.clone(),
            sessions: sessions.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            protocol: Some(crate::protocol::VERSION),
            proof: self.password.as_ref().map(|p| {
                handshake::presence_proof(p, &self.node, status, self.since, &self.instance)
            }),
        }
        .encode()
    }

    /// Announce `online` with `sessions`, unless (without `force`) that is
    /// what was announced last; it expires after [`PRESENCE_EXPIRY`].
    pub(super) fn update(&mut self, client: &Client, sessions: usize, force: bool) {
        if !force && self.announced == Some(sessions) {
            return;
        }
        let payload = self.payload("online", Some(sessions));
        let expiry = Some(PRESENCE_EXPIRY);
        let sent =
            client.try_publish_expiring(&self.topic, QoS::AtLeastOnce, true, payload, expiry);
        self.announced = match sent {
            Ok(()) => {
                self.published_at = Some(Instant::now());
                Some(sessions)
            }
            // Request queue full: the next tick tries again.
            Err(_) => None,
        };
    }

    /// Whether "online" is due to be renewed at `now`, before it expires.
    pub(super) fn renew_due(&self, now: Instant) -> bool {
        self.published_at
            .is_none_or(|t| now.saturating_duration_since(t) >= PRESENCE_RENEW)
    }
}

/// Another agent process announced itself under our node id.
#[derive(Debug, thiserror::Error)]
#[error("another agent took over node '{node}' (instance {instance}); exiting")]
pub struct TakenOver {
    pub node: String,
    pub instance: String,
}

/// Presence messages of our own node. Rule for two agents with one node id
/// and an agent password: the newest wins. Each agent ignores the retained
/// copy it gets when it subscribes (it may be stale, from a crashed
/// predecessor), so only an agent that was already online sees the
/// newcomer's live announcement, and it steps down, if the announcement
/// carries a proof made with the password: anyone on the broker can
/// publish a presence message, and one forged "online" must not stop an
/// agent for good. Without a password (or proof) the agent warns and goes
/// on: two real agents of one node then both serve, and each session works
/// with the one whose ACCEPT the client took (the other's frames do not
/// open with the session's keys). A live `offline` from another instance
/// is a predecessor's late last will: we announce ourselves again so it
/// does not stick. `Ok(true)`: announce ourselves again.
pub(super) fn on_presence(ctx: &Ctx, instance: &str, p: &Message) -> Result<bool, TakenOver> {
    if p.retain {
        return Ok(false);
    }
    let Some(pr) = Presence::decode(&p.payload) else {
        drop_msg(&p.topic, &"malformed presence");
        return Ok(false);
    };
    if pr.instance == instance {
        return Ok(false);
    }
    if pr.is_online() {
        let node = &ctx.cfg.node_id;
        let proven = ctx.cfg.agent_password.as_ref().is_some_and(|pw| {
            pr.proof.as_deref().is_some_and(|proof| {
                handshake::verify_presence_proof(
                    pw,
                    node,
                    &pr.status,
                    pr.since,
                    &pr.instance,
                    proof,
                )
            })
        });
        if proven {
            return Err(TakenOver {
                node: node.clone(),
                instance: pr.instance,
            });
        }
        static LAST_WARNED: AtomicU64 = AtomicU64::new(0);
        let now = unix_now();
        let last = LAST_WARNED.load(Ordering::Relaxed);
        if now >= last + UNPROVEN_WARN_EVERY
            && LAST_WARNED
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                other = %pr.instance,
                "a presence message says another agent serves this node, without proof of the agent password: a second agent with this node id, or someone on the broker; going on"
            );
        }
        return Ok(false);
    }
    tracing::info!(other = %pr.instance, "another instance's offline notice; announcing again");
    Ok(true)
}

#[cfg(test)]
mod tests;
