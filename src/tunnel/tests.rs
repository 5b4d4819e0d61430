use super::*;
use crate::handshake::{pair_for_tests, SessionKeys};
use crate::stream::{Config, ASKED_FOR, ASK_PERIOD};
use tokio::io::{duplex, DuplexStream, WriteHalf};
use tokio::task::JoinHandle;

/// Frames from one tunnel straight into the other's channel.
struct ChanSink(mpsc::Sender<Frame>);
impl FrameSink for ChanSink {
    async fn send(&mut self, frame: Bytes) -> io::Result<()> {
        let f = Frame::decode(frame).expect("valid");
        // The receiving tunnel may have finished; like a broker, drop.
        let _ = self.0.send(f).await;
        Ok(())
    }
}

/// A writer that buffers like tokio's `File`: a write is taken at once
/// and its flush takes a while (a blocking thread writing).
struct SlowFlush<W> {
    inner: W,
    flushing: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}
impl<W: AsyncWrite + Unpin> AsyncWrite for SlowFlush<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let n = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.flushing = Some(Box::pin(tokio::time::sleep(Duration::from_millis(1))));
        std::task::Poll::Ready(Ok(n))
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if let Some(busy) = self.flushing.as_mut() {
            std::task::ready!(busy.as_mut().poll(cx));
            self.flushing = None;
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Two tunnels joined frame to frame, app A <-> tunnel A ... tunnel B
/// <-> app B, with tunnel B's local writer wrapped by `wrap_b`.
struct Pair {
    app_a: DuplexStream,
    app_b: DuplexStream,
    ends: [JoinHandle<Result<(), TunnelError>>; 2],
    /// Keeps the link "up" for as long as the pair lives.
    _link: watch::Sender<LinkState>,
}

fn pair<W>(wrap_b: impl FnOnce(WriteHalf<DuplexStream>) -> W) -> Pair
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (a_tx, a_rx) = mpsc::channel(256);
    let (b_tx, b_rx) = mpsc::channel(256);
    let (link_tx, link) = watch::channel(LinkState::Up { generation: 1 });
    let (app_a, local_a) = duplex(64 * 1024);
    let (app_b, local_b) = duplex(64 * 1024);
    let (ra, wa) = tokio::io::split(local_a);
    let (rb, wb) = tokio::io::split(local_b);
    let (keys_a, keys_b) = pair_for_tests(None);
    let a = tokio::spawn(end(keys_a, ra, wa, a_rx, ChanSink(b_tx), link.clone()));
    let b = tokio::spawn(end(keys_b, rb, wrap_b(wb), b_rx, ChanSink(a_tx), link));
    Pair {
        app_a,
        app_b,
        ends: [a, b],
        _link: link_tx,
    }
}

async fn end<R, W>(
    mut keys: SessionKeys,
    reader: R,
    writer: W,
    mut frames: mpsc::Receiver<Frame>,
    mut sink: ChanSink,
    mut link: watch::Receiver<LinkState>,
) -> Result<(), TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let cfg = Config::default();
    let mut s = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let stop = std::future::pending();
    run(
        &mut s,
        &mut keys,
        reader,
        writer,
        &mut frames,
        &mut sink,
        &mut link,
        stop,
        |_| {},
    )
    .await
}

/// Keeps every frame published; pads as told. One sink stands for all the
/// node's sessions, so its `bulk` is the clock the agent's sinks share.
struct Recorder {
    frames: Vec<Frame>,
    pads: bool,
    bulk: BulkClock,
}
impl Recorder {
    fn new(pads: bool) -> Recorder {
        Recorder {
            frames: Vec::new(),
            pads,
            bulk: BulkClock::default(),
        }
    }
}
impl FrameSink for Recorder {
    async fn send(&mut self, frame: Bytes) -> io::Result<()> {
        self.frames.push(Frame::decode(frame).expect("valid"));
        Ok(())
    }
    fn pads(&self) -> bool {
        self.pads
    }
    fn sent_bulk(&self, now: Instant) {
        self.bulk.mark(now);
    }
    fn asks_for_pads(&self, now: Instant) -> bool {
        self.pads && self.bulk.lately(now)
    }
}

