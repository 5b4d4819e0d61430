use super::*;
use crate::handshake::{pair_for_tests, SessionKeys};
use crate::stream::{Config, ASKED_FOR, ASK_PERIOD};
use tokio::io::{duplex, DuplexStream, WriteHalf};
use tokio::task::JoinHandle;

mod pads;

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
