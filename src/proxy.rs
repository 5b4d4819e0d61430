//! `mqtt-proxy <node>`: opens a session on a node's agent and carries it on
//! stdin/stdout, for OpenSSH's ProxyCommand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::auth;
use crate::config::{self, Broker, BrokerArgs, FileConfig, Role, Secret};
use crate::mqtt::pacer::{self, Caps};
use crate::mqtt::{self, LinkState, Mqtt, QoS};
use crate::protocol::{self, random_u64, Frame, Kind, Presence, Topics, FLAG_PEER_LOST};
use crate::stream::{self, Stream, StreamError};
use crate::tunnel::{self, FrameSink, MqttSink, TunnelError};

/// Longest a session open may take, connect to the broker included: ssh
/// users expect an answer within 10 s (the README promises it).
const OPEN_TIMEOUT: Duration = Duration::from_secs(9);
/// Repeat the OPEN request this often until answered (it may be dropped).
const OPEN_RETRY: Duration = Duration::from_secs(1);
/// With no presence message this long after subscribing, the node is
/// unknown: brokers deliver retained messages right after SUBACK.
const PRESENCE_WAIT: Duration = Duration::from_secs(2);
/// Incoming messages buffered between the MQTT task and the session.
const INCOMING_CAPACITY: usize = 1024;
/// Most bytes read from stdin before the agent answers (see [`Early`]), and
/// the window the session assumes the agent has until its ACCEPT says: ssh
/// speaks first with its version banner (at most 255 bytes, RFC 4253), then
/// waits for the server's.
const EARLY_WINDOW: u32 = 4096;
/// The early bytes go only when connecting to the broker took at least
/// this long (TCP and MQTT handshakes, about two round trips): they save
/// the path's round trip, and may cost up to 40 ms on a broker with
/// Nagle's algorithm on (it holds sshd's banner behind the ACCEPT until our
/// TCP ack of the ACCEPT, which our kernel delays while we have nothing to
/// send; sending our banner after the ACCEPT is what acks it at once).
/// A/B on a loopback broker, `ssh node true` over direct (30 rounds,
/// medians): the build before the early bytes 0 and 4 ms against early
/// bytes always 31 and 40 ms; 6 and 16 ms against this rule 39 and 28 ms.
/// Since `mqtt::quickack` acks the ACCEPT at once, this rule +5 and -14 ms
/// against early bytes always +12 and -2 ms: kept, as neither is better
/// beyond the spread.
const EARLY_MIN_CONNECT: Duration = Duration::from_millis(20);

/// `mqtt-proxy` settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mqtt-proxy",
    version,
    about = "OpenSSH ProxyCommand over MQTT: ssh -o ProxyCommand='mqtt-proxy %n' user@node"
)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// List the nodes known to the broker instead of connecting; only those
    /// whose id matches PATTERN (a shell glob, e.g. 'prod-*') if given.
    #[arg(long, value_name = "PATTERN", num_args = 0..=1, conflicts_with = "node")]
    pub list: Option<Option<String>>,

    /// With --list: only nodes whose agent is online.
    #[arg(long, requires = "list")]
    pub online: bool,

    /// Remove a retired (offline) node from the listing: clear its retained
    /// presence message on the broker.
    #[arg(long, value_name = "NODE", conflicts_with_all = ["list", "node"])]
    pub forget: Option<String>,

    /// File holding the node's agent password, if its agent requires one.
    /// The password itself is only read from MQTT_AGENT_PASSWORD.
    #[arg(long, env = "MQTT_AGENT_PASSWORD_FILE", value_name = "FILE")]
    pub agent_password_file: Option<std::path::PathBuf>,

    /// With --list: print JSON instead of a table.
    #[arg(long, requires = "list")]
    pub json: bool,

    /// The node to connect to (its agent's node id), optionally on a broker
    /// of its own: NODE@HOST[:PORT].
    #[arg(required_unless_present_any = ["list", "forget"])]
    pub node: Option<String>,
}

/// Validated proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub broker: Broker,
    pub node: String,
    pub agent_password: Option<Secret>,
    pub stream: stream::Config,
}

impl ProxyArgs {
    /// Merge flags, environment, the config file and defaults.
    pub fn resolve(&self) -> Result<ProxyConfig> {
        let file = FileConfig::load(self.broker.config.as_deref(), Role::Proxy)?;
        self.resolve_with(&file, &config::process_env)
    }

