//! Drives a [`Stream`] over real I/O: a local byte stream (sshd's TCP socket
//! on the agent, stdin/stdout in the proxy) on one side, frames to and from
//! the broker on the other. Generic over the local I/O and the frame sink so
//! tests run it on in-memory pipes.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::handshake::SessionKeys;
use crate::mqtt::{self, Client, LinkState, TaskEnded};
use crate::protocol::{self, Frame, Kind, HEADER_LEN, MAX_FRAME, TAG_LEN};
use crate::seal::{OpenError, Sealer};
use crate::stream::congestion::MIN_CHUNK;
use crate::stream::{Discovery, Notice, Stream, StreamError, PAUSE_SLACK};

mod bulk;
pub use bulk::{BulkClock, BULK_LATELY};

/// Where a session's outgoing frames go.
pub trait FrameSink: Send {
    fn send(&mut self, frame: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// The largest message (encoded frame) the connection lets through
    /// now: [`MAX_FRAME`], or less under the broker's Maximum Packet Size
    /// (MQTT 5), `--max-message-size`, or what the connection discovered,
    /// and no more than the peer receives well in packets of at most
    /// `peer_packet` bytes.
    fn max_message(&self, _peer_packet: Option<usize>) -> usize {
        MAX_FRAME
    }

    /// The largest MQTT packet we receive well, as
    /// [`protocol::recv_limit_units`] (0: no limit).
    fn recv_limit(&self) -> u8 {
        0
    }

    /// The stream discovered and confirmed a message size (for the log).
    fn discovered(&self, _d: Discovery) {}

    /// Whether the connection has rate caps: every publish counts, so
    /// chunks keep the size the caps chose (`mqtt::pacer::max_packet`)
    /// instead of following the delivery rate
    /// ([`Stream::set_chunks_follow_rate`]).
    fn paced(&self) -> bool {
        false
    }

    /// Whether PAD frames may follow small frames ([`pad_after`]): not
    /// under rate caps, where each would cost a publish of the budget, nor
    /// when the connection's messages must be smaller than a PAD.
    fn pads(&self) -> bool {
        false
    }

    /// Our own round trip to the broker, as far as known.
    fn link_rtt(&self) -> Duration {
        Duration::ZERO
    }

    /// A bulk chunk (a DATA message of at least 4 KiB) went out at `now`.
    fn sent_bulk(&self, _now: Instant) {}

    /// Whether this sink asks its session's peer to pad its small frames
    /// now (`protocol::PAD_ASK`): the agent's sinks, while any session of
    /// the node sent a bulk chunk within [`BULK_LATELY`].
    fn asks_for_pads(&self, _now: Instant) -> bool {
        false
    }

    /// Whether a drain's frames may get PADs ([`pad_after`]): the agent's
    /// sinks, whose sessions drain together.
    fn pads_drains(&self) -> bool {
        false
    }
}

/// The peer's round trip to the broker from which our small frames get a
/// PAD behind them. Below it what the broker's Nagle holds back is released
/// within that round trip, for less than the padding costs.
pub const PAD_MIN_RTT: Duration = Duration::from_millis(4);

/// What [`pad_after`] decides on.
#[derive(Debug, Clone, Copy)]
pub struct PadPath {
    /// The smallest round trip to the peer measured.
    pub min_rtt: Option<Duration>,
    /// Our own round trip to the broker.
    pub link_rtt: Duration,
    /// We are the receiving end of a bulk transfer ([`Stream::receiving`]).
    pub receiving: bool,
    /// The peer asked for pads lately ([`Stream::pads_asked`]).
    pub asked: bool,
    /// We sent a bulk chunk within [`BULK_LATELY`] ([`Stream::since_bulk`]):
    /// the sending end of a bulk transfer.
    pub sending: bool,
    /// The broker would hold this frame behind our previous one's last
    /// segment ([`Stream::broker_holds`]).
    pub held: bool,
    /// The peer's DATA frames paid for a PAD behind a held frame
    /// ([`Stream::pad_credit`]).
    pub credit: bool,
}

/// Whether frame `f`, `wire_len` bytes encoded, gets a PAD published right
/// behind it ([`protocol::PAD_LEN`]), when the peer's link to the broker is
/// far (the smallest round trip to the peer less our own to the broker is
/// at least [`PAD_MIN_RTT`]). Two cases:
/// - A stream frame (DATA or a pure ACK) smaller than a TCP segment, from
///   the receiving end of a bulk transfer or at the peer's ask (its own
///   bulk sending delays its acks to the broker: `stream::pad_ask`).
/// - A DATA frame smaller than a bulk chunk, from an end that is not the
///   sender of a bulk transfer and has a PAD credit (each DATA frame of
///   the peer's pays for one, [`Stream::pad_credit`]), while the broker's
///   connection to the peer has our previous frame's last, partial segment
///   unacknowledged: the broker's Nagle would hold this frame until the
///   peer acknowledged that one, a round trip of the peer's link. So a
///   reply that followed our delayed pure ACK waited (ssh's key exchange
///   over a 200 ms path, 133 ms), or an echo typed less than a round trip
///   after the previous one.
///   With the PAD behind it, the frame leads full segments, which Nagle
///   lets go; the PAD's tail waits instead.
/// - Any DATA frame, bulk chunks too, in an agent's drain (`draining`:
///   [`Stream::draining`] and [`FrameSink::pads_drains`]) when our own
///   link is far as well: else the broker's Nagle holds each of its few
///   chunks behind the one before, and the base, the target and the
///   queue kept in our link grow by that hold (docs/interactive.md, "A
///   drain's chunks"). Not from mqtt-proxy, whose sessions drain apart.
///
/// Measured with `scripts/bench-wan`: padding on our own far link instead
/// takes our TCP window's room (a download over a 200 ms link ran at 1.15
/// of direct instead of 1.46), and padding the bulk sender's small frames
/// made some upload rounds run at 0.65-0.75 instead of about 1.0.
/// `path` is asked only for a frame that may get one (not for each bulk
/// chunk outside a drain); `None`: the sink may not pad
/// ([`FrameSink::pads`]).
pub fn pad_after(
    f: &Frame,
    wire_len: usize,
    draining: bool,
    path: impl FnOnce() -> Option<PadPath>,
) -> bool {
    let segment = wire_len < protocol::PAD_LEN;
    let small = wire_len < MIN_CHUNK + protocol::FRAME_OVERHEAD;
    let may = match f.kind {
        Kind::Data => small || draining,
        Kind::Ack => segment,
        _ => false,
    };
    may && path().is_some_and(|p| {
        let far = peer_rtt(p.min_rtt, p.link_rtt).is_some_and(|r| r >= PAD_MIN_RTT);
        let answer = segment && (p.receiving || p.asked);
        let data = f.kind == Kind::Data;
        let held = data && small && !p.sending && p.held && p.credit;
        let drain = data && draining && p.link_rtt >= PAD_MIN_RTT;
        far && (answer || held || drain)
    })
}

/// The peer's own round trip to the broker: the smallest round trip to the
/// peer, `min_rtt`, less ours to the broker, `link_rtt`.
fn peer_rtt(min_rtt: Option<Duration>, link_rtt: Duration) -> Option<Duration> {
    min_rtt.map(|r| r.saturating_sub(link_rtt))
}

/// Frames went out to the peer at `at`: the guess of what the broker holds
/// back ([`Stream::broker_holds`]) moves on, once the peer's round trip is
/// known.
fn published<S: FrameSink>(stream: &mut Stream, sink: &S, at: Instant) {
    if let Some(rtt) = peer_rtt(stream.min_rtt(), sink.link_rtt()) {
        stream.on_published(at, rtt);
    }
}

/// Publishes frames on one topic, at the QoS [`protocol::delivery`] picks.
pub struct MqttSink {
    pub client: Client,
    pub topic: String,
    /// The node's clock of bulk sending, shared by its sessions: set on
    /// the agent, whose sessions then ask their peers for pads
    /// ([`FrameSink::asks_for_pads`]) and pad their drains
    /// ([`FrameSink::pads_drains`]); `None` in `mqtt-proxy`, whose one
    /// session has no other session's keystrokes to speed up.
    pub bulk: Option<std::sync::Arc<BulkClock>>,
}

/// Longest a frame waits for room in the MQTT request queue. The queue only
/// stays full while the broker is unreachable; then the frame is dropped
/// (the stream retransmits it) so the session keeps its timers running.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Incoming frames taken in one go (those already queued) before anything
/// is sent. A chunk that asks for an ack (`FLAG_ACK_REQ`) is acked at
/// once, and with fewer than `ACK_EVERY` chunks in flight every full chunk
/// asks (`Stream::ack_request_for`): a burst of chunks that queued while the
/// session was busy (a loopback or LAN broker, both cores taken by a copy)
/// would cost a message per chunk to ack, and is acked by one. A chunk
/// that arrives alone (a slow link) is acked alone, as before.
const BATCH: usize = 64;

impl FrameSink for MqttSink {
    async fn send(&mut self, frame: Bytes) -> io::Result<()> {
        let qos = mqtt::qos(protocol::delivery(&frame));
        // Waiting for the rate caps (if any) does not count against the
        // timeout: that wait is bounded by the caps, not by the broker.
        let publish =
            self.client
                .publish_within(self.topic.clone(), qos, false, frame, SEND_TIMEOUT);
        match publish.await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::debug!(topic = %self.topic, "MQTT request queue full; frame dropped");
                Ok(())
            }
            Err(_) => Err(io::Error::new(io::ErrorKind::BrokenPipe, TaskEnded)),
        }
    }

    fn max_message(&self, peer_packet: Option<usize>) -> usize {
        self.client
            .max_payload_to(&self.topic, peer_packet)
            .map_or(MAX_FRAME, |max| max.min(MAX_FRAME))
    }

    fn recv_limit(&self) -> u8 {
        protocol::recv_limit_units(self.client.recv_max_packet())
    }

    fn discovered(&self, d: Discovery) {
        self.client.log_message_size(d.failed, d.size);
    }

    fn paced(&self) -> bool {
        self.client.paced()
    }

    fn pads(&self) -> bool {
        // A PAD must fit the connection's message size limit like any frame.
        !self.paced() && self.max_message(None) >= HEADER_LEN + protocol::PAD_LEN + TAG_LEN
    }

    fn link_rtt(&self) -> Duration {
        self.client.link_rtt()
    }

    fn sent_bulk(&self, now: Instant) {
        if let Some(b) = &self.bulk {
            b.mark(now);
        }
    }

    fn asks_for_pads(&self, now: Instant) -> bool {
        // The clock first: `mqtt-proxy` has none, and `pads()` works out
        // the connection's message limit.
        self.bulk.as_ref().is_some_and(|b| b.lately(now)) && self.pads()
    }

    fn pads_drains(&self) -> bool {
        self.bulk.is_some()
    }
}

