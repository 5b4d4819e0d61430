//! The session run: connect to the broker, drive the opening handshake
//! (`proxy::opening` decides, this file does the I/O), then carry the
//! session on stdin/stdout until either end closes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::args::ProxyConfig;
use super::error::ProxyError;
use std::time::Duration;

use super::keys::Keys;
use super::opening::{Action, Event, Opened, Opening, Request, EARLY_MAX};
use super::PREFIX;
use crate::handshake::SessionKeys;
use crate::mqtt::{self, Client, LinkState, Message, Mqtt, QoS, Remembered};
use crate::protocol::{
    may_ask_for_pads, may_share_drains, random_u64, Frame, Kind, Presence, Topics, FLAG_PEER_LOST,
};
use crate::stream::{Notice, Stream, StreamError, STALL_NOTICE};
use crate::tunnel::{self, FrameSink, MqttSink, TunnelError};

/// After a presence message names a new instance of the node's agent (it
/// restarted, and our session is gone), how long we wait to hear our agent
/// before we believe it: presence is not authenticated, and a live agent
/// speaks at least every [`crate::stream::KEEPALIVE`].
const RESTART_GRACE: Duration = Duration::from_secs(12);

/// Incoming messages buffered between the MQTT task and the session.
const INCOMING_CAPACITY: usize = 1024;
/// Most bytes read from stdin before the agent answers (see
/// [`super::opening`]'s `Early`), and the window the session assumes the
/// agent has until its ACCEPT says: ssh speaks first with its version
/// banner (at most 255 bytes, RFC 4253), then waits for the server's.
const EARLY_WINDOW: u32 = 4096;

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

/// What the session hears from the broker side: the link's state, the
/// node's presence and this session's frames.
struct Inbound {
    link: watch::Receiver<LinkState>,
    /// The newest presence message only (see `ever_online`).
    presence: watch::Receiver<Option<Presence>>,
    /// Some presence message said online. The watch keeps only the latest:
    /// an agent whose retained "online" and last-will "offline" arrive
    /// together (it dropped its connection as we opened) must still count
    /// as seen online.
    ever_online: Arc<AtomicBool>,
    frames: mpsc::Receiver<Frame>,
}

impl Inbound {
    /// The presence as the opening takes it.
    fn presence_event(&mut self) -> Event {
        let latest = self.presence.borrow_and_update();
        Event::Presence {
            latest: latest.as_ref().map(Presence::is_online),
            ever_online: self.ever_online.load(Ordering::SeqCst),
            protocol: latest
                .as_ref()
                .map_or(crate::protocol::VERSION, Presence::protocol),
        }
    }
}