    pub fn resolve_with(
        &self,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProxyConfig> {
        let target = self
            .node
            .as_deref()
            .or(self.forget.as_deref())
            .unwrap_or("");
        let (node, broker_override) = match target.split_once('@') {
            Some((node, at)) => {
                let hp = config::split_host_port(at)
                    .with_context(|| format!("invalid broker in {target:?}"))?;
                (node, Some(hp))
            }
            None => (target, None),
        };
        if self.list.is_none() && !protocol::valid_id(node) {
            bail!(
                "invalid node id {node:?}: use 1-{} letters, digits, '.', '_' or '-'",
                protocol::MAX_ID_LEN
            );
        }
        let broker = self.broker.resolve(file, broker_override, env)?;
        let agent_password =
            config::agent_password(self.agent_password_file.as_deref(), file, env)?;
        Ok(ProxyConfig {
            agent_password,
            stream: stream::Config {
                peer_timeout: broker.resume_timeout,
                ack_delay: pacer::stream_ack_delay(Caps::of(&broker), stream::ACK_DELAY),
                rto_allowance: pacer::rto_allowance(Caps::of(&broker), stream::ACK_DELAY),
                ..stream::Config::default()
            },
            broker,
            node: node.to_owned(),
        })
    }
}

/// Why the proxy failed; `Display` is the one line the user reads.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Broker(String),
    #[error(transparent)]
    TaskEnded(#[from] mqtt::TaskEnded),
    #[error("node '{0}' is offline")]
    Offline(String),
    #[error("node '{node}' refused: {reason}")]
    Refused { node: String, reason: String },
    #[error("node '{0}' did not answer")]
    NoAnswer(String),
    #[error("broker refused subscription to {0} (check the ACL for this user)")]
    Denied(String),
    #[error("node '{0}' reset the session")]
    Reset(String),
    #[error("node '{0}' went offline")]
    WentOffline(String),
    #[error("lost contact with node '{node}' for {secs} s")]
    LostContact { node: String, secs: u64 },
    #[error("node '{0}' restarted; the session is lost")]
    Restarted(String),
    #[error("{0}")]
    Local(String),
    /// ssh hung up on us (it does so when it exits): nobody is listening,
    /// so nothing is printed.
    #[error("interrupted")]
    Interrupted,
}

/// Completes when ssh hangs up on the proxy (SIGHUP, sent by ssh when it
/// exits) or the proxy is asked to terminate.
/// The handlers are installed when this is called, not when it is polled.
fn hangup() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = hup.recv() => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Run one session on `stdin`/`stdout`.
pub async fn run<R, W>(cfg: ProxyConfig, stdin: R, stdout: W) -> Result<(), ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stop = hangup();
    let node = cfg.node.clone();
    let sid = random_u64();
    let cid = format!("{}{sid:016x}", cfg.broker.client_id_prefix);
    let topics = Topics::new(&cfg.broker.topic_prefix, &node);
    let mut will = Frame::control(Kind::Reset, sid, Bytes::new());
    will.flags = FLAG_PEER_LOST;
    let mut opts =
        mqtt::options(&cid, &cfg.broker).map_err(|e| ProxyError::Local(format!("{e:#}")))?;
    opts.set_last_will(topics.up(&cid), will.encode(), QoS::AtLeastOnce, false);
    let (in_tx, mut incoming) = mpsc::channel(INCOMING_CAPACITY);
    let down = topics.down(&cid);
    let presence_topic = topics.presence();
    let connecting = Instant::now();
    let mqtt = Mqtt::spawn(opts, vec![down.clone(), presence_topic.clone()], in_tx);

    // Split incoming messages: frames for the session, presence for us.
    let (frames_tx, mut frames) = mpsc::channel::<Frame>(INCOMING_CAPACITY);
    let (presence_tx, mut presence) = watch::channel::<Option<Presence>>(None);
    // The watch keeps only the latest presence: an agent whose retained
    // "online" and last-will "offline" arrive together (it dropped its
    // connection as we opened) must still count as seen online.
    let ever_online = Arc::new(AtomicBool::new(false));
    let seen = ever_online.clone();
    let router = tokio::spawn(async move {
        while let Some(p) = incoming.recv().await {
            if p.topic == presence_topic {
                match Presence::decode(&p.payload) {
                    Some(pr) => {
                        if pr.is_online() {
                            seen.store(true, Ordering::SeqCst);
                        }
                        presence_tx.send_replace(Some(pr));
                    }
                    None => tracing::debug!("malformed presence message dropped"),
                }
            } else if p.topic == down {
                match Frame::decode(p.payload) {
                    // Padding has done its work by arriving.
                    Ok(f) if f.kind == Kind::Pad => {}
                    Ok(f) if f.sid == sid => {
                        if frames_tx.try_send(f).is_err() {
                            // Full or closed: the agent retransmits.
                            tracing::debug!("session queue full, dropped a frame");
                        }
                    }
                    Ok(_) => tracing::debug!("frame for another session dropped"),
                    Err(e) => tracing::debug!(error = %e, "malformed frame dropped"),
                }
            }
        }
    });

