//! The opening's driver with in-memory channels on a paused clock: what it
//! sends, and what it returns.

use std::time::Duration;

use super::*;
use crate::config::{FileConfig, Secret};
use crate::proxy::args::ProxyArgs;
use crate::proxy::opening::{EARLY_MIN_CONNECT, OPEN_TIMEOUT, PRESENCE_WAIT};
use clap::Parser;

/// Frames the proxy sends, for the test to inspect.
struct Sent(mpsc::UnboundedSender<Frame>);
impl FrameSink for Sent {
    async fn send(&mut self, frame: Bytes) -> std::io::Result<()> {
        // The test may have stopped listening; like a broker, drop.
        let _ = self.0.send(Frame::decode(frame).expect("valid frame"));
        Ok(())
    }
}

/// The broker side as the test drives it.
struct Fake {
    _link: watch::Sender<LinkState>,
    presence: watch::Sender<Option<Presence>>,
    frames: mpsc::Sender<Frame>,
    sent: mpsc::UnboundedReceiver<Frame>,
}

/// Channels for a session whose link is `link` and whose node's presence
/// is `first`; `ever_online`: the node was seen online before `first`.
fn channels(link: LinkState, first: Option<Presence>, ever_online: bool) -> (Inbound, Sent, Fake) {
    let (link_tx, link) = watch::channel(link);
    let (presence_tx, presence) = watch::channel(first);
    let (frames_tx, frames) = mpsc::channel(16);
    let (sent_tx, sent) = mpsc::unbounded_channel::<Frame>();
    let inbound = Inbound {
        link,
        presence,
        ever_online: Arc::new(AtomicBool::new(ever_online)),
        frames,
    };
    let fake = Fake {
        _link: link_tx,
        presence: presence_tx,
        frames: frames_tx,
        sent,
    };
    (inbound, Sent(sent_tx), fake)
}

/// Settings for node "n1", with the agent password `password` if given.
fn config(password: Option<&str>) -> ProxyConfig {
    let mut cfg = ProxyArgs::parse_from(["mqtt-proxy", "n1"])
        .resolve_with(&FileConfig::default(), &|_| None)
        .expect("valid settings");
    cfg.agent_password = password.map(|p| Secret::new(p.into()));
    cfg
}

/// The opening of session 42 of client id "cid" under `cfg`, connecting
/// to the broker having taken `connect_took`.
fn opening(cfg: &ProxyConfig, connect_took: Duration) -> Opening {
    let req = Request {
        node: cfg.node.clone(),
        broker: cfg.broker.addr.to_string(),
        cid: "cid".into(),
        sid: 42,
        recv_window: cfg.stream.recv_window,
        password: cfg.agent_password.clone(),
    };
    Opening::new(req, Instant::now() - connect_took, Instant::now())
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

/// What `open` returns, as (window, first frame, repeated), when the
/// node's presence goes through `changes` (one per second after the first
/// OPEN) and, if `accept_at` is set, the agent answers ACCEPT that many
/// seconds after the first OPEN; `ever_online`: the node was seen online
/// before `first`. Also the whole seconds it took.
async fn open_with(
    first: Option<Presence>,
    changes: Vec<Option<Presence>>,
    accept_at: Option<u64>,
    ever_online: bool,
) -> (Result<(u32, Option<Frame>, bool), ProxyError>, usize) {
    let cfg = config(None);
    let (mut inbound, mut sink, mut fake) =
        channels(LinkState::Up { generation: 1 }, first, ever_online);
    let agent = async move {
        let first_open = fake.sent.recv().await.expect("an OPEN");
        assert_eq!(first_open.kind, Kind::Open);
        for (i, p) in changes.into_iter().enumerate() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            fake.presence.send_replace(p);
            if accept_at == Some(i as u64 + 1) {
                let mut accept = Frame::control(Kind::Accept, first_open.sid, Bytes::new());
                accept.window = 77;
                fake.frames.send(accept).await.expect("proxy listens");
            }
        }
        std::future::pending::<()>().await;
    };
    let mut stream = Stream::new(42, cfg.stream, EARLY_WINDOW, Instant::now());
    let mut stdin = tokio::io::empty();
    let early = Early {
        stream: &mut stream,
        stdin: &mut stdin,
    };
    let opening = open(
        opening(&cfg, EARLY_MIN_CONNECT),
        &mut inbound,
        &mut sink,
        early,
    );
    let started = Instant::now();
    let result = tokio::select! {
        r = opening => r.map(|o| (o.window, o.first, o.repeated)),
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
async fn offline_from_the_start_fails_at_once_going_offline_at_the_deadline_and_unknown_after_the_presence_wait(
) {
    let (r, secs) = open_with(presence(false), vec![], None, false).await;
    assert_eq!(r.unwrap_err().to_string(), "node 'n1' is offline");
    assert_eq!(secs, 0);
    let (r, secs) = open_with(presence(true), vec![presence(false)], None, false).await;
    assert_eq!(r.unwrap_err().to_string(), "node 'n1' went offline");
    assert_eq!(secs, OPEN_TIMEOUT.as_secs() as usize);
    let (r, secs) = open_with(None, vec![], None, false).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "no node 'n1' on broker localhost:1883 (never announced; mqtt-proxy --list shows the nodes)"
    );
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
    let cfg = config(password.then_some("s3cret"));
    let (mut inbound, mut sink, mut fake) = channels(LinkState::Subscribing, presence(true), false);
    let mut stream = Stream::new(42, cfg.stream, EARLY_WINDOW, Instant::now());
    let mut stdin = said;
    let early = Early {
        stream: &mut stream,
        stdin: &mut stdin,
    };
    let frames = fake.frames.clone();
    let agent = async move {
        tokio::time::sleep(accept_after).await;
        let mut accept = Frame::control(Kind::Accept, 42, Bytes::new());
        accept.window = 1 << 20;
        frames.send(accept).await.expect("proxy listens");
        std::future::pending::<()>().await;
    };
    let opening = open(opening(&cfg, connect_took), &mut inbound, &mut sink, early);
    let opened = tokio::select! {
        r = opening => r.expect("accepted"),
        _ = agent => unreachable!("the agent task never ends"),
    };
    stream.on_accept(opened.window, opened.repeated, Instant::now());
    let mut out = Vec::new();
    while let Ok(f) = fake.sent.try_recv() {
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
    let (_, mut stream) = early_frames(false, b"SSH-2.0-x\r\n", Duration::from_millis(900)).await;
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
    let (_, mut stream) = early_frames(false, b"SSH-2.0-x\r\n", Duration::from_millis(1500)).await;
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