/// How a tunnel ended, when it did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("reading the local stream failed: {0}")]
    LocalRead(io::Error),
    #[error("writing the local stream failed: {0}")]
    LocalWrite(io::Error),
    #[error(transparent)]
    LinkClosed(#[from] TaskEnded),
    #[error("stopped before the peer finished closing")]
    Stopped,
}

/// After a stop request, how long we wait for the peer to acknowledge our
/// FIN before resetting the session instead.
pub const STOP_LINGER: Duration = Duration::from_secs(2);

/// Opens an incoming frame and hands it to the stream; one that fails
/// authentication or does not fit the stream is dropped and logged.
fn on_incoming(stream: &mut Stream, keys: &mut SessionKeys, f: Frame) {
    match keys.rx.open(f) {
        Ok(f) => {
            if let Err(why) = stream.on_frame(f, Instant::now()) {
                tracing::debug!(%why, "dropped frame");
            }
        }
        Err(OpenError::Forged) if keys.rx.forged() == 1 => tracing::warn!(
            "dropped a frame that fails authentication: someone else publishes on this session's topic (further ones are counted)"
        ),
        Err(e @ OpenError::Forged) => {
            tracing::debug!(error = %e, forged = keys.rx.forged(), "dropped frame");
        }
        Err(e) => tracing::debug!(error = %e, "dropped frame"),
    }
}