    let mut sink = MqttSink {
        client: mqtt.client.clone(),
        topic: topics.up(&cid),
    };
    let mut link = mqtt.state.clone();
    let mut stdin = stdin;
    let result = async {
        let mut stream = Stream::new(sid, cfg.stream, EARLY_WINDOW, Instant::now());
        let early = Early {
            stream: &mut stream,
            stdin: &mut stdin,
            // A challenge comes first, and the agent drops data before the
            // answer: nothing to gain.
            armed: cfg.agent_password.is_none(),
            connecting,
        };
        let (peer_window, first, repeated) = open(
            &cfg,
            sid,
            &cid,
            &mut link,
            &mut presence,
            &ever_online,
            &mut frames,
            &mut sink,
            early,
        )
        .await?;
        let instance = presence.borrow().as_ref().map(|p| p.instance.clone());
        tracing::debug!(sid = %format!("{sid:016x}"), "session open");
        stream.on_accept(peer_window, repeated, Instant::now());
        if let Some(f) = first {
            // Data that overtook (or replaced a lost) ACCEPT.
            let _ = stream.on_frame(f, Instant::now());
        }
        let outcome = {
            let tunnel = tunnel::run(
                &mut stream,
                &mut stdin,
                stdout,
                &mut frames,
                &mut sink,
                &mut link,
                stop,
            );
            tokio::pin!(tunnel);
            let outcome = loop {
                tokio::select! {
                    r = &mut tunnel => break r,
                    changed = presence.changed() => {
                        if changed.is_err() { continue; }
                        let p = presence.borrow_and_update().clone();
                        if let (Some(p), Some(inst)) = (p, &instance) {
                            if p.is_online() && &p.instance != inst {
                                return Err(ProxyError::Restarted(node.clone()));
                            }
                        }
                    }
                }
            };
            outcome
        };
        let st = stream.stats();
        tracing::debug!(
            bytes_sent = st.bytes_sent,
            chunks_sent = st.chunks_sent,
            pure_acks = st.pure_acks,
            pads = st.pads,
            bytes_received = st.bytes_received,
            retransmits = st.retransmits,
            "session closed"
        );
        match outcome {
            Ok(()) => Ok(()),
            Err(TunnelError::Stream(StreamError::Reset)) => Err(ProxyError::Reset(node.clone())),
            Err(TunnelError::Stream(StreamError::PeerTimeout(d))) => {
                let offline = presence.borrow().as_ref().is_some_and(|p| !p.is_online());
                if offline {
                    Err(ProxyError::WentOffline(node.clone()))
                } else {
                    Err(ProxyError::LostContact {
                        node: node.clone(),
                        secs: d.as_secs(),
                    })
                }
            }
            Err(e @ (TunnelError::LocalRead(_) | TunnelError::LocalWrite(_))) => {
                Err(ProxyError::Local(e.to_string()))
            }
            Err(TunnelError::Stopped) => Err(ProxyError::Interrupted),
            Err(TunnelError::LinkClosed(e)) => Err(e.into()),
        }
    }
    .await;
    router.abort();
    mqtt.close().await;
    result
}

/// The session's first bytes, sent right behind the OPEN: ssh's version
/// banner then reaches sshd one broker round trip after the OPEN rather
/// than two (the agent queues what follows an OPEN for the session it
/// starts). One read of at most [`EARLY_WINDOW`] bytes.
struct Early<'a, R> {
    stream: &'a mut Stream,
    stdin: &'a mut R,
    /// The read is still to be tried.
    armed: bool,
    /// When we started connecting to the broker (see [`EARLY_MIN_CONNECT`]).
    connecting: Instant,
}