#[test]
fn only_small_stream_frames_on_a_far_path_get_a_pad() {
    let ms = Duration::from_millis;
    let far = Some(PAD_MIN_RTT);
    let near = Some(PAD_MIN_RTT - Duration::from_micros(1));
    let small = protocol::PAD_LEN - 1;
    let zero = Duration::ZERO;
    let cases = [
        (Kind::Data, small, far, zero, true),
        (Kind::Ack, small, far, zero, true),
        (Kind::Data, protocol::PAD_LEN, far, zero, false),
        (Kind::Data, small, near, zero, false),
        (Kind::Data, small, None, zero, false),
        (Kind::Reset, small, far, zero, false),
        (Kind::Accept, small, far, zero, false),
        (Kind::Pad, small, far, zero, false),
        // Our own link is the far one: the peer's is near.
        (Kind::Data, small, Some(ms(200)), ms(198), false),
        // Both far.
        (Kind::Data, small, Some(ms(40)), ms(20), true),
        // Our estimate above the path's round trip: nothing to pad for.
        (Kind::Data, small, Some(ms(5)), ms(9), false),
    ];
    for (kind, len, min_rtt, link_rtt, want) in cases {
        let f = Frame::control(kind, 1, Bytes::new());
        for (receiving, asked) in [(true, false), (false, true), (true, true), (false, false)] {
            let path = PadPath {
                min_rtt,
                link_rtt,
                receiving,
                asked,
                sending: false,
                held: false,
                credit: false,
            };
            let got = pad_after(&f, len, || Some(path));
            assert_eq!(got, want && (receiving || asked), "{kind:?} {len} {path:?}");
        }
    }
}

/// A DATA frame smaller than a bulk chunk that the broker would hold
/// behind our previous frame's last segment gets a PAD, unless we are the
/// bulk sender; a pure ACK does not, nor a frame not held, nor one to a
/// near peer.
#[test]
fn a_data_frame_the_broker_would_hold_gets_a_pad() {
    let ms = Duration::from_millis;
    let bulk = MIN_CHUNK + protocol::FRAME_OVERHEAD;
    // The peer's own round trip: 100 ms less our 10 ms.
    let (min_rtt, link_rtt) = (Some(ms(100)), ms(10));
    let cases = [
        (Kind::Data, 100, true, false, min_rtt, true),
        // A reply larger than a segment: its tail is what waits.
        (Kind::Data, 1_700, true, false, min_rtt, true),
        (Kind::Data, bulk - 1, true, false, min_rtt, true),
        (Kind::Data, bulk, true, false, min_rtt, false),
        (Kind::Data, 100, false, false, min_rtt, false),
        // The bulk sender's small frames: never (see pad_after).
        (Kind::Data, 100, true, true, min_rtt, false),
        (Kind::Ack, 100, true, false, min_rtt, false),
        (Kind::Reset, 100, true, false, min_rtt, false),
        (Kind::Pad, 100, true, false, min_rtt, false),
        // A near peer, or no round trip measured yet.
        (Kind::Data, 100, true, false, Some(ms(13)), false),
        (Kind::Data, 100, true, false, None, false),
    ];
    for (kind, len, held, sending, min_rtt, want) in cases {
        let f = Frame::control(kind, 1, Bytes::new());
        let path = PadPath {
            min_rtt,
            link_rtt,
            receiving: false,
            asked: false,
            sending,
            held,
            credit: true,
        };
        assert_eq!(
            pad_after(&f, len, || Some(path)),
            want,
            "{kind:?} {len} {path:?}"
        );
        // Without a credit (output that answers nothing): never.
        let path = PadPath {
            credit: false,
            ..path
        };
        assert!(
            !pad_after(&f, len, || Some(path)),
            "{kind:?} {len} {path:?}"
        );
        // The sink may not pad: never.
        assert!(!pad_after(&f, len, || None), "{kind:?} {len} {path:?}");
    }
}

