//! `mqtt-proxy-agent`: announces a node on the broker and, for every session
//! a client opens, connects to the configured target (sshd) and runs a
//! tunnel between that TCP stream and MQTT.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use bytes::Bytes;
use rumqttc::{LastWill, Publish, QoS};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth;
use crate::config::{self, Broker, BrokerArgs, FileConfig, Role, Secret};
use crate::mqtt::{self, LinkState, Mqtt};
use crate::protocol::{self, random_u64, Frame, Kind, Presence, RefuseCode, Topics};
use crate::stream::{self, Stream};
use crate::tunnel::{self, MqttSink, TunnelError};

/// How long the agent waits for its target to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Incoming messages buffered between the MQTT task and the dispatcher.
const INCOMING_CAPACITY: usize = 4096;
/// Frames buffered per session between dispatcher and session task: a full
/// window of chunks plus acknowledgements.
const SESSION_QUEUE: usize = 256;

/// `mqtt-proxy-agent` settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mqtt-proxy-agent",
    version,
    about = "Expose this host's sshd through an MQTT broker, for `mqtt-proxy`."
)]
pub struct AgentArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// This node's id (letters, digits, '.', '_', '-') [default: the host name].
    #[arg(long, env = "MQTT_ID")]
    pub node_id: Option<String>,

    /// Where sessions are forwarded; clients cannot choose another target
    /// [default: 127.0.0.1:22].
    #[arg(long, env = "MQTT_TARGET", value_name = "HOST:PORT")]
    pub target: Option<String>,

    /// Most sessions open at once; further open requests are refused
    /// [default: 64].
    #[arg(long, env = "MQTT_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,

    /// File holding the agent password clients must prove they know
    /// (challenge-response). The password itself is only read from the
    /// MQTT_AGENT_PASSWORD environment variable.
    #[arg(long, env = "MQTT_AGENT_PASSWORD_FILE", value_name = "FILE")]
    pub agent_password_file: Option<std::path::PathBuf>,
}

/// Default limit on concurrent sessions: far more than interactive use
/// needs, few enough that a flood of opens cannot exhaust file descriptors
/// or memory (64 × 2 MiB of windows).
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// Validated agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub broker: Broker,
    pub node_id: String,
    pub target: String,
    pub max_sessions: usize,
    pub agent_password: Option<Secret>,
    pub stream: stream::Config,
}

impl AgentArgs {
    /// Merge flags, environment, the config file and defaults.
    pub fn resolve(&self) -> Result<AgentConfig> {
        let file = FileConfig::load(self.broker.config.as_deref(), Role::Agent)?;
        self.resolve_with(&file, &config::process_env)
    }