/// Connect, subscribe, ask the agent to open the session and wait for its
/// answer; meanwhile send what the client says first ([`Early`]). Returns
/// the agent's receive window, a stream frame that arrived before the
/// ACCEPT, if any, and whether the request had to be repeated (so what
/// followed the first one may have been dropped with it).
#[allow(clippy::too_many_arguments)]
async fn open<S: FrameSink, R: AsyncRead + Unpin>(
    cfg: &ProxyConfig,
    sid: u64,
    cid: &str,
    link: &mut watch::Receiver<LinkState>,
    presence: &mut watch::Receiver<Option<Presence>>,
    ever_online: &AtomicBool,
    frames: &mut mpsc::Receiver<Frame>,
    sink: &mut S,
    mut early: Early<'_, R>,
) -> Result<(u32, Option<Frame>, bool), ProxyError> {
    let node = &cfg.node;
    let deadline = Instant::now() + OPEN_TIMEOUT;
    // 1. Broker connection, and our SUBSCRIBE queued (the OPEN goes behind
    // it; the SUBACK may still be on its way).
    let mut subscribed_at = None;
    loop {
        match &*link.borrow_and_update() {
            LinkState::Up { .. } => {
                subscribed_at = Some(Instant::now());
                break;
            }
            LinkState::Subscribing => break,
            LinkState::Down { reason, .. } => return Err(ProxyError::Broker(reason.clone())),
            LinkState::SubscribeDenied { topics } => {
                return Err(ProxyError::Denied(topics.join(", ")))
            }
            LinkState::Connecting => {}
        }
        tokio::select! {
            r = link.changed() => if r.is_err() {
                return Err(mqtt::TaskEnded.into());
            },
            _ = sleep_until(deadline) => return Err(ProxyError::Broker(format!(
                "could not reach broker {}: timed out", cfg.broker.addr))),
        }
    }
    // A near broker: our banner waits for the ACCEPT (see EARLY_MIN_CONNECT).
    if early.connecting.elapsed() < EARLY_MIN_CONNECT {
        early.armed = false;
    }
    // An agent seen online that then goes offline while we open may only be
    // reconnecting (its last will fired): keep asking until the deadline.
    // Offline from the start means the node is down: say so at once.
    let mut seen_online = false;
    // 2. OPEN, repeated until answered.
    let mut open = Frame::control(Kind::Open, sid, Bytes::new());
    open.window = cfg.stream.recv_window;
    // OPEN until challenged, then AUTH: whatever is answered next.
    let mut request = open.encode();
    let mut next_open = Instant::now();
    let mut rbuf = BytesMut::new();
    let (mut sent_any, mut repeated) = (false, false);
    loop {
        match presence
            .borrow_and_update()
            .as_ref()
            .map(Presence::is_online)
        {
            Some(true) => seen_online = true,
            Some(false) if !seen_online && !ever_online.load(Ordering::SeqCst) => {
                return Err(ProxyError::Offline(node.clone()))
            }
            Some(false) => {}
            None if subscribed_at.is_some_and(|t| Instant::now() >= t + PRESENCE_WAIT) => {
                return Err(ProxyError::Offline(node.clone()))
            }
            None => {}
        }
        if Instant::now() >= next_open {
            sink.send(request.clone())
                .await
                .map_err(|e| ProxyError::Broker(e.to_string()))?;
            repeated = sent_any;
            sent_any = true;
            next_open = Instant::now() + OPEN_RETRY;
        }
        let mut wake = next_open.min(deadline);
        if let Some(t) = subscribed_at.filter(|_| presence.borrow().is_none()) {
            wake = wake.min(t + PRESENCE_WAIT);
        }
        if early.armed && rbuf.is_empty() {
            let stream = &mut *early.stream;
            stream.set_recv_limit(sink.recv_limit());
            stream.set_max_message(sink.max_message(stream.peer_recv_packet()));
            let room = stream.max_chunk().min(EARLY_WINDOW as usize);
            rbuf = tunnel::chunk_buffer(room);
        }
        tokio::select! {
            r = early.stdin.read_buf(&mut rbuf), if early.armed => {
                early.armed = false;
                // Nothing read, or an error: the tunnel reads again and
                // sees the same.
                if matches!(r, Ok(n) if n > 0) {
                    let stream = &mut *early.stream;
                    stream.send_framed(rbuf.split(), Instant::now());
                    tunnel::transmit(stream, sink)
                        .await
                        .map_err(|e| ProxyError::Broker(e.to_string()))?;
                }
            }
            f = frames.recv() => match f {
                Some(f) => match f.kind {
                    Kind::Accept => return Ok((f.window, None, repeated)),
                    Kind::Refuse => return Err(ProxyError::Refused {
                        node: node.clone(),
                        reason: protocol::refuse_reason(&f.payload),
                    }),
                    Kind::Data | Kind::Ack => return Ok((f.window, Some(f), repeated)),
                    Kind::Reset => return Err(ProxyError::Reset(node.clone())),
                    Kind::Challenge => {
                        let Some(secret) = &cfg.agent_password else {
                            return Err(ProxyError::Refused {
                                node: node.clone(),
                                reason: "authorization failed".into(),
                            });
                        };
                        if f.payload.len() == auth::NONCE_LEN {
                            let mac = auth::answer(secret, node, cid, sid, &f.payload);
                            request = Frame::control(Kind::Auth, sid, Bytes::from(mac)).encode();
                            next_open = Instant::now();
                        }
                    }
                    other => tracing::debug!(kind = ?other, "unexpected frame while opening"),
                },
                None => return Err(mqtt::TaskEnded.into()),
            },
            r = presence.changed() => if r.is_err() {
                return Err(mqtt::TaskEnded.into());
            },
            r = link.changed() => {
                if r.is_err() {
                    return Err(mqtt::TaskEnded.into());
                }
                match &*link.borrow() {
                    LinkState::Down { reason, .. } => {
                        return Err(ProxyError::Broker(reason.clone()))
                    }
                    LinkState::SubscribeDenied { topics } => {
                        return Err(ProxyError::Denied(topics.join(", ")))
                    }
                    LinkState::Up { .. } => {
                        subscribed_at.get_or_insert_with(Instant::now);
                    }
                    LinkState::Connecting | LinkState::Subscribing => {}
                }
            }
            _ = sleep_until(wake) => {}
        }
        if Instant::now() >= deadline {
            let offline = presence.borrow().as_ref().is_some_and(|p| !p.is_online());
            return Err(if offline {
                ProxyError::WentOffline(node.clone())
            } else {
                ProxyError::NoAnswer(node.clone())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn list_and_forget_flags() {
        let parse = |args: &[&str]| {
            ProxyArgs::try_parse_from([&["mqtt-proxy"], args].concat()).map(|a| {
                let node = a
                    .resolve_with(&FileConfig::default(), &|_| None)
                    .map(|c| c.node);
                (a.list, a.online, a.forget, node.map_err(|e| e.to_string()))
            })
        };
        let none = || Ok(String::new());
        assert_eq!(
            parse(&["--list"]).ok(),
            Some((Some(None), false, None, none()))
        );
        assert_eq!(
            parse(&["--list", "prod-*", "--online"]).ok(),
            Some((Some(Some("prod-*".into())), true, None, none()))
        );
        assert_eq!(
            parse(&["--forget", "web-1"]).ok(),
            Some((None, false, Some("web-1".into()), Ok("web-1".into())))
        );
        assert_eq!(
            parse(&["--forget", "a/b"]).ok().map(|r| r.3),
            Some(Err(
                "invalid node id \"a/b\": use 1-64 letters, digits, '.', '_' or '-'".into()
            ))
        );
        for bad in [
            &["--online"][..],
            &["--forget", "a", "--list"],
            &["--forget", "a", "b"],
            &["--list", "a", "b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    /// Frames the proxy sends, for the test to inspect.
    struct Sent(mpsc::UnboundedSender<Frame>);
    impl FrameSink for Sent {
        async fn send(&mut self, frame: Bytes) -> std::io::Result<()> {
            // The test may have stopped listening; like a broker, drop.
            let _ = self.0.send(Frame::decode(frame).expect("valid frame"));
            Ok(())
        }
    }

    /// `open` for session 42 of client id "cid"; `ever_online`: the node
    /// was seen online before what `presence` shows.
    #[allow(clippy::too_many_arguments)]
    async fn open_42<R: AsyncRead + Unpin>(
        cfg: &ProxyConfig,
        link: &mut watch::Receiver<LinkState>,
        presence: &mut watch::Receiver<Option<Presence>>,
        ever_online: bool,
        frames: &mut mpsc::Receiver<Frame>,
        sink: &mut Sent,
        early: Early<'_, R>,
    ) -> Result<(u32, Option<Frame>, bool), ProxyError> {
        let ever_online = AtomicBool::new(ever_online);
        open(
            cfg,
            42,
            "cid",
            link,
            presence,
            &ever_online,
            frames,
            sink,
            early,
        )
        .await
    }

    fn presence(online: bool) -> Option<Presence> {
        Some(Presence {
            status: if online { "online" } else { "offline" }.into(),
            version: "0".into(),
            since: 1,
            instance: "a".into(),
            sessions: None,
        })
    }

    /// What `open` returns when the node's presence goes through `changes`
    /// (one per second after the first OPEN) and, if `accept_at` is set,
    /// the agent answers ACCEPT that many seconds after the first OPEN;
    /// `ever_online`: the node was seen online before `first`.
    async fn open_with(
        first: Option<Presence>,
        changes: Vec<Option<Presence>>,
        accept_at: Option<u64>,
        ever_online: bool,
    ) -> (Result<(u32, Option<Frame>, bool), ProxyError>, usize) {
        let cfg = ProxyArgs::parse_from(["mqtt-proxy", "n1"])
            .resolve_with(&FileConfig::default(), &|_| None)
            .expect("valid settings");
        let (_link_tx, mut link) = watch::channel(LinkState::Up { generation: 1 });
        let (presence_tx, mut presence_rx) = watch::channel(first);
        let (frames_tx, mut frames) = mpsc::channel(16);
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<Frame>();
        let agent = async move {
            let first_open = sent.recv().await.expect("an OPEN");
            assert_eq!(first_open.kind, Kind::Open);
            for (i, p) in changes.into_iter().enumerate() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                presence_tx.send_replace(p);
                if accept_at == Some(i as u64 + 1) {
                    let mut accept = Frame::control(Kind::Accept, first_open.sid, Bytes::new());
                    accept.window = 77;
                    frames_tx.send(accept).await.expect("proxy listens");
                }
            }
            std::future::pending::<()>().await;
        };
        let mut sink = Sent(sent_tx);
        let sid = 42;
        let mut stream = Stream::new(sid, cfg.stream, EARLY_WINDOW, Instant::now());
        let mut stdin = tokio::io::empty();
        let early = Early {
            stream: &mut stream,
            stdin: &mut stdin,
            armed: true,
            connecting: Instant::now() - EARLY_MIN_CONNECT,
        };
        let opening = open_42(
            &cfg,
            &mut link,
            &mut presence_rx,
            ever_online,
            &mut frames,
            &mut sink,
            early,
        );
        let started = Instant::now();
        let result = tokio::select! {
            r = opening => r,
            _ = agent => unreachable!("the agent task never ends"),
        };
        (result, started.elapsed().as_secs() as usize)
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_reconnects_while_we_open_is_waited_for() {
        let (r, _) = open_with(
            presence(true),
            vec![presence(false), presence(true), presence(true)],
            Some(3),
            false,
        )
        .await;
        assert_eq!(r.expect("accepted").0, 77);
    }

    #[tokio::test(start_paused = true)]
    async fn offline_from_the_start_fails_at_once_and_going_offline_at_the_deadline() {
        let (r, secs) = open_with(presence(false), vec![], None, false).await;
        assert_eq!(r.unwrap_err().to_string(), "node 'n1' is offline");
        assert_eq!(secs, 0);
        let (r, secs) = open_with(presence(true), vec![presence(false)], None, false).await;
        assert_eq!(r.unwrap_err().to_string(), "node 'n1' went offline");
        assert_eq!(secs, OPEN_TIMEOUT.as_secs() as usize);
        let (r, secs) = open_with(None, vec![], None, false).await;
        assert_eq!(r.unwrap_err().to_string(), "node 'n1' is offline");
        assert_eq!(secs, PRESENCE_WAIT.as_secs() as usize);
    }

    /// The frames the proxy sends before the agent answers, when ssh has
    /// written `said` and the link is still waiting for its SUBACK; then
    /// the session's window and timers once the agent accepts, `accept_after`
    /// later.
    async fn early_frames(
        password: bool,
        said: &'static [u8],
        accept_after: Duration,
    ) -> (Vec<Frame>, Stream) {
        early_frames_after(password, said, accept_after, EARLY_MIN_CONNECT).await
    }

    /// [`early_frames`] when connecting to the broker took `connect_took`.
    async fn early_frames_after(
        password: bool,
        said: &'static [u8],
        accept_after: Duration,
        connect_took: Duration,
    ) -> (Vec<Frame>, Stream) {
        let mut cfg = ProxyArgs::parse_from(["mqtt-proxy", "n1"])
            .resolve_with(&FileConfig::default(), &|_| None)
            .expect("valid settings");
        if password {
            cfg.agent_password = Some(Secret::new("s3cret".into()));
        }
        let (_link_tx, mut link) = watch::channel(LinkState::Subscribing);
        let (_presence_tx, mut presence_rx) = watch::channel(presence(true));
        let (frames_tx, mut frames) = mpsc::channel(16);
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<Frame>();
        let mut sink = Sent(sent_tx);
        let mut stream = Stream::new(42, cfg.stream, EARLY_WINDOW, Instant::now());
        let mut stdin = said;
        let early = Early {
            stream: &mut stream,
            stdin: &mut stdin,
            armed: cfg.agent_password.is_none(),
            connecting: Instant::now() - connect_took,
        };
        let agent = async move {
            tokio::time::sleep(accept_after).await;
            let mut accept = Frame::control(Kind::Accept, 42, Bytes::new());
            accept.window = 1 << 20;
            frames_tx.send(accept).await.expect("proxy listens");
            std::future::pending::<()>().await;
        };
        let opening = open_42(
            &cfg,
            &mut link,
            &mut presence_rx,
            false,
            &mut frames,
            &mut sink,
            early,
        );
        let (window, _, repeated) = tokio::select! {
            r = opening => r.expect("accepted"),
            _ = agent => unreachable!("the agent task never ends"),
        };
        stream.on_accept(window, repeated, Instant::now());
        let mut out = Vec::new();
        while let Ok(f) = sent.try_recv() {
            out.push(f);
        }
        (out, stream)
    }

    #[tokio::test(start_paused = true)]
    async fn ssh_s_banner_follows_the_open_before_the_agent_answers() {
        let banner = b"SSH-2.0-OpenSSH_9.2\r\n";
        let (sent, _) = early_frames(false, banner, Duration::from_millis(50)).await;
        let kinds: Vec<Kind> = sent.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Open, Kind::Data]);
        assert_eq!((sent[1].seq, &sent[1].payload[..]), (0, &banner[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_near_broker_the_banner_waits_for_the_answer() {
        let (sent, _) = early_frames_after(
            false,
            b"SSH-2.0-x\r\n",
            Duration::from_millis(50),
            Duration::from_millis(2),
        )
        .await;
        let kinds: Vec<Kind> = sent.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Open]);
    }

    #[tokio::test(start_paused = true)]
    async fn with_an_agent_password_nothing_but_the_open_goes_before_the_answer() {
        let (sent, _) = early_frames(true, b"SSH-2.0-x\r\n", Duration::from_millis(50)).await;
        let kinds: Vec<Kind> = sent.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Open]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_early_bytes_time_out_from_the_accept_or_go_again_if_the_open_was_repeated() {
        // Answered just before the OPEN would be repeated: the banner's
        // retransmission timeout counts from the ACCEPT, so 200 ms later it
        // is not presumed lost (counted from its sending, it would be), and
        // the window is the agent's.
        let (_, mut stream) =
            early_frames(false, b"SSH-2.0-x\r\n", Duration::from_millis(900)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        assert!(stream.poll_deadline().expect("a timer runs") > now);
        stream.on_timeout(now);
        assert!(
            stream.poll_transmit(now).is_none(),
            "nothing retransmitted yet"
        );
        assert!(stream.error().is_none());
        assert!(
            stream.can_send(),
            "the agent's 1 MiB window, not the early one"
        );
        // Answered after the OPEN was repeated: the first OPEN, and the
        // banner behind it, may have been dropped; the banner goes again.
        let (_, mut stream) =
            early_frames(false, b"SSH-2.0-x\r\n", Duration::from_millis(1500)).await;
        let again = stream.poll_transmit(Instant::now()).expect("sent again");
        assert_eq!((again.kind, again.seq), (Kind::Data, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_seen_online_before_its_last_will_is_waited_for() {
        // The retained "online" and the agent's last will arrived together
        // (it dropped its connection as we opened): the latest presence
        // says offline, but the node was seen online, so we wait for it.
        let offline = || presence(false);
        let (r, _) = open_with(offline(), vec![offline(), offline()], Some(2), true).await;
        assert!(r.is_ok(), "waited for the agent: {:?}", r.err());
    }
}
