//! The opening's driver with in-memory channels on a paused clock: what it
//! sends, and what it returns.

use std::time::Duration;

use super::*;
use crate::config::{FileConfig, Secret};
use crate::handshake::{self, Ephemeral, Role, SHARE_LEN};
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
    _link: Arc<watch::Sender<LinkState>>,
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
        _link: Arc::new(link_tx),
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

/// The ACCEPT an agent without a password answers `open` with.
fn accept_for(open: &Frame, window: u32) -> Frame {
    let ours = Ephemeral::new();
    let share = *ours.share();
    let t = handshake::transcript("n1", "cid", open.sid, &open.payload, &[], &share);
    let keys = handshake::agree(ours, &open.payload[..SHARE_LEN], &t, None, Role::Agent)
        .expect("valid share");
    let payload = [&share[..], &keys.confirmation()].concat();
    let mut accept = Frame::control(Kind::Accept, open.sid, Bytes::from(payload));
    accept.window = window;
    accept
}

fn presence(online: bool) -> Option<Presence> {
    Some(Presence {
        status: if online { "online" } else { "offline" }.into(),
        version: "0".into(),
        since: 1,
        instance: "a".into(),
        sessions: None,
        protocol: Some(crate::protocol::VERSION),
        proof: None,
    })
}

/// What `open` returns, as (window, early bytes), when the
/// node's presence goes through `changes` (one per second after the first
/// OPEN) and, if `accept_at` is set, the agent answers ACCEPT that many
/// seconds after the first OPEN; `ever_online`: the node was seen online
/// before `first`. Also the whole seconds it took.
async fn open_with(
    first: Option<Presence>,
    changes: Vec<Option<Presence>>,
    accept_at: Option<u64>,
    ever_online: bool,
) -> (Result<(u32, Option<Bytes>), ProxyError>, usize) {
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
                let accept = accept_for(&first_open, 77);
                fake.frames.send(accept).await.expect("proxy listens");
            }
        }
        std::future::pending::<()>().await;
    };
    let mut stdin = tokio::io::empty();
    let opening = open(
        opening(&cfg, EARLY_MIN_CONNECT),
        &mut inbound,
        &mut sink,
        &mut stdin,
        Default::default(),
    );
    let started = Instant::now();
    let result = tokio::select! {
        r = opening => r.map(|o| (o.window, o.early)),
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
/// written `said` and the broker connection is still being made; then
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
    let (mut inbound, mut sink, fake) = channels(LinkState::Connecting, presence(true), false);
    // The broker answers a moment after we start, as ssh has written.
    let link = fake._link.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        link.send_replace(LinkState::Subscribing);
    });
    let mut stream = Stream::new(42, cfg.stream, EARLY_WINDOW, Instant::now());
    let mut stdin = said;
    let frames = fake.frames.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut sent = fake.sent;
    // The agent: keeps what the proxy sends, and answers the first OPEN
    // `accept_after` later (without a password; with one it never does).
    let agent = async move {
        while let Some(f) = sent.recv().await {
            if f.kind == Kind::Open && !password && record.lock().expect("not poisoned").is_empty()
            {
                let accept = accept_for(&f, 1 << 20);
                let frames = frames.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(accept_after).await;
                    frames.send(accept).await.expect("proxy listens");
                });
            }
            record.lock().expect("not poisoned").push(f);
        }
        std::future::pending::<()>().await;
    };
    let opening = open(
        opening(&cfg, connect_took),
        &mut inbound,
        &mut sink,
        &mut stdin,
        Default::default(),
    );
    let opened = tokio::select! {
        r = opening => r.expect("accepted"),
        _ = agent => unreachable!("the agent task never ends"),
        _ = tokio::time::sleep(OPEN_TIMEOUT / 2), if password => {
            let out = seen.lock().expect("not poisoned").clone();
            return (out, stream);
        }
    };
    let _keys = accepted(&mut stream, &sink, opened, Instant::now());
    let out = seen.lock().expect("not poisoned").clone();
    (out, stream)
}

#[tokio::test(start_paused = true)]
async fn ssh_s_banner_rides_in_the_open_before_the_agent_answers() {
    let banner = b"SSH-2.0-OpenSSH_9.2\r\n";
    let (sent, _) = early_frames(false, banner, Duration::from_millis(50)).await;
    let kinds: Vec<Kind> = sent.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [Kind::Open]);
    assert_eq!(&sent[0].payload[SHARE_LEN..], &banner[..]);
}

#[tokio::test(start_paused = true)]
async fn on_a_near_broker_the_banner_waits_for_the_answer() {
    let (sent, mut stream) = early_frames_after(
        false,
        b"SSH-2.0-x\r\n",
        Duration::from_millis(50),
        Duration::from_millis(2),
    )
    .await;
    let kinds: Vec<Kind> = sent.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [Kind::Open]);
    assert_eq!(sent[0].payload.len(), SHARE_LEN);
    // It goes as the first DATA once accepted.
    let f = stream.poll_transmit(Instant::now()).expect("the banner");
    assert_eq!(
        (f.kind, f.seq, &f.payload[..]),
        (Kind::Data, 0, &b"SSH-2.0-x\r\n"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn with_an_agent_password_nothing_but_the_open_goes_before_the_answer() {
    let (sent, _) = early_frames(true, b"SSH-2.0-x\r\n", Duration::from_millis(50)).await;
    let kinds: Vec<Kind> = sent.iter().map(|f| f.kind).collect();
    assert!(kinds.iter().all(|k| *k == Kind::Open), "{kinds:?}");
    assert!(sent.iter().all(|f| f.payload.len() == SHARE_LEN));
}

#[tokio::test(start_paused = true)]
async fn the_early_bytes_in_the_open_time_out_from_the_accept() {
    // Answered just before the OPEN would be repeated: the banner's
    // retransmission timeout counts from the ACCEPT, so 200 ms later it
    // is not presumed lost (counted from its sending, it would be), and
    // the window is the agent's.
    for after in [900, 1500] {
        let (_, mut stream) =
            early_frames(false, b"SSH-2.0-x\r\n", Duration::from_millis(after)).await;
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
    }
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