/// A small DATA frame goes out with a PAD right behind it once the
/// round trip is far, a large one without, and never when the sink
/// may not pad (rate caps).
#[tokio::test(start_paused = true)]
async fn transmit_pads_small_frames_once_the_path_is_far() {
    for may_pad in [true, false] {
        let (keys, _) = pair_for_tests(None);
        let cfg = Config::default();
        let mut s = Stream::new(1, cfg, cfg.recv_window, Instant::now());
        let mut sink = Recorder::new(may_pad);
        // The receiving end of a bulk transfer (a megabyte in)...
        let mut data = Frame::control(Kind::Data, 1, Bytes::from(vec![1u8; 64 << 10]));
        data.window = cfg.recv_window;
        for seq in 0..16 {
            data.seq = seq;
            s.on_frame(data.clone(), Instant::now()).unwrap();
        }
        // ...but no round trip measured yet: no PAD.
        s.send(Bytes::from_static(b"first"), Instant::now());
        transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
        tokio::time::advance(Duration::from_millis(20)).await;
        let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
        ack.ack = 1;
        ack.window = cfg.recv_window;
        s.on_frame(ack, Instant::now()).unwrap();
        assert!(s.min_rtt().unwrap() >= PAD_MIN_RTT);
        s.send(Bytes::from_static(b"small"), Instant::now());
        transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
        // Past the peer's round trip: a frame close behind the previous
        // one gets a PAD whatever its size (the next test).
        tokio::time::advance(Duration::from_millis(20)).await;
        s.send(Bytes::from(vec![7u8; protocol::PAD_LEN]), Instant::now());
        transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
        let kinds: Vec<_> = sink.frames.iter().map(|f| f.kind).collect();
        let want = if may_pad {
            vec![Kind::Data, Kind::Data, Kind::Pad, Kind::Data]
        } else {
            vec![Kind::Data, Kind::Data, Kind::Data]
        };
        assert_eq!(kinds, want, "may pad: {may_pad}");
        assert_eq!(s.stats().pads, u64::from(may_pad));
    }
}

/// In a dialogue over a far path (neither end sends a bulk transfer), a
/// reply (a DATA frame of the peer's came since our last PAD) that the
/// broker would hold behind the previous frame's last segment goes out
/// with a PAD behind it; one sent once that segment is acknowledged, or
/// that answers nothing, without.
#[tokio::test(start_paused = true)]
async fn transmit_pads_a_reply_close_behind_the_previous_frame() {
    let (keys, _) = pair_for_tests(None);
    let cfg = Config::default();
    let mut s = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut sink = Recorder::new(true);
    let send = |s: &mut Stream, data: &'static [u8]| {
        s.send(Bytes::from_static(data), Instant::now());
    };
    let mut peer_seq = 0;
    let mut peer_says = |s: &mut Stream| {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"k"));
        f.seq = peer_seq;
        f.ack = 1;
        f.window = cfg.recv_window;
        peer_seq += 1;
        s.on_frame(f, Instant::now()).unwrap();
    };
    // The first frame measures the path: 100 ms to the peer and back.
    send(&mut s, b"hello");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(Duration::from_millis(100)).await;
    let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
    ack.ack = 1;
    ack.window = cfg.recv_window;
    s.on_frame(ack, Instant::now()).unwrap();
    assert_eq!(s.min_rtt(), Some(Duration::from_millis(100)));
    // A round trip after it: alone.
    send(&mut s, b"a");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // 30 ms after that one, answering the peer: padded.
    tokio::time::advance(Duration::from_millis(30)).await;
    peer_says(&mut s);
    send(&mut s, b"b");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // The PAD's tail left when "a"'s was acknowledged, 70 ms later, and
    // is acknowledged a round trip after that: then alone.
    tokio::time::advance(Duration::from_millis(170)).await;
    send(&mut s, b"c");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // The sender of a bulk chunk: its small frames close behind go alone,
    // until BULK_LATELY has passed.
    s.send(Bytes::from(vec![9u8; MIN_CHUNK]), Instant::now());
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(Duration::from_millis(30)).await;
    peer_says(&mut s);
    send(&mut s, b"d");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(BULK_LATELY).await;
    send(&mut s, b"e");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    tokio::time::advance(Duration::from_millis(30)).await;
    send(&mut s, b"f");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    // Held too, but the peer said nothing since "f"'s PAD: alone.
    tokio::time::advance(Duration::from_millis(30)).await;
    send(&mut s, b"g");
    transmit(&mut s, &mut sink, &keys.tx).await.unwrap();
    let kinds: Vec<_> = sink
        .frames
        .iter()
        .map(|f| (f.kind, f.payload.len()))
        .collect();
    let data = |n| (Kind::Data, n + TAG_LEN);
    let pad = (Kind::Pad, protocol::PAD_LEN + TAG_LEN);
    // The agent's ask for pads: its link sent a bulk chunk, the peer a
    // small frame (the test above).
    let ask = (Kind::Pad, protocol::PAD_ASK.len() + TAG_LEN);
    assert_eq!(
        kinds,
        [
            data(5),
            data(1),
            data(1),
            pad,
            data(1),
            data(MIN_CHUNK),
            ask,
            data(1),
            data(1),
            data(1),
            pad,
            data(1),
        ]
    );
    assert_eq!(s.stats().pads, 2);
}

