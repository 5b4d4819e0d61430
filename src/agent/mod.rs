//! `mqtt-proxy-agent`: announces a node on the broker and, for every session
//! a client opens, connects to the configured target (sshd) and runs a
//! tunnel between that TCP stream and MQTT.
//!
//! - `presence`: the retained announcement, and another agent taking over.
//! - `admission`: which open requests become sessions (rate limits, agent
//!   password challenges, eviction of silent sessions). No I/O.
//! - `dispatch`: routes incoming frames to sessions and carries out
//!   admission's decisions.
//! - `session`: one session's task.
//! - `settings`: flags, environment and config file, validated.
//! - `ctx`: the context they share, and the control frames they send.

mod admission;
mod ctx;
mod dispatch;
mod presence;
mod session;
mod settings;

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;

use crate::mqtt::{self, LinkState, Mqtt, QoS};
use crate::notify::NotifyState;
use crate::protocol::{random_u64, Topics};

use ctx::Ctx;
use dispatch::Dispatcher;
pub use presence::TakenOver;
use presence::{on_presence, unix_now, Announcer, PRESENCE_UPDATE};
pub use settings::{AgentArgs, AgentConfig, DEFAULT_MAX_SESSIONS};

/// Incoming messages buffered between the MQTT task and the dispatcher.
const INCOMING_CAPACITY: usize = 4096;

/// MQTT keepalive of the agent's broker connection; the proxy keeps the
/// shorter `mqtt::KEEP_ALIVE` (15 s), being interactive. An idle agent's
/// only traffic is one PINGREQ and one PINGRESP per keepalive (rumqttc pings
/// on schedule whatever else is sent), so 120 s costs the broker 1 message a
/// minute per agent, where 15 s cost 8 (scripts/fleet-bench, docs/benchmarks.md).
/// The price: a connection that dies silently (a NAT that forgets it, a
/// broker host that loses power) is noticed by the agent within 2 × this
/// and by the broker, which then publishes the agent's offline will, within
/// 1.5 ×; sessions open across such a failure outlast `--resume-timeout`
/// (60 s) and close. A broker that restarts or crashes closes the connection
/// and is noticed at once, and sessions survive that as before. There is no
/// cheaper probe: rumqttc 0.25's `NetworkOptions` has no TCP keepalive
/// setting. 120 s still refreshes NAT and load-balancer idle timers of
/// 4 minutes and more (Azure's 4 min, AWS NAT gateways' 350 s).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(120);