/// Run the session until both directions are closed and acknowledged, or it
/// fails. On a local failure a RESET is sent to the peer before returning.
///
/// Every frame goes out sealed with `keys`, and every frame that comes in
/// is opened with them: one that does not open is dropped and counted
/// (`seal::Opener`), and the session goes on.
///
/// `on_notice` hears when the peer stalls, when it is back, and when this
/// process woke from a stop (`stream::Notice`).
///
/// When `stop` completes (the local side went away, e.g. ssh hung up on the
/// proxy), the local stream is treated as closed in both directions: we send
/// FIN, discard what still arrives, and reset after [`STOP_LINGER`].
#[allow(clippy::too_many_arguments)]
pub async fn run<R, W, S>(
    stream: &mut Stream,
    keys: &mut SessionKeys,
    mut reader: R,
    writer: W,
    frames: &mut mpsc::Receiver<Frame>,
    sink: &mut S,
    link: &mut watch::Receiver<LinkState>,
    stop: impl Future<Output = ()>,
    mut on_notice: impl FnMut(Notice),
) -> Result<(), TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: FrameSink,
{
    tokio::pin!(stop);
    let mut stop_deadline: Option<Instant> = None;
    let mut writer = Some(writer);
    let mut reading = true;
    let mut rbuf = BytesMut::new();
    stream.set_recv_limit(sink.recv_limit());
    stream.set_chunks_follow_rate(!sink.paced());
    let mut generation = match *link.borrow_and_update() {
        LinkState::Up { generation } => generation,
        _ => 0,
    };
    loop {
        // Before any frame is cut: the connection's limit may have fallen.
        stream.set_max_message(sink.max_message(stream.peer_recv_packet()));
        transmit(stream, sink, &keys.tx)
            .await
            .map_err(|_| TunnelError::LinkClosed(TaskEnded))?;
        if let Some(d) = stream.take_size_discovery() {
            sink.discovered(d);
        }
        while let Some(n) = stream.take_notice() {
            on_notice(n);
        }
        let now = Instant::now();
        if let Some(e) = stream.error() {
            return Err(e.clone().into());
        }
        if stream.read_closed() {
            if let Some(mut w) = writer.take() {
                // Half-close: EOF towards the local side. A failure here
                // means the local reader is gone, which the read side sees.
                if let Err(e) = w.shutdown().await {
                    tracing::debug!(error = %e, "shutdown of local writer failed");
                }
            }
        }
        if stop_deadline.is_some() {
            // Nobody to write to any more: discard, keeping the window open.
            while let Some(n) = stream.readable().map(Bytes::len) {
                stream.consume(n);
            }
        }
        if stream.is_done() {
            return Ok(());
        }
        if stop_deadline.is_some_and(|d| d <= now) {
            return Err(abort(stream, sink, &keys.tx, TunnelError::Stopped).await);
        }
        let can_read = reading && stream.may_read(now);
        let chunk = stream.max_chunk();
        if can_read && (rbuf.len() != HEADER_LEN || rbuf.capacity() != HEADER_LEN + chunk + TAG_LEN)
        {
            // A fresh buffer per chunk: the chunk is kept (sealed) until it
            // is acknowledged, and a read never exceeds the chunk cap (which
            // follows the broker's message size limit, so it may change).
            rbuf = chunk_buffer(chunk);
        }
        let pending_write = writer
            .is_some()
            .then(|| stream.readable().cloned())
            .flatten();
        let deadline = match (stream.poll_deadline(), stop_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut timer_fired = false;
        tokio::select! {
            f = frames.recv() => match f {
                Some(f) => {
                    on_incoming(stream, keys, f);
                    // What else has come meanwhile, before anything is
                    // sent: the acks for a burst of chunks go as one.
                    for _ in 1..BATCH {
                        if stream.error().is_some() {
                            break;
                        }
                        let Ok(f) = frames.try_recv() else { break };
                        on_incoming(stream, keys, f);
                    }
                }
                None => return Err(TunnelError::LinkClosed(TaskEnded)),
            },
            changed = link.changed() => {
                if changed.is_err() {
                    return Err(TunnelError::LinkClosed(TaskEnded));
                }
                let state = link.borrow_and_update().clone();
                match state {
                    LinkState::Up { generation: g } if g != generation => {
                        generation = g;
                        tracing::info!("broker connection restored, resynchronising");
                        stream.set_max_message(sink.max_message(stream.peer_recv_packet()));
                        stream.on_reconnect(Instant::now());
                    }
                    LinkState::Up { .. } => {}
                    _ => stream.on_link_down(),
                }
            }
            r = read_chunk(&mut reader, &mut rbuf, chunk), if can_read => match r {
                Ok(0) => {
                    reading = false;
                    stream.close_write(Instant::now());
                }
                // The whole buffer, its spare room for the tag too.
                Ok(_) => stream.send_sealed(std::mem::take(&mut rbuf), Instant::now(), &keys.tx),
                Err(e) => return Err(abort(stream, sink, &keys.tx, TunnelError::LocalRead(e)).await),
            },
            w = write_some(&mut writer, pending_write.as_ref()), if pending_write.is_some() => match w {
                Ok(n) => stream.consume(n),
                Err(e) => return Err(abort(stream, sink, &keys.tx, TunnelError::LocalWrite(e)).await),
            },
            _ = &mut stop, if stop_deadline.is_none() => {
                tracing::debug!("local side stopped; closing");
                stop_deadline = Some(Instant::now() + STOP_LINGER);
                writer = None;
                if reading {
                    reading = false;
                    stream.close_write(Instant::now());
                }
            }
            _ = sleep_until(deadline.unwrap_or(now + crate::stream::KEEPALIVE)), if deadline.is_some() => {
                timer_fired = true;
            }
        }
        // Whatever woke us, the timer would have by `deadline` (or at once,
        // if that had passed): far later means the process was stopped
        // (SIGSTOP, a laptop's sleep). Told before the timers run, so the
        // stop does not count as the peer's silence.
        let woke = Instant::now();
        if let Some(late) = deadline.and_then(|d| woke.checked_duration_since(d.max(now))) {
            if late > PAUSE_SLACK {
                stream.on_paused(late, woke);
            }
        }
        if timer_fired {
            stream.on_timeout(woke);
        }
    }
}

/// Publish every frame the stream has ready, in order, sealed with `tx`.
pub async fn transmit<S: FrameSink>(
    stream: &mut Stream,
    sink: &mut S,
    tx: &Sealer,
) -> io::Result<()> {
    while let Some((f, sealed)) = stream.poll_transmit_parts(Instant::now()) {
        let wire = match sealed {
            Some(w) => w,
            None => tx.seal_frame(&f),
        };
        let draining = stream.draining() && sink.pads_drains();
        let pad = pad_after(&f, wire.len(), draining, || {
            sink.pads().then(|| {
                let now = Instant::now();
                PadPath {
                    min_rtt: stream.min_rtt(),
                    link_rtt: sink.link_rtt(),
                    receiving: stream.receiving(now),
                    asked: stream.pads_asked(now),
                    sending: stream.since_bulk(now).is_some_and(|d| d < BULK_LATELY),
                    held: stream.broker_holds(now),
                    credit: stream.pad_credit(),
                }
            })
        });
        // A bulk chunk: at least the smallest message a copy is cut into
        // (4 KiB; ssh's handshake messages, a prompt or an echo are smaller).
        let bulk = f.kind == Kind::Data && wire.len() >= MIN_CHUNK + protocol::FRAME_OVERHEAD;
        sink.send(wire).await?;
        // The send may have waited for the connection's rate caps.
        let sent = Instant::now();
        if bulk {
            sink.sent_bulk(sent);
            stream.on_bulk_sent(sent);
        }
        stream.on_transmitted(&f, sent);
        if pad {
            sink.send(tx.seal(&protocol::pad(f.sid))).await?;
            stream.count_pad();
        }
        published(stream, sink, sent);
    }
    let now = Instant::now();
    if sink.asks_for_pads(now) && stream.pad_ask_due(now) {
        sink.send(tx.seal(&protocol::pad_ask(stream.sid()))).await?;
        // Its partial segment holds the next frame as any frame's does.
        published(stream, sink, Instant::now());
    }
    Ok(())
}

/// An empty read buffer for a chunk of at most `chunk` bytes, with room for
/// the frame header in front and the tag behind: the first transmission is
/// this buffer, sealed where it is ([`Stream::send_sealed`]).
pub fn chunk_buffer(chunk: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + chunk + TAG_LEN);
    buf.resize(HEADER_LEN, 0);
    buf
}