/// While the node sends a bulk chunk, a session whose peer sends small
/// frames asks it for pads, at most once per period, sealed; the peer
/// opens the ask and pads for a while. Nothing is asked of a peer that
/// sent nothing small, nor once the bulk sending stopped.
#[tokio::test(start_paused = true)]
async fn the_agent_asks_for_pads_while_its_link_sends_bulk() {
    let (client_keys, agent_keys) = pair_for_tests(None);
    let cfg = Config::default();
    let mut agent = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut proxy = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut sink = Recorder::new(true);
    let keystroke = |seq| {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"k"));
        f.seq = seq;
        f.window = cfg.recv_window;
        f
    };
    let asks = |sink: &Recorder| sink.frames.iter().filter(|f| f.kind == Kind::Pad).count();
    // No bulk sending yet: a keystroke is echoed, nothing asked.
    agent.on_frame(keystroke(0), Instant::now()).unwrap();
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 0);
    // Another session of the node sends a bulk chunk: the next transmit
    // asks.
    let mut copy = Stream::new(2, cfg, cfg.recv_window, Instant::now());
    copy.send(Bytes::from(vec![0u8; MIN_CHUNK]), Instant::now());
    transmit(&mut copy, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert!(sink.bulk.lately(Instant::now()));
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 1);
    // Another keystroke within the period: not asked again.
    agent.on_frame(keystroke(1), Instant::now()).unwrap();
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 1);
    // A period later, with the link still busy: asked again.
    tokio::time::advance(ASK_PERIOD).await;
    sink.sent_bulk(Instant::now());
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 2);
    // The bulk sending stopped: a keystroke gets no ask.
    tokio::time::advance(BULK_LATELY + ASK_PERIOD).await;
    agent.on_frame(keystroke(2), Instant::now()).unwrap();
    transmit(&mut agent, &mut sink, &agent_keys.tx)
        .await
        .unwrap();
    assert_eq!(asks(&sink), 2);

    // The peer opens the ask and pads for ASKED_FOR.
    let ask = sink
        .frames
        .iter()
        .rfind(|f| f.kind == Kind::Pad)
        .unwrap()
        .clone();
    assert!(protocol::may_ask_for_pads(&ask));
    let mut rx = client_keys.rx;
    let opened = rx.open(ask).expect("sealed with the session's keys");
    assert_eq!(&opened.payload[..], protocol::PAD_ASK);
    assert!(!proxy.pads_asked(Instant::now()));
    proxy.on_frame(opened, Instant::now()).unwrap();
    assert!(proxy.pads_asked(Instant::now()));
    tokio::time::advance(ASKED_FOR).await;
    assert!(!proxy.pads_asked(Instant::now()));
    // Padding is not an ask, and is not worth opening.
    let pad = Frame::decode(agent_keys.tx.seal(&protocol::pad(1))).unwrap();
    assert!(!protocol::may_ask_for_pads(&pad));
}