/// Run the agent until SIGINT/SIGTERM.
pub async fn run(cfg: AgentConfig) -> Result<()> {
    let topics = Topics::new(&cfg.broker.topic_prefix, &cfg.node_id);
    let instance = format!("{:016x}", random_u64());
    let mut announcer = Announcer {
        topic: topics.presence(),
        instance: instance.clone(),
        since: unix_now(),
        announced: None,
        published_at: None,
        node: cfg.node_id.clone(),
        password: cfg.agent_password.clone(),
    };
    // A client id of its own per process: two agents with one node id must
    // not kick each other off the broker in a loop (see `on_presence`).
    let client_id = format!(
        "{}agent-{}-{}",
        cfg.broker.client_id_prefix,
        cfg.node_id,
        &instance[..8]
    );
    let mut opts = mqtt::options(&client_id, &cfg.broker)?;
    opts.set_keep_alive(KEEP_ALIVE);
    // The broker publishes this unchanged, so its `since` is when the agent
    // started: an operator reads "offline, last started at".
    opts.set_last_will(
        topics.presence(),
        announcer.payload("offline", None),
        QoS::AtLeastOnce,
        true,
    );
    // Read before we announce the node: a file that cannot be read or
    // parsed stops the agent here, with the line at fault.
    let access = match &cfg.access {
        Some(files) => {
            let lists = crate::access::watch::spawn(files.clone(), crate::access::watch::POLL)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            {
                let a = lists.borrow();
                tracing::info!(
                    authorized_keys = %files.authorized_keys.display(),
                    authorized = a.authorized.entries.len(),
                    revoked = a.revoked.keys.len(),
                    "sessions need an authorized ssh key"
                );
            }
            Some(lists)
        }
        None => None,
    };
    let (in_tx, mut incoming) = mpsc::channel(INCOMING_CAPACITY);
    let mqtt = Mqtt::spawn(opts, vec![topics.all_up(), topics.presence()], in_tx);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        topics,
        client: mqtt.client.clone(),
        link: mqtt.state.clone(),
        access,
        bulk: Arc::default(),
        drains: Arc::default(),
        uploads: Arc::default(),
    });
    let mut state = mqtt.state.clone();
    // The last state seen was Up: a Down that follows replaces a connection.
    let mut link_up = false;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let mut d = Dispatcher::new(ctx.clone(), notes_tx);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut presence_tick = tokio::time::interval(PRESENCE_UPDATE);
    presence_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let brokers: Vec<String> = cfg.broker.endpoints().iter().map(|e| e.url()).collect();
    tracing::info!(node = %cfg.node_id, brokers = %brokers.join(","), target = %cfg.target, "agent starting");
    loop {
        tokio::select! {
            Some(p) = incoming.recv() => {
                if p.topic == announcer.topic {
                    match on_presence(&ctx, &instance, &p) {
                        Ok(true) => announcer.update(&ctx.client, d.len(), true),
                        Ok(false) => {}
                        Err(e) => {
                            d.reset_all();
                            tracing::error!("{e}");
                            mqtt.close().await;
                            return Err(e.into());
                        }
                    }
                } else {
                    d.dispatch(p);
                }
            }
            Some(note) = notes.recv() => d.note(note),
            _ = presence_tick.tick() => {
                if matches!(*state.borrow(), LinkState::Up { .. }) {
                    let renew = announcer.renew_due(tokio::time::Instant::now());
                    announcer.update(&ctx.client, d.len(), renew);
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return Err(mqtt::TaskEnded.into());
                }
                let was_up = std::mem::replace(
                    &mut link_up,
                    matches!(*state.borrow(), LinkState::Up { .. }),
                );
                match &*state.borrow_and_update() {
                    LinkState::Up { generation } => {
                        // Retained presence may be gone (broker restarted
                        // without persistence) or our last will: announce.
                        // With a list of brokers this may be another one
                        // than before: a fresh `since` is what tells a
                        // client which broker's "online" is current
                        // (docs/failover.md).
                        announcer.since = unix_now();
                        announcer.update(&ctx.client, d.len(), true);
                        tracing::info!(
                            node = %cfg.node_id, broker = %ctx.client.broker_url(), generation, sessions = d.len(),
                            "agent is online");
                        crate::notify::notify(&[NotifyState::Ready, NotifyState::Status("online")]);
                    }
                    // A connection that was up is lost: on the networks
                    // NATed hosts live on this is routine (a NAT forgot it,
                    // the link timeout saw it dead), and sessions resume.
                    LinkState::Down { reason, attempt: 1, retry_in } if was_up => tracing::info!(
                        %reason, retry_in = ?retry_in, "broker connection replaced"),
                    LinkState::Down { reason, attempt, retry_in } => tracing::warn!(
                        attempt, retry_in = ?retry_in, "{reason}; retrying"),
                    LinkState::SubscribeDenied { topics } => tracing::error!(
                        ?topics, "broker refused our subscription; check the ACL for this agent's user"),
                    _ => {}
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!(sessions = d.len(), "shutting down");
    d.reset_all();
    announcer.since = unix_now();
    // Best effort: the last will would say the same if this is lost.
    let _ = ctx
        .client
        .publish(
            announcer.topic.clone(),
            QoS::AtLeastOnce,
            true,
            announcer.payload("offline", None),
        )
        .await;
    mqtt.close().await;
    Ok(())
}