/// Run one session on `stdin`/`stdout`.
///
/// `reader_gone` completes when whoever reads `stdout` (ssh) is gone
/// without hanging up on us (`stdio::ReaderGone`): that ends the session
/// as a hang-up does.
pub async fn run<R, W>(
    cfg: ProxyConfig,
    stdin: R,
    stdout: W,
    reader_gone: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Watched from the start: ssh hangs up, or the user gives up, while we
    // still open the session too.
    let hung_up = hangup();
    let stop = async move {
        tokio::select! {
            () = hung_up => {}
            () = reader_gone => tracing::debug!("nobody reads our stdout any more; closing"),
        }
    };
    tokio::pin!(stop);
    let mut cfg = cfg;
    if !cfg.broker.failover.is_empty() {
        // A list of brokers: the one where the node is, then the others.
        let first = tokio::select! {
            r = super::lookup::pick(&cfg.broker, &cfg.node) => r?,
            () = &mut stop => return Err(ProxyError::Interrupted),
        };
        cfg.broker = cfg.broker.starting_at(first);
    }
    // Before the opening's clock starts: reading the key file may ask
    // for its passphrase.
    let keys = {
        let (identity, agent) = (cfg.identity.clone(), cfg.ssh_agent.clone());
        let load = tokio::task::spawn_blocking(move || Keys::load(identity.as_deref(), agent));
        tokio::select! {
            r = load => Arc::new(r.map_err(|e| ProxyError::Local(e.to_string()))?),
            () = &mut stop => return Err(ProxyError::Interrupted),
        }
    };
    let sid = random_u64();
    let cid = format!("{}{sid:016x}", cfg.broker.client_id_prefix);
    let topics = Topics::new(&cfg.broker.topic_prefix, &cfg.node);
    let mut will = Frame::control(Kind::Reset, sid, Bytes::new());
    will.flags = FLAG_PEER_LOST;
    let mut opts =
        mqtt::options(&cid, &cfg.broker).map_err(|e| ProxyError::Local(format!("{e:#}")))?;
    opts.set_last_will(topics.up(&cid), will.encode(), QoS::AtLeastOnce, false);
    // Each call is a new process: only the first against a 3.1.1-only
    // broker pays the MQTT 5 probe.
    opts.remember_version(Remembered::in_cache_dir());
    let (in_tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
    let down = topics.down(&cid);
    let presence_topic = topics.presence();
    let connecting = Instant::now();
    let mqtt = Mqtt::spawn(opts, vec![down.clone(), presence_topic.clone()], in_tx);
    let (router, frames, presence, ever_online) = route(incoming, presence_topic, down, sid);
    let mut inbound = Inbound {
        link: mqtt.state.clone(),
        presence,
        ever_online,
        frames,
    };
    let mut sink = MqttSink {
        client: mqtt.client.clone(),
        topic: topics.up(&cid),
        bulk: None,
    };
    let result = async {
        let mut stdin = stdin;
        let mut stream = Stream::new(sid, cfg.stream, EARLY_WINDOW, Instant::now());
        stream.report_drains();
        let request = Request {
            node: cfg.node.clone(),
            broker: cfg.broker.addr.to_string(),
            cid: cid.clone(),
            sid,
            recv_window: cfg.stream.recv_window,
            password: cfg.agent_password.clone(),
        };
        let opening = Opening::new(request, connecting, Instant::now());
        let opened = tokio::select! {
            r = open(opening, &mut inbound, &mut sink, &mut stdin, keys) => r?,
            () = &mut stop => return Err(ProxyError::Interrupted),
        };
        tracing::debug!(sid = %format!("{sid:016x}"), "session open");
        let mut keys = accepted(&mut stream, &sink, opened, Instant::now());
        carry(
            &cfg.node,
            on_notice(&cfg.node, cfg.stream.peer_timeout, &mqtt.client),
            &mut stream,
            &mut keys,
            stdin,
            stdout,
            &mut inbound,
            &mut sink,
            stop,
        )
        .await
    }
    .await;
    router.abort();
    mqtt.close().await;
    result
}

/// Split what arrives from the broker: this session's frames to a channel,
/// the node's presence to a watch. Returns the task and the receiving ends.
fn route(
    mut incoming: mpsc::Receiver<Message>,
    presence_topic: String,
    down: String,
    sid: u64,
) -> (
    JoinHandle<()>,
    mpsc::Receiver<Frame>,
    watch::Receiver<Option<Presence>>,
    Arc<AtomicBool>,
) {
    let (frames_tx, frames) = mpsc::channel::<Frame>(INCOMING_CAPACITY);
    let (presence_tx, presence) = watch::channel::<Option<Presence>>(None);
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
                    // Padding has done its work by arriving; an ask for
                    // pads or the agent's drains go to the session, which
                    // opens them.
                    Ok(f)
                        if f.kind == Kind::Pad
                            && !may_ask_for_pads(&f)
                            && !may_share_drains(&f) => {}
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
    (router, frames, presence, ever_online)
}

/// Drive `opening`: feed it the link, the presence, the agent's frames and
/// the time, send what it asks, and meanwhile read what ssh says first
/// (its version banner), which rides in the OPEN when the broker is far
/// (`Opening::early_wanted`).
async fn open<S: FrameSink, R: AsyncRead + Unpin>(
    mut opening: Opening,
    inbound: &mut Inbound,
    sink: &mut S,
    stdin: &mut R,
    keys: Arc<Keys>,
) -> Result<Box<Opened>, ProxyError> {
    let broker_error = |e: std::io::Error| ProxyError::Broker(e.to_string());
    let now = Instant::now();
    // Presence first: a node offline from the start gets no OPEN.
    let first = opening.handle(inbound.presence_event(), now);
    debug_assert!(first.is_none(), "presence alone decides nothing yet");
    let link = inbound.link.borrow_and_update().clone();
    let mut action = opening.handle(Event::Link(link), now);
    let mut rbuf = BytesMut::with_capacity(EARLY_MAX);
    // Our ssh keys signing the transcript (ssh-agent blocks).
    let mut signing: Option<JoinHandle<super::keys::Signed>> = None;
    loop {
        match action {
            Some(Action::Done(result)) => return result,
            Some(Action::Send(frame)) => sink.send(frame).await.map_err(broker_error)?,
            Some(Action::Sign(transcript)) => {
                let keys = keys.clone();
                let max_message = sink.max_message(None);
                signing = Some(tokio::task::spawn_blocking(move || {
                    keys.sign(&transcript, max_message)
                }));
            }
            None => {}
        }
        let reading = opening.early_wanted();
        let wake = opening
            .deadline()
            .expect("an opening not over has a deadline");
        let event = tokio::select! {
            // Biased: bytes ssh wrote before the broker answered must be
            // taken before the link event builds the OPEN.
            biased;
            r = stdin.read_buf(&mut rbuf), if reading => {
                opening.early_read(match r {
                    Ok(n) if n > 0 => Some(rbuf.split().freeze()),
                    // Nothing read, or an error: the tunnel reads again and
                    // sees the same.
                    _ => None,
                });
                Event::Tick
            }
            f = inbound.frames.recv() => match f {
                Some(f) => Event::Frame(f),
                None => return Err(mqtt::TaskEnded.into()),
            },
            r = async { signing.as_mut().expect("checked").await }, if signing.is_some() => {
                signing = None;
                match r {
                    Ok(s) => Event::Signed { proofs: s.proofs, tried: s.tried },
                    Err(e) => Event::Signed { proofs: Err(e.to_string()), tried: String::new() },
                }
            }
            r = inbound.presence.changed() => match r {
                Ok(()) => inbound.presence_event(),
                Err(_) => return Err(mqtt::TaskEnded.into()),
            },
            r = inbound.link.changed() => match r {
                Ok(()) => Event::Link(inbound.link.borrow_and_update().clone()),
                Err(_) => return Err(mqtt::TaskEnded.into()),
            },
            _ = sleep_until(wake) => Event::Tick,
        };
        action = opening.handle(event, Instant::now());
    }
}

/// Set up the stream for the session the agent accepted: its window, and
/// ssh's first bytes read while opening (sent if they did not ride in the
/// OPEN). The session's keys, for the tunnel.
fn accepted<S: FrameSink>(
    stream: &mut Stream,
    sink: &S,
    opened: Box<Opened>,
    now: Instant,
) -> SessionKeys {
    let Opened {
        window,
        keys,
        early,
        in_open,
    } = *opened;
    match early {
        // It rode in the OPEN: sent, and acknowledged by the agent's
        // first frames (its timer counts from the ACCEPT).
        Some(b) if in_open => {
            stream.sent_in_open(b, now);
            stream.on_accept(window, false, now);
        }
        Some(b) => {
            stream.on_accept(window, false, now);
            stream.set_max_message(sink.max_message(stream.peer_recv_packet()));
            stream.send(b, now);
        }
        None => stream.on_accept(window, false, now),
    }
    keys
}

/// What the session does with a [`Notice`]: tell the user when `node`
/// stalls (`resume`: how long we wait for it) and when it is back, and
/// after a sleep replace the broker connection of `client` at once (the
/// network may have changed meanwhile; its link timeout would find out
/// only seconds later).
fn on_notice<'a>(node: &'a str, resume: Duration, client: &'a Client) -> impl FnMut(Notice) + 'a {
    move |notice| match notice {
        // The rule's threshold, not the measured silence: a busy machine
        // may notice late, and "for 5 s" stays true.
        Notice::Stalled { .. } => eprintln!(
            "{PREFIX}: no answer from {node} for {} s, still trying (gives up after {})",
            STALL_NOTICE.as_secs(),
            human(resume)
        ),
        Notice::Back => eprintln!("{PREFIX}: {node} is back"),
        Notice::Woke { stopped } => {
            let replaced = client.replace_after_stop(stopped);
            tracing::debug!(
                ?stopped,
                replaced,
                "woke up; replacing the broker connection"
            );
        }
    }
}

/// `d` in whole minutes when it is some, else in seconds.
fn human(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 120 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Carry the open session between stdin/stdout and the broker until it
/// ends; a restart of the node's agent ends it too (its sessions are gone).
/// `on_notice` hears when the node stalls, is back, or we woke up.
#[allow(clippy::too_many_arguments)]
async fn carry<R, W, S>(
    node: &str,
    on_notice: impl FnMut(Notice),
    stream: &mut Stream,
    keys: &mut SessionKeys,
    stdin: R,
    stdout: W,
    inbound: &mut Inbound,
    sink: &mut S,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: FrameSink,
{
    let instance = inbound
        .presence
        .borrow()
        .as_ref()
        .map(|p| p.instance.clone());
    let heard = keys.rx.opened();
    let outcome = {
        let tunnel = tunnel::run(
            stream,
            keys,
            stdin,
            stdout,
            &mut inbound.frames,
            sink,
            &mut inbound.link,
            stop,
            on_notice,
        );
        tokio::pin!(tunnel);
        // Once the router is gone, presence cannot change: stop watching.
        let mut watching = true;
        // A presence naming another instance: when, and how many of the
        // agent's frames we had opened by then.
        let mut restart: Option<(Instant, u64)> = None;
        loop {
            let check = restart.map(|(t, _)| t + RESTART_GRACE);
            tokio::select! {
                r = &mut tunnel => break r,
                changed = inbound.presence.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                        continue;
                    }
                    let p = inbound.presence.borrow_and_update().clone();
                    if let (Some(p), Some(inst)) = (p, &instance) {
                        if p.is_online() && &p.instance != inst && restart.is_none() {
                            restart = Some((Instant::now(), heard.load(Ordering::Relaxed)));
                        }
                    }
                }
                _ = sleep_until(check.unwrap_or_else(Instant::now)), if check.is_some() => {
                    let (_, before) = restart.take().expect("checked");
                    if heard.load(Ordering::Relaxed) == before {
                        return Err(ProxyError::Restarted(node.to_owned()));
                    }
                    // Anyone on the broker can publish a presence message;
                    // our agent still speaks, so it did not restart.
                    tracing::warn!("a presence message names another instance of the node's agent, but ours still answers: ignored");
                }
            }
        }
    };
    let st = stream.stats();
    tracing::info!(
        bytes_sent = st.bytes_sent,
        chunks_sent = st.chunks_sent,
        pure_acks = st.pure_acks,
        pads = st.pads,
        bytes_received = st.bytes_received,
        retransmits = st.retransmits,
        forged = keys.rx.forged(),
        replayed = keys.rx.replayed(),
        "session closed"
    );
    let node = node.to_owned();
    match outcome {
        Ok(()) => Ok(()),
        Err(TunnelError::Stream(StreamError::Reset)) => Err(ProxyError::Reset(node)),
        Err(TunnelError::Stream(StreamError::Closed(reason))) => {
            Err(ProxyError::Closed { node, reason })
        }
        Err(TunnelError::Stream(StreamError::PeerTimeout(d))) => {
            let presence = inbound.presence.borrow();
            if presence.as_ref().is_some_and(|p| !p.is_online()) {
                Err(ProxyError::WentOffline(node))
            } else {
                Err(ProxyError::LostContact {
                    node,
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

#[cfg(test)]
mod tests;