/// Bytes arrive while the local writer is busy flushing: each byte is
/// written once (the write future is dropped by `select!` whenever a
/// frame or a timer wins).
#[tokio::test]
async fn buffering_local_writer_gets_each_byte_once() {
    let Pair {
        mut app_a,
        mut app_b,
        ends,
        _link,
    } = pair(|inner| SlowFlush {
        inner,
        flushing: None,
    });
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let send = data.clone();
    tokio::spawn(async move {
        app_a.write_all(&send).await.unwrap();
        app_a.shutdown().await.unwrap();
        let mut rest = Vec::new();
        app_a.read_to_end(&mut rest).await.unwrap();
    });
    let mut got = Vec::new();
    app_b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), data.len(), "bytes written to the local side");
    assert!(got == data, "bytes differ");
    app_b.shutdown().await.unwrap();
    for e in ends {
        e.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn tunnel_pair_carries_bytes_and_half_closes() {
    let Pair {
        mut app_a,
        mut app_b,
        ends,
        _link,
    } = pair(|w| w);
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let send = data.clone();
    let writer = tokio::spawn(async move {
        app_a.write_all(&send).await.unwrap();
        app_a.shutdown().await.unwrap();
        let mut back = Vec::new();
        app_a.read_to_end(&mut back).await.unwrap();
        back
    });
    let mut got = Vec::new();
    app_b.read_to_end(&mut got).await.unwrap();
    assert!(got == data, "bytes differ");
    app_b.write_all(b"reply after half-close").await.unwrap();
    app_b.shutdown().await.unwrap();
    assert_eq!(writer.await.unwrap(), b"reply after half-close");
    for e in ends {
        e.await.unwrap().unwrap();
    }
}

/// A broker connection pads only without rate caps and when its
/// message size limit lets a PAD through.
#[tokio::test]
async fn an_mqtt_sink_pads_only_without_caps_and_with_room_for_a_pad() {
    use crate::config::{BrokerArgs, FileConfig};
    let cases = [
        (BrokerArgs::default(), true),
        (
            BrokerArgs {
                max_message_size: Some(1200),
                ..Default::default()
            },
            false,
        ),
        (
            BrokerArgs {
                max_publish_rate: Some(100),
                ..Default::default()
            },
            false,
        ),
    ];
    for (args, want) in cases {
        let broker = BrokerArgs {
            // Nothing listens there: the client exists, unconnected.
            host: Some("127.0.0.1".into()),
            port: Some(1),
            ..args
        }
        .resolve(&FileConfig::default(), None, &|_| None)
        .expect("valid settings");
        let (tx, _rx) = mpsc::channel(1);
        let options = mqtt::options("pad-test", &broker).expect("options");
        let m = mqtt::Mqtt::spawn(options, Vec::new(), tx);
        let sink = MqttSink {
            client: m.client.clone(),
            topic: "p/n/s/c/up".into(),
            bulk: None,
        };
        assert_eq!(sink.pads(), want, "{broker:?}");
    }
}

/// A process stopped for a minute (its timer fires a minute late) does not
/// count that minute as the peer's silence, and says it woke; a peer that
/// then stays silent still times out on schedule.
#[tokio::test(start_paused = true)]
async fn a_stopped_process_does_not_count_its_stop_as_the_peer_s_silence() {
    let cfg = Config {
        peer_timeout: Duration::from_secs(8),
        ..Config::default()
    };
    let (_frames_tx, mut frames) = mpsc::channel(16);
    let (_link_tx, mut link) = watch::channel(LinkState::Up { generation: 1 });
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = notices.clone();
    let (local, _app) = duplex(1024);
    let (reader, writer) = tokio::io::split(local);
    let tunnel = tokio::spawn(async move {
        let mut s = Stream::new(1, cfg, cfg.recv_window, Instant::now());
        let mut sink = Recorder::new(false);
        let stop = std::future::pending();
        let on_notice = |n| heard.lock().expect("not poisoned").push(n);
        let (mut keys, _) = pair_for_tests(None);
        run(
            &mut s,
            &mut keys,
            reader,
            writer,
            &mut frames,
            &mut sink,
            &mut link,
            stop,
            on_notice,
        )
        .await
    });
    tokio::task::yield_now().await;
    // Stopped: the clock jumps past every timer at once.
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!tunnel.is_finished(), "the stop was not taken for silence");
    assert!(matches!(
        notices.lock().expect("not poisoned")[..],
        [crate::stream::Notice::Woke { stopped }] if stopped > Duration::from_secs(50)
    ));
    // Awake and the peer silent: given up when the silence before the stop
    // (until the keepalive timer that fired late, 8 s / 3) and after it
    // make the timeout, not before.
    let woke = Instant::now();
    let outcome = tunnel.await.expect("the tunnel task ends");
    assert!(matches!(
        outcome,
        Err(TunnelError::Stream(StreamError::PeerTimeout(_)))
    ));
    let waited = Instant::now() - woke;
    let before = Duration::from_secs(8) / 3;
    assert!(
        waited >= Duration::from_secs(8) - before - Duration::from_millis(50)
            && waited <= Duration::from_secs(8) - before + Duration::from_millis(50),
        "{waited:?}"
    );
}