/// Read at most `chunk` bytes into `buf` (made by [`chunk_buffer`]): the
/// room behind them is the tag's.
async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    chunk: usize,
) -> io::Result<usize> {
    let room = (HEADER_LEN + chunk).saturating_sub(buf.len());
    // No room would read as end of file.
    debug_assert!(room > 0, "a read into a full chunk buffer");
    reader.read_buf(&mut BufMut::limit(buf, room)).await
}

async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut Option<W>,
    data: Option<&Bytes>,
) -> io::Result<usize> {
    let (Some(w), Some(data)) = (writer.as_mut(), data) else {
        return std::future::pending().await;
    };
    // No flush here: `select!` drops this future whenever another branch
    // wins, and bytes a write took but whose count never reached
    // `consume` would be written again. A writer that buffers (tokio's
    // `File`, the proxy's stdout when it is a regular file: its flush waits
    // for a blocking thread) wrote a 64 MiB download as 76 MiB. Pipes and
    // sockets do not buffer; a buffering writer is flushed by `shutdown`.
    let n = w.write(data).await?;
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}

/// Send a RESET (best effort) and hand back the error.
async fn abort<S: FrameSink>(
    stream: &mut Stream,
    sink: &mut S,
    tx: &Sealer,
    e: TunnelError,
) -> TunnelError {
    stream.abort();
    while let Some((f, sealed)) = stream.poll_transmit_parts(Instant::now()) {
        let wire = sealed.unwrap_or_else(|| tx.seal_frame(&f));
        // Best effort: if the link is gone the peer times out instead.
        let _ = sink.send(wire).await;
    }
    e
}

#[cfg(test)]
mod tests;