    pub fn resolve_with(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig> {
        let node_id = match self.node_id.clone().or_else(|| file.node_id.clone()) {
            Some(n) => n,
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        if !protocol::valid_id(&node_id) {
            bail!(
                "invalid node id {node_id:?}: use 1-{} letters, digits, '.', '_' or '-'",
                protocol::MAX_ID_LEN
            );
        }
        let target = self
            .target
            .clone()
            .or_else(|| file.target.clone())
            .unwrap_or_else(|| "127.0.0.1:22".to_owned());
        if !matches!(config::split_host_port(&target), Ok((_, Some(_)))) {
            bail!("invalid target {target:?}: expected HOST:PORT");
        }
        let max_sessions = self
            .max_sessions
            .or(file.max_sessions)
            .unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            bail!("max sessions must be at least 1");
        }
        let broker = self.broker.resolve(file, None, env)?;
        let agent_password =
            config::agent_password(self.agent_password_file.as_deref(), file, env)?;
        Ok(AgentConfig {
            agent_password,
            stream: stream::Config {
                peer_timeout: broker.resume_timeout,
                ..stream::Config::default()
            },
            broker,
            node_id,
            target,
            max_sessions,
        })
    }
}

/// Shared, read-only context of all sessions.
struct Ctx {
    cfg: AgentConfig,
    topics: Topics,
    client: rumqttc::AsyncClient,
    link: tokio::sync::watch::Receiver<LinkState>,
}

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

/// The session reason logged for an evicted session.
const EVICTED: &str = "evicted: the client never spoke while the session table was full";

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

/// Frames dropped by the dispatcher (malformed, unknown session, queue full).
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn drop_msg(topic: &str, why: &dyn std::fmt::Display) {
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::debug!(topic, %why, dropped_total = n, "dropped message");
}

/// Run the agent until SIGINT/SIGTERM.
pub async fn run(cfg: AgentConfig) -> Result<()> {
    let topics = Topics::new(&cfg.broker.topic_prefix, &cfg.node_id);
    let instance = format!("{:016x}", random_u64());
    let mut announcer = Announcer {
        topic: topics.presence(),
        instance: instance.clone(),
        since: unix_now(),
        announced: None,
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
    // The broker publishes this unchanged, so its `since` is when the agent
    // started: an operator reads "offline, last started at".
    opts.set_last_will(LastWill::new(
        topics.presence(),
        announcer.payload("offline", None),
        QoS::AtLeastOnce,
        true,
    ));
    let (in_tx, mut incoming) = mpsc::channel(INCOMING_CAPACITY);
    let mqtt = Mqtt::spawn(
        opts,
        cfg.broker.addr.clone(),
        vec![topics.all_up(), topics.presence()],
        in_tx,
    );
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        topics,
        client: mqtt.client.clone(),
        link: mqtt.state.clone(),
    });
    let mut state = mqtt.state.clone();
    let (done_tx, mut done) = mpsc::unbounded_channel::<(String, u64)>();
    let mut d = Dispatcher::new(ctx.clone(), done_tx);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut presence_tick = tokio::time::interval(PRESENCE_UPDATE);
    presence_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(node = %cfg.node_id, broker = %cfg.broker.addr, target = %cfg.target, "agent starting");
    loop {
        tokio::select! {
            Some(p) = incoming.recv() => {
                if p.topic == announcer.topic {
                    match on_presence(&ctx, &instance, &p) {
                        Ok(true) => announcer.update(&ctx.client, d.sessions.len(), true),
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
            Some((cid, sid)) = done.recv() => d.session_done(cid, sid),
            _ = presence_tick.tick() => {
                if matches!(*state.borrow(), LinkState::Up { .. }) {
                    announcer.update(&ctx.client, d.sessions.len(), false);
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return Err(mqtt::TaskEnded.into());
                }
                match &*state.borrow_and_update() {
                    LinkState::Up { generation } => {
                        // Retained presence may be gone (broker restarted
                        // without persistence) or our last will: announce.
                        announcer.since = unix_now();
                        announcer.update(&ctx.client, d.sessions.len(), true);
                        tracing::info!(
                            node = %cfg.node_id, broker = %cfg.broker.addr, generation, sessions = d.sessions.len(),
                            "agent is online");
                        crate::notify::notify("READY=1\nSTATUS=online");
                    }
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
    tracing::info!(sessions = d.sessions.len(), "shutting down");
    d.reset_all();
    announcer.since = unix_now();
    // Best effort: the last will would say the same if this is lost.
    let _ = ctx
        .client
        .publish_bytes(
            announcer.topic.clone(),
            QoS::AtLeastOnce,
            true,
            announcer.payload("offline", None),
        )
        .await;
    mqtt.close().await;
    Ok(())
}

/// Shortest interval between two presence updates for a changed session
/// count: a burst of 50 opens costs one retained publish, not 50.
const PRESENCE_UPDATE: Duration = Duration::from_secs(1);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The agent's retained presence message and what the broker last got.
struct Announcer {
    topic: String,
    instance: String,
    /// When the current status began (Unix seconds).
    since: u64,
    /// The session count last published.
    announced: Option<usize>,
}

impl Announcer {
    fn payload(&self, status: &str, sessions: Option<usize>) -> Bytes {
        Presence {
            status: status.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            since: self.since,
            instance: self.instance.clone(),
            sessions: sessions.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
        .encode()
    }

    /// Announce `online` with `sessions`, unless (without `force`) that is
    /// what was announced last.
    fn update(&mut self, client: &rumqttc::AsyncClient, sessions: usize, force: bool) {
        if !force && self.announced == Some(sessions) {
            return;
        }
        let payload = self.payload("online", Some(sessions));
        self.announced = match client.try_publish(&self.topic, QoS::AtLeastOnce, true, payload) {
            Ok(()) => Some(sessions),
            // Request queue full: the next tick tries again.
            Err(_) => None,
        };
    }
}

/// Another agent process announced itself under our node id.
#[derive(Debug, thiserror::Error)]
#[error("another agent took over node '{node}' (instance {instance}); exiting")]
pub struct TakenOver {
    pub node: String,
    pub instance: String,
}

/// Presence messages of our own node. Rule for two agents with one node id:
/// the newest wins. Each agent ignores the retained copy it gets when it
/// subscribes (it may be stale, from a crashed predecessor), so only an
/// agent that was already online sees the newcomer's live announcement, and
/// it steps down. A live `offline` from another instance is a predecessor's
/// late last will: we announce ourselves again so it does not stick.
/// `Ok(true)`: announce ourselves again.
fn on_presence(ctx: &Ctx, instance: &str, p: &Publish) -> Result<bool, TakenOver> {
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
        return Err(TakenOver {
            node: ctx.cfg.node_id.clone(),
            instance: pr.instance,
        });
    }
    tracing::info!(other = %pr.instance, "another instance's offline notice; announcing again");
    Ok(true)
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
struct Dispatcher {
    ctx: Arc<Ctx>,
    sessions: HashMap<String, Entry>,
    pending: HashMap<String, Pending>,
    opens: auth::TokenBucket,
    auth_failures: auth::TokenBucket,
    done_tx: mpsc::UnboundedSender<(String, u64)>,
    rate_limited: u64,
}

impl Dispatcher {
    fn new(ctx: Arc<Ctx>, done_tx: mpsc::UnboundedSender<(String, u64)>) -> Dispatcher {
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

    /// Tell every client its session is gone (we are exiting), so it ends
    /// at once instead of waiting out its resume timeout.
    fn reset_all(&self) {
        for (cid, e) in &self.sessions {
            send(
                &self.ctx,
                cid,
                Frame::control(Kind::Reset, e.sid, Bytes::new()),
            );
        }
    }

    fn session_done(&mut self, cid: String, sid: u64) {
        if self.sessions.get(&cid).is_some_and(|e| e.sid == sid) {
            self.sessions.remove(&cid);
        }
    }

    fn dispatch(&mut self, p: Publish) {
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

/// Publish a control frame without waiting. Dropped if the request queue is
/// full: the client repeats its request.
fn send(ctx: &Ctx, cid: &str, f: Frame) {
    let _ = ctx
        .client
        .try_publish(ctx.topics.down(cid), QoS::AtLeastOnce, false, f.encode());
}

fn accept_frame(sid: u64, window: u32) -> Frame {
    let mut f = Frame::control(Kind::Accept, sid, Bytes::new());
    f.window = window;
    f
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

fn refuse(ctx: &Ctx, cid: &str, sid: u64, code: RefuseCode, reason: &str) {
    send(
        ctx,
        cid,
        Frame::control(Kind::Refuse, sid, protocol::refuse_payload(code, reason)),
    );
}

/// A session task's ends of its links with the dispatcher.
struct SessionLinks {
    /// Frames from the client.
    frames: mpsc::Receiver<Frame>,
    /// Set once ACCEPT went out (the dispatcher then repeats it on a
    /// repeated OPEN).
    accepted: Arc<AtomicBool>,
    /// Fires when the dispatcher evicts the session.
    evicted: oneshot::Receiver<()>,
    /// Told when the session ends, so the dispatcher forgets it.
    done: mpsc::UnboundedSender<(String, u64)>,
}

async fn session(ctx: Arc<Ctx>, cid: String, sid: u64, peer_window: u32, links: SessionLinks) {
    let SessionLinks {
        mut frames,
        accepted,
        mut evicted,
        done,
    } = links;
    let started = std::time::Instant::now();
    let target = &ctx.cfg.target;
    let mut sink = MqttSink {
        client: ctx.client.clone(),
        topic: ctx.topics.down(&cid),
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let reason = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("sshd at {target} refused the connection")
            } else {
                format!("could not connect to sshd at {target}: {e}")
            };
            tracing::warn!(%reason, "session refused");
            refuse(&ctx, &cid, sid, RefuseCode::Target, &reason);
            // The dispatcher only forgets this client id when told; the
            // channel is unbounded so this cannot fail while it runs.
            let _ = done.send((cid, sid));
            return;
        }
        Err(_) => {
            let reason = format!("sshd at {target} did not answer within {CONNECT_TIMEOUT:?}");
            tracing::warn!(%reason, "session refused");
            refuse(&ctx, &cid, sid, RefuseCode::Target, &reason);
            let _ = done.send((cid, sid));
            return;
        }
    };
    // Keystrokes must not wait for Nagle.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY failed");
    }
    let mut stream = Stream::new(
        sid,
        ctx.cfg.stream,
        peer_window,
        tokio::time::Instant::now(),
    );
    let opened = async {
        use crate::tunnel::FrameSink;
        sink.send(accept_frame(sid, ctx.cfg.stream.recv_window).encode())
            .await
    }
    .await;
    accepted.store(true, Ordering::Release);
    tracing::info!("session opened");
    let mut link = ctx.link.clone();
    let result = match opened {
        Ok(()) => {
            let mut tcp = tcp;
            let (r, w) = tcp.split();
            let tunnel = tunnel::run(
                &mut stream,
                r,
                w,
                &mut frames,
                &mut sink,
                &mut link,
                std::future::pending(),
            );
            // Biased: eviction also closes the frame channel, which the
            // tunnel would report as a lost MQTT connection.
            let res = tokio::select! {
                biased;
                Ok(()) = &mut evicted => {
                    send(&ctx, &cid, Frame::control(Kind::Reset, sid, Bytes::new()));
                    Err(EVICTED.to_owned())
                }
                r = tunnel => r.map_err(|e| e.to_string()),
            };
            if res.is_err() {
                // Abort towards sshd too: a reset, not a clean close.
                if let Err(e) = tcp.set_zero_linger() {
                    tracing::debug!(error = %e, "SO_LINGER failed");
                }
            }
            res
        }
        Err(_) => Err(TunnelError::LinkClosed(mqtt::TaskEnded).to_string()),
    };
    let st = stream.stats();
    let reason = match &result {
        Ok(()) => "closed",
        Err(e) => e.as_str(),
    };
    tracing::info!(
        bytes_to_client = st.bytes_sent,
        bytes_from_client = st.bytes_received,
        retransmits = st.retransmits,
        duration_ms = started.elapsed().as_millis() as u64,
        reason,
        "session closed"
    );
    // Unbounded: cannot fail while the dispatcher runs, and if it does not,
    // nobody needs to know.
    let _ = done.send((cid, sid));
}