/// A chunk is read behind room for its header, at most `chunk` bytes
/// however many wait, and sealed in the buffer it was read into.
#[tokio::test]
async fn a_chunk_is_read_and_sealed_in_one_buffer() {
    let (tx, _) = pair_for_tests(None);
    let waiting = vec![7u8; 3000];
    for chunk in [1, 1000, 2999, 3000, 5000] {
        let mut reader = &waiting[..];
        let mut buf = chunk_buffer(chunk);
        let at = buf.as_ptr();
        let n = read_chunk(&mut reader, &mut buf, chunk)
            .await
            .expect("reads");
        assert_eq!(n, chunk.min(waiting.len()), "chunk {chunk}");
        let f = Frame::control(Kind::Data, 1, Bytes::new());
        f.write_header(&mut buf);
        let wire = tx.tx.seal_in_place(buf);
        assert_eq!(wire.len(), HEADER_LEN + n + TAG_LEN, "chunk {chunk}");
        assert_eq!(wire.as_ptr(), at, "chunk {chunk}: sealed where it was read");
    }
}

/// Chunks that queued up while the session was busy, each asking for an
/// ack at once, are acked by one ACK, not one each (`BATCH`).
#[tokio::test(start_paused = true)]
async fn a_burst_of_chunks_asking_for_acks_gets_one() {
    let (client_keys, mut agent_keys) = pair_for_tests(None);
    let cfg = Config::default();
    // The sending end: three full chunks, each asking (few in flight).
    let mut sender = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut sent = Recorder::new(false);
    for _ in 0..3 {
        let full = sender.max_chunk();
        sender.send(Bytes::from(vec![5u8; full]), Instant::now());
        transmit(&mut sender, &mut sent, &client_keys.tx)
            .await
            .unwrap();
    }
    let asking = sent
        .frames
        .iter()
        .filter(|f| f.kind == Kind::Data && f.has(protocol::FLAG_ACK_REQ))
        .count();
    let lens: Vec<_> = sent
        .frames
        .iter()
        .map(|f| (f.kind, f.payload.len(), f.flags))
        .collect();
    assert_eq!(asking, 3, "each full chunk asks: {lens:?}");
    // They all wait in the session's queue before it runs.
    let (tx, mut frames) = mpsc::channel(256);
    for f in sent.frames {
        tx.send(f).await.unwrap();
    }
    let (_link_tx, mut link) = watch::channel(LinkState::Up { generation: 1 });
    let (_app, local) = duplex(64 * 1024);
    let (reader, writer) = tokio::io::split(local);
    let mut receiver = Stream::new(1, cfg, cfg.recv_window, Instant::now());
    let mut sink = Recorder::new(false);
    let running = run(
        &mut receiver,
        &mut agent_keys,
        reader,
        writer,
        &mut frames,
        &mut sink,
        &mut link,
        std::future::pending(),
        |_| {},
    );
    // Well within the delayed ack's wait: only the immediate acks go.
    let _ = tokio::time::timeout(Duration::from_millis(20), running).await;
    let acks: Vec<_> = sink.frames.iter().filter(|f| f.kind == Kind::Ack).collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].ack, 3);
}

/// The peer's DATA frames pay for at most `PAD_CREDIT_MAX` PADs ahead, and
/// each PAD spends one: output that answers nothing gets no more.
#[test]
fn pad_credits_come_from_the_peers_data_and_are_capped() {
    let cfg = Config::default();
    let now = Instant::now();
    let mut s = Stream::new(1, cfg, cfg.recv_window, now);
    assert!(!s.pad_credit());
    for seq in 0..20 {
        let mut f = Frame::control(Kind::Data, 1, Bytes::from_static(b"k"));
        f.seq = seq;
        f.window = cfg.recv_window;
        s.on_frame(f, now).unwrap();
    }
    // A pure ACK pays for nothing.
    let mut ack = Frame::control(Kind::Ack, 1, Bytes::new());
    ack.window = cfg.recv_window;
    s.on_frame(ack, now).unwrap();
    let mut spent = 0;
    while s.pad_credit() {
        s.count_pad();
        spent += 1;
    }
    assert_eq!(spent, crate::stream::PAD_CREDIT_MAX);
}
